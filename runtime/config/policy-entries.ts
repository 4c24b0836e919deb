// Every policy entry of a configuration document (global, API and operation scopes, every phase, the fragments, and
// the entries nested in choose branches, retry and wait), with its place in the document. The document need not be checked yet:
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

/**
 * The parts of an entry that configure what it does, whose strings may refer to named values (`{{name}}`): a
 * policy's `config`, and send-request's own settings (a header with a secret token).
 */
export const CONFIGURING_KEYS = ['config', 'send-request', 'send-one-way-request'] as const;

/** The host steps that hold lists of entries under `policies` (besides choose's branches). */
export const WRAPPING_STEPS = ['retry', 'wait'] as const;

/**
 * The lists of entries nested in one entry, with their paths: choose's branches, `otherwise`, and the `policies` of
 * retry and wait. Every walk over a document's entries goes through here, so that none misses a kind of nesting.
 */
export function* nestedLists(entry: Record<string, unknown>, at: DocPath): Generator<{ list: unknown; path: DocPath }> {
  if (Array.isArray(entry.choose)) {
    for (let b = 0; b < entry.choose.length; b++) {
      const branch: unknown = entry.choose[b];
      if (isObject(branch)) yield { list: branch.policies, path: [...at, 'choose', b, 'policies'] };
    }
  }
  if (entry.otherwise !== undefined) yield { list: entry.otherwise, path: [...at, 'otherwise'] };
  for (const step of WRAPPING_STEPS) {
    const body: unknown = entry[step];
    if (isObject(body)) yield { list: body.policies, path: [...at, step, 'policies'] };
  }
}

/** The entries of a list of entries, each followed by those nested in it. */
function* listEntries(list: unknown, at: DocPath): Generator<PolicyEntryAt> {
  if (!Array.isArray(list)) return;
  for (let i = 0; i < list.length; i++) {
    const entry: unknown = list[i];
    if (!isObject(entry)) continue;
    yield { entry, path: [...at, i] };
    for (const nested of nestedLists(entry, [...at, i])) yield* listEntries(nested.list, nested.path);
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
