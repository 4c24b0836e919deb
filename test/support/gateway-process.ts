// Starts the real gateway as a child process (Node, or Deno when the suite runs under Deno) and reads its logs.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeno } from '../../runtime/adapters/index.ts';
import { repoRoot } from '../../runtime/assets/repo-root.ts';
import { PROCESS_START_TIMEOUT_MS, readProcessLogs } from './process-logs.ts';


export interface GatewayProcess {
  child: ChildProcess;
  httpPort: number;
  httpsPort: number | null;
  adminPort: number;
  url: string;
  /** Every JSON log line so far. */
  logs: Record<string, unknown>[];
  /** Resolves with the first log line matching, or rejects after `timeoutMs`. */
  waitForLog(match: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** After a file's tests: stops its gateway, then closes its client agent and its backends' servers. */
export async function stopAll(
  gateway: GatewayProcess | undefined,
  agent: { close(): Promise<void> },
  servers: ({ close(done: () => void): unknown } | undefined)[],
): Promise<void> {
  await gateway?.stop();
  await agent.close();
  await Promise.all(servers.map((server) => new Promise<void>((done) => (server ? server.close(() => done()) : done()))));
}

export function tempDir(prefix = 'gatehouse-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function writeConfig(dir: string, name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

/** How to run a gateway: the program, its arguments before `--config`, and the folder it runs in (default the repository). */
export interface GatewayCommand {
  cmd: string;
  args: string[];
  cwd?: string;
}

function command(): GatewayCommand {
  if (isDeno) {
    const deno = (globalThis as unknown as { Deno: { execPath(): string } }).Deno;
    return { cmd: deno.execPath(), args: ['run', '-A', join(repoRoot(), 'runtime', 'entry', 'gateway.ts')] };
  }
  return { cmd: process.execPath, args: ['--disable-warning=ExperimentalWarning', join(repoRoot(), 'dist', 'runtime', 'entry', 'gateway.js')] };
}

export async function startGatewayProcess(
  options: { config?: string; env?: Record<string, string>; startTimeoutMs?: number; command?: GatewayCommand } = {},
): Promise<GatewayProcess> {
  const { cmd, args, cwd } = options.command ?? command();
  const child = spawn(cmd, [...args, ...(options.config ? ['--config', options.config] : [])], {
    cwd: cwd ?? repoRoot(),
    env: {
      ...process.env,
      GATEHOUSE_HTTP_PORT: '0',
      GATEHOUSE_ADMIN_PORT: '0',
      GATEHOUSE_HTTPS_PORT: '0',
      // Nothing routes to these gateways by their probes, so SIGTERM need not wait (the drain tests set a delay).
      GATEHOUSE_SHUTDOWN_DELAY_MS: '0',
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const { logs, waitForLog, stderr } = readProcessLogs(child, 'gateway');
  // 'close', not 'exit': by then stderr has been read to its end, so a start failure's message is whole.
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  let listening: Record<string, unknown>;
  try {
    listening = await Promise.race([
      waitForLog((l) => l.msg === 'gatehouse listening', options.startTimeoutMs ?? PROCESS_START_TIMEOUT_MS),
      exited.then((code) => {
        throw new Error(`gateway exited with ${code} before listening: ${stderr()}`);
      }),
    ]);
  } catch (err) {
    // A gateway that did not start in time is nobody's to stop: left running, it kept the test process alive.
    if (child.exitCode === null) child.kill('SIGKILL');
    throw err;
  }
  const httpPort = listening.http as number;
  return {
    child,
    httpPort,
    httpsPort: (listening.https as number | null) ?? null,
    adminPort: Number(String(listening.admin).split(':').pop()),
    url: `http://127.0.0.1:${httpPort}`,
    logs,
    waitForLog,
    exited,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
  };
}
