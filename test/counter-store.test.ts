// The in-memory counter store keeps the contract the Redis store keeps (test/redis-counters.test.ts runs the same checks).

import { describe, test } from 'node:test';
import { MemoryCounterStore } from '../runtime/state/counter-store.ts';
import { assertAlwaysCounts, assertRefusalsNotCounted } from './support/counter-contract.ts';

describe('counters in memory', () => {
  test('exactly the limit passes; refused calls leave the count unchanged', async () => {
    const store = new MemoryCounterStore();
    await assertRefusalsNotCounted(store, store);
  });

  test('after-the-fact accounting (always) goes past the limit; an amount of 0 reads', async () => {
    await assertAlwaysCounts(new MemoryCounterStore());
  });
});
