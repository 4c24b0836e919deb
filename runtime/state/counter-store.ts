// Counters behind the COUNTER effect. Fixed windows: a window starts at a multiple of its period.
// The in-memory store is exact for one process; a shared store (Redis) keeps the same contract.

export interface CounterOutcome {
  allowed: boolean;
  count: number;
  limit: number;
  remaining: number;
  resetSeconds: number;
}

export interface CounterStore {
  /**
   * Adds `amount` to `key` when the result stays within `limit` (refused calls do not count), or with `always`, adds it
   * whatever the result (accounting after the fact, as for bytes already sent); `allowed` says whether the result is
   * within the limit. An amount of 0 reads the counter.
   */
  consume(key: string, amount: number, limit: number, periodSeconds: number, always?: boolean): Promise<CounterOutcome>;
  /** consume() without waiting, when the store can answer without I/O; undefined when it cannot right now. */
  consumeNow?(key: string, amount: number, limit: number, periodSeconds: number, always?: boolean): CounterOutcome | undefined;
  /**
   * Takes one of `limit` concurrent slots of `key`, held until `release` (or, in a shared store, `ttlSeconds` at most,
   * so that a gateway that dies does not hold its slots for ever).
   */
  acquire(key: string, limit: number, ttlSeconds: number): Promise<LeaseOutcome>;
  /** acquire() without waiting, when the store can answer without I/O. */
  acquireNow?(key: string, limit: number, ttlSeconds: number): LeaseOutcome | undefined;
  /** Gives back a slot `acquire` granted (`lease` as it returned). */
  release(key: string, lease: string): void;
  /** Releases connections (a shared store). */
  close?(): Promise<void>;
  /** A shared store: settles once its first connection is made or has failed (it never rejects). */
  firstConnection?(): Promise<void>;
}

export interface LeaseOutcome {
  acquired: boolean;
  /** Slots held, this one included when acquired. */
  count: number;
  limit: number;
  /** What `release` needs; "" when not acquired. */
  lease: string;
}

/**
 * A key's window for one period. A key is almost always counted with one period; the windows of its other periods
 * follow in `next`, so that a call finds its window by the key as the policy sent it, without a new string a call.
 */
interface Window {
  periodMs: number;
  start: number;
  end: number;
  count: number;
  next: Window | null;
}

/** How many keys `seed` fills (about 150 bytes each). */
const MAX_SEEDED = 100_000;

export class MemoryCounterStore implements CounterStore {
  private readonly windows = new Map<string, Window>();
  private nextSweep = 0;

  constructor(private readonly now: () => number = Date.now) {}

  consume(key: string, amount: number, limit: number, periodSeconds: number, always = false): Promise<CounterOutcome> {
    return Promise.resolve(this.consumeNow(key, amount, limit, periodSeconds, always));
  }

  consumeNow(key: string, amount: number, limit: number, periodSeconds: number, always = false): CounterOutcome {
    const now = this.now();
    this.sweep(now);
    const periodMs = periodSeconds * 1000;
    let window = this.windowOf(key, periodMs);
    if (window === null) window = this.addWindow(key, periodMs, 0, 0, 0);
    if (now >= window.end) {
      window.start = Math.floor(now / periodMs) * periodMs;
      window.end = window.start + periodMs;
      window.count = 0;
    }
    const allowed = window.count + amount <= limit;
    if (allowed || always) window.count += amount;
    return {
      allowed,
      count: window.count,
      limit,
      remaining: Math.max(0, limit - window.count),
      resetSeconds: Math.max(0, Math.ceil((window.end - now) / 1000)),
    };
  }

  private windowOf(key: string, periodMs: number): Window | null {
    let window = this.windows.get(key) ?? null;
    while (window !== null && window.periodMs !== periodMs) window = window.next;
    return window;
  }

  /**
   * Takes what a shared store last said of `key`'s window (its count, and when it ends by this process's clock) as this
   * store's window, unless this store has counted more: counting here, when the shared store cannot be reached, goes
   * on from the fleet's count instead of from zero.
   */
  seed(key: string, periodSeconds: number, count: number, endsAt: number): void {
    const periodMs = periodSeconds * 1000;
    const window = this.windowOf(key, periodMs);
    if (window && this.now() < window.end && window.count >= count) return;
    if (window) {
      window.start = endsAt - periodMs;
      window.end = endsAt;
      window.count = count;
      return;
    }
    // Keys without a window here are taken while there are fewer than MAX_SEEDED keys: a shared store may see millions
    // of keys an hour (a limit per client address), which this copy must not hold all of.
    if (this.windows.size >= MAX_SEEDED) return;
    this.addWindow(key, periodMs, endsAt - periodMs, endsAt, count);
  }

  /** A new window of `key` for `periodMs`, at the head of the key's chain. */
  private addWindow(key: string, periodMs: number, start: number, end: number, count: number): Window {
    const window: Window = { periodMs, start, end, count, next: this.windows.get(key) ?? null };
    this.windows.set(key, window);
    return window;
  }

  private readonly leases = new Map<string, number>();

  acquire(key: string, limit: number, ttlSeconds: number): Promise<LeaseOutcome> {
    return Promise.resolve(this.acquireNow(key, limit, ttlSeconds));
  }

  /** In memory a slot is held until released: the process that holds it is the one that would release it. */
  acquireNow(key: string, limit: number, _ttlSeconds: number): LeaseOutcome {
    const held = this.leases.get(key) ?? 0;
    if (held >= limit) return { acquired: false, count: held, limit, lease: '' };
    this.leases.set(key, held + 1);
    return { acquired: true, count: held + 1, limit, lease: 'local' };
  }

  release(key: string, _lease: string): void {
    const held = this.leases.get(key) ?? 0;
    if (held <= 1) this.leases.delete(key);
    else this.leases.set(key, held - 1);
  }

  /** Drops windows that have ended, at most once a second. */
  private sweep(now: number): void {
    if (now < this.nextSweep) return;
    this.nextSweep = now + 1000;
    for (const [key, first] of this.windows) {
      // The chain without its ended windows.
      let kept: Window | null = null;
      let last: Window | null = null;
      for (let w: Window | null = first; w !== null; w = w.next) {
        if (w.end <= now) continue;
        if (last === null) kept = w;
        else last.next = w;
        last = w;
      }
      if (last !== null) last.next = null;
      if (kept === null) this.windows.delete(key);
      else if (kept !== first) this.windows.set(key, kept);
    }
  }
}
