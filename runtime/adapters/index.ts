// The composition roots' choice of adapter: the one for the runtime this process runs on.

import { denoAdapter } from './deno/index.ts';
import { nodeAdapter } from './node/index.ts';
import type { RuntimeAdapter } from './runtime-adapter.ts';

export type { RuntimeAdapter } from './runtime-adapter.ts';

export const isDeno = typeof (globalThis as { Deno?: unknown }).Deno !== 'undefined';

export function runtimeAdapter(): RuntimeAdapter {
  return isDeno ? denoAdapter : nodeAdapter;
}
