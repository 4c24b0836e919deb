// A per-binding circuit breaker: a policy that keeps running into its CPU budget or a cap stops being called for a
// while, so that it cannot hold the event loop that every other API shares.
//
// A call stopped at its CPU budget has held the event loop for the whole budget (50 ms by default); at five such
// requests a second another API's p99 rose from 2.7 ms to 51 ms (the noisy-neighbour scenario, BENCHMARKS.md). Once
// a binding has failed `failures` times for a budget or a cap within `windowMs`, the breaker opens: calls fail at once
// (reason `circuit-open`) for `coolDownMs`. Then one call is let through (half open): if it also fails for a budget or
// a cap the breaker opens again, otherwise it closes. Other failures (a trap, an error the policy reports) cost
// microseconds and do not count.

import type { FailureReason } from './errors.ts';

export interface BreakerSettings {
  /** Budget or cap failures within the window that open the breaker; 0 turns it off. */
  failures: number;
  windowMs: number;
  coolDownMs: number;
}

export const DEFAULT_BREAKER: BreakerSettings = { failures: 3, windowMs: 10_000, coolDownMs: 30_000 };

/** Failures that cost the gateway what the limits allow: they are what the breaker counts. */
const COSTLY: ReadonlySet<FailureReason> = new Set<FailureReason>(['cpu-budget', 'memory-cap', 'output-cap', 'log-budget']);

export type BreakerState = 'closed' | 'open' | 'half-open';

/** What changed when a call's outcome was recorded, for the binding to log and count. */
export type BreakerChange = 'opened' | 'reopened' | 'closed' | null;

export class CircuitBreaker {
  private state: BreakerState = 'closed';
  /** Times of the recent costly failures (at most `failures` of them). */
  private recent: number[] = [];
  private openedAt = 0;
  /** A half-open trial call is running: others keep failing fast until it ends. */
  private trialRunning = false;

  constructor(
    private readonly settings: BreakerSettings,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get current(): BreakerState {
    return this.state;
  }

  /** Milliseconds until the next trial call, while open. */
  retryInMs(): number {
    return Math.max(0, Math.ceil(this.openedAt + this.settings.coolDownMs - this.now()));
  }

  /** Whether a call may run now. A call let through while half open is the trial; its outcome must be recorded. */
  allows(): boolean {
    if (this.state === 'closed') return true;
    if (this.state === 'open') {
      if (this.now() - this.openedAt < this.settings.coolDownMs) return false;
      this.state = 'half-open';
    }
    if (this.trialRunning) return false;
    this.trialRunning = true;
    return true;
  }

  succeeded(): BreakerChange {
    if (this.state !== 'half-open') return null;
    this.close();
    return 'closed';
  }

  failed(reason: FailureReason): BreakerChange {
    // A call that started before the breaker opened and ends while it is open changes nothing.
    if (this.state === 'open') return null;
    const costly = COSTLY.has(reason);
    if (this.state === 'half-open') {
      this.trialRunning = false;
      if (!costly) {
        this.close();
        return 'closed';
      }
      this.open();
      return 'reopened';
    }
    if (!costly || this.settings.failures === 0) return null;
    const now = this.now();
    this.recent.push(now);
    while (this.recent.length > 0 && now - this.recent[0]! > this.settings.windowMs) this.recent.shift();
    if (this.recent.length > this.settings.failures) this.recent.shift();
    if (this.recent.length < this.settings.failures) return null;
    this.open();
    return 'opened';
  }

  private open(): void {
    this.state = 'open';
    this.openedAt = this.now();
    this.recent = [];
  }

  private close(): void {
    this.state = 'closed';
    this.trialRunning = false;
    this.recent = [];
  }
}
