// The Application Insights exporter thread (a node:worker_threads Worker, under Node and Deno alike): it takes the
// gateway's telemetry records in batches (appinsights-protocol.ts), makes the envelopes (appinsights-envelopes.ts),
// aggregates policy metrics, and posts batches to the ingestion endpoint over HTTPS, with retries, a bounded queue and
// every envelope counted as sent or dropped. All of that used to run on the gateway's event loop inside the SDK; here
// it runs beside it, and the gateway's thread only hands records over (appinsights.ts).
//
// Started by appinsights.ts from the file the gateway's assets name: dist/runtime/telemetry/appinsights-exporter.js
// under Node, this file under Deno, a data: URL inside the single-file bundle (scripts/lib/bundle.ts).

import { Agent, request } from 'node:https';
import { rootCertificates } from 'node:tls';
import { parentPort, workerData } from 'node:worker_threads';
import { gzip } from 'node:zlib';
import { EnvelopeWriter, batchBody, type MetricAggregate } from './appinsights-envelopes.ts';
import { readRecords, type DropReason, type ExporterSettings, type FromExporter, type RecordBatch, type ToExporter } from './appinsights-protocol.ts';

/** POSTs in flight at once: enough to keep a distant endpoint busy, few enough to stay polite. */
const MAX_CONCURRENT_POSTS = 4;
/** Retries of a batch after its first attempt (unreachable, timeout, 408, 429, 5xx). */
const MAX_RETRIES = 3;
const FIRST_RETRY_DELAY_MS = 1000;
/** A Retry-After longer than this is cut to it (the SDK's bound too). */
const MAX_RETRY_AFTER_MS = 60_000;
/** At most one problem a minute reaches the gateway's log (an ingestion outage repeats itself). */
const PROBLEM_INTERVAL_MS = 60_000;
/**
 * The answers worth sending again (as the SDK decides, less 401 and 403: with an instrumentation key and no Entra ID
 * token, sending the same again cannot succeed).
 */
const RETRIABLE = new Set([206, 408, 429, 439, 500, 502, 503, 504]);
/** Azure's ingestion hosts take gzip; the SDK compresses for them only, and so does this. */
const AZURE_INGESTION_HOST = /\.(monitor\.azure\.(com|us|cn)|services\.visualstudio\.com|applicationinsights\.azure\.(com|us|cn))$/;

type Post = (message: FromExporter) => void;

class Exporter {
  private readonly writer: EnvelopeWriter;
  private readonly agent: Agent;
  private readonly url: URL;
  private readonly compress: boolean;
  /** Envelopes waiting for a POST (slices of the writer's buffers). */
  private queue: Buffer[] = [];
  /** Envelopes in a POST or waiting for a retry: they count against the queue limit too. */
  private held = 0;
  private posting = 0;
  private retriesWaiting = 0;
  private batchTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly metricTimer: ReturnType<typeof setInterval>;
  private readonly metrics = new Map<string, MetricAggregate>();
  private sent = 0;
  private dropped: Partial<Record<DropReason, number>> = {};
  private closing: { deadline: number } | null = null;
  private lastProblemAt = -Infinity;
  private problemsSuppressed = 0;

  constructor(
    private readonly settings: ExporterSettings,
    private readonly post: Post,
  ) {
    this.writer = new EnvelopeWriter(settings);
    this.url = new URL(settings.trackUrl);
    this.compress = AZURE_INGESTION_HOST.test(this.url.hostname.toLowerCase().replace(/\.+$/, ''));
    // A `ca` replaces the default roots: the system's (rootCertificates) are given again beside the operator's.
    const ca = settings.ca === null ? undefined : [...rootCertificates, settings.ca];
    this.agent = new Agent({ keepAlive: true, maxSockets: MAX_CONCURRENT_POSTS, ca });
    this.metricTimer = setInterval(() => {
      this.flushMetrics();
      this.schedule();
    }, settings.metricIntervalMs);
  }

  take(batch: RecordBatch): void {
    const envelopes: Buffer[] = [];
    const records = readRecords(batch, {
      request: (r) => this.writer.request(r, envelopes),
      failure: (f, about, time) => this.writer.failure(f, about, time, envelopes),
      metric: (e) => this.aggregate(e),
    });
    const room = this.settings.queueLimit - this.queue.length - this.held;
    if (envelopes.length > room) {
      this.drop('queue-full', envelopes.length - Math.max(0, room));
      envelopes.length = Math.max(0, room);
    }
    for (const e of envelopes) this.queue.push(e);
    this.post({ kind: 'taken', records, queued: this.queue.length + this.held });
    if (this.dropped['queue-full'] !== undefined) this.report();
    this.schedule();
  }

  close(deadline: number): void {
    this.closing = { deadline };
    clearInterval(this.metricTimer);
    this.flushMetrics();
    this.schedule();
    this.closedYet();
  }

  private aggregate(e: { name: string; value: number; dimensions: [string, string][] }): void {
    let key = e.name;
    for (const [name, value] of e.dimensions) key += `\u0000${name}\u0000${value}`;
    const a = this.metrics.get(key);
    if (a === undefined) {
      this.metrics.set(key, { emission: e, sum: e.value, count: 1, min: e.value, max: e.value });
      return;
    }
    a.sum += e.value;
    a.count++;
    if (e.value < a.min) a.min = e.value;
    if (e.value > a.max) a.max = e.value;
  }

  private flushMetrics(): void {
    if (this.metrics.size === 0) return;
    const envelopes: Buffer[] = [];
    const now = Date.now();
    for (const a of this.metrics.values()) this.writer.metric(a, now, envelopes);
    this.metrics.clear();
    for (const e of envelopes) {
      if (this.queue.length + this.held < this.settings.queueLimit) this.queue.push(e);
      else this.drop('queue-full', 1);
    }
  }

  /** Posts full batches now; a partial batch after the send interval, or at once when closing. */
  private schedule(): void {
    while (this.queue.length > 0 && this.posting < MAX_CONCURRENT_POSTS) {
      if (this.queue.length < this.settings.batchSize && this.closing === null) break;
      this.postBatch(this.queue.splice(0, this.settings.batchSize), 0);
    }
    if (this.queue.length > 0 && this.batchTimer === null && this.closing === null) {
      this.batchTimer = setTimeout(() => {
        this.batchTimer = null;
        if (this.queue.length > 0 && this.posting < MAX_CONCURRENT_POSTS) this.postBatch(this.queue.splice(0, this.settings.batchSize), 0);
        this.schedule();
      }, this.settings.sendIntervalMs);
    }
  }

  private postBatch(batch: Buffer[], attempt: number): void {
    this.posting++;
    this.held += batch.length;
    const body = batchBody(batch);
    const settle = (outcome: SendOutcome) => {
      this.posting--;
      this.held -= batch.length;
      this.settle(batch, attempt, outcome);
      this.report();
      this.schedule();
      this.closedYet();
    };
    if (!this.compress) {
      this.send(body, false, settle);
      return;
    }
    gzip(body, (err, zipped) => (err ? this.send(body, false, settle) : this.send(zipped, true, settle)));
  }

  private send(body: Buffer, gzipped: boolean, done: (outcome: SendOutcome) => void): void {
    let finished = false;
    const finish = (outcome: SendOutcome) => {
      if (finished) return;
      finished = true;
      done(outcome);
    };
    const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': body.length };
    if (gzipped) headers['content-encoding'] = 'gzip';
    const req = request(this.url, { method: 'POST', agent: this.agent, headers, timeout: this.settings.requestTimeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (err) => finish({ status: null, error: err.message }));
      res.on('end', () =>
        finish({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), retryAfter: res.headers['retry-after'] }),
      );
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${this.settings.requestTimeoutMs} ms`)));
    req.on('error', (err) => finish({ status: null, error: err.message }));
    req.end(body);
  }

  private settle(batch: Buffer[], attempt: number, outcome: SendOutcome): void {
    if (outcome.status === 200) {
      this.sent += batch.length;
      return;
    }
    if (outcome.status === null) {
      this.problem('could not reach the Application Insights ingestion endpoint', { error: outcome.error ?? 'unknown', attempt: attempt + 1 });
      this.retry(batch, attempt, undefined);
      return;
    }
    if (outcome.status === 206) {
      // Partial success: the answer names each refused envelope with its own status.
      const again: Buffer[] = [];
      let refused = 0;
      try {
        const answer = JSON.parse(outcome.body ?? '') as { errors?: { index: number; statusCode: number }[] };
        for (const e of answer.errors ?? []) {
          const envelope = batch[e.index];
          if (envelope === undefined) continue;
          // Copied: a slice would keep its whole buffer (256 KiB, hundreds of envelopes) alive through the retries.
          if (RETRIABLE.has(e.statusCode)) again.push(Buffer.from(envelope));
          else refused++;
        }
      } catch {
        // An unreadable partial answer: nothing is known to have failed.
      }
      this.sent += batch.length - again.length - refused;
      if (refused > 0) this.drop('rejected', refused);
      if (again.length > 0) this.retry(again, attempt, outcome.retryAfter);
      return;
    }
    if (RETRIABLE.has(outcome.status)) {
      this.problem('the Application Insights ingestion endpoint answered with an error', { status: outcome.status, attempt: attempt + 1 });
      this.retry(batch, attempt, outcome.retryAfter);
      return;
    }
    this.problem('the Application Insights ingestion endpoint refused a batch', {
      status: outcome.status,
      envelopes: batch.length,
      answer: (outcome.body ?? '').slice(0, 300),
    });
    this.drop('rejected', batch.length);
  }

  private retry(batch: Buffer[], attempt: number, retryAfter: string | string[] | undefined): void {
    const delay = Math.max(retryAfterMs(retryAfter) ?? 0, FIRST_RETRY_DELAY_MS * 2 ** attempt);
    if (attempt >= MAX_RETRIES || (this.closing !== null && Date.now() + delay > this.closing.deadline)) {
      this.drop('send-failed', batch.length);
      return;
    }
    this.retriesWaiting++;
    this.held += batch.length;
    setTimeout(() => {
      this.retriesWaiting--;
      this.held -= batch.length;
      this.postBatch(batch, attempt + 1);
    }, delay);
  }

  private drop(reason: DropReason, count: number): void {
    this.dropped[reason] = (this.dropped[reason] ?? 0) + count;
  }

  private report(): void {
    this.post({ kind: 'outcome', sent: this.sent, dropped: this.dropped, queued: this.queue.length + this.held });
    this.sent = 0;
    this.dropped = {};
  }

  private problem(message: string, detail: Record<string, string | number>): void {
    const now = Date.now();
    if (now - this.lastProblemAt < PROBLEM_INTERVAL_MS) {
      this.problemsSuppressed++;
      return;
    }
    this.lastProblemAt = now;
    this.post({ kind: 'problem', message, detail: { ...detail, suppressedSinceLast: this.problemsSuppressed } });
    this.problemsSuppressed = 0;
  }

  private closedYet(): void {
    if (this.closing === null || this.queue.length > 0 || this.posting > 0 || this.retriesWaiting > 0) return;
    this.report();
    this.agent.destroy();
    this.post({ kind: 'closed', unsent: 0 });
  }
}

interface SendOutcome {
  /** null: no answer (unreachable, reset, timeout). */
  status: number | null;
  body?: string;
  error?: string;
  retryAfter?: string | string[];
}

/** Retry-After in seconds or as an HTTP date, in milliseconds (at most MAX_RETRY_AFTER_MS). */
function retryAfterMs(value: string | string[] | undefined): number | undefined {
  const text = (Array.isArray(value) ? value[0] : value)?.trim();
  if (!text) return undefined;
  const ms = /^\d+$/.test(text) ? Number(text) * 1000 : Date.parse(text) - Date.now();
  return Number.isFinite(ms) && ms > 0 ? Math.min(ms, MAX_RETRY_AFTER_MS) : undefined;
}

// Started as a worker: serve the gateway's thread.
if (parentPort !== null && (workerData as { role?: string } | null)?.role === 'appinsights-exporter') {
  const port = parentPort;
  const exporter = new Exporter((workerData as { settings: ExporterSettings }).settings, (m) => port.postMessage(m));
  port.on('message', (m: ToExporter) => {
    if (m.kind === 'records') exporter.take(m.batch);
    else exporter.close(m.deadline);
  });
  port.postMessage({ kind: 'ready' } satisfies FromExporter);
}
