// 100,000 consecutive calls on one policy: no error, no leak of kernel blocks or module memory.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildFixture, makeExchange, newHost } from './support/policies.ts';

test('100,000 consecutive calls of one policy succeed, with stable memory', async () => {
  const { host } = newHost();
  const module = await host.load(await buildFixture('check-header'));
  const binding = host.bind({
    id: 'sustained/0',
    phase: 'inbound',
    module,
    config: { name: 'x-api-key', values: ['demo-key'] },
  });
  const good = makeExchange({ headers: { 'x-api-key': 'demo-key' } });
  let refused = 0;
  const heapAt = (i: number) => (i === 1000 ? process.memoryUsage().heapUsed : 0);
  let heapEarly = 0;
  for (let i = 0; i < 100_000; i++) {
    // Every 10th request has a wrong key, so both paths of the policy are exercised.
    const exchange = i % 10 === 9 ? makeExchange({ headers: { 'x-api-key': `wrong-${i}` } }) : good;
    await binding.run('inbound', exchange);
    if (exchange.responded) refused++;
    heapEarly ||= heapAt(i);
  }
  assert.equal(binding.stats.calls, 100_000);
  assert.equal(binding.stats.failures, 0);
  assert.equal(refused, 10_000);
  const grownMiB = (process.memoryUsage().heapUsed - heapEarly) / (1 << 20);
  assert.ok(grownMiB < 64, `the JS heap grew by ${grownMiB.toFixed(1)} MiB over 100,000 calls`);
});
