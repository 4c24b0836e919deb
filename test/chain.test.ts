// Chain semantics with real compiled policies, a real HTTP backend on 127.0.0.1 and undici forwarding.

import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { Grants, PolicyBinding, PolicyModule, Phase } from '../runtime/policy-host/index.ts';
import { EMPTY_CHAIN, runChain, stackScopes, type PolicyChain } from '../runtime/pipeline/chain.ts';
import { Forwarder } from '../runtime/proxy/forward.ts';
import { buildFixture, makeExchange, newHost, rawModule, type TestHost } from './support/policies.ts';

let t: TestHost;
let probe: PolicyModule;
let backend: Server;
let backendUrl: string;
let received: { method: string; url: string; headers: IncomingMessage['headers'] }[] = [];
const forwarder = new Forwarder({ timeoutMs: 2000 });
const forward = (exchange: Parameters<Forwarder['forward']>[0]) =>
  forwarder.forward(exchange, { backends: null, target: null, apiPrefix: '', bufferResponse: true });

before(async () => {
  t = newHost();
  probe = await t.host.load(await buildFixture('chain-probe'));
  backend = createServer((req, res) => {
    received.push({ method: req.method!, url: req.url!, headers: req.headers });
    res.setHeader('content-type', 'application/json');
    res.setHeader('x-backend', 'yes');
    res.end(JSON.stringify({ url: req.url }));
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  backendUrl = `http://127.0.0.1:${(backend.address() as AddressInfo).port}`;
});

after(async () => {
  await forwarder.close();
  await new Promise((r) => backend.close(r));
});

let ids = 0;
function p(phase: Phase, config: Record<string, unknown>, failOpen = false, grants?: Grants): PolicyBinding {
  return t.host.bind({ id: `probe-${++ids}`, phase, module: probe, config, failOpen, grants });
}

async function run(chain: PolicyChain, headers: Record<string, string> = {}, url = backendUrl) {
  received = [];
  const exchange = makeExchange({ path: '/orders/7', query: 'a=1', headers });
  exchange.backendUrl = url;
  await runChain(chain, exchange, forward);
  return exchange;
}

const header = (map: Map<string, string[]>, name: string) => map.get(name)?.join(', ');
const text = (body: Uint8Array | null) => new TextDecoder().decode(body ?? new Uint8Array(0));

describe('policy chain', () => {
  test('scopes stack global → API → operation in every phase, and variables flow along', async () => {
    const chain = stackScopes(
      { inbound: [p('inbound', { tag: 'g' })], outbound: [p('outbound', { tag: 'g-out' })] },
      { inbound: [p('inbound', { tag: 'a' })], backend: [p('backend', { tag: 'a-be' })] },
      { inbound: [p('inbound', { tag: 'o', copyVarToHeader: 'trace' })], outbound: [p('outbound', { tag: 'o-out' })] },
    );
    const exchange = await run(chain);
    assert.equal(received.length, 1);
    assert.equal(received[0]!.headers['x-trace'], 'g, a, o, a-be');
    assert.equal(received[0]!.headers['x-var-trace'], 'g,a,o', 'the operation policy saw the variables set before it');
    assert.equal(exchange.variables.get('trace'), 'g,a,o,a-be,g-out,o-out');
    assert.equal(exchange.response.status, 200);
    assert.equal(header(exchange.response.headers, 'x-backend'), 'yes');
    // Response headers set before the backend are applied to its response; outbound ones are added after.
    assert.equal(header(exchange.response.headers, 'x-trace'), 'g, a, o, a-be, g-out, o-out');
  });

  test('path, method, query and backend changes reach the backend', async () => {
    const other = createServer((req, res) => res.end(`other ${req.method} ${req.url}`));
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
    try {
      const otherHost = `127.0.0.1:${(other.address() as AddressInfo).port}`;
      const chain = stackScopes({
        inbound: [p('inbound', { setPath: '/v2/orders', setMethod: 'post', setQueryParam: 'debug' })],
        backend: [p('backend', { setBackend: `http://${otherHost}/base` }, false, { backend: { allowedHosts: [otherHost] } })],
      });
      const exchange = await run(chain);
      assert.equal(exchange.response.status, 200);
      assert.equal(text(exchange.response.body), 'other POST /base/v2/orders?a=1&debug=1');
      assert.equal(received.length, 0, 'the original backend was not called');
    } finally {
      await new Promise((r) => other.close(r));
    }
  });

  test('a response in inbound ends the chain: later policies, the backend and outbound are skipped', async () => {
    const chain = stackScopes(
      { inbound: [p('inbound', { tag: 'g' })], outbound: [p('outbound', { tag: 'out' })] },
      { inbound: [p('inbound', { tag: 'a', respond: 403 }), p('inbound', { tag: 'never' })] },
    );
    const exchange = await run(chain);
    assert.equal(exchange.response.status, 403);
    assert.equal(text(exchange.response.body), 'answered by a');
    assert.equal(header(exchange.response.headers, 'content-type'), 'text/plain');
    assert.equal(received.length, 0);
    assert.equal(exchange.variables.get('trace'), 'g,a');
    assert.deepEqual(
      exchange.timings.map((x) => x.outcome),
      ['continue', 'respond'],
    );
  });

  test('a policy failure goes to on-error with the default 500 problem response', async () => {
    const chain = stackScopes({
      inbound: [p('inbound', { tag: 'x', fail: 'secret internal detail' })],
      'on-error': [p('on-error', { tag: 'e' })],
    });
    const exchange = await run(chain);
    assert.equal(exchange.response.status, 500);
    assert.equal(header(exchange.response.headers, 'x-error-source'), 'policy:error');
    assert.equal(header(exchange.response.headers, 'x-error-handled-by'), 'e');
    assert.equal(header(exchange.response.headers, 'content-type'), 'application/problem+json');
    const problem = JSON.parse(text(exchange.response.body)) as { status: number; detail: string; requestId: string };
    assert.equal(problem.status, 500);
    assert.match(problem.detail, /failed \(error\)/);
    assert.doesNotMatch(text(exchange.response.body), /secret internal detail/, 'internal messages stay in the logs');
    assert.equal(received.length, 0);
  });

  test('an on-error policy can replace the error response', async () => {
    const chain = stackScopes({
      inbound: [p('inbound', { trap: true })],
      'on-error': [p('on-error', { tag: 'e', respond: 503 })],
    });
    const exchange = await run(chain);
    assert.equal(exchange.response.status, 503);
    assert.equal(text(exchange.response.body), 'custom error page');
    assert.equal(header(exchange.response.headers, 'x-error-source'), 'policy:trap');
  });

  test('a backend failure goes to on-error with 502', async () => {
    const chain = stackScopes({ 'on-error': [p('on-error', { tag: 'e' })] });
    const exchange = await run(chain, {}, 'http://127.0.0.1:1');
    assert.equal(exchange.response.status, 502);
    assert.equal(header(exchange.response.headers, 'x-error-source'), 'backend:unreachable');
    assert.equal(exchange.error?.source, 'backend');
  });

  test('a failing on-error policy leaves the default error response', async () => {
    const chain = stackScopes({
      inbound: [p('inbound', { fail: 'first' })],
      'on-error': [p('on-error', { fail: 'second' })],
    });
    const exchange = await run(chain);
    assert.equal(exchange.response.status, 500);
    assert.equal(exchange.error?.reason, 'error');
    assert.match(text(exchange.response.body), /"status":500/);
  });

  test('a fail-open policy that fails is skipped, with its changes undone', async () => {
    const chain = stackScopes({
      inbound: [p('inbound', { tag: 'skipped', trap: true }, true), p('inbound', { tag: 'next' })],
    });
    const exchange = await run(chain);
    assert.equal(exchange.response.status, 200);
    assert.equal(received[0]!.headers['x-trace'], 'next');
    assert.equal(exchange.variables.get('trace'), 'next');
    assert.deepEqual(
      exchange.timings.map((x) => x.outcome),
      ['failed-open', 'continue'],
    );
  });

  test('calls are timed with the clock of their budgets, read once between two calls; each budget starts from that reading', async () => {
    // A clock that moves 1 us at every reading: each call's timing is then the number of readings it took, in us. The
    // handlers return at once, so no fuel check (which would read the clock too) comes in their way.
    let readings = 0;
    const clocks = { wallMs: () => ++readings / 1000, cpuUs: () => readings };
    const { host } = newHost(undefined, clocks);
    const module = await host.load(await rawModule());
    const bindings = [0, 1, 2].map((i) => host.bind({ id: `api:clock/inbound/${i}`, phase: 'inbound', module }));
    for (const binding of bindings) await binding.warm();
    readings = 0;
    const exchange = makeExchange();
    await runChain(stackScopes({ inbound: bindings }), exchange, async () => ({ status: 200, headers: new Map(), body: null }));
    assert.deepEqual(exchange.timings.map((x) => [x.outcome, x.ms]), [['continue', 0.001], ['continue', 0.001], ['continue', 0.001]]);
    assert.equal(readings, 4, 'one reading before the first call and one after each: the budgets read none of their own');
  });

  test('an empty chain forwards the request untouched', async () => {
    const exchange = await run(EMPTY_CHAIN, { 'x-client': 'c' });
    assert.equal(exchange.response.status, 200);
    assert.equal(received[0]!.url, '/orders/7?a=1');
    assert.equal(received[0]!.headers['x-client'], 'c');
  });
});
