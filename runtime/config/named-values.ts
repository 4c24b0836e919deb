// Named values: values kept once, by name, and referenced from policy configurations as `{{name}}` (Azure API
// Management's syntax), so a key rotates in one place and a secret never appears in an API's definition.
//
// A document carries the values it uses in `namedValues`; `resolveNamedValues` puts them into the policy
// configurations before the policies are bound. Only strings inside `config` of a policy entry are substituted, and a
// substituted value is not scanned again (a value holding `{{x}}` stays literal). Values marked `secret` are masked in
// the gateway's logs (`secretValues` tells the logger what to mask): a policy may repeat its configuration in a message.
//
// A value being rotated may keep its previous value for an overlap (`previous: {value, until}`): until then, an entry
// of a list that refers to it is there twice, once with the current value and once with the previous one, so that a
// policy checking keys from a list (key-auth's `keys: [{id, key: "{{k}}"}]`, check-header's `values`) accepts both
// while clients move to the new one. Everywhere else the current value is used. Past `until` the previous value is not used, whenever the document is
// read (a backup read after the overlap ended); a gateway serving from a control plane gets a document without it at
// its next poll after the overlap.

import type { DocPath } from './document-paths.ts';
import { CONFIGURING_KEYS, policyEntries } from './policy-entries.ts';

export const NAMED_VALUE_NAME = /^[A-Za-z0-9._-]{1,256}$/;
export const NAMED_VALUE_NAME_HINT = 'a named value name is letters, digits, ".", "_" and "-", at most 256 characters';
/** Longest value, as Azure API Management allows. */
export const MAX_NAMED_VALUE_LENGTH = 4096;

export interface NamedValue {
  value: string;
  /** Kept out of logs and problems, encrypted in the configuration backup, never shown back by the control plane. */
  secret?: boolean;
  /** The value it replaced, still accepted in lists until `until` (ISO 8601). */
  previous?: { value: string; until: string };
}

/** The previous value of `named` while its overlap lasts at `now` (ms since the epoch), else null. */
export function previousInOverlap(named: NamedValue, now: number): string | null {
  const previous = named.previous;
  if (!previous || !(Date.parse(previous.until) > now) || previous.value === named.value) return null;
  return previous.value;
}

/** `{{...}}`: whatever is between the braces is the reference, checked against NAMED_VALUE_NAME. */
const REFERENCE = /\{\{([^{}]*)\}\}/g;

const MIN_MASKED_LENGTH = 4;

export interface NamedValueReference {
  name: string;
  /** Where: the path of the string that holds the reference. */
  path: DocPath;
}

/** Every `{{name}}` in the policy configurations of `doc`, in document order (a name may appear more than once). */
export function namedValueReferences(doc: unknown): NamedValueReference[] {
  const found: NamedValueReference[] = [];
  for (const { entry, path } of policyEntries(doc)) {
    for (const key of CONFIGURING_KEYS) {
      visitStrings(entry[key], [...path, key], (text, at) => {
        for (const m of text.matchAll(REFERENCE)) found.push({ name: m[1]!, path: at });
        return text;
      });
    }
  }
  return found;
}

/**
 * Substitutes every `{{name}}` in `doc`'s policy configurations (in place) with `doc.namedValues[name].value`; a list
 * entry that refers to a value in its overlap at `now` is followed by a copy holding the previous value instead.
 * Returns the problems: malformed references and names that are not defined.
 */
export function resolveNamedValues(doc: { namedValues?: Record<string, NamedValue> }, now = Date.now()): { path: DocPath; message: string }[] {
  const values = doc.namedValues ?? {};
  const problems: { path: DocPath; message: string }[] = [];
  const lookup = (whole: string, name: string, at: DocPath): NamedValue | null => {
    if (!NAMED_VALUE_NAME.test(name)) {
      problems.push({ path: at, message: `${JSON.stringify(whole.slice(0, 40))} is not a named value reference (${NAMED_VALUE_NAME_HINT})` });
      return null;
    }
    const named = Object.hasOwn(values, name) ? values[name] : undefined;
    if (!named) problems.push({ path: at, message: `refers to named value "${name}", which is not defined` });
    return named ?? null;
  };
  const current = (text: string, at: DocPath) => text.replace(REFERENCE, (whole, name: string) => lookup(whole, name, at)?.value ?? whole);
  // Reports nothing: the current copy, made first, reported what there is to report.
  const previous = (text: string) =>
    text.replace(REFERENCE, (whole, name: string) => {
      const named = NAMED_VALUE_NAME.test(name) && Object.hasOwn(values, name) ? values[name]! : null;
      return named ? (previousInOverlap(named, now) ?? named.value) : whole;
    });
  const inOverlap = (entry: unknown) =>
    namesIn(entry).some((name) => Object.hasOwn(values, name) && previousInOverlap(values[name]!, now) !== null);
  for (const { entry, path } of policyEntries(doc)) {
    for (const key of CONFIGURING_KEYS) {
      if (entry[key] === undefined) continue;
      entry[key] = visitStrings(entry[key], [...path, key], current, (item, at) =>
        inOverlap(item) ? [visitStrings(structuredClone(item), at, current), visitStrings(structuredClone(item), at, previous)] : null,
      );
    }
  }
  return problems;
}

/** The names referred to anywhere in a tree of plain values. */
function namesIn(value: unknown): string[] {
  const names: string[] = [];
  visitStrings(structuredClone(value), [], (text) => {
    for (const m of text.matchAll(REFERENCE)) names.push(m[1]!);
    return text;
  });
  return names;
}

/**
 * The values of `doc`'s secret named values, for the logger to mask (longest first: a secret that contains another is
 * masked whole). Shorter ones than MIN_MASKED_LENGTH are left: masking "ab" everywhere would garble every line.
 */
export function secretValues(doc: { namedValues?: Record<string, NamedValue> }): string[] {
  return Object.values(doc.namedValues ?? {})
    .filter((v) => v.secret)
    .flatMap((v) => (v.previous ? [v.value, v.previous.value] : [v.value]))
    .filter((value) => value.length >= MIN_MASKED_LENGTH)
    .sort((a, b) => b.length - a.length);
}

/**
 * Calls `edit` on every string in a tree of plain values and puts back what it returns; each entry of a list is first
 * offered to `expand`, whose entries (when it returns some) take its place. Returns the tree.
 */
function visitStrings(
  value: unknown,
  path: DocPath,
  edit: (text: string, path: DocPath) => string,
  expand?: (item: unknown, path: DocPath) => unknown[] | null,
): unknown {
  if (typeof value === 'string') return edit(value, path);
  if (Array.isArray(value)) {
    const out: unknown[] = [];
    value.forEach((item, i) => {
      const expanded = expand ? expand(item, [...path, i]) : null;
      if (expanded) out.push(...expanded);
      else out.push(visitStrings(item, [...path, i], edit, expand));
    });
    return out;
  }
  if (typeof value === 'object' && value !== null) {
    const record = value as Record<string, unknown>;
    for (const key of Object.keys(record)) record[key] = visitStrings(record[key], [...path, key], edit, expand);
  }
  return value;
}
