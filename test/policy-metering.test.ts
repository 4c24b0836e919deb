// The CPU meter's rewrite of a module (runtime/policy-host/instrument.ts), read exactly: the fuel global it exports is
// the meter's output, so each test runs a metered module and compares the fuel it spent, and the calls it made to
// gatehouse:internal, with what the instructions it ran must cost. The host (instance.ts) turns the same fuel into
// deadline checks; test/policy-instance.test.ts and test/sandbox-limits.test.ts test that end.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { INTERNAL_MODULE } from '../abi/index.ts';
import {
  BUDGET_CHECK_IMPORT,
  BULK_CHUNK_BYTES,
  BYTES_PER_UNIT,
  FIRST_FUEL,
  FUEL_EXPORT,
  instrumentForBudget,
  MAX_TABLE_ENTRIES,
  MEMORY_GROW_IMPORT,
} from '../runtime/policy-host/instrument.ts';
import { isDeno } from '../runtime/adapters/index.ts';
import { wat } from './support/policies.ts';

interface Metered {
  exports: Record<string, (...args: number[]) => number>;
  fuel: WebAssembly.Global;
  memory: WebAssembly.Memory;
  /** Deadline checks the module asked for. */
  checks: number;
  /** Deltas the module asked memory_grow for; the answer is `growAnswer` (the delta itself by default). */
  grows: number[];
  growAnswer: ((delta: number) => number) | null;
}

/** Meters a module and instantiates it with gatehouse:internal answered by the test (a check only counts). */
async function metered(text: string): Promise<Metered> {
  const bytes = await instrumentForBudget(await wat(text, 'host'));
  const m = { checks: 0, grows: [] as number[], growAnswer: null } as unknown as Metered;
  const instance = await WebAssembly.instantiate(new WebAssembly.Module(bytes as BufferSource), {
    [INTERNAL_MODULE]: {
      [BUDGET_CHECK_IMPORT]: () => {
        m.checks++;
      },
      [MEMORY_GROW_IMPORT]: (delta: number) => {
        m.grows.push(delta);
        return m.growAnswer ? m.growAnswer(delta) : delta;
      },
    },
  });
  m.exports = instance.exports as Metered['exports'];
  m.fuel = instance.exports[FUEL_EXPORT] as WebAssembly.Global;
  m.memory = instance.exports.memory as WebAssembly.Memory;
  return m;
}

/** The fuel one call of `name` spends, starting from a full tank (no check on the way). */
function spent(m: Metered, name: string, ...args: number[]): number {
  m.fuel.value = 1 << 30;
  m.exports[name]!(...args);
  return (1 << 30) - (m.fuel.value as number);
}

/**
 * A module compiled by binaryen with its names section (the meter reads its functions' and globals' names from it),
 * with the features given: all of binaryen's, to make modules that the meter must refuse.
 */
async function binary(text: string, features: 'some' | 'all' = 'some'): Promise<Uint8Array> {
  const binaryen = (await import('binaryen')).default;
  const module = binaryen.parseText(text);
  binaryen.setDebugInfo(true);
  try {
    const F = binaryen.Features;
    module.setFeatures(features === 'all' ? F.All : F.MVP | F.BulkMemory | F.SignExt | F.ReferenceTypes | F.MutableGlobals);
    return module.emitBinary();
  } finally {
    binaryen.setDebugInfo(false);
    module.dispose();
  }
}

const nops = (n: number) => Array.from({ length: n }, () => '(nop)').join(' ');

describe('fuel', () => {
  test('a function pays one unit per instruction on entry; a loop pays its body on every iteration', async () => {
    const m = await metered(`(module (memory (export "memory") 1)
      (func (export "short") ${nops(2)})
      (func (export "long") ${nops(102)})
      (func (export "loop") (param $n i32)
        (loop $again ${nops(10)}
          (local.set $n (i32.sub (local.get $n) (i32.const 1)))
          (br_if $again (local.get $n))))
      (func (export "nested") (param $n i32) (local $j i32)
        (loop $outer
          (local.set $j (i32.const 3))
          (loop $inner (local.set $j (i32.sub (local.get $j) (i32.const 1))) (br_if $inner (local.get $j)))
          (local.set $n (i32.sub (local.get $n) (i32.const 1)))
          (br_if $outer (local.get $n)))))`);
    assert.equal(spent(m, 'long') - spent(m, 'short'), 100);
    const once = spent(m, 'loop', 1);
    const perIteration = spent(m, 'loop', 2) - once;
    // The body: 10 nops and the decrement and branch (7 instructions: a block around them and the loop's body).
    assert.ok(perIteration > 10 && perIteration < 20, `${perIteration} units an iteration`);
    assert.equal(spent(m, 'loop', 101) - once, 100 * perIteration);
    // The inner loop is charged per its own iterations, inside every outer one.
    const nested = spent(m, 'nested', 2) - spent(m, 'nested', 1);
    const inner = spent(m, 'nested', 1);
    assert.ok(nested > 3 * 4 && nested < inner, `outer iteration ${nested}, first call ${inner}`);
  });

  test('running out asks the host for a check and refills the tank, at zero and not before', async () => {
    const m = await metered(`(module (memory (export "memory") 1) (func (export "f") ${nops(20)}))`);
    const cost = spent(m, 'f');
    m.fuel.value = cost + 1;
    m.exports.f!();
    assert.equal(m.checks, 0);
    assert.equal(m.fuel.value, 1);
    m.fuel.value = cost;
    m.exports.f!();
    assert.equal(m.checks, 1);
    assert.equal(m.fuel.value, FIRST_FUEL);
    m.fuel.value = 1;
    m.exports.f!();
    assert.equal(m.checks, 2);
  });

  test('the tank starts with FIRST_FUEL and is exported for the host to refill', async () => {
    const m = await metered(`(module (memory (export "memory") 1) (func (export "f")))`);
    assert.equal(m.fuel.value, FIRST_FUEL);
    m.fuel.value = 7;
    assert.equal(m.fuel.value, 7);
  });
});

describe('what the meter leaves of a module', () => {
  test('its own imports and exports, the fuel export, and no import it does not use', async () => {
    const bytes = await instrumentForBudget(await wat(`(module
      (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
      (memory (export "memory") 1)
      (func (export "f") (result i64) (call $alloc (i64.const 8))))`, 'host'));
    const module = new WebAssembly.Module(bytes as BufferSource);
    const imports = WebAssembly.Module.imports(module).map((i) => `${i.module} ${i.name} ${i.kind}`);
    // No memory.grow in the module: memory_grow is not imported (nor are the bulk memory helpers kept).
    assert.deepEqual(imports.sort(), [`${INTERNAL_MODULE} ${BUDGET_CHECK_IMPORT} function`, 'extism:host/env alloc function'].sort());
    assert.deepEqual(WebAssembly.Module.exports(module).map((e) => `${e.name} ${e.kind}`).sort(), [`${FUEL_EXPORT} global`, 'f function', 'memory memory'].sort());
  });

  // Under Deno, process.memoryUsage().external grew 56 MiB over 30 modules with every module freed: it cannot tell
  // a kept module from garbage there, so this runs under Node.
  const denoCannotTell = isDeno ? "Deno's external memory figure does not show binaryen's heap apart from garbage" : false;
  test('binaryen frees each module it meters: its memory does not grow by module after module', { skip: denoCannotTell }, async () => {
    // binaryen keeps a module in its own WebAssembly memory until disposed of, and that memory never shrinks: a
    // gateway loads modules for as long as it runs. A 2 MiB data segment makes each module's copy plain to see.
    const bytes = await wat(`(module (memory (export "memory") 40) (data (i32.const 0) "${'a'.repeat(2 << 20)}"))`, 'host');
    // The first modules take binaryen's memory to the size one module needs (it grows in steps and keeps them): only
    // after them does growth mean modules kept. Kept, 30 modules of 2 MiB take about 74 MiB.
    // The metered copies handed back are garbage the collector frees: measured after a full collection each time.
    const external = () => {
      (globalThis as { gc?: () => void }).gc?.();
      return process.memoryUsage().external;
    };
    // Kept, each batch of 30 would take about 74 MiB more, 220 MiB over three; freed, binaryen's memory may still step
    // up now and then (steps of 26 and 28 MiB were seen, two of them in one CI run): under half of the kept growth.
    for (let i = 0; i < 30; i++) await instrumentForBudget(bytes);
    const grown: number[] = [];
    for (let batch = 0; batch < 3; batch++) {
      const before = external();
      for (let i = 0; i < 30; i++) await instrumentForBudget(bytes);
      grown.push((external() - before) / 2 ** 20);
    }
    const total = grown.reduce((a, b) => a + b, 0);
    assert.ok(
      total < 110,
      `binaryen's memory grew by ${grown.map((g) => g.toFixed(1)).join(', ')} MiB over three batches of 30 modules of 2 MiB`,
    );
  });
});

describe('every instruction the meter accepts', () => {
  // The walk finds the instructions of a function through binaryen's accessors, kind by kind. An operand it does not
  // descend into is code nobody pays for, and a loop there would run unmetered: so each operand of each kind below is
  // padded with a block of PAD nops, one at a time, and the function must cost that much more than without it.
  const PAD = 50;
  const pad = (type: string, expr: string) => `(block${type === '' ? '' : ` (result ${type})`} ${nops(PAD)} ${expr})`;
  const v128 = '(v128.const i32x4 0 0 0 0)';
  const i32 = (n = 0) => `(i32.const ${n})`;
  const fnull = '(ref.null func)';
  /** Each kind: its operands (type and plain expression) and the instruction made of them, as a statement. */
  const kinds: { kind: string; operands: [string, string][]; use: (o: string[]) => string; result?: string }[] = [
    { kind: 'if', operands: [['i32', i32(1)], ['i32', i32(2)], ['i32', i32(3)]], use: ([c, t, f]) => `(drop (if (result i32) ${c} (then ${t}) (else ${f})))` },
    { kind: 'br_if', operands: [['i32', i32(1)], ['i32', i32(0)]], use: ([v, c]) => `(drop (block $b (result i32) (br_if $b ${v} ${c})))` },
    { kind: 'br_table', operands: [['i32', i32(1)], ['i32', i32(0)]], use: ([v, c]) => `(drop (block $b (result i32) (br_table $b ${v} ${c})))` },
    { kind: 'call', operands: [['i32', i32()], ['i32', i32()]], use: ([a, b]) => `(call $two ${a} ${b})` },
    { kind: 'call_indirect', operands: [['i32', i32()], ['i32', i32()]], use: ([a, t]) => `(call_indirect (type $one) ${a} ${t})` },
    { kind: 'local.set', operands: [['i32', i32()]], use: ([v]) => `(local.set $l ${v})` },
    { kind: 'global.set', operands: [['i32', i32()]], use: ([v]) => `(global.set $g ${v})` },
    { kind: 'load', operands: [['i32', i32()]], use: ([p]) => `(drop (i32.load ${p}))` },
    { kind: 'store', operands: [['i32', i32()], ['i32', i32()]], use: ([p, v]) => `(i32.store ${p} ${v})` },
    { kind: 'unary', operands: [['i32', i32()]], use: ([v]) => `(drop (i32.eqz ${v}))` },
    { kind: 'binary', operands: [['i32', i32()], ['i32', i32()]], use: ([l, r]) => `(drop (i32.add ${l} ${r}))` },
    { kind: 'select', operands: [['i32', i32()], ['i32', i32()], ['i32', i32()]], use: ([t, f, c]) => `(drop (select ${t} ${f} ${c}))` },
    { kind: 'drop', operands: [['i32', i32()]], use: ([v]) => `(drop ${v})` },
    { kind: 'return', operands: [['i32', i32()]], use: ([v]) => `(return ${v})`, result: 'i32' },
    { kind: 'memory.grow', operands: [['i32', i32()]], use: ([d]) => `(drop (memory.grow ${d}))` },
    { kind: 'memory.init', operands: [['i32', i32()], ['i32', i32()], ['i32', i32()]], use: ([d, o, n]) => `(memory.init 0 ${d} ${o} ${n})` },
    { kind: 'memory.copy', operands: [['i32', i32()], ['i32', i32()], ['i32', i32()]], use: ([d, s, n]) => `(memory.copy ${d} ${s} ${n})` },
    { kind: 'memory.fill', operands: [['i32', i32()], ['i32', i32()], ['i32', i32()]], use: ([d, v, n]) => `(memory.fill ${d} ${v} ${n})` },
    { kind: 'extract_lane', operands: [['v128', v128]], use: ([v]) => `(drop (i32x4.extract_lane 0 ${v}))` },
    { kind: 'replace_lane', operands: [['v128', v128], ['i32', i32()]], use: ([v, x]) => `(drop (i32x4.replace_lane 0 ${v} ${x}))` },
    { kind: 'shuffle', operands: [['v128', v128], ['v128', v128]], use: ([l, r]) => `(drop (i8x16.shuffle 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 ${l} ${r}))` },
    { kind: 'bitselect', operands: [['v128', v128], ['v128', v128], ['v128', v128]], use: ([a, b, c]) => `(drop (v128.bitselect ${a} ${b} ${c}))` },
    { kind: 'shift', operands: [['v128', v128], ['i32', i32()]], use: ([v, n]) => `(drop (i32x4.shl ${v} ${n}))` },
    { kind: 'load_splat', operands: [['i32', i32()]], use: ([p]) => `(drop (v128.load32_splat ${p}))` },
    { kind: 'load_lane', operands: [['i32', i32()], ['v128', v128]], use: ([p, v]) => `(drop (v128.load32_lane 0 ${p} ${v}))` },
    { kind: 'ref.is_null', operands: [['funcref', fnull]], use: ([v]) => `(drop (ref.is_null ${v}))` },
    { kind: 'table.get', operands: [['i32', i32()]], use: ([i]) => `(drop (table.get $t ${i}))` },
    { kind: 'table.set', operands: [['i32', i32()], ['funcref', fnull]], use: ([i, v]) => `(table.set $t ${i} ${v})` },
    { kind: 'table.grow', operands: [['funcref', fnull], ['i32', i32()]], use: ([v, d]) => `(drop (table.grow $t ${v} ${d}))` },
    { kind: 'tuple.make', operands: [['i32', i32(1)], ['i32', i32(2)]], use: ([a, b]) => `(drop (tuple.extract 2 1 (tuple.make 2 ${a} ${b})))` },
    { kind: 'tuple.extract', operands: [['i32 i32', '(call $pair)']], use: ([t]) => `(drop (tuple.extract 2 0 ${t}))` },
  ];

  test('every operand of every kind of instruction is walked: what it holds is paid for', async () => {
    const functions: string[] = [];
    for (const { kind, operands, use, result } of kinds) {
      const signature = `${result ? `(result ${result}) ` : ''}(local $l i32)`;
      const tail = result ? ` ${i32()}` : '';
      functions.push(`(func (export "${kind}") ${signature} ${use(operands.map(([, e]) => e))}${tail})`);
      operands.forEach(([type], i) => {
        const padded = operands.map(([t, e], j) => (j === i ? pad(t, e) : e));
        functions.push(`(func (export "${kind}/${i}") ${signature} ${use(padded)}${tail})`);
      });
    }
    const m = await metered(`(module (memory (export "memory") 1) (data (i32.const 0) "x")
      (type $one (func (param i32)))
      (table $t 1 funcref) (elem (table $t) (i32.const 0) func $sink)
      (global $g (mut i32) (i32.const 0))
      (func $sink (param i32))
      (func $two (param i32 i32))
      (func $pair (result i32 i32) (tuple.make 2 (i32.const 1) (i32.const 2)))
      ${functions.join('\n')})`);
    /** What a call costs on entry, whether or not the instruction then traps (memory.init from a dropped segment). */
    const entry = (name: string) => {
      m.fuel.value = 1 << 30;
      try {
        m.exports[name]!();
      } catch (err) {
        assert.ok(err instanceof WebAssembly.RuntimeError, `${name}: ${err}`);
      }
      return (1 << 30) - (m.fuel.value as number);
    };
    const unpaid: string[] = [];
    for (const { kind, operands } of kinds) {
      const plain = entry(kind);
      operands.forEach((_, i) => {
        const more = entry(`${kind}/${i}`) - plain;
        // The block and its nops; how binaryen reads the block back may add or fold one around it.
        if (more < PAD || more > PAD + 3) unpaid.push(`${kind} operand ${i}: ${more} units for ${PAD + 1} instructions`);
      });
    }
    assert.deepEqual(unpaid, []);
  });

  test('the instructions without operands are accepted and paid for', async () => {
    const leaves = ['(nop)', '(drop (i32.const 1))', '(drop (local.get $l))', '(drop (global.get $g))', '(drop (memory.size))', '(unreachable)',
      '(drop (ref.null func))', '(drop (ref.func $f))', '(data.drop 0)', '(drop (table.size $t))'];
    const m = await metered(`(module (memory (export "memory") 1) (data (i32.const 0) "x") (table $t 1 funcref)
      (elem declare func $f) (global $g i32 (i32.const 0)) (func $f)
      ${leaves.map((leaf, i) => `(func (export "f${i}") (local $l i32) ${leaf})`).join('\n')})`);
    leaves.forEach((leaf, i) => {
      m.fuel.value = 1 << 30;
      try {
        m.exports[`f${i}`]!();
      } catch (err) {
        assert.ok(leaf === '(unreachable)' && err instanceof WebAssembly.RuntimeError, `${leaf}: ${err}`);
      }
      assert.ok((1 << 30) - (m.fuel.value as number) >= 1, leaf);
    });
  });
});

describe('bulk memory', () => {
  const bulk = `(module (memory (export "memory") 4)
    (func (export "fill") (param $at i32) (param $value i32) (param $n i32) (memory.fill (local.get $at) (local.get $value) (local.get $n)))
    (func (export "copy") (param $to i32) (param $from i32) (param $n i32) (memory.copy (local.get $to) (local.get $from) (local.get $n))))`;

  test('fill and copy pay one unit per 16 bytes of their size', async () => {
    const m = await metered(bulk);
    for (const name of ['fill', 'copy']) {
      const base = spent(m, name, 0, 0, 0);
      assert.equal(spent(m, name, 0, 0, 4096) - base, 4096 / BYTES_PER_UNIT, name);
      assert.equal(spent(m, name, 0, 0, 3 * BULK_CHUNK_BYTES + 32) - base, (3 * BULK_CHUNK_BYTES + 32) / BYTES_PER_UNIT + 3 * (spent(m, name, 0, 0, 16) - base - 1), name);
    }
  });

  test('memory.init pays for its size before it runs, even when it then traps', async () => {
    // Only active segments can be metered (a passive one is refused, above); an active segment is dropped once
    // placed, so memory.init from it traps past 0 bytes: after having paid, as the size is charged before it runs.
    const m = await metered(`(module (memory (export "memory") 1) (data (i32.const 0) "hello")
      (func (export "init") (param $n i32) (memory.init 0 (i32.const 0) (i32.const 0) (local.get $n))))`);
    const base = spent(m, 'init', 0);
    m.fuel.value = 1 << 30;
    assert.throws(() => m.exports.init!(4096), WebAssembly.RuntimeError);
    assert.equal((1 << 30) - (m.fuel.value as number) - base, 4096 / BYTES_PER_UNIT);
  });

  test('a fill or copy of several chunks is checked between chunks', async () => {
    const m = await metered(bulk);
    // Each 64 KiB chunk costs 4,096 units, the whole tank a refill gives: every chunk runs it out.
    m.fuel.value = FIRST_FUEL;
    m.exports.fill!(0, 1, 4 * BULK_CHUNK_BYTES);
    assert.ok(m.checks >= 4, `${m.checks} checks in a fill of four chunks`);
    const before = m.checks;
    m.fuel.value = FIRST_FUEL;
    m.exports.copy!(BULK_CHUNK_BYTES, 0, 3 * BULK_CHUNK_BYTES);
    assert.ok(m.checks - before >= 3, `${m.checks - before} checks in a copy of three chunks`);
  });

  test('chunked copies keep their meaning: overlapping either way, and a range outside the memory traps before writing', async () => {
    const m = await metered(bulk);
    const mem = () => new Uint8Array(m.memory.buffer);
    const size = 3 * BULK_CHUNK_BYTES + 100;
    const pattern = (i: number) => (i * 7 + 3) & 0xff;
    for (let i = 0; i < size; i++) mem()[i] = pattern(i);
    m.fuel.value = 1 << 30;
    m.exports.copy!(100, 0, size);
    for (const i of [0, 1, BULK_CHUNK_BYTES, 2 * BULK_CHUNK_BYTES + 5, size - 1]) assert.equal(mem()[100 + i], pattern(i), `up, byte ${i}`);
    m.exports.copy!(0, 100, size);
    for (const i of [0, 1, BULK_CHUNK_BYTES, 2 * BULK_CHUNK_BYTES + 5, size - 1]) assert.equal(mem()[i], pattern(i), `down, byte ${i}`);
    // The same within one chunk, which one instruction does.
    m.exports.copy!(10, 0, 100);
    for (let i = 0; i < 100; i++) assert.equal(mem()[10 + i], pattern(i), `one chunk up, byte ${i}`);
    m.exports.copy!(0, 10, 100);
    for (let i = 0; i < 100; i++) assert.equal(mem()[i], pattern(i), `one chunk down, byte ${i}`);
    const end = 4 * 65536;
    mem().fill(9, end - 16);
    assert.throws(() => m.exports.fill!(end - 8, 0, 9), WebAssembly.RuntimeError);
    assert.deepEqual([...mem().subarray(end - 8)], Array(8).fill(9));
    assert.throws(() => m.exports.copy!(end - 8, 0, 9), WebAssembly.RuntimeError);
    assert.throws(() => m.exports.copy!(0, end - 8, 9), WebAssembly.RuntimeError);
    assert.deepEqual([...mem().subarray(0, 4)], [pattern(0), pattern(1), pattern(2), pattern(3)]);
    m.exports.fill!(end - 8, 0, 8);
    assert.deepEqual([...mem().subarray(end - 8)], Array(8).fill(0));
    m.exports.copy!(end - 8, 0, 8);
    assert.equal(mem()[end - 1], pattern(7));
  });
});

describe('memory growth and what is refused', () => {
  test('memory.grow asks the host with its delta and grows by what the host answers', async () => {
    const m = await metered(`(module (memory (export "memory") 1 10) (func (export "grow") (param $n i32) (result i32) (memory.grow (local.get $n))))`);
    assert.equal(m.exports.grow!(2), 1);
    assert.deepEqual(m.grows, [2]);
    m.growAnswer = () => -1;
    assert.equal(m.exports.grow!(1), -1);
    assert.equal(m.memory.buffer.byteLength, 3 * 65536);
  });

  test('names the meter adds, tables past 65,536 entries, and uncharged table instructions are refused', async () => {
    const refused: [string, RegExp][] = [
      ['(module (func $gatehouse$budget_check))', /defines a function named gatehouse\$budget_check/],
      ['(module (func $gatehouse$memory_grow))', /defines a function named gatehouse\$memory_grow/],
      ['(module (func $gatehouse$charge_size))', /defines a function named gatehouse\$charge_size/],
      ['(module (func $__memory_copy))', /defines a function named __memory_copy/],
      ['(module (func $__memory_fill))', /defines a function named __memory_fill/],
      ['(module (global $gatehouse$fuel i32 (i32.const 0)))', /defines a global named gatehouse\$fuel/],
      ['(module (global $g i32 (i32.const 0)) (export "gatehouse$fuel" (global $g)))', /exports gatehouse\$fuel/],
      [`(module (table 40000 funcref) (table 25537 funcref))`, /tables start with 65537 elements, more than the 65536 allowed/],
    ];
    for (const [text, message] of refused) await assert.rejects(instrumentForBudget(await binary(text)), message, text);
    // binaryen's lowering of bulk memory gives up on these with an exception that says nothing: the refusal says what.
    const unsupported = /cannot rewrite this module's bulk memory instructions: passive data segments \(memory\.init, data\.drop\) and table\.fill, table\.copy, table\.init and elem\.drop are not supported/;
    const tableFill = '(module (table 1 funcref) (func (table.fill 0 (i32.const 0) (ref.null func) (i32.const 1))))';
    await assert.rejects(instrumentForBudget(await wat(tableFill, 'host')), unsupported);
    const passive = '(module (memory 1) (data $seg "hello") (func (memory.init $seg (i32.const 0) (i32.const 0) (i32.const 5)) (data.drop $seg)))';
    await assert.rejects(instrumentForBudget(await wat(passive, 'host')), unsupported);
    await assert.rejects(instrumentForBudget(await wat('(module (memory 1) (data $seg "hello"))', 'host')), unsupported);
    const elemDrop = '(module (table 1 funcref) (elem $e func $f) (func $f) (func (elem.drop $e)))';
    await assert.rejects(instrumentForBudget(await wat(elemDrop, 'host')), unsupported);
    await assert.rejects(instrumentForBudget(new Uint8Array([0, 0x61, 0x73, 0x6d, 9, 0, 0, 0])), {
      message: 'binaryen could not read the module (error in parsing wasm binary)',
    });
    // Proposals past the supported set: each could hide work the meter does not see (a tail call leaves a function
    // without returning through it, an atomic wait blocks).
    const outside = /the module uses a WebAssembly feature outside the supported set \(sign-extension, mutable globals, non-trapping float-to-int, bulk memory, SIMD, reference types, multi-value\)/;
    await assert.rejects(instrumentForBudget(await binary('(module (func $f) (func (return_call $f)))', 'all')), outside);
    await assert.rejects(instrumentForBudget(await binary('(module (memory 1 1 shared) (func (drop (i32.atomic.load (i32.const 0)))))', 'all')), outside);
  });

  test('tables may grow to 65,536 entries in all, shared among them', async () => {
    const m = await metered(`(module (memory (export "memory") 1)
      (table $a 10 funcref) (table $b 6 funcref)
      (func (export "growA") (param $n i32) (result i32) (table.grow $a (ref.null func) (local.get $n)))
      (func (export "growB") (param $n i32) (result i32) (table.grow $b (ref.null func) (local.get $n))))`);
    const share = Math.floor((MAX_TABLE_ENTRIES - 16) / 2);
    assert.equal(m.exports.growA!(share + 1), -1);
    assert.equal(m.exports.growA!(share), 10);
    assert.equal(m.exports.growB!(share + 1), -1);
    assert.equal(m.exports.growB!(share), 6);
    // A declared maximum below the share holds; one above it is lowered to the share.
    const declared = await metered(`(module (memory (export "memory") 1)
      (table $small 10 12 funcref) (table $large 10 100000 funcref)
      (func (export "growSmall") (param $n i32) (result i32) (table.grow $small (ref.null func) (local.get $n)))
      (func (export "growLarge") (param $n i32) (result i32) (table.grow $large (ref.null func) (local.get $n))))`);
    assert.equal(declared.exports.growSmall!(3), -1);
    assert.equal(declared.exports.growSmall!(2), 10);
    const largeShare = Math.floor((MAX_TABLE_ENTRIES - 20) / 2);
    assert.equal(declared.exports.growLarge!(largeShare + 1), -1);
    assert.equal(declared.exports.growLarge!(largeShare), 10);
    const exact = await metered(`(module (memory (export "memory") 1) (table $a 65536 funcref)
      (func (export "grow") (result i32) (table.grow $a (ref.null func) (i32.const 1))))`);
    assert.equal(exact.exports.grow!(), -1);
  });
});
