// Reads the gateway configuration document (YAML, or JSON for `.json` files), checks it against
// gateway.schema.json and then for what a schema cannot say (unique ids, overlapping routes, URL templates), and
// reports every problem at once, each with the file, the line when known, and the path in the document.
//
// YAML is parsed with the `yaml` package: well kept, YAML 1.2 (so `no` stays a string and `0o17` is the only octal),
// duplicate keys are errors, and it keeps node positions, which become line numbers in problems.

import AjvModule from 'ajv';
import type { ErrorObject, ValidateFunction } from 'ajv';
import { Buffer } from 'node:buffer';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isMap, isScalar, LineCounter, parseDocument, type Document } from 'yaml';

import { repoRoot } from '../assets/repo-root.ts';
import schema from './gateway.schema.json' with { type: 'json' };
import { MAX_ALIAS_COUNT, MAX_DOCUMENT_BYTES, MAX_NESTING, MAX_PROBLEMS, duplicateKeys, nestsTooDeep, tooDeepNode } from './document-limits.ts';
import { NAMED_VALUE_NAME_HINT, resolveNamedValues } from './named-values.ts';
import type { GatewayDocument } from './types.ts';

export interface ConfigProblem {
  /** `<file>:<line>: <path in document>` (`<file>: <path>` when the line is not known), e.g. `gw.yaml:7: apis[0].backend.url`. */
  where: string;
  message: string;
}

/** A problem with its place as a path in the document, when it has one (syntax errors have none). */
export type LocatedProblem = ConfigProblem & { path?: DocPath };

/** A configuration that cannot be used; `problems` names every mistake found, not only the first. */
export class ConfigError extends Error {
  readonly problems: ConfigProblem[];
  /**
   * The path in the document of each problem (same order as `problems`; null when it has none). Kept apart from
   * `problems`, which are logged as they are: a caller that checks a document built from another (the control plane
   * checking an API of an apply file) maps these back to the places its user wrote.
   */
  readonly paths: (DocPath | null)[];

  constructor(problems: LocatedProblem[], summary = 'the gateway configuration is not valid') {
    const count = problems.length === 1 ? '1 problem' : `${problems.length} problems`;
    super([`${summary} (${count}):`, ...problems.map((p) => `  ${p.where}: ${oneLine(p.message)}`)].join('\n'));
    this.name = 'ConfigError';
    this.problems = problems.map(({ where, message }) => ({ where, message }));
    this.paths = problems.map((p) => p.path ?? null);
  }
}

/** The embedded default document (one echo API with two built-in policies). */
export function defaultDocumentFile(): string {
  return join(repoRoot(), 'runtime', 'config', 'default.yaml');
}

// ---------------------------------------------------------------------------------------------------------------
// Paths and positions

export type DocPath = readonly (string | number)[];

/** `apis[0].policies.on-error[1]`, `grants.filesystem["/data"]`; `(document)` for the root. */
export function formatPath(path: DocPath): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_$][\w$-]*$/.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out === '' ? '(document)' : out;
}

export type Locator = (path: DocPath) => number | undefined;

/** Line lookups for documents that parseGatewayDocument returned (documents built in code have none). */
const locators = new WeakMap<object, Locator>();

/** The `where` of a problem at `path` of `doc`: with the line when `doc` came from parseGatewayDocument. */
export function problemWhere(doc: unknown, sourceName: string, path: DocPath): string {
  const line = typeof doc === 'object' && doc !== null ? locators.get(doc)?.(path) : undefined;
  return line === undefined ? `${sourceName}: ${formatPath(path)}` : `${sourceName}:${line}: ${formatPath(path)}`;
}

/** The line (1-based) of the node at `path` of a parsed YAML document, or of the closest enclosing node that exists. */
export function yamlLocator(yamlDoc: Document, lines: LineCounter): Locator {
  const lineOf = (node: unknown) => {
    const range = (node as { range?: [number, number, number] } | null)?.range;
    return Array.isArray(range) ? lines.linePos(range[0]).line : undefined;
  };
  return (path) => {
    // The node itself, or the closest enclosing one that exists (a missing property is reported on its parent).
    for (let n = path.length; n >= 0; n--) {
      const last = path[n - 1];
      if (typeof last === 'string') {
        // A map entry: the line of its key (a block value starts on the next line).
        const parent = yamlDoc.getIn(path.slice(0, n - 1), true);
        if (isMap(parent)) {
          const pair = parent.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === last);
          const line = pair ? (lineOf(pair.key) ?? lineOf(pair.value)) : undefined;
          if (line !== undefined) return line;
        }
        continue;
      }
      const line = lineOf(yamlDoc.getIn(path.slice(0, n), true));
      if (line !== undefined) return line;
    }
    return undefined;
  };
}

/** A copy of a tree of plain values in which no object appears twice. */
function unshare(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(unshare);
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, unshare(v)]));
  }
  return value;
}

function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, ' ').trim();
}

// ---------------------------------------------------------------------------------------------------------------
// Parsing

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
  locators.set(doc, locate);
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

// ---------------------------------------------------------------------------------------------------------------
// JSON syntax errors with a position (V8's messages do not always have one, and differ between versions)

/** A JSON literal where the scan stands (sticky: matched at lastIndex only, however long the rest of the text). */
const LITERAL = /true|false|null|-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;

/** The first JSON syntax error of `text`, or null. Only called after JSON.parse failed. */
function jsonSyntaxError(text: string): { offset: number; message: string } | null {
  let i = 0;
  class Stop {
    constructor(
      readonly offset: number,
      readonly message: string,
    ) {}
  }
  const describe = (at: number) => (at >= text.length ? 'end of input' : JSON.stringify(text[at]));
  const fail = (message: string, at = i): never => {
    throw new Stop(at, message);
  };
  const ws = () => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
  };
  const string = () => {
    const start = i++;
    while (i < text.length && text[i] !== '"') {
      const c = text.charCodeAt(i);
      if (c < 0x20) fail('control character in a string (write it as an escape, e.g. \\n)');
      if (text[i] === '\\') {
        i++;
        if (text[i] === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) fail('bad \\u escape: four hex digits expected');
          i += 5;
          continue;
        }
        if (!'"\\/bfnrt'.includes(text[i] ?? 'x')) fail(`bad escape \\${text[i] ?? ''}`);
      }
      i++;
    }
    if (i >= text.length) fail('unterminated string', start);
    i++;
  };
  // Nesting is bounded: the scanner recurses, and a document beyond MAX_NESTING is refused whatever else is wrong.
  let depth = 0;
  const nested = (members: () => void) => {
    if (++depth > MAX_NESTING) fail(`nested too deeply (at most ${MAX_NESTING} levels of maps and lists)`);
    i++;
    ws();
    members();
    depth--;
  };
  /** The members of a map or a list up to `close`, separated by commas, each read by `member`. */
  const members = (close: '}' | ']', member: () => void, what: string) => () => {
    if (text[i] === close) {
      i++;
      return;
    }
    for (;;) {
      ws();
      if (text[i] === close) fail(`trailing comma before "${close}"`);
      member();
      ws();
      if (text[i] === ',') {
        i++;
        continue;
      }
      if (text[i] === close) {
        i++;
        return;
      }
      fail(`expected "," or "${close}" after ${what}, found ${describe(i)}`);
    }
  };
  const property = () => {
    if (text[i] !== '"') fail(`expected a property name in double quotes, found ${describe(i)}`);
    string();
    ws();
    if (text[i] !== ':') fail(`expected ":" after the property name, found ${describe(i)}`);
    i++;
    value();
  };
  const object = members('}', property, 'a property value');
  const array = members(']', () => value(), 'an array element');
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === '{') return nested(object);
    if (c === '[') return nested(array);
    if (c === '"') return string();
    LITERAL.lastIndex = i;
    const literal = LITERAL.exec(text);
    if (literal) {
      i += literal[0].length;
      return;
    }
    fail(c === undefined ? 'unexpected end of input' : `unexpected ${describe(i)}`);
  };
  try {
    value();
    ws();
    if (i < text.length) fail(`unexpected ${describe(i)} after the document`);
    return null;
  } catch (err) {
    if (err instanceof Stop) return { offset: err.offset, message: err.message };
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Schema

interface PathProblem {
  path: DocPath;
  message: string;
}

// ajv is CommonJS; under Node's ESM interop the class is on `.default`, under Deno it may be the module itself.
const Ajv = ((AjvModule as unknown as { default?: unknown }).default ?? AjvModule) as typeof AjvModule.default;
let validator: ValidateFunction | null = null;

/** The published JSON Schema of the document (gateway.schema.json). */
export const gatewaySchema: object = schema;

function validate(): ValidateFunction {
  validator ??= new Ajv({ allErrors: true, verbose: true, strict: true, strictTypes: false, strictRequired: false }).compile(schema);
  return validator;
}

/** Plain-language messages for the schema's patterns (keyed by the pattern: ajv may inline `$ref`s, which changes
 *  schema paths). */
const PATTERN_HINTS: Record<string, string> = {
  '^[a-z0-9][a-z0-9-]{0,63}$': 'must be lowercase letters, digits and dashes, starting with a letter or digit, at most 64 characters',
  '^/': 'must start with "/"',
  '^((\\*\\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\\[[0-9A-Fa-f:.]+\\])$':
    'must be a host name (api.example.com), a wildcard (*.example.com) or an IP address, without port',
  '^(https?://.+|builtin:echo)$': 'must be an absolute http:// or https:// URL, or builtin:echo',
  '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$': 'must be letters, digits, "_" and "-", starting with a letter or digit, at most 64 characters',
  "^(\\*|[!#$%&'+.^_`|~0-9A-Z-]+)$": 'must be an HTTP method in upper case (GET, POST, ...) or "*"',
  '^[a-z0-9][a-z0-9-]*$': 'must be the name of a built-in policy (lowercase letters, digits and dashes)',
  '^[^\\s/?#@\\\\]+$': 'must be a host and port, like "orders.internal:8443" or "*.svc.example.com:443", without a scheme or path',
};

function shown(value: unknown): string {
  const text = value === undefined ? 'nothing' : JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a map';
  return `${typeof value} ${shown(value)}`;
}

function pointerPath(pointer: string): (string | number)[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^(0|[1-9]\d*)$/.test(s) ? Number(s) : s));
}

function schemaProblems(data: unknown): PathProblem[] {
  const check = validate();
  if (check(data)) return [];
  const errors = check.errors ?? [];
  // Errors inside the branches of a oneOf are noise: the oneOf error says what is wrong.
  const oneOfs = errors
    .filter((e) => e.keyword === 'oneOf')
    .map((e) => ({ schema: `${e.schemaPath}/`, instance: e.instancePath }));
  const out: PathProblem[] = [];
  for (const e of errors) {
    const inBranch = oneOfs.some(
      (o) => e.schemaPath.startsWith(o.schema) && (e.instancePath === o.instance || e.instancePath.startsWith(`${o.instance}/`)),
    );
    if (inBranch) continue;
    if (e.keyword === 'propertyNames') continue; // reported by the pattern error of the name itself
    const problem = formatSchemaError(e);
    if (problem) out.push(problem);
  }
  return out;
}

function formatSchemaError(e: ErrorObject): PathProblem | null {
  const path = pointerPath(e.instancePath);
  const params = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required':
      return { path: [...path, String(params.missingProperty)], message: 'is required' };
    case 'additionalProperties': {
      const allowed = Object.keys((e.parentSchema as { properties?: object } | undefined)?.properties ?? {});
      return {
        path: [...path, String(params.additionalProperty)],
        message: `unknown property${allowed.length > 0 ? ` (allowed here: ${allowed.join(', ')})` : ''}`,
      };
    }
    case 'oneOf': {
      const branches = (e.schema as { required?: string[] }[]).map((b) => b.required?.[0]);
      if (branches.every((k): k is string => typeof k === 'string')) {
        const data = e.data as Record<string, unknown>;
        const present = branches.filter((k) => data !== null && typeof data === 'object' && k in data);
        const options = branches.map((k) => `"${k}"`).join(', ').replace(/, ([^,]*)$/, ' or $1');
        return {
          path,
          message:
            present.length === 0
              ? `needs one of ${options}`
              : `has ${present.map((k) => `"${k}"`).join(' and ')}: give exactly one of ${options}`,
        };
      }
      return { path, message: e.message ?? 'must match exactly one schema' };
    }
    case 'pattern': {
      const name = (e as ErrorObject & { propertyName?: string }).propertyName;
      if (name !== undefined) {
        // Property names are constrained in two places: named values, and the guest paths of filesystem grants.
        const message = path.length === 1 && path[0] === 'namedValues' ? NAMED_VALUE_NAME_HINT : 'the guest path must be absolute (start with "/")';
        return { path: [...path, name], message };
      }
      const hint = PATTERN_HINTS[String(params.pattern)];
      return { path, message: `${hint ?? e.message ?? 'does not match'} (got ${shown(e.data)})` };
    }
    case 'type': {
      // Named values are not repeated: a secret written as a number (YAML `value: 12345678`) is still a secret.
      const got = path[0] === 'namedValues' ? typeName(e.data).split(' ')[0] : typeName(e.data);
      return { path, message: `must be ${articleType(String(params.type))} (got ${got})` };
    }
    case 'const':
      return { path, message: `must be ${shown(params.allowedValue)} (got ${shown(e.data)})` };
    case 'enum':
      return { path, message: `must be one of ${(params.allowedValues as unknown[]).map(shown).join(', ')} (got ${shown(e.data)})` };
    case 'uniqueItems':
      return {
        path: [...path, Math.max(Number(params.i), Number(params.j))],
        message: `duplicate of item ${Math.min(Number(params.i), Number(params.j))}`,
      };
    case 'minItems':
      return { path, message: Number(params.limit) === 1 ? 'must not be empty' : `${e.message ?? 'too short'}` };
    case 'minLength':
      return { path, message: 'must not be empty' };
    case 'maxLength':
      // Without the value: it may be a secret (namedValues).
      return { path, message: `must be at most ${String(params.limit)} characters (got ${String(e.data).length})` };
    default:
      return { path, message: `${e.message ?? e.keyword} (got ${shown(e.data)})` };
  }
}

function articleType(type: string): string {
  const names: Record<string, string> = {
    object: 'a map',
    array: 'a list',
    string: 'a string',
    integer: 'an integer',
    number: 'a number',
    boolean: 'true or false',
    null: 'null',
  };
  return type
    .split(',')
    .map((t) => names[t] ?? t)
    .join(' or ');
}

// ---------------------------------------------------------------------------------------------------------------
// What the schema cannot express

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isString = (v: unknown): v is string => typeof v === 'string';

/** The template parameter names the router accepts. */
const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_-]*$/;

function semanticProblems(data: unknown): PathProblem[] {
  const out: PathProblem[] = [];
  if (!isObject(data) || !Array.isArray(data.apis)) return out;
  const apis = data.apis as unknown[];
  const apiIds = new Map<string, number>();
  // By prefix: the host-less API that has it, and the API answering each host name (first come, first kept). A map, not
  // a comparison of every pair: a document may hold tens of thousands of APIs.
  const routes = new Map<string, { hostless: number | null; hosts: Map<string, number> }>();
  const apiName = (index: number) => {
    const id = isObject(apis[index]) ? (apis[index] as { id?: unknown }).id : undefined;
    return `apis[${index}]${isString(id) ? ` (${id})` : ''}`;
  };

  apis.forEach((api, a) => {
    if (!isObject(api)) return;
    const at = (...rest: (string | number)[]) => ['apis', a, ...rest];
    if (isString(api.id)) {
      const first = apiIds.get(api.id);
      if (first !== undefined) out.push({ path: at('id'), message: `duplicate API id "${api.id}" (also apis[${first}])` });
      else apiIds.set(api.id, a);
    }
    if (isString(api.pathPrefix) && api.pathPrefix.startsWith('/')) {
      for (const message of prefixProblems(api.pathPrefix)) out.push({ path: at('pathPrefix'), message });
      const hosts = Array.isArray(api.hosts) ? new Set(api.hosts.filter(isString).map((h) => h.toLowerCase())) : null;
      const prefix = api.pathPrefix === '/' ? '/' : api.pathPrefix.replace(/\/+$/, '');
      let route = routes.get(prefix);
      if (!route) routes.set(prefix, (route = { hostless: null, hosts: new Map() }));
      if (hosts === null) {
        if (route.hostless !== null) {
          out.push({
            path: at('pathPrefix'),
            message: `same pathPrefix as ${apiName(route.hostless)} and neither has hosts: a request could go to either (give them different prefixes or hosts)`,
          });
        } else {
          route.hostless = a;
        }
      } else {
        // Shared host names, grouped by the API that answers them first.
        const sharedWith = new Map<number, string[]>();
        for (const h of hosts) {
          const other = route.hosts.get(h);
          if (other === undefined) route.hosts.set(h, a);
          else sharedWith.set(other, [...(sharedWith.get(other) ?? []), h]);
        }
        for (const [other, shared] of sharedWith) {
          out.push({
            path: at('hosts'),
            message: `same pathPrefix as ${apiName(other)}, and both answer to ${shared.join(', ')}: a request could go to either`,
          });
        }
      }
    }

    const backend = api.backend;
    if (isObject(backend)) {
      if (isString(backend.url)) {
        for (const message of backendUrl(backend.url).problems) out.push({ path: at('backend', 'url'), message });
      }
      if (isObject(backend.pool) && Array.isArray(backend.pool.urls)) {
        const seen = new Map<string, number>();
        backend.pool.urls.forEach((url, u) => {
          if (!isString(url)) return;
          const { problems, key } = backendUrl(url);
          for (const message of problems) out.push({ path: at('backend', 'pool', 'urls', u), message });
          if (key === null) return;
          const first = seen.get(key);
          if (first !== undefined) {
            out.push({ path: at('backend', 'pool', 'urls', u), message: `duplicate URL (also urls[${first}])` });
          } else {
            seen.set(key, u);
          }
        });
      }
    }

    if (Array.isArray(api.operations)) {
      const opIds = new Map<string, number>();
      const routesSeen = new Map<string, number>();
      api.operations.forEach((op, o) => {
        if (!isObject(op)) return;
        const opAt = (...rest: (string | number)[]) => at('operations', o, ...rest);
        if (isString(op.id)) {
          const first = opIds.get(op.id);
          if (first !== undefined) {
            out.push({ path: opAt('id'), message: `duplicate operation id "${op.id}" in this API (also operations[${first}])` });
          } else {
            opIds.set(op.id, o);
          }
        }
        if (isString(op.urlTemplate) && op.urlTemplate.startsWith('/')) {
          const { problems, shape } = templateProblems(op.urlTemplate);
          for (const message of problems) out.push({ path: opAt('urlTemplate'), message });
          if (problems.length === 0 && isString(op.method)) {
            const key = `${op.method} ${shape}`;
            const first = routesSeen.get(key);
            if (first !== undefined) {
              out.push({
                path: opAt('urlTemplate'),
                message: `same method and URL template as operations[${first}]: this operation would never be reached`,
              });
            } else {
              routesSeen.set(key, o);
            }
          }
        }
      });
    }
  });
  return out;
}

function prefixProblems(prefix: string): string[] {
  if (prefix === '/') return [];
  const out: string[] = [];
  if (prefix.endsWith('/')) out.push(`must not end with "/" (write "${prefix.replace(/\/+$/, '') || '/'}")`);
  if (/\/\//.test(prefix.replace(/\/+$/, ''))) out.push('must not contain empty segments ("//")');
  if (/[?#]/.test(prefix)) out.push('must be a path only, without "?" or "#"');
  if (/[{}]/.test(prefix)) out.push('must be literal: URL template parameters belong in operations');
  if (/\s/.test(prefix)) out.push('must not contain white space (percent-encode it)');
  if (prefix.split('/').some((s) => s === '.' || s === '..')) out.push('must not contain "." or ".." segments');
  return out;
}

/**
 * A backend URL's problems, and the key that finds the same backend written twice in a pool (trailing slashes do not
 * count; the forwarder drops them). No key for a URL with problems, or one that is not an http(s) URL: the schema's
 * pattern reports that one.
 */
function backendUrl(url: string): { problems: string[]; key: string | null } {
  if (url === 'builtin:echo') return { problems: [], key: url };
  if (!/^https?:\/\//.test(url)) return { problems: [], key: null };
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { problems: ['is not a valid URL'], key: null };
  }
  const problems: string[] = [];
  if (parsed.username !== '' || parsed.password !== '') {
    problems.push('must not hold credentials (they would not be sent; set an Authorization header with a policy)');
  }
  // Read from the text: an empty query ("?") or fragment ("#") leaves the parsed URL's search and hash empty.
  if (url.includes('?')) problems.push('must not have a query (the request\'s own query is sent)');
  if (url.includes('#')) problems.push('must not have a fragment');
  return { problems, key: problems.length > 0 ? null : parsed.href.replace(/\/+$/, '') };
}

/** Problems of a URL template, and its shape (parameters unnamed) to find templates that match the same paths. */
function templateProblems(template: string): { problems: string[]; shape: string } {
  const problems: string[] = [];
  if (/[?#]/.test(template)) problems.push('must be a path only, without "?" or "#" (queries are not matched)');
  const names = new Set<string>();
  const shape: string[] = [];
  for (const segment of template.split('/').filter((s) => s !== '')) {
    let depth = 0;
    let balanced = true;
    for (const c of segment) {
      if (c === '{') depth++;
      else if (c === '}') depth--;
      if (depth < 0 || depth > 1) balanced = false;
    }
    if (!balanced || depth !== 0) {
      problems.push(`unbalanced braces in segment "${segment}"`);
      continue;
    }
    if (!segment.includes('{')) {
      shape.push(segment);
      continue;
    }
    const whole = /^\{([^{}]*)\}$/.exec(segment);
    if (!whole) {
      problems.push(`a parameter must be a whole segment, like /{id}/ (not "${segment}")`);
      continue;
    }
    const name = whole[1]!;
    if (name === '') problems.push('empty parameter name "{}"');
    else if (!PARAM_NAME.test(name)) {
      problems.push(`parameter name "${name}" must be letters, digits, "_" and "-", not starting with a digit or "-"`);
    } else if (names.has(name)) problems.push(`duplicate parameter name "${name}"`);
    names.add(name);
    shape.push('{}');
  }
  return { problems, shape: `/${shape.join('/')}` };
}
