// Policy fragments: named lists of policy entries declared once under `fragments:` and used with
// `include-fragment: <name>` anywhere a policy entry may be (any scope, any phase, inside choose, inside another
// fragment), as Azure API Management's policy fragments are. An include names a fragment that exists, fragments do not
// include themselves (directly or through others), and what they expand to stays bounded: a fragment that includes
// another twice, which includes another twice, ... would otherwise multiply into millions of bindings.

import type { DocPath, PathProblem } from './document-paths.ts';
import { nestedLists, policyEntries } from './policy-entries.ts';

/** Entries a document's chains may expand to, fragments included (each use of a fragment counts its entries). */
export const MAX_EXPANDED_ENTRIES = 10_000;

/** A fragment's name (gateway.schema.json has the same pattern for the keys of `fragments`). */
export const FRAGMENT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
export const FRAGMENT_NAME_HINT = 'a fragment name is letters, digits, ".", "_" and "-", starting with a letter or digit, at most 128 characters';

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The include-fragment entries of a list of entries (nested ones included), with their paths. */
export function* includes(list: unknown, at: DocPath): Generator<{ name: string; path: DocPath }> {
  if (!Array.isArray(list)) return;
  for (let i = 0; i < list.length; i++) {
    const entry: unknown = list[i];
    if (!isObject(entry)) continue;
    if (typeof entry['include-fragment'] === 'string') yield { name: entry['include-fragment'], path: [...at, i, 'include-fragment'] };
    for (const nested of nestedLists(entry, [...at, i])) yield* includes(nested.list, nested.path);
  }
}

/** Entries in a list, nested ones counted, with each include counted as what its fragment expands to. */
function entryCount(list: unknown, sizeOf: (name: string) => number): number {
  if (!Array.isArray(list)) return 0;
  let n = 0;
  for (const entry of list) {
    n++;
    if (!isObject(entry)) continue;
    if (typeof entry['include-fragment'] === 'string') n += sizeOf(entry['include-fragment']);
    for (const nested of nestedLists(entry, [])) n += entryCount(nested.list, sizeOf);
  }
  return n;
}

/**
 * Fragments that include themselves, directly or through others: each circle reported once, at the include that
 * closes it (`fragment "a" includes itself: a -> b -> a`). Includes of fragments not in `fragments` are skipped.
 */
export function fragmentCycles(fragments: Record<string, unknown>): PathProblem[] {
  const known = (name: string) => Object.hasOwn(fragments, name) && Array.isArray(fragments[name]);
  const out: PathProblem[] = [];
  // A depth-first walk over the fragments, reporting the include that closes a circle.
  const state = new Map<string, 'visiting' | 'done'>();
  const walk = (name: string, trail: string[]) => {
    state.set(name, 'visiting');
    for (const inc of includes(fragments[name], ['fragments', name])) {
      if (!known(inc.name)) continue;
      const s = state.get(inc.name);
      if (s === 'visiting') {
        const circle = [...trail.slice(trail.indexOf(inc.name)), inc.name];
        out.push({ path: inc.path, message: `fragment "${inc.name}" includes itself: ${circle.join(' -> ')}` });
      } else if (s === undefined) {
        walk(inc.name, [...trail, inc.name]);
      }
    }
    state.set(name, 'done');
  };
  for (const name of Object.keys(fragments)) if (!state.has(name)) walk(name, [name]);
  return out;
}

/**
 * The fragments the policy entries of `doc` include (its `fragments` aside), directly or through the fragments they
 * include, each once, by name in order: what a document of those entries must carry. `fragment` gives a fragment's
 * entries (null: there is none, left out).
 */
export function usedFragments(doc: unknown, fragment: (name: string) => unknown[] | null): Map<string, unknown[]> {
  const found = new Map<string, unknown[] | null>();
  const pending: string[] = [];
  const use = (name: string) => {
    if (!found.has(name)) {
      found.set(name, null);
      pending.push(name);
    }
  };
  for (const { entry } of policyEntries(isObject(doc) ? { ...doc, fragments: undefined } : doc)) {
    if (typeof entry['include-fragment'] === 'string') use(entry['include-fragment']);
  }
  for (let name = pending.pop(); name !== undefined; name = pending.pop()) {
    const entries = fragment(name);
    found.set(name, entries);
    for (const inc of includes(entries, [])) use(inc.name);
  }
  const sorted = [...found].filter((f): f is [string, unknown[]] => f[1] !== null).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return new Map(sorted);
}

/** Missing fragments, cycles, and expansions past MAX_EXPANDED_ENTRIES, each at the include that causes it. */
export function fragmentProblems(data: unknown): PathProblem[] {
  if (!isObject(data)) return [];
  const fragments = isObject(data.fragments) ? data.fragments : {};
  const known = (name: string) => Object.hasOwn(fragments, name) && Array.isArray(fragments[name]);
  const out: PathProblem[] = [];
  const missing = (name: string) =>
    `no fragment "${name}" (${Object.keys(fragments).length > 0 ? `fragments: ${Object.keys(fragments).join(', ')}` : 'the document declares no fragments'})`;

  out.push(...fragmentCycles(fragments));
  const cyclic = out.length > 0;

  const every: { name: string; path: DocPath }[] = [];
  for (const name of Object.keys(fragments)) every.push(...includes(fragments[name], ['fragments', name]));
  const scopes: [unknown, DocPath][] = [[data, []]];
  if (Array.isArray(data.apis)) {
    data.apis.forEach((api, a) => {
      scopes.push([api, ['apis', a]]);
      const ops = isObject(api) ? api.operations : undefined;
      if (Array.isArray(ops)) ops.forEach((op, o) => scopes.push([op, ['apis', a, 'operations', o]]));
    });
  }
  for (const [holder, at] of scopes) {
    const policies = isObject(holder) ? holder.policies : undefined;
    if (isObject(policies)) for (const [phase, list] of Object.entries(policies)) every.push(...includes(list, [...at, 'policies', phase]));
  }
  for (const inc of every) if (!known(inc.name)) out.push({ path: inc.path, message: missing(inc.name) });
  if (cyclic) return out;

  // Sizes, memoized: without cycles each fragment's is finite.
  const sizes = new Map<string, number>();
  const sizeOf = (name: string): number => {
    if (!known(name)) return 0;
    let size = sizes.get(name);
    if (size === undefined) {
      size = Math.min(entryCount(fragments[name], sizeOf), Number.MAX_SAFE_INTEGER);
      sizes.set(name, size);
    }
    return size;
  };
  let total = 0;
  for (const [holder, at] of scopes) {
    const policies = isObject(holder) ? holder.policies : undefined;
    if (!isObject(policies)) continue;
    for (const [phase, list] of Object.entries(policies)) {
      total += entryCount(list, sizeOf);
      if (total > MAX_EXPANDED_ENTRIES) {
        out.push({
          path: [...at, 'policies', phase],
          message: `the document's chains expand to more than ${MAX_EXPANDED_ENTRIES} entries with their fragments (a fragment included many times, or fragments that include others several times)`,
        });
        return out;
      }
    }
  }
  return out;
}
