// Counters shared through a real redis-server: exact limits across stores and gateway processes, expiry, and Redis
// going away and coming back while requests keep being served.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { Agent, request } from 'undici';
import { assertAlwaysCounts, assertRefusalsNotCounted } from './support/counter-contract.ts';
import { RedisCounterStore } from '../runtime/state/redis-counter-store.ts';
import { Logger, memorySink, type LogRecord } from '../runtime/telemetry/logger.ts';
import { MetricsRegistry } from '../runtime/telemetry/metrics.ts';
import { startGatewayProcess, tempDir, writeConfig, type GatewayProcess } from './support/gateway-process.ts';
import { redisAvailable, startRedis, type RedisProcess } from './support/redis-process.ts';
import { waitFor, waitForAsync } from './support/wait.ts';

let redis: RedisProcess;
const agent = new Agent({ connections: 16 });

before(async () => {
  assert.ok(redisAvailable(), 'redis-server is not on PATH: install it (apt-get install redis-server); .ci/run does');
  redis = await startRedis();
});

after(async () => {
  await agent.close();
  await redis?.stop();
});

function newStore(logs: LogRecord[] = [], metrics = new MetricsRegistry()) {
  return new RedisCounterStore({ url: redis.url, logger: new Logger(memorySink(logs), 'debug'), metrics, retryAfterMs: 200 });
}

async function ready(store: RedisCounterStore): Promise<void> {
  // The first update goes to Redis once the connection is up; until then it would be counted locally.
  await waitFor('the store to reach Redis', () => store.consumeNow('probe', 1, 1_000_000, 60) === undefined);
}

describe('counters in Redis', () => {
  test('two stores (two gateways) on one Redis let exactly the limit through, however the calls interleave', async () => {
    const a = newStore();
    const b = newStore();
    try {
      await Promise.all([ready(a), ready(b)]);
      await assertRefusalsNotCounted(a, b);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('after-the-fact accounting (always) goes past the limit; an amount of 0 reads', async () => {
    const store = newStore();
    try {
      await ready(store);
      await assertAlwaysCounts(store);
    } finally {
      await store.close();
    }
  });

  test('leases: two stores share one concurrency limit; a released slot is free again; a lease of a dead gateway expires', async () => {
    const a = newStore();
    const b = newStore();
    try {
      await Promise.all([ready(a), ready(b)]);
      const taken = await Promise.all(Array.from({ length: 6 }, (_, i) => (i % 2 ? a : b).acquire('lease:k', 3, 60)));
      const granted = taken.filter((t) => t.acquired);
      assert.equal(granted.length, 3);
      assert.equal((await b.acquire('lease:k', 3, 60)).acquired, false, 'all three slots are taken');
      a.release('lease:k', granted[0]!.lease);
      // The release is sent without waiting for its answer; Redis handles one connection's commands in order, so a
      // command on the same connection after it sees it.
      assert.equal((await a.acquire('lease:k', 3, 60)).acquired, true);
      // A lease nobody releases (its gateway died) is dropped after its time to live.
      assert.equal((await a.acquire('lease:short', 1, 1)).acquired, true);
      assert.equal((await b.acquire('lease:short', 1, 1)).acquired, false);
      await new Promise((r) => setTimeout(r, 1100));
      assert.equal((await b.acquire('lease:short', 1, 1)).acquired, true);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('a window key expires in Redis a second after its window ends', async () => {
    const store = newStore();
    const client = new Redis(redis.url);
    try {
      await ready(store);
      await store.consume('expiry:k', 1, 10, 5);
      const keys = await client.keys('gatehouse:counter:expiry:k:*');
      assert.equal(keys.length, 1);
      const ttl = await client.pttl(keys[0]!);
      assert.ok(ttl > 0 && ttl <= 6000, `TTL ${ttl} ms`);
    } finally {
      client.disconnect();
      await store.close();
    }
  });

  test('Redis going away: counting goes on locally, said once in the log and in metrics; back to Redis when it returns', async () => {
    const logs: LogRecord[] = [];
    const metrics = new MetricsRegistry();
    const store = newStore(logs, metrics);
    try {
      await ready(store);
      // Another gateway counts 2, this one 1: Redis has 3 of 5.
      const other = newStore();
      try {
        await ready(other);
        for (let i = 0; i < 2; i++) assert.equal((await other.consume('outage:k', 1, 5, 3600)).allowed, true);
      } finally {
        await other.close();
      }
      assert.equal((await store.consume('outage:k', 1, 5, 3600)).count, 3);
      await redis.stop();
      try {
        const during = [];
        for (let i = 0; i < 8; i++) during.push(await store.consume('outage:k', 1, 5, 3600));
        // Locally the gateway goes on from the fleet's count Redis last gave it (3): 2 more allowed, not 5.
        assert.deepEqual(during.map((o) => o.allowed), [true, true, false, false, false, false, false, false]);
        assert.deepEqual([during[0]!.count, during[1]!.count], [4, 5]);
        // A key Redis never counted starts from zero here.
        assert.equal((await store.consume('outage:fresh', 1, 5, 3600)).count, 1);
        // More calls, some after the retry interval: each retry that fails must not be reported again.
        await new Promise((r) => setTimeout(r, 300));
        await store.consume('outage:k', 1, 5, 3600);
        assert.equal(logs.filter((l) => l.msg.startsWith('Redis unreachable')).length, 1, 'said once, not per call');
        assert.match(metrics.render(), /gatehouse_counter_store_redis_up 0/);
        assert.match(metrics.render(), /gatehouse_counter_local_fallback_total (1\d|\d\d\d+)/);
      } finally {
        await redis.start();
      }
      await waitFor('counting to return to Redis', () => store.consumeNow('outage:probe', 1, 1_000_000, 60) === undefined, 10_000);
      assert.ok(logs.some((l) => l.msg === 'Redis is back: counters are shared again'));
      assert.match(metrics.render(), /gatehouse_counter_store_redis_up 1/);
      // The restarted Redis is empty: the key counts from zero again, in Redis.
      const after = await store.consume('outage:k', 1, 5, 3600);
      assert.deepEqual([after.allowed, after.count], [true, 1]);
    } finally {
      await store.close();
    }
  });
});

describe('gateways sharing counters through Redis', () => {
  let gateways: GatewayProcess[] = [];

  before(async () => {
    const dir = tempDir();
    const config = writeConfig(
      dir,
      'gateway.yaml',
      `
version: 1
apis:
  - id: echo
    pathPrefix: /echo
    backend: { url: builtin:echo }
    policies:
      inbound:
        - policy: rate-limit-by-key
          config: { calls: 30, renewalPeriod: 3600, counterKey: { from: header, name: x-tenant } }
`,
    );
    gateways = await Promise.all(
      [0, 1].map(() => startGatewayProcess({ config, env: { GATEHOUSE_REDIS_URL: redis.url } })),
    );
    // Through the metrics gauge rather than a log line: on a loaded machine the first connection may time out, and the
    // gateway then logs the outage and the return instead of "shared".
    await Promise.all(gateways.map((g) => sharing(g, 1)));
  });

  after(async () => {
    await Promise.all(gateways.map((g) => g.stop()));
  });

  /** Until the gateway's gauge says its counters are (1) or are not (0) shared through Redis. */
  const sharing = (g: GatewayProcess, up: 0 | 1) =>
    waitForAsync(`the gateway's counters to be ${up ? '' : 'not '}shared through Redis`, async () => {
      const res = await request(`http://127.0.0.1:${g.adminPort}/metrics`, { dispatcher: agent });
      return new RegExp(`gatehouse_counter_store_redis_up ${up}\\n`).test(await res.body.text());
    }, 20_000);

  const call = async (g: GatewayProcess, tenant: string) => {
    const res = await request(`${g.url}/echo/x`, { headers: { 'x-tenant': tenant }, dispatcher: agent });
    await res.body.dump();
    return res.statusCode;
  };

  test('two gateway processes enforce one limit: exactly 30 of 60 concurrent calls pass', async () => {
    const statuses = await Promise.all(Array.from({ length: 60 }, (_, i) => call(gateways[i % 2]!, 'shared-tenant')));
    assert.equal(statuses.filter((s) => s === 200).length, 30);
    assert.equal(statuses.filter((s) => s === 429).length, 30);
  });

  test('Redis killed under traffic: every request is still answered, by local counters; Redis back, shared again', async () => {
    // Only what the gateways log from now on counts (a slow first connection may have logged an outage already).
    const marks = gateways.map((g) => g.logs.length);
    const loggedSince = (i: number, prefix: string) => gateways[i]!.logs.slice(marks[i]).some((l) => String(l.msg).startsWith(prefix));
    await redis.stop();
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 20; i++) statuses.push(await call(gateways[i % 2]!, 'outage-tenant'));
      assert.equal(statuses.filter((s) => s === 200).length, 20, `each gateway counts its own 10 calls locally, under 30: ${statuses.join(',')}`);
      await Promise.all(gateways.map((g) => sharing(g, 0)));
      // Log lines come through a pipe of their own: waited for, not assumed to be in before the metrics answer.
      for (let i = 0; i < gateways.length; i++) await waitFor(`gateway ${i} to log the outage`, () => loggedSince(i, 'Redis unreachable'));
    } finally {
      await redis.start();
    }
    await Promise.all(gateways.map((g) => sharing(g, 1)));
    for (let i = 0; i < gateways.length; i++) await waitFor(`gateway ${i} to log the return`, () => loggedSince(i, 'Redis is back'));
    const after = await Promise.all(Array.from({ length: 40 }, (_, i) => call(gateways[i % 2]!, 'after-outage')));
    assert.equal(after.filter((s) => s === 200).length, 30, 'one shared limit again');
  });
});
