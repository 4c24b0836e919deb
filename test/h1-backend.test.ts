// The gateway's HTTP/1.1 client for backends (runtime/proxy/h1-backend.ts), driven with the dispatch handler the
// forwarder gives it (BackendResponse) against raw HTTP backends on 127.0.0.1: what it writes, the bodies and framings
// it reads, the responses it refuses, its timeouts, the connections it keeps and when it sends a request again.

import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { Readable, Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { errors } from 'undici';
import { undiciConnector } from '../runtime/network/connector.ts';
import { BackendResponse } from '../runtime/proxy/backend-response.ts';
import { toBackendError } from '../runtime/proxy/forward.ts';
import { BadBackendResponse, Http1Agent, Http1Backend, type Http1BackendOptions } from '../runtime/proxy/h1-backend.ts';
import { startRawBackend, type RawBackend } from './support/raw-backend.ts';

const TEST_TIMEOUT = { timeout: 15_000 };

interface Answer {
  status: number;
  headers: Map<string, string[]>;
  body: string;
  trailers: Map<string, string[]> | null;
}

function backendFor(raw: RawBackend, options: Partial<Omit<Http1BackendOptions, 'connect'>> = {}): Http1Backend {
  return new Http1Backend(`http://127.0.0.1:${raw.port}`, { connections: 8, timeoutMs: 5000, keepAliveMs: 30_000, ...options, connect: undiciConnector() });
}

/** One request through `client`, its whole body read (paused at the head first, as the forwarder leaves every one). */
async function send(client: Http1Backend, path: string, init: { method?: string; headers?: Record<string, string | string[]>; body?: unknown } = {}): Promise<Answer> {
  const response = new BackendResponse(new Set());
  client.dispatch({ method: (init.method ?? 'GET') as 'GET', path, headers: init.headers ?? {}, body: init.body as null }, response);
  const head = await response.head;
  const chunks: Buffer[] = [];
  for await (const chunk of response) chunks.push(Buffer.from(chunk));
  return { status: head.status, headers: head.headers, body: Buffer.concat(chunks).toString('latin1'), trailers: response.trailers };
}

/** The error a request through `client` fails with (it must fail). */
async function failure(client: Http1Backend, path: string, init: Parameters<typeof send>[2] = {}): Promise<Error> {
  try {
    await send(client, path, init);
  } catch (err) {
    return err as Error;
  }
  assert.fail(`${path} did not fail`);
}

/** Reads each path's answer in turn through a new client, checks its body, and says how many connections they took. */
async function connectionsTaken(answers: [path: string, body: string][]): Promise<number> {
  const client = backendFor(raw);
  const before = raw.connections;
  for (const [path, body] of answers) assert.equal((await send(client, path)).body, body, path);
  await client.close();
  return raw.connections - before;
}

const ok = (body: string, extra = '') => `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n${extra}\r\n${body}`;

/** Sockets of requests the test answers itself (`/held`), in arrival order. */
const held: Socket[] = [];
let raw: RawBackend;

before(async () => {
  raw = await startRawBackend((head, socket) => {
    const path = head.split(' ')[1]!;
    switch (path) {
      case '/ok':
        return ok('hello');
      case '/chunked':
        return 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5;name=value\r\nhello\r\n7\r\n, world\r\n0\r\nX-Sum: 12\r\n\r\n';
      case '/informational':
        return 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n' + ok('final');
      case '/no-content':
        return 'HTTP/1.1 204 No Content\r\nX-Seen: yes\r\n\r\n';
      case '/not-modified':
        return 'HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n';
      case '/head':
        return 'HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n';
      case '/until-close':
        socket.end('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end');
        return null;
      case '/connection-close':
        return ok('bye', 'Connection: close\r\n');
      case '/http10':
        return 'HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold';
      case '/smuggled':
        return ok('hello') + ok('evil!');
      case '/echo-body':
        return ok(JSON.stringify(raw.requestBodies.at(-1)));
      case '/head-then-stall':
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234');
        return null;
      case '/big': {
        const body = 'x'.repeat(4 * 1024 * 1024);
        return ok(body);
      }
      case '/held':
      case '/silent':
        held.push(socket);
        return null;
    }
    if (path.startsWith('/hostile/')) return HOSTILE[decodeURIComponent(path.slice('/hostile/'.length))] ?? ok('no such case');
    return 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n';
  });
});

after(() => {
  for (const socket of held) socket.destroy();
  raw.server.close();
});

/** Responses a backend may send that the client must refuse, by name. */
const HOSTILE: Record<string, string> = {
  'content-length and transfer-encoding': 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
  'two content-lengths': 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!',
  'a content-length list': 'HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!',
  'a signed content-length': 'HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello',
  'a coding before chunked': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n',
  'identity transfer-encoding': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\nhello',
  'a folded line': 'HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 5\r\n\r\nhello',
  'space before the colon': 'HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello',
  'a bare LF in a field': 'HTTP/1.1 200 OK\r\nX-A: a\nContent-Length: 5\r\n\r\nhello',
  'a bare CR in a field': 'HTTP/1.1 200 OK\r\nX-A: a\rX-B: b\r\nContent-Length: 5\r\n\r\nhello',
  'a NUL in a value': 'HTTP/1.1 200 OK\r\nX-A: a\u0000b\r\nContent-Length: 5\r\n\r\nhello',
  'a line without a colon': 'HTTP/1.1 200 OK\r\nnot a field\r\nContent-Length: 5\r\n\r\nhello',
  'a status line of another protocol': 'HTTP/2.0 200 OK\r\nContent-Length: 5\r\n\r\nhello',
  'a two-digit status': 'HTTP/1.1 20 OK\r\nContent-Length: 5\r\n\r\nhello',
  'an unasked upgrade': 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n',
  'a bad chunk size': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n',
  'a chunk size past 2^52': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffff\r\nhello\r\n0\r\n\r\n',
  'a chunk longer than its size': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n',
  'a head past the limit': `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(20 * 1024)}\r\nContent-Length: 5\r\n\r\nhello`,
};

describe('what the client sends', () => {
  test('a GET: the path, the headers as given, the Host of the origin, no framing; three requests on one connection', TEST_TIMEOUT, async () => {
    const client = backendFor(raw);
    const before = raw.connections;
    const heads = raw.requestHeads.length;
    for (let i = 0; i < 3; i++) {
      const res = await send(client, '/ok', { headers: { 'x-one': 'a', 'x-many': ['b', 'c'] } });
      assert.equal(res.status, 200);
      assert.equal(res.body, 'hello');
    }
    assert.equal(raw.connections - before, 1, 'one connection, kept alive');
    assert.equal(raw.requestHeads[heads], `GET /ok HTTP/1.1\r\nx-one: a\r\nx-many: b\r\nx-many: c\r\nhost: 127.0.0.1:${raw.port}`);
    await client.close();
  });

  test('a buffered body goes with its Content-Length, a streamed one chunked', TEST_TIMEOUT, async () => {
    const client = backendFor(raw);
    const buffered = await send(client, '/echo-body', { method: 'POST', body: Buffer.from('{"a":1}') });
    assert.match(raw.requestHeads.at(-1)!, /\r\ncontent-length: 7$/);
    assert.equal(JSON.parse(buffered.body), '{"a":1}');
    const streamed = await send(client, '/echo-body', { method: 'POST', body: Readable.from([Buffer.from('one,'), Buffer.from('two')]) });
    assert.match(raw.requestHeads.at(-1)!, /\r\ntransfer-encoding: chunked$/);
    assert.equal(JSON.parse(streamed.body), '4\r\none,\r\n3\r\ntwo\r\n0\r\n\r\n');
    await client.close();
  });

  test('a backend answering before a streamed body ends: the answer is read, the body left unended for the server to drain', TEST_TIMEOUT, async () => {
    // A backend that answers 413 on the request head, without reading the body.
    const early = createServer((socket) => {
      socket.on('error', () => undefined);
      socket.once('data', () => socket.write('HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo much'));
    });
    await new Promise<void>((resolve) => early.listen(0, '127.0.0.1', resolve));
    const client = new Http1Backend(`http://127.0.0.1:${(early.address() as AddressInfo).port}`, { connections: 1, timeoutMs: 5000, keepAliveMs: 1000, connect: undiciConnector() });
    // The client's body: one chunk now, the rest never (a client still uploading).
    const upload = new Readable({ read() {} });
    upload.push(Buffer.from('first chunk'));
    const res = await send(client, '/upload', { method: 'POST', body: upload });
    assert.equal(res.status, 413);
    assert.equal(res.body, 'too much');
    // More of the body arrives after the answer: it is not the backend client's to end.
    upload.push(Buffer.from('second chunk'));
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(upload.destroyed, false, "the client's body is not destroyed by the backend client");
    upload.destroy();
    await client.close();
    early.close();
  });

  test('a method, path or header that would break the request head is refused before anything is sent', TEST_TIMEOUT, async () => {
    const client = backendFor(raw);
    const heads = raw.requestHeads.length;
    const cases: [string, Parameters<typeof send>[2]][] = [
      ['/a b', {}],
      ['/a\r\nx-injected: 1', {}],
      ['/ok', { method: 'GET /evil' }],
      ['/ok', { headers: { 'x-a': 'v\r\nx-injected: 1' } }],
      ['/ok', { headers: { 'x-a': ['fine', 'v\nx-injected: 1'] } }],
      ['/ok', { headers: { 'x-a': 'nul\u0000' } }],
      ['/ok', { headers: { 'x a': 'v' } }],
      ['/ok', { headers: { 'content-length': '0' } }],
      ['/ok', { headers: { 'Transfer-Encoding': 'chunked' } }],
    ];
    for (const [path, init] of cases) {
      const err = await failure(client, path, init);
      assert.ok(err instanceof errors.InvalidArgumentError, `${JSON.stringify([path, init])}: ${err.message}`);
      assert.equal(toBackendError(err).status, 502);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(raw.requestHeads.length, heads, 'nothing reached the backend');
    await client.close();
  });
});

describe('what the client reads', () => {
  test('chunked bodies with extensions, and their trailers', TEST_TIMEOUT, async () => {
    const client = backendFor(raw);
    const res = await send(client, '/chunked');
    assert.equal(res.body, 'hello, world');
    assert.deepEqual(res.trailers, new Map([['x-sum', ['12']]]));
    // The connection is reused after a chunked body.
    const before = raw.connections;
    assert.equal((await send(client, '/ok')).body, 'hello');
    assert.equal(raw.connections, before);
    await client.close();
  });

  test('1xx responses are skipped; the final one is the response', TEST_TIMEOUT, async () => {
    const client = backendFor(raw);
    const res = await send(client, '/informational');
    assert.equal(res.status, 200);
    assert.equal(res.body, 'final');
    assert.equal(res.headers.get('link'), undefined);
    await client.close();
  });

  test('204, 304 and HEAD have no body whatever they declare, and the connection serves the next request', TEST_TIMEOUT, async () => {
    // A short timeout: a connection left paused at a bodiless head would never read the next response.
    const client = backendFor(raw, { timeoutMs: 1000 });
    const before = raw.connections;
    for (const [path, method, status] of [['/no-content', 'GET', 204], ['/not-modified', 'GET', 304], ['/head', 'HEAD', 200]] as const) {
      const res = await send(client, path, { method });
      assert.equal(res.status, status, path);
      assert.equal(res.body, '', path);
      assert.equal((await send(client, '/ok')).body, 'hello', `after ${path}`);
    }
    assert.equal(raw.connections - before, 1);
    await client.close();
  });

  test('a body delimited by the connection closing is read to its end; the connection is not reused', TEST_TIMEOUT, async () => {
    assert.equal(await connectionsTaken([['/until-close', 'until the end'], ['/ok', 'hello']]), 2);
  });

  test('Connection: close, and HTTP/1.0 without keep-alive, end the connection after the response', TEST_TIMEOUT, async () => {
    assert.equal(await connectionsTaken([['/connection-close', 'bye'], ['/http10', 'old'], ['/ok', 'hello']]), 3);
  });

  test('bytes after a complete response are never read as the next one: the connection is closed', TEST_TIMEOUT, async () => {
    // The second answer is a fresh one, not the bytes that followed the first.
    assert.equal(await connectionsTaken([['/smuggled', 'hello'], ['/ok', 'hello']]), 2);
  });

  test('a 4 MiB body through a slow reader: every byte, the connection paused meanwhile', TEST_TIMEOUT, async () => {
    const client = backendFor(raw);
    const response = new BackendResponse(new Set());
    client.dispatch({ method: 'GET', path: '/big', headers: {} }, response);
    await response.head;
    let received = 0;
    const slow = new Writable({
      highWaterMark: 16 * 1024,
      write(chunk: Buffer, _encoding, done) {
        received += chunk.length;
        setImmediate(done);
      },
    });
    await new Promise<void>((resolve) => {
      slow.on('finish', () => resolve());
      response.sendTo(slow);
    });
    assert.equal(received, 4 * 1024 * 1024);
    await client.close();
  });
});

describe('responses the client refuses', () => {
  for (const name of Object.keys(HOSTILE)) {
    test(`${name}: a bad response (502), and the connection is closed`, TEST_TIMEOUT, async () => {
      const client = backendFor(raw);
      const err = await failure(client, `/hostile/${encodeURIComponent(name)}`);
      assert.ok(err instanceof BadBackendResponse, `${name}: ${err.message}`);
      const mapped = toBackendError(err);
      assert.equal(mapped.status, 502);
      assert.equal((mapped as { reason?: string }).reason, 'bad-response');
      // Whatever followed the refused part is not read as a response: the next request gets a connection of its own.
      const before = raw.connections;
      assert.equal((await send(client, '/ok')).body, 'hello');
      assert.equal(raw.connections - before, 1);
      await client.close();
    });
  }
});

describe('timeouts', () => {
  test('no response head within the timeout: a headers timeout (504), the connection closed', TEST_TIMEOUT, async () => {
    const client = backendFor(raw, { timeoutMs: 300 });
    const started = performance.now();
    const err = await failure(client, '/silent');
    const took = performance.now() - started;
    assert.ok(err instanceof errors.HeadersTimeoutError, err.message);
    assert.equal(toBackendError(err).status, 504);
    assert.ok(took >= 300 && took < 1500, `failed after ${took} ms`);
    await client.close();
  });

  test('a body that stops arriving: a body timeout; a body the gateway holds paused is not timed', TEST_TIMEOUT, async () => {
    const client = backendFor(raw, { timeoutMs: 300 });
    const err = await failure(client, '/head-then-stall');
    assert.ok(err instanceof errors.BodyTimeoutError, err.message);
    // Held at its head for three timeouts, then read: all of it.
    const response = new BackendResponse(new Set());
    client.dispatch({ method: 'GET', path: '/ok', headers: {} }, response);
    await response.head;
    await new Promise((resolve) => setTimeout(resolve, 900));
    const chunks: Uint8Array[] = [];
    for await (const chunk of response) chunks.push(chunk);
    assert.equal(Buffer.concat(chunks).toString(), 'hello');
    await client.close();
  });
});

describe('connections', () => {
  test('no more connections than allowed: the requests past them wait their turn', TEST_TIMEOUT, async () => {
    const client = backendFor(raw, { connections: 2 });
    const before = raw.connections;
    held.length = 0;
    const pending = Array.from({ length: 5 }, () => send(client, '/held'));
    await waitFor(() => held.length === 2);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(held.length, 2, 'two requests out, three waiting');
    for (let answered = 0; answered < 5; answered++) {
      await waitFor(() => held.length > 0);
      held.shift()!.write(ok(`answer ${answered}`));
    }
    const bodies = (await Promise.all(pending)).map((r) => r.body).sort();
    assert.deepEqual(bodies, [0, 1, 2, 3, 4].map((i) => `answer ${i}`));
    assert.equal(raw.connections - before, 2);
    await client.close();
  });

  test('a reused connection the backend closed as the request went out: a GET goes again on a new one, a streamed POST fails', TEST_TIMEOUT, async () => {
    const client = backendFor(raw);
    held.length = 0;
    // A first request opens the connection and returns it to the pool.
    const first = send(client, '/held');
    await waitFor(() => held.length === 1);
    const socket = held.shift()!;
    socket.write(ok('first'));
    assert.equal((await first).body, 'first');
    // The next request on it finds it closed without an answer (a backend's idle timeout racing the request).
    const second = send(client, '/held');
    await waitFor(() => held.length === 1);
    held.shift()!.destroy();
    await waitFor(() => held.length === 1);
    held.shift()!.write(ok('sent again'));
    assert.equal((await second).body, 'sent again');
    // A body that cannot be sent again is not: the failure is the forwarder's to handle (a 502 "reset").
    const post = failure(client, '/held', { method: 'POST', body: Readable.from([Buffer.from('once')]) });
    await waitFor(() => held.length === 1);
    held.shift()!.destroy();
    const err = await post;
    assert.equal(toBackendError(err).status, 502);
    assert.equal((toBackendError(err) as { reason?: string }).reason, 'reset');
    await client.close();
  });

  test('a request on a new connection that closes without an answer is not sent again', TEST_TIMEOUT, async () => {
    const client = backendFor(raw);
    held.length = 0;
    const before = raw.requestHeads.length;
    const get = failure(client, '/held');
    await waitFor(() => held.length === 1);
    held.shift()!.destroy();
    assert.equal(toBackendError(await get).status, 502);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(raw.requestHeads.length - before, 1);
    await client.close();
  });

  test('an aborted response closes its connection; close() waits for requests under way, destroy() fails them', TEST_TIMEOUT, async () => {
    const client = backendFor(raw);
    const response = new BackendResponse(new Set());
    client.dispatch({ method: 'GET', path: '/head-then-stall', headers: {} }, response);
    await response.head;
    const before = raw.connections;
    response.destroy();
    assert.equal((await send(client, '/ok')).body, 'hello');
    assert.equal(raw.connections - before, 1, 'the aborted connection was not reused');

    held.length = 0;
    const underWay = send(client, '/held');
    await waitFor(() => held.length === 1);
    let closed = false;
    const closing = client.close().then(() => (closed = true));
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(closed, false, 'close() waits for the request under way');
    held.shift()!.write(ok('last'));
    assert.equal((await underWay).body, 'last');
    await closing;
    const refused = await failure(client, '/ok');
    assert.ok(refused instanceof errors.ClientClosedError);

    const other = backendFor(raw);
    const cut = failure(other, '/held');
    await waitFor(() => held.length === 1);
    await other.destroy();
    assert.ok((await cut) instanceof errors.ClientDestroyedError);
    held.shift()!.destroy();
  });
});

describe('an agent for origins policies choose', () => {
  test('a pool per origin, made on its first request and forgotten once its connections close', TEST_TIMEOUT, async () => {
    const other = await startRawBackend(() => ok('other'));
    const agent = new Http1Agent({ connections: 4, timeoutMs: 2000, keepAliveMs: 1000, connect: undiciConnector() });
    const through = async (port: number, path: string) => {
      const response = new BackendResponse(new Set());
      agent.dispatch({ origin: `http://127.0.0.1:${port}`, method: 'GET', path, headers: {} }, response);
      await response.head;
      const chunks: Uint8Array[] = [];
      for await (const chunk of response) chunks.push(chunk);
      return Buffer.concat(chunks).toString();
    };
    assert.equal(await through(raw.port, '/ok'), 'hello');
    assert.equal(await through(other.port, '/anything'), 'other');
    assert.equal(await through(raw.port, '/ok'), 'hello');
    assert.equal(agent.size, 2);
    assert.equal(other.connections, 1);
    // Idle past keepAliveMs, both connections close and both origins are forgotten.
    await waitFor(() => agent.size === 0);
    assert.equal(await through(other.port, '/again'), 'other', 'an origin forgotten is made again');
    assert.equal(other.connections, 2);
    await agent.close();
    other.server.close();
  });
});

async function waitFor(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.ok(condition(), 'condition not met within 5 s');
}
