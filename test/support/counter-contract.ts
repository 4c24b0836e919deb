// The CounterStore contract both stores keep (memory and Redis): one check run against each, so the two cannot drift.

import assert from 'node:assert/strict';
import type { CounterStore } from '../../runtime/state/counter-store.ts';

/**
 * 300 concurrent calls for a limit of 120, alternating between `a` and `b` (two gateways on one shared store, or the
 * same store twice): exactly the limit passes and refused calls leave the count unchanged, whole amounts included.
 */
export async function assertRefusalsNotCounted(a: CounterStore, b: CounterStore): Promise<void> {
  const calls = Array.from({ length: 300 }, (_, i) => (i % 2 === 0 ? a : b).consume('exact:k', 1, 120, 3600));
  const outcomes = await Promise.all(calls);
  assert.equal(outcomes.filter((o) => o.allowed).length, 120);
  const last = outcomes.reduce((m, o) => (o.count > m ? o.count : m), 0);
  assert.equal(last, 120, 'refused calls are not counted');
  assert.ok(outcomes.every((o) => o.resetSeconds > 0 && o.resetSeconds <= 3600));
  // An amount larger than what is left is refused whole, and leaves the count as it was.
  const big = await a.consume('exact:amount', 7, 10, 60);
  const over = await b.consume('exact:amount', 4, 10, 60);
  assert.deepEqual([big.allowed, over.allowed, over.count, over.remaining], [true, false, 7, 3]);
  const read = await a.consume('exact:amount', 0, 10, 60);
  assert.deepEqual([read.allowed, read.count], [true, 7], 'a read after a refusal sees the count the refusal left');
}

/** After-the-fact accounting (`always`) goes past the limit; an amount of 0 reads. */
export async function assertAlwaysCounts(store: CounterStore): Promise<void> {
  await store.consume('always:k', 7, 10, 60, true);
  const over = await store.consume('always:k', 7, 10, 60, true);
  assert.deepEqual([over.allowed, over.count, over.remaining], [false, 14, 0]);
  const read = await store.consume('always:k', 0, 10, 60);
  assert.deepEqual([read.allowed, read.count], [false, 14]);
}
