// The Extism kernel as the policy host answers it (runtime/policy-host/kernel.ts), function by function, from inside
// hand-written modules (abi/policy-abi.md, section 3): addresses, bounds, values, the blocks' lifetime, vars,
// configuration, logs and errors, and each limit the kernel applies (memory cap, block count and size, output cap).

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { assertAllHeld, bindProbe, budgetCheckCounter, repeated, type Probe, type ProbeOptions } from './support/kernel-probes.ts';
import { newHost, policyFailure } from './support/policies.ts';

const t = newHost();

/** Block 1 and block 2 of a call: the index in the top 16 bits of the address. */
const BLOCK_1 = 1n << 48n;
const BLOCK_2 = 2n << 48n;

async function allHeld(name: string, probe: Probe, options?: ProbeOptions): Promise<void> {
  const binding = await bindProbe(t, name, probe, options);
  assertAllHeld(await binding.run(), binding.all);
}

async function failure(name: string, probe: Probe, options?: ProbeOptions) {
  const binding = await bindProbe(t, name, probe, options);
  return policyFailure(binding.run());
}

const is = (expr: string, value: bigint | number) =>
  typeof value === 'bigint' ? `(i64.eq ${expr} (i64.const ${value}))` : `(i32.eq ${expr} (i32.const ${value}))`;

describe('kernel blocks', () => {
  test('alloc numbers blocks from 1 in the top 16 bits; length gives their size, 0 for anything not a live block', async () => {
    await allHeld('numbering', {
      steps: (check) => `
        (local.set $a (call $alloc (i64.const 10)))
        (local.set $b (call $alloc (i64.const 0)))
        ${check(is('(local.get $a)', BLOCK_1))}
        ${check(is('(local.get $b)', BLOCK_2))}
        ${check(is('(call $length (local.get $a))', 10n))}
        ${check(is('(call $length_unsafe (local.get $a))', 10n))}
        ${check(is('(call $length (local.get $b))', 0n))}
        ${check(is('(call $length (i64.const 0))', 0n))}
        ${check(is(`(call $length (i64.const ${3n << 48n}))`, 0n))}
        ${check(is('(call $length (i64.const -1))', 0n))}`,
    });
  });

  test('freeing a block ends it (length 0, loads refused); 0, a freed block and a negative address are freed quietly', async () => {
    await allHeld('free', {
      steps: (check) => `
        (local.set $a (call $alloc (i64.const 16)))
        (call $free (local.get $a))
        ${check(is('(call $length (local.get $a))', 0n))}
        (call $free (local.get $a))
        (call $free (i64.const 0))
        (call $free (i64.const -1))
        (local.set $b (call $alloc (i64.const 16)))
        ${check(is('(local.get $b)', BLOCK_2))}
        ${check(is('(call $length (local.get $b))', 16n))}`,
    });
    const err = await failure('load-freed', {
      steps: () => `(local.set $a (call $alloc (i64.const 16))) (call $free (local.get $a)) (drop (call $load_u8 (local.get $a)))`,
    });
    assert.equal(err.reason, 'bad-argument');
    assert.match(err.message, /load_u8: address 0x0001000000000000 is not inside a live Extism kernel block/);
  });

  test('a freed block given again is zeroed first', async () => {
    await allHeld('reuse-zeroed', {
      steps: (check) => `
        (local.set $a (call $alloc (i64.const 16)))
        (call $store_u8 (local.get $a) (i32.const 7))
        (call $store_u64 (i64.add (local.get $a) (i64.const 8)) (i64.const -1))
        (call $free (local.get $a))
        (local.set $b (call $alloc (i64.const 16)))
        ${check(is('(call $load_u8 (local.get $b))', 0))}
        ${check(is('(call $load_u64 (i64.add (local.get $b) (i64.const 8)))', 0n))}`,
    });
  });

  test('loads and stores: bytes masked to 8 bits, u64 little-endian, every byte inside the block', async () => {
    await allHeld('values', {
      steps: (check) => `
        (local.set $a (call $alloc (i64.const 16)))
        (call $store_u8 (local.get $a) (i32.const 0x12))
        (call $store_u8 (i64.add (local.get $a) (i64.const 1)) (i32.const 0x1ab))
        ${check(is('(call $load_u8 (local.get $a))', 0x12))}
        ${check(is('(call $load_u8 (i64.add (local.get $a) (i64.const 1)))', 0xab))}
        (call $store_u64 (i64.add (local.get $a) (i64.const 8)) (i64.const 0x0102030405060708))
        ${check(is('(call $load_u8 (i64.add (local.get $a) (i64.const 8)))', 8))}
        ${check(is('(call $load_u8 (i64.add (local.get $a) (i64.const 15)))', 1))}
        ${check(is('(call $load_u64 (i64.add (local.get $a) (i64.const 8)))', 0x0102030405060708n))}
        (call $store_u64 (local.get $a) (i64.const -2))
        ${check(is('(call $load_u64 (local.get $a))', -2n))}
        ${check(is('(call $load_u8 (local.get $a))', 0xfe))}`,
    });
  });

  test('a load or store reaching one byte past its block fails the call', async () => {
    const cases: [string, string][] = [
      ['load_u8', '(drop (call $load_u8 (i64.add (local.get $a) (i64.const 16))))'],
      ['load_u64', '(drop (call $load_u64 (i64.add (local.get $a) (i64.const 9))))'],
      ['store_u8', '(call $store_u8 (i64.add (local.get $a) (i64.const 16)) (i32.const 1))'],
      ['store_u64', '(call $store_u64 (i64.add (local.get $a) (i64.const 9)) (i64.const 1))'],
      ['load_u8', '(drop (call $load_u8 (i64.const -1)))'],
    ];
    for (const [what, step] of cases) {
      const err = await failure(`past-${what.replace('_', '-')}`, {
        steps: (check) => `
          (local.set $a (call $alloc (i64.const 16)))
          ${check(is('(call $load_u8 (i64.add (local.get $a) (i64.const 15)))', 0))}
          ${check(is('(call $load_u64 (i64.add (local.get $a) (i64.const 8)))', 0n))}
          (call $store_u8 (i64.add (local.get $a) (i64.const 15)) (i32.const 1))
          (call $store_u64 (i64.add (local.get $a) (i64.const 8)) (i64.const 1))
          ${step}`,
      });
      assert.equal(err.reason, 'bad-argument', what);
      assert.match(err.message, new RegExp(`: ${what}: address 0x[0-9a-f]{16} is not inside a live Extism kernel block`), what);
    }
  });

  test('blocks last one call: the next call finds none of them, and has the whole memory cap again', async () => {
    // 4 MiB cap, 128 KiB of linear memory: three 1 MiB blocks fit in a call, and again in the next one.
    const binding = await bindProbe(
      t,
      'call-lifetime',
      {
        extra: '(global $kept (mut i64) (i64.const 0))',
        steps: (check) => `
          ${check(is('(call $length (global.get $kept))', 0n))}
          (global.set $kept (call $alloc (i64.const 1048576)))
          (drop (call $alloc (i64.const 1048576)))
          (drop (call $alloc (i64.const 1048576)))
          ${check(is('(global.get $kept)', BLOCK_1))}`,
      },
      { limits: { memoryBytes: 4 * 1024 * 1024 } },
    );
    for (let call = 0; call < 3; call++) assertAllHeld(await binding.run(), binding.all);
  });
});

describe('kernel limits', () => {
  test("blocks count against the memory cap with linear memory and each block's overhead", async () => {
    // Cap: 2 pages of linear memory and one block of 1000 bytes with its 64 bytes of overhead, exactly.
    const limits = { memoryBytes: 2 * 65536 + 1000 + 64 };
    await allHeld('cap-exact', { steps: (check) => `${check('(i64.ne (call $alloc (i64.const 1000)) (i64.const 0))')}` }, { limits });
    const err = await failure('cap-past', { steps: () => `(drop (call $alloc (i64.const 1001)))` }, { limits });
    assert.equal(err.reason, 'memory-cap');
    assert.match(err.message, /1065 more bytes would take the module to 132137 bytes, past its memory cap of 132136/);
    const second = await failure('cap-second', { steps: () => `(drop (call $alloc (i64.const 500))) (drop (call $alloc (i64.const 500)))` }, { limits });
    assert.equal(second.reason, 'memory-cap');
  });

  test('freed blocks give their bytes back: a loop allocating and freeing 1 MiB stays under a 4 MiB cap', async () => {
    await allHeld(
      'alloc-free-loop',
      {
        steps: (check) => `
          (loop $again
            (local.set $a (call $alloc (i64.const 1048576)))
            (call $free (local.get $a))
            (local.set $b (call $alloc (i64.const 1048575)))
            (call $free (local.get $b))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $again (i32.lt_u (local.get $i) (i32.const 12))))
          ${check(is('(local.get $i)', 12))}`,
      },
      // 24 MiB zeroed in all: a generous budget, since the limit under test is the memory cap.
      { limits: { memoryBytes: 4 * 1024 * 1024, cpuMs: 1000 } },
    );
  });

  test('a block is at most the output cap, and never less than 1 MiB', async () => {
    const mib = 1024 * 1024;
    await allHeld('block-mib', { steps: (check) => check(is(`(call $length (call $alloc (i64.const ${mib})))`, BigInt(mib))) });
    const err = await failure('block-past-mib', { steps: () => `(drop (call $alloc (i64.const ${mib + 1})))` });
    assert.equal(err.reason, 'memory-cap');
    assert.match(err.message, new RegExp(`a block of ${mib + 1} bytes is larger than the ${mib} bytes a kernel block may hold`));
    // A small output cap does not shrink blocks below 1 MiB; a larger one lets them grow with it.
    await allHeld('block-small-cap', { steps: (check) => check(is(`(call $length (call $alloc (i64.const ${mib})))`, BigInt(mib))) }, { limits: { outputBytes: 1000 } });
    await allHeld(
      'block-large-cap',
      { steps: (check) => check(is(`(call $length (call $alloc (i64.const ${2 * mib})))`, BigInt(2 * mib))) },
      { limits: { outputBytes: 2 * mib } },
    );
  });

  test('alloc refuses a negative length', async () => {
    const err = await failure('alloc-negative', { steps: () => `(drop (call $alloc (i64.const -1)))` });
    assert.equal(err.reason, 'bad-argument');
    assert.match(err.message, /alloc: negative length -1/);
  });

  test('a call holds 32,767 blocks at most (higher indexes would be negative addresses)', async () => {
    const allocs = (n: number) => `
      (loop $again
        (local.set $a (call $alloc (i64.const 0)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $again (i32.lt_u (local.get $i) (i32.const ${n}))))`;
    // Generous CPU: the limit under test is the count (32,767 host calls take a few milliseconds).
    const limits = { cpuMs: 2000 };
    await allHeld('blocks-max', { steps: (check) => `${allocs(32767)} ${check(is('(local.get $a)', 32767n << 48n))}` }, { limits });
    const err = await failure('blocks-past-max', { steps: () => allocs(32768) }, { limits });
    assert.equal(err.reason, 'memory-cap');
    assert.match(err.message, /more than 32767 Extism kernel blocks in one call/);
  });
});

describe('kernel output and errors', () => {
  test('output_set takes a length inside its block, at its start, and counts it against the output cap', async () => {
    // 100 bytes of output and the 32 that respond (the probe's report) counts.
    const limits = { outputBytes: 132 };
    await allHeld('output-fits', { steps: () => `(local.set $a (call $alloc (i64.const 100))) (call $output_set (local.get $a) (i64.const 100))` }, { limits });
    const cases: [string, string, string][] = [
      ['output-long', '(call $output_set (local.get $a) (i64.const 101))', 'bad-argument'],
      ['output-offset', '(call $output_set (i64.add (local.get $a) (i64.const 1)) (i64.const 1))', 'bad-argument'],
      ['output-freed', '(call $free (local.get $a)) (call $output_set (local.get $a) (i64.const 1))', 'bad-argument'],
    ];
    for (const [name, step, reason] of cases) {
      const err = await failure(name, { steps: () => `(local.set $a (call $alloc (i64.const 100))) ${step}` }, { limits });
      assert.equal(err.reason, reason, name);
    }
    const over = await failure('output-over-cap', { steps: () => `(local.set $a (call $alloc (i64.const 200))) (call $output_set (local.get $a) (i64.const 133))` }, { limits });
    assert.equal(over.reason, 'output-cap');
    const long = await failure('output-long', { steps: () => `(local.set $a (call $alloc (i64.const 100))) (call $output_set (local.get $a) (i64.const 101))` });
    assert.match(long.message, /output_set: length 101 is outside its block of 100 bytes/);
  });

  test('error_set fails the call with its text (4,096 characters at most), counted against the output cap', async () => {
    const err = await failure('error-set', { data: ['no entry: bad token'], steps: (_, str) => `(call $error_set ${str(0)})` });
    assert.equal(err.reason, 'error');
    assert.match(err.message, /\(error\): no entry: bad token$/);
    const long = await failure('error-set-long', {
      pages: 2,
      steps: () => `(memory.fill (i32.const 4096) (i32.const 101) (i32.const 5000)) (call $error_set (call $block_of (i32.const 4096) (i32.const 5000)))`,
      // 5,000 host calls copy the text in: a generous budget, since the limit under test is the message's length.
    }, { limits: { cpuMs: 1000 } });
    assert.match(long.message, /\(error\): e{4096}$/);
    const capped = await failure('error-set-cap', { data: ['x'.repeat(101)], steps: (_, str) => `(call $error_set ${str(0)})` }, { limits: { outputBytes: 100 } });
    assert.equal(capped.reason, 'output-cap');
    const offset = await failure('error-set-offset', { data: ['xy'], steps: (_, str) => `(call $error_set (i64.add ${str(0)} (i64.const 1)))` });
    assert.equal(offset.reason, 'bad-argument');
  });

  test('log_* write the block at their level (trace is below the gateway level), free it, and count it as output', async () => {
    const before = t.logs.length;
    await allHeld('log-levels', {
      data: ['at trace', 'at debug', 'at info', 'at warn', 'at error'],
      steps: (check, str) => `
        (call $log_trace ${str(0)}) (call $log_debug ${str(1)}) (call $log_info ${str(2)})
        (call $log_warn ${str(3)})
        (local.set $a ${str(4)})
        (call $log_error (local.get $a))
        ${check(is('(call $length (local.get $a))', 0n))}
        ${check(is('(call $get_log_level)', 1))}`,
    });
    const written = t.logs.slice(before).filter((r) => r.source === 'policy').map((r) => [r.level, r.msg]);
    assert.deepEqual(written, [
      ['debug', 'at debug'],
      ['info', 'at info'],
      ['warn', 'at warn'],
      ['error', 'at error'],
    ]);
    const capped = await failure('log-cap', { data: ['y'.repeat(101)], steps: (_, str) => `(call $log_trace ${str(0)})` }, { limits: { outputBytes: 100 } });
    assert.equal(capped.reason, 'output-cap');
    const bad = await failure('log-bad', { steps: () => `(call $log_info (i64.const ${BLOCK_1}))` });
    assert.equal(bad.reason, 'bad-argument');
    assert.match(bad.message, /\(bad-argument\): log: address/);
  });
});

describe('kernel configuration and vars', () => {
  test("config_get gives the binding's configuration value in a new block, 0 for a key it lacks; the key block is freed", async () => {
    await allHeld(
      'config-get',
      {
        data: ['greeting', 'missing', 'constructor', 'limit'],
        steps: (check, str) => `
          (local.set $a ${str(0)})
          (local.set $b (call $config_get (local.get $a)))
          ${check(is('(call $length (local.get $a))', 0n))}
          ${check(is('(call $length (local.get $b))', 5n))}
          ${check(is('(call $load_u8 (local.get $b))', 'h'.charCodeAt(0)))}
          ${check(is('(call $load_u8 (i64.add (local.get $b) (i64.const 4)))', 'o'.charCodeAt(0)))}
          ${check(is(`(call $config_get ${str(1)})`, 0n))}
          ${check(is(`(call $config_get ${str(2)})`, 0n))}
          ${check(is(`(call $length (call $config_get ${str(3)}))`, 2n))}`,
      },
      { config: { greeting: 'hello', limit: 10 } },
    );
    const capped = await failure('config-cap', { data: ['k'.repeat(101)], steps: (_, str) => `(drop (call $config_get ${str(0)}))` }, { limits: { outputBytes: 100 } });
    assert.equal(capped.reason, 'output-cap');
  });

  test('vars outlive calls: set in one call, read in the next, deleted by setting address 0', async () => {
    const binding = await bindProbe(t, 'vars', {
      data: ['k', 'abc', 'other'],
      extra: '(global $calls (mut i32) (i32.const 0))',
      steps: (check, str) => `
        (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
        (if (i32.eq (global.get $calls) (i32.const 1))
          (then (call $var_set ${str(0)} ${str(1)})))
        (if (i32.eq (global.get $calls) (i32.const 3))
          (then (call $var_set ${str(0)} (i64.const 0))))
        (local.set $a (call $var_get ${str(0)}))
        ${check(`(if (result i32) (i32.lt_u (global.get $calls) (i32.const 3))
          (then ${is('(call $length (local.get $a))', 3n)}) (else ${is('(local.get $a)', 0n)}))`)}
        ${check(`(if (result i32) (i32.lt_u (global.get $calls) (i32.const 3))
          (then ${is('(call $load_u8 (i64.add (local.get $a) (i64.const 2)))', 'c'.charCodeAt(0))}) (else (i32.const 1)))`)}
        ${check(is(`(call $var_get ${str(2)})`, 0n))}`,
    });
    for (let call = 1; call <= 4; call++) assert.equal(await binding.run(), binding.all, `call ${call}`);
  });

  test('vars hold 64 KiB at most, keys included; replacing or deleting a var gives its bytes back', async () => {
    // The values' bytes do not matter here: a fresh (zeroed) block of the length.
    const fill = (len: number) => `(call $alloc (i64.const ${len}))`;
    const key = (k: string) => `(call $block_of (i32.const ${k === 'k' ? 8192 : 8200}) (i32.const 1))`;
    const probe = (steps: string): Probe => ({ pages: 3, data: ['k', 'j'], steps: () => steps });
    // "k" and 65,535 bytes: 64 KiB exactly; replaced by as much again, deleted, and set again.
    await allHeld(
      'vars-full',
      probe(`
        (call $var_set ${key('k')} ${fill(65535)})
        (call $var_set ${key('k')} ${fill(65535)})
        (call $var_set ${key('k')} (i64.const 0))
        (call $var_set ${key('j')} ${fill(65535)})`),
      { limits: { cpuMs: 1000 } },
    );
    const err = await failure('vars-past', probe(`(call $var_set ${key('k')} ${fill(65536)})`), { limits: { cpuMs: 1000 } });
    assert.equal(err.reason, 'memory-cap');
    assert.match(err.message, /var_set: Extism vars would hold more than 65536 bytes/);
    const two = await failure('vars-two', probe(`(call $var_set ${key('k')} ${fill(40000)}) (call $var_set ${key('j')} ${fill(40000)})`), { limits: { cpuMs: 1000 } });
    assert.equal(two.reason, 'memory-cap');
  });

  test("a var is a copy: the value block changed after var_set leaves it; var_set's bad addresses fail the call", async () => {
    await allHeld('var-copy', {
      data: ['k', 'abc'],
      steps: (check, str) => `
        (local.set $a ${str(1)})
        (call $var_set ${str(0)} (local.get $a))
        (call $store_u8 (local.get $a) (i32.const 122))
        ${check(is(`(call $load_u8 (call $var_get ${str(0)}))`, 'a'.charCodeAt(0)))}`,
    });
    for (const [name, step] of [
      ['var-bad-key', (str: (i: number) => string) => `(call $var_set (i64.const ${BLOCK_1 + 1n}) ${str(1)})`],
      ['var-bad-value', (str: (i: number) => string) => `(call $var_set ${str(0)} (i64.const ${3n << 48n}))`],
    ] as const) {
      const err = await failure(name, { data: ['k', 'abc'], steps: (_, str) => step(str) });
      assert.equal(err.reason, 'bad-argument', name);
      assert.match(err.message, /\(bad-argument\): var_set: address 0x[0-9a-f]{16} is not inside a live Extism kernel block/, name);
    }
  });

  test('replacing a var reserves only what it grows by', async () => {
    // Cap: 2 pages, two 20,000-byte blocks with their overhead, and 20,001 bytes of var: replacing the var by one of the
    // same size needs no more.
    await allHeld(
      'var-replace-memory',
      { data: ['k'], steps: (_, str) => `(call $var_set ${str(0)} (call $alloc (i64.const 20000))) (call $var_set ${str(0)} (call $alloc (i64.const 20000)))` },
      { limits: { memoryBytes: 2 * 65536 + 2 * (20000 + 64) + 2 * (1 + 64) + 20001 } },
    );
  });

  test('var_set counts its key and value against the output cap', async () => {
    // A 1-byte key, a 100-byte value and the 32 bytes the probe's report counts: 133.
    const probe: Probe = { data: ['k'], steps: (_, str) => `(call $var_set ${str(0)} (call $alloc (i64.const 100)))` };
    await allHeld('var-output', probe, { limits: { outputBytes: 133 } });
    assert.equal((await failure('var-output-over', probe, { limits: { outputBytes: 132 } })).reason, 'output-cap');
  });

  test('a var counts against the memory cap besides the block it was copied from', async () => {
    // Cap: 3 pages and 50,000 bytes. The 30,000-byte block fits (30,064 with its overhead); its copy as a var does not.
    const err = await failure(
      'var-memory',
      { pages: 3, data: ['k'], steps: (_, str) => `(call $var_set ${str(0)} (call $alloc (i64.const 30000)))` },
      { limits: { memoryBytes: 3 * 65536 + 50000, cpuMs: 1000 } },
    );
    assert.equal(err.reason, 'memory-cap');
    assert.match(err.message, /Extism kernel memory of 30001 more bytes/);
  });
});

describe('kernel arguments, named in their failures', () => {
  test('an address that starts no live block fails the call naming the function; output_set takes 0 bytes, not fewer', async () => {
    const bad = `(i64.const ${BLOCK_2 + 5n})`;
    for (const [fn, step] of [
      ['output_set', `(call $output_set ${bad} (i64.const 0))`],
      ['error_set', `(call $error_set ${bad})`],
      ['config_get', `(drop (call $config_get ${bad}))`],
      ['var_get', `(drop (call $var_get ${bad}))`],
      ['log', `(call $log_info ${bad})`],
    ] as const) {
      const err = await failure(`bad-address-${fn.replace('_', '-')}`, { steps: () => step });
      assert.equal(err.reason, 'bad-argument', fn);
      assert.match(err.message, new RegExp(`\\(bad-argument\\): ${fn}: address 0x0002000000000005 is not inside a live Extism kernel block`), fn);
    }
    const negative = await failure('output-negative', { steps: () => '(call $output_set (call $alloc (i64.const 10)) (i64.const -1))' });
    assert.match(negative.message, /output_set: length -1 is outside its block of 10 bytes/);
    await allHeld('output-empty', { steps: () => '(call $output_set (call $alloc (i64.const 10)) (i64.const 0))' });
  });

  test('vars held from an earlier call count against the memory cap of the next one', async () => {
    // Cap: 3 pages and 40,000 bytes. A 30,000-byte block fits alone (30,064 with its overhead), not beside a
    // 15,000-byte var set in the call before.
    const limits = { memoryBytes: 3 * 65536 + 40_000 };
    await allHeld('alloc-alone', { pages: 3, steps: () => '(drop (call $alloc (i64.const 30000)))' }, { limits });
    const binding = await bindProbe(t, 'var-then-alloc', {
      pages: 3,
      data: ['k'],
      extra: '(global $calls (mut i32) (i32.const 0))',
      steps: (_, str) => `
        (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
        (if (i32.eq (global.get $calls) (i32.const 1))
          (then (call $var_set ${str(0)} (call $alloc (i64.const 15000))))
          (else (drop (call $alloc (i64.const 30000)))))`,
    }, { limits });
    assert.equal(await binding.run(), 0);
    const err = await policyFailure(binding.run());
    assert.equal(err.reason, 'memory-cap');
  });
});

describe('kernel functions a policy has no use for', () => {
  test('no input, no Extism error or HTTP: zeros, and input loads and http_request fail the call', async () => {
    await allHeld('zeros', {
      steps: (check) => `
        ${check(is('(call $input_offset)', 0n))}
        ${check(is('(call $input_length)', 0n))}
        ${check(is('(call $error_get)', 0n))}
        ${check(is('(call $http_status_code)', 0))}
        ${check(is('(call $http_headers)', 0n))}`,
    });
    const loads: [string, string, RegExp][] = [
      ['input_load_u8', '(drop (call $input_load_u8 (i64.const 0)))', /input_load_u8: a policy handler has no input/],
      ['input_load_u64', '(drop (call $input_load_u64 (i64.const 0)))', /input_load_u64: a policy handler has no input/],
    ];
    for (const [name, step, message] of loads) {
      const err = await failure(name.replaceAll('_', '-'), { steps: () => step });
      assert.equal(err.reason, 'bad-argument');
      assert.match(err.message, message);
    }
    const http = await failure('http-request', { steps: () => '(drop (call $http_request (i64.const 0) (i64.const 0)))' });
    assert.equal(http.reason, 'capability');
    assert.match(http.message, /called the Extism kernel's http_request/);
  });
});

describe('what kernel functions charge the CPU meter', () => {
  const counter = budgetCheckCounter();
  const ROUNDS = 64;
  const loop = (body: string) => repeated(ROUNDS, body);

  test('each charges a unit per call and per 256 bytes it reads or copies (alloc: per KiB it zeroes)', async () => {
    const big = { limits: { outputBytes: 16 << 20 } };
    const counts = {
      // 1 + 256 units a round: a check every round. A charge that lost its size part would make 2 units a round.
      alloc: await counter.checks('charge-alloc', { steps: () => loop('(call $free (call $alloc (i64.const 262144)))') }),
      log_trace: await counter.checks('charge-log-trace', { steps: () => loop('(call $log_trace (call $alloc (i64.const 65536)))') }, big),
      var_set: await counter.checks('charge-var-set', { steps: () => `
        (local.set $a (call $alloc (i64.const 32768)))
        (local.set $b (call $alloc (i64.const 32768)))
        ${loop('(call $var_set (local.get $a) (local.get $b))')}` }, big),
      var_get: await counter.checks('charge-var-get', { steps: () => `
        (call $var_set (call $alloc (i64.const 32768)) (call $alloc (i64.const 32768)))
        ${loop('(call $free (call $var_get (call $alloc (i64.const 32768))))')}` }, big),
      config_get: await counter.checks('charge-config-get', { data: ['k'], steps: (_, str) => loop(`(call $free (call $config_get ${str(0)}))`) }, { ...big, config: { k: 'v'.repeat(65536) } }),
    };
    for (const [fn, n] of Object.entries(counts)) assert.ok(n >= ROUNDS, `${fn}: ${n} checks in ${ROUNDS} rounds`);
    // error_set ends the call; its 64 KiB message alone adds up to a check.
    const errorSet = await counter.checks('charge-error-set', { steps: () => '(call $error_set (call $alloc (i64.const 65536)))' }, undefined, { fails: true });
    assert.ok(errorSet >= 1, `error_set: ${errorSet} checks`);
  });
});
