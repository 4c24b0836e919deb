// npm run bench:sdk — how long a policy author waits for the `gatehouse-policy` command, whole processes timed.
//
// Each figure is the median of BENCH_SDK_RUNS (7) runs of a new process of the command's launcher
// (sdk/bin/gatehouse-policy.js, as `npx gatehouse-policy` runs it), from spawn to exit:
//   - `sdk-help-ms`: `gatehouse-policy --help`;
//   - `sdk-cached-build-ms`: `gatehouse-policy build policies/check-header -o <tmp>` when the build is in the cache;
//   - `sdk-test-warm-ms`: `gatehouse-policy test policies/check-header` when the build (and its metered module) is.
//   - `node-startup-ms`: `node -e 0`, the floor under every figure above on this machine at this time.
// One unmeasured run of each fills the caches first. BENCH_BASELINE_ROOT (another checkout of the repository, built:
// `node scripts/build.mjs` there) adds `baseline-sdk-help-ms` and the others, measured in the same run, run for run
// in turn with this checkout's, and the ratios. Run it under the machine's benchmark lock: `flock /work/bench.lock npm
// run bench:sdk`.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { positiveFromEnv } from './lib/env.ts';
import { median } from './lib/median.ts';

const RUNS = positiveFromEnv('BENCH_SDK_RUNS', 7);
const baselineRoot = process.env.BENCH_BASELINE_ROOT || null;
const scratch = mkdtempSync(join(tmpdir(), 'gatehouse-bench-sdk-'));

interface Checkout {
  label: string;
  root: string;
}

const checkouts: Checkout[] = [{ label: '', root: repoRoot() }];
if (baselineRoot) checkouts.push({ label: 'baseline-', root: baselineRoot });

const COMMANDS: { name: string; args: (root: string) => string[] }[] = [
  { name: 'sdk-help-ms', args: () => ['--help'] },
  { name: 'sdk-cached-build-ms', args: (root) => ['build', join(root, 'policies', 'check-header'), '-o', join(scratch, 'check-header.wasm')] },
  { name: 'sdk-test-warm-ms', args: (root) => ['test', join(root, 'policies', 'check-header')] },
];

/** A bare Node process, spawn to exit. */
function timedNode(): number {
  const started = performance.now();
  spawnSync(process.execPath, ['-e', '0']);
  return performance.now() - started;
}

/** One process of the command in `root`, from spawn to exit, in milliseconds; a failed run stops the benchmark. */
function timed(root: string, args: string[]): number {
  const started = performance.now();
  const run = spawnSync(process.execPath, [join(root, 'sdk', 'bin', 'gatehouse-policy.js'), ...args], { cwd: root, encoding: 'utf8' });
  const ms = performance.now() - started;
  if (run.status !== 0) throw new Error(`gatehouse-policy ${args.join(' ')} in ${root} exited ${run.status}:\n${run.stdout}${run.stderr}`);
  return ms;
}

try {
  const results = new Map<string, number[]>();
  results.set('node-startup-ms', Array.from({ length: RUNS }, timedNode));
  for (const { name, args } of COMMANDS) {
    for (const c of checkouts) timed(c.root, args(c.root)); // fills the caches
    for (let i = 0; i < RUNS; i++) {
      for (const c of checkouts) {
        const key = c.label + name;
        results.set(key, [...(results.get(key) ?? []), timed(c.root, args(c.root))]);
      }
    }
  }
  process.stdout.write(`node-startup-ms: ${median(results.get('node-startup-ms')!).toFixed(0)}\n`);
  for (const { name } of COMMANDS) {
    for (const c of checkouts) process.stdout.write(`${c.label}${name}: ${median(results.get(c.label + name)!).toFixed(0)}\n`);
    if (baselineRoot) {
      const ratio = median(results.get(`baseline-${name}`)!) / median(results.get(name)!);
      process.stdout.write(`${name.replace(/-ms$/, '')}-speedup: ${ratio.toFixed(1)}x\n`);
    }
  }
  process.stdout.write(`(${RUNS} runs each, medians; load average ${(await import('node:os')).loadavg().map((l) => l.toFixed(1)).join(' ')})\n`);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
