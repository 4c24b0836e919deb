// Every policy entry of a configuration document (global, API and operation scopes, every phase, the fragments, and
// the entries nested in choose branches), with its place in the document. The document need not be checked yet:
// whatever is not shaped like a chain is skipped.

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
  for (const [phase, list] of Object.entries(policies)) yield* listEntries(list, [...at, 'policies', phase]);
}

/** The entries of a list of entries, each followed by those nested in it (choose's branches and `otherwise`). */
function* listEntries(list: unknown, at: DocPath): Generator<PolicyEntryAt> {
  if (!Array.isArray(list)) return;
  for (let i = 0; i < list.length; i++) {
    const entry: unknown = list[i];
    if (!isObject(entry)) continue;
    yield { entry, path: [...at, i] };
    if (Array.isArray(entry.choose)) {
      for (let b = 0; b < entry.choose.length; b++) {
        const branch: unknown = entry.choose[b];
        if (isObject(branch)) yield* listEntries(branch.policies, [...at, i, 'choose', b, 'policies']);
      }
    }
    yield* listEntries(entry.otherwise, [...at, i, 'otherwise']);
  }
}

export function* policyEntries(doc: unknown): Generator<PolicyEntryAt> {
  const fragments = isObject(doc) ? doc.fragments : undefined;
  if (isObject(fragments)) for (const [name, list] of Object.entries(fragments)) yield* listEntries(list, ['fragments', name]);
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
