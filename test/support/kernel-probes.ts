// Hand-written modules that probe the policy host from inside a call and report what they saw: a handler runs its
// steps, each check adding one bit to a mask, and answers with status 200 + mask (eight checks at most: 455). A test
// asserts the mask, so that one call checks several results of the kernel or the host without a channel of its own.

import assert from 'node:assert/strict';
import type { Grants, Limits } from '../../runtime/policy-host/index.ts';
import { hostileModule, layout, type HostileModule } from './hostile-modules.ts';
import { makeExchange, newHost, type TestHost } from './policies.ts';

/** The most checks one call reports (200 + 255 is a final status; 200 + 511 is not). */
const MAX_CHECKS = 8;

/**
 * `$block_of (ptr, len) -> addr`: a new kernel block holding `len` bytes of linear memory from `ptr`, copied with
 * store_u8 as a PDK copies them.
 */
const BLOCK_OF = `
  (func $block_of (param $ptr i32) (param $len i32) (result i64)
    (local $addr i64) (local $i i32)
    (local.set $addr (call $alloc (i64.extend_i32_u (local.get $len))))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
      (call $store_u8 (i64.add (local.get $addr) (i64.extend_i32_u (local.get $i)))
                      (i32.load8_u (i32.add (local.get $ptr) (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (local.get $addr))`;

/** Locals every probe may use: $a $b $c (addresses), $i (a counter), $m (the mask). */
const LOCALS = '(local $a i64) (local $b i64) (local $c i64) (local $i i32) (local $m i32)';

export interface Probe {
  /** Strings placed in linear memory; `str(i)` gives the WAT of a block holding the i-th. */
  data?: (string | Uint8Array)[];
  /** Module fields beyond the handler (globals, functions). */
  extra?: string;
  /** More imports (WASI's, say). */
  imports?: string;
  pages?: number;
  /** The handler's steps: statements, and `check(expr)` for each i32 0/1 to report. */
  steps: (check: (expr: string) => string, str: (i: number) => string) => string;
}

/** A module whose handler runs the probe's steps and responds 200 + the mask of its checks. */
export function probeModule(name: string, probe: Probe): Promise<Uint8Array & { checks: number }> {
  const data = probe.data ?? [];
  const placed = layout(data);
  let checks = 0;
  const check = (expr: string) => {
    assert.ok(checks < MAX_CHECKS, `at most ${MAX_CHECKS} checks in one probe`);
    return `(local.set $m (i32.or (local.get $m) (i32.shl ${expr} (i32.const ${checks++}))))`;
  };
  const str = (i: number) => `(call $block_of (i32.const ${placed[i]!.ptr}) (i32.const ${placed[i]!.len}))`;
  const steps = probe.steps(check, str);
  const m: HostileModule = {
    name,
    data,
    pages: probe.pages,
    imports: probe.imports,
    locals: LOCALS,
    extra: `${BLOCK_OF} ${probe.extra ?? ''}`,
    inbound: `${steps} (drop (call $respond (i32.add (i32.const 200) (local.get $m)))) (i32.const 0)`,
  };
  return hostileModule(m).then((bytes) => Object.assign(bytes, { checks }));
}

export interface ProbeBinding {
  /** Runs one call on a request; the mask of checks that held (a failed call rejects with its PolicyFailure). */
  run(request?: Parameters<typeof makeExchange>[0]): Promise<number>;
  /** The exchange of the last call. */
  exchange: ReturnType<typeof makeExchange> | null;
  /** Every check held: the mask with all `checks` bits. */
  all: number;
}

export interface ProbeOptions {
  limits?: Partial<Limits>;
  grants?: Grants;
  config?: unknown;
}

let bound = 0;

/** Loads and binds a probe on `t`'s host (a binding of its own: a failure recycles only its instance). */
export async function bindProbe(t: TestHost, name: string, probe: Probe, options: ProbeOptions = {}): Promise<ProbeBinding> {
  const bytes = await probeModule(name, probe);
  const module = await t.host.load(bytes);
  const binding = t.host.bind({ id: `probe/${name}/${++bound}`, phase: 'inbound', module, ...options });
  await binding.warm();
  const probeBinding: ProbeBinding = {
    all: (1 << bytes.checks) - 1,
    exchange: null,
    async run(request = {}) {
      const exchange = makeExchange(request);
      probeBinding.exchange = exchange;
      await binding.run('inbound', exchange);
      assert.ok(exchange.responded, 'the probe responds with its mask');
      return exchange.response.status - 200;
    },
  };
  return probeBinding;
}

/** Asserts that every check of one call held, naming those that did not. */
export function assertAllHeld(mask: number, all: number): void {
  const failed: number[] = [];
  for (let i = 0; (1 << i) <= all; i++) if ((mask & (1 << i)) === 0) failed.push(i);
  assert.deepEqual(failed, [], `checks that did not hold (by index): ${failed.join(', ')}`);
}

/** `body`, run `rounds` times in a loop (it uses the local $i). */
export function repeated(rounds: number, body: string): string {
  return `
    (local.set $i (i32.const 0))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (i32.const ${rounds})))
      ${body}
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))`;
}

/**
 * A host whose CPU budgets read a clock that never moves: a budget check is one read of it and never stops a call.
 * The host checks the budget each time 256 units of host work add up, so the reads during a call count what its host
 * and kernel functions charged the CPU meter.
 */
export function budgetCheckCounter() {
  let reads = 0;
  const t = newHost(undefined, {
    wallMs: () => {
      reads++;
      return 0;
    },
    cpuUs: () => 0,
  });
  return {
    /** The budget checks one call of the probe made (its start reads the clock once more). */
    async checks(name: string, probe: Probe, options?: ProbeOptions, call: { request?: Parameters<typeof makeExchange>[0]; fails?: boolean } = {}): Promise<number> {
      const binding = await bindProbe(t, name, probe, options);
      reads = 0;
      await binding.run(call.request).then(
        () => assert.ok(!call.fails, `${name}: the call was to fail`),
        (err: unknown) => assert.ok(call.fails, `${name}: ${String(err)}`),
      );
      return reads - 1;
    },
  };
}
