// APIM policy fragments imported with the policy document that includes them. APIM keeps shared policies in
// fragments: `<fragment>` documents holding a sequence of policies (no sections, no `<base />`), inserted as they are
// where a document says `<include-fragment fragment-id="..."/>`. They come one file per fragment, named by its id, or
// as a folder of `<id>.xml` files or of `<id>/policy.xml` folders (the layout APIOps' extractor writes).
//
// What a policy becomes can depend on the section it runs in (find-and-replace's scope, the policies that run in one
// phase only), and a Gatehouse fragment is one list: each fragment is translated in every section the policy document
// (directly, or through other fragments) includes it in, and a fragment that would differ between them is reported.
// A fragment no document given includes is translated in the section where it has the fewest problems, as the control
// plane checks a fragment nothing includes. Circles of includes are reported at the include that closes them, which is
// left out, so that the output loads; includes of fragments not given are listed for the command to report.

import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { DocPath } from '../../config/document-paths.ts';
import { fragmentNesting } from '../../config/fragments.ts';
import { importApimFragment, importApimPolicy, parseApimFragment, type FragmentImport, type ImportedInclude, type ImportProblem } from './translate.ts';
import type { Entry, Section } from './translators.ts';
import { XmlSyntaxError, type XmlElement } from './xml.ts';

const SECTIONS: readonly Section[] = ['inbound', 'backend', 'outbound', 'on-error'];

/** A problem or note of one of the files imported (line 0: the file as a whole). */
export interface SourceProblem extends ImportProblem {
  file: string;
}

/** A file to import: the policy document, or a fragment with its id. */
export interface ApimSource {
  file: string;
  xml: string;
}

export interface FragmentSource extends ApimSource {
  id: string;
}

export interface ApimImport {
  /** The policy document's chains by phase; null when only fragments were imported. */
  chains: Partial<Record<Section, Entry[]>> | null;
  /** Each fragment given, translated, by id (in order). */
  fragments: Record<string, Entry[]>;
  /** What was not translated (left out). */
  problems: SourceProblem[];
  /** Differences that change nothing in the output but that the reader should know. */
  notes: SourceProblem[];
  /** Includes of fragments that were not given, where they are. */
  notGiven: (ImportedInclude & { file: string })[];
  /** Named values (`{{name}}`) the chains and fragments refer to. */
  namedValues: string[];
  /** Orders problems as `problems` and `notes` are: by file (the policy document, then the fragments by id), by line. */
  order: (a: SourceProblem, b: SourceProblem) => number;
}

/** The fragments of `folder`: each `<id>.xml`, and each `<id>/policy.xml`, by id. */
export async function fragmentsIn(folder: string): Promise<{ id: string; file: string }[]> {
  const found: { id: string; file: string }[] = [];
  for (const entry of await readdir(folder, { withFileTypes: true })) {
    if (entry.isFile() && /\.xml$/i.test(entry.name)) found.push({ id: entry.name.slice(0, -'.xml'.length), file: join(folder, entry.name) });
    else if (entry.isDirectory()) {
      const file = join(folder, entry.name, 'policy.xml');
      if (await stat(file).then((s) => s.isFile(), () => false)) found.push({ id: entry.name, file });
    }
  }
  return found.sort(byId);
}

const byId = (a: { id: string }, b: { id: string }) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/**
 * Translates the policy document (when there is one) and the fragments. Throws XmlSyntaxError naming the file when one
 * is not XML, or not a policy document or fragment.
 */
export function importApimDocuments(policy: ApimSource | null, given: readonly FragmentSource[]): ApimImport {
  const problems: SourceProblem[] = [];
  const notes: SourceProblem[] = [];
  const includes: (ImportedInclude & { file: string })[] = [];
  const namedValues = new Set<string>();
  const add = (file: string, found: { problems: ImportProblem[]; notes: ImportProblem[]; includes: ImportedInclude[]; namedValues: string[] }) => {
    problems.push(...found.problems.map((p) => ({ file, ...p })));
    notes.push(...found.notes.map((p) => ({ file, ...p })));
    includes.push(...found.includes.map((i) => ({ file, ...i })));
    for (const name of found.namedValues) namedValues.add(name);
  };

  const roots = new Map<string, { file: string; root: XmlElement }>();
  for (const f of [...given].sort(byId)) roots.set(f.id, { file: f.file, root: parsed(f.file, () => parseApimFragment(f.xml)) });

  // The sections each fragment runs in: those of the includes reaching it.
  const sections = new Map<string, Set<Section>>();
  const pending: [string, Section][] = [];
  let chains: ApimImport['chains'] = null;
  if (policy) {
    const result = parsed(policy.file, () => importApimPolicy(policy.xml));
    chains = result.chains;
    add(policy.file, result);
    for (const inc of result.includes) pending.push([inc.id, inc.section!]);
  }
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [id, section] = next;
    const fragment = roots.get(id);
    const seen = sections.get(id) ?? new Set<Section>();
    if (!fragment || seen.has(section)) continue;
    sections.set(id, seen.add(section));
    for (const inner of includedIds(fragment.root)) pending.push([inner, section]);
  }

  const fragments: Record<string, Entry[]> = {};
  const lines = new Map<Entry, number>();
  for (const [id, { file, root }] of roots) {
    const translated = fragmentIn(root, sections.get(id));
    fragments[id] = translated.entries;
    for (const [entry, line] of translated.lines) lines.set(entry, line);
    add(file, translated);
  }

  // Circles (each at the include that closes it, left out) and nesting deeper than a gateway takes.
  const leftOut: { list: Entry[]; index: number }[] = [];
  for (const p of fragmentNesting(fragments)) {
    const [, id, ...inFragment] = p.path as [string, string, ...DocPath];
    const { file, root } = roots.get(id)!;
    if (inFragment.length === 0) {
      problems.push({ file, line: root.line, message: p.message });
      continue;
    }
    const list = valueAt(fragments[id], inFragment.slice(0, -2)) as Entry[];
    const index = inFragment.at(-2) as number;
    problems.push({ file, line: lines.get(list[index]!) ?? root.line, message: `${p.message} (this include is left out)` });
    leftOut.push({ list, index });
  }
  for (const { list, index } of leftOut.sort((a, b) => b.index - a.index)) list.splice(index, 1);

  // By file (the policy document, then the fragments by id), then by line.
  const files = [...(policy ? [policy.file] : []), ...[...roots.values()].map((r) => r.file)];
  const order = (a: SourceProblem, b: SourceProblem) => files.indexOf(a.file) - files.indexOf(b.file) || a.line - b.line;
  return {
    chains,
    fragments,
    problems: problems.sort(order),
    notes: notes.sort(order),
    order,
    notGiven: includes.filter((i) => !roots.has(i.id)),
    namedValues: [...namedValues],
  };
}

/** The fragment translated for the sections it is included in (`used`), or for the one it fits best when none. */
function fragmentIn(root: XmlElement, used: ReadonlySet<Section> | undefined): FragmentImport {
  const tried = SECTIONS.filter((s) => !used || used.has(s)).map((section) => ({ section, result: importApimFragment(root, section) }));
  const differing = (kept: { result: FragmentImport }) => tried.filter((t) => !isDeepStrictEqual(t.result.entries, kept.result.entries)).map((t) => `<${t.section}>`);
  if (!used) {
    const best = tried.reduce((a, b) => (b.result.problems.length < a.result.problems.length ? b : a));
    const others = differing(best);
    if (others.length > 0) {
      best.result.notes.push({ line: root.line, message: `no policy document given here includes this fragment: translated as included in <${best.section}>, where it has the fewest problems (it translates differently in ${others.join(', ')})` });
    }
    return best.result;
  }
  // Included in several sections: what any of them finds is reported once, and the first section's entries kept.
  const [kept] = tried;
  const seen = new Set<string>();
  const once = (list: ImportProblem[]) =>
    list.filter((p) => {
      const key = `${p.line}\u0000${p.message}`;
      return seen.has(key) ? false : (seen.add(key), true);
    });
  const problems = once(tried.flatMap((t) => t.result.problems));
  seen.clear();
  const notes = once(tried.flatMap((t) => t.result.notes));
  const others = differing(kept!);
  if (others.length > 0) {
    problems.unshift({
      line: root.line,
      message: `this fragment is included in <${kept!.section}> and ${others.join(', ')}, and translates differently there (a policy that depends on its section): a Gatehouse fragment is one list, the <${kept!.section}> translation is kept`,
    });
  }
  return { ...kept!.result, problems: problems.sort((a, b) => a.line - b.line), notes: notes.sort((a, b) => a.line - b.line) };
}

/** The ids of the include-fragment elements in `element`, at any depth. */
function* includedIds(element: XmlElement): Generator<string> {
  for (const child of element.children) {
    const id = child.name === 'include-fragment' ? child.attributes.get('fragment-id') : undefined;
    if (id !== undefined) yield id;
    yield* includedIds(child);
  }
}

function valueAt(value: unknown, path: DocPath): unknown {
  return path.reduce<unknown>((v, key) => (v as Record<string | number, unknown>)[key], value);
}

/** `parse()`, with the file named in what it throws. */
function parsed<T>(file: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    if (err instanceof XmlSyntaxError) throw new XmlSyntaxError(`${file}: ${err.message}`);
    throw err;
  }
}
