// The build's check of a compiled policy module. Whether the module is acceptable is decided by the ABI's check
// (abi/module-check.ts), the one the gateway's loader makes: a module this build produces passes the gateway's checks.
// This file only says each problem so that an author of AssemblyScript can act on it, at the line of the author's
// source that causes it when that can be told.

import {
  checkPolicyModule,
  HOST_FUNCTIONS,
  HOST_MODULE,
  KERNEL_FUNCTIONS,
  KERNEL_MODULE,
  PHASES,
  PHASE_EXPORTS,
  WASI_MODULE,
  type ModuleProblem,
} from '../../abi/index.ts';
import { buildError, displayPath, type BuildDiagnostic } from './diagnostics.ts';

const HANDLERS: readonly string[] = PHASES.map((p) => PHASE_EXPORTS[p]);

/** What to use instead of an import the build refuses (most come from AssemblyScript's standard library), or null. */
function importHint(module: string, name: string): string | null {
  const full = `${module}.${name}`;
  if (full === 'env.seed') return 'Math.random() is not available in policies (handlers must be deterministic); derive values from the request, or use counter()';
  if (full === 'env.Date.now') return 'Date.now() is not available; use now() from @gatehouse/policy-sdk';
  if (full === 'env.performance.now') return 'performance.now() is not available; use now() from @gatehouse/policy-sdk';
  if (full.startsWith('env.console.')) return `console.${full.slice('env.console.'.length)}() is not available; use log.info() (or log.debug/warn/error) from @gatehouse/policy-sdk`;
  if (full === 'env.trace') return 'trace() is not available; use log.debug() from @gatehouse/policy-sdk';
  if (full === 'env.abort') return 'env.abort should have been replaced by the SDK abort handler: is the policy built with gatehouse-policy build?';
  if (full === 'env.process.exit' || full.startsWith('env.process.')) return 'process is not available in policies';
  if (module === WASI_MODULE) return `WASI (${name}) is not available to SDK policies (from process, console or @assemblyscript/wasi-shim); use the SDK's functions`;
  if (module === HOST_MODULE) return name in HOST_FUNCTIONS ? null : `${HOST_MODULE} has no import named "${name}" (ABI v1: ${Object.keys(HOST_FUNCTIONS).join(', ')})`;
  if (module === KERNEL_MODULE) return name in KERNEL_FUNCTIONS ? null : `${KERNEL_MODULE} has no import named "${name}"`;
  return `policies may import only from ${KERNEL_MODULE} and ${HOST_MODULE}; remove the @external declaration or the library that needs it`;
}

/** Source patterns that produce the imports above, to point at the author's line. */
const IMPORT_SOURCES: Record<string, RegExp> = {
  'env.seed': /\bMath\.random\s*\(/,
  'env.Date.now': /\bDate\.now\s*\(/,
  'env.performance.now': /\bperformance\.now\s*\(/,
  'env.trace': /(^|[^.\w])trace\s*\(/,
};

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Where in the author's sources an import comes from: a call that the compiler turns into it, or its declaration. */
function importSource(module: string, name: string): RegExp {
  const key = `${module}.${name}`;
  return (
    IMPORT_SOURCES[key] ??
    (key.startsWith('env.console.') ? /\bconsole\.\w+\s*\(/ : new RegExp(`@external\\(\\s*"${escapeRegExp(module)}"\\s*,\\s*"${escapeRegExp(name)}"`))
  );
}

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

/** A problem the ABI's check found, as the author of `source` sees it. */
function diagnostic(problem: ModuleProblem, source: string, userFiles: Map<string, string>): BuildDiagnostic {
  const at = (pattern: RegExp | null, message: string): BuildDiagnostic => {
    const use = pattern ? findUse(userFiles, pattern) : null;
    return { file: use?.file ?? source, line: use?.line ?? 0, column: use?.column ?? 0, message };
  };
  if (problem.import) {
    const { module, name } = problem.import;
    const hint = importHint(module, name);
    const message = hint === null ? `${problem.message} (see its @external declaration)` : `import ${module}::${name} is not allowed: ${hint}`;
    return at(importSource(module, name), message);
  }
  switch (problem.rule) {
    case 'not-wasm':
      return at(null, 'the compiler produced a module that is not valid WebAssembly');
    case 'export-memory':
      return at(null, 'the module does not export its memory as "memory" (do not build with --noExportMemory or --importMemory)');
    case 'export-handler':
      return at(null, `no phase handler is exported: add at least one of ${HANDLERS.map((h) => `export function ${h}(): i32`).join(', ')}`);
    case 'export-signature':
      if (problem.export !== undefined && HANDLERS.includes(problem.export)) {
        const h = problem.export;
        return at(new RegExp(`export\\s+function\\s+${h}\\b`), `${h} must be declared as \`export function ${h}(): i32\` (it is ${problem.declared})`);
      }
      return at(null, problem.message);
    default:
      return at(null, problem.message);
  }
}

/**
 * Refuses the module `wasm` compiled from `source` when the ABI's check finds a problem, with a diagnostic for each
 * (pointing into `userFiles`, the author's sources by path, when it can).
 */
export async function checkModule(wasm: Uint8Array<ArrayBuffer>, source: string, userFiles: Map<string, string> = new Map()): Promise<void> {
  const { problems } = await checkPolicyModule(wasm, { allowWasi: false });
  if (problems.length === 0) return;
  const diagnostics = problems.map((p) => diagnostic(p, source, userFiles));
  diagnostics.sort((a, b) => (a.file === b.file ? a.line - b.line : 0));
  throw buildError(`${displayPath(source)} does not make a valid Gatehouse policy module`, diagnostics);
}
