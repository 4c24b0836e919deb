// The checks of a compiled policy module, with what an author of AssemblyScript should do about each problem.

import { HOST_MODULE, KERNEL_MODULE } from '../../abi/index.ts';
import { buildError, displayPath, type BuildDiagnostic } from './diagnostics.ts';

const HANDLERS = ['on_inbound', 'on_backend', 'on_outbound', 'on_error'] as const;
/** Imports of `gatehouse:host/v1` (ABI section 4). */
const HOST_IMPORTS = new Set(['get', 'set', 'add', 'remove', 'list', 'respond', 'effect', 'log', 'now', 'fail', 'verify', 'metric']);
/** Imports of the Extism kernel. */
const KERNEL_IMPORTS = new Set([
  'input_length', 'input_load_u8', 'input_load_u64', 'input_offset', 'alloc', 'free', 'length', 'length_unsafe',
  'load_u8', 'load_u64', 'store_u8', 'store_u64', 'output_set', 'error_set', 'error_get', 'config_get', 'var_get',
  'var_set', 'http_request', 'http_status_code', 'http_headers', 'log_info', 'log_debug', 'log_warn', 'log_error',
  'log_trace', 'get_log_level',
]);

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

export function checkModule(wasm: Uint8Array<ArrayBuffer>, source: string, userFiles: Map<string, string>): void {
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
