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

/**
 * Concurrency slots: `limit` slots of a key are granted across `a` and `b`, each with a lease; the next is refused with
 * no lease; a released slot is granted again; another key has slots of its own.
 */
export async function assertSlots(a: CounterStore, b: CounterStore): Promise<void> {
  const first = await a.acquire('slots:k', 2, 60);
  const second = await b.acquire('slots:k', 2, 60);
  assert.deepEqual([first.acquired, first.count, first.limit, second.acquired, second.count], [true, 1, 2, true, 2]);
  assert.ok(first.lease !== '' && second.lease !== '', 'a granted slot comes with a lease');
  const refused = await a.acquire('slots:k', 2, 60);
  assert.deepEqual(refused, { acquired: false, count: 2, limit: 2, lease: '' });
  assert.equal((await b.acquire('slots:other', 2, 60)).count, 1, 'another key has slots of its own');
  a.release('slots:k', first.lease);
  // A release is sent without waiting for its answer (Redis); a store's later commands see it.
  const again = await a.acquire('slots:k', 2, 60);
  assert.deepEqual([again.acquired, again.count], [true, 2], 'the released slot is granted again, and only it');
  assert.equal((await b.acquire('slots:k', 2, 60)).acquired, false);
  // Releasing on a key that holds no slot frees nothing there: its limit stays what it is.
  b.release('slots:none', again.lease);
  assert.equal((await b.acquire('slots:none', 1, 60)).acquired, true);
  assert.equal((await a.acquire('slots:none', 1, 60)).acquired, false);
}
