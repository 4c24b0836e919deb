// A stream of requests at a steady rate, each to the next ready endpoint (ready-endpoints.ts), with a cap on how many
// are in flight: an open loop while the fleet keeps up, a closed one when it does not. Every answer is classified;
// what is not an expected status (or is a connection error) is a failure, kept with where and when it happened.

import type { Dispatcher } from 'undici';
import { request } from 'undici';
import type { ReadyEndpoints } from './ready-endpoints.ts';

export interface LoadStreamOptions {
  name: string;
  ratePerS: number;
  maxInFlight: number;
  path: string;
  headers?: Record<string, string>;
  /** Statuses besides 2xx that are answers, not failures (429 from a rate limit). */
  alsoExpected?: number[];
  /** Told of every answer (2xx or expected), e.g. to count a header's values. */
  onAnswer?: (endpoint: string, status: number, headers: Record<string, string | string[] | undefined>) => void;
}

export interface Failure {
  stream: string;
  endpoint: string;
  /** The HTTP status, or the error's code (ECONNREFUSED, UND_ERR_SOCKET, ...). */
  what: string;
  /** Date.now() when the request was sent, and when it failed. */
  sentAt: number;
  at: number;
}

/** How often the pacer wakes up to send what has come due. */
const TICK_MS = 5;
const FAILURES_KEPT = 50;

export class LoadStream {
  sent = 0;
  failed = 0;
  /** Answers by status. */
  readonly statuses = new Map<number, number>();
  /** Answers (any status) by endpoint. */
  readonly byEndpoint = new Map<string, number>();
  readonly failures: Failure[] = [];
  /** Times the pacer found no ready endpoint and waited. */
  noEndpointWaits = 0;
  private inFlight = 0;
  private running = false;
  private loop: Promise<void> | null = null;
  private readonly pending = new Set<Promise<void>>();

  constructor(
    private readonly options: LoadStreamOptions,
    private readonly endpoints: ReadyEndpoints,
    private readonly dispatcher: Dispatcher,
  ) {}

  start(): void {
    this.running = true;
    this.loop = this.pace();
  }

  /** Stops sending and waits for the requests in flight. */
  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    await Promise.all(this.pending);
  }

  count(status: number): number {
    return this.statuses.get(status) ?? 0;
  }

  private async pace(): Promise<void> {
    const started = performance.now();
    while (this.running) {
      const due = Math.floor(((performance.now() - started) * this.options.ratePerS) / 1000);
      while (this.sent < due && this.inFlight < this.options.maxInFlight && this.running) {
        const endpoint = this.endpoints.next();
        if (!endpoint) {
          this.noEndpointWaits++;
          break;
        }
        this.send(endpoint.name, endpoint.url);
      }
      await new Promise((r) => setTimeout(r, TICK_MS));
    }
  }

  private send(endpoint: string, url: string): void {
    this.sent++;
    this.inFlight++;
    const sentAt = Date.now();
    const done = this.exchange(endpoint, url, sentAt).finally(() => {
      this.inFlight--;
      this.pending.delete(done);
    });
    this.pending.add(done);
  }

  private async exchange(endpoint: string, url: string, sentAt: number): Promise<void> {
    let what: string | null = null;
    try {
      const res = await request(`${url}${this.options.path}`, {
        headers: this.options.headers,
        dispatcher: this.dispatcher,
        headersTimeout: 15_000,
        bodyTimeout: 15_000,
      });
      await res.body.dump();
      this.statuses.set(res.statusCode, (this.statuses.get(res.statusCode) ?? 0) + 1);
      this.byEndpoint.set(endpoint, (this.byEndpoint.get(endpoint) ?? 0) + 1);
      const ok = (res.statusCode >= 200 && res.statusCode < 300) || (this.options.alsoExpected ?? []).includes(res.statusCode);
      if (ok) this.options.onAnswer?.(endpoint, res.statusCode, res.headers);
      else what = `HTTP ${res.statusCode}`;
    } catch (err) {
      what = (err as { code?: string }).code ?? (err as Error).message;
    }
    if (what !== null) {
      this.failed++;
      if (this.failures.length < FAILURES_KEPT) this.failures.push({ stream: this.options.name, endpoint, what, sentAt, at: Date.now() });
    }
  }
}
