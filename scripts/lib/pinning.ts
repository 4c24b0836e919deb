// Running a benchmark's process on one CPU (taskset), for the runs that keep the proxy under test and its load apart
// (bench:proxy's BENCH_PIN, profile:proxy's PROFILE_PIN).

import { spawnSync } from 'node:child_process';

/** `command args`, on CPU `cpu` alone when one is given; taskset replaces itself with the command, so the pid is the command's. */
export function onCpu(cpu: number | undefined, command: string, args: string[]): [string, string[]] {
  return cpu === undefined ? [command, args] : ['taskset', ['-c', String(cpu), command, ...args]];
}

/**
 * Moves this process, every thread of it, onto CPU `cpu`: the benchmark's own process serves the telemetry endpoints
 * (Application Insights' ingestion, the OTLP receiver), which belong with the load, away from the proxy's CPU.
 */
export function pinThisProcess(cpu: number): void {
  const run = spawnSync('taskset', ['-a', '-cp', String(cpu), String(process.pid)], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`taskset could not move this process onto CPU ${cpu}: ${run.stderr || run.error?.message}`);
}
