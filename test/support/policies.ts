// Shared helpers for tests: build real policies with the SDK, make hosts and exchanges.

import { join } from 'node:path';
import { repoRoot } from '../../runtime/assets/repo-root.ts';
import assert from 'node:assert/strict';
import { PolicyFailure, PolicyHost, type BudgetClocks, type EffectRunner } from '../../runtime/policy-host/index.ts';
import { GatewayEffects } from '../../runtime/pipeline/effects.ts';
import { Exchange, headerMap, type RequestState } from '../../runtime/policy-host/exchange.ts';
import { MemoryCounterStore } from '../../runtime/state/counter-store.ts';
import { Logger, memorySink, type LogRecord } from '../../runtime/telemetry/logger.ts';
import { processClocks } from '../../runtime/adapters/process-clocks.ts';

/** Compiles `test/fixtures/policies/<name>` or `policies/<name>` from TypeScript (cached by content). */
export async function buildFixture(name: string): Promise<Uint8Array> {
  const fixture = join(repoRoot(), 'test', 'fixtures', 'policies', name, 'policy.ts');
  const builtin = join(repoRoot(), 'policies', name, 'policy.ts');
  const { existsSync } = await import('node:fs');
  const source = existsSync(fixture) ? fixture : builtin;
  // Imported here, not at the top: the compiler (AssemblyScript) takes about a second to load, and helpers such as
  // wat() are used by processes that never build a policy (the ABI fuzzer's child starts again after every crash).
  const { buildPolicy } = await import('../../sdk/build/index.ts');
  return (await buildPolicy({ source })).wasm;
}

export interface TestHost {
  host: PolicyHost;
  logs: LogRecord[];
}

/**
 * The clock of the counters newHost gives. The store's windows are multiples of their period, as the gateway's are;
 * on the wall clock a test counting calls in a 60 s window failed when its calls straddled the start of a minute. This
 * clock reads 0 when the process loaded this file, a multiple of every period, and runs at the wall clock's pace: a
 * window rolls over only after its whole period of the test process.
 */
const loadedAt = performance.now();
const testCounterClock = (): number => performance.now() - loadedAt;

/** `replay`: whether calls of deterministic modules may be replayed (PolicyHostOptions.replay); default true. */
export function newHost(effects?: EffectRunner, clocks?: BudgetClocks, replay = true): TestHost {
  const logs: LogRecord[] = [];
  const host = new PolicyHost({
    logger: new Logger(memorySink(logs), 'debug'),
    effects: effects ?? new GatewayEffects({ counters: new MemoryCounterStore(testCounterClock) }),
    clocks: clocks ?? processClocks,
    replay,
  });
  return { host, logs };
}

let requests = 0;

export function makeExchange(request: Partial<Omit<RequestState, 'headers'>> & { headers?: Record<string, string> } = {}) {
  return new Exchange({
    requestId: `req-${++requests}`,
    api: 'test-api',
    operation: 'test-op',
    backendUrl: 'http://127.0.0.1:1',
    request: {
      method: request.method ?? 'GET',
      path: request.path ?? '/',
      query: request.query ?? '',
      headers: headerMap(request.headers ?? {}),
      body: request.body ?? null,
      clientAddress: request.clientAddress ?? '127.0.0.1',
    },
  });
}

/**
 * Builds a raw module from WebAssembly text (binaryen parses it), for modules the SDK would never produce. `features`:
 * 'mvp' (the default: MVP, bulk memory, sign-extension), or 'host' for every proposal the policy host accepts
 * (abi/policy-abi.md, section 1), which the ABI fuzzer's modules use.
 */
export async function wat(text: string, features: 'mvp' | 'host' = 'mvp'): Promise<Uint8Array> {
  const binaryen = (await import('binaryen')).default;
  const F = binaryen.Features;
  const module = binaryen.parseText(text);
  try {
    module.setFeatures(
      features === 'host'
        ? F.MVP | F.SignExt | F.MutableGlobals | F.NontrappingFPToInt | F.BulkMemory | F.BulkMemoryOpt | F.SIMD128 | F.ReferenceTypes | F.Multivalue
        : F.MVP | F.BulkMemory | F.SignExt,
    );
    // The fuzzer's generated text must be what it means: a module that fails validation is a generator bug.
    if (features === 'host' && !module.validate()) throw new Error('the WebAssembly text does not validate');
    return module.emitBinary();
  } finally {
    module.dispose();
  }
}

/**
 * A minimal valid policy in WebAssembly text (descriptor `{"name":"raw","version":"1"}` and an on_inbound that
 * returns 0), with pieces replaceable: builds in milliseconds, where a policy from the SDK takes seconds to compile.
 */
export function rawModule(
  parts: { descriptor?: string; imports?: string; exports?: string; memory?: string; extra?: string } = {},
): Promise<Uint8Array> {
  const d = watDescriptor(parts.descriptor ?? '{"name":"raw","version":"1"}');
  return wat(`(module
    ${d.imports}
    ${parts.imports ?? ''}
    ${parts.memory ?? '(memory (export "memory") 1)'}
    ${d.data}
    ${d.func}
    ${parts.exports ?? '(func (export "on_inbound") (result i32) (i32.const 0))'}
    ${parts.extra ?? ''}
  )`);
}

/** A valid descriptor export body in WAT: writes `json` through the Extism kernel. */
export function watDescriptor(json: string): { imports: string; data: string; func: string } {
  const bytes = new TextEncoder().encode(json);
  const escaped = [...bytes].map((b) => `\\${b.toString(16).padStart(2, '0')}`).join('');
  return {
    imports: `
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))`,
    data: `(data (i32.const 1024) "${escaped}")`,
    func: `
  (func (export "gatehouse_policy_v1") (result i32)
    (local $h i64) (local $i i32)
    (local.set $h (call $alloc (i64.const ${bytes.length})))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (i32.const ${bytes.length})))
      (call $store_u8 (i64.add (local.get $h) (i64.extend_i32_u (local.get $i)))
                      (i32.load8_u (i32.add (i32.const 1024) (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (call $output_set (local.get $h) (i64.const ${bytes.length}))
    (i32.const 0))`,
  };
}

/** The PolicyFailure a policy call settles with (an assertion error when it succeeds or fails otherwise). */
export async function policyFailure(promise: Promise<unknown>): Promise<PolicyFailure> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  assert.ok(err instanceof PolicyFailure, `expected a PolicyFailure, got ${String(err)}`);
  return err;
}
