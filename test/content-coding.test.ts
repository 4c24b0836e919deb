// The content codings the gateway decodes for the policies that read a body (runtime/pipeline/content-coding.ts), on
// real zlib and brotli data: the limit at its exact edge, what is left alone (no body, identity), what is refused
// (too many codings, one cut short, a coding listed in the wrong order), when the bytes as they came go on again, and
// the Accept-Encoding a backend is sent. test/content-encoding.test.ts shows the same through a real gateway.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync } from 'node:zlib';
import {
  ContentCodingError,
  decodableAcceptEncoding,
  decodeForPolicies,
  restoreEncoding,
  unchangedEncoding,
  type CodedMessage,
} from '../runtime/pipeline/content-coding.ts';
import { headerMap } from '../runtime/policy-host/exchange.ts';

const text = (bytes: Uint8Array | null) => Buffer.from(bytes ?? []).toString('utf8');

function message(body: Uint8Array | null, coding?: string): CodedMessage {
  return { body, headers: headerMap(coding === undefined ? { 'content-type': 'application/json' } : { 'content-type': 'application/json', 'content-encoding': coding }) };
}

async function refusal(m: CodedMessage, maxBytes: number): Promise<ContentCodingError> {
  try {
    await decodeForPolicies(m, maxBytes, 'request body');
  } catch (err) {
    assert.ok(err instanceof ContentCodingError, String(err));
    return err;
  }
  assert.fail('decoded');
}

describe('decoding a body for the policies that read it', () => {
  test('each coding, case aside, and a stacked list undone from the last', async () => {
    const json = '{"a":1}';
    const cases: [string, Uint8Array][] = [
      ['gzip', gzipSync(json)],
      ['X-GZIP', gzipSync(json)],
      ['deflate', deflateSync(json)],
      ['deflate', deflateRawSync(json)],
      ['br', brotliCompressSync(json)],
      ['gzip, br', brotliCompressSync(gzipSync(json))],
      ['identity, gzip', gzipSync(json)],
    ];
    for (const [coding, body] of cases) {
      const m = message(body, coding);
      await decodeForPolicies(m, 1024, 'request body');
      assert.equal(text(m.body), json, coding);
      assert.equal(m.headers.has('content-encoding'), false, `${coding}: the header describes what the policies read`);
      assert.equal(m.encoded?.bytes, body, coding);
      assert.deepEqual(m.encoded?.coding, [coding], coding);
    }
  });

  test('the limit holds at its exact edge, the decoded size counted, not the encoded', async () => {
    const exactly = message(gzipSync(Buffer.alloc(4096, 0x61)), 'gzip');
    await decodeForPolicies(exactly, 4096, 'request body');
    assert.equal(exactly.body!.byteLength, 4096);
    const over = await refusal(message(gzipSync(Buffer.alloc(4097, 0x61)), 'gzip'), 4096);
    assert.equal(over.kind, 'too-large');
    assert.equal(over.message, 'the request body inflates past 4096 bytes (Content-Encoding gzip)');
    // A body past what is decoded in place is decoded again on the pool, up to the limit.
    const large = message(gzipSync(Buffer.alloc(1 << 20, 0x61)), 'gzip');
    await decodeForPolicies(large, 2 << 20, 'request body');
    assert.equal(large.body!.byteLength, 1 << 20);
    const largeOver = await refusal(message(brotliCompressSync(Buffer.alloc((2 << 20) + 1, 0x61)), 'br'), 2 << 20);
    assert.equal(largeOver.kind, 'too-large');
    // Each stage of a stacked list is bounded too: a gzip inside a br.
    const nested = await refusal(message(brotliCompressSync(gzipSync(Buffer.alloc(1 << 20))), 'gzip, br'), 4096);
    assert.equal(nested.kind, 'too-large');
  });

  test('left as they are: no header, identity, an empty body (a HEAD answer), no body', async () => {
    for (const m of [message(Buffer.from('x')), message(Buffer.from('x'), 'identity'), message(new Uint8Array(0), 'gzip'), message(null, 'gzip')]) {
      const before = m.body;
      const header = m.headers.get('content-encoding');
      await decodeForPolicies(m, 1024, 'request body');
      assert.equal(m.body, before);
      assert.deepEqual(m.headers.get('content-encoding'), header);
      assert.equal(m.encoded ?? null, null);
    }
  });

  test('refused, naming what is wrong: cut short (gzip, br), not what it says, wrong order, unknown, too many', async () => {
    const whole = brotliCompressSync(Buffer.from(JSON.stringify(Array.from({ length: 500 }, (_, i) => ({ i })))));
    const cases: [Uint8Array, string, ContentCodingError['kind'], RegExp][] = [
      [gzipSync('{"a":1}').subarray(0, 12), 'gzip', 'malformed', /^the request body's Content-Encoding gzip does not decode \(gzip: /],
      [whole.subarray(0, whole.length >> 1), 'br', 'malformed', /Content-Encoding br does not decode/],
      [Buffer.from('{"a":1}'), 'deflate', 'malformed', /Content-Encoding deflate does not decode/],
      [brotliCompressSync(gzipSync('{"a":1}')), 'br, gzip', 'malformed', /Content-Encoding br, gzip does not decode \(gzip: /],
      [Buffer.from('x'), 'compress', 'unsupported', /has Content-Encoding compress; the gateway decodes gzip, x-gzip, deflate and br .*not compress$/],
      [Buffer.from('x'), 'gzip, gzip, gzip, gzip, gzip', 'unsupported', /has 5 content codings .* at most 4$/],
    ];
    for (const [body, coding, kind, pattern] of cases) {
      const m = message(body, coding);
      const err = await refusal(m, 1 << 20);
      assert.equal(err.kind, kind, coding);
      assert.match(err.message, pattern);
      assert.equal(m.body, body, `${coding}: the message is left as it was`);
      assert.deepEqual(m.headers.get('content-encoding'), [coding]);
    }
  });
});

describe('what goes on after the policies', () => {
  test('a body they only read goes as it came; one they replaced, or labelled themselves, goes as they left it', async () => {
    const body = gzipSync('{"a":1}');
    const read = message(body, 'gzip');
    await decodeForPolicies(read, 1024, 'request body');
    assert.equal(unchangedEncoding(read)?.bytes, body);
    restoreEncoding(read);
    assert.equal(read.body, body);
    assert.deepEqual(read.headers.get('content-encoding'), ['gzip']);

    const replaced = message(body, 'gzip');
    await decodeForPolicies(replaced, 1024, 'request body');
    // The same text in a new buffer is a body a policy wrote.
    replaced.body = Buffer.from('{"a":1}');
    assert.equal(unchangedEncoding(replaced), null);
    restoreEncoding(replaced);
    assert.equal(text(replaced.body), '{"a":1}');
    assert.equal(replaced.headers.has('content-encoding'), false);

    const relabelled = message(body, 'gzip');
    await decodeForPolicies(relabelled, 1024, 'request body');
    relabelled.headers.set('content-encoding', ['identity']);
    assert.equal(unchangedEncoding(relabelled), null);
  });

  test("the backend of a response the policies read is asked only for codings the gateway decodes", () => {
    assert.equal(decodableAcceptEncoding(['gzip, deflate, br, zstd']), 'gzip, deflate, br');
    assert.equal(decodableAcceptEncoding(['br;q=1.0, zstd;q=0.9', 'GZIP;q=0.5, *;q=0.1']), 'br;q=1.0, GZIP;q=0.5');
    assert.equal(decodableAcceptEncoding(['identity;q=1, compress']), 'identity;q=1');
    assert.equal(decodableAcceptEncoding(['zstd']), 'identity');
    assert.equal(decodableAcceptEncoding(['*']), 'identity');
  });
});
