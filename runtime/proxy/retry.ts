// When a request to a backend is tried again, and on which backend.
//
// By default, as nginx's proxy_next_upstream (error): a pool member whose connection failed before any response byte
// (refused, unreachable, connect timeout, reset) is left for another member, once. An API's `backend.retry` chooses
// the failures and statuses, the count and a backoff. Only a request that can be sent again is: no body, or a body the
// gateway holds whole, and an idempotent method or a held body (a streamed body is gone once sent).
//
// Retries draw from a budget (Finagle's and Envoy's idea): each request adds `budgetPercent`/100 of a retry, each
// retry takes one, and `minRetriesPerSecond` keep coming at low traffic. A backend failing every request then gets at
// most (1 + budgetPercent/100) times the traffic, not (1 + count) times.

import { errors } from 'undici';

export type RetryFailure = 'connect-failure' | 'reset' | 'timeout';

export interface RetrySettings {
  /** Tries after the first, at most. 0: none. */
  count: number;
  failures: ReadonlySet<RetryFailure>;
  statuses: ReadonlySet<number>;
  /** Backoff before the n-th retry: a random time up to min(maxBackoffMs, backoffMs * 2^(n-1)). */
  backoffMs: number;
  maxBackoffMs: number;
  budgetPercent: number;
  minRetriesPerSecond: number;
}

/** The default of a pool: once more on another member after a connection failure, no backoff. */
export const DEFAULT_POOL_RETRY: RetrySettings = {
  count: 1,
  failures: new Set(['connect-failure', 'reset']),
  statuses: new Set(),
  backoffMs: 0,
  maxBackoffMs: 0,
  budgetPercent: 20,
  minRetriesPerSecond: 5,
};

/** A backend with one URL and no `retry`: nowhere else to go. */
export const NO_RETRY: RetrySettings = { ...DEFAULT_POOL_RETRY, count: 0, failures: new Set() };

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

/** Whether a request can be sent again: nothing streamed, and an idempotent method or a body held whole. */
export function replayable(method: string, body: Uint8Array | null, streamed: boolean): boolean {
  return !streamed && (IDEMPOTENT.has(method) || body !== null);
}

/** Which retryable failure a dispatch error is, or null (a refusal by the egress guard, a body over its limit...). */
export function retryFailure(err: unknown): RetryFailure | null {
  if (err instanceof errors.ConnectTimeoutError) return 'connect-failure';
  if (err instanceof errors.HeadersTimeoutError) return 'timeout';
  const code = (err as { code?: string }).code ?? '';
  if (code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'UND_ERR_CONNECT_TIMEOUT') return 'connect-failure';
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE') return 'reset';
  return null;
}

/** Seconds or an HTTP date (RFC 9110, 10.2.3), as milliseconds from `now`; null when absent or unreadable. */
export function retryAfterMs(value: string | undefined, now = Date.now()): number | null {
  if (value === undefined) return null;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? null : Math.max(0, date - now);
}

/** The budget retries draw from: a token bucket filled by requests and by time. */
export class RetryBudget {
  private tokens: number;
  private readonly cap: number;
  private last: number;

  constructor(
    private readonly settings: Pick<RetrySettings, 'budgetPercent' | 'minRetriesPerSecond'>,
    private readonly now: () => number = performance.now.bind(performance),
  ) {
    // Ten seconds' worth of the minimum, and never less than 10: a burst of failures at start is retried.
    this.cap = Math.max(10, settings.minRetriesPerSecond * 10);
    this.tokens = this.cap;
    this.last = this.now();
  }

  /** A request was sent (first tries only). */
  deposit(): void {
    this.tokens = Math.min(this.cap, this.tokens + this.settings.budgetPercent / 100);
  }

  /** Takes a retry from the budget; false when it is spent. */
  withdraw(): boolean {
    const t = this.now();
    this.tokens = Math.min(this.cap, this.tokens + ((t - this.last) / 1000) * this.settings.minRetriesPerSecond);
    this.last = t;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** The wait before retry number `n` (1-based): full jitter under an exponential cap. */
export function backoffMs(settings: RetrySettings, n: number, random: () => number = Math.random): number {
  if (settings.backoffMs === 0) return 0;
  const cap = Math.min(settings.maxBackoffMs, settings.backoffMs * 2 ** (n - 1));
  return Math.floor(random() * cap);
}

/** Another backend than those tried for this request, in service if any is; the same one when it is alone. */
export function nextTarget<T>(targets: readonly T[], tried: ReadonlySet<T>, pick: () => T): T {
  if (targets.length === 1) return targets[0]!;
  for (let i = 0; i < targets.length; i++) {
    const t = pick();
    if (!tried.has(t)) return t;
  }
  return targets.find((t) => !tried.has(t)) ?? pick();
}
