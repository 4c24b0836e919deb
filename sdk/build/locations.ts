// Where the build finds the SDK's AssemblyScript library and keeps its cache. The SDK locates them from its own files
// (import.meta.url: sdk/build/ in the sources, dist/chunks/ once bundled), then from the working directory; it needs
// nothing of the runtime's.

import { readFileSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { PolicyBuildError } from './diagnostics.ts';

/** The SDK's package name: what policies import, and what names the SDK's folder. */
export const SDK_PACKAGE = '@gatehouse/policy-sdk';
/** The repository's package name, which names its root. */
const REPO_PACKAGE = 'gatehouse';

const here = path.dirname(fileURLToPath(import.meta.url));

function packageName(dir: string): string | null {
  try {
    const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: unknown };
    return typeof pkg?.name === 'string' ? pkg.name : null;
  } catch {
    return null;
  }
}

/** The nearest folder at or above `start` that `matches`, or null. */
function findUp(start: string, matches: (dir: string) => boolean): string | null {
  for (let dir = path.resolve(start); ; dir = path.dirname(dir)) {
    if (matches(dir)) return dir;
    if (path.dirname(dir) === dir) return null;
  }
}

/** The SDK's `assembly/` folder, the AssemblyScript side of `@gatehouse/policy-sdk`. */
export function sdkAssemblyDir(): string {
  // The SDK's folder is above this file (the sources, or the SDK installed as a package), or it is the `sdk/` of a
  // checkout above it (this file bundled into dist/) or above the working directory.
  for (const start of [here, process.cwd()]) {
    const found = findUp(start, (dir) => packageName(dir) === SDK_PACKAGE || packageName(path.join(dir, 'sdk')) === SDK_PACKAGE);
    if (found) return packageName(found) === SDK_PACKAGE ? path.join(found, 'assembly') : path.join(found, 'sdk', 'assembly');
  }
  for (const from of [here, process.cwd()]) {
    try {
      const pkg = createRequire(path.join(from, 'noop.js')).resolve(`${SDK_PACKAGE}/package.json`);
      return path.join(path.dirname(realpathSync(pkg)), 'assembly');
    } catch {
      // not installed there
    }
  }
  throw new PolicyBuildError(`cannot find the ${SDK_PACKAGE} sources (looked up from ${here})`);
}

/** The default build cache: `<repo root>/.cache/policy-builds` (a temp folder outside a checkout). */
export function defaultCacheDir(): string {
  const isRoot = (dir: string) => packageName(dir) === REPO_PACKAGE;
  const root = findUp(here, isRoot) ?? findUp(process.cwd(), isRoot);
  return root ? path.join(root, '.cache', 'policy-builds') : path.join(tmpdir(), 'gatehouse-policy-builds');
}
