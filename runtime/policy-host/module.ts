// Loading a policy module: check it against ABI v1, meter it, cap its memory, compile it once, read its descriptor.

import { createHash } from 'node:crypto';
import {
  DESCRIBE_EXPORT,
  INTERNAL_MODULE,
  WASM_PAGE_BYTES,
  checkPolicyModule,
  parseDescriptor,
  writeMemoryLimits,
  type ConfigValidator,
  type Phase,
  type PolicyDescriptor,
} from '../../abi/index.ts';
import { CallAbort, PolicyLoadError } from './errors.ts';
import { DEFAULT_LIMITS, PolicyInstance } from './instance.ts';
import { BUDGET_CHECK_IMPORT, FUEL_EXPORT, instrumentForBudget } from './instrument.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { BudgetClocks } from './call-budget.ts';

const PAGE = WASM_PAGE_BYTES;

export interface PolicyModule {
  readonly sha256: string;
  readonly descriptor: PolicyDescriptor;
  readonly validateConfig: ConfigValidator | null;
  /** Phases whose handler the module exports. */
  readonly phases: ReadonlySet<Phase>;
  readonly importsWasi: boolean;
  /** Pages the module asks for at start. */
  readonly initialPages: number;
  /** The metered module compiled with its memory capped at `memoryBytes` (compiled once per cap). */
  compiled(memoryBytes: number): Promise<WebAssembly.Module>;
}

/**
 * Where metered modules are kept between starts, so that binaryen runs (and loads) only for a module not seen before.
 * An entry is what makes the CPU budget hold: the store returns one only when it is proven to be this instrumenter's
 * output for these very bytes (runtime/sync/instrumented-cache.ts), and neither method throws.
 */
export interface InstrumentedModuleStore {
  /** The metered module of the module whose bytes hash to `sha256`; null when there is none that proves itself. */
  read(sha256: string): Promise<Uint8Array | null>;
  write(sha256: string, metered: Uint8Array): Promise<void>;
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** A short name for a module in messages: its descriptor name if known, else the start of its hash. */
function label(sha: string): string {
  return `sha256:${sha.slice(0, 12)}`;
}

/** The module metered for the CPU budget: from `store` when it holds it, else by binaryen (then kept in `store`). */
async function metered(own: Uint8Array, sha256: string, where: string, store: InstrumentedModuleStore | undefined): Promise<Uint8Array> {
  const kept = store ? await store.read(sha256) : null;
  if (kept) return kept;
  let made: Uint8Array;
  try {
    made = await instrumentForBudget(own);
  } catch (err) {
    throw new PolicyLoadError(where, [(err as Error).message]);
  }
  await store?.write(sha256, made);
  return made;
}

/**
 * The CPU budget holds only for a metered module. Whatever produced the bytes (binaryen, or a cache entry that proved
 * itself), a module without the meter's fuel export and check import is refused rather than run without a deadline.
 */
function refuseUnmetered(module: WebAssembly.Module, where: string): void {
  const fuel = WebAssembly.Module.exports(module).some((e) => e.name === FUEL_EXPORT && e.kind === 'global');
  const check = WebAssembly.Module.imports(module).some(
    (i) => i.module === INTERNAL_MODULE && i.name === BUDGET_CHECK_IMPORT && i.kind === 'function',
  );
  const missing: string[] = [];
  if (!fuel) missing.push(`the ${FUEL_EXPORT} export`);
  if (!check) missing.push(`the ${INTERNAL_MODULE} ${BUDGET_CHECK_IMPORT} import`);
  if (missing.length > 0) {
    throw new PolicyLoadError(where, [`its metered form lacks ${missing.join(' and ')}: a module is not run without its CPU meter`]);
  }
}

export async function loadPolicyModule(
  bytes: Uint8Array,
  logger: Logger,
  clocks: BudgetClocks,
  store?: InstrumentedModuleStore,
): Promise<PolicyModule> {
  const sha256 = sha256Hex(bytes);
  const where = label(sha256);
  // An exact copy: the caller's buffer may be a view into something larger.
  const own = new Uint8Array(bytes);
  // The ABI's checks (abi/module-check.ts), the same the SDK's build makes; WASI is checked against grants when bound.
  const check = await checkPolicyModule(own, { allowWasi: true });
  if (check.problems.length > 0) throw new PolicyLoadError(where, check.problems.map((p) => p.message));
  const { phases, importsWasi } = check;
  const limits = check.memory;

  const meteredBytes = await metered(own, sha256, where, store);
  const initialPages = limits!.initial;
  const declaredMax = limits!.maximum;
  const byCap = new Map<number, Promise<WebAssembly.Module>>();
  const compiled = (memoryBytes: number): Promise<WebAssembly.Module> => {
    const pages = Math.floor(memoryBytes / PAGE);
    const found = byCap.get(pages);
    if (found) return found;
    const maximum = Math.max(initialPages, declaredMax === null ? pages : Math.min(declaredMax, pages));
    const compiling = WebAssembly.compile(writeMemoryLimits(meteredBytes, { initial: initialPages, maximum })).then((module) => {
      refuseUnmetered(module, where);
      return module;
    });
    byCap.set(pages, compiling);
    return compiling;
  };

  // Ask the module for its descriptor, under the default limits and no grants beyond WASI if it imports it.
  // Instantiating runs its start function and places its data segments: either may fail (a trap, a loop stopped by
  // the CPU budget, a segment outside its memory), and the module is refused saying which.
  // A module that starts above the default cap (bound later with a larger one) gets 1 MiB of room for its descriptor.
  const describeLimits = { ...DEFAULT_LIMITS, memoryBytes: Math.max(DEFAULT_LIMITS.memoryBytes, (initialPages + 16) * PAGE) };
  // A start function stopped for its CPU budget is tried once more. The budget is the process's CPU time, which also
  // counts V8 compiling the module just loaded on its other threads (under Deno an instantiation right after loading
  // can take more CPU time than wall-clock time) and a pause of a virtual machine by its host: a module that used
  // little was refused now and then, and with it the configuration that named it. The second instantiation finds the
  // code compiled. A start function that loops is stopped again: a load costs two budgets at most.
  const describe = async (): Promise<PolicyInstance> =>
    PolicyInstance.create({
      compiled: await compiled(describeLimits.memoryBytes),
      policy: where,
      grants: { wasi: importsWasi },
      limits: describeLimits,
      initialPages,
      extismConfig: {},
      logger: logger.child({ policy: where }),
      clocks,
    });
  let describer: PolicyInstance;
  try {
    describer = await describe().catch((err: unknown) => {
      if (err instanceof CallAbort && err.reason === 'cpu-budget') return describe();
      throw err;
    });
  } catch (err) {
    const reason = err instanceof CallAbort && err.reason === 'cpu-budget' ? 'its start function ran past its CPU budget' : (err as Error).message;
    throw new PolicyLoadError(where, [`it cannot be instantiated (start function, data segments): ${reason}`]);
  }
  let output: Uint8Array | null;
  try {
    output = describer.describe(DESCRIBE_EXPORT);
  } catch (err) {
    throw new PolicyLoadError(where, [`${DESCRIBE_EXPORT} failed: ${(err as Error).message}`]);
  } finally {
    await describer.close();
  }
  if (!output) throw new PolicyLoadError(where, [`${DESCRIBE_EXPORT} produced no output (it must output_set JSON)`]);
  const parsed = parseDescriptor(new TextDecoder().decode(output));
  if ('problems' in parsed) throw new PolicyLoadError(where, parsed.problems);
  if (initialPages * PAGE > DEFAULT_LIMITS.memoryBytes) {
    logger.warn('policy module starts above the default memory cap; bindings need a larger memory limit', {
      policy: parsed.descriptor.name,
      sha256,
      initialPages,
    });
  }
  return {
    sha256,
    descriptor: parsed.descriptor,
    validateConfig: parsed.validateConfig,
    phases,
    importsWasi,
    initialPages,
    compiled,
  };
}
