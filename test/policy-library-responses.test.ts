// The built-in policies that answer, move or rewrite, at gateway level: a real gateway process, two real backends on
// 127.0.0.1 that record what they received, real requests. Each policy's own cases run offline in
// builtin-policies.test.ts; this file checks what only a gateway shows: which backend was called (if any), the path it
// got, and bodies that a policy rewrote arriving whole, with the right length, at the backend and at the client.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Agent } from 'undici';
import { assertFramed, send as sendTo, startRecordingBackend, type RecordingBackend } from './support/requests.ts';
import { startGatewayProcess, stopAll, tempDir, writeConfig, type GatewayProcess } from './support/gateway-process.ts';

let main: RecordingBackend;
let other: RecordingBackend;
let gateway: GatewayProcess;
const agent = new Agent({ connections: 4 });

/** Links in the backend's answers, which find-and-replace turns into the public address (longer, on purpose). */
const INTERNAL = 'http://orders.internal';
const PUBLIC = 'https://api.example.com/shop';

function config(): string {
  return `
version: 1
apis:
  - id: closed
    pathPrefix: /closed
    backend: { url: "http://127.0.0.1:${main.port}" }
    operations:
      - id: maintenance
        method: "*"
        urlTemplate: /maintenance
        policies:
          inbound:
            - policy: return-response
              config:
                status: 503
                headers: { Retry-After: "120", x-reason: maintenance }
                body: '{"error":"down for maintenance"}'
                contentType: application/json
      - id: hidden
        method: GET
        urlTemplate: /hidden
        policies:
          outbound:
            - policy: return-response
              config: { status: 404, body: not here, contentType: text/plain }
  - id: mocked
    pathPrefix: /mocked
    backend: { url: "http://127.0.0.1:${main.port}" }
    policies:
      inbound:
        - policy: mock-response
          config: { status: 201, body: '{"id":"order-1","state":"created"}' }
  - id: moved
    pathPrefix: /moved
    backend: { url: "http://127.0.0.1:${main.port}/old" }
    policies:
      inbound:
        - policy: set-backend-service
          config: { baseUrl: "http://127.0.0.1:${other.port}/v2/" }
  - id: rewritten
    pathPrefix: /rewritten
    backend: { url: "http://127.0.0.1:${main.port}" }
    policies:
      inbound:
        - policy: find-and-replace
          config: { from: '"env":"test"', to: '"env":"production"' }
      outbound:
        - policy: find-and-replace
          config: { from: "${INTERNAL}", to: "${PUBLIC}" }
`;
}

/** What the backend answers on /links (with INTERNAL), and what the client should read (with PUBLIC). */
const linksBody = (base: string) => JSON.stringify({ self: `${base}/orders/7`, lines: `${base}/orders/7/lines`, note: 'café' });

/** A backend that records each request (with its body) and answers naming itself; /links answers with internal URLs. */
function startBackend(name: string): Promise<RecordingBackend> {
  return startRecordingBackend(({ method, url }) => {
    if (url.endsWith('/links')) {
      const body = linksBody(INTERNAL);
      return { headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, body };
    }
    return { headers: { 'content-type': 'text/plain', 'x-backend': name }, body: `${name} saw ${method} ${url}` };
  });
}

before(async () => {
  main = await startBackend('main');
  other = await startBackend('other');
  gateway = await startGatewayProcess({ config: writeConfig(tempDir(), 'gateway.yaml', config()) });
});

after(() => stopAll(gateway, agent, [main?.server, other?.server]));

const send = (path: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}) =>
  sendTo(gateway.url, path, { ...options, dispatcher: agent });

/** How many requests each backend has seen so far, to tell what one call added. */
const counts = () => ({ main: main.seen.length, other: other.seen.length });

describe('answering, moving and rewriting policies in a gateway', () => {
  test('return-response in inbound: the configured answer, and no backend is called', async () => {
    const before = counts();
    const res = await send('/closed/maintenance', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"item":1}' });
    assert.equal(res.status, 503);
    assert.equal(res.headers['retry-after'], '120');
    assert.equal(res.headers['x-reason'], 'maintenance');
    assert.equal(res.headers['content-type'], 'application/json');
    assert.equal(res.body, '{"error":"down for maintenance"}');
    assertFramed(res);
    assert.deepEqual(counts(), before, 'no backend was called');
  });

  test('return-response in outbound: the backend is called, but none of its answer reaches the client', async () => {
    const before = counts();
    const res = await send('/closed/hidden');
    assert.equal(main.seen.length, before.main + 1);
    assert.equal(main.seen[before.main]!.url, '/hidden');
    assert.equal(res.status, 404);
    assert.equal(res.body, 'not here');
    assert.equal(res.headers['content-type'], 'text/plain');
    assert.equal(res.headers['x-backend'], undefined, "the backend's headers are dropped");
  });

  test('mock-response: a JSON answer marked as a mock, without calling the backend', async () => {
    const before = counts();
    const res = await send('/mocked/orders', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"item":1}' });
    assert.equal(res.status, 201);
    assert.equal(res.headers['content-type'], 'application/json');
    assert.equal(res.headers['x-gatehouse-mock'], 'true');
    assert.equal(res.body, '{"id":"order-1","state":"created"}');
    assert.ok(typeof res.headers['x-request-id'] === 'string', 'the gateway still adds its request id');
    assert.deepEqual(counts(), before, 'no backend was called');
  });

  test("set-backend-service: the request goes to the other backend, below its base path, with the query; the API's backend sees nothing", async () => {
    const before = counts();
    const res = await send('/moved/orders/7?view=full', { method: 'PUT', body: 'payload' });
    assert.equal(res.status, 200, res.body);
    assert.equal(res.headers['x-backend'], 'other');
    assert.equal(main.seen.length, before.main, "the API's own backend was not called");
    assert.equal(other.seen.length, before.other + 1);
    const saw = other.seen[before.other]!;
    // The base URL's trailing slash is dropped, as for an API's backend URL; the path below /moved is appended.
    assert.equal(saw.url, '/v2/orders/7?view=full');
    assert.equal(saw.method, 'PUT');
    assert.equal(saw.body, 'payload');
    assert.equal(saw.headers.host, `127.0.0.1:${other.port}`);
  });

  test('find-and-replace in outbound: the response body is rewritten and the client reads all of it, with its new length', async () => {
    const before = counts();
    const res = await send('/rewritten/links');
    assert.equal(main.seen.length, before.main + 1);
    assert.equal(res.status, 200);
    assert.equal(res.body, linksBody(PUBLIC));
    // The backend's Content-Length was that of its shorter body: passed on, it would cut the client's read short.
    assert.notEqual(res.headers['content-length'], String(Buffer.byteLength(linksBody(INTERNAL))));
    assertFramed(res);
    assert.equal(res.headers['content-type'], 'application/json');
  });

  test('find-and-replace in inbound: the backend receives the rewritten request body, with its new length', async () => {
    const before = counts();
    const sent = '{"env":"test","item":1,"copy":{"env":"test"}}';
    const res = await send('/rewritten/orders', { method: 'POST', headers: { 'content-type': 'application/json' }, body: sent });
    assert.equal(res.status, 200, res.body);
    const saw = main.seen[before.main]!;
    const expected = '{"env":"production","item":1,"copy":{"env":"production"}}';
    assert.equal(saw.body, expected);
    assert.equal(saw.headers['content-length'], String(Buffer.byteLength(expected)));
    assert.equal(saw.headers['content-type'], 'application/json');
  });
});
