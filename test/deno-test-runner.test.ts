// scripts/deno-test.mjs, what `npx deno task test` runs, ends whatever its files leave behind: a file that runs past
// its limit is killed with every process it started and counted failed, and the processes a passing file leaves
// running are killed when it ends. Each fixture starts a `sleep`, as a test starts a gateway or a Redis server: killing
// `deno test` alone, as the runner did, left such processes running, holding their ports, after the suite ended.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { tempDir } from './support/gateway-process.ts';
import { processAlive } from './support/processes.ts';
import { waitFor } from './support/wait.ts';

const FILE_LIMIT_MS = 4000;
/** The runner must have ended by then: it takes about 5 s. */
const RUNNER_BOUND_MS = 60_000;

/** A Deno test file that starts `sleep`, writes its pid to `pidFile`, then hangs or passes. */
function fixture(dir: string, name: string, pidFile: string, then: 'hang' | 'pass'): string {
  const file = join(dir, name);
  const end =
    then === 'hang'
      ? 'await new Promise(() => setInterval(() => {}, 1000));'
      : // unref: the file's test ends and its process exits with the sleep still running.
        'sleeper.unref();';
  writeFileSync(
    file,
    [
      "import { spawn } from 'node:child_process';",
      "import { writeFileSync } from 'node:fs';",
      `Deno.test(${JSON.stringify(name)}, async () => {`,
      "  const sleeper = spawn('sleep', ['600'], { stdio: 'ignore' });",
      `  writeFileSync(${JSON.stringify(pidFile)}, String(sleeper.pid));`,
      `  ${end}`,
      '});',
      '',
    ].join('\n'),
  );
  return file;
}

test('the Deno runner kills a file past its limit with its processes, and what a passing file leaves running', { timeout: RUNNER_BOUND_MS + 30_000 }, async () => {
  const root = repoRoot();
  const dir = tempDir('gatehouse-deno-runner-');
  const hangingPid = join(dir, 'hanging.pid');
  const leavingPid = join(dir, 'leaving.pid');
  const hanging = fixture(dir, 'hangs.test.ts', hangingPid, 'hang');
  const leaving = fixture(dir, 'leaves.test.ts', leavingPid, 'pass');
  const runner = spawn(join(root, 'node_modules', '.bin', 'deno'), ['run', '-A', join(root, 'scripts', 'deno-test.mjs'), hanging, leaving], {
    cwd: root,
    env: { ...process.env, DENO_TEST_FILE_TIMEOUT_MS: String(FILE_LIMIT_MS), NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  runner.stdout.on('data', (c: Buffer) => (output += c.toString()));
  runner.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const bound = setTimeout(() => runner.kill('SIGKILL'), RUNNER_BOUND_MS);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => runner.on('close', (c, s) => resolve([c, s])));
  clearTimeout(bound);
  const pids = [hangingPid, leavingPid].map((f) => {
    try {
      return Number(readFileSync(f, 'utf8'));
    } catch {
      return 0;
    }
  });
  try {
    assert.equal(signal, null, `the runner did not end within ${RUNNER_BOUND_MS / 1000} s:\n${output}`);
    assert.ok(pids[0]! > 0 && pids[1]! > 0, `both fixtures started their sleep:\n${output}`);
    await waitFor('the sleep of the file past its limit to be gone', () => !processAlive(pids[0]!));
    await waitFor('the sleep the passing file left running to be gone', () => !processAlive(pids[1]!));
    assert.equal(code, 1, output);
    assert.match(output, /deno-test: 2 files, 1 passed, 1 failed/);
    assert.ok(output.includes(`failed: ${hanging} (still running after 4 s, killed with its processes)`), output);
    const named = `deno-test: ${leaving} left processes running after it ended; they were killed: ${pids[1]} `;
    assert.match(output.slice(output.indexOf(named)), /^[^\n]*: \d+ \S*sleep 600\n/, output);
  } finally {
    for (const pid of pids) if (pid > 0 && processAlive(pid)) process.kill(pid, 'SIGKILL');
  }
});
