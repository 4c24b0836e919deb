// Bounds on what reading a configuration document may cost. Documents come from files and from control planes, and a
// gateway parses them on the thread that serves requests: a document that is huge, nested thousands deep or made to
// hit a slow path of the parser would stall serving (or overflow the stack) instead of being rejected. Each bound is far
// beyond what a real configuration needs; going past one is a problem like any other, reported with where it is.

import { isAlias, isMap, isPair, isScalar, isSeq, type Document, type Node } from 'yaml';

/** A document larger than this is refused before it is parsed: the parser reads about 1 MB a second (measured). */
export const MAX_DOCUMENT_BYTES = 2 * 1024 * 1024;

/** Maps and lists nested deeper than this are refused (a real configuration nests about 10 deep). */
export const MAX_NESTING = 64;

/** Problems listed in one rejection; the rest are counted. */
export const MAX_PROBLEMS = 100;

/** Alias expansions a YAML document may make (the `yaml` package's default is 100 as well). */
export const MAX_ALIAS_COUNT = 100;

/** Where a key was given twice: the offset of the second one. */
export interface DuplicateKey {
  offset: number;
}

/**
 * Keys given twice in one map, in document order. The `yaml` package can find them itself, but compares every new key
 * with all the keys before it: a map of 20,000 keys took 9 s, one of 100,000 did not finish in 5 minutes. This is one
 * pass with a set per map. Keys compare as the package compares them: scalars by value (`a` and `"a"` are the same
 * key, `1` and `"1"` are not), other keys never.
 */
export function duplicateKeys(doc: Document): DuplicateKey[] {
  const found: DuplicateKey[] = [];
  const pending: unknown[] = [doc.contents];
  while (pending.length > 0) {
    const node = pending.pop();
    if (isMap(node)) {
      const seen = new Set<unknown>();
      for (const pair of node.items) {
        if (isScalar(pair.key)) {
          if (seen.has(pair.key.value)) found.push({ offset: pair.key.range?.[0] ?? 0 });
          else seen.add(pair.key.value);
        }
        pending.push(pair.key, pair.value);
      }
    } else if (isSeq(node)) {
      pending.push(...node.items);
    } else if (isPair(node)) {
      pending.push(node.key, node.value);
    }
  }
  return found.sort((a, b) => a.offset - b.offset);
}

/** The offset of the first node nested deeper than MAX_NESTING in a parsed YAML document, or null. Aliases are not followed. */
export function tooDeepNode(doc: Document): number | null {
  const pending: { node: unknown; depth: number }[] = [{ node: doc.contents, depth: 0 }];
  while (pending.length > 0) {
    const { node, depth } = pending.pop()!;
    if (!isMap(node) && !isSeq(node)) continue;
    if (depth >= MAX_NESTING) return (node as Node).range?.[0] ?? 0;
    for (const item of node.items) {
      if (isPair(item)) pending.push({ node: item.key, depth: depth + 1 }, { node: item.value, depth: depth + 1 });
      else if (!isAlias(item)) pending.push({ node: item, depth: depth + 1 });
    }
  }
  return null;
}

/** Whether plain data (JSON.parse's, or YAML with its aliases expanded) nests deeper than MAX_NESTING. */
export function nestsTooDeep(data: unknown): boolean {
  const pending: { value: unknown; depth: number }[] = [{ value: data, depth: 0 }];
  while (pending.length > 0) {
    const { value, depth } = pending.pop()!;
    if (typeof value !== 'object' || value === null) continue;
    if (depth >= MAX_NESTING) return true;
    for (const child of Array.isArray(value) ? value : Object.values(value)) pending.push({ value: child, depth: depth + 1 });
  }
  return false;
}
