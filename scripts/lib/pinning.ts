// Running a benchmark's process on one CPU (taskset), for the runs that keep the proxy under test and its load apart
// (bench:proxy's BENCH_PIN, profile:proxy's PROFILE_PIN).

/** `command args`, on CPU `cpu` alone when one is given; taskset replaces itself with the command, so the pid is the command's. */
export function onCpu(cpu: number | undefined, command: string, args: string[]): [string, string[]] {
  return cpu === undefined ? [command, args] : ['taskset', ['-c', String(cpu), command, ...args]];
}
