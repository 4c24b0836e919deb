// What every build is made with, and what a build's cache key is made of: the compiler's version and flags. Kept apart
// from compile.ts so that deciding a build is in the cache loads neither the compiler nor the ABI's checks.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { SDK_PACKAGE } from './locations.ts';

export const SDK_LIB_PREFIX = `~lib/${SDK_PACKAGE}/`;

/**
 * The compiler flags of every build:
 * - `-O3` (optimizeLevel 3, shrinkLevel 0): handlers run on every request, so speed over size.
 * - `--runtime incremental`: the instance lives across calls; `stub` and `minimal` without `__collect()` leak until
 *   the memory cap (see the notes on AssemblyScript runtimes).
 * - `--use abort=...`: aborts go to the SDK's handler, which reports the message through `fail` and traps, so no
 *   `env.abort` import is left.
 * - `--noColors`: diagnostics are parsed, not shown on a terminal.
 * - `--debug`: keeps the name section (`policy/lookup`, `~lib/map/Map#get`), so that a trap names the policy's function
 *   in the WebAssembly stack (runtime/policy-host/errors.ts, authorFrame). Names cost nothing when the module runs.
 */
export const ASC_FLAGS: readonly string[] = [
  '-O3',
  '--runtime',
  'incremental',
  '--use',
  `abort=${SDK_LIB_PREFIX}abort/gatehouseAbort`,
  '--noColors',
  '--debug',
];

/** The AssemblyScript compiler's version, read from its package.json without loading the compiler. */
export function compilerVersion(): string {
  const entry = fileURLToPath(import.meta.resolve('assemblyscript/asc'));
  const manifest = JSON.parse(readFileSync(path.join(path.dirname(entry), '..', 'package.json'), 'utf8')) as { version: string };
  return manifest.version;
}

export function sha256(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}
