// Texts read from a module's memory: the instance's table of texts it decoded before (module-text.ts) must hand out
// exactly the text the bytes hold, whatever was kept in the slot its hash picks.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ModuleTexts } from '../runtime/policy-host/module-text.ts';
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
