// A gateway as its own process for the benchmark scripts: started on free ports, ready when its probe answers 200,
// stopped with SIGTERM (SIGKILL after 10 s), and loaded with a fixed number of requests through the five-policy chain's
// credentials.

import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { repoRoot } from '../../runtime/assets/repo-root.ts';
import { STATUS_PATH } from '../../runtime/gateway/gateway.ts';
import { freePort } from '../../test/support/ports.ts';
import { API_KEY, ORIGIN } from '../bench/five-policy-chain.ts';

/**
 * A gateway under Deno, from the TypeScript sources, as `deno task start` runs it (the configuration's arguments go
 * after these); `flags`: Deno's own, before the entry (`--inspect=…`).
 */
export function denoGateway(flags: string[] = []): { cmd: string; args: string[] } {
  const root = repoRoot();
  return { cmd: join(root, 'node_modules', '.bin', 'deno'), args: ['run', '-A', ...flags, join(root, 'runtime', 'entry', 'gateway.ts')] };
}

export interface GatewayProcess {
  child: ChildProcess;
  port: number;
  /** From spawning the process to the probe's first 200. */
  readyMs: number;
}

/** Spawns `cmd args` as a gateway (GATEHOUSE_* ports set here, `env` added) and waits for its probe's 200. */
export async function startGatewayProcess(
  name: string,
  cmd: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; readyTimeoutMs?: number } = {},
): Promise<GatewayProcess> {
  const readyTimeoutMs = options.readyTimeoutMs ?? 120_000;
  const [port, adminPort] = [await freePort(), await freePort()];
  const startedAt = performance.now();
  const child = spawn(cmd, args, {
    cwd: repoRoot(),
    env: {
      ...process.env,
      GATEHOUSE_HTTP_PORT: String(port),
      GATEHOUSE_ADMIN_PORT: String(adminPort),
      GATEHOUSE_SHUTDOWN_DELAY_MS: '0',
      GATEHOUSE_LOG_LEVEL: 'warn',
      ...options.env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name}: the gateway exited with ${child.exitCode}: ${stderr}`);
    if (performance.now() - startedAt > readyTimeoutMs) {
      child.kill('SIGKILL');
      throw new Error(`${name}: not ready after ${readyTimeoutMs} ms: ${stderr}`);
    }
    const status = await request(`http://127.0.0.1:${port}${STATUS_PATH}`)
      .then(async (r) => {
        await r.body.dump();
        return r.statusCode;
      })
      .catch(() => 0);
    if (status === 200) return { child, port, readyMs: performance.now() - startedAt };
    await sleep(5);
  }
}

export async function stopGatewayProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await Promise.race([exited, sleep(10_000).then(() => child.kill('SIGKILL'))]);
}

/** Sends `count` GETs to `/` with the chain's key and origin over `connections` connections; each must answer 200. */
export async function sendChainRequests(port: number, count: number, connections = 8): Promise<void> {
  const agent = new Agent({ connections });
  try {
    let sent = 0;
    const worker = async () => {
      while (sent < count) {
        sent++;
        const r = await request(`http://127.0.0.1:${port}/`, { dispatcher: agent, headers: { 'x-api-key': API_KEY, origin: ORIGIN } });
        await r.body.dump();
        if (r.statusCode !== 200) throw new Error(`the gateway answered ${r.statusCode}`);
      }
    };
    await Promise.all(Array.from({ length: connections }, worker));
  } finally {
    await agent.close();
  }
}
