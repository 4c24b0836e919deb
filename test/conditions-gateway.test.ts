// Conditions, choose, set-variable, fragments and computed values in a real gateway process: a real backend on
// 127.0.0.1 that records what reached it, real compiled policies (built-ins and the chain-probe fixture, which copies a
// variable into headers, so a WebAssembly module is seen reading what set-variable stored), real requests, and the
// access log's policy timings.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Agent } from 'undici';
import { buildFixture } from './support/policies.ts';
import { send as sendTo, startRecordingBackend, type RecordingBackend } from './support/requests.ts';
import { startGatewayProcess, stopAll, tempDir, writeConfig, type GatewayProcess } from './support/gateway-process.ts';

let backend: RecordingBackend;
let gateway: GatewayProcess;
const agent = new Agent({ connections: 4 });

function config(): string {
  return `
version: 1
namedValues:
  region: { value: eu-west }
  signing-key: { value: not-for-expressions, secret: true }
fragments:
  stamp-region:
    - set-variable: { name: region, value: { expr: "namedValues.region" } }
    - policy: set-header
      config: { name: x-region, value: { expr: "variables.region + '/' + api" } }
policies:
  inbound:
    - set-variable:
        name: tier
        value: { expr: "request.headers[?'x-tier'].orValue('free')" }
apis:
  - id: routed
    pathPrefix: /routed
    backend: { url: "http://127.0.0.1:${backend.port}" }
    operations:
      - id: order
        method: "*"
        urlTemplate: /orders/{id}
        policies:
          inbound:
            - policy: set-header
              when: "route.id == '7' && operation == 'order'"
              config: { name: x-lucky, value: "yes" }
  - id: cond
    pathPrefix: /cond
    backend: { url: "http://127.0.0.1:${backend.port}" }
    policies:
      inbound:
        - policy: set-header
          when: "request.method == 'POST'"
          config: { name: x-was-post, value: "true" }
        # A WebAssembly module reads what set-variable stored (the ABI's VARIABLE field).
        - module: ./chain-probe.wasm
          config: { copyVarToHeader: tier }
        - include-fragment: stamp-region
        - choose:
            - when: "variables.tier == 'gold'"
              policies:
                - policy: set-header
                  config: { name: x-lane, value: fast }
            - when: "variables.tier == 'silver'"
              policies:
                - policy: set-header
                  config: { name: x-lane, value: normal }
          otherwise:
            - policy: set-header
              config: { name: x-lane, value: slow }
        - policy: return-response
          when: "request.query[?'closed'].orValue('') == 'yes'"
          config:
            status: { expr: "variables.tier == 'gold' ? 503 : 429" }
            headers:
              x-tier: { expr: "variables.tier" }
              retry-after: "30"
            body: { expr: "'closed for ' + variables.tier + ' callers'" }
            contentType: text/plain
      backend:
        - choose:
            - when: "request.headers[?'x-lane'].orValue('') == 'fast'"
              policies:
                - policy: set-header
                  config: { name: x-backend-lane, value: { expr: "'fast-' + variables.region" } }
      outbound:
        - policy: set-header
          when: "response.status >= 400"
          config: { name: x-backend-failed, value: { expr: "string(response.status)" } }
        - choose:
            - when: "response.headers[?'x-answer'].orValue('') == 'teapot'"
              policies:
                - policy: set-status
                  config: { code: { expr: "response.status == 200 ? 418 : response.status" } }
        # Fails at run time when the header is absent (no such key): the request goes to on-error.
        - policy: set-header
          when: "request.headers['x-must-exist'] == 'x'"
          config: { name: x-never, value: "1" }
      on-error:
        - choose:
            - when: "variables.tier == 'gold'"
              policies:
                - policy: set-status
                  config: { code: 503 }
          otherwise:
            - policy: set-header
              config: { name: x-on-error, value: { expr: "'handled ' + request.path" } }
`;
}

before(async () => {
  backend = await startRecordingBackend(({ url }) => ({
    status: url.includes('fail') ? 500 : 200,
    headers: { 'content-type': 'text/plain', ...(url.includes('teapot') ? { 'x-answer': 'teapot' } : {}) },
    body: `saw ${url}`,
  }));
  // Built here rather than by the gateway (source:), which would compile it while loading the other modules.
  const dir = tempDir();
  writeFileSync(join(dir, 'chain-probe.wasm'), await buildFixture('chain-probe'));
  gateway = await startGatewayProcess({ config: writeConfig(dir, 'gateway.yaml', config()) });
});

after(() => stopAll(gateway, agent, [backend?.server]));

const send = (path: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}) =>
  sendTo(gateway.url, path, { ...options, dispatcher: agent, headers: { 'x-must-exist': 'x', ...options.headers } });

/** The policy timings of the request's access log line. */
async function timings(requestId: unknown): Promise<{ binding: string; outcome: string }[]> {
  const line = await gateway.waitForLog((l) => l.msg === 'request' && l.requestId === requestId);
  return line.policies as { binding: string; outcome: string }[];
}

describe('conditions and expressions in a gateway', () => {
  test('a when: that holds runs the entry; one that does not skips it, and the access log says which', async () => {
    const before = backend.seen.length;
    const posted = await send('/cond/items', { method: 'POST', body: 'x' });
    assert.equal(posted.status, 200, posted.body);
    assert.equal(backend.seen[before]!.headers['x-was-post'], 'true');
    const got = await send('/cond/items');
    assert.equal(backend.seen[before + 1]!.headers['x-was-post'], undefined);
    const postedTimings = await timings(posted.headers['x-request-id']);
    const gotTimings = await timings(got.headers['x-request-id']);
    assert.equal(postedTimings.find((t) => t.binding === 'api:cond/inbound/0')?.outcome, 'continue');
    assert.equal(gotTimings.find((t) => t.binding === 'api:cond/inbound/0')?.outcome, 'skipped');
  });

  test('route parameters: a condition on {id}', async () => {
    const before = backend.seen.length;
    await send('/routed/orders/7');
    await send('/routed/orders/8');
    assert.equal(backend.seen[before]!.headers['x-lucky'], 'yes');
    assert.equal(backend.seen[before + 1]!.headers['x-lucky'], undefined);
  });

  test('set-variable in the global scope is read by a WebAssembly module (VARIABLE) and by later expressions', async () => {
    const before = backend.seen.length;
    const res = await send('/cond/a', { headers: { 'x-tier': 'gold' } });
    assert.equal(res.status, 200, res.body);
    const seen = backend.seen[before]!;
    assert.equal(seen.headers['x-var-tier'], 'gold', 'chain-probe copied the variable into a header');
    assert.equal(res.headers['x-var-tier'], 'gold');
    assert.equal(seen.headers['x-lane'], 'fast', 'the choose branch read the variable');
    const anonymous = await send('/cond/a');
    assert.equal(backend.seen[before + 1]!.headers['x-var-tier'], 'free');
    assert.equal(anonymous.headers['x-var-tier'], 'free');
  });

  test('choose in inbound: the first branch that holds, else otherwise', async () => {
    const before = backend.seen.length;
    await send('/cond/a', { headers: { 'x-tier': 'gold' } });
    await send('/cond/a', { headers: { 'x-tier': 'silver' } });
    await send('/cond/a', { headers: { 'x-tier': 'bronze' } });
    assert.deepEqual(
      backend.seen.slice(before).map((s) => s.headers['x-lane']),
      ['fast', 'normal', 'slow'],
    );
  });

  test('choose in backend: a branch reads a header an inbound branch set, and a computed header value', async () => {
    const before = backend.seen.length;
    await send('/cond/a', { headers: { 'x-tier': 'gold' } });
    await send('/cond/a');
    assert.equal(backend.seen[before]!.headers['x-backend-lane'], 'fast-eu-west');
    assert.equal(backend.seen[before + 1]!.headers['x-backend-lane'], undefined);
  });

  test('a fragment: its set-variable reads a named value, its set-header a computed value', async () => {
    const before = backend.seen.length;
    await send('/cond/a');
    assert.equal(backend.seen[before]!.headers['x-region'], 'eu-west/cond');
  });

  test('choose in outbound and computed set-status: the response decides', async () => {
    const teapot = await send('/cond/teapot');
    assert.equal(teapot.status, 418);
    const plain = await send('/cond/plain');
    assert.equal(plain.status, 200);
    const failed = await send('/cond/fail');
    assert.equal(failed.status, 500);
    assert.equal(failed.headers['x-backend-failed'], '500');
    assert.equal(plain.headers['x-backend-failed'], undefined);
  });

  test('return-response with computed status, header and body, under a when:', async () => {
    const before = backend.seen.length;
    const gold = await send('/cond/a?closed=yes', { headers: { 'x-tier': 'gold' } });
    assert.equal(gold.status, 503);
    assert.equal(gold.headers['x-tier'], 'gold');
    assert.equal(gold.headers['retry-after'], '30');
    assert.equal(gold.body, 'closed for gold callers');
    const free = await send('/cond/a?closed=yes');
    assert.equal(free.status, 429);
    assert.equal(free.body, 'closed for free callers');
    assert.equal(backend.seen.length, before, 'the backend was not called');
  });

  test('an expression that fails at run time fails its entry: on-error runs (choose in on-error), the gateway goes on', async () => {
    const res = await sendTo(gateway.url, '/cond/broken', { dispatcher: agent });
    assert.equal(res.status, 500);
    assert.equal(res.headers['x-on-error'], 'handled /cond/broken');
    const problem = JSON.parse(res.body) as { detail: string };
    assert.match(problem.detail, /policy api:cond\/outbound\/2 failed \(expression\)/);
    const gold = await sendTo(gateway.url, '/cond/broken', { dispatcher: agent, headers: { 'x-tier': 'gold' } });
    assert.equal(gold.status, 503, 'the on-error branch for gold callers');
    const log = await gateway.waitForLog((l) => l.msg === 'request' && l.requestId === res.headers['x-request-id']);
    assert.match(JSON.stringify(log.error), /No such key: x-must-exist/);
    const after = await send('/cond/a');
    assert.equal(after.status, 200);
  });
});
