// Runs the operators' command, `gatehouse`, as an operator does: its launcher (what `npx gatehouse` runs) in a process
// of its own, under Node (the command is Node's, also when the suite runs under Deno).

import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { isDeno } from '../../runtime/adapters/index.ts';
import { repoRoot } from '../../runtime/assets/repo-root.ts';

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * `gatehouse <args>` with `env` added to the environment (a variable given as undefined is removed); resolves when it
 * exits (killed after `timeoutMs`).
 */
export function runGatehouse(args: string[], env: Record<string, string | undefined> = {}, timeoutMs = 60_000): Promise<CliRun> {
  const merged: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...env })) if (v !== undefined) merged[k] = v;
  const child = spawn(isDeno ? 'node' : process.execPath, [join(repoRoot(), 'bin', 'gatehouse.js'), ...args], {
    cwd: repoRoot(),
    env: merged,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve) =>
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
}
