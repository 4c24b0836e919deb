// The functions of gatehouse:host/v1 and the limits of a call as one policy instance applies them
// (runtime/policy-host/instance.ts), from inside hand-written modules (abi/policy-abi.md, sections 3 to 6): what each
// function reads and writes, every pointer range it checks, what it costs the output cap and the log budget, memory
// growth against the cap, and the failures that keep or recycle the instance.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { EffectKind, Field, MAX_EFFECTS_PER_CALL, Status } from '../abi/index.ts';
import { createSign, generateKeyPairSync } from 'node:crypto';
import type { MetricEmission } from '../runtime/telemetry/custom-metrics.ts';
import { assertAllHeld, bindProbe, budgetCheckCounter, repeated, type Probe, type ProbeOptions } from './support/kernel-probes.ts';
import { layout, SCRATCH } from './support/hostile-modules.ts';
import { newHost, policyFailure } from './support/policies.ts';

const t = newHost();

async function allHeld(name: string, probe: Probe, options?: ProbeOptions, request?: Parameters<typeof makeRequest>[0]) {
  const binding = await bindProbe(t, name, probe, options);
  assertAllHeld(await binding.run(request), binding.all);
  return binding.exchange!;
}

async function failure(name: string, probe: Probe, options?: ProbeOptions) {
  const binding = await bindProbe(t, name, probe, options);
  return policyFailure(binding.run());
}

const makeRequest = (r: { headers?: Record<string, string>; query?: string } = {}) => r;

const is = (expr: string, value: number) => `(i32.eq ${expr} (i32.const ${value}))`;
const byteAt = (addr: number, value: number) => is(`(i32.load8_u (i32.const ${addr}))`, value);

/** The probe reports with respond: 32 bytes of output (a write's overhead) in every call. */
const REPORT_OUTPUT = 32;

describe('reading: get and list', () => {
  test('get writes a value that fits and gives its length either way; NOT_FOUND; names past 8 KiB are not read', async () => {
    const [name, utf, none] = layout(['x-name', 'x-utf', 'x-none']);
    const get = (n: { ptr: number; len: number }, buf: number, cap: number) =>
      `(call $get (i32.const ${Field.REQUEST_HEADER}) (i32.const ${n.ptr}) (i32.const ${n.len}) (i32.const ${buf}) (i32.const ${cap}))`;
    await allHeld(
      'get',
      {
        data: ['x-name', 'x-utf', 'x-none'],
        steps: (check) => `
          ${check(`(i32.and ${is(get(name!, SCRATCH, 7), 7)} ${byteAt(SCRATCH + 6, '1'.charCodeAt(0))})`)}
          ${check(`(i32.and ${is(get(name!, SCRATCH + 100, 6), 7)} ${byteAt(SCRATCH + 100, 0)})`)}
          ${check(`(i32.and ${is(get(utf!, SCRATCH + 200, 11), 11)} ${byteAt(SCRATCH + 202, 0xa9)})`)}
          ${check(`(i32.and ${is(get(utf!, SCRATCH + 300, 10), 11)} (i32.and ${byteAt(SCRATCH + 301, 0)} ${byteAt(SCRATCH + 310, 0)}))`)}
          ${check(is(get(none!, SCRATCH, 64), Status.NOT_FOUND))}
          ${check(is(get({ ptr: 0, len: 8193 }, SCRATCH, 64), Status.INVALID_VALUE))}
          ${check(is(get({ ptr: 0, len: 8192 }, SCRATCH, 64), Status.NOT_FOUND))}
          ${check(is(`(call $get (i32.const 99) (i32.const 0) (i32.const 0) (i32.const ${SCRATCH}) (i32.const 8))`, Status.UNKNOWN_FIELD))}`,
      },
      {},
      { headers: { 'x-name': 'value-1', 'x-utf': 'h\u00e9llo \u{1F600}' } },
    );
  });

  /**
   * Whether get, given a buffer of 0 bytes (only the length is asked for), measures `value` as `bytes`, the value held
   * as a request header or as a configuration string.
   */
  async function measures(value: string, bytes: number, heldAs: 'header' | 'config'): Promise<boolean> {
    const [field, name] = heldAs === 'header' ? [Field.REQUEST_HEADER, 'x-v'] : [Field.CONFIG, 'v'];
    const [placed] = layout([name]);
    const binding = await bindProbe(t, `utf8-${heldAs}`, {
      data: [name],
      steps: (check) => check(is(`(call $get (i32.const ${field}) (i32.const ${placed!.ptr}) (i32.const ${name.length}) (i32.const 0) (i32.const 0))`, bytes)),
    }, heldAs === 'config' ? { config: { v: value } } : {});
    return (await binding.run(heldAs === 'header' ? { headers: { 'x-v': value } } : {})) === binding.all;
  }

  test('get measures a value in UTF-8 as it would be written: two, three and four bytes, a lone surrogate as three', async () => {
    const cases: [string, number][] = [
      ['\u00e9', 2],
      ['\u0800', 3],
      ['\u{1F600}', 4],
      ['a\u{1F600}b', 6],
      ['\ud800x', 4],
      ['\ud800', 3],
      ['\ud800\ud800', 6],
      ['\u07ff', 2],
    ];
    for (const [value, bytes] of cases) assert.ok(await measures(value, bytes, 'header'), JSON.stringify(value));
  });

  test('get measures what the host holds as it is: lone surrogates (configuration strings can hold them) as three bytes', async () => {
    // Header values reach the host as text already made valid; configuration strings are JSON's and can hold lone
    // surrogates, which TextEncoder writes as U+FFFD.
    const cases: [string, number][] = [
      ['\u007f', 1],
      ['\u0080', 2],
      ['\u07ff', 2],
      ['\u0800', 3],
      ['\ud7ff\udc00', 6],
      ['\ud800\udc00', 4],
      ['\udbff\udfff', 4],
      ['\udc00\udc00', 6],
      ['\ud800', 3],
      ['\ud800x', 4],
      ['\ud800\ue000', 6],
    ];
    const wrong: string[] = [];
    for (const [value, bytes] of cases) {
      if (!(await measures(value, bytes, 'config'))) wrong.push(`${JSON.stringify(value)}: not ${bytes} bytes`);
      assert.equal(new TextEncoder().encode(value).byteLength, bytes, `the case itself: ${JSON.stringify(value)}`);
    }
    assert.deepEqual(wrong, []);
  });

  test('a value is written only when it fits, exactly as UTF-8, and nothing past it', async () => {
    const [key, bodyText] = layout(['v', 'body!']);
    const BUF = 16384;
    const fill = `(memory.fill (i32.const ${BUF}) (i32.const 0xaa) (i32.const 16))`;
    const getConfig = (cap: number) => `(call $get ${[Field.CONFIG, key!.ptr, 1, BUF, cap].map((a) => `(i32.const ${a})`).join(' ')})`;
    const bytes = (...values: number[]) => `(i32.and ${values.map((v, i) => byteAt(BUF + i, v)).reduce((a, b) => `(i32.and ${a} ${b})`)} (i32.const 1))`;
    const config = async (value: string, steps: (check: (e: string) => string) => string) => {
      const binding = await bindProbe(t, 'write-fits', { data: ['v', 'body!'], steps: (check) => `${fill} ${steps(check)}` }, { config: { v: value } });
      assert.equal(await binding.run(), binding.all, JSON.stringify(value));
    };
    await config('abc', (check) => `${check(is(getConfig(8), 3))} ${check(bytes(0x61, 0x62, 0x63, 0xaa))}`);
    await config('\u0080', (check) => `${check(is(getConfig(8), 2))} ${check(bytes(0xc2, 0x80, 0xaa))}`);
    await config('\u00e9a', (check) => `${check(is(getConfig(3), 3))} ${check(bytes(0xc3, 0xa9, 0x61, 0xaa))}`);
    await config('\u00e9a', (check) => `${check(is(getConfig(2), 3))} ${check(bytes(0xaa, 0xaa))}`);
    // A body (bytes): 5 do not fit in 4, and fit in 5 exactly.
    const body = (cap: number) => `(call $get ${[Field.RESPONSE_BODY, 0, 0, BUF, cap].map((a) => `(i32.const ${a})`).join(' ')})`;
    await allHeld('write-body-fits', {
      data: ['v', 'body!'],
      steps: (check) => `${fill}
        (drop (call $set ${[Field.RESPONSE_BODY, 0, 0, bodyText!.ptr, 5].map((a) => `(i32.const ${a})`).join(' ')}))
        ${check(is(body(4), 5))} ${check(bytes(0xaa))}
        ${check(is(body(5), 5))} ${check(bytes(0x62, 0x6f, 0x64, 0x79, 0x21, 0xaa))}`,
    });
  });

  test('variables take names up to 8 KiB, and no longer ones', async () => {
    const variable = (op: string, len: number) =>
      op === 'remove'
        ? `(call $remove (i32.const ${Field.VARIABLE}) (i32.const 0) (i32.const ${len}))`
        : `(call $set (i32.const ${Field.VARIABLE}) (i32.const 0) (i32.const ${len}) (i32.const 0) (i32.const 1))`;
    await allHeld('long-variable-names', {
      steps: (check) => `
        ${check(is(variable('set', 8192), Status.OK))}
        ${check(is(variable('set', 8193), Status.INVALID_VALUE))}
        ${check(is(variable('remove', 8192), Status.OK))}
        ${check(is(variable('remove', 8193), Status.INVALID_VALUE))}`,
    }, { limits: { outputBytes: 1 << 20 } });
  });

  test('WASI, when granted, is there from the start: random_get fills the buffer it is given', async () => {
    const BUF = 8192;
    await allHeld('wasi-random', {
      imports: '(import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))',
      steps: (check) => `
        ${check(is(`(call $random_get (i32.const ${BUF}) (i32.const 32))`, 0))}
        ${check(`(i64.ne (i64.or (i64.load (i32.const ${BUF})) (i64.load (i32.const ${BUF + 8}))) (i64.const 0))`)}`,
    }, { grants: { wasi: true } });
  });

  test('list writes the names NUL-terminated when they fit, and gives their length either way', async () => {
    await allHeld(
      'list',
      {
        steps: (check) => `
          ${check(is(`(call $list (i32.const ${Field.REQUEST_HEADER}) (i32.const ${SCRATCH}) (i32.const 8))`, 8))}
          ${check(`(i32.and ${byteAt(SCRATCH, 'x'.charCodeAt(0))} ${byteAt(SCRATCH + 3, 0)})`)}
          ${check(byteAt(SCRATCH + 7, 0))}
          ${check(is(`(call $list (i32.const ${Field.REQUEST_HEADER}) (i32.const ${SCRATCH + 100}) (i32.const 7))`, 8))}
          ${check(byteAt(SCRATCH + 100, 0))}
          ${check(is(`(call $list (i32.const 99) (i32.const ${SCRATCH}) (i32.const 8))`, Status.UNKNOWN_FIELD))}`,
      },
      {},
      { headers: { 'x-a': '1', 'x-b': '2' } },
    );
  });
});

describe('writing: set, add, remove, respond', () => {
  test('set and add write the decoded value; remove removes; a body is copied out of the module, not viewed', async () => {
    const long = '\u00e9'.repeat(40);
    const items = ['x-out', 'v\u00e9', long, 'x-gone', 'body!'];
    const [out, short, longValue, gone, body] = layout(items);
    const write = (op: string, field: number, n: { ptr: number; len: number }, v: { ptr: number; len: number }) =>
      `(call $${op} (i32.const ${field}) (i32.const ${n.ptr}) (i32.const ${n.len}) (i32.const ${v.ptr}) (i32.const ${v.len}))`;
    const exchange = await allHeld(
      'writes',
      {
        data: items,
        steps: (check) => `
          ${check(is(write('set', Field.RESPONSE_HEADER, out!, short!), Status.OK))}
          ${check(is(write('add', Field.RESPONSE_HEADER, out!, longValue!), Status.OK))}
          ${check(is(`(call $remove (i32.const ${Field.REQUEST_HEADER}) (i32.const ${gone!.ptr}) (i32.const ${gone!.len}))`, Status.OK))}
          ${check(is(write('set', Field.RESPONSE_BODY, out!, body!), Status.OK))}
          (i32.store8 (i32.const ${body!.ptr}) (i32.const 66))
          ${check(is(write('set', Field.RESPONSE_HEADER, { ptr: 0, len: 8193 }, short!), Status.INVALID_VALUE))}
          ${check(is(`(call $remove (i32.const ${Field.REQUEST_HEADER}) (i32.const 0) (i32.const 8193))`, Status.INVALID_VALUE))}
          ${check(is('(call $respond (i32.const 100))', Status.INVALID_VALUE))}`,
      },
      { limits: { outputBytes: 1024 * 1024 } },
      { headers: { 'x-gone': '1', 'x-kept': '2' } },
    );
    assert.deepEqual(exchange.response.headers.get('x-out'), ['v\u00e9', long]);
    assert.deepEqual([...exchange.request.headers.keys()], ['x-kept']);
    assert.equal(new TextDecoder().decode(exchange.response.body as Uint8Array), 'body!');
  });

  test('header names from a hand-written module: any case is keyed lower; not a token (a space, U+212A, empty) is refused and writes nothing', async () => {
    // U+212A (the Kelvin sign, bytes E2 84 AA) lower-cases to an ASCII "k"; it is still no token.
    const items = ['X-Mixed-Case', 'x-mixed-case', 'X-GONE', 'x bad', '\u212a', 'X-\u212a', 'v'];
    const [mixed, lower, gone, spaced, kelvin, kelvinName, value] = layout(items);
    const write = (op: string, n: { ptr: number; len: number }) =>
      `(call $${op} (i32.const ${Field.REQUEST_HEADER}) (i32.const ${n.ptr}) (i32.const ${n.len}) (i32.const ${value!.ptr}) (i32.const ${value!.len}))`;
    const remove = (n: { ptr: number; len: number }) => `(call $remove (i32.const ${Field.REQUEST_HEADER}) (i32.const ${n.ptr}) (i32.const ${n.len}))`;
    const get = (n: { ptr: number; len: number }) =>
      `(call $get (i32.const ${Field.REQUEST_HEADER}) (i32.const ${n.ptr}) (i32.const ${n.len}) (i32.const ${SCRATCH}) (i32.const 16))`;
    const exchange = await allHeld(
      'header-names',
      {
        data: items,
        steps: (check) => `
          ${check(is(write('set', mixed!), Status.OK))}
          ${check(is(write('add', lower!), Status.OK))}
          ${check(is(get(lower!), 4))}
          ${check(is(remove(gone!), Status.OK))}
          ${check(is(`(i32.add ${write('set', spaced!)} ${write('set', kelvin!)})`, 2 * Status.INVALID_VALUE))}
          ${check(is(write('add', kelvinName!), Status.INVALID_VALUE))}
          ${check(is(write('set', { ptr: value!.ptr, len: 0 }), Status.INVALID_VALUE))}
          ${check(is(remove(kelvin!), Status.INVALID_VALUE))}`,
      },
      {},
      { headers: { 'x-gone': '1', 'x-kept': '2', k: '3' } },
    );
    assert.deepEqual(exchange.request.headers.get('x-mixed-case'), ['v', 'v']);
    assert.deepEqual([...exchange.request.headers.keys()].sort(), ['k', 'x-kept', 'x-mixed-case']);
    assert.deepEqual(exchange.request.headers.get('k'), ['3'], 'a name that lower-cases to "k" did not reach header k');
  });

  test('each write costs the output cap its bytes and 32 more; effects, logs, metrics, signatures and failures their bytes', async () => {
    const items = ['x-o', 'abcd', 'hello', 'm', 'a\0b\0', 'ES256', '{}', 'dat', 'sig'];
    const [name, value, text, metric, dims, alg, key, data, sig] = layout(items);
    const args = (...ranges: { ptr: number; len: number }[]) => ranges.map((r) => `(i32.const ${r.ptr}) (i32.const ${r.len})`).join(' ');
    const cases: [string, string, number][] = [
      ['set', `(drop (call $set (i32.const ${Field.RESPONSE_HEADER}) ${args(name!, value!)}))`, 3 + 4 + 32],
      ['add', `(drop (call $add (i32.const ${Field.RESPONSE_HEADER}) ${args(name!, value!)}))`, 3 + 4 + 32],
      ['remove', `(drop (call $remove (i32.const ${Field.RESPONSE_HEADER}) ${args(name!)}))`, 3 + 32],
      ['respond', '(drop (call $respond (i32.const 204)))', 32],
      ['effect', `(drop (call $effect (i32.const 9) ${args(text!)} (i32.const ${SCRATCH}) (i32.const 64)))`, 5],
      ['log', `(call $log (i32.const 2) ${args(text!)})`, 5],
      ['metric', `(drop (call $metric (i32.const ${metric!.ptr}) (i32.const 1) (f64.const 1) ${args(dims!)}))`, 1 + 4 + 32],
      ['verify', `(drop (call $verify ${args(alg!, key!, data!, sig!)}))`, 5 + 2 + 3 + 3],
    ];
    for (const [what, step, cost] of cases) {
      const probe: Probe = { data: items, steps: () => step };
      await allHeld(`cost-${what}`, probe, { limits: { outputBytes: cost + REPORT_OUTPUT } }).catch((err: unknown) => assert.fail(`${what} at its cost: ${String(err)}`));
      const err = await failure(`over-${what}`, probe, { limits: { outputBytes: cost + REPORT_OUTPUT - 1 } });
      assert.equal(err.reason, 'output-cap', what);
      assert.match(err.message, new RegExp(`the call handed the host more than its output cap of ${cost + REPORT_OUTPUT - 1} bytes`), what);
    }
    const failing: Probe = { data: items, steps: () => `(call $fail ${args(text!)})` };
    // fail ends the call with the report already counted.
    assert.equal((await failure('cost-fail', failing, { limits: { outputBytes: 5 + REPORT_OUTPUT } })).reason, 'error');
    assert.equal((await failure('over-fail', failing, { limits: { outputBytes: 4 + REPORT_OUTPUT } })).reason, 'output-cap');
  });
});

describe('logs', () => {
  test('log lines and bytes are budgeted per call; a line counts as it is written in JSON', async () => {
    // A quote and a backslash are two bytes in the log, a control character six, a space one: 2 + 2 + 6 + 1 + 6 = 17.
    const line = '"\\\n \u001f';
    const [l] = layout([line]);
    const logLine = `(call $log (i32.const 2) (i32.const ${l!.ptr}) (i32.const ${l!.len}))`;
    await allHeld('log-bytes', { data: [line], steps: () => logLine }, { limits: { logBytes: 17 } });
    assert.equal((await failure('log-bytes-over', { data: [line], steps: () => logLine }, { limits: { logBytes: 16 } })).reason, 'log-budget');
    await allHeld('log-lines', { data: [line], steps: () => `${logLine} ${logLine}` }, { limits: { logLines: 2 } });
    const over = await failure('log-lines-over', { data: [line], steps: () => `${logLine} ${logLine} ${logLine}` }, { limits: { logLines: 2 } });
    assert.equal(over.reason, 'log-budget');
    assert.match(over.message, /logged more than its budget of 2 lines or 16384 bytes/);
  });

  test('the level is the ABI number (unknown ones are info); trace lines, below the gateway level, are not counted', async () => {
    const before = t.logs.length;
    const [l] = layout(['line']);
    const logAt = (level: number) => `(call $log (i32.const ${level}) (i32.const ${l!.ptr}) (i32.const 4))`;
    await allHeld('log-level', { data: ['line'], steps: () => [0, 0, 1, 2, 3, 4, 9].map(logAt).join(' ') }, { limits: { logLines: 5 } });
    const levels = t.logs.slice(before).filter((r) => r.source === 'policy').map((r) => r.level);
    assert.deepEqual(levels, ['debug', 'info', 'warn', 'error', 'info']);
  });
});

describe('pointer ranges', () => {
  const END = 2 * 65536;
  const cases: [string, string][] = [
    ['get-buf-negative', `(call $get (i32.const 5) (i32.const 0) (i32.const 1) (i32.const -1) (i32.const 4))`],
    ['get-cap-negative', `(call $get (i32.const 5) (i32.const 0) (i32.const 1) (i32.const ${SCRATCH}) (i32.const -1))`],
    ['get-name-past', `(call $get (i32.const 5) (i32.const ${END - 1}) (i32.const 2) (i32.const ${SCRATCH}) (i32.const 4))`],
    ['get-name-negative', `(call $get (i32.const 5) (i32.const -1) (i32.const 1) (i32.const ${SCRATCH}) (i32.const 4))`],
    ['get-name-length-negative', `(call $get (i32.const 5) (i32.const 0) (i32.const -1) (i32.const ${SCRATCH}) (i32.const 4))`],
    ['get-buf-past', `(call $get (i32.const 5) (i32.const 0) (i32.const 1) (i32.const ${END - 3}) (i32.const 4))`],
    ['set-value-past', `(call $set (i32.const 9) (i32.const 0) (i32.const 1) (i32.const ${END - 1}) (i32.const 2))`],
    ['remove-past', `(call $remove (i32.const 9) (i32.const ${END}) (i32.const 1))`],
    ['list-past', `(call $list (i32.const 5) (i32.const ${END - 1}) (i32.const 2))`],
    ['effect-buf-past', `(call $effect (i32.const 1) (i32.const 0) (i32.const 1) (i32.const ${END - 1}) (i32.const 2))`],
    ['effect-request-past', `(call $effect (i32.const 1) (i32.const ${END - 1}) (i32.const 2) (i32.const 0) (i32.const 1))`],
    ['metric-name-past', `(call $metric (i32.const ${END - 1}) (i32.const 2) (f64.const 1) (i32.const 0) (i32.const 0))`],
    ['metric-dims-past', `(call $metric (i32.const 0) (i32.const 1) (f64.const 1) (i32.const ${END - 1}) (i32.const 2))`],
    ['verify-alg-past', `(call $verify (i32.const ${END - 1}) (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1))`],
    ['verify-key-past', `(call $verify (i32.const 0) (i32.const 1) (i32.const ${END - 1}) (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1))`],
    ['verify-data-past', `(call $verify (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1) (i32.const ${END - 1}) (i32.const 2) (i32.const 0) (i32.const 1))`],
    ['verify-sig-past', `(call $verify (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1) (i32.const ${END - 1}) (i32.const 2))`],
  ];
  const statements: [string, string][] = [
    ['log-past', `(call $log (i32.const 2) (i32.const ${END - 1}) (i32.const 2))`],
    ['fail-past', `(call $fail (i32.const ${END - 1}) (i32.const 2))`],
  ];

  test('a range reaching one byte past the memory, or negative, fails the call', async () => {
    for (const [name, step] of [...cases.map(([n, s]): [string, string] => [n, `(drop ${s})`]), ...statements]) {
      const err = await failure(name, { steps: () => step }, { grants: { counters: true } });
      assert.equal(err.reason, 'bad-argument', name);
      assert.match(err.message, /pointer range -?\d+\+-?\d+ is outside the module's memory/, name);
    }
  });

  test('ranges ending at the last byte of memory are read, and so is memory the module grew', async () => {
    await allHeld('range-end', {
      data: ['x-a'],
      steps: (check) => `
        ${check(is(`(call $get (i32.const 5) (i32.const ${END - 1}) (i32.const 1) (i32.const ${END - 4}) (i32.const 4))`, Status.NOT_FOUND))}
        ${check(is(`(call $set (i32.const 11) (i32.const ${END - 1}) (i32.const 1) (i32.const ${END - 2}) (i32.const 2))`, Status.OK))}
        ${check(is(`(call $list (i32.const 5) (i32.const ${END - 1}) (i32.const 1))`, 4))}
        ${check(is('(memory.grow (i32.const 1))', 2))}
        ${check(is(`(call $get (i32.const 5) (i32.const ${layout(['x-a'])[0]!.ptr}) (i32.const 3) (i32.const ${END + 10}) (i32.const 8))`, 1))}
        ${check(byteAt(END + 10, '1'.charCodeAt(0)))}`,
    }, {}, { headers: { 'x-a': '1' } });
  });

  test('names of four bytes or more are read at the last bytes of memory, and again once the module grew it', async () => {
    // The host compares such a name with the one it kept a word at a time (module-text.ts), through a view of the
    // memory that it must make again when the memory grows: x-ab is read before and after the growth.
    const xab = layout(['x-ab'])[0]!;
    const getXab = (buf: number) => `(call $get (i32.const 5) (i32.const ${xab.ptr}) (i32.const 4) (i32.const ${buf}) (i32.const 8))`;
    await allHeld('range-end-words', {
      data: ['x-ab'],
      steps: (check) => `
        ${check(is(`(call $get (i32.const 5) (i32.const ${END - 5}) (i32.const 5) (i32.const ${END - 16}) (i32.const 8))`, Status.NOT_FOUND))}
        ${check(is(getXab(END - 8), 1))}
        ${check(is('(memory.grow (i32.const 1))', 2))}
        ${check(is(getXab(END + 10), 1))}
        ${check(byteAt(END + 10, '2'.charCodeAt(0)))}`,
    }, {}, { headers: { 'x-ab': '2' } });
  });
});

/** `$same (a, b, len) -> 1 when the bytes at a and b are equal. */
const SAME = `
  (func $same (param $a i32) (param $b i32) (param $len i32) (result i32)
    (block $differ (loop $next
      (if (i32.eqz (local.get $len)) (then (return (i32.const 1))))
      (br_if $differ (i32.ne (i32.load8_u (local.get $a)) (i32.load8_u (local.get $b))))
      (local.set $a (i32.add (local.get $a) (i32.const 1)))
      (local.set $b (i32.add (local.get $b) (i32.const 1)))
      (local.set $len (i32.sub (local.get $len) (i32.const 1)))
      (br $next)))
    (i32.const 0))`;

describe('effects', () => {
  const counter = (key: string) => `{"key":"${key}","limit":100,"periodSeconds":60}`;
  const effectCall = (kind: number, r: { ptr: number; len: number }, buf = SCRATCH, cap = 256) =>
    `(call $effect (i32.const ${kind}) (i32.const ${r.ptr}) (i32.const ${r.len}) (i32.const ${buf}) (i32.const ${cap}))`;

  test('a counter effect completed in the call writes its result; the same request again reads that result', async () => {
    const [req, other] = layout([counter('same'), counter('other')]);
    await allHeld(
      'effect-counter',
      {
        data: [counter('same'), counter('other')],
        extra: SAME,
        steps: (check) => `
          (local.set $i ${effectCall(EffectKind.COUNTER, req!)})
          ${check('(i32.gt_s (local.get $i) (i32.const 10))')}
          ${check(byteAt(SCRATCH, '{'.charCodeAt(0)))}
          ${check(`(i32.eq ${effectCall(EffectKind.COUNTER, req!, SCRATCH + 1024)} (local.get $i))`)}
          ${check(`(call $same (i32.const ${SCRATCH}) (i32.const ${SCRATCH + 1024}) (local.get $i))`)}
          ${check(`(i32.gt_s ${effectCall(EffectKind.COUNTER, other!, SCRATCH + 2048)} (i32.const 10))`)}
          ${check(is(effectCall(9, req!), Status.UNKNOWN_FIELD))}`,
      },
      { grants: { counters: true } },
    );
  });

  test('counting effects need "counters", HTTP needs "http"; no call asks for more than 16 distinct effects', async () => {
    const items = Array.from({ length: MAX_EFFECTS_PER_CALL + 1 }, (_, i) => counter(`k${i}`));
    const placed = layout(items);
    for (const kind of [EffectKind.COUNTER, EffectKind.LEASE, EffectKind.METER]) {
      const err = await failure(`ungranted-${kind}`, { data: items, steps: () => `(drop ${effectCall(kind, placed[0]!)})` });
      assert.equal(err.reason, 'capability');
      const name = { [EffectKind.COUNTER]: 'COUNTER', [EffectKind.LEASE]: 'LEASE', [EffectKind.METER]: 'METER' }[kind];
      assert.match(err.message, new RegExp(`used effect ${name} without the "counters" grant`));
    }
    const http = await failure('ungranted-http', { data: items, steps: () => `(drop ${effectCall(EffectKind.HTTP, placed[0]!)})` }, { grants: { counters: true } });
    assert.equal(http.reason, 'capability');
    assert.match(http.message, /used the HTTP effect without the "http" grant/);
    const asks = (n: number) => placed.slice(0, n).map((p) => `(drop ${effectCall(EffectKind.COUNTER, p)})`).join(' ');
    // Asking again for one already answered is not another effect.
    await allHeld('effects-max', { data: items, steps: () => `${asks(MAX_EFFECTS_PER_CALL)} ${asks(1)}` }, { grants: { counters: true } });
    const over = await failure('effects-over', { data: items, steps: () => asks(MAX_EFFECTS_PER_CALL + 1) }, { grants: { counters: true } });
    assert.equal(over.reason, 'effects');
    assert.match(over.message, /more than 16 effects in one call/);
  });

  test('an effect the host cannot complete in the call is pending, and its result is read in the next round', async () => {
    // Port 1 on the loopback refuses the connection: the HTTP effect's result says so.
    const request = JSON.stringify({ method: 'GET', url: 'http://127.0.0.1:1/' });
    const [req] = layout([request]);
    const binding = await bindProbe(
      t,
      'effect-pending',
      { data: [request], steps: (check) => check(`(i32.gt_s ${effectCall(EffectKind.HTTP, req!, SCRATCH, 4096)} (i32.const 0))`) },
      { grants: { http: { allowedHosts: ['127.0.0.1:1'] } } },
    );
    assertAllHeld(await binding.run(), binding.all);
  });
});

describe('metrics and signatures', () => {
  test('metric: dimensions are name NUL value pairs; recorded only when the call succeeds', async () => {
    const got: MetricEmission[] = [];
    t.host.customMetrics.upstream = { metric: (e) => got.push(e) };
    const items = ['hits', 'route\0a\0', 'route\0', 'route\0a', 'x'.repeat(8193)].map((s) => s.replaceAll('\\0', '\0'));
    const [name, dims, odd, unterminated, huge] = layout(items);
    const metric = (d: { ptr: number; len: number }, n = name!) =>
      `(call $metric (i32.const ${n.ptr}) (i32.const ${n.len}) (f64.const 2.5) (i32.const ${d.ptr}) (i32.const ${d.len}))`;
    await allHeld('metric', {
      data: items,
      steps: (check) => `
        ${check(is(metric(dims!), Status.OK))}
        ${check(is(metric({ ptr: 0, len: 0 }), Status.OK))}
        ${check(is(metric(unterminated!), Status.OK))}
        ${check(is(metric(odd!), Status.INVALID_VALUE))}
        ${check(is(metric({ ptr: 0, len: 0 }, huge!), Status.INVALID_VALUE))}
        ${check(is(metric(huge!), Status.INVALID_VALUE))}
        ${check(is(metric({ ptr: 0, len: 0 }, { ptr: name!.ptr, len: 0 }), Status.INVALID_VALUE))}`,
    }, { limits: { outputBytes: 64 * 1024 } });
    assert.deepEqual(got, [
      { name: 'hits', value: 2.5, dimensions: [['route', 'a']] },
      { name: 'hits', value: 2.5, dimensions: [] },
      { name: 'hits', value: 2.5, dimensions: [['route', 'a']] },
    ]);
    got.length = 0;
    const failed = await failure('metric-failed', { data: items, steps: () => `(drop ${metric(dims!)}) unreachable` });
    assert.equal(failed.reason, 'trap');
    assert.deepEqual(got, []);
  });

  test('verify: a valid signature is 1, another 0; an algorithm name past 8 KiB or a key past 16 KiB is not read', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = JSON.stringify(publicKey.export({ format: 'jwk' }));
    const data = new TextEncoder().encode('header.payload');
    const signature = new Uint8Array(createSign('sha256').update(data).sign({ key: privateKey, dsaEncoding: 'ieee-p1363' }));
    const items = ['ES256', jwk, data, signature, 'header.payloaD'];
    const [alg, key, d, sig, other] = layout(items);
    const verify = (a: { ptr: number; len: number }, k: { ptr: number; len: number }, dd = d!) =>
      `(call $verify (i32.const ${a.ptr}) (i32.const ${a.len}) (i32.const ${k.ptr}) (i32.const ${k.len}) (i32.const ${dd.ptr}) (i32.const ${dd.len}) (i32.const ${sig!.ptr}) (i32.const ${sig!.len}))`;
    await allHeld('verify', {
      data: items,
      pages: 3,
      steps: (check) => `
        ${check(is(verify(alg!, key!), 1))}
        ${check(is(verify(alg!, key!, other!), 0))}
        ${check(is(verify({ ptr: 0, len: 8193 }, key!), Status.INVALID_VALUE))}
        ${check(is(verify(alg!, { ptr: 0, len: 16385 }), Status.INVALID_VALUE))}`,
    }, { limits: { outputBytes: 64 * 1024 } });
  });
});

describe('failures and the instance', () => {
  test('fail ends the call with its message (4,096 bytes at most) and keeps the instance', async () => {
    const binding = await bindProbe(t, 'fail', {
      extra: '(global $calls (mut i32) (i32.const 0))',
      pages: 2,
      steps: (check) => `
        (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
        (memory.fill (i32.const ${SCRATCH}) (i32.const 102) (i32.const 5000))
        ${check(is('(global.get $calls)', 2))}
        (if (i32.eq (global.get $calls) (i32.const 1)) (then (call $fail (i32.const ${SCRATCH}) (i32.const 5000))))`,
    });
    const err = await policyFailure(binding.run());
    assert.equal(err.reason, 'error');
    assert.match(err.message, /\(error\): f{4096}$/);
    // The second call finds the globals the first left: the same instance.
    assertAllHeld(await binding.run(), binding.all);
  });

  test('now is the wall clock in milliseconds; config_get reads only the configuration\'s own keys', async () => {
    const before = Date.now();
    await allHeld('now', {
      data: ['constructor', 'key'],
      steps: (check, str) => `
        ${check(`(f64.ge (call $now) (f64.const ${before}))`)}
        ${check(`(f64.le (call $now) (f64.const ${before + 600_000}))`)}
        ${check(`(i64.eqz (call $config_get ${str(0)}))`)}
        ${check(`(i64.ne (call $config_get ${str(1)}) (i64.const 0))`)}`,
    }, { config: { key: 'v' } });
  });

  test('a host function called outside a phase (from the start function) fails the instantiation', async () => {
    const binding = bindProbe(t, 'start-calls-host', {
      extra: '(func $boot (drop (call $respond (i32.const 200)))) (start $boot)',
      steps: () => '',
    });
    await assert.rejects(binding, /host function called outside a policy phase/);
  });

  test('guests start as Extism starts them: hs_init, else _initialize, else _start; an error_set there fails the start', async () => {
    const inits = (exported: string[]) => `
      (global $ran (mut i32) (i32.const 0))
      ${exported.map((e, i) => `(func (export "${e}") (global.set $ran (i32.or (global.get $ran) (i32.const ${1 << i}))))`).join(' ')}`;
    const runs = async (exported: string[], expected: number) =>
      allHeld(`init-${exported.length}`, { extra: inits(exported), steps: (check) => check(is('(global.get $ran)', expected)) });
    await runs(['hs_init', '_initialize', '_start'], 1);
    await runs(['_initialize', '_start'], 1);
    await runs(['_start'], 1);
    await assert.rejects(
      bindProbe(t, 'init-error', { data: ['boom'], extra: '(func (export "_initialize") (call $error_set (call $block_of (i32.const 8192) (i32.const 4))))', steps: () => '' }),
      /the start function failed: boom/,
    );
  });
});

describe('memory growth', () => {
  test('memory.grow is refused past the cap, kernel blocks included; size is unchanged by a refused or empty grow', async () => {
    await allHeld('grow', {
      steps: (check) => `
        ${check(is('(memory.grow (i32.const 1))', 2))}
        ${check(is('(memory.grow (i32.const 2))', -1))}
        ${check(is('(memory.grow (i32.const 0))', 3))}
        (local.set $a (call $alloc (i64.const 60000)))
        ${check(is('(memory.grow (i32.const 1))', -1))}
        (call $free (local.get $a))
        ${check(is('(memory.grow (i32.const 1))', 3))}
        ${check(is('(memory.size)', 4))}`,
    }, { limits: { memoryBytes: 4 * 65536 } });
  });

  test('kernel blocks are refused past the cap with linear memory counted, at the exact byte', async () => {
    // 3 pages of linear memory (one grown) and a block of 1,000 bytes with its 64 of overhead fill the cap exactly.
    const limits = { memoryBytes: 3 * 65536 + 1064 };
    const steps = (size: number) => () => `(drop (memory.grow (i32.const 1))) (drop (call $alloc (i64.const ${size})))`;
    await allHeld('reserve-exact', { steps: steps(1000) }, { limits });
    const err = await failure('reserve-over', { steps: steps(1001) }, { limits });
    assert.equal(err.reason, 'memory-cap');
    assert.match(
      err.message,
      /Extism kernel memory of 1065 more bytes would take the module to 197673 bytes, past its memory cap of 197672 \(linear memory and kernel blocks count together\)/,
    );
    // Blocks already held count too: two of 500 bytes need 128 bytes of overhead, one more than the room left.
    const two = await failure('reserve-held', { steps: () => `${steps(500)()} (drop (call $alloc (i64.const 500)))` }, { limits });
    assert.equal(two.reason, 'memory-cap');
  });

  test('a trap is charged to the memory cap after a refused grow or within an eighth of the cap; a refusal lasts one call', async () => {
    const trapAt = async (name: string, pages: number) =>
      (await failure(name, { steps: () => `(drop (memory.grow (i32.const ${pages}))) unreachable` }, { limits: { memoryBytes: 8 * 65536 } })).reason;
    assert.equal(await trapAt('trap-refused', 7), 'memory-cap');
    assert.equal(await trapAt('trap-near-cap', 5), 'memory-cap');
    assert.equal(await trapAt('trap-below', 4), 'trap');
    const binding = await bindProbe(t, 'refusal-one-call', {
      extra: '(global $calls (mut i32) (i32.const 0))',
      steps: (check) => `
        (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
        ${check(is('(memory.grow (i32.const 100))', -1))}
        (if (i32.eq (global.get $calls) (i32.const 2)) (then unreachable))`,
    }, { limits: { memoryBytes: 8 * 65536 } });
    assertAllHeld(await binding.run(), binding.all);
    assert.equal((await policyFailure(binding.run())).reason, 'memory-cap');
  });
});

describe('CPU budget', () => {
  test("a loop of the module's own code, and a loop of host calls, are stopped for their CPU budget", async () => {
    for (const [name, body] of [
      ['own-code', '(local.set $i (i32.add (local.get $i) (i32.const 1)))'],
      ['host-calls', '(drop (call $now))'],
    ]) {
      const err = await failure(`loop-${name}`, { steps: () => `(loop $again ${body} (br $again))` }, { limits: { cpuMs: 10 } });
      assert.equal(err.reason, 'cpu-budget', name);
      assert.match(err.message, /call ran past its CPU budget of 10 ms/);
    }
  });
});

describe('what host functions charge the CPU meter', () => {
  const counter = budgetCheckCounter();
  const ROUNDS = 64;
  /** 64 KiB of the module's memory (zeros), past where the probes place their strings. */
  const BUF = 65536;
  const NAME = 8192;
  const i32 = (...args: number[]) => args.map((a) => `(i32.const ${a})`).join(' ');
  const big = { limits: { outputBytes: 64 << 20 } };
  /** The checks `units` a round make: one each time 256 add up (what is past 256 is not carried over). */
  const expected = (units: number) => (units >= 256 ? ROUNDS : Math.floor(ROUNDS / Math.ceil(256 / units)));
  // A short parameter in a long query: reading it costs the query's length, not the value's.
  const query = `a=1&z=${'x'.repeat(65536)}`;

  test('each charges a unit per call and per 256 bytes it reads or writes (per 64 for effects, metrics and signatures)', async () => {
    const cases: { fn: string; units: number; steps: Probe['steps']; data?: string[]; request?: Parameters<typeof makeRequest>[0]; fails?: boolean }[] = [
      { fn: 'get: a 64 KiB value', units: 258, data: ['x-big'], request: { headers: { 'x-big': 'v'.repeat(65536) } }, steps: () => repeated(ROUNDS, `(drop (call $get (i32.const ${Field.REQUEST_HEADER}) (i32.const ${layout(['x-big'])[0]!.ptr}) (i32.const 5) ${i32(BUF, 65536)}))`) },
      {
        fn: 'get: a 64 KiB body',
        units: 258,
        steps: () => `(drop (call $set ${i32(Field.RESPONSE_BODY, 0, 0, BUF, 65536)})) ${repeated(ROUNDS, `(drop (call $get ${i32(Field.RESPONSE_BODY, 0, 0, BUF, 65536)}))`)}`,
      },
      { fn: 'get: an 8 KiB name', units: 33, steps: () => repeated(ROUNDS, `(drop (call $get ${i32(Field.REQUEST_HEADER, BUF, NAME, BUF, 0)}))`) },
      { fn: 'get: a short query parameter of a 64 KiB query', units: 1026, data: ['a'], request: { query }, steps: () => repeated(ROUNDS, `(drop (call $get ${i32(Field.REQUEST_QUERY_PARAM, layout(['a'])[0]!.ptr, 1, BUF, 0)}))`) },
      { fn: 'set: a 64 KiB value', units: 257, data: ['x-out'], steps: () => repeated(ROUNDS, `(drop (call $set ${i32(Field.RESPONSE_HEADER, layout(['x-out'])[0]!.ptr, 5, BUF, 65536)}))`) },
      { fn: 'add: a query parameter to a 64 KiB query', units: 257, data: ['b'], request: { query }, steps: () => repeated(ROUNDS, `(drop (call $add ${i32(Field.REQUEST_QUERY_PARAM, layout(['b'])[0]!.ptr, 1, BUF, 0)}))`) },
      { fn: 'set: a 64 KiB query', units: 257, request: { query }, steps: () => repeated(ROUNDS, `(drop (call $set ${i32(Field.REQUEST_QUERY, 0, 0, BUF, 1)}))`) },
      { fn: 'remove: an 8 KiB name', units: 33, steps: () => repeated(ROUNDS, `(drop (call $remove ${i32(Field.REQUEST_HEADER, BUF, NAME)}))`) },
      { fn: 'remove: a query parameter (absent) of a 64 KiB query', units: 257, data: ['b'], request: { query }, steps: () => repeated(ROUNDS, `(drop (call $remove ${i32(Field.REQUEST_QUERY_PARAM, layout(['b'])[0]!.ptr, 1)}))`) },
      { fn: 'effect: a 16 KiB request', units: 257, steps: () => repeated(ROUNDS, `(drop (call $effect ${i32(99, BUF, 16384, BUF, 0)}))`) },
      { fn: 'log: 64 KiB', units: 257, steps: () => repeated(ROUNDS, `(call $log ${i32(0, BUF, 65536)})`) },
      { fn: 'metric: an 8 KiB name and 8 KiB of dimensions', units: 257, steps: () => repeated(ROUNDS, `(drop (call $metric ${i32(BUF, NAME)} (f64.const 1) ${i32(BUF, NAME)}))`) },
      { fn: 'fail: 4 KiB', units: 17, fails: true, steps: () => repeated(ROUNDS, `(call $fail ${i32(BUF, 4096)})`) },
    ];
    const short: string[] = [];
    for (const c of cases) {
      const n = await counter.checks(`charge-${cases.indexOf(c)}`, { data: c.data, pages: 4, steps: c.steps }, big, { request: c.request, fails: c.fails });
      if (n < expected(c.units)) short.push(`${c.fn}: ${n} checks in ${ROUNDS} rounds, ${expected(c.units)} expected of ${c.units} units a round`);
    }
    // A signature check: its inputs by the 64 bytes, then a whole check interval for the check itself.
    const verify = await counter.checks('charge-verify', { data: ['ES256'], pages: 4, steps: () => repeated(ROUNDS, `(drop (call $verify ${i32(layout(['ES256'])[0]!.ptr, 5, BUF, 0, BUF, 32768, BUF, 0)}))`) }, big);
    if (verify < 2 * ROUNDS) short.push(`verify: ${verify} checks in ${ROUNDS} rounds, ${2 * ROUNDS} expected`);
    assert.deepEqual(short, []);
  });
});
