// Policy fragments: named lists of policy entries declared once under `fragments:` and used with
// `include-fragment: <name>` anywhere a policy entry may be (any scope, any phase, inside choose, inside another
// fragment), as Azure API Management's policy fragments are. An include names a fragment that exists, fragments do not
// include themselves (directly or through others), and what they expand to stays bounded: a fragment that includes
// another twice, which includes another twice, ... would otherwise multiply into millions of bindings.

import type { DocPath, PathProblem } from './document-paths.ts';
import { nestedLists } from './policy-entries.ts';

/** Entries a document's chains may expand to, fragments included (each use of a fragment counts its entries). */
export const MAX_EXPANDED_ENTRIES = 10_000;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The include-fragment entries of a list of entries (nested ones included), with their paths. */
function* includes(list: unknown, at: DocPath): Generator<{ name: string; path: DocPath }> {
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

/** Missing fragments, cycles, and expansions past MAX_EXPANDED_ENTRIES, each at the include that causes it. */
export function fragmentProblems(data: unknown): PathProblem[] {
  if (!isObject(data)) return [];
  const fragments = isObject(data.fragments) ? data.fragments : {};
  const known = (name: string) => Object.hasOwn(fragments, name) && Array.isArray(fragments[name]);
  const out: PathProblem[] = [];
  const missing = (name: string) =>
    `no fragment "${name}" (${Object.keys(fragments).length > 0 ? `fragments: ${Object.keys(fragments).join(', ')}` : 'the document declares no fragments'})`;

  // Cycles: a depth-first walk over the fragments, reporting the include that closes a circle.
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
