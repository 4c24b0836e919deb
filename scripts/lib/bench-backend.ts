// The benchmark backend (scripts/bench/backend.ts: node:http, a small JSON body) as its own process on a free port of
// 127.0.0.1, for the scripts that need a real backend outside their own event loop (scenario-fleet, soak).

import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../../runtime/assets/repo-root.ts';
import { freePort } from '../../test/support/ports.ts';
import { onCpu } from './pinning.ts';

export interface BenchBackend {
  /** The name it gives in `x-backend` (when asked for one). */
  name: string | null;
  url: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Starts dist/scripts/bench/backend.js; with a `name`, its answers carry `x-backend: <name>`; with a `cpu`, it runs on
 * that CPU alone (taskset).
 */
export async function startBenchBackend(name: string | null = null, options: { cpu?: number } = {}): Promise<BenchBackend> {
  const port = await freePort();
  const script = join(repoRoot(), 'dist', 'scripts', 'bench', 'backend.js');
  const [command, args] = onCpu(options.cpu, process.execPath, [script]);
  const child = spawn(command, args, {
    env: { ...process.env, BENCH_PORT: String(port), ...(name ? { BENCH_NAME: name } : {}) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`backend ${name ?? ''} exited with ${code} before listening`)));
  });
  child.stdout!.resume();
  return {
    name,
    url: `http://127.0.0.1:${port}`,
    child,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
