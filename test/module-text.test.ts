// Texts read from a module's memory: the instance's table of texts it decoded before (module-text.ts) must hand out
// exactly the text the bytes hold, whatever was kept in the slot its hash picks.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Field, Status } from '../abi/index.ts';
import { classifyHeaderText, FRAMING_NAME, HEADER_KEY, SAFE_VALUE } from '../runtime/policy-host/header-text.ts';
import { ModuleTexts } from '../runtime/policy-host/module-text.ts';
import { hostileModule, layout, SCRATCH } from './support/hostile-modules.ts';
import { buildFixture, makeExchange, newHost } from './support/policies.ts';

const encoder = new TextEncoder();
const reference = new TextDecoder();

/** A deterministic generator, so a failure can be run again. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state / 2 ** 32;
  };
}

describe('ModuleTexts', () => {
  test('every text read is the bytes decoded, across slots shared by texts of the same length', () => {
    const next = random(7);
    // 600 texts of 1 to 8 characters drawn from 4 letters: many share a length and a table slot with another.
    const texts = Array.from({ length: 600 }, () => Array.from({ length: 1 + Math.floor(next() * 8) }, () => 'abcd'[Math.floor(next() * 4)]).join(''));
    const texts2 = new ModuleTexts();
    const mem = new Uint8Array(64);
    for (let round = 0; round < 20_000; round++) {
      const text = texts[Math.floor(next() * texts.length)]!;
      const at = Math.floor(next() * 32);
      mem.fill(0x7a);
      encoder.encodeInto(text, mem.subarray(at));
      assert.equal(texts2.decode(mem, at, text.length), text, `round ${round}`);
    }
  });

  test('texts of one length that differ in a single byte, anywhere, are told apart', () => {
    const texts = new ModuleTexts();
    const mem = new Uint8Array(128);
    // 40 bytes are ten whole words; 43 end in three bytes that only the last, overlapping word compares.
    for (const base of ['x-'.padEnd(40, 'a'), 'x-'.padEnd(43, 'a')]) for (let round = 0; round < 3; round++) {
      for (let at = 0; at < base.length; at++) {
        const text = base.slice(0, at) + 'b' + base.slice(at + 1);
        for (const t of [base, text]) {
          encoder.encodeInto(t, mem.subarray(5));
          assert.equal(texts.decode(mem, 5, t.length), t, `round ${round}, byte ${at}`);
        }
      }
    }
  });

  test("the 80 names and values of bench:policy's 60 header operations are kept from one call to the next", () => {
    const texts = new ModuleTexts();
    const call: string[] = [];
    for (let i = 0; i < 20; i++) call.push(`x-read-${i}`);
    for (let i = 0; i < 20; i++) call.push(`x-set-${i}`, `value-${i}`);
    for (let i = 0; i < 20; i++) call.push(`x-remove-${i}`);
    const mem = new Uint8Array(32);
    const readAll = () => {
      for (const text of call) {
        encoder.encodeInto(text, mem);
        assert.equal(texts.decode(mem, 0, text.length), text);
      }
    };
    readAll();
    assert.equal(texts.misses, call.length, 'the first call decodes every text');
    readAll();
    readAll();
    const before = texts.misses;
    readAll();
    // A table of one slot a text (128 of them) missed 41 of the 80 on every call.
    assert.ok(texts.misses - before <= 4, `${texts.misses - before} of ${call.length} texts decoded again on a later call`);
  });

  test('long, non-ASCII and invalid UTF-8 texts are decoded as TextDecoder decodes them', () => {
    const texts2 = new ModuleTexts();
    const cases: Uint8Array[] = [
      encoder.encode('x'.repeat(129)),
      encoder.encode('y'.repeat(128)),
      encoder.encode('caf\u00e9'),
      encoder.encode('\u{1f600} smile'),
      Uint8Array.of(0x61, 0xff, 0x62),
      Uint8Array.of(0xc3),
      new Uint8Array(0),
    ];
    for (let round = 0; round < 3; round++) {
      for (const bytes of cases) assert.equal(texts2.decode(bytes, 0, bytes.length), reference.decode(bytes));
    }
    // The same bytes after the ASCII text they replaced in memory.
    const mem = encoder.encode('abcdef');
    assert.equal(texts2.decode(mem, 0, 6), 'abcdef');
    mem.set(Uint8Array.of(0xc3, 0xa9), 2);
    assert.equal(texts2.decode(mem, 0, 6), 'ab\u00e9ef');
  });

  test("a kept text comes with what the header checks find of it, the same on every later read and once its slot is another text's", () => {
    const next = random(13);
    // Names and values of every class: lower and mixed case, framing, not tokens, with CR LF, and short ones that
    // share slots (a slot's class must go with its text).
    const pool = ['x-ok', 'X-Mixed', 'content-length', 'Content-Length', 'te', 'bad name', 'a\r\nb', 'ok', 'tab\there', 'x-a', 'x-b', 'y', 'Y', '\x7f'];
    pool.push('');
    for (let i = 0; i < 300; i++) pool.push(Array.from({ length: 1 + Math.floor(next() * 4) }, () => 'aB-\r :'[Math.floor(next() * 6)]).join(''));
    const texts = new ModuleTexts();
    const mem = new Uint8Array(64);
    for (let round = 0; round < 20_000; round++) {
      const text = pool[Math.floor(next() * pool.length)]!;
      encoder.encodeInto(text, mem);
      assert.equal(texts.decode(mem, 0, text.length), text);
      // The empty text is not kept: nothing is known of it.
      assert.equal(texts.lastClass(), text === '' ? 0 : classifyHeaderText(text), `round ${round}: ${JSON.stringify(text)}`);
    }
    assert.equal(classifyHeaderText('x-ok'), HEADER_KEY | SAFE_VALUE);
    assert.equal(classifyHeaderText('content-length'), HEADER_KEY | FRAMING_NAME | SAFE_VALUE);
    assert.equal(classifyHeaderText('X-Mixed'), SAFE_VALUE, 'a name with upper case is not a key as it is');
    assert.equal(classifyHeaderText('a\r\nb'), 0);
    // A text the table does not keep comes with nothing known: its reader checks it.
    for (const bytes of [encoder.encode('x'.repeat(129)), encoder.encode('caf\u00e9')]) {
      texts.decode(bytes, 0, bytes.length);
      assert.equal(texts.lastClass(), 0);
    }
  });

  test('a hostile module writing framing headers, names that are not tokens and values with CR LF is refused every time, not only the first', async () => {
    const data = ['content-length', 'Content-Length', 'transfer-encoding', 'bad name', 'x-ok', 'X-Mixed', 'X-OK', 'ok', 'a\r\nb'];
    const [contentLength, mixedContentLength, transferEncoding, badName, xOk, xMixed, xOkUpper, ok, crlf] = layout(data);
    const field = Field.REQUEST_HEADER;
    const expect = (call: string, status: number) => `(if (i32.ne ${call} (i32.const ${status})) (then unreachable))`;
    const set = (n: { ptr: number; len: number }, v: { ptr: number; len: number }) =>
      `(call $set (i32.const ${field}) (i32.const ${n.ptr}) (i32.const ${n.len}) (i32.const ${v.ptr}) (i32.const ${v.len}))`;
    const steps = [
      expect(set(contentLength!, ok!), Status.READ_ONLY),
      expect(set(mixedContentLength!, ok!), Status.READ_ONLY),
      expect(`(call $remove (i32.const ${field}) (i32.const ${transferEncoding!.ptr}) (i32.const ${transferEncoding!.len}))`, Status.READ_ONLY),
      expect(set(badName!, ok!), Status.INVALID_VALUE),
      expect(set(xOk!, crlf!), Status.INVALID_VALUE),
      expect(set(xOk!, ok!), Status.OK),
      expect(set(xMixed!, ok!), Status.OK),
      expect(`(call $get (i32.const ${field}) (i32.const ${xOkUpper!.ptr}) (i32.const ${xOkUpper!.len}) (i32.const ${SCRATCH}) (i32.const 64))`, 2),
    ].join('\n');
    const { host } = newHost();
    const module = await host.load(await hostileModule({ name: 'header-classes', data, inbound: `${steps} ${steps} (i32.const 0)` }));
    const binding = host.bind({ id: 'api:header-classes/inbound/0', phase: 'inbound', module });
    for (let request = 0; request < 3; request++) {
      const exchange = makeExchange({ headers: { 'content-length': '5', 'transfer-encoding': 'chunked' } });
      await binding.run('inbound', exchange);
      assert.deepEqual(exchange.request.headers.get('content-length'), ['5'], `request ${request}`);
      assert.deepEqual(exchange.request.headers.get('transfer-encoding'), ['chunked']);
      assert.deepEqual(exchange.request.headers.get('x-ok'), ['ok']);
      assert.deepEqual(exchange.request.headers.get('x-mixed'), ['ok']);
      assert.equal(exchange.request.headers.has('bad name'), false);
    }
  });

  test('a module writing a different value of the same length on each request is read right each time', async () => {
    const { host } = newHost();
    const binding = host.bind({
      id: 'api:texts/inbound/0',
      phase: 'inbound',
      module: await host.load(await buildFixture('chain-probe')),
      config: { copyVarToHeader: 'v' },
    });
    const next = random(11);
    for (let i = 0; i < 500; i++) {
      const value = Array.from({ length: 6 }, () => 'pq'[Math.floor(next() * 2)]).join('');
      const exchange = makeExchange();
      exchange.variables.set('v', value);
      await binding.run('inbound', exchange);
      assert.deepEqual(exchange.request.headers.get('x-var-v'), [value], `request ${i}`);
    }
  });
});
