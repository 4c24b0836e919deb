// Named values: values kept once, by name, and referenced from policy configurations as `{{name}}` (Azure API
// Management's syntax), so a key rotates in one place and a secret never appears in an API's definition.
//
// A document carries the values it uses in `namedValues`; `resolveNamedValues` puts them into the policy
// configurations before the policies are bound. Only strings inside `config` of a policy entry are substituted, and a
// substituted value is not scanned again (a value holding `{{x}}` stays literal). Values marked `secret` are masked in
// the gateway's logs (`secretValues` tells the logger what to mask): a policy may repeat its configuration in a message.

import type { DocPath } from './load.ts';
import { policyEntries } from './policy-entries.ts';

export const NAMED_VALUE_NAME = /^[A-Za-z0-9._-]{1,256}$/;
export const NAMED_VALUE_NAME_HINT = 'a named value name is letters, digits, ".", "_" and "-", at most 256 characters';
/** Longest value, as Azure API Management allows. */
export const MAX_NAMED_VALUE_LENGTH = 4096;

export interface NamedValue {
  value: string;
  /** Kept out of logs and problems, encrypted in the configuration backup, never shown back by the control plane. */
  secret?: boolean;
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
    visitStrings(entry.config, [...path, 'config'], (text, at) => {
      for (const m of text.matchAll(REFERENCE)) found.push({ name: m[1]!, path: at });
      return text;
    });
  }
  return found;
}

/**
 * Substitutes every `{{name}}` in `doc`'s policy configurations (in place) with `doc.namedValues[name].value`.
 * Returns the problems: malformed references and names that are not defined.
 */
export function resolveNamedValues(doc: { namedValues?: Record<string, NamedValue> }): { path: DocPath; message: string }[] {
  const values = doc.namedValues ?? {};
  const problems: { path: DocPath; message: string }[] = [];
  for (const { entry, path } of policyEntries(doc)) {
    if (entry.config === undefined) continue;
    entry.config = visitStrings(entry.config, [...path, 'config'], (text, at) =>
      text.replace(REFERENCE, (whole, name: string) => {
        if (!NAMED_VALUE_NAME.test(name)) {
          problems.push({ path: at, message: `${JSON.stringify(whole.slice(0, 40))} is not a named value reference (${NAMED_VALUE_NAME_HINT})` });
          return whole;
        }
        const named = Object.hasOwn(values, name) ? values[name] : undefined;
        if (!named) {
          problems.push({ path: at, message: `refers to named value "${name}", which is not defined` });
          return whole;
        }
        return named.value;
      }),
    );
  }
  return problems;
}

/**
 * The values of `doc`'s secret named values, for the logger to mask (longest first: a secret that contains another is
 * masked whole). Shorter ones than MIN_MASKED_LENGTH are left: masking "ab" everywhere would garble every line.
 */
export function secretValues(doc: { namedValues?: Record<string, NamedValue> }): string[] {
  return Object.values(doc.namedValues ?? {})
    .filter((v) => v.secret && v.value.length >= MIN_MASKED_LENGTH)
    .map((v) => v.value)
    .sort((a, b) => b.length - a.length);
}

/** Calls `edit` on every string in a tree of plain values and puts back what it returns; returns the tree. */
function visitStrings(value: unknown, path: DocPath, edit: (text: string, path: DocPath) => string): unknown {
  if (typeof value === 'string') return edit(value, path);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = visitStrings(value[i], [...path, i], edit);
    return value;
  }
  if (typeof value === 'object' && value !== null) {
    const record = value as Record<string, unknown>;
    for (const key of Object.keys(record)) record[key] = visitStrings(record[key], [...path, key], edit);
  }
  return value;
}
