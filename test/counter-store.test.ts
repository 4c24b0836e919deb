// The in-memory counter store keeps the contract the Redis store keeps (test/redis-counter-store.test.ts runs the same
// checks); windows, the Redis fallback's seed and the memory bound are driven here by a clock of the test's own.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MemoryCounterStore } from '../runtime/state/counter-store.ts';
import { assertAlwaysCounts, assertRefusalsNotCounted, assertSlots } from './support/counter-contract.ts';

/** A store on a clock the test moves: `clock.now` is the time in milliseconds. */
function storeAt(now: number) {
  const clock = { now };
  return { clock, store: new MemoryCounterStore(() => clock.now) };
}

/** The count and seconds to reset of `key`'s 60-second window, read with an amount of 0. */
function read(store: MemoryCounterStore, key: string) {
  const o = store.consumeNow(key, 0, 100, 60);
  return [o.count, o.resetSeconds];
}

describe('counters in memory', () => {
  test('exactly the limit passes; refused calls leave the count unchanged', async () => {
    const store = new MemoryCounterStore();
    await assertRefusalsNotCounted(store, store);
  });

  test('after-the-fact accounting (always) goes past the limit; an amount of 0 reads', async () => {
    await assertAlwaysCounts(new MemoryCounterStore());
  });

  test('concurrency slots: the limit is held until released', async () => {
    const store = new MemoryCounterStore();
    await assertSlots(store, store);
    const now = store.acquireNow('slots:now', 1, 60);
    assert.deepEqual([now.acquired, store.acquireNow('slots:now', 1, 60).acquired], [true, false]);
  });

  test('consumeNow without `always` refuses and does not count past the limit', () => {
    const store = new MemoryCounterStore();
    store.consumeNow('now:k', 3, 4, 60);
    const over = store.consumeNow('now:k', 2, 4, 60);
    assert.deepEqual([over.allowed, over.count, over.remaining, over.limit], [false, 3, 1, 4]);
  });

  test('a window starts at a multiple of its period and ends with it: the count starts again at 0', () => {
    // 30.5 s into the 60-second window [2 min, 3 min).
    const { clock, store } = storeAt(150_500);
    const first = store.consumeNow('w:k', 4, 5, 60);
    assert.deepEqual([first.count, first.remaining, first.resetSeconds], [4, 1, 30], 'seconds to reset round up');
    clock.now = 179_999;
    assert.deepEqual(read(store, 'w:k'), [4, 1], 'the last millisecond of the window still counts');
    assert.equal(store.consumeNow('w:k', 2, 5, 60).allowed, false);
    clock.now = 180_000;
    const next = store.consumeNow('w:k', 2, 5, 60);
    assert.deepEqual([next.allowed, next.count, next.resetSeconds], [true, 2, 60], 'a new window at its first millisecond');
    // A key has a window per period.
    assert.deepEqual([store.consumeNow('w:k', 1, 5, 1).count, store.consumeNow('w:k', 0, 5, 60).count], [1, 2]);
  });

  test('one key counted with three periods: each window counts alone, and sweeping the ended ones keeps the others', () => {
    const { clock, store } = storeAt(0);
    const count = (period: number) => store.consumeNow('p:k', 0, 100, period).count;
    store.consumeNow('p:k', 2, 100, 60);
    store.consumeNow('p:k', 1, 100, 1);
    store.consumeNow('p:k', 3, 100, 3600);
    assert.deepEqual([count(1), count(60), count(3600)], [1, 2, 3]);
    // At 1 s the 1-second window (between the two others) has ended, and the sweep due then drops it.
    clock.now = 1_000;
    store.consumeNow('other', 1, 100, 60);
    assert.deepEqual([count(60), count(3600), count(1)], [2, 3, 0]);
    store.consumeNow('p:k', 4, 100, 1);
    // At 60 s the new 1-second window and the 60-second one have ended: only the hour's is left, its count intact.
    clock.now = 60_000;
    store.consumeNow('other', 1, 100, 60);
    assert.deepEqual([count(3600), count(60), count(1)], [3, 0, 0]);
    store.consumeNow('p:k', 5, 100, 60);
    assert.deepEqual([count(3600), count(60), count(1)], [3, 5, 0]);
  });

  test('seed: the fleet count Redis last gave is taken, unless this store counted more in a window that has not ended', () => {
    const { clock, store } = storeAt(120_000);
    // A key without a window here takes the seeded count and end.
    store.seed('s:new', 60, 7, 150_000);
    assert.deepEqual(read(store, 's:new'), [7, 30]);
    // A higher count here, in a window that goes on, is kept (with its own end).
    store.consumeNow('s:more', 9, 100, 60);
    store.seed('s:more', 60, 4, 150_000);
    assert.deepEqual(read(store, 's:more'), [9, 60]);
    // As high a count is kept too: the window here is not moved.
    store.seed('s:more', 60, 9, 150_000);
    assert.deepEqual(read(store, 's:more'), [9, 60]);
    // A lower count here is raised to the fleet's.
    store.consumeNow('s:less', 2, 100, 60);
    store.seed('s:less', 60, 5, 170_000);
    assert.deepEqual(read(store, 's:less'), [5, 50]);
    // A window here that has ended (at this very millisecond) gives way to the seed, however high its count.
    clock.now = 180_000;
    store.seed('s:more', 60, 3, 210_000);
    assert.deepEqual(read(store, 's:more'), [3, 30]);
  });

  test('memory is bounded: seed fills at most 100,000 windows; ended windows are swept once a second, freeing room', () => {
    const { clock, store } = storeAt(10_000);
    const fill = (prefix: string, endsAt: number, keys: number) => {
      for (let i = 0; i < keys; i++) store.seed(`${prefix}:${i}`, 1, 1, endsAt);
    };
    /**
     * Whether seed takes a key that has no window here, after an update (which sweeps when a sweep is due); the read
     * afterwards gives the key a window.
     */
    const seedsNewKey = (key: string) => {
      store.consumeNow('tick', 0, 1, 60);
      store.seed(key, 60, 9, clock.now + 60_000);
      return read(store, key)[0] === 9;
    };
    // 'tick' and 99,999 seeded: exactly 100,000 windows.
    store.consumeNow('tick', 0, 1, 60);
    fill('a', 10_500, 99_999);
    assert.equal(seedsNewKey('full:1'), false, '100,000 windows: a new key is not seeded');
    store.seed('a:0', 1, 5, 10_500);
    assert.equal(store.consumeNow('a:0', 0, 10, 1).count, 5, 'a key with a window here is seeded however many there are');
    // The reads above swept at 10,000 (nothing had ended): the next sweep is due at 11,000, not before.
    clock.now = 10_600;
    assert.equal(seedsNewKey('full:2'), false, 'the windows that ended at 10,500 are not swept before 11,000');
    clock.now = 11_000;
    assert.equal(seedsNewKey('swept:1'), true, 'swept at 11,000: room again');
    // Windows that end at the very millisecond of a sweep are swept by it.
    fill('b', 12_000, 100_000);
    assert.equal(seedsNewKey('full:3'), false);
    clock.now = 12_000;
    assert.equal(seedsNewKey('swept:2'), true);
  });
});
