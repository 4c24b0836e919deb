// Loading modules: every rule of ABI v1 section 1 refuses a bad module with a message naming what is wrong.

import assert from 'node:assert/strict';
import process from 'node:process';
import { describe, test } from 'node:test';
import { PolicyConfigError, PolicyLoadError } from '../runtime/policy-host/index.ts';
import { buildFixture, makeExchange, newHost, rawModule, wat } from './support/policies.ts';

async function loadError(bytes: Uint8Array): Promise<PolicyLoadError> {
  const { host } = newHost();
  const err = await host.load(bytes).then(
    () => null,
    (e: unknown) => e,
  );
  assert.ok(err instanceof PolicyLoadError, `expected a PolicyLoadError, got ${String(err)}`);
  return err;
}

describe('module loading', () => {
  test('a minimal module written by hand (not with our SDK) loads and runs', async () => {
    const { host } = newHost();
    const module = await host.load(await rawModule());
    assert.equal(module.descriptor.name, 'raw');
    assert.deepEqual([...module.phases], ['inbound']);
    const binding = host.bind({ id: 'raw/0', phase: 'inbound', module });
    await binding.run('inbound', makeExchange());
    assert.equal(binding.stats.failures, 0);
  });

  test('bytes that are not WebAssembly are refused', async () => {
    const err = await loadError(new TextEncoder().encode('not wasm at all'));
    assert.match(err.message, /not a valid WebAssembly module/);
  });

  test('an import outside the allowed modules is refused, naming it', async () => {
    const err = await loadError(
      await rawModule({ imports: '(import "env" "abort" (func $abort (param i32 i32 i32 i32)))' }),
    );
    assert.match(err.message, /import env\.abort \(function\): only "extism:host\/env", "gatehouse:host\/v1"/);
  });

  test('the reserved gatehouse:internal module cannot be imported', async () => {
    const err = await loadError(
      await rawModule({ imports: '(import "gatehouse:internal" "budget_check" (func $b))' }),
    );
    assert.match(err.message, /reserved for the host/);
  });

  test('a module that does not export its memory is refused', async () => {
    const err = await loadError(await rawModule({ memory: '(memory 1)' }));
    assert.match(err.message, /must export its memory as "memory"/);
  });

  test('an imported memory is refused', async () => {
    const err = await loadError(
      await rawModule({ memory: '(import "extism:host/env" "memory" (memory 1)) (export "memory" (memory 0))' }),
    );
    assert.match(err.message, /must define its own memory/);
  });

  test('a module without descriptor or handlers is refused with both problems listed', async () => {
    const err = await loadError(await wat('(module (memory (export "memory") 1))'));
    assert.match(err.message, /missing export "gatehouse_policy_v1"/);
    assert.match(err.message, /no phase handler exported/);
  });

  test('a bad descriptor is refused, naming the field', async () => {
    const err = await loadError(await rawModule({ descriptor: '{"name":"Bad Name!","version":""}' }));
    assert.match(err.message, /descriptor\.name: must match/);
    assert.match(err.message, /descriptor\.version/);
  });

  test('a descriptor whose configSchema is not a JSON Schema is refused', async () => {
    const err = await loadError(
      await rawModule({ descriptor: '{"name":"x","version":"1","configSchema":{"type":"no-such-type"}}' }),
    );
    assert.match(err.message, /configSchema is not a valid JSON Schema/);
  });

  test('the same bytes are loaded and compiled once', async () => {
    const { host } = newHost();
    const bytes = await buildFixture('check-header');
    const [a, b] = await Promise.all([host.load(bytes), host.load(new Uint8Array(bytes))]);
    assert.equal(a, b);
    assert.equal(host.loadedModules().length, 1);
    assert.equal(await a.compiled(16 << 20), await b.compiled(16 << 20));
  });

  test('a module that imports WASI needs the wasi grant', async () => {
    const { host } = newHost();
    const module = await host.load(
      await rawModule({
        imports: '(import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))',
      }),
    );
    assert.equal(module.importsWasi, true);
    assert.throws(
      () => host.bind({ id: 'api:x/inbound/0', phase: 'inbound', module }),
      (err: unknown) => err instanceof PolicyConfigError && /imports WASI/.test(err.message) && /api:x\/inbound\/0/.test(err.message),
    );
    const granted = host.bind({ id: 'wasi/0', phase: 'inbound', module, grants: { wasi: true } });
    await granted.run('inbound', makeExchange());
    assert.equal(granted.stats.failures, 0);
  });

  test('binding errors name every problem: phase, configuration, grants, limits', async () => {
    const { host } = newHost();
    const module = await host.load(await buildFixture('check-header'));
    assert.throws(
      () =>
        host.bind({
          id: 'global/outbound/2',
          phase: 'outbound',
          module,
          config: { values: 'demo-key', extra: true },
          grants: { network: true } as never,
          limits: { cpuMs: 0 },
        }),
      (err: unknown) => {
        assert.ok(err instanceof PolicyConfigError);
        assert.match(err.message, /^global\/outbound\/2: invalid policy configuration/);
        assert.match(err.message, /has no outbound handler \(it handles: inbound, backend\)/);
        assert.match(err.message, /config \(root\): must have required property 'name'/);
        assert.match(err.message, /config \/values: must be array/);
        assert.match(err.message, /config \(root\): unknown property "extra"/);
        assert.match(err.message, /grants\.network: unknown grant/);
        assert.match(err.message, /limits\.cpuMs: must be a number above 0/);
        return true;
      },
    );
  });

  test('a policy whose schema requires configuration, bound with no config at all, is refused naming what is missing', async () => {
    const { host } = newHost();
    const module = await host.load(await buildFixture('check-header'));
    assert.throws(
      () => host.bind({ id: 'api:x/inbound/0', phase: 'inbound', module }),
      (err: unknown) => {
        assert.ok(err instanceof PolicyConfigError, String(err));
        assert.match(err.message, /^api:x\/inbound\/0: invalid policy configuration/);
        assert.match(err.message, /config \(root\): must have required property 'name'/);
        return true;
      },
    );
  });
});

describe('handlers written with another PDK', () => {
  /** on_inbound reports `message` through the Extism kernel (alloc, store_u8, then error_set or output_set). */
  function kernelReport(kind: 'error_set' | 'output_set', message: string) {
    const bytes = new TextEncoder().encode(message);
    const stores = [...bytes]
      .map((b, i) => `(call $store_u8 (i64.add (local.get $h) (i64.const ${i})) (i32.const ${b}))`)
      .join('\n');
    const call = kind === 'error_set' ? '(call $error_set (local.get $h))' : `(call $output_set (local.get $h) (i64.const ${bytes.length}))`;
    return rawModule({
      imports: `
        (import "extism:host/env" "error_set" (func $error_set (param i64)))
        (import "extism:host/env" "input_length" (func $input_length (result i64)))`,
      exports: `
        (func (export "on_inbound") (result i32) (local $h i64)
          ;; handlers get no input
          (if (i64.ne (call $input_length) (i64.const 0)) (then unreachable))
          (local.set $h (call $alloc (i64.const ${bytes.length})))
          ${stores}
          ${call}
          (i32.const 0))`,
    });
  }

  test('error_set in a handler fails the call with the module\'s message', async () => {
    const { host } = newHost();
    const module = await host.load(await kernelReport('error_set', 'no such tenant'));
    const binding = host.bind({ id: 'raw/error', phase: 'inbound', module });
    const err = await binding.run('inbound', makeExchange()).then(
      () => null,
      (e: unknown) => e as { reason?: string; message?: string },
    );
    assert.equal(err?.reason, 'error');
    assert.match(String(err?.message), /no such tenant/);
    assert.equal(binding.stats.recycles, 0, 'a reported failure does not recycle the instance');
  });

  test('output_set in a handler is ignored, and counted against the output cap', async () => {
    const { host } = newHost();
    const module = await host.load(await kernelReport('output_set', 'x'.repeat(64)));
    const fine = host.bind({ id: 'raw/out', phase: 'inbound', module });
    for (let i = 0; i < 3; i++) await fine.run('inbound', makeExchange());
    assert.equal(fine.stats.failures, 0);
    const capped = host.bind({ id: 'raw/out-capped', phase: 'inbound', module, limits: { outputBytes: 16 } });
    const err = await capped.run('inbound', makeExchange()).then(
      () => null,
      (e: unknown) => e as { reason?: string },
    );
    assert.equal(err?.reason, 'output-cap');
  });

  test('a call that asks for nothing completes synchronously on the request path', async () => {
    const { host } = newHost();
    const module = await host.load(await rawModule());
    const binding = host.bind({ id: 'raw/sync', phase: 'inbound', module });
    await binding.warm();
    assert.equal(binding.runNow('inbound', makeExchange()), undefined);
    assert.equal(binding.stats.calls, 1);
  });
});

// Modules that lie: about the host functions they need, the shape of their exports, what their start-up does, or the
// memory they take. Each is refused when loaded, naming the item, instead of failing (or misreading arguments) later.
describe('module loading: modules that do not keep the ABI', () => {
  test('a host function this gateway lacks (a module built for a later ABI) is refused, naming it', async () => {
    const err = await loadError(await rawModule({ imports: '(import "gatehouse:host/v1" "teleport" (func $t (param i32) (result i32)))' }));
    assert.match(err.message, /import gatehouse:host\/v1\.teleport: this gateway has no such host function \(it has get, set, add/);
    assert.match(err.message, /needs a later gateway/);
  });

  test('a kernel function Extism does not have is refused', async () => {
    const err = await loadError(await rawModule({ imports: '(import "extism:host/env" "bogus" (func $b))' }));
    assert.match(err.message, /import extism:host\/env\.bogus: the Extism kernel has no such function/);
  });

  test('a host function declared with other parameters is refused, with both signatures', async () => {
    const err = await loadError(await rawModule({ imports: '(import "gatehouse:host/v1" "get" (func $g (param i32) (result i32)))' }));
    assert.match(err.message, /import gatehouse:host\/v1\.get: declared as \(i32\) -> i32, but it is \(i32, i32, i32, i32, i32\) -> i32/);
    const kernel = await loadError(await rawModule({ imports: '(import "extism:host/env" "input_length" (func $l (result i32)))' }));
    assert.match(kernel.message, /import extism:host\/env\.input_length: declared as \(\) -> i32, but it is \(\) -> i64/);
  });

  test('a table or global imported from the host modules is refused', async () => {
    const err = await loadError(
      await rawModule({ imports: '(import "gatehouse:host/v1" "limit" (global i32)) (import "extism:host/env" "t" (table 1 funcref))' }),
    );
    assert.match(err.message, /import gatehouse:host\/v1\.limit \(global\): only functions can be imported/);
    assert.match(err.message, /import extism:host\/env\.t \(table\): only functions can be imported/);
  });

  test('a handler or descriptor export of another shape than () -> i32 is refused', async () => {
    const handler = await loadError(await rawModule({ exports: '(func (export "on_inbound") (param i32) (result i64) (i64.const 0))' }));
    assert.match(handler.message, /export on_inbound: declared as \(i32\) -> i64, but the host calls it as \(\) -> i32/);
    const describe = await loadError(
      await wat('(module (memory (export "memory") 1) (func (export "gatehouse_policy_v1")) (func (export "on_inbound") (result i32) (i32.const 0)))'),
    );
    assert.match(describe.message, /export gatehouse_policy_v1: declared as \(\) -> \(\)/);
  });

  test('a handler exported as something other than a function does not count as one', async () => {
    const err = await loadError(await rawModule({ exports: '(global (export "on_inbound") i32 (i32.const 0))' }));
    assert.match(err.message, /no phase handler exported/);
  });

  test('a start function that traps, or that never ends, is refused (not thrown as a bare RuntimeError)', async () => {
    const traps = await loadError(await rawModule({ extra: '(func $boom unreachable) (start $boom)' }));
    assert.match(traps.message, /cannot be instantiated \(start function, data segments\): unreachable/);
    const started = performance.now();
    const loops = await loadError(await rawModule({ extra: '(func $spin (loop $l (br $l))) (start $spin)' }));
    assert.match(loops.message, /its start function ran past its CPU budget/);
    assert.ok(performance.now() - started < 5000, 'stopped within its budget (three budgets of wall-clock time at most)');
  });

  test('a start function charged for time it did not use once is tried again; the module loads', async () => {
    // The budget is the process's CPU time: V8 compiling the module just loaded on other threads, or a pause of the
    // virtual machine (support/in-time.ts), can be charged to a start function that used little. These clocks charge the
    // first instantiation so: each reading of the clock passes half the budget, and the CPU time jumps by 100 ms
    // between the two readings a check makes. The start function's loop reaches its fuel checks a few times.
    let charged = 0;
    let wallOffset = 0;
    let cpuOffset = 0;
    const clocks = {
      wallMs: () => {
        if (charged < 2) wallOffset += 30;
        return performance.now() + wallOffset;
      },
      cpuUs: () => {
        if (charged < 2) {
          charged++;
          cpuOffset += 100_000;
        }
        const { user, system } = process.cpuUsage();
        return user + system + cpuOffset;
      },
    };
    const { host } = newHost(undefined, clocks);
    const warm = '(func $warm (local $i i32) (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1))) (br_if $l (i32.lt_u (local.get $i) (i32.const 2000000))))) (start $warm)';
    const module = await host.load(await rawModule({ extra: warm }));
    assert.equal(charged, 2, 'the first instantiation was charged and stopped');
    const binding = host.bind({ id: 'charged/start', phase: 'inbound', module });
    await binding.run('inbound', makeExchange());
  });

  test('data that does not fit the memory it declares is refused', async () => {
    const err = await loadError(
      await rawModule({ extra: `(data (i32.const 65000) "${'\\00'.repeat(2000)}")` }),
    );
    assert.match(err.message, /cannot be instantiated .*data segment/);
  });

  test('a memory starting above what any binding may have is refused at load; above the default, at binding', async () => {
    const huge = await loadError(await rawModule({ memory: '(memory (export "memory") 20000)' }));
    assert.match(huge.message, /its memory starts at 20000 pages \(1250 MiB\), more than any memory limit allows \(1024 MiB\)/);
    const { host } = newHost();
    const big = await host.load(await rawModule({ memory: '(memory (export "memory") 300)' }));
    assert.throws(
      () => host.bind({ id: 'raw/big', phase: 'inbound', module: big }),
      (err: unknown) => err instanceof PolicyConfigError && /needs 19660800 bytes at start, above the cap of 16777216/.test(err.message),
    );
    host.bind({ id: 'raw/big-enough', phase: 'inbound', module: big, limits: { memoryBytes: 32 << 20 } });
    // A declared maximum larger than the cap is lowered to the cap, not refused.
    await host.load(await rawModule({ memory: '(memory (export "memory") 1 65536)' }));
  });

  test('a descriptor with a field the host does not know (a typo, or a promise of phases) is refused, naming it', async () => {
    const err = await loadError(await rawModule({ descriptor: '{"name":"raw","version":"1","requestbody":true,"phases":["outbound"]}' }));
    assert.match(err.message, /descriptor\.requestbody: unknown field \(a descriptor has name, version, requestBody, responseBody, deterministic, configSchema\)/);
    assert.match(err.message, /descriptor\.phases: unknown field/);
  });

  test('a descriptor whose deterministic is not a boolean is refused, naming it', async () => {
    const err = await loadError(await rawModule({ descriptor: '{"name":"raw","version":"1","deterministic":"yes"}' }));
    assert.match(err.message, /descriptor\.deterministic: must be a boolean/);
  });

  test('bytes that only start like WebAssembly, or nothing at all, are refused', async () => {
    for (const bytes of [new Uint8Array(0), new Uint8Array([0, 0x61, 0x73, 0x6d]), new TextEncoder().encode('\0asm\x01\0\0\0garbage')]) {
      assert.match((await loadError(bytes)).message, /not a valid WebAssembly module/);
    }
    const good = await rawModule();
    assert.match((await loadError(good.subarray(0, good.length - 3))).message, /not a valid WebAssembly module/);
  });
});
