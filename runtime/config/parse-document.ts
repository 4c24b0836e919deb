// Reads the gateway configuration document (YAML, or JSON for `.json` files), checks it against
// gateway.schema.json and then for what a schema cannot say (unique ids, overlapping routes, URL templates), and
// reports every problem at once, each with the file, the line when known, and the path in the document.
//
// YAML is parsed with the `yaml` package: well kept, YAML 1.2 (so `no` stays a string and `0o17` is the only octal),
// duplicate keys are errors, and it keeps node positions, which become line numbers in problems.
//
// One job per file: the place of a problem (document-paths.ts), JSON syntax errors (json-syntax-error.ts), the schema
// (schema-problems.ts), what the schema cannot say (semantic-checks.ts), named values (named-values.ts); this file
// reads the text and puts their problems together.

import { Buffer } from 'node:buffer';
import { readFile } from 'node:fs/promises';
import { LineCounter, parseDocument } from 'yaml';

import { ConfigError, oneLine, type LocatedProblem } from './config-error.ts';
import { MAX_ALIAS_COUNT, MAX_DOCUMENT_BYTES, MAX_NESTING, MAX_PROBLEMS, duplicateKeys, nestsTooDeep, tooDeepNode } from './document-limits.ts';
import { formatPath, rememberLocator, yamlLocator, type DocPath, type Locator } from './document-paths.ts';
import { jsonSyntaxError } from './json-syntax-error.ts';
import { resolveNamedValues } from './named-values.ts';
import { schemaProblems } from './schema-problems.ts';
import { semanticProblems } from './semantic-checks.ts';
import type { GatewayDocument } from './types.ts';


/** A copy of a tree of plain values in which no object appears twice. */
function unshare(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(unshare);
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, unshare(v)]));
  }
  return value;
}

/**
 * Parses and checks a configuration document. `sourceName` names it in problems (a file path, usually) and picks the
 * syntax: JSON for names ending in `.json`, YAML otherwise. Throws ConfigError listing every problem.
 */
export function parseGatewayDocument(text: string, sourceName: string): GatewayDocument {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const wholeDocument = `${sourceName}: (document)`;
  if (text.length > MAX_DOCUMENT_BYTES / 3 && Buffer.byteLength(text, 'utf8') > MAX_DOCUMENT_BYTES) {
    const size = Buffer.byteLength(text, 'utf8');
    throw new ConfigError(
      [{ where: wholeDocument, message: `is ${size} bytes long; a configuration document may be at most ${MAX_DOCUMENT_BYTES} bytes (2 MiB)` }],
      `${sourceName} is too large`,
    );
  }
  // `line` orders the problems; 0 when unknown. Past MAX_PROBLEMS they are only counted (and not located: finding
  // the line of each of 100,000 unknown keys would itself take long).
  const problems: (LocatedProblem & { line: number })[] = [];
  let unlisted = 0;
  const syntaxProblem = (line: number, column: number, message: string) => {
    if (problems.length >= MAX_PROBLEMS) unlisted++;
    else problems.push({ where: `${sourceName}:${line}:${column}`, message: oneLine(message), line });
  };
  const rejectWith = (summary: string) => {
    const listed = problems.map(({ where, message }) => ({ where, message }));
    if (unlisted > 0) listed.push({ where: wholeDocument, message: `and ${unlisted} more problems, not listed` });
    return new ConfigError(listed, summary);
  };

  const lines = new LineCounter();
  // Files and control planes are read as UTF-8, which turns bytes that are not UTF-8 into U+FFFD: one in a document is
  // such bytes (a real configuration has no use for the replacement character), and they would end up in a header
  // value or a secret as something nobody wrote.
  const notUtf8 = text.indexOf('\ufffd');
  if (notUtf8 >= 0) {
    const lineStart = text.lastIndexOf('\n', notUtf8 - 1) + 1;
    let line = 1;
    for (let nl = text.indexOf('\n'); nl >= 0 && nl < notUtf8; nl = text.indexOf('\n', nl + 1)) line++;
    syntaxProblem(line, notUtf8 - lineStart + 1, 'bytes that are not UTF-8 (read as U+FFFD): a configuration document must be UTF-8');
    throw rejectWith(`${sourceName} is not UTF-8`);
  }
  // Duplicate keys are found by duplicateKeys(), in one pass: the package's own check is quadratic in a map's size.
  const yamlDoc = parseDocument(text, { lineCounter: lines, prettyErrors: true, version: '1.2', merge: true, uniqueKeys: false });
  const duplicateKeyProblems = () => {
    for (const { offset } of duplicateKeys(yamlDoc)) {
      const pos = lines.linePos(offset);
      syntaxProblem(pos.line, pos.col, 'duplicate key');
    }
  };
  let data: unknown;
  if (/\.json$/i.test(sourceName)) {
    try {
      data = JSON.parse(text);
    } catch (err) {
      const found = jsonSyntaxError(text) ?? { offset: text.length, message: (err as Error).message };
      const { line, col } = lines.linePos(found.offset);
      syntaxProblem(line, col, `not valid JSON: ${found.message}`);
      throw rejectWith(`${sourceName} is not valid JSON`);
    }
    // The YAML reading of the same text gives positions, and duplicate keys (JSON.parse keeps the last silently).
    duplicateKeyProblems();
  } else {
    for (const e of [...yamlDoc.errors, ...yamlDoc.warnings]) {
      const pos = e.linePos?.[0] ?? lines.linePos(e.pos[0]);
      // The message's first line, without the position (it is in `where`) and the source excerpt after it.
      const message = (e.message.split('\n')[0] ?? e.message).replace(/ at line \d+, column \d+:?$/, '');
      // The parser recurses into flow collections: thousands of `[` end its stack before MAX_NESTING is checked.
      syntaxProblem(pos.line, pos.col, /call stack/i.test(message) ? `nested too deeply (at most ${MAX_NESTING} levels)` : message);
    }
    duplicateKeyProblems();
    if (problems.length > 0) throw rejectWith(`${sourceName} is not valid YAML`);
    const deep = tooDeepNode(yamlDoc);
    if (deep !== null) {
      const pos = lines.linePos(deep);
      syntaxProblem(pos.line, pos.col, `nested too deeply (at most ${MAX_NESTING} levels of maps and lists)`);
      throw rejectWith(`${sourceName} is not a valid gateway configuration`);
    }
    try {
      // Aliases give shared objects; each place gets its own copy (policy configurations get defaults filled in).
      data = unshare(yamlDoc.toJS({ maxAliasCount: MAX_ALIAS_COUNT }));
    } catch (err) {
      // The package refuses an alias expanded more than maxAliasCount times (a "billion laughs" document).
      const message = /alias count/i.test((err as Error).message)
        ? `aliases are expanded more than ${MAX_ALIAS_COUNT} times (a document that multiplies itself through aliases)`
        : `cannot be read: ${(err as Error).message}`;
      throw new ConfigError([{ where: wholeDocument, message }], `${sourceName} is not a valid gateway configuration`);
    }
  }
  if (nestsTooDeep(data)) {
    throw new ConfigError(
      [{ where: wholeDocument, message: `nested too deeply (at most ${MAX_NESTING} levels of maps and lists, aliases expanded)` }],
      `${sourceName} is not a valid gateway configuration`,
    );
  }

  const positioned = yamlDoc.errors.every((e) => e.code === 'DUPLICATE_KEY');
  const locate: Locator = positioned ? yamlLocator(yamlDoc, lines) : () => undefined;
  const problemAt = (path: DocPath, message: string) => {
    if (problems.length >= MAX_PROBLEMS) {
      unlisted++;
      return;
    }
    const line = locate(path);
    const where = line === undefined ? `${sourceName}: ${formatPath(path)}` : `${sourceName}:${line}: ${formatPath(path)}`;
    problems.push({ where, message: oneLine(message), line: line ?? 0, path });
  };

  if (data === null || data === undefined) {
    problemAt([], 'the document is empty (it needs at least `version: 1` and `apis`)');
  } else {
    for (const p of schemaProblems(data)) problemAt(p.path, p.message);
    for (const p of semanticProblems(data)) problemAt(p.path, p.message);
    // Named values go into policy configurations once the document is known to be well formed.
    if (problems.length === 0) for (const p of resolveNamedValues(data as GatewayDocument)) problemAt(p.path, p.message);
  }
  if (problems.length > 0) {
    const seen = new Set<string>();
    const unique = problems
      .filter((p) => {
        const key = `${p.where}\u0000${p.message}`;
        return seen.has(key) ? false : (seen.add(key), true);
      })
      .sort((a, b) => a.line - b.line)
      .map(({ where, message, path }): LocatedProblem => ({ where, message, path }));
    if (unlisted > 0) unique.push({ where: wholeDocument, message: `and ${unlisted} more problems, not listed` });
    throw new ConfigError(unique, `${sourceName} is not a valid gateway configuration`);
  }
  const doc = data as GatewayDocument;
  rememberLocator(doc, locate);
  return doc;
}

/** Reads and checks a configuration file; a file that cannot be read is a ConfigError naming it. */
export async function readGatewayDocument(file: string): Promise<GatewayDocument> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : (err as Error).message;
    throw new ConfigError([{ where: file, message: `cannot read the configuration: ${reason}` }], `cannot read ${file}`);
  }
  return parseGatewayDocument(text, file);
}
