// Gateway processes sharing counters through a real redis-server: one limit across processes, and Redis going away and
// coming back under traffic while every request is still answered. The store itself is tested in
// redis-counter-store.test.ts.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Agent, request } from 'undici';
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
    const byStatus: Record<number, number> = {};
    for (const s of statuses) byStatus[s] = (byStatus[s] ?? 0) + 1;
    // All statuses at once: a failure shows what the calls that were neither allowed nor refused got.
    assert.deepEqual(byStatus, { 200: 30, 429: 30 });
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
