// Adversarial modules, compiled from TypeScript with the SDK: every sandbox limit is enforced, costs the request that
// hit it, and never the gateway.

import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { before, describe, test } from 'node:test';
import { type PolicyModule, type Limits, type Grants } from '../runtime/policy-host/index.ts';
import { buildFixture, makeExchange, newHost, policyFailure, type TestHost } from './support/policies.ts';

let t: TestHost;
let adversarial: PolicyModule;

before(async () => {
  t = newHost();
  adversarial = await t.host.load(await buildFixture('adversarial'));
});

function bind(mode: string, extra: { limits?: Partial<Limits>; grants?: Grants; failOpen?: boolean } = {}) {
  return t.host.bind({ id: `adversarial/${mode}`, phase: 'inbound', module: adversarial, config: { mode }, ...extra });
}

/** The longest gap between ticks of a 2 ms interval while `work` runs: how long the event loop was blocked. */
async function longestStall(work: () => Promise<unknown>): Promise<number> {
  let last = performance.now();
  let worst = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last);
    last = now;
  }, 2);
  await new Promise((r) => setTimeout(r, 10));
  try {
    await work();
  } finally {
    await new Promise((r) => setTimeout(r, 10));
    clearInterval(timer);
  }
  return worst;
}

describe('sandbox', () => {
  test('an infinite loop is stopped within its CPU budget, and the event loop never stalls longer', async () => {
    const binding = bind('loop');
    let longestCall = 0;
    const stall = await longestStall(async () => {
      for (let i = 0; i < 3; i++) {
        const started = performance.now();
        const cpuBefore = process.cpuUsage();
        const err = await policyFailure(binding.run('inbound', makeExchange()));
        const cpu = process.cpuUsage(cpuBefore);
        const took = performance.now() - started;
        longestCall = Math.max(longestCall, took);
        assert.equal(err.reason, 'cpu-budget');
        // The budget is CPU time: on a machine that gives the process less than a core, the call takes longer in
        // wall-clock time, up to three budgets (test/cpu-budget.test.ts).
        const cpuMs = (cpu.user + cpu.system) / 1000;
        assert.ok(cpuMs < 80 || took < 80, `a 50 ms budget stopped the call after ${cpuMs.toFixed(1)} ms of CPU`);
        assert.ok(took >= 49 && took < 170, `a 50 ms budget stopped the call after ${took.toFixed(1)} ms`);
        // Requests arrive as separate tasks; let timers run between them as a server's event loop would.
        await new Promise((r) => setTimeout(r, 0));
      }
    });
    assert.ok(stall < longestCall + 30, `the event loop stalled for ${stall.toFixed(1)} ms, calls took ${longestCall.toFixed(1)} ms at most`);
    assert.equal(binding.stats.recycles, 3);
  });

  test('the CPU budget is configurable per binding', async () => {
    const binding = bind('loop', { limits: { cpuMs: 10 } });
    const started = performance.now();
    const err = await policyFailure(binding.run('inbound', makeExchange()));
    const took = performance.now() - started;
    assert.equal(err.reason, 'cpu-budget');
    assert.ok(took < 35, `a 10 ms budget stopped the call after ${took.toFixed(1)} ms`);
  });

  test('other requests are served while a policy keeps looping', async () => {
    const looping = bind('loop');
    const healthy = bind('harmless');
    const results = await Promise.allSettled([
      looping.run('inbound', makeExchange()),
      ...Array.from({ length: 20 }, () => healthy.run('inbound', makeExchange())),
      looping.run('inbound', makeExchange()),
    ]);
    assert.equal(results.filter((r) => r.status === 'rejected').length, 2);
    assert.equal(healthy.stats.failures, 0);
    assert.equal(healthy.stats.calls, 20);
  });

  test('unbounded memory growth stops at the memory cap', async () => {
    const rssBefore = process.memoryUsage().rss;
    // A generous CPU budget: on a loaded machine, zeroing 16 MiB of allocations must not hit the CPU limit first.
    const binding = bind('grow-memory', { limits: { cpuMs: 5000 } });
    const err = await policyFailure(binding.run('inbound', makeExchange()));
    assert.equal(err.reason, 'memory-cap');
    const grown = (process.memoryUsage().rss - rssBefore) / (1 << 20);
    assert.ok(grown < 200, `the process grew by ${grown.toFixed(0)} MiB`);
    const small = bind('grow-memory', { limits: { memoryBytes: 2 << 20, cpuMs: 5000 } });
    assert.equal((await policyFailure(small.run('inbound', makeExchange()))).reason, 'memory-cap');
  });

  test('a trap recycles the instance; failures are counted per reason and visible in metrics', async () => {
    const binding = bind('trap-sometimes');
    const trap = () => makeExchange({ headers: { 'x-trap': '1' } });
    for (let i = 0; i < 3; i++) assert.equal((await policyFailure(binding.run('inbound', trap()))).reason, 'trap');
    assert.equal(binding.stats.consecutiveFailures, 3);
    const ok = makeExchange();
    await binding.run('inbound', ok);
    assert.equal(ok.request.headers.get('x-adversarial')?.[0], 'harmless');
    assert.deepEqual(
      { failures: binding.stats.failures, recycles: binding.stats.recycles, consecutive: binding.stats.consecutiveFailures },
      { failures: 3, recycles: 3, consecutive: 0 },
    );
    const metrics = t.host.metrics.render();
    assert.match(metrics, /gatehouse_policy_failures_total\{policy="adversarial",reason="trap"\} \d+/);
    assert.match(metrics, /gatehouse_policy_instance_recycles_total\{policy="adversarial"\} \d+/);
  });

  test('runaway recursion (stack overflow) is a trap, not a crash', async () => {
    const err = await policyFailure(bind('recurse').run('inbound', makeExchange()));
    assert.equal(err.reason, 'trap');
  });

  test('an assertion failure reports its message and source position', async () => {
    const err = await policyFailure(bind('abort').run('inbound', makeExchange()));
    assert.equal(err.reason, 'trap');
    assert.match(err.message, /deliberate assertion/);
    assert.match(err.message, /policy\.ts:\d+:\d+/);
  });

  test('output beyond the output cap fails the call', async () => {
    const exchange = makeExchange();
    const err = await policyFailure(bind('big-output').run('inbound', exchange));
    assert.equal(err.reason, 'output-cap');
    assert.equal(exchange.response.body, null, 'nothing of the oversized output was kept');
    const roomy = bind('big-output', { limits: { outputBytes: 4 << 20, memoryBytes: 32 << 20 } });
    const ok = makeExchange();
    await roomy.run('inbound', ok);
    assert.equal(ok.response.body?.byteLength, 2 << 20);
  });

  test('effects need their capability: counters and http are refused unless granted', async () => {
    for (const mode of ['ungranted-counter', 'ungranted-http']) {
      const err = await policyFailure(bind(mode).run('inbound', makeExchange()));
      assert.equal(err.reason, 'capability');
      assert.match(err.message, mode === 'ungranted-counter' ? /"counters" grant/ : /"http" grant/);
    }
    await bind('ungranted-counter', { grants: { counters: true } }).run('inbound', makeExchange());
    const denied = bind('ungranted-http', { grants: { http: { allowedHosts: ['example.test'] } } });
    const err = await policyFailure(denied.run('inbound', makeExchange()));
    assert.equal(err.reason, 'capability');
    assert.match(err.message, /may not call 127\.0\.0\.1/);
  });

  test('a policy sees exactly the bytes of its input, never a pooled buffer around them', async () => {
    // Buffer.from on a short string returns a slice of Node's shared 8 KiB pool, next to other data.
    const neighbour = Buffer.from('SECRET-NEIGHBOUR-DATA');
    const body = Buffer.from('exact-body');
    assert.equal(body.buffer, neighbour.buffer, 'both live in the same pool');
    const exchange = makeExchange({ body });
    await bind('echo-body').run('inbound', exchange);
    assert.equal(exchange.request.headers.get('x-body-length')?.[0], '10');
    assert.equal(exchange.request.headers.get('x-body')?.[0], 'exact-body');
  });

  test('a policy that reports a failure keeps its instance', async () => {
    const binding = bind('fail');
    const err = await policyFailure(binding.run('inbound', makeExchange()));
    assert.equal(err.reason, 'error');
    assert.match(err.message, /refused by configuration/);
    assert.equal(binding.stats.recycles, 0);
  });

  test('a failed call leaves no change behind', async () => {
    const exchange = makeExchange({ headers: { keep: 'me' } });
    await policyFailure(bind('set-then-trap').run('inbound', exchange));
    assert.deepEqual([...exchange.request.headers], [['keep', ['me']]]);
  });
});

describe('sandbox: WASI filesystem', () => {
  /** A hand-written module that opens `path` through WASI in the first preopened directory (fd 3); traps on error. */
  async function opener(path: string) {
    const { watDescriptor, wat } = await import('./support/policies.ts');
    const d = watDescriptor('{"name":"opener","version":"1"}');
    const escaped = [...new TextEncoder().encode(path)].map((b) => `\\${b.toString(16).padStart(2, '0')}`).join('');
    return wat(`(module
      ${d.imports}
      (import "wasi_snapshot_preview1" "path_open"
        (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
      (memory (export "memory") 1)
      ${d.data}
      (data (i32.const 4096) "${escaped}")
      ${d.func}
      (func (export "on_inbound") (result i32)
        (if (i32.ne (call $path_open (i32.const 3) (i32.const 0) (i32.const 4096) (i32.const ${path.length})
                                     (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 8192))
                    (i32.const 0))
          (then unreachable))
        (i32.const 0)))`);
  }

  test('a file is reachable only inside a granted directory', async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-wasi-'));
    writeFileSync(join(dir, 'allowed.txt'), 'hello');
    try {
      const inside = await t.host.load(await opener('allowed.txt'));
      const outside = await t.host.load(await opener('../../etc/passwd'));
      const granted = { filesystem: { '/data': dir } };
      await t.host.bind({ id: 'fs/granted', phase: 'inbound', module: inside, grants: granted }).run('inbound', makeExchange());
      const noDirectory = t.host.bind({ id: 'fs/wasi-only', phase: 'inbound', module: inside, grants: { wasi: true } });
      assert.equal((await policyFailure(noDirectory.run('inbound', makeExchange()))).reason, 'trap');
      const escape = t.host.bind({ id: 'fs/escape', phase: 'inbound', module: outside, grants: granted });
      assert.equal((await policyFailure(escape.run('inbound', makeExchange()))).reason, 'trap');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
