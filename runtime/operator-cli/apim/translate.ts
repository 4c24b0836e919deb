// `gatehouse import-apim`: an Azure API Management policy document (global, product, API or operation scope), or a
// policy fragment, to Gatehouse configuration. Each policy element goes through its translator (translators.ts); what
// none translates is listed with its line and left out. `<base />` is where the outer scope's policies run: Gatehouse always runs the
// outer scopes first (global, then API, then operation), so a `<base />` that is not first, or missing, is noted.

import { stringify } from 'yaml';
import { nestedLists, CONFIGURING_KEYS } from '../../config/policy-entries.ts';
import { TRANSLATORS, type Entry, type Section, type TranslateContext } from './translators.ts';
import { parseXml, XmlSyntaxError, type XmlElement } from './xml.ts';

const SECTIONS: readonly Section[] = ['inbound', 'backend', 'outbound', 'on-error'];

export interface ImportProblem {
  line: number;
  message: string;
}

/** An include-fragment the output has, with the line of its element. */
export interface ImportedInclude {
  id: string;
  line: number;
  /** The section of the policy document it is in (a fragment's includes have none: they run where it is included). */
  section?: Section;
}

/** What translating a policy document or a fragment finds besides the entries. */
export interface Translation {
  /** What was not translated (left out). */
  problems: ImportProblem[];
  /** Differences that change nothing in the output but that the reader should know. */
  notes: ImportProblem[];
  /** The fragments the entries include, each include once, in the document's order. */
  includes: ImportedInclude[];
  /** Named values (`{{name}}`) the entries refer to, kept as written: a gateway document must define them. */
  namedValues: string[];
  /** The line of the element each entry was translated from. */
  lines: Map<Entry, number>;
}

export interface ImportResult extends Translation {
  /** The chains by phase (phases without policies left out). */
  chains: Partial<Record<Section, Entry[]>>;
}

export interface FragmentImport extends Translation {
  entries: Entry[];
}

/** Translates the policy document `xml`. Throws XmlSyntaxError when it is not XML. */
export function importApimPolicy(xml: string): ImportResult {
  const root = parseXml(xml);
  if (root.name !== 'policies') {
    const hint = root.name === 'fragment' ? ' (a policy fragment is given with --fragment <id>=<file.xml> or --fragments <folder>)' : '';
    throw new XmlSyntaxError(`line ${root.line}: the root element is <${root.name}>, not <policies>${hint}`);
  }
  const found = translation();
  const chains: Partial<Record<Section, Entry[]>> = {};
  for (const element of root.children) {
    if (!(SECTIONS as readonly string[]).includes(element.name)) {
      found.problems.push({ line: element.line, message: `<${element.name}> is not a section of a policy document (inbound, backend, outbound, on-error)` });
      continue;
    }
    const section = element.name as Section;
    const base = element.children.findIndex((c) => c.name === 'base');
    if (base < 0 && element.children.length > 0) {
      found.notes.push({ line: element.line, message: `<${section}> has no <base />: APIM would not run the outer scope's ${section} policies here; Gatehouse always runs them first` });
    } else if (base > 0) {
      found.notes.push({ line: element.children[base]!.line, message: `<base /> is not first in <${section}>: Gatehouse runs the outer scope's policies before the ${base === 1 ? 'policy' : `${base} policies`} written above it` });
    }
    const entries = translateChain(element.children, section, found);
    if (entries.length > 0) chains[section] = entries;
  }
  return { ...finish(found, Object.entries(chains).map(([section, entries]) => ({ section: section as Section, entries }))), chains };
}

/** An APIM policy fragment (`<fragment>` and its policies), parsed. Throws XmlSyntaxError when it is not one. */
export function parseApimFragment(xml: string): XmlElement {
  const root = parseXml(xml);
  if (root.name !== 'fragment') throw new XmlSyntaxError(`line ${root.line}: the root element is <${root.name}>, not <fragment>`);
  return root;
}

/**
 * Translates a fragment (parseApimFragment) as included in `section`: APIM inserts it as it is, so what a policy
 * becomes can depend on the section (find-and-replace's scope; the policies that run in one phase only).
 */
export function importApimFragment(root: XmlElement, section: Section): FragmentImport {
  const found = translation();
  const policies = root.children.filter((element) => {
    if (element.name === 'base') found.problems.push({ line: element.line, message: '<base /> in a fragment: APIM takes none there (the <base /> of the including document says where the outer scope\'s policies run)' });
    else if ((SECTIONS as readonly string[]).includes(element.name)) found.problems.push({ line: element.line, message: `<${element.name}> in a fragment: a fragment is a sequence of policies, included in a section (left out)` });
    else return true;
    return false;
  });
  const entries = translateChain(policies, section, found);
  return { ...finish(found, [{ entries }]), entries };
}

function translation(): Translation {
  return { problems: [], notes: [], includes: [], namedValues: [], lines: new Map() };
}

function translateChain(elements: readonly XmlElement[], section: Section, found: Translation): Entry[] {
  const ctx: TranslateContext = {
    section,
    problem: (el, message) => found.problems.push({ line: el.line, message }),
    note: (el, message) => found.notes.push({ line: el.line, message }),
    chain: (children) => chain(children, ctx, found.lines),
  };
  return chain(elements, ctx, found.lines);
}

/** `found` with what the entries of `parts` include and refer to, and its problems and notes in the order of their lines. */
function finish(found: Translation, parts: readonly { section?: Section; entries: readonly Entry[] }[]): Translation {
  const namedValues = new Set<string>();
  for (const { section, entries } of parts) {
    for (const entry of walk(entries)) {
      if (typeof entry['include-fragment'] === 'string') found.includes.push({ id: entry['include-fragment'], line: found.lines.get(entry) ?? 0, ...(section ? { section } : {}) });
      for (const key of CONFIGURING_KEYS) for (const name of namedValueRefs(entry[key])) namedValues.add(name);
    }
  }
  found.problems.sort((a, b) => a.line - b.line);
  found.notes.sort((a, b) => a.line - b.line);
  return { ...found, namedValues: [...namedValues] };
}

function chain(elements: readonly XmlElement[], ctx: TranslateContext, lines: Map<Entry, number>): Entry[] {
  const out: Entry[] = [];
  for (const element of elements) {
    if (element.name === 'base') continue;
    const translate = TRANSLATORS[element.name];
    if (!translate) {
      ctx.problem(element, `<${element.name}>: no Gatehouse policy for it (left out)`);
      continue;
    }
    const entry = translate(element, ctx);
    if (entry === null) continue;
    lines.set(entry, element.line);
    out.push(entry);
  }
  return out;
}

/** Every entry, nested ones (choose's branches, retry's and wait's policies) included. */
function* walk(entries: readonly Entry[]): Generator<Entry> {
  for (const entry of entries) {
    yield entry;
    for (const nested of nestedLists(entry, [])) yield* walk((nested.list as Entry[] | undefined) ?? []);
  }
}

/** The named values (`{{name}}`) the strings of `value` refer to. */
function* namedValueRefs(value: unknown): Generator<string> {
  if (typeof value === 'string') for (const m of value.matchAll(/\{\{([A-Za-z0-9._-]+)\}\}/g)) yield m[1]!;
  else if (Array.isArray(value)) for (const v of value) yield* namedValueRefs(v);
  else if (value !== null && typeof value === 'object') for (const v of Object.values(value)) yield* namedValueRefs(v);
}

/** The chains alone, as YAML (what goes under `policies:` of a scope). */
export function chainsYaml(chains: Partial<Record<Section, Entry[]>>): string {
  return stringify(chains, { lineWidth: 0 });
}

/** The API a whole output document declares, with the chains imported for it. */
export interface ImportedApi {
  id: string;
  path: string;
  backend: string;
  chains: Partial<Record<Section, Entry[]>>;
}

/**
 * A whole document: a gateway's (`version: 1`, served as it is) or a `gatehouse apply` file's (for the control plane),
 * with the fragments and the API. Both take `fragments:` alike, so fragments without an API are that key alone.
 */
export function documentYaml(kind: 'gateway' | 'apply', fragments: Record<string, Entry[]>, api: ImportedApi | null): string {
  const doc: Record<string, unknown> = kind === 'gateway' && api ? { version: 1 } : {};
  if (Object.keys(fragments).length > 0) doc.fragments = fragments;
  if (api) {
    const policies = Object.keys(api.chains).length > 0 ? { policies: api.chains } : {};
    doc.apis = [{ id: api.id, pathPrefix: api.path, backend: { url: api.backend }, ...policies }];
  }
  return stringify(doc, { lineWidth: 0, aliasDuplicateObjects: false });
}
