// Policy fragments: named lists of policy entries declared once under `fragments:` and used with
// `include-fragment: <name>` anywhere a policy entry may be (any scope, any phase, inside choose, inside another
// fragment), as Azure API Management's policy fragments are. An include names a fragment that exists, fragments do not
// include themselves (directly or through others), and what they expand to stays bounded: a fragment that includes
// another twice, which includes another twice, ... would otherwise multiply into millions of bindings. Fragments nest
// through includes at most MAX_FRAGMENT_DEPTH deep: what walks them (counting, binding) goes down that deep, and a chain
// of thousands would exhaust the stack. The walk that finds circles and depths keeps its own stack for that reason.

import type { DocPath, PathProblem } from './document-paths.ts';
import { nestedLists, policyEntries } from './policy-entries.ts';

/** Entries a document's chains may expand to, fragments included (each use of a fragment counts its entries). */
export const MAX_EXPANDED_ENTRIES = 10_000;

/** Fragments in a chain of includes (a includes b includes c: 3). */
export const MAX_FRAGMENT_DEPTH = 32;

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
 * closes it (`fragment "a" includes itself: a -> b -> a`). Without circles, fragments nested through includes deeper
 * than MAX_FRAGMENT_DEPTH, reported once, at the deepest. Includes of fragments not in `fragments` are skipped.
 */
export function fragmentNesting(fragments: Record<string, unknown>): PathProblem[] {
  const known = (name: string) => Object.hasOwn(fragments, name) && Array.isArray(fragments[name]);
  const out: PathProblem[] = [];
  // A depth-first walk with a stack of its own; `depth` of a fragment is known once it is done.
  const state = new Map<string, 'visiting' | 'done'>();
  const depth = new Map<string, number>();
  for (const root of Object.keys(fragments)) {
    if (state.has(root) || !known(root)) continue;
    const open = (name: string) => {
      state.set(name, 'visiting');
      return { name, next: includes(fragments[name], ['fragments', name]), deepest: 0 };
    };
    const stack = [open(root)];
    while (stack.length > 0) {
      const top = stack.at(-1)!;
      const step = top.next.next();
      if (step.done) {
        stack.pop();
        state.set(top.name, 'done');
        depth.set(top.name, top.deepest + 1);
        const parent = stack.at(-1);
        if (parent) parent.deepest = Math.max(parent.deepest, top.deepest + 1);
        continue;
      }
      const inc = step.value;
      if (!known(inc.name)) continue;
      const s = state.get(inc.name);
      if (s === 'visiting') {
        const trail = stack.map((f) => f.name);
        out.push({ path: inc.path, message: `fragment "${inc.name}" includes itself: ${[...trail.slice(trail.indexOf(inc.name)), inc.name].join(' -> ')}` });
      } else if (s === 'done') {
        top.deepest = Math.max(top.deepest, depth.get(inc.name)!);
      } else {
        stack.push(open(inc.name));
      }
    }
  }
  if (out.length > 0) return out;
  const [deepest, most] = [...depth].reduce((a, b) => (b[1] > a[1] ? b : a), ['', 0]);
  if (most > MAX_FRAGMENT_DEPTH) {
    out.push({ path: ['fragments', deepest], message: `fragment "${deepest}" nests fragments ${most} deep through include-fragment (at most ${MAX_FRAGMENT_DEPTH})` });
  }
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

  out.push(...fragmentNesting(fragments));
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
