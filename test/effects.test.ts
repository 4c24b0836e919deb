// Effects: I/O that a policy asks for and the host performs between two calls, plus hot swaps mid-flight.

import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { PolicyFailure, type EffectRunner } from '../runtime/policy-host/index.ts';
import { runChain, stackScopes, type PolicyChain } from '../runtime/pipeline/chain.ts';
import type { ResponseState } from '../runtime/policy-host/exchange.ts';
import { GatewayEffects } from '../runtime/pipeline/effects.ts';
import { MemoryCounterStore, type CounterStore } from '../runtime/state/counter-store.ts';
import { buildFixture, makeExchange, newHost, type TestHost } from './support/policies.ts';
import { hostileModule, layout, SCRATCH } from './support/hostile-modules.ts';
import { EffectKind, Field } from '../abi/index.ts';

let t: TestHost;
let lookup: Server;
let lookupPort: number;
let lookupCalls = 0;

before(async () => {
  t = newHost();
  lookup = createServer((req, res) => {
    lookupCalls++;
    const delay = Number(new URL(req.url!, 'http://x').searchParams.get('delay') ?? 0);
    setTimeout(() => res.end(`profile for ${req.url}`), delay);
  });
  await new Promise<void>((r) => lookup.listen(0, '127.0.0.1', r));
  lookupPort = (lookup.address() as AddressInfo).port;
});

after(() => new Promise((r) => lookup.close(r)));

const ok = (): Promise<ResponseState> =>
  Promise.resolve({ status: 200, headers: new Map(), body: new TextEncoder().encode('backend') });

describe('effects', () => {
  test('COUNTER: a limit of 3 lets 3 calls through per client, then answers 429', async () => {
    const module = await t.host.load(await buildFixture('counter-limit'));
    const binding = t.host.bind({
      id: 'api:limited/inbound/0',
      phase: 'inbound',
      module,
      config: { limit: 3, period: 60 },
      grants: { counters: true },
    });
    const chain: PolicyChain = stackScopes({ inbound: [binding] });
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      const exchange = makeExchange({ clientAddress: '10.0.0.1' });
      await runChain(chain, exchange, ok);
      statuses.push(exchange.response.status);
      if (i < 3) assert.equal(exchange.request.headers.get('x-count')?.[0], String(i + 1));
    }
    assert.deepEqual(statuses, [200, 200, 200, 429, 429]);
    const other = makeExchange({ clientAddress: '10.0.0.2' });
    await runChain(chain, other, ok);
    assert.equal(other.response.status, 200, 'another client has its own counter');
    assert.equal(other.response.headers.get('ratelimit-remaining')?.[0], '2');
    // The SDK keeps the counter request it wrote last: back to the first client, its own counter again.
    const first = makeExchange({ clientAddress: '10.0.0.1' });
    await runChain(chain, first, ok);
    assert.equal(first.response.status, 429, 'the first client is still over its limit');
  });

  test('COUNTER: two bindings of the same policy never share a counter', async () => {
    const module = await t.host.load(await buildFixture('counter-limit'));
    const make = (id: string) =>
      t.host.bind({ id, phase: 'inbound', module, config: { limit: 1, period: 60 }, grants: { counters: true } });
    const a = make('api:a/inbound/0');
    const b = make('api:b/inbound/0');
    for (const binding of [a, b]) {
      const exchange = makeExchange({ clientAddress: '10.9.9.9' });
      await binding.run('inbound', exchange);
      assert.equal(exchange.responded, false);
    }
  });

  test('COUNTER: an in-memory counter completes inside the call, without a second round', async () => {
    const module = await t.host.load(await buildFixture('counter-limit'));
    const binding = t.host.bind({
      id: 'api:sync/inbound/0',
      phase: 'inbound',
      module,
      config: { limit: 2, period: 60 },
      grants: { counters: true },
    });
    await binding.warm();
    const first = makeExchange({ clientAddress: '10.1.1.1' });
    // runNow returns undefined only when the call completed synchronously: no effect round was needed.
    assert.equal(binding.runNow('inbound', first), undefined);
    assert.equal(first.request.headers.get('x-count')?.[0], '1');
    assert.equal(binding.runNow('inbound', makeExchange({ clientAddress: '10.1.1.1' })), undefined);
    const third = makeExchange({ clientAddress: '10.1.1.1' });
    assert.equal(binding.runNow('inbound', third), undefined);
    assert.equal(third.response.status, 429);
  });

  test('COUNTER: a store that answers only asynchronously (as Redis does) takes a second round, with the same outcome', async () => {
    const memory = new MemoryCounterStore();
    const later: CounterStore = {
      consume: (key, amount, limit, period) =>
        new Promise((resolve) => setTimeout(() => resolve(memory.consume(key, amount, limit, period)), 5)),
      acquire: (key, limit, ttl) => new Promise((resolve) => setTimeout(() => resolve(memory.acquire(key, limit, ttl)), 5)),
      release: (key, lease) => memory.release(key, lease),
    };
    const asyncHost = newHost(new GatewayEffects({ counters: later }));
    const module = await asyncHost.host.load(await buildFixture('counter-limit'));
    const binding = asyncHost.host.bind({
      id: 'api:async/inbound/0',
      phase: 'inbound',
      module,
      config: { limit: 2, period: 60 },
      grants: { counters: true },
    });
    await binding.warm();
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) {
      const exchange = makeExchange({ clientAddress: '10.2.2.2' });
      const pending = binding.runNow('inbound', exchange);
      assert.ok(pending instanceof Promise, 'the counter is pending in the first round');
      await pending;
      statuses.push(exchange.response.status);
    }
    assert.deepEqual(statuses, [200, 200, 429]);
  });

  test('COUNTER completed in a round that also waits for HTTP is counted once, not again in the next round', async () => {
    const module = await t.host.load(await buildFixture('http-call'));
    const binding = t.host.bind({
      id: 'api:counted-lookup/inbound/0',
      phase: 'inbound',
      module,
      config: { url: `http://127.0.0.1:${lookupPort}/counted`, countKey: 'calls' },
      grants: { http: { allowedHosts: [`127.0.0.1:${lookupPort}`] }, counters: true },
    });
    for (const expected of ['1', '2']) {
      const exchange = makeExchange();
      await binding.run('inbound', exchange);
      assert.equal(exchange.request.headers.get('x-lookup-status')?.[0], '200');
      assert.equal(exchange.request.headers.get('x-count')?.[0], expected);
    }
  });

  test('a metric emitted by a call that waited for an effect is recorded once; a failed call records none', async () => {
    const module = await t.host.load(await buildFixture('http-call'));
    const bind = (id: string, url: string) =>
      t.host.bind({ id, phase: 'inbound', module, config: { url, metric: 'lookups' }, grants: { http: { allowedHosts: [`127.0.0.1:${lookupPort}`] } } });
    await bind('metric/0', `http://127.0.0.1:${lookupPort}/m`).run('inbound', makeExchange());
    assert.match(t.host.metrics.render(), /gatehouse_policy_metric_total\{metric="lookups"\} 1\n/);
    // A host outside the grant fails the call (in the second round): nothing more is recorded.
    await bind('metric/1', 'http://example.invalid/').run('inbound', makeExchange()).catch(() => undefined);
    assert.match(t.host.metrics.render(), /gatehouse_policy_metric_total\{metric="lookups"\} 1\n/);
  });

  test('HTTP: a granted host is called by the host and the answer reaches the policy', async () => {
    const module = await t.host.load(await buildFixture('http-call'));
    const binding = t.host.bind({
      id: 'http/0',
      phase: 'inbound',
      module,
      config: { url: `http://127.0.0.1:${lookupPort}/users/42` },
      grants: { http: { allowedHosts: [`127.0.0.1:${lookupPort}`] } },
    });
    const before = lookupCalls;
    const exchange = makeExchange();
    await binding.run('inbound', exchange);
    assert.equal(exchange.request.headers.get('x-lookup-status')?.[0], '200');
    assert.equal(exchange.request.headers.get('x-lookup-body')?.[0], 'profile for /users/42');
    assert.equal(lookupCalls - before, 1, 'the effect ran once, the handler twice');
  });

  test('HTTP: an unreachable host is an answer the policy handles, not a crash', async () => {
    const module = await t.host.load(await buildFixture('http-call'));
    const binding = t.host.bind({
      id: 'http/1',
      phase: 'inbound',
      module,
      config: { url: 'http://127.0.0.1:1/' },
      grants: { http: { allowedHosts: ['127.0.0.1:1'] } },
    });
    const exchange = makeExchange();
    await binding.run('inbound', exchange);
    assert.equal(exchange.response.status, 502);
    assert.match(new TextDecoder().decode(exchange.response.body!), /lookup failed/);
  });

  test('HTTP: the event loop keeps serving while an effect waits on the network', async () => {
    const module = await t.host.load(await buildFixture('http-call'));
    const binding = t.host.bind({
      id: 'http/2',
      phase: 'inbound',
      module,
      config: { url: `http://127.0.0.1:${lookupPort}/slow?delay=200` },
      grants: { http: { allowedHosts: [`127.0.0.1:${lookupPort}`] } },
    });
    let ticks = 0;
    const timer = setInterval(() => ticks++, 10);
    const started = performance.now();
    try {
      await Promise.all(Array.from({ length: 5 }, () => binding.run('inbound', makeExchange())));
    } finally {
      // A failed call must fail the test, not leave an interval that keeps the test process from ever exiting.
      clearInterval(timer);
    }
    const took = performance.now() - started;
    assert.ok(took < 600, `5 concurrent 200 ms lookups took ${took.toFixed(0)} ms (they must overlap)`);
    assert.ok(ticks >= 10, `only ${ticks} timer ticks while waiting`);
  });

  test('a module is swapped while requests are in flight: they finish on the old one, new ones use the new one', async () => {
    const slow = t.host.bind({
      id: 'swap/v1',
      phase: 'inbound',
      module: await t.host.load(await buildFixture('http-call')),
      config: { url: `http://127.0.0.1:${lookupPort}/v1?delay=300` },
      grants: { http: { allowedHosts: [`127.0.0.1:${lookupPort}`] } },
    });
    let live: PolicyChain = stackScopes({ inbound: [slow] });
    const inFlight = Array.from({ length: 3 }, () => {
      const exchange = makeExchange();
      return runChain(live, exchange, ok).then(() => exchange);
    });
    await new Promise((r) => setTimeout(r, 50));
    // Swap: a new module (another policy) and a new chain object, as a configuration reload does.
    const next = t.host.bind({
      id: 'swap/v2',
      phase: 'inbound',
      module: await t.host.load(await buildFixture('chain-probe')),
      config: { tag: 'v2' },
    });
    live = stackScopes({ inbound: [next] });
    const fresh = makeExchange();
    await runChain(live, fresh, ok);
    assert.equal(fresh.variables.get('trace'), 'v2');
    for (const exchange of await Promise.all(inFlight)) {
      assert.equal(exchange.response.status, 200);
      assert.equal(exchange.request.headers.get('x-lookup-body')?.[0], 'profile for /v1?delay=300');
    }
  });

  test('a handler that keeps asking for new effects fails after 4 rounds, its changes undone', async () => {
    const module = await t.host.load(await buildFixture('adversarial'));
    const binding = t.host.bind({
      id: 'rounds/0',
      phase: 'inbound',
      module,
      config: { mode: 'effect-chain' },
      grants: { http: { allowedHosts: ['127.0.0.1:1'] } },
    });
    const err = await binding.run('inbound', makeExchange()).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(err instanceof PolicyFailure);
    assert.equal(err.reason, 'effects');
    assert.match(err.message, /after 4 rounds/);
  });
});

describe('effects asked for within one call', () => {
  // A module written by hand: COUNTER, then LEASE with the very same request text, then COUNTER again. The host keeps
  // each result by its kind and its text: the lease is taken (not answered with the counter's result), and the second
  // COUNTER reads the first one's result (the counter is not consumed twice).
  const request = '{"key":"shared","limit":5,"periodSeconds":60}';
  const names = ['x-counter', 'x-lease', 'x-counter-again'];
  const placed = layout([request, ...names]);
  const [req, ...headers] = placed;
  const kinds = [EffectKind.COUNTER, EffectKind.LEASE, EffectKind.COUNTER];
  const asks = kinds.map((kind, i) => {
    const buf = SCRATCH + i * 1024;
    const name = headers[i]!;
    return `(local.set $n (call $effect (i32.const ${kind}) (i32.const ${req!.ptr}) (i32.const ${req!.len}) (i32.const ${buf}) (i32.const 1024)))
      (drop (call $set (i32.const ${Field.RESPONSE_HEADER}) (i32.const ${name.ptr}) (i32.const ${name.len}) (i32.const ${buf}) (local.get $n)))`;
  });

  test('one kind\'s result is never another\'s, and one asked twice is performed once', async () => {
    const { host } = newHost();
    const module = await host.load(await hostileModule({ name: 'same-text', data: [request, ...names], locals: '(local $n i32)', inbound: `${asks.join('\n')} (i32.const 0)` }));
    const binding = host.bind({ id: 'api:same-text/inbound/0', phase: 'inbound', module, grants: { counters: true } });
    await binding.warm();
    const exchange = makeExchange();
    await binding.run('inbound', exchange);
    const header = (name: string) => JSON.parse(exchange.response.headers.get(name)?.[0] ?? 'null') as Record<string, unknown>;
    assert.equal(header('x-counter').count, 1);
    assert.equal(header('x-lease').acquired, true);
    assert.deepEqual(header('x-counter-again'), header('x-counter'));
    // The next request's call counts once more: 2, not 3.
    const next = makeExchange();
    await binding.run('inbound', next);
    assert.equal((JSON.parse(next.response.headers.get('x-counter')![0]!) as { count: number }).count, 2);
  });
});

describe('counter results as another host may write them', () => {
  // The gateway writes a counter result as one flat object without spaces, which the SDK reads byte by byte; any other
  // spelling of the same JSON must read the same, through the SDK's JSON reader.
  const answering = (result: string): EffectRunner => ({
    perform: async () => result,
    performNow: () => result,
  });
  const spellings: Array<[string, string]> = [
    ['as the gateway writes it', '{"allowed":true,"count":7,"limit":10,"remaining":3,"resetSeconds":42}'],
    ['keys in another order, with spaces', '{ "resetSeconds": 42, "remaining": 3, "limit": 10, "count": 7, "allowed": true }'],
    ['a key the SDK does not know, after the ones it read', '{"allowed":true,"count":7,"limit":10,"remaining":3,"resetSeconds":42,"window":"fixed"}'],
    ['an escaped key', '{"allowed":true,"count":7,"limit":10,"remaining":3,"reset\\u0053econds":42}'],
  ];
  for (const [how, result] of spellings) {
    test(`the same result, ${how}`, async () => {
      const { host } = newHost(answering(result));
      const module = await host.load(await buildFixture('rate-limit'));
      const binding = host.bind({ id: 'api:spelt/inbound/0', phase: 'inbound', module, config: { calls: 10, renewalPeriod: 60 }, grants: { counters: true } });
      const exchange = makeExchange();
      await binding.run('inbound', exchange);
      assert.equal(exchange.responded, false);
      assert.deepEqual(
        ['ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset'].map((h) => exchange.response.headers.get(h)?.[0]),
        ['10', '3', '42'],
      );
    });
  }

  test('a refusal, large and negative figures: headers carry them digit for digit', async () => {
    const cases: Array<[string, { status: number; remaining: string; reset: string; retry?: string }]> = [
      ['{"allowed":false,"count":10,"limit":10,"remaining":0,"resetSeconds":5}', { status: 429, remaining: '0', reset: '5', retry: '5' }],
      // 18 digits are read byte by byte; 19 go to the JSON reader.
      ['{"allowed":true,"count":1,"limit":10,"remaining":123456789012345678,"resetSeconds":9223372036854775807}', { status: 200, remaining: '123456789012345678', reset: '9223372036854775807' }],
      ['{"allowed":true,"count":1,"limit":10,"remaining":-4,"resetSeconds":0}', { status: 200, remaining: '-4', reset: '0' }],
    ];
    for (const [result, want] of cases) {
      const { host } = newHost(answering(result));
      const module = await host.load(await buildFixture('rate-limit'));
      const binding = host.bind({ id: 'api:figures/inbound/0', phase: 'inbound', module, config: { calls: 10, renewalPeriod: 60 }, grants: { counters: true } });
      const exchange = makeExchange();
      await binding.run('inbound', exchange);
      const header = (name: string) => exchange.response.headers.get(name)?.[0];
      assert.equal(exchange.response.status, want.status, result);
      assert.equal(header('ratelimit-remaining'), want.remaining, result);
      assert.equal(header('ratelimit-reset'), want.reset, result);
      assert.equal(header('retry-after'), want.retry, result);
    }
  });

  test('a result that is not the JSON object the SDK expects fails the call, naming the counter', async () => {
    const { host } = newHost(answering('{"allowed":true,"count":7'));
    const module = await host.load(await buildFixture('rate-limit'));
    const binding = host.bind({ id: 'api:broken/inbound/0', phase: 'inbound', module, config: { calls: 10, renewalPeriod: 60 }, grants: { counters: true } });
    const failure = await binding.run('inbound', makeExchange()).then(
      () => assert.fail('the call succeeded'),
      (err: unknown) => err as PolicyFailure,
    );
    assert.ok(failure instanceof PolicyFailure);
    assert.match(failure.message, /counter\("ip:127\.0\.0\.1"\): malformed result from the host/);
  });
});
