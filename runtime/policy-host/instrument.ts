// Rewrites a policy module so that the host can stop it when it runs past its CPU budget, and so that its memory
// grows only with the host's consent.
//
// Foreground Extism calls run synchronously on the event loop, and nothing in @extism/extism can interrupt them. So
// every module is metered once, at load. Fuel is counted in instructions: each function body and each loop body is a
// region, and on entering a region the module spends as many units as the region has instructions (nested loops
// excluded: they are regions of their own). Control only moves backwards by branching to a loop header, so between two
// charges no instruction runs twice, and the fuel spent bounds the work done, however large a function is. A
// function of a million straight-line instructions called in a loop pays a million units a call, not one.
//
// When the fuel runs out the module calls the host import `gatehouse:internal.budget_check`, which compares the clock
// with the call's deadline and throws when it has passed, unwinding the module. The fuel global is exported
// (`gatehouse$fuel`) so that the host can refill it with less when the last interval took long: an instruction that
// touches a fresh page of memory costs the kernel 1 to 15 us (a page fault), which no instruction count sees, and a
// loop doing nothing else would otherwise reach the next check only after tens of milliseconds. (The host also faults
// a module's memory in itself, and gives long intervals only once it has: instance.ts.)
//
// Bulk memory instructions do work proportional to their size operand: `memory.copy` and `memory.fill` are replaced
// by functions that do the work natively in chunks of BULK_CHUNK_BYTES, charging each chunk (one unit per
// BYTES_PER_UNIT bytes) before it, so that the deadline is checked between chunks; `memory.init` (data segments,
// bounded by the module's size) has its size charged first. `memory.grow` asks the host first
// (`gatehouse:internal.memory_grow`): the memory cap covers the module's linear memory and the Extism kernel blocks
// its call holds, which only the host sees together. Tables are capped at MAX_TABLE_ENTRIES, and table instructions
// whose work depends on an operand and cannot be charged (table.fill, table.copy, table.init) are refused.
//
// Measured cost (BENCHMARKS.md, `npm run bench:policy`): the same charge sequence as counting entries did (a global
// read, a subtraction, a compare), so metering costs what it did.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { INTERNAL_MODULE } from '../../abi/index.ts';

type Binaryen = typeof import('binaryen').default;
let binaryenPromise: Promise<Binaryen> | null = null;

/**
 * binaryen is large (10 MB of JavaScript: 0.9 s and 76 MiB to load); only metering a module needs it, and a gateway
 * whose modules all come from the instrumented-module cache never loads it.
 */
function loadBinaryen(): Promise<Binaryen> {
  binaryenPromise ??= import('binaryen').then((m) => m.default);
  return binaryenPromise;
}

/** Whether this process has loaded binaryen (for the log of what a start metered, and the tests that read it). */
export function binaryenLoaded(): boolean {
  return binaryenPromise !== null;
}

let version: string | null = null;

/**
 * The version of the metering, for the instrumented-module cache (runtime/sync/instrumented-cache.ts): a cached
 * module is used only by the instrumenter that made it. Derived rather than numbered, so that no change can forget to
 * bump it: the sha256 of the code this function ships in (instrument.ts under Deno, the chunk of dist/ holding it under
 * Node, the whole single-file bundle, binaryen included, in the bundle), binaryen's version, and the ABI's name of the
 * host module the metering calls. Any edit of this file, comments included, invalidates every entry; an upgrade of the
 * gateway usually does too. Throws when its own code cannot be read (the cache is then off).
 */
export function instrumenterVersion(): string {
  if (version !== null) return version;
  const code = readFileSync(fileURLToPath(import.meta.url));
  version = createHash('sha256')
    .update(`gatehouse instrumenter\0${INTERNAL_MODULE}\0binaryen ${binaryenPackageVersion()}\0`)
    .update(code)
    .digest('hex');
  return version;
}

/** binaryen's version from its package.json, without loading it; bundled in this file when it cannot be found. */
function binaryenPackageVersion(): string {
  let entry: string;
  try {
    entry = fileURLToPath(import.meta.resolve('binaryen'));
  } catch {
    return 'bundled';
  }
  const manifest = JSON.parse(readFileSync(join(dirname(entry), 'package.json'), 'utf8')) as { version: string };
  return manifest.version;
}

/**
 * Instructions between two deadline checks. A check costs about 50 ns (a host call and a clock read); 65,536
 * instructions take 20 to 100 us, so the checks cost well under 1% and a call overshoots its deadline by that much.
 */
export const FUEL_PER_CHECK = 65_536;
/** Bulk memory instructions pay one unit per this many bytes (a native copy moves 16 to 32 bytes a nanosecond). */
export const BYTES_PER_UNIT = 16;
/**
 * Fuel for an interval that may touch fresh memory: the start function's (which runs before the host can refill), a
 * call's first while the host has not yet faulted the whole memory in, and the one after a growth (instance.ts). Short,
 * so that such an interval reaches a check within a few milliseconds however slow its instructions are (about 700 page
 * faults: 10 ms at the 14 us a fault costs on the development machine). Once the memory is faulted in, calls start
 * with FUEL_PER_CHECK: the five built-ins of bench:proxy made 11 checks a request at 4,096, and make none.
 */
export const FIRST_FUEL = 4096;
/** memory.copy and memory.fill run in chunks of this size, the deadline checkable between two. */
export const BULK_CHUNK_BYTES = 65_536;
/** The export through which the host refills the fuel (instance.ts). */
export const FUEL_EXPORT = 'gatehouse$fuel';
/** The most elements all of a module's tables may hold: 8 bytes each, outside any memory the cap counts. */
export const MAX_TABLE_ENTRIES = 65_536;
export const BUDGET_CHECK_IMPORT = 'budget_check';
export const MEMORY_GROW_IMPORT = 'memory_grow';

/** Names the instrumentation adds; a module that already uses one is refused rather than miscompiled. */
const FUEL = 'gatehouse$fuel';
const CHECK = 'gatehouse$budget_check';
const GROW = 'gatehouse$memory_grow';
const CHARGE_SIZE = 'gatehouse$charge_size';
/** What binaryen's llvm-memory-copy-fill-lowering pass calls in place of memory.copy and memory.fill. */
const MEMORY_COPY = '__memory_copy';
const MEMORY_FILL = '__memory_fill';

function supportedFeatures(b: Binaryen): number {
  const F = b.Features;
  return (
    F.MVP |
    F.MutableGlobals |
    F.NontrappingFPToInt |
    F.SignExt |
    F.BulkMemory |
    F.BulkMemoryOpt |
    F.SIMD128 |
    F.ReferenceTypes |
    F.Multivalue
  );
}

/** binaryen's per-kind accessors, as plain functions of expression references. */
type Accessors = Record<string, (...args: number[]) => number>;

function accessors(b: Binaryen): Record<string, Accessors> {
  return b as unknown as Record<string, Accessors>;
}

/**
 * The child expressions of each kind of expression the supported features allow, by binaryen expression id. A kind
 * missing from the table is refused: an unknown kind could hide a loop or a call that the meter would not see.
 * memory.copy and memory.fill are not in it: they are calls to the chunked helpers by the time the walk runs.
 */
function childTable(b: Binaryen): Map<number, (e: number) => number[]> {
  const K = b as unknown as Record<string, Accessors> & Record<string, number>;
  // Accessors are looked up once here: the walk calls them for every expression of every function.
  const get = (kind: string, ...fields: string[]) => {
    const getters = fields.map((f) => K[kind]![`get${f}`]!);
    return (e: number) => getters.map((g) => g(e));
  };
  const list = (kind: string, count: string, at: string, ...fields: string[]) => {
    const getters = fields.map((f) => K[kind]![`get${f}`]!);
    const countOf = K[kind]![count]!;
    const childAt = K[kind]![at]!;
    return (e: number) => {
      const out = getters.map((g) => g(e));
      const n = countOf(e);
      for (let i = 0; i < n; i++) out.push(childAt(e, i));
      return out;
    };
  };
  const none = () => [];
  const table = new Map<number, (e: number) => number[]>();
  const add = (idName: string, children: (e: number) => number[]) => table.set(K[idName] as number, children);
  for (const leaf of ['NopId', 'ConstId', 'LocalGetId', 'GlobalGetId', 'MemorySizeId', 'UnreachableId', 'RefNullId', 'RefFuncId', 'DataDropId', 'TableSizeId']) {
    add(leaf, none);
  }
  add('BlockId', list('Block', 'getNumChildren', 'getChildAt'));
  add('IfId', get('If', 'Condition', 'IfTrue', 'IfFalse'));
  // The walk enters a loop's body itself, as a region of its own.
  add('LoopId', none);
  add('BreakId', get('Break', 'Condition', 'Value'));
  add('SwitchId', get('Switch', 'Condition', 'Value'));
  add('CallId', list('Call', 'getNumOperands', 'getOperandAt'));
  add('CallIndirectId', list('CallIndirect', 'getNumOperands', 'getOperandAt', 'Target'));
  add('LocalSetId', get('LocalSet', 'Value'));
  add('GlobalSetId', get('GlobalSet', 'Value'));
  add('LoadId', get('Load', 'Ptr'));
  add('StoreId', get('Store', 'Ptr', 'Value'));
  add('UnaryId', get('Unary', 'Value'));
  add('BinaryId', get('Binary', 'Left', 'Right'));
  add('SelectId', get('Select', 'IfTrue', 'IfFalse', 'Condition'));
  add('DropId', get('Drop', 'Value'));
  add('ReturnId', get('Return', 'Value'));
  add('MemoryGrowId', get('MemoryGrow', 'Delta'));
  add('SIMDExtractId', get('SIMDExtract', 'Vec'));
  add('SIMDReplaceId', get('SIMDReplace', 'Vec', 'Value'));
  add('SIMDShuffleId', get('SIMDShuffle', 'Left', 'Right'));
  add('SIMDTernaryId', get('SIMDTernary', 'A', 'B', 'C'));
  add('SIMDShiftId', get('SIMDShift', 'Vec', 'Shift'));
  add('SIMDLoadId', get('SIMDLoad', 'Ptr'));
  add('SIMDLoadStoreLaneId', get('SIMDLoadStoreLane', 'Ptr', 'Vec'));
  add('MemoryInitId', get('MemoryInit', 'Dest', 'Offset', 'Size'));
  add('RefIsNullId', get('RefIsNull', 'Value'));
  add('TableGetId', get('TableGet', 'Index'));
  add('TableSetId', get('TableSet', 'Index', 'Value'));
  add('TableGrowId', get('TableGrow', 'Value', 'Delta'));
  add('TupleMakeId', list('TupleMake', 'getNumOperands', 'getOperandAt'));
  add('TupleExtractId', get('TupleExtract', 'Tuple'));
  return table;
}

/** What a walk of one function found: the instruction count of each region, and what to rewrite. */
interface FunctionWalk {
  /** Region 0 is the function body outside its loops; region i > 0 is the body of loops[i - 1]. */
  weights: number[];
  loops: number[];
  /** memory.init instructions, whose size operand is charged. */
  inits: number[];
  grows: number[];
}

function walk(b: Binaryen, children: Map<number, (e: number) => number[]>, body: number, where: string): FunctionWalk {
  const result: FunctionWalk = { weights: [0], loops: [], inits: [], grows: [] };
  // An explicit stack: a module can nest blocks deeper than the JavaScript stack allows.
  const stack: number[] = [body, 0];
  while (stack.length > 0) {
    const region = stack.pop()!;
    const expr = stack.pop()!;
    result.weights[region]!++;
    const id = b.getExpressionId(expr);
    const kids = children.get(id);
    if (!kids) throw new Error(`${where} uses an instruction the CPU meter cannot charge (binaryen expression id ${id}); table.fill, table.copy and table.init are not supported`);
    if (id === b.LoopId) {
      result.loops.push(expr);
      result.weights.push(0);
      stack.push(accessors(b).Loop!.getBody!(expr), result.weights.length - 1);
      continue;
    }
    if (id === b.MemoryInitId) result.inits.push(expr);
    else if (id === b.MemoryGrowId) result.grows.push(expr);
    for (const child of kids(expr)) if (child !== 0) stack.push(child, region);
  }
  return result;
}

export async function instrumentForBudget(bytes: Uint8Array): Promise<Uint8Array> {
  const b = await loadBinaryen();
  let module: ReturnType<Binaryen['readBinary']>;
  try {
    module = b.readBinary(bytes);
  } catch (err) {
    throw new Error(`binaryen could not read the module${detail(err)}`);
  }
  try {
    module.setFeatures(supportedFeatures(b));
    if (!module.validate()) {
      throw new Error(
        'the module uses a WebAssembly feature outside the supported set (sign-extension, mutable globals, ' +
          'non-trapping float-to-int, bulk memory, SIMD, reference types, multi-value)',
      );
    }
    for (const name of [CHECK, GROW, CHARGE_SIZE, MEMORY_COPY, MEMORY_FILL]) {
      if (module.getFunction(name) !== 0) throw new Error(`the module defines a function named ${name}, a name reserved for metering`);
    }
    if (module.getGlobal(FUEL) !== 0) throw new Error(`the module defines a global named ${FUEL}, a name reserved for metering`);
    if (module.getExport(FUEL_EXPORT) !== 0) throw new Error(`the module exports ${FUEL_EXPORT}, a name reserved for metering`);
    capTables(b, module);

    const functions: number[] = [];
    for (let i = 0; i < module.getNumFunctions(); i++) {
      const fn = module.getFunctionByIndex(i);
      if (!b.getFunctionInfo(fn).module) functions.push(fn);
    }
    module.addFunctionImport(CHECK, INTERNAL_MODULE, BUDGET_CHECK_IMPORT, b.none, b.none);
    module.addFunctionImport(GROW, INTERNAL_MODULE, MEMORY_GROW_IMPORT, b.i32, b.i32);
    module.addGlobal(FUEL, b.i32, true, module.i32.const(FIRST_FUEL));
    module.addGlobalExport(FUEL, FUEL_EXPORT);
    const fuel = () => module.global.get(FUEL, b.i32);
    /**
     * Spends `units` (an i32 expression) of fuel; when it runs out, refills it and asks the host whether the deadline
     * passed (the host may refill it with less).
     */
    const spendBy = (units: number) => [
      module.global.set(FUEL, module.i32.sub(fuel(), units)),
      module.if(
        module.i32.le_s(fuel(), module.i32.const(0)),
        module.block(null, [module.global.set(FUEL, module.i32.const(FIRST_FUEL)), module.call(CHECK, [], b.none)]),
      ),
    ];
    const spend = (units: number) => spendBy(module.i32.const(units));
    const unitsOf = (bytes: number) => module.i32.shr_u(bytes, module.i32.const(Math.log2(BYTES_PER_UNIT)));
    // (size) -> size, having spent size / BYTES_PER_UNIT units first.
    module.addFunction(CHARGE_SIZE, b.i32, b.i32, [], module.block(null, [...spendBy(unitsOf(module.local.get(0, b.i32))), module.local.get(0, b.i32)], b.i32));
    try {
      module.runPasses(['llvm-memory-copy-fill-lowering']);
    } catch (err) {
      // binaryen aborts the pass with an object of its own (no message) on what it cannot lower: say what is refused.
      throw new Error(
        `the CPU meter cannot rewrite this module's bulk memory instructions${detail(err)}: passive data segments ` +
          '(memory.init, data.drop) and table.fill, table.copy, table.init and elem.drop are not supported',
      );
    }
    module.setFeatures(supportedFeatures(b));
    addChunkedBulk(b, module, spendBy, unitsOf);

    const children = childTable(b);
    const auto = (b as unknown as { _BinaryenTypeAuto(): number })._BinaryenTypeAuto();
    const K = accessors(b);
    for (const fn of functions) {
      const info = b.getFunctionInfo(fn);
      const found = walk(b, children, info.body, `function ${info.name}`);
      for (const expr of found.inits) K.MemoryInit!.setSize!(expr, module.call(CHARGE_SIZE, [K.MemoryInit!.getSize!(expr)], b.i32));
      for (const expr of found.grows) K.MemoryGrow!.setDelta!(expr, module.call(GROW, [K.MemoryGrow!.getDelta!(expr)], b.i32));
      found.loops.forEach((loop, i) => {
        const body = K.Loop!.getBody!(loop);
        K.Loop!.setBody!(loop, module.block(null, [...spend(found.weights[i + 1]!), body], auto));
      });
      K.Function!.setBody!(fn, module.block(null, [...spend(found.weights[0]!), info.body], info.results));
    }
    module.runPasses(['remove-unused-module-elements']);
    if (!module.validate()) throw new Error('the metered module does not validate (a Gatehouse bug; please report it)');
    // The function names are written back (binaryen drops them unless asked), so that a trap names the policy's
    // function in the stack: read only when a call fails (errors.ts, authorFrame).
    const debugInfo = b.getDebugInfo();
    b.setDebugInfo(true);
    try {
      return module.emitBinary();
    } finally {
      b.setDebugInfo(debugInfo);
    }
  } finally {
    module.dispose();
  }
}

type BinaryenModule = ReturnType<Binaryen['readBinary']>;

/**
 * Replaces the byte loops that binaryen's lowering pass made of memory.copy and memory.fill with native copies and
 * fills of BULK_CHUNK_BYTES at a time, each chunk charged before it runs. A range outside the memory traps before
 * anything is written, as the instructions do; a copy whose destination overlaps its source from above goes backwards.
 */
function addChunkedBulk(
  b: Binaryen,
  module: BinaryenModule,
  spendBy: (units: number) => number[],
  unitsOf: (bytes: number) => number,
): void {
  const params = b.createType([b.i32, b.i32, b.i32]);
  const i32 = (index: number) => module.local.get(index, b.i32);
  const set = (index: number, value: number) => module.local.set(index, value);
  const chunk = (n: number) => module.select(module.i32.gt_u(n, module.i32.const(BULK_CHUNK_BYTES)), module.i32.const(BULK_CHUNK_BYTES), n);
  // addr + size > memory size, in 64 bits so that the sum cannot wrap.
  const outside = (addr: number, size: number) =>
    module.i64.gt_u(
      module.i64.add(module.i64.extend_u(addr), module.i64.extend_u(size)),
      module.i64.shl(module.i64.extend_u(module.memory.size()), module.i64.const(16)),
    );
  /** A loop over chunks: `step` moves local 3 (the chunk's size) bytes and advances; ends when local 2 (size) is 0. */
  const chunks = (label: string, step: number[]) =>
    module.loop(
      label,
      module.block(null, [
        module.br(`${label}.done`, module.i32.eqz(i32(2))),
        set(3, chunk(i32(2))),
        ...spendBy(unitsOf(i32(3))),
        ...step,
        module.br(label),
      ]),
    );
  const done = (label: string, body: number) => module.block(`${label}.done`, [body]);

  if (module.getFunction(MEMORY_FILL) !== 0) {
    // (dest, value, size); local 3: this chunk's size.
    module.removeFunction(MEMORY_FILL);
    module.addFunction(MEMORY_FILL, params, b.none, [b.i32], module.block(null, [
      module.if(outside(i32(0), i32(2)), module.unreachable()),
      done('fill', chunks('fill', [
        module.memory.fill(i32(0), i32(1), i32(3)),
        set(0, module.i32.add(i32(0), i32(3))),
        set(2, module.i32.sub(i32(2), i32(3))),
      ])),
    ]));
  }
  if (module.getFunction(MEMORY_COPY) !== 0) {
    // (dest, source, size); local 3: this chunk's size.
    module.removeFunction(MEMORY_COPY);
    module.addFunction(MEMORY_COPY, params, b.none, [b.i32], module.block(null, [
      module.if(module.i32.or(outside(i32(0), i32(2)), outside(i32(1), i32(2))), module.unreachable()),
      module.if(
        module.i32.le_u(i32(0), i32(1)),
        done('forward', chunks('forward', [
          module.memory.copy(i32(0), i32(1), i32(3)),
          set(0, module.i32.add(i32(0), i32(3))),
          set(1, module.i32.add(i32(1), i32(3))),
          set(2, module.i32.sub(i32(2), i32(3))),
        ])),
        // The destination is above the source: copy from the end, so that no byte is overwritten before it is read.
        done('backward', chunks('backward', [
          set(2, module.i32.sub(i32(2), i32(3))),
          module.memory.copy(module.i32.add(i32(0), i32(2)), module.i32.add(i32(1), i32(2)), i32(3)),
        ])),
      ),
    ]));
  }
}

/** Refuses tables that start above MAX_TABLE_ENTRIES in all, and lowers their maxima so that they cannot grow past it. */
function capTables(b: Binaryen, module: ReturnType<Binaryen['readBinary']>): void {
  const m = module as unknown as { getNumTables(): number; getTableByIndex(i: number): number };
  const setMax = (b as unknown as { _BinaryenTableSetMax(t: number, max: number): void })._BinaryenTableSetMax;
  const tables: { ref: number; initial: number; max?: number }[] = [];
  for (let i = 0; i < m.getNumTables(); i++) {
    const ref = m.getTableByIndex(i);
    tables.push({ ref, ...b.getTableInfo(ref) });
  }
  const initial = tables.reduce((sum, t) => sum + t.initial, 0);
  if (initial > MAX_TABLE_ENTRIES) {
    throw new Error(`its tables start with ${initial} elements, more than the ${MAX_TABLE_ENTRIES} allowed`);
  }
  // The room left is shared equally, so that all of them grown to their maxima still hold MAX_TABLE_ENTRIES at most.
  const share = tables.length === 0 ? 0 : Math.floor((MAX_TABLE_ENTRIES - initial) / tables.length);
  for (const t of tables) {
    const max = t.initial + share;
    if (t.max === undefined || t.max > max) setMax(t.ref, max);
  }
}

/**
 * binaryen's own message, when its exception carries one, as ` (message)`; nothing when it does not. binaryen throws
 * plain objects, some with a `message` and some without.
 */
function detail(err: unknown): string {
  const message = (err as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? ` (${message})` : '';
}
