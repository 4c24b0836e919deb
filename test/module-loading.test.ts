// Loading modules: every rule of ABI v1 section 1 refuses a bad module with a message naming what is wrong.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PolicyConfigError, PolicyLoadError } from '../runtime/policy-host/index.ts';
import { buildFixture, makeExchange, newHost, wat, watDescriptor } from './support/policies.ts';

const GOOD_DESCRIPTOR = '{"name":"raw","version":"1"}';

/** A minimal valid policy in WAT, with pieces replaceable per test. */
async function rawModule(parts: { descriptor?: string; imports?: string; exports?: string; memory?: string } = {}) {
  const d = watDescriptor(parts.descriptor ?? GOOD_DESCRIPTOR);
  return wat(`(module
    ${d.imports}
    ${parts.imports ?? ''}
    ${parts.memory ?? '(memory (export "memory") 1)'}
    ${d.data}
    ${d.func}
    ${parts.exports ?? '(func (export "on_inbound") (result i32) (i32.const 0))'}
  )`);
}

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
