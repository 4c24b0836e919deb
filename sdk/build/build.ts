// `gatehouse-policy build`: compiles a policy written in AssemblyScript into a Gatehouse policy module (ABI v1,
// abi/policy-abi.md).
//
// - The AssemblyScript compiler runs in-process (`asc.main`) with every file served from the `readFile` callback:
//   `@gatehouse/policy-sdk` resolves to this SDK's `assembly/` folder wherever the policy lives, and a virtual entry
//   file next to the source re-exports the policy and adds the generated `gatehouse_policy_v1` export (the descriptor
//   from policy.json and schema.json).
// - Compiler diagnostics become `PolicyBuildError.diagnostics` (file, line, column, message).
// - The module's imports are checked: only `extism:host/env` and `gatehouse:host/v1`, with hints for the usual
//   AssemblyScript imports (`env.seed`, `env.Date.now`, `env.console.log`, ...).
// - Results are cached by content under `<repo>/.cache/policy-builds/`.

import asc from 'assemblyscript/asc';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { findRepoRoot } from '../../runtime/platform/paths.ts';
import type { PolicyDescriptor } from '../../abi/index.ts';

export type { PolicyDescriptor };

export interface BuildDiagnostic {
  /** Absolute path of the file (or `~lib/...` for the AssemblyScript standard library). */
  file: string;
  /** 1-based; 0 when the problem has no position. */
  line: number;
  /** 1-based, in UTF-16 code units like the compiler; 0 when the problem has no position. */
  column: number;
  message: string;
}

export class PolicyBuildError extends Error {
  readonly diagnostics: BuildDiagnostic[];

  constructor(message: string, diagnostics: BuildDiagnostic[] = []) {
    super(message);
    this.name = 'PolicyBuildError';
    this.diagnostics = diagnostics;
  }
}

export interface BuildOptions {
  /** The policy's entry file (`policy.ts`), or its folder. */
  source: string;
  /** Where to write the module (and `<outFile>.map` with `sourceMap`); nothing is written without it. */
  outFile?: string;
  /** Emit a source map (returned as `sourceMap`, written next to `outFile`). */
  sourceMap?: boolean;
  /** Build cache folder; default `<repo root>/.cache/policy-builds`. */
  cacheDir?: string;
}

export interface BuildResult {
  wasm: Uint8Array;
  outFile: string | null;
  sha256: string;
  descriptor: PolicyDescriptor;
  /** True when the module came from the build cache. */
  cached: boolean;
  /** The source map's JSON text, when asked for. */
  sourceMap: string | null;
  /** Compiler warnings (a build with warnings succeeds). */
  warnings: BuildDiagnostic[];
}

/** Bumped whenever the generated code or the build flags change, so that older cache entries are not used. */
const BUILDER_VERSION = 2;

const SDK_PACKAGE = '@gatehouse/policy-sdk';
const SDK_LIB_PREFIX = `~lib/${SDK_PACKAGE}/`;
const ENTRY_NAME = '__gatehouse_entry__.ts';
const KERNEL_MODULE = 'extism:host/env';
const HOST_MODULE = 'gatehouse:host/v1';
const DESCRIBE_EXPORT = 'gatehouse_policy_v1';
const HANDLERS = ['on_inbound', 'on_backend', 'on_outbound', 'on_error'] as const;
const NAME_PATTERN = /^[a-z0-9][a-z0-9-]*$/;

/**
 * The compiler flags of every build:
 * - `-O3` (optimizeLevel 3, shrinkLevel 0): handlers run on every request, so speed over size.
 * - `--runtime incremental`: the instance lives across calls; `stub` and `minimal` without `__collect()` leak until
 *   the memory cap (see the notes on AssemblyScript runtimes).
 * - `--use abort=...`: aborts go to the SDK's handler, which reports the message through `fail` and traps, so no
 *   `env.abort` import is left.
 * - `--noColors`: diagnostics are parsed, not shown on a terminal.
 */
export const ASC_FLAGS: readonly string[] = [
  '-O3',
  '--runtime',
  'incremental',
  '--use',
  `abort=${SDK_LIB_PREFIX}abort/gatehouseAbort`,
  '--noColors',
];

/** Imports of `gatehouse:host/v1` (ABI section 4). */
const HOST_IMPORTS = new Set(['get', 'set', 'add', 'remove', 'list', 'respond', 'effect', 'log', 'now', 'fail', 'verify', 'metric']);
/** Imports of the Extism kernel. */
const KERNEL_IMPORTS = new Set([
  'input_length', 'input_load_u8', 'input_load_u64', 'input_offset', 'alloc', 'free', 'length', 'length_unsafe',
  'load_u8', 'load_u64', 'store_u8', 'store_u64', 'output_set', 'error_set', 'error_get', 'config_get', 'var_get',
  'var_set', 'http_request', 'http_status_code', 'http_headers', 'log_info', 'log_debug', 'log_warn', 'log_error',
  'log_trace', 'get_log_level',
]);

// ---------------------------------------------------------------------------------------------------------------
// Locations

const here = path.dirname(fileURLToPath(import.meta.url));

function readJsonFile(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return null;
  }
}

function packageName(dir: string): string | null {
  const pkg = readJsonFile(path.join(dir, 'package.json'));
  if (pkg && typeof pkg === 'object' && typeof (pkg as { name?: unknown }).name === 'string') {
    return (pkg as { name: string }).name;
  }
  return null;
}

/** The Gatehouse repository root (the folder whose package.json is named "gatehouse"), or null. */

/** The SDK's `assembly/` folder, the AssemblyScript side of `@gatehouse/policy-sdk`. */
export function sdkAssemblyDir(): string {
  for (let dir = here; ; dir = path.dirname(dir)) {
    if (packageName(dir) === SDK_PACKAGE) return path.join(dir, 'assembly');
    if (packageName(path.join(dir, 'sdk')) === SDK_PACKAGE) return path.join(dir, 'sdk', 'assembly');
    if (path.dirname(dir) === dir) break;
  }
  const root = findRepoRoot(process.cwd());
  if (root) return path.join(root, 'sdk', 'assembly');
  for (const from of [here, process.cwd()]) {
    try {
      const pkg = createRequire(path.join(from, 'noop.js')).resolve(`${SDK_PACKAGE}/package.json`);
      return path.join(path.dirname(realpathSync(pkg)), 'assembly');
    } catch {
      // not installed there
    }
  }
  throw new PolicyBuildError(`cannot find the ${SDK_PACKAGE} sources (looked up from ${here})`);
}

/** The default build cache: `<repo root>/.cache/policy-builds` (a temp folder outside a checkout). */
export function defaultCacheDir(): string {
  const root = findRepoRoot() ?? findRepoRoot(process.cwd());
  return root ? path.join(root, '.cache', 'policy-builds') : path.join(tmpdir(), 'gatehouse-policy-builds');
}

/** A path for messages: relative to the working directory when inside it. */
export function displayPath(file: string): string {
  if (!path.isAbsolute(file)) return file;
  const rel = path.relative(process.cwd(), file);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : file;
}

function formatDiagnostic(d: BuildDiagnostic): string {
  const where = d.line > 0 ? `${displayPath(d.file)}:${d.line}:${d.column}` : displayPath(d.file);
  return `${where}: ${d.message}`;
}

function buildError(summary: string, diagnostics: BuildDiagnostic[]): PolicyBuildError {
  const lines = diagnostics.map(formatDiagnostic);
  return new PolicyBuildError([summary, ...lines].join('\n'), diagnostics);
}

// ---------------------------------------------------------------------------------------------------------------
// Descriptor

/** Line and column (1-based) of a character offset. */
function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  const end = Math.min(offset, text.length);
  for (let i = 0; i < end; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: end - lineStart + 1 };
}

function parseJsonAt(file: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    const message = (err as Error).message;
    const at = /position (\d+)/.exec(message);
    const lc = /line (\d+) column (\d+)/.exec(message);
    const pos = lc
      ? { line: Number(lc[1]), column: Number(lc[2]) }
      : at
        ? lineColumn(text, Number(at[1]))
        : { line: 1, column: 1 };
    throw buildError(`${displayPath(file)} is not valid JSON`, [
      { file, line: pos.line, column: pos.column, message: `not valid JSON: ${message}` },
    ]);
  }
}

/** The position of `"key"` in a JSON text, for messages (1:1 when not found). */
function keyPosition(text: string, key: string): { line: number; column: number } {
  const i = text.indexOf(JSON.stringify(key));
  return i >= 0 ? lineColumn(text, i) : { line: 1, column: 1 };
}

const POLICY_KEYS = new Set(['name', 'version', 'description', 'requestBody', 'responseBody', 'needs']);
/**
 * Capabilities a policy may say it needs (`needs` in policy.json), and `backend:<config key>`: the backend grant for
 * the host and port of the URL in that configuration key.
 */
export const POLICY_NEEDS = ['counters', 'http', 'backend', 'wasi', 'filesystem'] as const;
const BACKEND_FROM_CONFIG_NEED = /^backend:[A-Za-z_][A-Za-z0-9_-]*$/;

function isPolicyNeed(need: unknown): boolean {
  return (POLICY_NEEDS as readonly unknown[]).includes(need) || (typeof need === 'string' && BACKEND_FROM_CONFIG_NEED.test(need));
}

/** A default policy name from a folder name: lowercase, other characters as dashes. */
export function policyNameFromFolder(folder: string): string {
  return path
    .basename(path.resolve(folder))
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 64);
}

/**
 * Reads the descriptor of the policy in `dir`: `policy.json` (`name`, `version`, `requestBody`, `responseBody`,
 * `description`) and `schema.json` (the configuration's JSON Schema). Both are optional: the name defaults to the
 * folder's name and the version to "0.0.0".
 */
export async function readDescriptor(dir: string): Promise<{ descriptor: PolicyDescriptor }> {
  const policyFile = path.join(dir, 'policy.json');
  const schemaFile = path.join(dir, 'schema.json');
  const problems: BuildDiagnostic[] = [];
  let policy: Record<string, unknown> = {};
  let policyText = '';
  if (existsSync(policyFile)) {
    policyText = await readFile(policyFile, 'utf8');
    const raw = parseJsonAt(policyFile, policyText);
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      throw buildError(`${displayPath(policyFile)} must hold a JSON object`, [
        { file: policyFile, line: 1, column: 1, message: 'must be a JSON object like {"name": "my-policy", "version": "1.0.0"}' },
      ]);
    }
    policy = raw as Record<string, unknown>;
  }
  const problem = (key: string, message: string) => {
    const { line, column } = keyPosition(policyText, key);
    problems.push({ file: policyFile, line, column, message });
  };
  for (const key of Object.keys(policy)) {
    if (!POLICY_KEYS.has(key)) {
      problem(key, `unknown key "${key}" (known: ${[...POLICY_KEYS].join(', ')})`);
    }
  }
  let name: string;
  if (policy.name === undefined) {
    name = policyNameFromFolder(dir);
    if (!NAME_PATTERN.test(name)) {
      problems.push({
        file: policyFile,
        line: 1,
        column: 1,
        message: `no "name", and the folder name does not give a valid one: add "name" (lowercase letters, digits and dashes)`,
      });
    }
  } else if (typeof policy.name !== 'string' || !NAME_PATTERN.test(policy.name) || policy.name.length > 64) {
    problem('name', `"name" must be lowercase letters, digits and dashes, starting with a letter or digit, at most 64 characters (got ${JSON.stringify(policy.name)})`);
    name = '';
  } else {
    name = policy.name;
  }
  let version = '0.0.0';
  if (policy.version !== undefined) {
    if (typeof policy.version !== 'string' || policy.version.length === 0 || policy.version.length > 64) {
      problem('version', `"version" must be a non-empty string of at most 64 characters (got ${JSON.stringify(policy.version)})`);
    } else {
      version = policy.version;
    }
  }
  for (const key of ['requestBody', 'responseBody'] as const) {
    if (policy[key] !== undefined && typeof policy[key] !== 'boolean') {
      problem(key, `"${key}" must be true or false (got ${JSON.stringify(policy[key])})`);
    }
  }
  if (policy.description !== undefined && typeof policy.description !== 'string') {
    problem('description', '"description" must be a string');
  }
  // `needs` documents the grants the policy cannot work without; a built-in policy's `counters`, and the backend grant
  // of `backend:<key>`, are granted by the gateway (runtime/config/policy-sources.ts). It is not part of the module: a
  // module cannot grant itself anything.
  if (policy.needs !== undefined && (!Array.isArray(policy.needs) || !policy.needs.every(isPolicyNeed))) {
    problem(
      'needs',
      `"needs" must be a list of capabilities among ${POLICY_NEEDS.join(', ')}, or backend:<configuration key> ` +
        `(got ${JSON.stringify(policy.needs)})`,
    );
  }
  let configSchema: object | null = null;
  if (existsSync(schemaFile)) {
    const schemaText = await readFile(schemaFile, 'utf8');
    const schema = parseJsonAt(schemaFile, schemaText);
    if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) {
      problems.push({ file: schemaFile, line: 1, column: 1, message: 'must be a JSON Schema object, e.g. {"type": "object", "properties": {...}}' });
    } else {
      configSchema = schema;
    }
  }
  if (problems.length > 0) throw buildError(`the descriptor of ${displayPath(dir)} is not valid`, problems);
  return {
    descriptor: {
      name,
      version,
      requestBody: policy.requestBody === true,
      responseBody: policy.responseBody === true,
      configSchema,
    },
  };
}

/** The descriptor as the module outputs it (fixed key order; `configSchema` left out when there is none). */
export function descriptorJson(d: PolicyDescriptor): string {
  const out: Record<string, unknown> = {
    name: d.name,
    version: d.version,
    requestBody: d.requestBody,
    responseBody: d.responseBody,
  };
  if (d.configSchema !== null) out.configSchema = d.configSchema;
  return JSON.stringify(out);
}

/** A string literal for AssemblyScript source: JSON escaping, with everything outside printable ASCII as \uXXXX. */
function asStringLiteral(s: string): string {
  return JSON.stringify(s).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function entrySource(sourceBase: string, descriptor: PolicyDescriptor): string {
  const moduleName = './' + sourceBase.replace(/\.ts$/, '');
  return [
    '// Generated by gatehouse-policy build: the policy\'s exports plus its descriptor (ABI v1).',
    `export * from ${JSON.stringify(moduleName)};`,
    `import { outputString as __gatehouse_output } from "${SDK_PACKAGE}/extism";`,
    `import { gatehouseAbort as __gatehouse_abort } from "${SDK_PACKAGE}/abort";`,
    `export function ${DESCRIBE_EXPORT}(): i32 {`,
    `  __gatehouse_output(${asStringLiteral(descriptorJson(descriptor))});`,
    '  return 0;',
    '}',
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------------------------
// Module checks

/** What to use instead of imports that AssemblyScript's standard library adds. */
function importHint(module: string, name: string): string {
  const full = `${module}.${name}`;
  if (full === 'env.seed') return 'Math.random() is not available in policies (handlers must be deterministic); derive values from the request, or use counter()';
  if (full === 'env.Date.now') return 'Date.now() is not available; use now() from @gatehouse/policy-sdk';
  if (full === 'env.performance.now') return 'performance.now() is not available; use now() from @gatehouse/policy-sdk';
  if (full.startsWith('env.console.')) return `console.${full.slice('env.console.'.length)}() is not available; use log.info() (or log.debug/warn/error) from @gatehouse/policy-sdk`;
  if (full === 'env.trace') return 'trace() is not available; use log.debug() from @gatehouse/policy-sdk';
  if (full === 'env.abort') return 'env.abort should have been replaced by the SDK abort handler: is the policy built with gatehouse-policy build?';
  if (full === 'env.process.exit' || full.startsWith('env.process.')) return 'process is not available in policies';
  if (module === 'wasi_snapshot_preview1') return `WASI (${name}) is not available to SDK policies (from process, console or @assemblyscript/wasi-shim); use the SDK's functions`;
  if (module === HOST_MODULE) return `${HOST_MODULE} has no import named "${name}" (ABI v1: ${[...HOST_IMPORTS].join(', ')})`;
  if (module === KERNEL_MODULE) return `${KERNEL_MODULE} has no import named "${name}"`;
  return `policies may import only from ${KERNEL_MODULE} and ${HOST_MODULE}; remove the @external declaration or the library that needs it`;
}

/** Source patterns that produce the imports above, to point at the author's line. */
const IMPORT_SOURCES: Record<string, RegExp> = {
  'env.seed': /\bMath\.random\s*\(/,
  'env.Date.now': /\bDate\.now\s*\(/,
  'env.performance.now': /\bperformance\.now\s*\(/,
  'env.trace': /(^|[^.\w])trace\s*\(/,
};

function findUse(files: Map<string, string>, pattern: RegExp): { file: string; line: number; column: number } | null {
  for (const [file, text] of files) {
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const m = pattern.exec(lines[i]!);
      if (m) return { file, line: i + 1, column: m.index + 1 + (m[1]?.length ?? 0) };
    }
  }
  return null;
}

interface FuncType {
  params: number[];
  results: number[];
}

/** Reads the signatures of a module's exported functions (type, import, function and export sections). */
function exportSignatures(wasm: Uint8Array): Map<string, FuncType> {
  let pos = 8;
  const u32 = (): number => {
    let result = 0;
    let shift = 0;
    for (;;) {
      const byte = wasm[pos++]!;
      result += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7;
    }
  };
  const types: FuncType[] = [];
  const funcTypes: number[] = [];
  const exports: [string, number][] = [];
  let importedFuncs = 0;
  while (pos < wasm.length) {
    const id = wasm[pos++]!;
    const size = u32();
    const end = pos + size;
    if (id === 1) {
      for (let n = u32(); n > 0; n--) {
        pos++; // 0x60
        const params: number[] = [];
        for (let k = u32(); k > 0; k--) params.push(wasm[pos++]!);
        const results: number[] = [];
        for (let k = u32(); k > 0; k--) results.push(wasm[pos++]!);
        types.push({ params, results });
      }
    } else if (id === 2) {
      for (let n = u32(); n > 0; n--) {
        const moduleLen = u32();
        pos += moduleLen;
        const nameLen = u32();
        pos += nameLen;
        const kind = wasm[pos++]!;
        if (kind === 0) {
          u32();
          importedFuncs++;
        } else if (kind === 1) {
          pos++; // reftype
          const flags = u32();
          u32();
          if (flags & 1) u32();
        } else if (kind === 2) {
          const flags = u32();
          u32();
          if (flags & 1) u32();
        } else if (kind === 3) {
          pos += 2; // valtype, mutability
        } else {
          u32();
        }
      }
    } else if (id === 3) {
      for (let n = u32(); n > 0; n--) funcTypes.push(u32());
    } else if (id === 7) {
      for (let n = u32(); n > 0; n--) {
        const len = u32();
        const name = new TextDecoder().decode(wasm.subarray(pos, pos + len));
        pos += len;
        const kind = wasm[pos++]!;
        const index = u32();
        if (kind === 0) exports.push([name, index]);
      }
    }
    pos = end;
  }
  const out = new Map<string, FuncType>();
  for (const [name, index] of exports) {
    const type = index >= importedFuncs ? types[funcTypes[index - importedFuncs]!] : undefined;
    if (type) out.set(name, type);
  }
  return out;
}

function signatureText(t: FuncType): string {
  const names: Record<number, string> = { 0x7f: 'i32', 0x7e: 'i64', 0x7d: 'f32', 0x7c: 'f64', 0x7b: 'v128' };
  const list = (v: number[]) => v.map((x) => names[x] ?? `0x${x.toString(16)}`).join(', ');
  return `(${list(t.params)}) -> ${t.results.length ? list(t.results) : 'void'}`;
}

function checkModule(wasm: Uint8Array<ArrayBuffer>, source: string, userFiles: Map<string, string>): void {
  let module: WebAssembly.Module;
  try {
    module = new WebAssembly.Module(wasm);
  } catch (err) {
    throw buildError(`the compiled module of ${displayPath(source)} is not valid WebAssembly: ${(err as Error).message}`, []);
  }
  const problems: BuildDiagnostic[] = [];
  for (const imp of WebAssembly.Module.imports(module)) {
    const allowed =
      (imp.module === HOST_MODULE && HOST_IMPORTS.has(imp.name)) ||
      (imp.module === KERNEL_MODULE && KERNEL_IMPORTS.has(imp.name));
    if (allowed) continue;
    const key = `${imp.module}.${imp.name}`;
    const pattern = IMPORT_SOURCES[key] ?? (key.startsWith('env.console.') ? /\bconsole\.\w+\s*\(/ : undefined);
    const use = pattern ? findUse(userFiles, pattern) : null;
    problems.push({
      file: use?.file ?? source,
      line: use?.line ?? 0,
      column: use?.column ?? 0,
      message: `import ${imp.module}::${imp.name} is not allowed: ${importHint(imp.module, imp.name)}`,
    });
  }
  const exports = new Set(WebAssembly.Module.exports(module).map((e) => e.name));
  if (!exports.has('memory')) {
    problems.push({ file: source, line: 0, column: 0, message: 'the module does not export its memory as "memory" (do not build with --noExportMemory or --importMemory)' });
  }
  const signatures = exportSignatures(wasm);
  const handlers = HANDLERS.filter((h) => exports.has(h));
  if (handlers.length === 0) {
    problems.push({
      file: source,
      line: 0,
      column: 0,
      message: `no phase handler is exported: add at least one of ${HANDLERS.map((h) => `export function ${h}(): i32`).join(', ')}`,
    });
  }
  for (const h of handlers) {
    const sig = signatures.get(h);
    if (sig && (sig.params.length !== 0 || sig.results.length !== 1 || sig.results[0] !== 0x7f)) {
      const use = findUse(userFiles, new RegExp(`export\\s+function\\s+${h}\\b`));
      problems.push({
        file: use?.file ?? source,
        line: use?.line ?? 0,
        column: use?.column ?? 0,
        message: `${h} must be declared as \`export function ${h}(): i32\` (it is ${signatureText(sig)})`,
      });
    }
  }
  if (problems.length > 0) {
    problems.sort((a, b) => (a.file === b.file ? a.line - b.line : 0));
    throw buildError(`${displayPath(source)} does not make a valid Gatehouse policy module`, problems);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Compiling

interface CompileOutput {
  wasm: Uint8Array;
  sourceMap: string | null;
  warnings: BuildDiagnostic[];
  /** Files read from disk other than the SDK's, relative to the policy folder, with their sha256 (null: absent). */
  deps: { path: string; sha256: string | null }[];
}

const decoder = new TextDecoder();

function sha256(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

async function compile(
  source: string,
  descriptor: PolicyDescriptor,
  sdkDir: string,
  sourceMap: boolean,
  outName: string,
): Promise<CompileOutput> {
  const dir = path.dirname(source);
  const entryPath = path.join(dir, ENTRY_NAME);
  const entryText = entrySource(path.basename(source), descriptor);
  // Texts of the files served, by absolute path (for diagnostics) and user files (for import hints).
  const texts = new Map<string, string>([[entryPath, entryText]]);
  const userFiles = new Map<string, string>();
  // `~lib/<package>/<path>` of third-party packages found under node_modules -> absolute path.
  const libPaths = new Map<string, string>();
  const deps = new Map<string, string | null>();
  const outputs = new Map<string, Uint8Array | string>();
  let stderr = '';

  const sdkMarker = `${path.sep}node_modules${path.sep}${SDK_PACKAGE.split('/').join(path.sep)}${path.sep}`;
  const readSource = async (filename: string, baseDir: string): Promise<string | null> => {
    const abs = path.resolve(baseDir, filename);
    if (abs === entryPath) return entryText;
    if (path.basename(abs) === 'asconfig.json') return null; // builds do not depend on a stray asconfig.json
    const i = abs.lastIndexOf(sdkMarker);
    if (i >= 0) {
      const file = path.resolve(sdkDir, abs.slice(i + sdkMarker.length));
      if (!file.startsWith(sdkDir + path.sep)) return null;
      try {
        const text = await readFile(file, 'utf8');
        texts.set(file, text);
        return text;
      } catch {
        return null;
      }
    }
    let text: string | null = null;
    try {
      text = await readFile(abs, 'utf8');
    } catch {
      text = null;
    }
    deps.set(path.relative(dir, abs), text === null ? null : sha256(text));
    if (text !== null) {
      texts.set(abs, text);
      const marker = `${path.sep}node_modules${path.sep}`;
      const nm = abs.lastIndexOf(marker);
      if (nm >= 0) {
        libPaths.set(`~lib/${abs.slice(nm + marker.length).split(path.sep).join('/')}`, abs);
      } else {
        userFiles.set(abs, text);
      }
    }
    return text;
  };

  const errors: BuildDiagnostic[] = [];
  const warnings: BuildDiagnostic[] = [];
  const toFile = (normalizedPath: string): string => {
    if (normalizedPath.startsWith(SDK_LIB_PREFIX)) return path.join(sdkDir, normalizedPath.slice(SDK_LIB_PREFIX.length));
    if (normalizedPath.startsWith('~lib/')) return libPaths.get(normalizedPath) ?? normalizedPath;
    return path.resolve(dir, normalizedPath);
  };
  const sourceText = (file: string, normalizedPath: string): string | null => {
    const served = texts.get(file);
    if (served !== undefined) return served;
    if (normalizedPath.startsWith('~lib/')) {
      const lib = asc.libraryFiles[normalizedPath.slice(5).replace(/\.ts$/, '')];
      return typeof lib === 'string' ? lib : null;
    }
    return null;
  };

  const argv = [ENTRY_NAME, '--baseDir', dir, '--outFile', outName, ...ASC_FLAGS];
  if (sourceMap) argv.push('--sourceMap');
  const result = await asc.main(argv, {
    readFile: readSource,
    writeFile: (name: string, contents: Uint8Array | string) => {
      outputs.set(name, contents);
    },
    listFiles: () => [],
    stdout: { write: () => {} },
    stderr: {
      write: (chunk: Uint8Array | string) => {
        stderr += typeof chunk === 'string' ? chunk : decoder.decode(chunk);
      },
    },
    reportDiagnostic: (d) => {
      // Categories: 0 pedantic, 1 info, 2 warning, 3 error.
      if (d.category < 2) return;
      const code = `${d.code < 1000 ? 'AS' : 'TS'}${d.code}`;
      let diag: BuildDiagnostic;
      if (d.range) {
        const file = toFile(d.range.source.normalizedPath);
        const text = sourceText(file, d.range.source.normalizedPath);
        const { line, column } = text !== null ? lineColumn(text, d.range.start) : { line: 0, column: 0 };
        const generated = file === entryPath ? ' (in the generated entry that re-exports the policy)' : '';
        diag = { file, line, column, message: `${d.message} [${code}]${generated}` };
      } else {
        diag = { file: source, line: 0, column: 0, message: `${d.message} [${code}]` };
      }
      (d.category === 3 ? errors : warnings).push(diag);
    },
  });
  if (result.error || errors.length > 0) {
    if (errors.length === 0) {
      const detail = stderr.trim() || result.error?.message || 'unknown error';
      errors.push({ file: source, line: 0, column: 0, message: `the AssemblyScript compiler failed: ${detail}` });
    }
    // Errors in the author's files first, then the SDK's, then the standard library's.
    const rank = (f: string) => (f.startsWith('~lib/') ? 2 : f.startsWith(sdkDir) ? 1 : 0);
    errors.sort((a, b) => rank(a.file) - rank(b.file));
    const n = errors.length;
    throw buildError(`${displayPath(source)}: ${n} error${n === 1 ? '' : 's'}`, errors);
  }
  const wasm = outputs.get(outName);
  if (!(wasm instanceof Uint8Array)) {
    throw buildError(`the AssemblyScript compiler produced no module for ${displayPath(source)}`, []);
  }
  const bytes = new Uint8Array(wasm);
  checkModule(bytes, source, userFiles);
  const map = outputs.get(`${outName}.map`);
  return {
    wasm: bytes,
    sourceMap: map === undefined ? null : typeof map === 'string' ? map : decoder.decode(map),
    warnings,
    deps: [...deps].map(([p, h]) => ({ path: p, sha256: h })).sort((a, b) => a.path.localeCompare(b.path)),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Cache

interface CacheMeta {
  builder: number;
  sha256: string;
  descriptor: PolicyDescriptor;
  sourceMap: boolean;
  warnings: BuildDiagnostic[];
  deps: { path: string; sha256: string | null }[];
}

function listSources(dir: string, recursive: boolean, filter: (name: string) => boolean): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let names: string[];
    try {
      names = readdirSync(d).sort();
    } catch {
      return;
    }
    for (const name of names) {
      if (name.startsWith('.') || name === 'node_modules') continue;
      const p = path.join(d, name);
      let isDir = false;
      try {
        isDir = statSync(p).isDirectory();
      } catch {
        continue;
      }
      if (isDir) {
        if (recursive) walk(p);
      } else if (filter(name)) {
        out.push(p);
      }
    }
  };
  walk(dir);
  return out;
}

async function cacheKey(source: string, descriptor: PolicyDescriptor, sdkDir: string, sourceMap: boolean, outName: string): Promise<string> {
  const hash = createHash('sha256');
  const add = (label: string, value: string | Uint8Array) => {
    hash.update(`${label}\0${typeof value === 'string' ? value.length : value.byteLength}\0`);
    hash.update(value);
  };
  add('builder', String(BUILDER_VERSION));
  add('asc', asc.version);
  add('flags', JSON.stringify(ASC_FLAGS));
  add('options', JSON.stringify({ sourceMap, outName: sourceMap ? outName : null }));
  add('source', path.basename(source));
  add('descriptor', descriptorJson(descriptor));
  for (const file of listSources(sdkDir, true, (n) => n.endsWith('.ts'))) {
    add(`sdk:${path.relative(sdkDir, file)}`, await readFile(file));
  }
  // The policy folder's own files (test files do not change the module).
  const dir = path.dirname(source);
  const own = (n: string) => (n.endsWith('.ts') || n.endsWith('.json')) && !/\.test\.(ts|json)$/.test(n);
  for (const file of listSources(dir, false, own)) {
    add(`policy:${path.basename(file)}`, await readFile(file));
  }
  return hash.digest('hex');
}

async function depsUnchanged(dir: string, deps: CacheMeta['deps']): Promise<boolean> {
  for (const dep of deps) {
    let text: string | null;
    try {
      text = await readFile(path.resolve(dir, dep.path), 'utf8');
    } catch {
      text = null;
    }
    if ((text === null ? null : sha256(text)) !== dep.sha256) return false;
  }
  return true;
}

async function writeAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, file);
}

async function readCache(
  cacheDir: string,
  key: string,
  dir: string,
): Promise<{ wasm: Uint8Array; meta: CacheMeta; sourceMap: string | null } | null> {
  try {
    const meta = JSON.parse(await readFile(path.join(cacheDir, `${key}.json`), 'utf8')) as CacheMeta;
    if (meta.builder !== BUILDER_VERSION) return null;
    const wasm = new Uint8Array(await readFile(path.join(cacheDir, `${key}.wasm`)));
    if (sha256(wasm) !== meta.sha256) return null;
    if (!(await depsUnchanged(dir, meta.deps))) return null;
    const sourceMap = meta.sourceMap ? await readFile(path.join(cacheDir, `${key}.wasm.map`), 'utf8') : null;
    return { wasm, meta, sourceMap };
  } catch {
    return null;
  }
}

async function writeCache(cacheDir: string, key: string, out: CompileOutput, meta: CacheMeta): Promise<void> {
  try {
    await mkdir(cacheDir, { recursive: true });
    if (out.sourceMap !== null) await writeAtomic(path.join(cacheDir, `${key}.wasm.map`), out.sourceMap);
    await writeAtomic(path.join(cacheDir, `${key}.wasm`), out.wasm);
    await writeAtomic(path.join(cacheDir, `${key}.json`), JSON.stringify(meta, null, 2));
  } catch {
    // A cache that cannot be written only costs time.
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Public entry point

// One compilation at a time per process (the compiler is CPU-bound and large); identical builds share one promise.
let queue: Promise<unknown> = Promise.resolve();
const inflight = new Map<string, Promise<{ out: CompileOutput; cached: boolean }>>();

function resolveSource(source: string): string {
  let file = path.resolve(source);
  if (existsSync(file) && statSync(file).isDirectory()) file = path.join(file, 'policy.ts');
  if (!existsSync(file)) {
    throw new PolicyBuildError(`${displayPath(file)}: no such file (give the policy's .ts file or its folder)`, [
      { file, line: 0, column: 0, message: 'no such file' },
    ]);
  }
  if (!file.endsWith('.ts')) {
    throw new PolicyBuildError(`${displayPath(file)}: a policy source must be an AssemblyScript .ts file`, [
      { file, line: 0, column: 0, message: 'not a .ts file' },
    ]);
  }
  return file;
}

/**
 * Builds the policy whose entry file is `options.source` (or the `policy.ts` of the folder given), reading
 * `policy.json` and `schema.json` next to it. Throws `PolicyBuildError` with `diagnostics` on any problem.
 */
export async function buildPolicy(options: BuildOptions): Promise<BuildResult> {
  const source = resolveSource(options.source);
  const dir = path.dirname(source);
  const sourceMap = options.sourceMap === true;
  const outFile = options.outFile ? path.resolve(options.outFile) : null;
  const outName = outFile ? path.basename(outFile) : `${path.basename(source, '.ts')}.wasm`;
  const { descriptor } = await readDescriptor(dir);
  const sourceText = await readFile(source, 'utf8');
  const clash = /\b(export\s+function|function|let|const|var)\s+gatehouse_policy_v1\b/.exec(sourceText);
  if (clash) {
    const { line, column } = lineColumn(sourceText, clash.index);
    throw buildError(`${displayPath(source)} defines ${DESCRIBE_EXPORT}`, [
      { file: source, line, column, message: `${DESCRIBE_EXPORT} is generated by the build from policy.json and schema.json; remove it from the policy` },
    ]);
  }
  const sdkDir = sdkAssemblyDir();
  const cacheDir = path.resolve(options.cacheDir ?? defaultCacheDir());
  const key = await cacheKey(source, descriptor, sdkDir, sourceMap, outName);

  let job = inflight.get(key);
  if (!job) {
    job = (async () => {
      const hit = await readCache(cacheDir, key, dir);
      if (hit) {
        return {
          out: { wasm: hit.wasm, sourceMap: hit.sourceMap, warnings: hit.meta.warnings ?? [], deps: hit.meta.deps },
          cached: true,
        };
      }
      const run = queue.then(() => compile(source, descriptor, sdkDir, sourceMap, outName));
      queue = run.catch(() => {});
      const out = await run;
      await writeCache(cacheDir, key, out, {
        builder: BUILDER_VERSION,
        sha256: sha256(out.wasm),
        descriptor,
        sourceMap: out.sourceMap !== null,
        warnings: out.warnings,
        deps: out.deps,
      });
      return { out, cached: false };
    })();
    inflight.set(key, job);
    job.then(
      () => inflight.delete(key),
      () => inflight.delete(key),
    );
  }
  const { out, cached } = await job;
  const wasm = new Uint8Array(out.wasm);
  if (outFile) {
    await mkdir(path.dirname(outFile), { recursive: true });
    await writeFile(outFile, wasm);
    if (out.sourceMap !== null) await writeFile(`${outFile}.map`, out.sourceMap);
  }
  return {
    wasm,
    outFile,
    sha256: sha256(wasm),
    descriptor,
    cached,
    sourceMap: out.sourceMap,
    warnings: out.warnings,
  };
}
