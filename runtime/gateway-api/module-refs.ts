// Policy modules in documents from the control plane are named by content: `module: "sha256:<64 hex>"`. These walk a
// configuration document's policy entries (global, API and operation scopes, every phase) for such names.

import { policyEntries } from '../config/policy-entries.ts';

export const MODULE_REF = /^sha256:([0-9a-f]{64})$/;

/** The sha256 digests of the modules a document names, each once. */
export function referencedModules(doc: unknown): string[] {
  const found = new Set<string>();
  for (const { entry: e } of policyEntries(doc)) {
    const m = typeof e.module === 'string' ? MODULE_REF.exec(e.module) : null;
    if (m) found.add(m[1]!);
  }
  return [...found];
}

/** Replaces each `sha256:<hex>` module name in `doc` (in place) with `file(hex)`. */
export function rewriteModuleRefs(doc: unknown, file: (sha256: string) => string): void {
  for (const { entry: e } of policyEntries(doc)) {
    const m = typeof e.module === 'string' ? MODULE_REF.exec(e.module) : null;
    if (m) e.module = file(m[1]!);
  }
}
