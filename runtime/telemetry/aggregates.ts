// Per-minute aggregates of requests by API (count, server errors, latency percentiles), for the control plane. Closed
// minutes wait in a bounded queue until they are delivered: while the control plane is unreachable they accumulate
// (the oldest dropped first past `maxQueued`, and counted), and they are delivered after reconnecting.

interface Bucket {
  requests: number;
  errors: number;
  /** Latencies, at most MAX_SAMPLES kept (reservoir), for the percentiles. */
  samples: number[];
}

const MAX_SAMPLES = 2000;

/** The requests of one API in one minute, as a gateway counted them. */
export interface MinuteAggregate {
  /** Start of the minute, ISO 8601. */
  minute: string;
  api: string;
  requests: number;
  /** Answers with a 5xx status. */
  errors: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
}

export class RequestAggregates {
  private current = new Map<string, Bucket>();
  private minuteStart: number;
  private readonly queue: MinuteAggregate[] = [];
  /** Aggregates dropped because the queue was full (the control plane away too long). */
  dropped = 0;

  constructor(
    private readonly periodMs = 60_000,
    private readonly maxQueued = 1440,
    private readonly now: () => number = Date.now,
  ) {
    this.minuteStart = this.periodStart(now());
  }

  private periodStart(t: number): number {
    return t - (t % this.periodMs);
  }

  observe(api: string, status: number, ms: number): void {
    this.roll();
    let bucket = this.current.get(api);
    if (!bucket) {
      bucket = { requests: 0, errors: 0, samples: [] };
      this.current.set(api, bucket);
    }
    bucket.requests++;
    if (status >= 500) bucket.errors++;
    if (bucket.samples.length < MAX_SAMPLES) bucket.samples.push(ms);
    else {
      // Reservoir sampling: every request has the same chance to be among the samples.
      const i = Math.floor(Math.random() * bucket.requests);
      if (i < MAX_SAMPLES) bucket.samples[i] = ms;
    }
  }

  /** Closes the period if it is over: its aggregates join the queue. */
  roll(): void {
    const start = this.periodStart(this.now());
    if (start === this.minuteStart) return;
    const minute = new Date(this.minuteStart).toISOString();
    for (const [api, b] of this.current) {
      const sorted = b.samples.sort((x, y) => x - y);
      const at = (q: number) => Math.round((sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0) * 100) / 100;
      this.queue.push({ minute, api, requests: b.requests, errors: b.errors, p50Ms: at(0.5), p95Ms: at(0.95), p99Ms: at(0.99) });
    }
    while (this.queue.length > this.maxQueued) {
      this.queue.shift();
      this.dropped++;
    }
    this.current = new Map();
    this.minuteStart = start;
  }

  /** The closed aggregates not delivered yet, oldest first. */
  pending(): readonly MinuteAggregate[] {
    this.roll();
    return this.queue;
  }

  /** Removes the first `n` pending aggregates (they were delivered). */
  delivered(n: number): void {
    this.queue.splice(0, n);
  }
}
