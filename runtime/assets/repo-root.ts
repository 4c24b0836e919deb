// Finds the repository root from wherever the code runs (sources under Deno, bundles in dist/ under Node).

import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
let cached: string | null = null;

function packageName(dir: string): string | null {
  try {
    return (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string }).name ?? null;
  } catch {
    return null;
  }
}

/** The nearest folder at or above `start` whose package.json is named "gatehouse", or null. */
export function findRepoRoot(start: string = here): string | null {
  for (let dir = resolve(start); ; dir = dirname(dir)) {
    if (packageName(dir) === 'gatehouse') return dir;
    if (dirname(dir) === dir) return null;
  }
}

export function repoRoot(): string {
  cached ??= findRepoRoot();
  if (!cached) throw new Error('cannot find the Gatehouse repository root (package.json named "gatehouse")');
  return cached;
}
