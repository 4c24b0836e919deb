// npm run test:repeat -- <test file> <N> [--deno] [--beside-suite] — runs one test file N times in a row, to show it
// is not flaky.
//
// <test file> names the file in any of its forms: `test/gateway.test.ts`, `gateway.test.ts`, `gateway`, or the built
// `dist/test/gateway.test.js`. Under Node it runs the built file with the flags `npm test` uses; with --deno, the
// TypeScript file under Deno as `deno task test` runs it. Stops at the first failed run and prints which run it was
// and its output (exit 1); otherwise prints `N of N passed` and the time per run (exit 0).
//
// --beside-suite: the rest of the suite (every other test file, as `npm test` or `deno task test` runs them) runs over
// and over beside the repeated file until its N runs end, so that the file is shown to hold on a machine as busy as
// the suite makes it, with the suite's servers, processes and Redis instances starting and stopping around it.

import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { repoRoot } from '../runtime/assets/repo-root.ts';

function usage(problem: string): never {
  process.stderr.write(`${problem}\nusage: npm run test:repeat -- <test file> <N> [--deno] [--beside-suite]\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
const deno = args.includes('--deno');
const besideSuite = args.includes('--beside-suite');
const [file, count, ...rest] = args.filter((a) => a !== '--deno' && a !== '--beside-suite');
if (file === undefined || count === undefined || rest.length > 0) usage('expected a test file and a number of runs');
const runs = Number(count);
if (!Number.isInteger(runs) || runs < 1) usage(`the number of runs must be a positive integer, not ${count}`);

const name = basename(file).replace(/\.(test\.)?(ts|js)$/, '');
const root = repoRoot();
const source = join('test', `${name}.test.ts`);
const built = join('dist', 'test', `${name}.test.js`);
if (!existsSync(join(root, source))) usage(`no test file ${source}`);
if (!deno && !existsSync(join(root, built))) usage(`no built file ${built} (npm run test:repeat builds it first)`);

const command = deno
  ? [join(root, 'node_modules', '.bin', 'deno'), 'test', '-A', '--no-check', '--v8-flags=--expose-gc', source]
  : [process.execPath, '--expose-gc', '--disable-warning=ExperimentalWarning', '--test', built];

/**
 * The suite without the repeated file, as `npm test` (two files at a time) or `deno task test` runs it, its files in a
 * new order each run: a repeat lasting less than a whole suite run then still meets every file, not only the first.
 */
function suiteCommand(): string[] {
  const files = readdirSync(join(root, 'test')).filter((f) => f.endsWith('.test.ts') && f !== `${name}.test.ts`);
  for (let i = files.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [files[i], files[j]] = [files[j]!, files[i]!];
  }
  return deno
    ? [join(root, 'node_modules', '.bin', 'deno'), 'test', '-A', '--no-check', '--v8-flags=--expose-gc', ...files.map((f) => join('test', f))]
    : [process.execPath, '--expose-gc', '--disable-warning=ExperimentalWarning', '--test', '--test-concurrency=2', ...files.map((f) => join('dist', 'test', f.replace(/\.ts$/, '.js')))];
}

/** Runs the rest of the suite again each time it ends, until stopped; counts the runs that ended and those that failed. */
function suiteInALoop() {
  const counts = { ended: 0, failed: 0 };
  let child: ReturnType<typeof spawn> | null = null;
  let stopped = false;
  const start = () => {
    const suite = suiteCommand();
    // Its own process group, so that stopping it reaches the servers and gateways its tests started.
    child = spawn(suite[0]!, suite.slice(1), { cwd: root, stdio: 'ignore', detached: true });
    child.once('close', (code) => {
      if (stopped) return;
      counts.ended++;
      if (code !== 0) counts.failed++;
      start();
    });
  };
  start();
  return {
    counts,
    stop() {
      stopped = true;
      try {
        if (child?.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    },
  };
}

/** One run: its exit code (or the signal that ended it) and everything it wrote, both streams interleaved. */
function runOnce(): Promise<{ ok: boolean; how: string; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command[0]!, command.slice(1), { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (output += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (output += c));
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ ok: code === 0, how: signal ? `signal ${signal}` : `exit code ${code}`, output }));
  });
}

const suite = besideSuite ? suiteInALoop() : null;
const beside = () => (suite ? `, beside the rest of the suite (${suite.counts.ended} runs of it ended meanwhile, ${suite.counts.failed} of them failed)` : '');
const times: number[] = [];
for (let run = 1; run <= runs; run++) {
  const started = performance.now();
  const result = await runOnce();
  const seconds = (performance.now() - started) / 1000;
  if (!result.ok) {
    suite?.stop();
    process.stdout.write(result.output);
    process.stdout.write(`\nrun ${run} of ${runs} failed (${result.how}, ${seconds.toFixed(1)} s) after ${run - 1} passed${beside()}: ${command.join(' ')}\n`);
    process.exit(1);
  }
  times.push(seconds);
  process.stderr.write(`run ${run}: passed in ${seconds.toFixed(1)} s\n`);
}
suite?.stop();
const mean = times.reduce((a, b) => a + b, 0) / runs;
process.stdout.write(
  `${runs} of ${runs} passed (${deno ? 'Deno' : 'Node'}, ${source}${beside()}): ${mean.toFixed(1)} s a run on average, ` +
    `fastest ${Math.min(...times).toFixed(1)} s, slowest ${Math.max(...times).toFixed(1)} s\n`,
);
