// Every policy entry of a configuration document (global, API and operation scopes, every phase), with its place in
// the document. The document need not be checked yet: whatever is not shaped like a chain is skipped.

import type { DocPath } from './document-paths.ts';

export interface PolicyEntryAt {
  /** The entry itself (the document's own object: changes to it change the document). */
  entry: Record<string, unknown>;
  /** e.g. ['apis', 0, 'operations', 1, 'policies', 'inbound', 2]. */
  path: DocPath;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function* chainEntries(holder: unknown, at: DocPath): Generator<PolicyEntryAt> {
  const policies = isObject(holder) ? holder.policies : undefined;
  if (!isObject(policies)) return;
  for (const [phase, list] of Object.entries(policies)) {
    if (!Array.isArray(list)) continue;
    for (let i = 0; i < list.length; i++) {
      const entry: unknown = list[i];
      if (isObject(entry)) yield { entry, path: [...at, 'policies', phase, i] };
    }
  }
}

export function* policyEntries(doc: unknown): Generator<PolicyEntryAt> {
  yield* chainEntries(doc, []);
  const apis = isObject(doc) ? doc.apis : undefined;
  if (!Array.isArray(apis)) return;
  for (let a = 0; a < apis.length; a++) {
    yield* chainEntries(apis[a], ['apis', a]);
    const operations = isObject(apis[a]) ? (apis[a] as Record<string, unknown>).operations : undefined;
    if (!Array.isArray(operations)) continue;
    for (let o = 0; o < operations.length; o++) yield* chainEntries(operations[o], ['apis', a, 'operations', o]);
  }
}
