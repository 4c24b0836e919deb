// The test suite under Deno, two files at a time, each in its own `deno test` process: what `npx deno task test` runs.
//
// `deno test --parallel` runs files in workers of one process, where a test that reads the process's own CPU time
// (test/call-budget.test.ts) counts the other files' work, and process-wide state is shared; one process a file, as
// `node --test --test-concurrency=2` runs the Node suite, keeps each file alone in its process. A file's output is
// printed whole when it ends, so that two files' lines never mix. Exits 1 when any file failed.
//
// A file still running after FILE_TIMEOUT_MS is killed and counted as failed: a test that fails and leaves a timer or a
// server behind keeps its process from ever exiting, which would hold the suite (and CI) until something else ends it.
// `npm test` gives node --test the same limit (--test-timeout). Each file runs in a process group of its own, and the
// whole group is killed: the gateways, control planes and Redis servers its tests started go with it. Killing `deno
// test` alone would leave them running, holding ports, and one that inherited the output pipe would keep the file from
// ever being seen to end. Processes of a file that are still running after it ended are killed too, and named, and a
// runner stopped by SIGINT or SIGTERM kills the groups of the files it was running.
//
//   deno run -A scripts/deno-test.mjs [file ...]     (default: every test/*.test.ts)
//   DENO_TEST_FILE_TIMEOUT_MS   the limit a file, in milliseconds (default 600000)

import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const deno = join(root, 'node_modules', '.bin', 'deno');
const given = process.argv.slice(2);
const files = given.length > 0 ? given : readdirSync(join(root, 'test')).filter((f) => f.endsWith('.test.ts')).sort().map((f) => join('test', f));
const concurrency = Math.max(1, Math.min(2, availableParallelism()));
/** By default more than ten times the slowest file's time in the clean-clone CI (52 s). */
const FILE_TIMEOUT_MS = positiveInteger('DENO_TEST_FILE_TIMEOUT_MS', 600_000);

function positiveInteger(name, fallback) {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${name} must be a positive whole number of milliseconds, not ${JSON.stringify(text)}`);
  return value;
}

/** Sends SIGKILL to every process of the group `pgid`, if any is left (none: the file never started). */
function killGroup(pgid) {
  if (pgid === undefined) return;
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch (err) {
    if (err.code !== 'ESRCH') throw err;
  }
}

/** The process groups of the files running now: a runner stopped by a signal ends them first. */
const running = new Set();
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    for (const pgid of running) killGroup(pgid);
    process.exit(1);
  });
}

/**
 * The processes of group `pgid` that still run, as `pid command` (from /proc: a zombie, which runs nothing and which
 * a parent that does not collect its children leaves behind, is not one of them, nor is a process in the middle of
 * exiting). Empty without /proc.
 */
function runningIn(pgid) {
  const found = [];
  let entries;
  try {
    entries = readdirSync('/proc');
  } catch {
    return found;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // After the command name in parentheses: state, parent, process group.
      const [state, , group] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(group) !== pgid || state === 'Z') continue;
      const command = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ').trim();
      // A process that is exiting has let its memory go, and its command line with it: it is ending, not left running.
      if (command === '') continue;
      found.push(`${entry} ${command.length > 120 ? `${command.slice(0, 120)}...` : command}`);
    } catch {
      // It ended while the list was read.
    }
  }
  return found;
}

function runFile(file) {
  return new Promise((resolve) => {
    // detached: the child leads a new process group, which its own children join.
    const child = spawn(deno, ['test', '-A', '--no-check', '--v8-flags=--expose-gc', file], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const chunks = [];
    child.stdout.on('data', (c) => chunks.push(c));
    child.stderr.on('data', (c) => chunks.push(c));
    child.on('error', (err) => chunks.push(Buffer.from(`${err.message}\n`)));
    if (child.pid !== undefined) running.add(child.pid);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid);
    }, FILE_TIMEOUT_MS);
    let leftBehind = [];
    // On exit, not on close: close waits for the output pipes, which a process left behind may hold open.
    child.on('exit', () => {
      clearTimeout(timer);
      running.delete(child.pid);
      if (timedOut || child.pid === undefined) return;
      leftBehind = runningIn(child.pid);
      killGroup(child.pid);
    });
    child.on('close', (code, signal) => {
      if (leftBehind.length > 0) {
        chunks.push(Buffer.from(`deno-test: ${file} left processes running after it ended; they were killed: ${leftBehind.join('; ')}\n`));
      }
      process.stdout.write(Buffer.concat(chunks));
      const why = timedOut ? `still running after ${FILE_TIMEOUT_MS / 1000} s, killed with its processes` : signal ? `killed by ${signal}` : `exit code ${code}`;
      resolve({ file, ok: code === 0 && !timedOut, why });
    });
  });
}

const started = Date.now();
const results = [];
let next = 0;
await Promise.all(
  Array.from({ length: concurrency }, async () => {
    while (next < files.length) results.push(await runFile(files[next++]));
  }),
);
const failed = results.filter((r) => !r.ok);
const seconds = ((Date.now() - started) / 1000).toFixed(0);
console.log(`\ndeno-test: ${files.length} files, ${files.length - failed.length} passed, ${failed.length} failed, in ${seconds} s (${concurrency} at a time)`);
for (const r of failed) console.log(`  failed: ${r.file} (${r.why})`);
process.exitCode = failed.length > 0 ? 1 : 0;
