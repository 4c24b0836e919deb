// Rewrites a policy module so that the host can stop it when it runs past its CPU budget.
//
// Foreground Extism calls run synchronously on the event loop, and nothing in @extism/extism can interrupt them.
// So every module is metered once, at load: binaryen's `log-execution` pass puts a call at each function entry and
// loop header; we replace its target with an inlined fuel counter that calls the host import
// `gatehouse:internal.budget_check` every FUEL_PER_CHECK units. The host compares the clock with the call's deadline
// and throws when it has passed, which unwinds the module. Bulk-memory copies and fills are lowered to loops first so
// that they are metered as well (a single memory.fill is otherwise unbounded work between two checks).

import { INTERNAL_MODULE } from './abi.ts';

type Binaryen = typeof import('binaryen').default;
let binaryenPromise: Promise<Binaryen> | null = null;

/** binaryen is large (about 100 ms to load); only loading a module needs it. */
function loadBinaryen(): Promise<Binaryen> {
  binaryenPromise ??= import('binaryen').then((m) => m.default);
  return binaryenPromise;
}

export const FUEL_PER_CHECK = 4096;
export const BUDGET_CHECK_IMPORT = 'budget_check';

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

export async function instrumentForBudget(bytes: Uint8Array): Promise<Uint8Array> {
  const b = await loadBinaryen();
  let module: ReturnType<Binaryen['readBinary']>;
  try {
    module = b.readBinary(bytes);
  } catch (err) {
    throw new Error(`binaryen could not read the module: ${errorText(err)}`);
  }
  try {
    module.setFeatures(supportedFeatures(b));
    if (!module.validate()) {
      throw new Error(
        'the module uses a WebAssembly feature outside the supported set (sign-extension, mutable globals, ' +
          'non-trapping float-to-int, bulk memory, SIMD, reference types, multi-value)',
      );
    }
    if (module.getFunction('log_execution') !== 0) {
      throw new Error('the module defines a function named log_execution, a name reserved for metering');
    }
    b.setPassArgument('log-execution', INTERNAL_MODULE);
    module.runPasses(['llvm-memory-copy-fill-lowering', 'log-execution']);
    // log-execution added the import `gatehouse:internal.log_execution(i32)`; make it a local, inlinable function.
    module.removeFunction('log_execution');
    module.addFunctionImport('gatehouse_budget_check', INTERNAL_MODULE, BUDGET_CHECK_IMPORT, b.none, b.none);
    module.addGlobal('gatehouse_fuel', b.i32, true, module.i32.const(FUEL_PER_CHECK));
    const fuel = () => module.global.get('gatehouse_fuel', b.i32);
    module.addFunction(
      'log_execution',
      b.i32,
      b.none,
      [],
      module.block(null, [
        module.global.set('gatehouse_fuel', module.i32.sub(fuel(), module.i32.const(1))),
        module.if(
          module.i32.le_s(fuel(), module.i32.const(0)),
          module.block(null, [
            module.global.set('gatehouse_fuel', module.i32.const(FUEL_PER_CHECK)),
            module.call('gatehouse_budget_check', [], b.none),
          ]),
        ),
      ]),
    );
    b.setAlwaysInlineMaxSize(40);
    module.runPasses(['inlining', 'remove-unused-module-elements']);
    if (!module.validate()) throw new Error('the metered module does not validate (a Gatehouse bug; please report it)');
    return module.emitBinary();
  } finally {
    module.dispose();
  }
}

/** binaryen throws plain objects with a `message`, not Errors. */
function errorText(err: unknown): string {
  const message = (err as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : String(err);
}
