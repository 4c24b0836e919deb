// Whether a module may be loaded as a policy (abi/policy-abi.md, sections 1, 2 and 4), decided in one place: the
// policy host refuses a module with any of these problems when it loads it, and the SDK's build refuses to produce
// one, so a module the build accepts passes the host's checks. What only the host can find out it finds out after
// these: the metering rewrite refuses proposals past those of section 1, and instantiating the module and calling its
// descriptor export can fail.

import {
  DESCRIBE_EXPORT,
  HOST_MODULE,
  INTERNAL_MODULE,
  KERNEL_MODULE,
  MAX_MEMORY_BYTES,
  PHASES,
  PHASE_EXPORTS,
  WASI_MODULE,
  WASM_PAGE_BYTES,
  type Phase,
} from './constants.ts';
import { signatureProblems } from './signature-checks.ts';
import { functionSignatures, readMemoryLimits, type FunctionSignatures, type MemoryLimits } from './wasm-binary.ts';

/** The rule a problem breaks, for tools that say more about it than the message (the SDK's build names the source line). */
export type ModuleRule =
  /** Not a valid WebAssembly module. */
  | 'not-wasm'
  /** An imported memory: a policy defines its own. */
  | 'import-memory'
  /** An import from `gatehouse:internal`, the host's own. */
  | 'import-reserved'
  /** An import from a module other than the kernel, the host functions, and WASI where it is allowed. */
  | 'import-module'
  /** An import of the kernel or the host functions that they lack, of another kind, or with another signature. */
  | 'import-function'
  /** No memory exported as `memory`. */
  | 'export-memory'
  /** No `gatehouse_policy_v1` function exported. */
  | 'export-descriptor'
  /** No phase handler exported. */
  | 'export-handler'
  /** A called export (the descriptor or a handler) of another signature than `() -> i32`. */
  | 'export-signature'
  /** No memory defined. */
  | 'memory-missing'
  /** A memory that starts larger than any binding may have. */
  | 'memory-size';

export interface ModuleProblem {
  rule: ModuleRule;
  /** The problem as the host reports it. */
  message: string;
  /** The import it is about. */
  import?: { module: string; name: string };
  /** The export it is about. */
  export?: string;
  /** For a signature: what the module declares (`(i32) -> i64`), or the kind of an import that is not a function. */
  declared?: string;
}

export interface ModuleCheckOptions {
  /**
   * Whether importing WASI is acceptable. The host: yes, and a binding without the `wasi` grant is refused when it is
   * made. The SDK's build: no, an AssemblyScript policy's WASI imports come from a library by mistake.
   */
  allowWasi: boolean;
}

export interface ModuleCheck {
  /** Empty when the module passes. */
  problems: ModuleProblem[];
  /** Phases whose handler the module exports. */
  phases: ReadonlySet<Phase>;
  importsWasi: boolean;
  /** Its defined memory's limits (null: it defines none). */
  memory: MemoryLimits | null;
}

/** Checks `bytes` against the ABI's rules for a module's imports, exports and memory; every problem found is listed. */
export async function checkPolicyModule(bytes: Uint8Array<ArrayBuffer>, options: ModuleCheckOptions): Promise<ModuleCheck> {
  if (!WebAssembly.validate(bytes)) {
    return { problems: [{ rule: 'not-wasm', message: 'not a valid WebAssembly module' }], phases: new Set(), importsWasi: false, memory: null };
  }
  const module = await WebAssembly.compile(bytes);
  const problems: ModuleProblem[] = [];
  let importsWasi = false;
  const allowed = options.allowWasi
    ? `only "${KERNEL_MODULE}", "${HOST_MODULE}" and (when granted) "${WASI_MODULE}" may be imported`
    : `only "${KERNEL_MODULE}" and "${HOST_MODULE}" may be imported`;
  for (const imp of WebAssembly.Module.imports(module)) {
    const what = `import ${imp.module}.${imp.name} (${imp.kind})`;
    const about = { import: { module: imp.module, name: imp.name } };
    if (imp.kind === 'memory') problems.push({ rule: 'import-memory', ...about, message: `${what}: a policy must define its own memory, not import one` });
    else if (imp.module === INTERNAL_MODULE) problems.push({ rule: 'import-reserved', ...about, message: `${what}: "${INTERNAL_MODULE}" is reserved for the host` });
    else if (imp.module === WASI_MODULE && options.allowWasi) importsWasi = true;
    else if (imp.module !== KERNEL_MODULE && imp.module !== HOST_MODULE) problems.push({ rule: 'import-module', ...about, message: `${what}: ${allowed}` });
  }
  const exported = new Map(WebAssembly.Module.exports(module).map((e) => [e.name, e.kind]));
  if (exported.get('memory') !== 'memory') problems.push({ rule: 'export-memory', message: 'the module must export its memory as "memory"' });
  if (exported.get(DESCRIBE_EXPORT) !== 'function') {
    problems.push({ rule: 'export-descriptor', export: DESCRIBE_EXPORT, message: `missing export "${DESCRIBE_EXPORT}" (the descriptor)` });
  }
  const phases = new Set<Phase>(PHASES.filter((p) => exported.get(PHASE_EXPORTS[p]) === 'function'));
  if (phases.size === 0) {
    problems.push({ rule: 'export-handler', message: `no phase handler exported (one of ${PHASES.map((p) => PHASE_EXPORTS[p]).join(', ')})` });
  }
  const memory = readMemoryLimits(bytes);
  if (!memory) problems.push({ rule: 'memory-missing', message: 'the module defines no memory' });
  else if (memory.initial * WASM_PAGE_BYTES > MAX_MEMORY_BYTES) {
    const mib = (n: number) => n / 2 ** 20;
    problems.push({
      rule: 'memory-size',
      message: `its memory starts at ${memory.initial} pages (${mib(memory.initial * WASM_PAGE_BYTES)} MiB), more than any memory limit allows (${mib(MAX_MEMORY_BYTES)} MiB)`,
    });
  }
  let signatures: FunctionSignatures | null = null;
  try {
    signatures = functionSignatures(bytes);
  } catch {
    // Type forms past WebAssembly 2.0: the host's metering refuses the module, naming the proposal.
  }
  for (const p of signatures ? signatureProblems(signatures) : []) {
    problems.push({ rule: p.import ? 'import-function' : 'export-signature', ...p });
  }
  return { problems, phases, importsWasi, memory };
}
