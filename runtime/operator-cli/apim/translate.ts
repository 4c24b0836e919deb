// `gatehouse import-apim`: an Azure API Management policy document (global, product, API or operation scope) to
// Gatehouse configuration. Each policy element goes through its translator (translators.ts); what none translates is
// listed with its line and left out. `<base />` is where the outer scope's policies run: Gatehouse always runs the
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

export interface ImportResult {
  /** The chains by phase (phases without policies left out). */
  chains: Partial<Record<Section, Entry[]>>;
  /** What was not translated (left out). */
  problems: ImportProblem[];
  /** Differences that change nothing in the output but that the reader should know. */
  notes: ImportProblem[];
  /** Fragments the chains include. */
  fragments: string[];
  /** Named values (`{{name}}`) the chains refer to, kept as written: a gateway document must define them. */
  namedValues: string[];
}

/** Translates the policy document `xml`. Throws XmlSyntaxError when it is not XML. */
export function importApimPolicy(xml: string): ImportResult {
  const root = parseXml(xml);
  const problems: ImportProblem[] = [];
  const notes: ImportProblem[] = [];
  const fragments = new Set<string>();
  const namedValues = new Set<string>();
  if (root.name !== 'policies') throw new XmlSyntaxError(`line ${root.line}: the root element is <${root.name}>, not <policies>`);
  const chains: Partial<Record<Section, Entry[]>> = {};
  for (const element of root.children) {
    if (!(SECTIONS as readonly string[]).includes(element.name)) {
      problems.push({ line: element.line, message: `<${element.name}> is not a section of a policy document (inbound, backend, outbound, on-error)` });
      continue;
    }
    const section = element.name as Section;
    const base = element.children.findIndex((c) => c.name === 'base');
    if (base < 0 && element.children.length > 0) {
      notes.push({ line: element.line, message: `<${section}> has no <base />: APIM would not run the outer scope's ${section} policies here; Gatehouse always runs them first` });
    } else if (base > 0) {
      notes.push({ line: element.children[base]!.line, message: `<base /> is not first in <${section}>: Gatehouse runs the outer scope's policies before the ${base === 1 ? 'policy' : `${base} policies`} written above it` });
    }
    const ctx: TranslateContext = {
      section,
      problem: (el, message) => problems.push({ line: el.line, message }),
      note: (el, message) => notes.push({ line: el.line, message }),
      chain: (elements) => chain(elements, ctx),
    };
    const entries = chain(element.children, ctx);
    for (const entry of walk(entries)) {
      if (typeof entry['include-fragment'] === 'string') fragments.add(entry['include-fragment']);
      for (const key of CONFIGURING_KEYS) for (const name of namedValueRefs(entry[key])) namedValues.add(name);
    }
    if (entries.length > 0) chains[section] = entries;
  }
  problems.sort((a, b) => a.line - b.line);
  notes.sort((a, b) => a.line - b.line);
  return { chains, problems, notes, fragments: [...fragments], namedValues: [...namedValues] };
}

function chain(elements: readonly XmlElement[], ctx: TranslateContext): Entry[] {
  const out: Entry[] = [];
  for (const element of elements) {
    if (element.name === 'base') continue;
    const translate = TRANSLATORS[element.name];
    if (!translate) {
      ctx.problem(element, `<${element.name}>: no Gatehouse policy for it (left out)`);
      continue;
    }
    const entry = translate(element, ctx);
    if (entry !== null) out.push(entry);
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
export function chainsYaml(result: ImportResult): string {
  return stringify(result.chains, { lineWidth: 0 });
}

/** A complete gateway document serving one API with the imported chains. */
export function gatewayYaml(result: ImportResult, api: { id: string; path: string; backend: string }): string {
  const doc = {
    version: 1,
    apis: [{ id: api.id, pathPrefix: api.path, backend: { url: api.backend }, ...(Object.keys(result.chains).length > 0 ? { policies: result.chains } : {}) }],
  };
  return stringify(doc, { lineWidth: 0 });
}
