// The sandbox's limits against modules written by hand against abi/policy-abi.md (not built by our SDK): each way out
// of a module (Extism kernel functions, gatehouse:host/v1, its own instructions) is counted against the policy's CPU
// budget, memory cap, output cap and log budget. Each test here failed on the host before these were accounted.

import assert from 'node:assert/strict';
import { generateKeyPairSync, createSign } from 'node:crypto';
import { readdirSync } from 'node:fs';
import process from 'node:process';
import { describe, test } from 'node:test';
import { Status, type Grants, type Limits } from '../runtime/policy-host/index.ts';
import { verifySignature } from '../runtime/policy-host/signatures.ts';
import { forever, hostileModule, IMPORT_LOOPS, layout, SCRATCH, type HostileModule } from './support/hostile-modules.ts';
import { oneWithin, timed } from './support/in-time.ts';
import { makeExchange, newHost, policyFailure } from './support/policies.ts';

const t = newHost();

async function bindHostile(m: HostileModule, extra: { limits?: Partial<Limits>; grants?: Grants; config?: unknown } = {}) {
  const module = await t.host.load(await hostileModule(m));
  const binding = t.host.bind({ id: `hostile/${m.name ?? 'x'}`, phase: 'inbound', module, ...extra });
  await binding.warm();
  return binding;
}

function policyLogBytes(): number {
  return t.logs.filter((r) => r.source === 'policy').reduce((n, r) => n + String(r.msg).length, 0);
}

/** A loop running `body` `times` times (i32 local $i). */
const repeat = (times: number, body: string) => `
  (loop $again
    ${body}
    (local.set $i (i32.add (local.get $i) (i32.const 1)))
    (br_if $again (i32.lt_u (local.get $i) (i32.const ${times}))))`;

const gcNow = (globalThis as { gc?: () => void }).gc;

/** Memory outside the JS heap: array buffers (kernel blocks among them), which Deno counts as external memory. */
function outsideHeap(): number {
  const m = process.memoryUsage();
  return Math.max(m.arrayBuffers, m.external);
}

/** Memory once garbage is collected and freed buffers are given back (V8 sweeps array buffers after a collection). */
async function settledMemory(): Promise<{ rss: number; outside: number }> {
  for (let i = 0; i < 2; i++) {
    gcNow!();
    await new Promise((r) => setTimeout(r, 50));
  }
  return { rss: process.memoryUsage().rss, outside: outsideHeap() };
}

describe('sandbox limits: logs', () => {
  test('kernel log_* lines count against the log budget and the output cap (64 lines of 16 KiB from one call)', async () => {
    const before = policyLogBytes();
    const binding = await bindHostile({
      name: 'kernel-log-flood',
      locals: '(local $i i32)',
      inbound: `${repeat(64, '(call $log_info (call $alloc (i64.const 16384)))')} (i32.const 0)`,
    });
    const err = await policyFailure(binding.run('inbound', makeExchange()));
    assert.equal(err.reason, 'log-budget');
    assert.match(err.message, /32 lines or 16384 bytes/);
    // At most the budget reached the log (each NUL byte is written as \u0000, six characters, in the record).
    assert.ok(policyLogBytes() - before <= 16384 * 6, `${policyLogBytes() - before} characters of policy log written`);
  });

  test('gatehouse log lines count against the log budget: the 33rd line of a call fails it', async () => {
    const binding = await bindHostile({
      name: 'host-log-lines',
      locals: '(local $i i32)',
      data: ['x'],
      inbound: `${repeat(33, `(call $log (i32.const 2) (i32.const ${layout(['x'])[0]!.ptr}) (i32.const 1))`)} (i32.const 0)`,
    });
    assert.equal((await policyFailure(binding.run('inbound', makeExchange()))).reason, 'log-budget');
    const roomy = await bindHostile(
      { name: 'host-log-lines', locals: '(local $i i32)', data: ['x'], inbound: `${repeat(33, `(call $log (i32.const 2) (i32.const ${layout(['x'])[0]!.ptr}) (i32.const 1))`)} (i32.const 0)` },
      { limits: { logLines: 40 } },
    );
    await roomy.run('inbound', makeExchange());
  });

  test('a line counts what it becomes in the log: NUL bytes are written as \\u0000, six bytes each', async () => {
    // 3,000 NUL bytes are 18,000 bytes of log, past the 16 KiB budget; 3,000 letters are not.
    const nul = await bindHostile({ name: 'nul-line', pages: 2, inbound: `(call $log (i32.const 2) (i32.const ${SCRATCH}) (i32.const 3000)) (i32.const 0)` });
    assert.equal((await policyFailure(nul.run('inbound', makeExchange()))).reason, 'log-budget');
    const letters = await bindHostile({
      name: 'letter-line',
      inbound: `(memory.fill (i32.const ${SCRATCH}) (i32.const 97) (i32.const 3000)) (call $log (i32.const 2) (i32.const ${SCRATCH}) (i32.const 3000)) (i32.const 0)`,
    });
    await letters.run('inbound', makeExchange());
  });

  test('lines below the gateway log level are not written and do not use the log budget, but count as output', async () => {
    // The test host logs at debug: trace lines are dropped.
    const binding = await bindHostile({
      name: 'trace-lines',
      locals: '(local $i i32)',
      inbound: `${repeat(100, '(call $log_trace (call $alloc (i64.const 1024)))')} (i32.const 0)`,
    });
    await binding.run('inbound', makeExchange());
    const flood = await bindHostile({
      name: 'trace-flood',
      locals: '(local $i i32)',
      inbound: `${repeat(2000, '(call $log_trace (call $alloc (i64.const 1024)))')} (i32.const 0)`,
    });
    assert.equal((await policyFailure(flood.run('inbound', makeExchange()))).reason, 'output-cap');
  });
});

describe('sandbox limits: output', () => {
  test('output_set with a negative length fails the call instead of lowering the count (a 2 MiB body stays out)', async () => {
    const binding = await bindHostile({
      name: 'negative-output',
      pages: 48,
      locals: '(local $h i64)',
      inbound: `
        (local.set $h (call $alloc (i64.const 16)))
        (call $output_set (local.get $h) (i64.const -4611686018427387904))
        (drop (call $set (i32.const 10) (i32.const 0) (i32.const 0) (i32.const 65536) (i32.const 2097152)))
        (drop (call $respond (i32.const 200)))
        (i32.const 0)`,
    });
    const exchange = makeExchange();
    const err = await policyFailure(binding.run('inbound', exchange));
    assert.equal(err.reason, 'bad-argument');
    assert.match(err.message, /output_set: length -4611686018427387904 is outside its block/);
    assert.equal(exchange.response.body, null);
  });

  test('output_set past its block, and error_set of no block, fail the call', async () => {
    const past = await bindHostile({
      name: 'output-past-block',
      inbound: '(call $output_set (call $alloc (i64.const 16)) (i64.const 17)) (i32.const 0)',
    });
    assert.equal((await policyFailure(past.run('inbound', makeExchange()))).reason, 'bad-argument');
    const noBlock = await bindHostile({ name: 'error-no-block', inbound: '(call $error_set (i64.const 12345)) (i32.const 0)' });
    assert.equal((await policyFailure(noBlock.run('inbound', makeExchange()))).reason, 'bad-argument');
  });

  test('negative lengths given to host functions fail the call; they never lower what was counted', async () => {
    for (const [name, call] of [
      ['set', '(drop (call $set (i32.const 5) (i32.const 0) (i32.const -1000000) (i32.const 0) (i32.const 1000000)))'],
      ['log', '(call $log (i32.const 2) (i32.const 0) (i32.const -5))'],
      ['fail', '(call $fail (i32.const 0) (i32.const -1))'],
      ['metric', '(drop (call $metric (i32.const 0) (i32.const 2147483647) (f64.const 1) (i32.const 0) (i32.const -2147483647)))'],
      ['effect', '(drop (call $effect (i32.const 1) (i32.const 0) (i32.const -1) (i32.const 0) (i32.const 0)))'],
      ['get', '(drop (call $get (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1)))'],
    ] as const) {
      const binding = await bindHostile({ name: `negative-${name}`, inbound: `${call} (i32.const 0)` }, { grants: { counters: true } });
      const err = await policyFailure(binding.run('inbound', makeExchange()));
      assert.equal(err.reason, 'bad-argument', `${name}: ${err.message}`);
    }
  });
});

describe('sandbox limits: memory', () => {
  /**
   * A generous CPU budget for the tests that hoard: they are about memory, and zeroing 16 MiB of blocks took more than
   * the default 50 ms of the process's CPU under Deno, two test files at a time, in a clean-clone CI run on a slow
   * machine (the call ended with cpu-budget).
   */
  const hoarding = { limits: { cpuMs: 2000 } };
  /** Forty 1 MiB kernel blocks, the last byte of each written, keeping on when alloc refuses (returns 0). */
  const blockHoarder: HostileModule = {
    name: 'block-hoarder',
    locals: '(local $i i32) (local $h i64)',
    inbound: `${repeat(40, `
      (local.set $h (call $alloc (i64.const 1048576)))
      (if (i64.ne (local.get $h) (i64.const 0))
        (then (call $store_u8 (i64.add (local.get $h) (i64.const 1048575)) (i32.const 1))))`)} (i32.const 0)`,
  };

  test('kernel blocks count against the memory cap with linear memory: the 16th 1 MiB block under 16 MiB fails', async () => {
    const binding = await bindHostile(blockHoarder, hoarding);
    gcNow?.();
    const before = outsideHeap();
    const err = await policyFailure(binding.run('inbound', makeExchange()));
    const held = (outsideHeap() - before) / 2 ** 20;
    assert.equal(err.reason, 'memory-cap');
    assert.match(err.message, /past its memory cap of 16777216/);
    assert.ok(held < 24, `the call allocated ${held.toFixed(0)} MiB of kernel blocks under a 16 MiB cap`);
  });

  test('one kernel block may hold what a call may hand the host (its output cap, 1 MiB at least), no more', async () => {
    const big = await bindHostile({ name: 'big-block', inbound: '(drop (call $alloc (i64.const 8388608))) (i32.const 0)' });
    const err = await policyFailure(big.run('inbound', makeExchange()));
    assert.equal(err.reason, 'memory-cap');
    assert.match(err.message, /a block of 8388608 bytes is larger than the 1048576 bytes a kernel block may hold/);
    const roomy = await bindHostile({ name: 'big-block', inbound: '(drop (call $alloc (i64.const 8388608))) (i32.const 0)' }, { limits: { outputBytes: 8 << 20 } });
    await roomy.run('inbound', makeExchange());
  });

  test('what failed calls allocated is given back: memory after them returns to where it was', { skip: gcNow ? false : 'needs gc() (node --expose-gc, deno --v8-flags=--expose-gc)' }, async () => {
    const binding = await bindHostile(blockHoarder, hoarding);
    await policyFailure(binding.run('inbound', makeExchange()));
    const before = await settledMemory();
    for (let i = 0; i < 10; i++) await policyFailure(binding.run('inbound', makeExchange()));
    const after = await settledMemory();
    const buffers = (after.outside - before.outside) / 2 ** 20;
    const rss = (after.rss - before.rss) / 2 ** 20;
    assert.ok(buffers < 8, `array buffers grew by ${buffers.toFixed(1)} MiB over 10 failed calls`);
    assert.ok(rss < 48, `RSS grew by ${rss.toFixed(1)} MiB over 10 failed calls`);
  });

  test('asking only for the length of a long value makes no garbage (a loop of such reads stays within the cap)', async () => {
    // A 1 MiB header read into a 0-byte buffer, for 200 ms: each read used to encode the value into a new array.
    const [name] = layout(['x-big']);
    const binding = await bindHostile(
      { name: 'length-only', data: ['x-big'], inbound: forever(`(drop (call $get (i32.const 5) (i32.const ${name!.ptr}) (i32.const 5) (i32.const ${SCRATCH}) (i32.const 0)))`) },
      { limits: { cpuMs: 200 } },
    );
    await settledMemory();
    const before = outsideHeap();
    await policyFailure(binding.run('inbound', makeExchange({ headers: { 'x-big': 'v'.repeat(1 << 20) } })));
    const grown = (outsideHeap() - before) / 2 ** 20;
    assert.ok(grown < 32, `array buffers grew by ${grown.toFixed(0)} MiB during the call`);
  });

  test('linear memory cannot grow into what kernel blocks hold', async () => {
    const binding = await bindHostile({
      name: 'grow-after-blocks',
      locals: '(local $i i32)',
      inbound: `
        ${repeat(12, '(drop (call $alloc (i64.const 1048576)))')}
        (if (i32.ne (memory.grow (i32.const 100)) (i32.const -1)) (then unreachable))
        (i32.const 0)`,
    }, hoarding);
    // 12 MiB of blocks leave room for about 62 more pages, not 100: the grow fails, and the module sees it fail.
    await binding.run('inbound', makeExchange());
    const greedy = await bindHostile({
      name: 'grow-then-trap',
      locals: '(local $i i32)',
      inbound: `
        ${repeat(12, '(drop (call $alloc (i64.const 1048576)))')}
        (drop (memory.grow (i32.const 100)))
        unreachable`,
    }, hoarding);
    assert.equal((await policyFailure(greedy.run('inbound', makeExchange()))).reason, 'memory-cap');
  });

  test('a kernel block is freed by free(), and what a call allocated is freed after it', async () => {
    // A generous CPU budget: this is about memory, and allocating (zeroing) 40 MiB, with the collections it brings,
    // can take more than 50 ms on a loaded machine.
    const limits = { cpuMs: 2000 };
    const binding = await bindHostile(
      { name: 'alloc-free', locals: '(local $i i32)', inbound: `${repeat(40, '(call $free (call $alloc (i64.const 1048576)))')} (i32.const 0)` },
      { limits },
    );
    // 40 MiB allocated and freed one MiB at a time under a 16 MiB cap.
    await binding.run('inbound', makeExchange());
    // Each call may hold 12 MiB of blocks; ten calls in a row each start from none.
    const perCall = await bindHostile(
      { name: 'alloc-per-call', locals: '(local $i i32)', inbound: `${repeat(12, '(drop (call $alloc (i64.const 1048576)))')} (i32.const 0)` },
      { limits },
    );
    for (let i = 0; i < 10; i++) await perCall.run('inbound', makeExchange());
  });
});

describe('sandbox limits: CPU', () => {
  const BUDGET_MS = 10;
  /**
   * How far past its budget a call may end in these tests. The margin the host keeps is far smaller (BENCHMARKS.md,
   * `npm run bench:budget-margin`); this one absorbs a loaded CI machine, where the process's CPU time includes other
   * threads and a descheduled call may take three budgets of wall-clock time. The overruns these tests were written
   * for took from 100 ms to several seconds, every time; a pause of the virtual machine (support/in-time.ts) adds about
   * 100 ms to one call now and then, so a fresh binding is measured again when a call ended late.
   */
  const SLACK_MS = 30;

  /** Binds the module afresh and runs it, up to ATTEMPTS times, until a call ends within the budget and the margin. */
  async function assertStoppedInTime(bind: () => ReturnType<typeof bindHostile>, exchange: () => ReturnType<typeof makeExchange> = () => makeExchange()) {
    const { value: err } = await oneWithin(
      async () => {
        const binding = await bind();
        return timed(() => policyFailure(binding.run('inbound', exchange())));
      },
      ({ value: err, tookMs, cpuMs }) =>
        cpuMs < BUDGET_MS + SLACK_MS || tookMs < BUDGET_MS + SLACK_MS
          ? undefined
          : `a ${BUDGET_MS} ms budget ended the call (${err.reason}) after ${cpuMs.toFixed(1)} ms of CPU, ${tookMs.toFixed(1)} ms of wall time`,
    );
    return err;
  }

  test('a large straight-line function called in a loop is charged by its size, not once', async () => {
    // 40,000 additions in one function: one charge used to cover all of them.
    const adds = '(local.set $x (i32.add (local.get $x) (i32.const 1)))'.repeat(40_000);
    const bind = () =>
      bindHostile({ name: 'straight-line', extra: `(func $long (local $x i32) ${adds})`, inbound: forever('(call $long)') }, { limits: { cpuMs: BUDGET_MS } });
    assert.equal((await assertStoppedInTime(bind)).reason, 'cpu-budget');
  });

  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });

  test('a loop of RSA verifications with a huge public exponent: the key is refused, the loop stopped in time', async () => {
    const { publicKey, privateKey } = rsa;
    const jwk = publicKey.export({ format: 'jwk' }) as { n: string; e: string };
    const hugeExponent = Buffer.alloc(256, 0xff).toString('base64url');
    const hostile = JSON.stringify({ kty: 'RSA', n: jwk.n, e: hugeExponent });
    const data = new TextEncoder().encode('header.payload');
    const signature = createSign('sha256').update(data).sign(privateKey);
    assert.equal(verifySignature('RS256', JSON.stringify(jwk), data, signature), 1);
    assert.equal(verifySignature('RS256', hostile, data, signature), Status.INVALID_VALUE);
    const items = ['RS256', hostile, data, new Uint8Array(signature)];
    const [alg, key, d, s] = layout(items);
    const call = `(drop (call $verify (i32.const ${alg!.ptr}) (i32.const ${alg!.len}) (i32.const ${key!.ptr}) (i32.const ${key!.len})
                                      (i32.const ${d!.ptr}) (i32.const ${d!.len}) (i32.const ${s!.ptr}) (i32.const ${s!.len})))`;
    // It ends for its budget or for the output cap (each verification hands the host the key, data and signature).
    await assertStoppedInTime(() => bindHostile({ name: 'verify-huge-e', data: items, inbound: forever(call) }, { limits: { cpuMs: BUDGET_MS } }));
  });

  test('a loop of valid RSA verifications is stopped in time (the deadline is checked after each)', async () => {
    const { publicKey, privateKey } = rsa;
    const jwk = JSON.stringify(publicKey.export({ format: 'jwk' }));
    const data = new TextEncoder().encode('header.payload');
    const signature = new Uint8Array(createSign('sha512').update(data).sign(privateKey));
    const items = ['RS512', jwk, data, signature];
    const [alg, key, d, s] = layout(items);
    const call = `(if (i32.ne (call $verify (i32.const ${alg!.ptr}) (i32.const ${alg!.len}) (i32.const ${key!.ptr}) (i32.const ${key!.len})
                                      (i32.const ${d!.ptr}) (i32.const ${d!.len}) (i32.const ${s!.ptr}) (i32.const ${s!.len})) (i32.const 1))
                    (then unreachable))`;
    await assertStoppedInTime(() => bindHostile({ name: 'verify-loop', data: items, inbound: forever(call) }, { limits: { cpuMs: BUDGET_MS } }));
  });

  test('memory.copy in chunks keeps its meaning: overlapping either way, out of bounds traps', async () => {
    // 200 KiB of a pattern copied 100 bytes up, and back down, across chunk boundaries; then checked byte by byte.
    const binding = await bindHostile({
      name: 'copy-overlap',
      pages: 8,
      locals: '(local $i i32) (local $bad i32)',
      inbound: `
        ${repeat(204800, '(i32.store8 (i32.add (i32.const 65536) (local.get $i)) (local.get $i))')}
        (memory.copy (i32.const 65636) (i32.const 65536) (i32.const 204800))
        (local.set $i (i32.const 0))
        ${repeat(204800, '(if (i32.ne (i32.load8_u (i32.add (i32.const 65636) (local.get $i))) (i32.and (local.get $i) (i32.const 255))) (then unreachable))')}
        (memory.copy (i32.const 65536) (i32.const 65636) (i32.const 204800))
        (local.set $i (i32.const 0))
        ${repeat(204800, '(if (i32.ne (i32.load8_u (i32.add (i32.const 65536) (local.get $i))) (i32.and (local.get $i) (i32.const 255))) (then unreachable))')}
        (i32.const 0)`,
    }, { limits: { cpuMs: 2000 } });
    await binding.run('inbound', makeExchange());
    const outside = await bindHostile({ name: 'copy-outside', inbound: '(memory.copy (i32.const 0) (i32.const 100000) (i32.const 100000)) (i32.const 0)' });
    assert.equal((await policyFailure(outside.run('inbound', makeExchange()))).reason, 'trap');
  });

  test('a name of megabytes is not read: INVALID_VALUE, and a loop of such reads is stopped in time', async () => {
    const call = '(drop (call $get (i32.const 15) (i32.const 0) (i32.const 16646144) (i32.const 256) (i32.const 0)))';
    const once = await bindHostile({
      name: 'huge-name-once',
      pages: 256,
      inbound: `(if (i32.ne (call $get (i32.const 15) (i32.const 0) (i32.const 16646144) (i32.const 256) (i32.const 0)) (i32.const ${Status.INVALID_VALUE})) (then unreachable)) (i32.const 0)`,
    });
    await once.run('inbound', makeExchange());
    await assertStoppedInTime(() => bindHostile({ name: 'huge-name', pages: 256, inbound: forever(call) }, { limits: { cpuMs: BUDGET_MS } }));
  });

  test('a WASI module cannot close or renumber the standard streams (the host\'s descriptors), and leaves none open', { skip: gcNow ? false : 'needs gc()' }, async () => {
    const fds = () => readdirSync('/proc/self/fd').length;
    const module = await hostileModule({
      name: 'wasi-closer',
      imports: `
        (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
        (import "wasi_snapshot_preview1" "fd_renumber" (func $fd_renumber (param i32 i32) (result i32)))`,
      inbound: `
        (if (i32.ne (call $fd_close (i32.const 1)) (i32.const 58)) (then unreachable))
        (if (i32.ne (call $fd_close (i32.const 0)) (i32.const 58)) (then unreachable))
        (if (i32.ne (call $fd_renumber (i32.const 2) (i32.const 9)) (i32.const 58)) (then unreachable))
        (if (i32.ne (call $fd_renumber (i32.const 9) (i32.const 1)) (i32.const 58)) (then unreachable))
        (i32.const 0)`,
    });
    const loaded = await t.host.load(module);
    await settledMemory();
    const before = fds();
    // Twenty bindings made and dropped without being closed, as a replaced configuration drops its own.
    for (let i = 0; i < 20; i++) {
      const binding = t.host.bind({ id: `wasi-closer/${i}`, phase: 'inbound', module: loaded, grants: { wasi: true } });
      await binding.run('inbound', makeExchange());
    }
    await settledMemory();
    await settledMemory();
    // Two descriptors each, forty in all, if nothing closed them; finalizers may still be pending for the last few.
    assert.ok(fds() - before <= 8, `${fds() - before} more descriptors open after 20 dropped WASI instances`);
  });

  test('a loop of query-parameter reads with a too-small buffer on a long query is stopped in time', async () => {
    const query = Array.from({ length: 4000 }, (_, i) => `p${i}=${'v'.repeat(10)}`).join('&');
    const [name] = layout(['p3999']);
    const call = `(drop (call $get (i32.const 4) (i32.const ${name!.ptr}) (i32.const ${name!.len}) (i32.const ${SCRATCH}) (i32.const 0)))`;
    const bind = () => bindHostile({ name: 'query-loop', data: ['p3999'], inbound: forever(call) }, { limits: { cpuMs: BUDGET_MS } });
    assert.equal((await assertStoppedInTime(bind, () => makeExchange({ query }))).reason, 'cpu-budget');
  });

  // Every function a module can import, called in a loop that never ends by itself with arguments it accepts: each
  // call ends (for its CPU budget, or a cap the loop runs into) within the budget and the margin.
  for (const loop of IMPORT_LOOPS) {
    test(`a loop calling ${loop.name} ends within its CPU budget and the margin`, async () => {
      await assertStoppedInTime(() => bindHostile(loop.module, { limits: { cpuMs: BUDGET_MS }, grants: loop.grants }), loop.exchange);
    });
  }
});
