// Policy modules in documents from the control plane are named by content: `module: "sha256:<64 hex>"`. These walk a
// configuration document's policy entries (global, API and operation scopes, every phase) for such names.

export const MODULE_REF = /^sha256:([0-9a-f]{64})$/;

type Entry = Record<string, unknown>;

function* entries(doc: unknown): Generator<Entry> {
  const chains = (holder: unknown): Generator<Entry> =>
    (function* () {
      const policies = (holder as { policies?: unknown } | null)?.policies;
      if (!policies || typeof policies !== 'object') return;
      for (const list of Object.values(policies as Record<string, unknown>)) {
        if (Array.isArray(list)) for (const e of list) if (e && typeof e === 'object') yield e as Entry;
      }
    })();
  yield* chains(doc);
  const apis = (doc as { apis?: unknown } | null)?.apis;
  if (!Array.isArray(apis)) return;
  for (const api of apis) {
    yield* chains(api);
    const operations = (api as { operations?: unknown } | null)?.operations;
    if (Array.isArray(operations)) for (const op of operations) yield* chains(op);
  }
}

/** The sha256 digests of the modules a document names, each once. */
export function referencedModules(doc: unknown): string[] {
  const found = new Set<string>();
  for (const e of entries(doc)) {
    const m = typeof e.module === 'string' ? MODULE_REF.exec(e.module) : null;
    if (m) found.add(m[1]!);
  }
  return [...found];
}

/** Entries that name a module or source by path: files of the control plane's host mean nothing to a gateway. */
export function pathReferences(doc: unknown): string[] {
  const out: string[] = [];
  for (const e of entries(doc)) {
    if (typeof e.source === 'string') out.push(`source: ${e.source}`);
    if (typeof e.module === 'string' && !MODULE_REF.test(e.module)) out.push(`module: ${e.module}`);
  }
  return out;
}

/** Replaces each `sha256:<hex>` module name in `doc` (in place) with `file(hex)`. */
export function rewriteModuleRefs(doc: unknown, file: (sha256: string) => string): void {
  for (const e of entries(doc)) {
    const m = typeof e.module === 'string' ? MODULE_REF.exec(e.module) : null;
    if (m) e.module = file(m[1]!);
  }
}
