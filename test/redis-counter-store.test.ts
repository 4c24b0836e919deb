// The Redis counter store against a real redis-server: the contract the memory store keeps (exact limits across two
// stores, as two gateways), leases, key expiry, and Redis going away and coming back while counting goes on locally.

import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { assertAlwaysCounts, assertRefusalsNotCounted, assertSlots } from './support/counter-contract.ts';
import { RedisCounterStore } from '../runtime/state/redis-counter-store.ts';
import { Logger, memorySink, type LogRecord } from '../runtime/telemetry/logger.ts';
import { MetricsRegistry } from '../runtime/telemetry/metrics.ts';
import { freePort, REFUSED_PORT } from './support/ports.ts';
import { redisAvailable, startRedis, type RedisProcess } from './support/redis-process.ts';
import { waitFor, waitForAsync } from './support/wait.ts';

let redis: RedisProcess;

before(async () => {
  assert.ok(redisAvailable(), 'redis-server is not on PATH: install it (apt-get install redis-server); .ci/run does');
  redis = await startRedis();
});

after(async () => {
  await redis?.stop();
});


/**
 * A store on the test's Redis. Its commands may take 2 s (not 250 ms) before they count as Redis being unreachable: on
 * a loaded machine, 300 concurrent commands can take longer than 250 ms, and counting locally would then let more than
 * the limit through (the stalling test is the one about timeouts).
 */
function newStore(logs: LogRecord[] = [], metrics = new MetricsRegistry()) {
  const logger = new Logger(memorySink(logs), 'debug');
  return new RedisCounterStore({ url: redis.url, logger, metrics, retryAfterMs: 200, commandTimeoutMs: 2000 });
}

/** Updates this store has answered locally: gatehouse_counter_local_fallback_total. */
function localUpdates(metrics: MetricsRegistry): number {
  return Number(/gatehouse_counter_local_fallback_total (\d+)/.exec(metrics.render())?.[1] ?? 0);
}

async function ready(store: RedisCounterStore): Promise<void> {
  // The first update goes to Redis once the connection is up; until then it would be counted locally.
  await waitFor('the store to reach Redis', () => store.consumeNow('probe', 1, 1_000_000, 60) === undefined);
}

describe('counters in Redis', () => {
  test('the first connection: settled once Redis answers its ready check, and the first update then goes to Redis', async () => {
    const metrics = new MetricsRegistry();
    const store = newStore([], metrics);
    try {
      await store.firstConnection();
      assert.match(metrics.render(), /gatehouse_counter_store_redis_up 1\n/);
      assert.equal(store.consumeNow('first', 1, 10, 60), undefined, 'the update waits for Redis');
      assert.equal((await store.consume('first', 1, 10, 60)).count, 1);
      assert.equal(localUpdates(metrics), 0);
    } finally {
      await store.close();
    }
  });

  test('the first connection refused, or accepted and never answered: settled all the same, counting locally', async () => {
    // Nothing listens on the refused port; the silent server accepts connections and never writes a byte.
    const silent = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const silentPort = (silent.address() as { port: number }).port;
    try {
      // The bound for a silent server: the connect timeout (1,000 ms), a command's (250 ms) and 250 ms, and slack.
      for (const [what, port, withinMs] of [['refused', REFUSED_PORT, 1000], ['never answered', silentPort, 2500]] as const) {
        const logs: LogRecord[] = [];
        const metrics = new MetricsRegistry();
        const store = new RedisCounterStore({ url: `redis://127.0.0.1:${port}`, logger: new Logger(memorySink(logs), 'debug'), metrics });
        try {
          const started = Date.now();
          await store.firstConnection();
          const tookMs = Date.now() - started;
          assert.ok(tookMs < withinMs, `${what}: settled after ${tookMs} ms`);
          assert.match(metrics.render(), /gatehouse_counter_store_redis_up 0\n/, what);
          assert.equal(store.consumeNow('first', 1, 10, 60)?.count, 1, `${what}: counted here`);
          assert.ok(logs.some((l) => l.msg.startsWith('Redis unreachable')), `${what}: said in the log`);
        } finally {
          await store.close();
        }
      }
    } finally {
      silent.close();
    }
  });

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
      await assertSlots(a, b);
      const taken = await Promise.all(Array.from({ length: 6 }, (_, i) => (i % 2 ? a : b).acquire('lease:k', 3, 60)));
      assert.equal(taken.filter((t) => t.acquired).length, 3, 'however the calls interleave');
      // A lease nobody releases (its gateway died) is dropped after its time to live (0.2 s here), by Redis's clock.
      assert.equal((await a.acquire('lease:short', 1, 0.2)).acquired, true);
      assert.equal((await b.acquire('lease:short', 1, 0.2)).acquired, false, 'held within its time to live');
      await waitForAsync('the lease to expire', async () => (await b.acquire('lease:short', 1, 0.2)).acquired, 2000);
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
      assert.deepEqual([logs[0]!.level, logs[0]!.msg, logs[0]!.redis], ['info', 'counters are shared through Redis', `127.0.0.1:${redis.port}`]);
      assert.equal(store.acquireNow('outage:slot', 1, 60), undefined, 'with Redis up, a slot is a round trip');
      // Another gateway counts 2, this one 1: Redis has 3 of 5.
      const other = newStore();
      try {
        await ready(other);
        for (let i = 0; i < 2; i++) assert.equal((await other.consume('outage:k', 1, 5, 3600)).allowed, true);
      } finally {
        await other.close();
      }
      assert.equal((await store.consume('outage:k', 1, 5, 3600)).count, 3);
      const redisLease = await store.acquire('outage:redis-slot', 1, 60);
      await redis.stop();
      // In Redis's place, a listener that counts the store's attempts to reconnect and closes each at once.
      const attempts: number[] = [];
      const stand = createServer((socket) => {
        attempts.push(Date.now());
        socket.destroy();
      });
      await new Promise<void>((resolve) => stand.listen(redis.port, '127.0.0.1', resolve));
      const standSince = Date.now();
      try {
        await waitFor('the store to see Redis gone', () => store.consumeNow('outage:probe', 0, 1, 60) !== undefined);
        const warned = logs.filter((l) => l.msg.startsWith('Redis unreachable'));
        assert.equal(warned.length, 1);
        assert.ok(String(warned[0]!.error ?? '').length > 0, 'the warning says what happened');
        const during = [];
        for (let i = 0; i < 8; i++) during.push(await store.consume('outage:k', 1, 5, 3600));
        // Locally the gateway goes on from the fleet's count Redis last gave it (3): 2 more allowed, not 5.
        assert.deepEqual(during.map((o) => o.allowed), [true, true, false, false, false, false, false, false]);
        assert.deepEqual([during[0]!.count, during[1]!.count], [4, 5]);
        // A key Redis never counted starts from zero here.
        assert.equal((await store.consume('outage:fresh', 1, 5, 3600)).count, 1);
        // Every update answered here is one more in the fallback metric, whichever call made it.
        for (const local of [
          () => store.consume('outage:each', 1, 5, 60),
          () => store.consumeNow('outage:each', 1, 5, 60),
          () => store.acquire('outage:slot', 1, 60),
          () => store.acquireNow('outage:slot', 1, 60),
        ]) {
          const before = localUpdates(metrics);
          assert.notEqual(await local(), undefined);
          assert.equal(localUpdates(metrics), before + 1);
        }
        // Slots are held here too; a local lease is released here, a lease Redis granted waits for its expiry there.
        assert.equal((await store.acquire('outage:slot', 1, 60)).acquired, false);
        store.release('outage:slot', 'local');
        assert.deepEqual(await store.acquire('outage:slot', 1, 60), { acquired: true, count: 1, limit: 1, lease: 'local' });
        store.release('outage:redis-slot', redisLease.lease);
        // Reconnection is tried again after 100 ms x the attempt's number (at most 2 s): three attempts take 100 +
        // 200 + 300 ms at least. Timers fire late, never early, on a loaded machine: 500 ms leaves 100 ms for the first
        // wait having begun just before the listener was up. Each attempt connects and is closed again: none is
        // reported again, and neither is the retry interval (200 ms) passing.
        await waitFor('three attempts to reconnect', () => attempts.length >= 3, 5000);
        assert.ok(attempts[2]! - standSince >= 500, `3 attempts in ${attempts[2]! - standSince} ms`);
        assert.notEqual(store.consumeNow('outage:k', 0, 5, 3600), undefined);
        assert.equal(logs.filter((l) => l.msg.startsWith('Redis unreachable')).length, 1, 'said once, not per call');
        assert.match(metrics.render(), /gatehouse_counter_store_redis_up 0\n/);
      } finally {
        await new Promise((resolve) => stand.close(resolve));
        await redis.start();
      }
      await waitFor('counting to return to Redis', () => store.consumeNow('outage:probe', 1, 1_000_000, 60) === undefined, 10_000);
      const back = logs.filter((l) => l.msg === 'Redis is back: counters are shared again');
      assert.deepEqual(back.map((l) => [l.level, l.redis]), [['info', `127.0.0.1:${redis.port}`]]);
      assert.match(metrics.render(), /gatehouse_counter_store_redis_up 1\n/);
      // The restarted Redis is empty: the key counts from zero again, in Redis.
      const after = await store.consume('outage:k', 1, 5, 3600);
      assert.deepEqual([after.allowed, after.count], [true, 1]);
    } finally {
      await store.close();
    }
  });

  test('Redis stalling: a command slower than 250 ms counts locally; Redis is tried again a second later, not before', { timeout: 20_000 }, async () => {
    const client = new Redis(redis.url);
    const pid = Number(/process_id:(\d+)/.exec(await client.info('server'))![1]);
    // Two stores go through the same stall, one failing first on a counter and the other on a slot (then the other way
    // round for the retry and the return), so that each of the four calls is seen to fail over and to come back.
    const stores = (['counter', 'slot'] as const).map((first) => {
      const logs: LogRecord[] = [];
      const metrics = new MetricsRegistry();
      // The defaults: a command times out after 250 ms, Redis is tried again 1,000 ms after a failure.
      const store = new RedisCounterStore({ url: redis.url, logger: new Logger(memorySink(logs), 'debug'), metrics });
      const update = (slot: boolean) => (slot ? store.acquire(`stall:${first}`, 10, 60) : store.consume(`stall:${first}`, 1, 10, 3600));
      const local = () => store.consumeNow('stall:probe', 0, 1, 60) !== undefined;
      const warnings = () => logs.filter((l) => l.msg.startsWith('Redis unreachable'));
      return { first, store, logs, metrics, local, warnings, firstUpdate: () => update(first === 'slot'), otherUpdate: () => update(first !== 'slot') };
    });
    try {
      await Promise.all(stores.map(({ store }) => ready(store)));
      for (const { firstUpdate } of stores) assert.equal((await firstUpdate()).count, 1);
      // A stopped process keeps its connections open: the stores' commands go unanswered instead of failing.
      process.kill(pid, 'SIGSTOP');
      try {
        await Promise.all(
          stores.map(async ({ first, local, warnings, metrics, firstUpdate, otherUpdate }) => {
            const stalled = await firstUpdate();
            // A counter goes on from the count Redis last gave (1); slots are counted here from none.
            assert.equal(stalled.count, first === 'counter' ? 2 : 1);
            assert.equal(warnings().length, 1);
            assert.match(String(warnings()[0]!.error), /timed out/i);
            assert.match(metrics.render(), /gatehouse_counter_store_redis_up 0\n/);
            assert.equal(local(), true, 'the connection is up, but the retry is not due yet');
            const failedAt = Date.now();
            await waitFor('the retry to be due', () => !local(), 3000);
            // 50 ms less than the interval, for the store's clock and this test's read apart.
            assert.ok(Date.now() - failedAt >= 950, `retried after ${Date.now() - failedAt} ms`);
            // The retry times out too: the next is a full interval later again, not at every call.
            await otherUpdate();
            assert.equal(local(), true, 'a failed retry puts the next one off');
            assert.equal(warnings().length, 1, 'said once');
          }),
        );
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      await Promise.all(
        stores.map(async ({ local, logs, metrics, firstUpdate }) => {
          await waitFor('the retry to be due', () => !local(), 3000);
          // Only an update that Redis answers brings counting back: the connection never went down.
          await firstUpdate();
          assert.ok(logs.some((l) => l.msg === 'Redis is back: counters are shared again'));
          assert.match(metrics.render(), /gatehouse_counter_store_redis_up 1\n/);
          assert.equal(local(), false);
        }),
      );
    } finally {
      client.disconnect();
      await Promise.all(stores.map(({ store }) => store.close()));
    }
  });

  test('a closed store reports no outage: its own disconnection is not Redis going away', async () => {
    const logs: LogRecord[] = [];
    const metrics = new MetricsRegistry();
    const store = newStore(logs, metrics);
    const client = new Redis(redis.url);
    const connections = async () => String(await client.client('LIST')).trim().split('\n').length;
    try {
      await ready(store);
      const withStore = await connections();
      await store.close();
      await waitForAsync('Redis to see the store disconnect', async () => (await connections()) < withStore);
      // Redis has closed its end; the store's socket closes when that reaches it, within a millisecond on loopback:
      // 100 ms leaves room for a loaded machine.
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(logs.filter((l) => l.level === 'warn'), []);
      assert.match(metrics.render(), /gatehouse_counter_store_redis_up 1\n/);
    } finally {
      client.disconnect();
    }
  });

  test('logs name Redis by host and port (6379 when the URL names none), never by the URL and its password', async () => {
    const port = await freePort();
    const logs: LogRecord[] = [];
    const unreachable = new RedisCounterStore({ url: `redis://:s3cret@127.0.0.1:${port}`, logger: new Logger(memorySink(logs), 'debug'), metrics: new MetricsRegistry() });
    try {
      await waitFor('the refused connection to be logged', () => logs.length > 0);
      const [line] = logs;
      assert.deepEqual([line!.level, line!.msg, line!.component, line!.redis], ['warn', 'Redis unreachable: counting in this gateway until it is back', 'counters', `127.0.0.1:${port}`]);
      assert.match(String(line!.error), /ECONNREFUSED/);
      assert.match(String(line!.action), new RegExp(`reaches 127\\.0\\.0\\.1:${port} \\(GATEHOUSE_REDIS_URL\\)`));
      assert.doesNotMatch(JSON.stringify(logs), /s3cret/);
      // Counting goes on here meanwhile.
      assert.equal(unreachable.consumeNow('k', 1, 5, 60)?.count, 1);
    } finally {
      await unreachable.close();
    }
    const badLogs: LogRecord[] = [];
    // host:port without a scheme: ioredis connects to it (refused here), the URL parser refuses it.
    const badUrl = new RedisCounterStore({ url: `127.0.0.1:${port}`, logger: new Logger(memorySink(badLogs), 'debug'), metrics: new MetricsRegistry() });
    try {
      await waitFor('the failed connection to be logged', () => badLogs.length > 0);
      assert.equal(badLogs[0]!.redis, '(GATEHOUSE_REDIS_URL)', 'a URL that cannot be parsed is named by its setting');
    } finally {
      await badUrl.close();
    }
    const defaultPort: LogRecord[] = [];
    const noPort = new RedisCounterStore({ url: 'redis://127.0.0.1', logger: new Logger(memorySink(defaultPort), 'debug'), metrics: new MetricsRegistry() });
    try {
      // Refused, or shared if a Redis runs there: either way the line names the address.
      await waitFor('the first connection to be logged', () => defaultPort.length > 0);
      assert.equal(defaultPort[0]!.redis, '127.0.0.1:6379');
    } finally {
      await noPort.close();
    }
  });
});

