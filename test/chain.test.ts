// Chain semantics with real compiled policies, a real HTTP backend on 127.0.0.1 and undici forwarding.

import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { Grants, PolicyBinding, PolicyModule, Phase } from '../runtime/policy-host/index.ts';
import { EMPTY_CHAIN, PhaseBatches, runChain, stackScopes, type ChainStep, type PolicyChain } from '../runtime/pipeline/chain.ts';
import { PolicyFailure } from '../runtime/policy-host/errors.ts';
import type { Exchange, ResponseState } from '../runtime/policy-host/exchange.ts';
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

/**
 * A host step of the test's own, beside the real policies: it notes each exchange it runs for (`id:request id`, in
 * `seen`), and does what the request's `x-step-<id>` header asks: `answer` (a 204), `fail` (a policy failure), `wait`
 * (completes after 5 ms, as a call waiting for an effect does).
 */
function noting(id: string, seen: string[], failOpen = false): ChainStep {
  return {
    id,
    failOpen,
    wallMs: () => performance.now(),
    runNow(_phase: Phase, exchange: Exchange) {
      seen.push(`${id}:${exchange.requestId}`);
      const asked = exchange.request.headers.get(`x-step-${id}`)?.[0];
      if (asked === 'fail') throw new PolicyFailure(id, 'abort', 'asked to');
      if (asked === 'wait') return new Promise<void>((resolve) => setTimeout(resolve, 5));
      if (asked === 'answer') {
        exchange.response.status = 204;
        exchange.responded = true;
      }
      return undefined;
    },
  };
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

  test('exchanges that reach a phase in the same turn run it step by step, each call on its own exchange', async () => {
    const seen: string[] = [];
    const chain = stackScopes({
      inbound: [noting('s1', seen), p('inbound', { tag: 'a', copyVarToHeader: 'trace' }), noting('s2', seen), p('inbound', { tag: 'b' })],
      outbound: [noting('s3', seen), p('outbound', { tag: 'out' })],
    });
    const runAll = async (batches: PhaseBatches | null) => {
      seen.length = 0;
      received = [];
      const exchanges = ['/x', '/y', '/z'].map((path) => {
        const exchange = makeExchange({ path, headers: { 'x-client': path } });
        exchange.backendUrl = backendUrl;
        return exchange;
      });
      await Promise.all(exchanges.map((exchange) => runChain(chain, exchange, forward, {}, batches)));
      return exchanges;
    };
    const [x, y, z] = await runAll(new PhaseBatches());
    const ids = (...parts: Array<[string, Exchange]>) => parts.map(([step, e]) => `${step}:${e.requestId}`);
    assert.deepEqual(seen.slice(0, 6), ids(['s1', x!], ['s1', y!], ['s1', z!], ['s2', x!], ['s2', y!], ['s2', z!]), 'inbound: one step for all, then the next');
    assert.deepEqual([...seen.slice(6)].sort(), ids(['s3', x!], ['s3', y!], ['s3', z!]).sort());
    for (const e of [x!, y!, z!]) {
      assert.equal(e.response.status, 200);
      assert.equal(e.variables.get('trace'), 'a,b,out');
      assert.deepEqual(e.timings.map((t) => t.outcome), ['continue', 'continue', 'continue', 'continue', 'continue', 'continue']);
      const request = received.find((r) => r.url === e.request.path);
      assert.ok(request, `the backend received ${e.request.path}`);
      assert.equal(request.headers['x-client'], e.request.path, 'each request reached the backend with its own headers');
      assert.equal(request.headers['x-var-trace'], 'a');
      assert.equal(request.headers['x-trace'], 'a, b');
    }
    // The same chain run without batches: one exchange's phase, then the next's.
    const [u, v] = await runAll(null);
    assert.deepEqual(seen.slice(0, 4), ids(['s1', u!], ['s2', u!], ['s1', v!], ['s2', v!]));
  });

  test('in a batch, an exchange whose policy answers, fails or waits leaves it; the others go on', async () => {
    const seen: string[] = [];
    const chain = stackScopes({
      inbound: [noting('s1', seen), noting('s2', seen), p('inbound', { tag: 'last' })],
      'on-error': [p('on-error', { tag: 'err' })],
    });
    const asks = { plain: {}, answers: { 'x-step-s1': 'answer' }, fails: { 'x-step-s1': 'fail' }, waits: { 'x-step-s1': 'wait' } };
    const exchanges = Object.values(asks).map((headers) => {
      const exchange = makeExchange({ headers });
      exchange.backendUrl = backendUrl;
      return exchange;
    });
    await Promise.all(exchanges.map((exchange) => runChain(chain, exchange, forward, {}, new PhaseBatches())));
    const [plain, answers, fails, waits] = exchanges;
    assert.equal(plain!.response.status, 200);
    assert.equal(plain!.variables.get('trace'), 'last');
    assert.equal(answers!.response.status, 204);
    assert.deepEqual(answers!.timings.map((t) => t.outcome), ['respond']);
    assert.equal(fails!.response.status, 500);
    assert.equal(header(fails!.response.headers, 'x-error-handled-by'), 'err');
    assert.deepEqual(fails!.timings.map((t) => t.outcome).slice(0, 1), ['failed']);
    assert.equal(waits!.response.status, 200);
    assert.equal(waits!.variables.get('trace'), 'last', 'the exchange that waited ran the rest of its phase');
    assert.deepEqual(waits!.timings.map((t) => t.outcome), ['continue', 'continue', 'continue']);
    assert.ok(waits!.timings[0]!.ms >= 4, `the call that waited is timed to its end (${waits!.timings[0]!.ms} ms)`);
    // Each exchange had its own batch here: the order within one batch is the test above's.
    assert.equal(seen.filter((s) => s.startsWith('s2:')).length, 2, 'the step after the answer and the failure ran for two exchanges');
  });

  test('a batch that fills up runs at once; the next exchanges start another', async () => {
    const seen: string[] = [];
    const chain = stackScopes({ inbound: [noting('s1', seen), noting('s2', seen)] });
    const batches = new PhaseBatches(2);
    const exchanges = [0, 1, 2].map(() => makeExchange());
    const done = exchanges.map((exchange) => runChain(chain, exchange, async () => ({ status: 200, headers: new Map(), body: null }), {}, batches));
    // The first two ran when the second joined, before this turn ended; the third waits for the end of the turn.
    const [first, second, third] = exchanges.map((e) => e.requestId);
    assert.deepEqual(seen, [`s1:${first}`, `s1:${second}`, `s2:${first}`, `s2:${second}`]);
    await Promise.all(done);
    assert.deepEqual(seen.slice(4), [`s1:${third}`, `s2:${third}`]);
  });

  test('a batch is one phase of one set of steps: the same steps joined for two phases run in each', async () => {
    const seen: string[] = [];
    const steps = [noting('s1', seen)];
    const batches = new PhaseBatches();
    const [a, b] = [makeExchange(), makeExchange()];
    await Promise.all([batches.join('inbound', steps, a, {}), batches.join('outbound', steps, b, {})]);
    assert.deepEqual(a.timings.map((t) => t.phase), ['inbound']);
    assert.deepEqual(b.timings.map((t) => t.phase), ['outbound']);
    assert.deepEqual(seen, [`s1:${a.requestId}`, `s1:${b.requestId}`]);
  });

  test('with no policy before the backend, or after it, exchanges wait for the end of their turn: the calls go out together, then the answers', async () => {
    const events: string[] = [];
    const batches = new PhaseBatches();
    const answers: Array<() => void> = [];
    const forwardLater = (exchange: Exchange) =>
      new Promise<ResponseState>((resolve) => {
        events.push(`forward ${exchange.requestId}`);
        answers.push(() => resolve({ status: 200, headers: new Map(), body: null }));
      });
    const [a, b, c] = [makeExchange(), makeExchange(), makeExchange()];
    const inTurn = <T>(work: () => T, mark: string) =>
      new Promise<T>((resolve) =>
        setTimeout(() => {
          // Scheduled before the work: the end of the turn as a callback that runs ahead of the batches'.
          setImmediate(() => events.push(mark));
          resolve(work());
        }, 0),
      );
    // One turn reads three requests; another reads their backends' answers.
    // In an object: a promise handed to resolve would be waited for.
    const { done } = await inTurn(
      () => ({ done: Promise.all([a!, b!, c!].map((e) => runChain(EMPTY_CHAIN, e, forwardLater, {}, batches).then(() => events.push(`answered ${e.requestId}`)))) }),
      'end of the requests turn',
    );
    await new Promise((resolve) => setTimeout(resolve, 5));
    await inTurn(() => answers.forEach((answer) => answer()), 'end of the answers turn');
    await done;
    const each = (what: string) => [a!, b!, c!].map((e) => `${what} ${e.requestId}`);
    assert.deepEqual(events, ['end of the requests turn', ...each('forward'), 'end of the answers turn', ...each('answered')]);

    // MAX_BATCH of them do not wait: the first two go when the second joins, the third at the end of the turn.
    events.length = 0;
    answers.length = 0;
    const three = [makeExchange(), makeExchange(), makeExchange()];
    const twoAtMost = new PhaseBatches(2);
    const capped = await inTurn(() => ({ all: Promise.all(three.map((e) => runChain(EMPTY_CHAIN, e, forwardLater, {}, twoAtMost))) }), 'end of the turn');
    await new Promise((resolve) => setTimeout(resolve, 5));
    answers.forEach((answer) => answer());
    await capped.all;
    assert.deepEqual(events, [`forward ${three[0]!.requestId}`, `forward ${three[1]!.requestId}`, 'end of the turn', `forward ${three[2]!.requestId}`]);
  });

  test('an empty chain forwards the request untouched', async () => {
    const exchange = await run(EMPTY_CHAIN, { 'x-client': 'c' });
    assert.equal(exchange.response.status, 200);
    assert.equal(received[0]!.url, '/orders/7?a=1');
    assert.equal(received[0]!.headers['x-client'], 'c');
  });
});
