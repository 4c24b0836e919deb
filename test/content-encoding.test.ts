// Compressed bodies through a real gateway process: a real backend on 127.0.0.1 that answers gzip, x-gzip, deflate
// (zlib and raw), br and stacked codings, and records the requests it gets; real compiled built-in policies that read
// or replace bodies (json-to-xml, jsonp, find-and-replace, set-body) and an author's `source:` policy that reads the
// request body. What a client gets must be what the policies made of the body it decodes to: a body a policy replaced
// goes out plain, without the Content-Encoding of the body it replaced; a body policies only read goes out as the
// backend (or the client) encoded it, byte for byte; a body nobody reads streams through untouched. And the hostile
// cases: a small gzip that inflates past the limit, a truncated stream, a body labelled gzip that is not, a coding the
// gateway does not know.

import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { brotliCompressSync, brotliDecompressSync, deflateRawSync, deflateSync, gunzipSync, gzipSync, inflateRawSync, inflateSync } from 'node:zlib';
import { Agent, request } from 'undici';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { startGatewayProcess, stopAll, tempDir, writeConfig, type GatewayProcess } from './support/gateway-process.ts';

const ORDER = '{"order":{"id":7,"note":"fish and chips"}}';
/** The gateway's request body limit in this file; the response limit is the gateway's 16 MiB. */
const REQUEST_LIMIT = 64 * 1024;
const RESPONSE_LIMIT = 16 * 1024 * 1024;

/** `text` in the content coding `coding` names (a list is applied left to right, as RFC 9110 8.4 says). */
function encode(text: string | Buffer, coding: string): Buffer {
  let bytes = Buffer.from(text);
  for (const c of coding.split(',').map((s) => s.trim())) {
    if (c === 'gzip' || c === 'x-gzip') bytes = gzipSync(bytes);
    else if (c === 'deflate') bytes = deflateSync(bytes);
    else if (c === 'deflate-raw') bytes = deflateRawSync(bytes);
    else if (c === 'br') bytes = brotliCompressSync(bytes);
    else if (c !== 'identity') throw new Error(`no coding ${c}`);
  }
  return bytes;
}

/** What the backend answers on `/<route>?case=<case>`: the body and its Content-Encoding. */
function answerFor(kase: string): { body: Buffer; coding: string | null } {
  switch (kase) {
    case 'gzip':
    case 'x-gzip':
    case 'deflate':
    case 'br':
    case 'gzip, br':
      return { body: encode(ORDER, kase), coding: kase };
    case 'deflate-raw':
      // What some servers send as `deflate`: the DEFLATE data without zlib's wrapper.
      return { body: encode(ORDER, 'deflate-raw'), coding: 'deflate' };
    case 'identity':
      return { body: Buffer.from(ORDER), coding: null };
    case 'bomb':
      // 20 KiB of gzip that inflates to 17 MiB, past the gateway's response limit.
      return { body: BOMB, coding: 'gzip' };
    case 'truncated':
    case 'truncated-br': {
      const coding = kase === 'truncated' ? 'gzip' : 'br';
      const whole = encode(ORDER.repeat(50), coding);
      return { body: whole.subarray(0, whole.length >> 1), coding };
    }
    case 'not-gzip':
      return { body: Buffer.from(ORDER), coding: 'gzip' };
    case 'unknown':
      return { body: Buffer.from('(\xb5/\xfd not really zstd'), coding: 'zstd' };
    default:
      throw new Error(`no case ${kase}`);
  }
}

const BOMB = gzipSync(Buffer.alloc(RESPONSE_LIMIT + 1024 * 1024, 0x20));

interface Received {
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

let backend: Server;
let backendPort: number;
const received: Received[] = [];
let gateway: GatewayProcess;
const agent = new Agent({ connections: 4 });

function config(): string {
  const guard = join(repoRoot(), 'test', 'fixtures', 'policies', 'author-json-body-guard');
  return `
version: 1
settings:
  maxRequestBodyBytes: ${REQUEST_LIMIT}
apis:
  - id: ce
    pathPrefix: /ce
    backend: { url: "http://127.0.0.1:${backendPort}" }
    operations:
      - id: to-xml
        method: GET
        urlTemplate: /to-xml
        policies:
          outbound:
            - policy: json-to-xml
              config: { rootElement: response }
      - id: jsonp
        method: GET
        urlTemplate: /jsonp
        policies:
          outbound:
            - policy: jsonp
              config: { callbackParameterName: callback }
      - id: replace
        method: GET
        urlTemplate: /replace
        policies:
          outbound:
            - policy: find-and-replace
              config: { from: fish, to: tofu }
      - id: read-only
        method: GET
        urlTemplate: /read-only
        policies:
          outbound:
            - policy: find-and-replace
              config: { from: "no such text", to: x }
      - id: set-body
        method: GET
        urlTemplate: /set-body
        policies:
          outbound:
            - set-body: { value: "replaced by the gateway", contentType: text/plain }
      - id: stream
        method: GET
        urlTemplate: /stream
      - id: guard
        method: POST
        urlTemplate: /guard
        policies:
          inbound:
            - source: "${guard}"
              config: { maxBytes: 4096 }
      - id: post-to-xml
        method: POST
        urlTemplate: /post-to-xml
        policies:
          inbound:
            - policy: json-to-xml
              config: { rootElement: request }
      - id: post-stream
        method: POST
        urlTemplate: /post-stream
`;
}

before(async () => {
  backend = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ url: req.url!, headers: req.headers, body: Buffer.concat(chunks) });
      const url = new URL(req.url!, 'http://backend');
      if (req.method === 'POST') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('received');
        return;
      }
      const kase = url.searchParams.get('case') ?? 'identity';
      if (kase === 'partial') {
        // The first half of the gzip body, as a 206 for a Range request: a range of the encoded bytes.
        const whole = encode(ORDER, 'gzip');
        res.writeHead(206, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-range': `bytes 0-9/${whole.length}` });
        res.end(whole.subarray(0, 10));
        return;
      }
      const { body, coding } = answerFor(kase);
      res.writeHead(200, {
        'content-type': 'application/json',
        'content-length': body.length,
        vary: 'Accept-Encoding',
        ...(coding === null ? {} : { 'content-encoding': coding }),
      });
      res.end(body);
    });
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  backendPort = (backend.address() as AddressInfo).port;
  gateway = await startGatewayProcess({ config: writeConfig(tempDir(), 'gateway.yaml', config()) });
});

after(() => stopAll(gateway, agent, [backend]));

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** The body as it came over the wire (undici does not decode it). */
  raw: Buffer;
}

async function get(path: string, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await request(`${gateway.url}${path}`, { headers: { 'accept-encoding': 'gzip, deflate, br', ...headers }, dispatcher: agent });
  return { status: res.statusCode, headers: res.headers, raw: Buffer.from(await res.body.arrayBuffer()) };
}

async function post(path: string, body: Buffer, headers: Record<string, string>): Promise<Answer> {
  const res = await request(`${gateway.url}${path}`, { method: 'POST', headers, body, dispatcher: agent });
  return { status: res.statusCode, headers: res.headers, raw: Buffer.from(await res.body.arrayBuffer()) };
}

/** The body as a client decodes it from its Content-Encoding (what a browser or curl --compressed shows). */
function decoded(answer: Answer): string {
  const coding = answer.headers['content-encoding'];
  let bytes = answer.raw;
  for (const c of String(coding ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '' && s !== 'identity').reverse()) {
    if (c === 'gzip' || c === 'x-gzip') bytes = gunzipSync(bytes);
    else if (c === 'deflate') bytes = inflateAnyDeflate(bytes);
    else if (c === 'br') bytes = brotliDecompressSync(bytes);
    else throw new Error(`the client cannot decode ${c}`);
  }
  return bytes.toString('utf8');
}

/** `deflate` as browsers read it: the zlib format, or the bare DEFLATE data some servers send. */
function inflateAnyDeflate(bytes: Buffer): Buffer {
  try {
    return inflateSync(bytes);
  } catch {
    return inflateRawSync(bytes);
  }
}

/** A body the gateway holds whole goes out with its own length. */
function assertLength(answer: Answer): void {
  assert.equal(answer.headers['content-length'], String(answer.raw.length));
}

const CODINGS = ['gzip', 'x-gzip', 'deflate', 'deflate-raw', 'br', 'gzip, br'];

describe('a compressed backend response, in a gateway', () => {
  test('json-to-xml converts the JSON the body decodes to, and the client gets the XML plain', async () => {
    for (const kase of CODINGS) {
      const res = await get(`/ce/to-xml?case=${encodeURIComponent(kase)}`, { accept: 'application/xml' });
      assert.equal(res.status, 200, `${kase}: ${res.raw}`);
      assert.equal(res.headers['content-encoding'], undefined, kase);
      assert.equal(res.headers['content-type'], 'application/xml; charset=utf-8', kase);
      assert.equal(
        res.raw.toString('utf8'),
        '<?xml version="1.0" encoding="utf-8"?><response><order><id>7</id><note>fish and chips</note></order></response>',
        kase,
      );
      assertLength(res);
      assert.match(String(res.headers.vary), /Accept-Encoding/, `${kase}: Vary stays`);
    }
  });

  test('jsonp wraps the decoded JSON, and find-and-replace edits the decoded text: both plain', async () => {
    for (const kase of CODINGS) {
      const wrapped = await get(`/ce/jsonp?case=${encodeURIComponent(kase)}&callback=show`);
      assert.equal(wrapped.status, 200, kase);
      assert.equal(wrapped.headers['content-encoding'], undefined, kase);
      assert.equal(wrapped.raw.toString('utf8'), `show(${ORDER});`, kase);
      assertLength(wrapped);
      const replaced = await get(`/ce/replace?case=${encodeURIComponent(kase)}`);
      assert.equal(replaced.headers['content-encoding'], undefined, kase);
      assert.equal(replaced.raw.toString('utf8'), ORDER.replace('fish', 'tofu'), kase);
      assertLength(replaced);
    }
  });

  test('a body policies read but did not change goes out as the backend encoded it, byte for byte', async () => {
    for (const kase of CODINGS) {
      const res = await get(`/ce/read-only?case=${encodeURIComponent(kase)}`);
      const { body, coding } = answerFor(kase);
      assert.equal(res.status, 200, kase);
      assert.equal(res.headers['content-encoding'], coding, kase);
      assert.deepEqual(res.raw, body, `${kase}: the backend's bytes, not encoded again`);
      assertLength(res);
      assert.equal(decoded(res), ORDER);
    }
  });

  test('set-body replaces a compressed body it never read: the client gets the new text, not labelled gzip', async () => {
    for (const kase of CODINGS) {
      const res = await get(`/ce/set-body?case=${encodeURIComponent(kase)}`);
      assert.equal(res.status, 200, kase);
      assert.equal(res.headers['content-encoding'], undefined, kase);
      assert.equal(res.headers['content-type'], 'text/plain', kase);
      assert.equal(decoded(res), 'replaced by the gateway', kase);
      assertLength(res);
    }
  });

  test("a policy's respond() with a body in outbound (jsonp's 400) drops the backend's Content-Encoding", async () => {
    const res = await get('/ce/jsonp?case=gzip&callback=1-not-a-name');
    assert.equal(res.status, 400);
    assert.equal(res.headers['content-encoding'], undefined);
    assert.equal(res.headers['content-type'], 'application/problem+json');
    assert.match(decoded(res), /callback must be a JavaScript name/);
    assertLength(res);
  });

  test('an operation whose policies read no body streams the encoded body through untouched', async () => {
    for (const kase of CODINGS) {
      const res = await get(`/ce/stream?case=${encodeURIComponent(kase)}`);
      const { body, coding } = answerFor(kase);
      assert.equal(res.headers['content-encoding'], coding, kase);
      assert.deepEqual(res.raw, body, kase);
    }
  });
});

describe('what the backend is asked for, and answers the gateway does not decode', () => {
  test('for a response the policies read, the backend is asked only for codings the gateway decodes', async () => {
    const offered = 'gzip, deflate, br, zstd';
    let before = received.length;
    await get('/ce/to-xml?case=gzip', { accept: 'application/xml', 'accept-encoding': offered });
    assert.equal(received[before]!.headers['accept-encoding'], 'gzip, deflate, br');
    before = received.length;
    await get('/ce/to-xml?case=identity', { accept: 'application/xml', 'accept-encoding': 'zstd' });
    assert.equal(received[before]!.headers['accept-encoding'], 'identity');
    // A response nobody reads is the client's: the backend hears what the client offered.
    before = received.length;
    await get('/ce/stream?case=gzip', { 'accept-encoding': offered });
    assert.equal(received[before]!.headers['accept-encoding'], offered);
  });

  test('a 206 is a range of the encoded bytes: a policy reading it gets it as it is, and so does the client', async () => {
    const res = await get('/ce/read-only?case=partial');
    assert.equal(res.status, 206);
    assert.equal(res.headers['content-encoding'], 'gzip');
    assert.deepEqual(res.raw, encode(ORDER, 'gzip').subarray(0, 10));
  });
});

describe('a hostile compressed backend response, in a gateway', () => {
  test('a 20 KiB gzip that inflates past the response limit is refused (502), not inflated', async () => {
    const res = await get('/ce/to-xml?case=bomb', { accept: 'application/xml' });
    assert.equal(res.status, 502, res.raw.toString('utf8'));
    assert.equal(res.headers['content-encoding'], undefined);
    assert.equal(JSON.parse(res.raw.toString('utf8')).detail, 'backend failed (too-large)');
    await gateway.waitForLog((l) => l.msg === 'request' && /inflates past 16777216 bytes/.test(JSON.stringify(l.error ?? '')));
    // Streamed through, it is the client's to inflate (or not): the gateway does not read it.
    const streamed = await get('/ce/stream?case=bomb');
    assert.equal(streamed.status, 200);
    assert.deepEqual(streamed.raw, BOMB);
  });

  test('a truncated gzip or br stream, and a body labelled gzip that is not, are bad responses (502)', async () => {
    for (const kase of ['truncated', 'truncated-br', 'not-gzip']) {
      const res = await get(`/ce/to-xml?case=${kase}`, { accept: 'application/xml' });
      assert.equal(res.status, 502, kase);
      assert.equal(JSON.parse(res.raw.toString('utf8')).detail, 'backend failed (bad-response)', kase);
      assert.equal(res.headers['content-encoding'], undefined, kase);
    }
    await gateway.waitForLog((l) => l.msg === 'request' && /Content-Encoding gzip does not decode/.test(JSON.stringify(l.error ?? '')));
  });

  test('a coding the gateway does not know, for a policy that reads the body: 502 naming it; streamed: untouched', async () => {
    const res = await get('/ce/to-xml?case=unknown', { accept: 'application/xml' });
    assert.equal(res.status, 502);
    assert.equal(JSON.parse(res.raw.toString('utf8')).detail, 'backend failed (bad-response)');
    await gateway.waitForLog((l) => l.msg === 'request' && /Content-Encoding zstd/.test(JSON.stringify(l.error ?? '')));
    const streamed = await get('/ce/stream?case=unknown');
    assert.equal(streamed.status, 200);
    assert.equal(streamed.headers['content-encoding'], 'zstd');
  });
});

describe('a compressed request body, in a gateway', () => {
  const order = (coding: string) => encode(ORDER, coding === 'deflate-raw' ? 'deflate-raw' : coding);
  const label = (coding: string) => (coding === 'deflate-raw' ? 'deflate' : coding);

  test("an author's policy that reads the body sees the JSON; the backend gets the client's bytes unchanged", async () => {
    for (const coding of CODINGS) {
      const before = received.length;
      const body = order(coding);
      const res = await post('/ce/guard', body, { 'content-type': 'application/json', 'content-encoding': label(coding) });
      assert.equal(res.status, 200, `${coding}: ${res.raw}`);
      const saw = received[before]!;
      assert.equal(saw.headers['content-encoding'], label(coding), coding);
      assert.deepEqual(saw.body, body, `${coding}: not encoded again`);
      assert.equal(saw.headers['content-length'], String(body.length), coding);
    }
    // The guard still refuses what is not JSON once decoded.
    const refused = await post('/ce/guard', encode('not json', 'gzip'), { 'content-type': 'application/json', 'content-encoding': 'gzip' });
    assert.equal(refused.status, 400);
    assert.match(refused.raw.toString('utf8'), /not valid JSON/);
  });

  test('json-to-xml in inbound converts the decoded JSON; the backend gets the XML plain, with its length', async () => {
    for (const coding of CODINGS) {
      const before = received.length;
      const res = await post('/ce/post-to-xml', order(coding), { 'content-type': 'application/json', 'content-encoding': label(coding) });
      assert.equal(res.status, 200, `${coding}: ${res.raw}`);
      const saw = received[before]!;
      const xml = '<?xml version="1.0" encoding="utf-8"?><request><order><id>7</id><note>fish and chips</note></order></request>';
      assert.equal(saw.headers['content-encoding'], undefined, coding);
      assert.equal(saw.body.toString('utf8'), xml, coding);
      assert.equal(saw.headers['content-length'], String(Buffer.byteLength(xml)), coding);
    }
  });

  test('hostile request bodies: a bomb is 413, a broken stream 400, an unknown coding 415; none reaches the backend', async () => {
    const cases: { body: Buffer; coding: string; status: number; detail: RegExp }[] = [
      { body: gzipSync(Buffer.alloc(REQUEST_LIMIT + 1, 0x20)), coding: 'gzip', status: 413, detail: /inflates past 65536 bytes/ },
      { body: brotliCompressSync(Buffer.alloc(64 * REQUEST_LIMIT, 0x20)), coding: 'br', status: 413, detail: /inflates past 65536 bytes/ },
      { body: encode(ORDER.repeat(40), 'gzip').subarray(0, 40), coding: 'gzip', status: 400, detail: /Content-Encoding gzip does not decode/ },
      { body: encode(ORDER.repeat(40), 'br').subarray(0, 40), coding: 'br', status: 400, detail: /Content-Encoding br does not decode/ },
      { body: Buffer.from(ORDER), coding: 'gzip', status: 400, detail: /Content-Encoding gzip does not decode/ },
      { body: encode(ORDER, 'gzip'), coding: 'br, gzip', status: 400, detail: /Content-Encoding br, gzip does not decode/ },
      { body: Buffer.from(ORDER), coding: 'zstd', status: 415, detail: /Content-Encoding zstd.*gzip, x-gzip, deflate and br/ },
    ];
    for (const c of cases) {
      const before = received.length;
      const res = await post('/ce/guard', c.body, { 'content-type': 'application/json', 'content-encoding': c.coding });
      assert.equal(res.status, c.status, `${c.coding}: ${res.raw}`);
      assert.match(JSON.parse(res.raw.toString('utf8')).detail, c.detail);
      if (c.status === 415) assert.equal(res.headers['accept-encoding'], 'gzip, x-gzip, deflate, br');
      assert.equal(received.length, before, `${c.coding}: the backend was not called`);
    }
  });

  test('an operation whose policies read no body streams a compressed request body through untouched', async () => {
    const before = received.length;
    const body = encode(ORDER, 'gzip');
    const res = await post('/ce/post-stream', body, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
    assert.equal(res.status, 200);
    assert.deepEqual(received[before]!.body, body);
    assert.equal(received[before]!.headers['content-encoding'], 'gzip');
  });
});
