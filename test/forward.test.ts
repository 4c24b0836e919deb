// The forwarder (runtime/proxy/forward.ts) driven in this process, as the gateway drives it, against raw HTTP backends
// on 127.0.0.1: the request head the backend receives, the response the gateway gets back, the backends' health
// reports, the errors it turns failures into, and how it closes.

import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { errors } from 'undici';
import { BackendError, RequestError } from '../runtime/pipeline/chain.ts';
import { Exchange, headerMap, type RequestState, type ResponseState } from '../runtime/policy-host/exchange.ts';
import { EgressGuard } from '../runtime/network/egress-guard.ts';
import { EgressRefused } from '../runtime/policy-host/egress.ts';
import { BackendSet } from '../runtime/proxy/backends.ts';
import { backendLocation, Forwarder, pathBelowPrefix, toBackendError, type ForwardTarget } from '../runtime/proxy/forward.ts';
import { REFUSED_PORT } from './support/ports.ts';
import { HOP_BY_HOP_RESPONSE, startRawBackend, type RawBackend } from './support/raw-backend.ts';

/** A test that waits on a backend timeout or a hang fails here rather than at the runner's default. */
const TEST_TIMEOUT = { timeout: 10_000 };


/** Answers `status` with a 5-byte body. */
const answer = (status: number) => `HTTP/1.1 ${status} Whatever\r\nContent-Length: 5\r\n\r\nhello`;

/** Sockets whose requests wait for the test to answer them (`/held` requests), in arrival order. */
const held: Socket[] = [];
const heldWaiters: (() => void)[] = [];
function nextHeld(): Promise<Socket> {
  return held.length > 0 ? Promise.resolve(held.shift()!) : new Promise((resolve) => heldWaiters.push(() => resolve(held.shift()!)));
}

let backend: RawBackend;
let base: string;
const forwarder = new Forwarder({ timeoutMs: 30_000 });

before(async () => {
  backend = await startRawBackend((head, socket) => {
    const path = head.split(' ')[1]!;
    if (path.startsWith('/hops')) return HOP_BY_HOP_RESPONSE;
    if (path.startsWith('/status/')) return answer(parseInt(path.slice('/status/'.length), 10));
    // Keep-Alive without a Connection header naming it.
    if (path.startsWith('/keep-alive')) return 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nKeep-Alive: timeout=77\r\n\r\nhello';
    if (path.startsWith('/chunked')) return 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n';
    if (path.startsWith('/long')) return `HTTP/1.1 200 OK\r\nContent-Length: 26\r\n\r\nabcdefghijklmnopqrstuvwxyz`;
    // Declares 100 bytes, sends 10, then cuts the connection.
    if (path.startsWith('/cut')) {
      socket.end('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789', () => socket.destroy());
      return null;
    }
    if (path.startsWith('/reset')) {
      socket.destroy();
      return null;
    }
    if (path.startsWith('/garbage')) return 'NOT HTTP AT ALL\r\n\r\n';
    if (path.startsWith('/held')) {
      held.push(socket);
      heldWaiters.shift()?.();
      return null;
    }
    return answer(200);
  });
  base = `http://127.0.0.1:${backend.port}`;
});

after(async () => {
  await forwarder.close(true);
  backend.server.close();
  for (const socket of held) socket.destroy();
});

let ids = 0;
function exchange(request: Partial<RequestState> = {}, backendUrl = base): Exchange {
  return new Exchange({
    requestId: `forward-${++ids}`,
    backendUrl,
    request: { method: 'GET', path: '/', query: '', headers: new Map(), body: null, clientAddress: '192.0.2.7', ...request },
  });
}

const plain = (overrides: Partial<ForwardTarget> = {}): ForwardTarget => ({
  backends: null,
  target: null,
  apiPrefix: '',
  bufferResponse: false,
  ...overrides,
});

/** The request head's lines after the request line, as [lower-case name, value]. */
function headerLines(head: string): [string, string][] {
  return head
    .split('\r\n')
    .slice(1)
    .map((line) => {
      const colon = line.indexOf(':');
      return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()];
    });
}
const valuesOf = (head: string, name: string) => headerLines(head).filter(([n]) => n === name).map(([, v]) => v);

async function text(response: ResponseState): Promise<string> {
  if (response.body) return Buffer.from(response.body).toString();
  const chunks: Uint8Array[] = [];
  for await (const chunk of response.stream!) chunks.push(chunk);
  return Buffer.concat(chunks).toString();
}

async function backendError(promise: Promise<unknown>): Promise<BackendError> {
  const err = await promise.then(
    () => assert.fail('the forward succeeded'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof BackendError, `a BackendError: ${String(err)}`);
  return err;
}

describe('the request the backend receives', () => {
  test('method, path below the API prefix, query; hop-by-hop headers and those Connection names dropped; X-Forwarded-* added to what came before', async () => {
    const ex = exchange({
      method: 'POST',
      path: '/shop/orders/7',
      query: 'a=1&b=2',
      scheme: 'https',
      stream: Readable.from([Buffer.from('hello')]),
      headers: headerMap({
        host: 'shop.example.test',
        // Two Connection headers, names in any case and spacing.
        connection: ['Keep-Alive', ' X-Hop-Named ,x-other-HOP  '],
        'keep-alive': 'timeout=5',
        'x-hop-named': 'named in Connection',
        'x-other-hop': 'named in the second Connection header',
        'proxy-connection': 'keep-alive',
        'proxy-authenticate': 'Basic realm="client"',
        'proxy-authorization': 'Basic Zm9vOmJhcg==',
        te: 'trailers',
        trailer: 'x-sum',
        upgrade: 'websocket',
        'transfer-encoding': 'chunked',
        'content-length': '5',
        expect: '100-continue',
        'x-end-to-end': 'kept',
        'x-multi': ['one', 'two'],
        'x-forwarded-for': ['10.0.0.1', '10.0.0.2'],
      }),
    });
    const response = await forwarder.forward(ex, plain({ apiPrefix: '/shop' }));
    assert.equal(response.status, 200);
    assert.equal(await text(response), 'hello');
    const head = backend.requestHeads.at(-1)!;
    assert.equal(head.split('\r\n')[0], 'POST /orders/7?a=1&b=2 HTTP/1.1');
    const names = headerLines(head).map(([n]) => n);
    for (const name of ['keep-alive', 'x-hop-named', 'x-other-hop', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'upgrade', 'expect', 'content-length']) {
      assert.ok(!names.includes(name), `${name} reached the backend: ${head}`);
    }
    for (const value of valuesOf(head, 'connection')) assert.doesNotMatch(value, /x-hop-named/i, head);
    // The backend's Host is its own; the client's is passed as X-Forwarded-Host.
    assert.deepEqual(valuesOf(head, 'host'), [`127.0.0.1:${backend.port}`]);
    assert.deepEqual(valuesOf(head, 'x-forwarded-host'), ['shop.example.test']);
    // The streamed body is framed by the forwarder, not by the client's Content-Length or Transfer-Encoding.
    assert.deepEqual(valuesOf(head, 'transfer-encoding'), ['chunked']);
    assert.match(backend.requestBodies.at(-1)!, /^5\r\nhello\r\n0\r\n\r\n$/);
    assert.deepEqual(valuesOf(head, 'x-end-to-end'), ['kept']);
    assert.deepEqual(valuesOf(head, 'x-multi').join(', '), 'one, two');
    assert.deepEqual(valuesOf(head, 'x-forwarded-for'), ['10.0.0.1, 10.0.0.2, 192.0.2.7']);
    assert.deepEqual(valuesOf(head, 'x-forwarded-proto'), ['https']);
    assert.deepEqual(valuesOf(head, 'x-request-id'), [ex.requestId]);
  });

  test('without earlier proxies, a scheme or a Host: the client address alone, http, no X-Forwarded-Host; a buffered body with its length', async () => {
    const ex = exchange({ method: 'PUT', path: '/items', body: new TextEncoder().encode('buffered body') });
    await text(await forwarder.forward(ex, plain()));
    const head = backend.requestHeads.at(-1)!;
    assert.equal(head.split('\r\n')[0], 'PUT /items HTTP/1.1');
    assert.deepEqual(valuesOf(head, 'x-forwarded-for'), ['192.0.2.7']);
    assert.deepEqual(valuesOf(head, 'x-forwarded-proto'), ['http']);
    assert.deepEqual(valuesOf(head, 'x-forwarded-host'), []);
    assert.deepEqual(valuesOf(head, 'content-length'), ['13']);
    assert.equal(backend.requestBodies.at(-1), 'buffered body');
  });

  test('Keep-Alive is dropped also when no Connection header names it; other headers pass', async () => {
    const ex = exchange({ path: '/plain', headers: headerMap({ 'keep-alive': 'timeout=5', 'x-plain': 'passed' }) });
    assert.equal((await forwarder.forward(ex, plain())).status, 200);
    const head = backend.requestHeads.at(-1)!;
    assert.deepEqual(valuesOf(head, 'keep-alive'), []);
    assert.deepEqual(valuesOf(head, 'x-plain'), ['passed']);
  });

  test('a request without a body sends none', async () => {
    await text(await forwarder.forward(exchange({ method: 'DELETE', path: '/items/1' }), plain()));
    const head = backend.requestHeads.at(-1)!;
    assert.equal(head.split('\r\n')[0], 'DELETE /items/1 HTTP/1.1');
    assert.deepEqual(valuesOf(head, 'transfer-encoding'), []);
    assert.equal(backend.requestBodies.at(-1), '');
  });
});

describe('where the request goes', () => {
  test('pathBelowPrefix: the part below the prefix; the prefix itself is empty; a path outside it, or only sharing its letters, stays', () => {
    assert.equal(pathBelowPrefix('/echo/hello', '/echo'), '/hello');
    assert.equal(pathBelowPrefix('/echo', '/echo'), '');
    assert.equal(pathBelowPrefix('/echoes/1', '/echo'), '/echoes/1');
    assert.equal(pathBelowPrefix('/other/x', '/echo'), '/other/x');
    // A slash where the prefix would end, but another prefix before it.
    assert.equal(pathBelowPrefix('/abcd/x', '/echo'), '/abcd/x');
    assert.equal(pathBelowPrefix('//double', '/'), '//double');
    assert.equal(pathBelowPrefix('/ec', '/echo'), '/ec');
    assert.equal(pathBelowPrefix('/any/path', ''), '/any/path');
    assert.equal(pathBelowPrefix('/any/path', '/'), '/any/path');
  });

  test("backendLocation: the picked backend's origin and base path while the exchange names it, else the URL's (without credentials)", () => {
    const set = new BackendSet(['http://127.0.0.1:9/base/'], { timeoutMs: 1000, ejectAfterFailures: 1, ejectForMs: 1000, connections: 1 });
    const target = set.targets[0]!;
    const to = plain({ backends: set, target, apiPrefix: '/api' });
    try {
      const picked = backendLocation(exchange({ path: '/api/x' }, target.url), to);
      assert.deepEqual({ ...picked, chosen: picked.chosen === target }, { chosen: true, origin: 'http://127.0.0.1:9', path: '/base/x' });
      assert.equal(backendLocation(exchange({ path: '/api' }, target.url), to).path, '/base');
      const other = backendLocation(exchange({ path: '/api/y' }, 'http://user:secret@other.test:8080/v2/'), to);
      assert.deepEqual(other, { chosen: null, origin: 'http://other.test:8080', path: '/v2/y' });
      // A backend URL without a path, asked for the API's prefix alone: the root.
      assert.equal(backendLocation(exchange({ path: '/api' }, 'http://other.test'), to).path, '/');
    } finally {
      void set.close();
    }
  });

  test("a picked backend is reached through its own pool (its timeout), not the forwarder's", TEST_TIMEOUT, async () => {
    const set = new BackendSet([`${base}/held`], { timeoutMs: 100, ejectAfterFailures: 5, ejectForMs: 1000, connections: 1 });
    const target = set.targets[0]!;
    try {
      const err = await backendError(forwarder.forward(exchange({}, target.url), plain({ backends: set, target })));
      assert.equal(err.reason, 'timeout');
      (await nextHeld()).destroy();
    } finally {
      await set.close(true);
    }
  });

  test('a URL a wildcard grant entry admitted goes through the egress guard: loopback is refused; an exactly granted one is not', TEST_TIMEOUT, async () => {
    const asked: string[] = [];
    const egress = new EgressGuard({
      resolve: async (hostname) => {
        asked.push(hostname);
        return ['127.0.0.1'];
      },
    });
    const guarded = new Forwarder({ timeoutMs: 5000, egress });
    try {
      const wildcard = exchange({}, `http://backend.test:${backend.port}/`);
      wildcard.backendAccess = 'wildcard';
      const err = await backendError(guarded.forward(wildcard, plain()));
      assert.equal(err.reason, 'refused');
      assert.equal(err.status, 502);
      assert.match(err.message, /^backend refused: .*127\.0\.0\.1, a loopback address/);
      assert.deepEqual(asked, ['backend.test'], 'the guard given to the forwarder resolved the name');
      const exact = exchange({ path: '/exact' });
      exact.backendAccess = 'exact';
      assert.equal((await guarded.forward(exact, plain())).status, 200);
    } finally {
      await guarded.close(true);
    }
    // Without a guard of its own, the forwarder's own one refuses loopback all the same.
    const unguarded = new Forwarder({ timeoutMs: 5000 });
    try {
      const wildcard = exchange({});
      wildcard.backendAccess = 'wildcard';
      assert.equal((await backendError(unguarded.forward(wildcard, plain()))).reason, 'refused');
    } finally {
      await unguarded.close(true);
    }
  });
});

describe('the response', () => {
  test("streamed: the backend's hop-by-hop headers and those its Connection names are dropped, its length kept", async () => {
    const response = await forwarder.forward(exchange({ path: '/hops' }), plain());
    assert.equal(response.body, null);
    assert.equal(await text(response), 'hello');
    const names = [...response.headers.keys()];
    for (const name of ['connection', 'keep-alive', 'x-backend-hop', 'proxy-connection', 'proxy-authenticate', 'te', 'trailer', 'upgrade']) {
      assert.ok(!names.includes(name), `${name} returned: ${names.join(', ')}`);
    }
    assert.deepEqual(response.headers.get('x-end-to-end'), ['kept']);
    assert.deepEqual(response.headers.get('content-length'), ['5']);
  });

  test("the backend's Keep-Alive is not returned, also when its Connection does not name it", async () => {
    const response = await forwarder.forward(exchange({ path: '/keep-alive' }), plain());
    assert.equal(await text(response), 'hello');
    assert.equal(response.headers.has('keep-alive'), false);
  });

  test("the backend's Transfer-Encoding is not returned: the gateway frames the body itself", async () => {
    const response = await forwarder.forward(exchange({ path: '/chunked' }), plain());
    assert.equal(await text(response), 'hello');
    assert.equal(response.headers.has('transfer-encoding'), false);
  });

  test('buffered when a policy reads it: the body in full, its Content-Length dropped (the body may be changed)', async () => {
    // Longer than 16 bytes: the default limit is 16 MiB.
    const response = await forwarder.forward(exchange({ path: '/long' }), plain({ bufferResponse: true }));
    assert.equal(response.stream, undefined);
    assert.equal(await text(response), 'abcdefghijklmnopqrstuvwxyz');
    assert.equal(response.headers.has('content-length'), false);
  });

  test('buffered, over maxBufferedResponseBytes: a too-large 502, and the backend connection is closed', TEST_TIMEOUT, async () => {
    const small = new Forwarder({ timeoutMs: 5000, maxBufferedResponseBytes: 4 });
    try {
      const err = await backendError(small.forward(exchange({ path: '/status/200' }), plain({ bufferResponse: true })));
      assert.deepEqual([err.reason, err.status, err.message], ['too-large', 502, 'backend response larger than 4 bytes']);
      // A body the forwarder stopped reading part-way: its request is aborted, not left paused on its connection.
      const held = exchange({ path: '/held' });
      const forwarded = small.forward(held, plain({ bufferResponse: true }));
      const socket = await nextHeld();
      const socketClosed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789');
      assert.equal((await backendError(forwarded)).reason, 'too-large');
      await socketClosed;
    } finally {
      await small.close(true);
    }
  });

  test('buffered, cut by the backend part-way: a reset 502', TEST_TIMEOUT, async () => {
    const err = await backendError(forwarder.forward(exchange({ path: '/cut' }), plain({ bufferResponse: true })));
    assert.equal(err.reason, 'reset');
  });

  test('streamed, cut by the backend after the head: the head is returned and onBodyFailure is told', TEST_TIMEOUT, async () => {
    const failures: Error[] = [];
    const response = await forwarder.forward(exchange({ path: '/cut' }), plain({ onBodyFailure: (e) => failures.push(e) }));
    assert.equal(response.status, 200);
    await assert.rejects(text(response));
    assert.equal(failures.length, 1);
  });
});

describe('backend health', () => {
  const options = { timeoutMs: 5000, ejectAfterFailures: 1, ejectForMs: 60_000, connections: 2 };

  async function ejectedAfter(path: string): Promise<boolean> {
    const set = new BackendSet([`${base}${path}`], options, () => 1000);
    const target = set.targets[0]!;
    try {
      await forwarder.forward(exchange({}, target.url), plain({ backends: set, target })).then(text, () => undefined);
      return target.ejectedUntil > 0;
    } finally {
      await set.close(true);
    }
  }

  test('a 502, 503 or 504 from the picked backend counts as a failure; any other status as a success', async () => {
    for (const status of [502, 503, 504]) assert.equal(await ejectedAfter(`/status/${status}`), true, `${status} is a failure`);
    for (const status of [200, 500, 501, 505]) assert.equal(await ejectedAfter(`/status/${status}`), false, `${status} is a success`);
  });

  test('a connection the picked backend refuses counts as a failure', async () => {
    assert.equal(await ejectedAfter('/reset'), true);
  });

  test("an answer from a URL a policy chose is not the picked backend's, and a forward without a backend set reports nothing", async () => {
    const set = new BackendSet([`${base}/status/200`], options, () => 1000);
    const target = set.targets[0]!;
    try {
      const response = await forwarder.forward(exchange({ path: '/status/503' }), plain({ backends: set, target }));
      assert.equal(response.status, 503);
      await text(response);
      assert.equal(target.ejectedUntil, 0);
      const unreported = await forwarder.forward(exchange({}, `${base}/status/503`), plain({ target }));
      assert.equal(unreported.status, 503);
      await text(unreported);
      // Failures: from a URL a policy chose (reported to nobody), from the picked backend without a set to report to.
      const failed = await backendError(forwarder.forward(exchange({}, `${base}/reset`), plain({ backends: set, target })));
      assert.equal(failed.reason, 'reset');
      assert.equal(target.ejectedUntil, 0);
      const resetting = new BackendSet([`${base}/reset`], options, () => 1000);
      try {
        const picked = resetting.targets[0]!;
        const setless = await backendError(forwarder.forward(exchange({}, picked.url), plain({ target: picked })));
        assert.equal(setless.reason, 'reset');
      } finally {
        await resetting.close(true);
      }
    } finally {
      await set.close(true);
    }
  });
});

describe('failures the forwarder reports', () => {
  test('a port nobody listens on: unreachable, 502', TEST_TIMEOUT, async () => {
    const err = await backendError(forwarder.forward(exchange({}, `http://127.0.0.1:${REFUSED_PORT}`), plain()));
    assert.deepEqual([err.reason, err.status, err.message], ['unreachable', 502, 'backend unreachable (ECONNREFUSED)']);
  });

  test('no response head within timeoutMs: timeout, 504', TEST_TIMEOUT, async () => {
    const quick = new Forwarder({ timeoutMs: 100 });
    try {
      const err = await backendError(quick.forward(exchange({ path: '/held' }), plain()));
      assert.deepEqual([err.reason, err.status, err.message], ['timeout', 504, 'backend did not answer in time']);
      (await nextHeld()).destroy();
    } finally {
      await quick.close(true);
    }
  });

  test('the connection closed before the head: reset, 502; no HTTP in the answer: bad-response, 502', TEST_TIMEOUT, async () => {
    const reset = await backendError(forwarder.forward(exchange({ path: '/reset' }), plain()));
    assert.deepEqual([reset.reason, reset.status, reset.message], ['reset', 502, 'backend closed the connection']);
    const garbage = await backendError(forwarder.forward(exchange({ path: '/garbage' }), plain()));
    assert.equal(garbage.reason, 'bad-response');
    assert.equal(garbage.status, 502);
    assert.match(garbage.message, /^backend failed: ./);
  });

  test('toBackendError: every kind of failure to its reason', () => {
    const backendFailure = new BackendError('too-large', 502, 'x');
    assert.equal(toBackendError(backendFailure), backendFailure);
    const requestFailure = new RequestError('too-large', 413, 'request body too large');
    assert.equal(toBackendError(requestFailure), requestFailure);
    // A request body over its limit while streaming, as undici wraps it.
    assert.equal(toBackendError(Object.assign(new Error('request failed'), { cause: requestFailure })), requestFailure);
    const refused = toBackendError(new EgressRefused('10.0.0.1, a private address'));
    assert.deepEqual([refused.reason, refused.status, refused.message], ['refused', 502, 'backend refused: 10.0.0.1, a private address']);
    for (const err of [new errors.HeadersTimeoutError(), new errors.BodyTimeoutError(), new errors.ConnectTimeoutError()]) {
      assert.deepEqual([toBackendError(err).reason, toBackendError(err).status], ['timeout', 504], err.name);
    }
    const coded = (code: string) => toBackendError(Object.assign(new Error(`failed with ${code}`), { code }));
    for (const code of ['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'EAI_AGAIN']) {
      assert.deepEqual([coded(code).reason, coded(code).status, coded(code).message], ['unreachable', 502, `backend unreachable (${code})`]);
    }
    for (const code of ['ECONNRESET', 'UND_ERR_SOCKET', 'EPIPE']) assert.equal(coded(code).reason, 'reset', code);
    const other = coded('EPROTO');
    assert.deepEqual([other.reason, other.status, other.message], ['bad-response', 502, 'backend failed: failed with EPROTO']);
    assert.equal(toBackendError(new Error('no code')).reason, 'bad-response');
  });
});

describe('closing', () => {
  test('close() lets a request in flight finish; close(true) cuts one', TEST_TIMEOUT, async () => {
    const closing = new Forwarder({ timeoutMs: 30_000 });
    const inFlight = closing.forward(exchange({ path: '/held' }), plain({ bufferResponse: true }));
    const socket = await nextHeld();
    let closed = false;
    const closedAll = closing.close().then(() => {
      closed = true;
    });
    await new Promise((r) => setImmediate(r));
    assert.equal(closed, false, 'close() waits for the request in flight');
    socket.write(answer(200));
    assert.equal(await text(await inFlight), 'hello');
    await closedAll;

    const cutting = new Forwarder({ timeoutMs: 30_000 });
    const cut = cutting.forward(exchange({ path: '/held' }), plain());
    const cutSocket = await nextHeld();
    await cutting.close(true);
    cutSocket.destroy();
    await backendError(cut);
  });
});
