// Effects are bounded: at most MAX_EFFECTS_PER_CALL distinct effects in one handler call, and at most
// MAX_EFFECTS_PER_REQUEST performed with I/O for one request by all the policies of its chain. Before, only the output
// cap bounded them, and one request held 200 effects in flight at once.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { MAX_EFFECTS_PER_CALL, MAX_EFFECTS_PER_REQUEST } from '../runtime/policy-host/index.ts';
import { GatewayEffects } from '../runtime/pipeline/effects.ts';
import { RedisCounterStore } from '../runtime/state/redis-counter-store.ts';
import { Logger, memorySink } from '../runtime/telemetry/logger.ts';
import { MetricsRegistry } from '../runtime/telemetry/metrics.ts';
import { hostileModule, layout, SCRATCH } from './support/hostile-modules.ts';
import { makeExchange, newHost, policyFailure } from './support/policies.ts';
import { redisAvailable, startRedis, type RedisProcess } from './support/redis-process.ts';
import { waitFor } from './support/wait.ts';

/** A handler asking for `count` distinct COUNTER effects in one call (each reads its counter). */
function askingFor(count: number) {
  const requests = Array.from({ length: count }, (_, i) => `{"key":"k${i}","limit":1000,"periodSeconds":60,"amount":0}`);
  const placed = layout(requests);
  return hostileModule({
    name: `effects-${count}`,
    data: requests,
    inbound: `${placed
      .map((r) => `(drop (call $effect (i32.const 1) (i32.const ${r.ptr}) (i32.const ${r.len}) (i32.const ${SCRATCH}) (i32.const 256)))`)
      .join('\n')} (i32.const 0)`,
  });
}

describe('effect limits', () => {
  let redis: RedisProcess;
  let store: RedisCounterStore;

  before(async () => {
    assert.ok(redisAvailable(), 'redis-server is not on PATH: install it (apt-get install redis-server); .ci/run does');
    redis = await startRedis();
    store = new RedisCounterStore({ url: redis.url, logger: new Logger(() => undefined), metrics: new MetricsRegistry() });
    await waitFor('the store to reach Redis', () => store.consumeNow('probe', 1, 1_000_000, 60) === undefined);
  });

  after(async () => {
    await store?.close();
    await redis?.stop();
  });

  test(`a call may ask for ${MAX_EFFECTS_PER_CALL} effects; the next one fails it`, async () => {
    const t = newHost();
    const most = await t.host.load(await askingFor(MAX_EFFECTS_PER_CALL));
    await t.host.bind({ id: 'most', phase: 'inbound', module: most, grants: { counters: true } }).run('inbound', makeExchange());
    const over = await t.host.load(await askingFor(MAX_EFFECTS_PER_CALL + 1));
    const err = await policyFailure(t.host.bind({ id: 'over', phase: 'inbound', module: over, grants: { counters: true } }).run('inbound', makeExchange()));
    assert.equal(err.reason, 'effects');
    assert.match(err.message, new RegExp(`asked for more than ${MAX_EFFECTS_PER_CALL} effects in one call`));
  });

  test(`the policies of one request may have ${MAX_EFFECTS_PER_REQUEST} effects performed; the call asking for more fails`, async () => {
    const logs: never[] = [];
    const t = newHost(new GatewayEffects({ counters: store, logger: new Logger(memorySink(logs)) }));
    const module = await t.host.load(await askingFor(MAX_EFFECTS_PER_CALL));
    const chain = Array.from({ length: MAX_EFFECTS_PER_REQUEST / MAX_EFFECTS_PER_CALL + 1 }, (_, i) =>
      t.host.bind({ id: `chain/${i}`, phase: 'inbound', module, grants: { counters: true } }),
    );
    const exchange = makeExchange();
    for (const binding of chain.slice(0, -1)) await binding.run('inbound', exchange);
    assert.equal(exchange.effectsPerformed, MAX_EFFECTS_PER_REQUEST);
    const err = await policyFailure(chain.at(-1)!.run('inbound', exchange));
    assert.equal(err.reason, 'effects');
    assert.match(err.message, new RegExp(`more than ${MAX_EFFECTS_PER_REQUEST} effects`));
    // Another request starts from none.
    await chain.at(-1)!.run('inbound', makeExchange());
  });
});
