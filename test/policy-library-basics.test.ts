// The basic built-in policies at gateway level: ip-filter, set-method, set-status, set-query-parameter. A real gateway
// process, a real backend on 127.0.0.1 that records what it received, real requests. Each policy's own cases
// (policies/<name>/policy.test.json) run offline in builtin-policies.test.ts; this file checks what only a gateway
// shows: the client's real address reaching ip-filter, the method and query the backend really receives, and the
// status the client really gets, from the backend's answer and from the gateway's own error answer.

import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Agent } from 'undici';
import { startGatewayProcess, tempDir, writeConfig, type GatewayProcess } from './support/gateway-process.ts';
import { REFUSED_PORT } from './support/ports.ts';
import { send } from './support/requests.ts';

let backend: Server;
let backendPort: number;
/** A port nothing listens on: a backend there fails at once (connection refused). */
let gateway: GatewayProcess;
const seen: { method: string; url: string }[] = [];
const agent = new Agent({ connections: 4 });

function config(): string {
  const backendUrl = `http://127.0.0.1:${backendPort}`;
  return `
version: 1
apis:
  - id: allowed
    pathPrefix: /allowed
    backend: { url: "${backendUrl}/base" }
    policies:
      inbound:
        - policy: ip-filter
          config: { action: allow, addresses: ["127.0.0.0/8", "::1"] }
  - id: refused
    pathPrefix: /refused
    backend: { url: "${backendUrl}" }
    policies:
      inbound:
        - policy: ip-filter
          config: { action: forbid, addresses: ["10.0.0.0/8", "127.0.0.0/8", "::ffff:127.0.0.0/104", "::1"] }
  - id: method
    pathPrefix: /method
    backend: { url: "${backendUrl}" }
    operations:
      - id: search
        method: GET
        urlTemplate: /search
        policies:
          inbound:
            - policy: set-method
              config: { method: POST }
  - id: status
    pathPrefix: /status
    backend: { url: "${backendUrl}" }
    operations:
      - id: nonAuthoritative
        method: GET
        urlTemplate: /203
        policies:
          outbound:
            - policy: set-status
              config: { code: 203 }
      - id: noContent
        method: GET
        urlTemplate: /204
        policies:
          outbound:
            - policy: set-status
              config: { code: 204 }
  - id: down
    pathPrefix: /down
    backend: { url: "http://127.0.0.1:${REFUSED_PORT}" }
    policies:
      on-error:
        - policy: set-status
          config: { code: 503 }
  - id: query
    pathPrefix: /query
    backend: { url: "${backendUrl}" }
    policies:
      inbound:
        - policy: set-query-parameter
          config: { name: api-version, values: ["2024-01-01"] }
        - policy: set-query-parameter
          config: { name: pageSize, values: ["50"], existsAction: skip }
        - policy: set-query-parameter
          config: { name: debug, existsAction: delete }
        - policy: set-query-parameter
          config: { name: tag, values: [gateway], existsAction: append }
`;
}

before(async () => {
  backend = createServer((req, res) => {
    seen.push({ method: req.method!, url: req.url! });
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`backend saw ${req.method} ${req.url}`);
    });
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  backendPort = (backend.address() as AddressInfo).port;
  const dir = tempDir();
  gateway = await startGatewayProcess({ config: writeConfig(dir, 'gateway.yaml', config()) });
});

after(async () => {
  await gateway?.stop();
  await agent.close();
  await new Promise((r) => backend.close(r));
});

const call = (path: string, method = 'GET') => send(gateway.url, path, { method, dispatcher: agent });

/** What the backend received for the one request `send` makes (asserts it received exactly one). */
async function backendSaw(send: () => Promise<{ status: number; body: string }>) {
  const before = seen.length;
  const res = await send();
  assert.equal(seen.length, before + 1, `the backend received ${seen.length - before} requests (answer ${res.status}: ${res.body})`);
  return { res, saw: seen[before]! };
}

describe('basic built-in policies in a gateway', () => {
  test('ip-filter: 127.0.0.1 passes an allow rule for 127.0.0.0/8', async () => {
    const { res, saw } = await backendSaw(() => call('/allowed/x'));
    assert.equal(res.status, 200, res.body);
    assert.equal(saw.url, '/base/x');
  });

  test('ip-filter: a forbid rule for 127.0.0.0/8 refuses the same client with 403 and a problem body; the backend is not called', async () => {
    const before = seen.length;
    const res = await call('/refused/x');
    assert.equal(res.status, 403);
    assert.equal(res.headers['content-type'], 'application/problem+json');
    const problem = JSON.parse(res.body) as Record<string, unknown>;
    assert.equal(problem.title, 'Forbidden');
    assert.equal(problem.status, 403);
    assert.equal(problem.detail, 'the client address is not allowed');
    assert.equal(typeof problem.requestId, 'string');
    assert.doesNotMatch(res.body, /127\.0\.0|10\.0\.0/, 'neither the rules nor the address are echoed');
    assert.equal(seen.length, before, 'the backend never saw the request');
  });

  test('set-method: a GET from the client reaches the backend as POST', async () => {
    const { res, saw } = await backendSaw(() => call('/method/search?q=shoes'));
    assert.equal(res.status, 200, res.body);
    assert.equal(saw.method, 'POST');
    assert.equal(saw.url, '/search?q=shoes');
  });

  test("set-status: the backend's 200 reaches the client as 203, with the backend's body", async () => {
    const { res } = await backendSaw(() => call('/status/203'));
    assert.equal(res.status, 203);
    assert.equal(res.body, 'backend saw GET /203');
  });

  test("set-status: 204 reaches the client without the backend's body", async () => {
    const { res } = await backendSaw(() => call('/status/204'));
    assert.equal(res.status, 204);
    assert.equal(res.body, '');
    // The connection is still usable after a 204 (no stray body bytes on it).
    const next = await call('/status/203');
    assert.equal(next.status, 203);
  });

  test("set-status in on-error: the gateway's 502 for an unreachable backend reaches the client as 503", async () => {
    const res = await call('/down/x');
    assert.equal(res.status, 503);
    assert.equal(res.headers['content-type'], 'application/problem+json');
    assert.match(res.body, /backend failed \(unreachable\)/);
  });

  test('set-query-parameter: override, skip, delete and append as the backend sees them', async () => {
    const first = await backendSaw(() => call('/query/items?api-version=1999&debug=1&tag=a&debug=2'));
    assert.equal(first.res.status, 200, first.res.body);
    assert.equal(first.saw.url, '/items?api-version=2024-01-01&tag=a&pageSize=50&tag=gateway');
    // A pageSize the client sent is kept (skip); the pairs the policies did not touch go out as the client wrote them.
    const second = await backendSaw(() => call('/query/items?pageSize=10&q=red%20shoes'));
    assert.equal(second.saw.url, '/items?pageSize=10&q=red%20shoes&api-version=2024-01-01&tag=gateway');
  });
});
