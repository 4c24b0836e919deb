// SIGTERM sent to the wrapper a person or a process manager started (`npm start`, `npx deno task start`, `npm run
// control-plane`) drains and stops the server behind it, as when sent to the server itself: the probe turns 503 for the
// shutdown delay, then the port is released and the server's process is gone.
//
// `npm start` builds dist/ first, which would pull the files from under the tests running beside this one: it runs in a
// folder of its own whose package.json holds the repository's own start and control-plane scripts, word for word,
// with a build step that builds nothing and the repository's dist/ linked in. `npx deno task start` builds nothing and
// runs in the repository.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { tempDir } from './support/gateway-process.ts';
import { freePort } from './support/ports.ts';
import { PROCESS_START_TIMEOUT_MS, readProcessLogs } from './support/process-logs.ts';
import { processAlive } from './support/processes.ts';
import { send } from './support/requests.ts';
import { waitFor, waitForAsync } from './support/wait.ts';

const DELAY_MS = 1500;
const PROBE = '/status-0123456789abcdef';

/** A folder where `npm start` and `npm run control-plane` run the repository's scripts on the repository's dist/. */
function npmProject(): string {
  const root = repoRoot();
  const scripts = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
  const dir = tempDir('gatehouse-wrapper-');
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({ name: 'gatehouse-wrapper-test', private: true, type: 'module', scripts: { start: scripts.start, 'control-plane': scripts['control-plane'] } }),
  );
  mkdirSync(join(dir, 'scripts'));
  writeFileSync(join(dir, 'scripts', 'build.mjs'), '// dist/ is the repository\'s, built by the suite\n');
  symlinkSync(join(root, 'dist'), join(dir, 'dist'));
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
  return dir;
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Starts `args` (npm or npx with its arguments) in `cwd`, waits for the server's listening line (which names its pid
 * and port), sends SIGTERM to the wrapper and checks the drain: the probe 503 during the delay when there is one,
 * then the port closed and the server's process gone.
 */
async function stopThroughWrapper(args: string[], cwd: string, env: Record<string, string>, listening: string, probe: ((port: number) => string) | null) {
  const wrapper = spawn('npm', args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => wrapper.once('exit', () => resolve()));
  const { waitForLog, stderr } = readProcessLogs(wrapper, args.join(' '));
  let pid = 0;
  try {
    const line = await Promise.race([
      waitForLog((l) => l.msg === listening, PROCESS_START_TIMEOUT_MS),
      exited.then(() => assert.fail(`${args.join(' ')} exited before listening: ${stderr()}`)),
    ]);
    pid = line.pid as number;
    const port = (line.http ?? line.port) as number;
    assert.ok(pid > 0 && pid !== wrapper.pid, 'the server is a process of its own, behind the wrapper');
    assert.equal(await portOpen(port), true);
    wrapper.kill('SIGTERM');
    if (probe) {
      await waitForAsync('the probe to answer 503 (draining)', async () => (await send(probe(port), PROBE)).status === 503, 4000);
      assert.equal(processAlive(pid), true, 'still serving through the shutdown delay');
    }
    await waitForAsync('the port to be released', async () => !(await portOpen(port)), 15_000);
    await waitFor('the server process to be gone', () => !processAlive(pid), 10_000);
    await waitForLog((l) => l.msg === 'stopped', 1000);
    await exited;
  } finally {
    if (wrapper.exitCode === null) wrapper.kill('SIGKILL');
    if (pid > 0 && processAlive(pid)) process.kill(pid, 'SIGKILL');
  }
}

describe('SIGTERM to the wrapper', () => {
  test('npm start: the gateway drains and stops', async () => {
    const ports = { GATEHOUSE_HTTP_PORT: String(await freePort()), GATEHOUSE_ADMIN_PORT: String(await freePort()) };
    await stopThroughWrapper(['start'], npmProject(), { ...ports, GATEHOUSE_SHUTDOWN_DELAY_MS: String(DELAY_MS) }, 'gatehouse listening', (p) => `http://127.0.0.1:${p}`);
  });

  test('npx deno task start: the gateway drains and stops', async () => {
    const ports = { GATEHOUSE_HTTP_PORT: String(await freePort()), GATEHOUSE_ADMIN_PORT: String(await freePort()) };
    await stopThroughWrapper(['exec', '--', 'deno', 'task', 'start'], repoRoot(), { ...ports, GATEHOUSE_SHUTDOWN_DELAY_MS: String(DELAY_MS) }, 'gatehouse listening', (p) => `http://127.0.0.1:${p}`);
  });

  test('npm run control-plane: the control plane stops', async () => {
    const env = { GATEHOUSE_CP_PORT: String(await freePort()), GATEHOUSE_CP_DATA_DIR: tempDir('gatehouse-cp-') };
    await stopThroughWrapper(['run', 'control-plane'], npmProject(), env, 'control plane listening', null);
  });
});
