// Starts the reference control plane as its own process on a free port, with its data in a folder of its own (kept
// across restarts of the process: state must survive them).

import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent } from 'undici';
import { isDeno } from '../../runtime/adapters/index.ts';
import { repoRoot } from '../../runtime/assets/repo-root.ts';
import { PROCESS_START_TIMEOUT_MS, readProcessLogs } from './process-logs.ts';
import { send } from './requests.ts';

export interface AdminReply {
  status: number;
  text: string;
  /** The JSON answer ({} when empty). */
  body: Record<string, unknown>;
}

export interface ControlPlaneProcess {
  child: ChildProcess;
  url: string;
  adminToken: string;
  /** Every JSON log line so far (standard output). */
  logs: Record<string, unknown>[];
  /** Resolves with the first log line matching, or rejects after `timeoutMs`. */
  waitForLog(match: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** A call to the admin API with the admin token; `body` is sent as JSON. */
  admin(method: string, path: string, body?: unknown): Promise<AdminReply>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * The control plane runs under Node, also when the suite runs under Deno: its SQLite driver (better-sqlite3) is a
 * native addon of the kind Deno cannot load. The gateways it configures run under the suite's runtime.
 */
function command(): { cmd: string; args: string[] } {
  const main = join(repoRoot(), 'dist', 'runtime', 'entry', 'control-plane.js');
  return { cmd: isDeno ? 'node' : process.execPath, args: ['--disable-warning=ExperimentalWarning', main] };
}

/**
 * `port` 0 picks one; give the same `dataDir` (and port) to start it again on the same state. `env` adds to its
 * environment (GATEHOUSE_CP_TLS_CERT_FILE...); with TLS, the helper's own admin calls trust the certificate.
 */
export async function startControlPlane(dataDir: string, port = 0, env: Record<string, string> = {}): Promise<ControlPlaneProcess> {
  const { cmd, args } = command();
  const child = spawn(cmd, args, {
    cwd: repoRoot(),
    env: { ...process.env, GATEHOUSE_CP_DATA_DIR: dataDir, GATEHOUSE_CP_PORT: String(port), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const { logs, waitForLog, stderr } = readProcessLogs(child, 'control plane');
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  // 'close', not 'exit': by then stderr has been read to its end, so a start failure's message is whole.
  const closed = new Promise<never>((_, reject) =>
    child.once('close', (code) => reject(new Error(`control plane exited with ${code}: ${stderr()}`))),
  );
  closed.catch(() => undefined);
  const started = waitForLog((l) => l.msg === 'control plane listening', PROCESS_START_TIMEOUT_MS).catch(() => {
    throw new Error(`control plane did not start: ${stderr()}`);
  });
  const listening = await Promise.race([started, closed]);
  const url = `${String(listening.scheme)}://127.0.0.1:${listening.port}`;
  const adminToken = readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
  const ca = env.GATEHOUSE_CP_TLS_CERT_FILE ? readFileSync(env.GATEHOUSE_CP_TLS_CERT_FILE, 'utf8') : undefined;
  const agent = new Agent({ connections: 4, connect: ca ? { ca } : undefined });
  return {
    child,
    url,
    adminToken,
    logs,
    waitForLog,
    admin: async (method, path, body) => {
      const reply = await send(url, path, {
        method,
        headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        dispatcher: agent,
      });
      return { status: reply.status, text: reply.body, body: reply.body ? (JSON.parse(reply.body) as Record<string, unknown>) : {} };
    },
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null) child.kill(signal);
      await exited;
      // Destroyed, not closed: its connections may be to a process killed mid-answer (Deno's undici then refuses close).
      await agent.destroy();
    },
  };
}
