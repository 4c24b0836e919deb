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
  /** Adds `amount` to `key` when the result stays within `limit`; refused calls do not count. */
  consume(key: string, amount: number, limit: number, periodSeconds: number): Promise<CounterOutcome>;
  /** consume() without waiting, when the store can answer without I/O; undefined when it cannot right now. */
  consumeNow?(key: string, amount: number, limit: number, periodSeconds: number): CounterOutcome | undefined;
  /** Releases connections (a shared store). */
  close?(): Promise<void>;
}

interface Window {
  start: number;
  end: number;
  count: number;
}

export class MemoryCounterStore implements CounterStore {
  private readonly windows = new Map<string, Window>();
  private nextSweep = 0;

  constructor(private readonly now: () => number = Date.now) {}

  consume(key: string, amount: number, limit: number, periodSeconds: number): Promise<CounterOutcome> {
    return Promise.resolve(this.consumeNow(key, amount, limit, periodSeconds));
  }

  consumeNow(key: string, amount: number, limit: number, periodSeconds: number): CounterOutcome {
    const now = this.now();
    this.sweep(now);
    const periodMs = periodSeconds * 1000;
    const start = Math.floor(now / periodMs) * periodMs;
    const windowKey = `${key}\u0000${periodSeconds}`;
    let window = this.windows.get(windowKey);
    if (!window || window.start !== start) {
      window = { start, end: start + periodMs, count: 0 };
      this.windows.set(windowKey, window);
    }
    const allowed = window.count + amount <= limit;
    if (allowed) window.count += amount;
    return {
      allowed,
      count: window.count,
      limit,
      remaining: Math.max(0, limit - window.count),
      resetSeconds: Math.max(0, Math.ceil((window.end - now) / 1000)),
    };
  }

  /** Drops windows that have ended, at most once a second. */
  private sweep(now: number): void {
    if (now < this.nextSweep) return;
    this.nextSweep = now + 1000;
    for (const [key, w] of this.windows) if (w.end <= now) this.windows.delete(key);
  }
}
