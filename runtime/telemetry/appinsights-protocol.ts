// The messages between the gateway's thread and its Application Insights exporter thread (appinsights-exporter.ts).
// The gateway hands over compact records in batches; the exporter thread turns them into envelopes, serialises them,
// compresses them when the ingestion endpoint is Azure's, sends them, and retries or drops them. Nothing here waits:
// each side only posts.

import type { MetricEmission } from './custom-metrics.ts';
import type { BackendCallRecord, FailureRecord, RequestRecord, RequestRef } from './request-telemetry.ts';

/** What the exporter thread is started with (its workerData). */
export interface ExporterSettings {
  /** The instrumentation key every envelope carries. */
  instrumentationKey: string;
  /** Where batches are posted: `<IngestionEndpoint>/v2.1/track`. */
  trackUrl: string;
  /** The envelopes' `ai.cloud.role` and `ai.cloud.roleInstance`. */
  roleName: string;
  roleInstance: string;
  /** `ai.internal.sdkVersion`: which program made the envelopes. */
  sdkVersion: string;
  /** The share of requests the gateway sends (100: all); the request envelopes' `sampleRate`. */
  samplingPercentage: number;
  /** Envelopes held at most, waiting or being sent; more are dropped and counted (queue-full). */
  queueLimit: number;
  /** Envelopes in one POST at most. */
  batchSize: number;
  /** A batch not yet full is sent this long after its first envelope. */
  sendIntervalMs: number;
  /** How often policy metrics, aggregated in the exporter thread, are sent. */
  metricIntervalMs: number;
  /** Each POST is abandoned after this long (then retried). */
  requestTimeoutMs: number;
  /** PEM certificates trusted besides the system's (and NODE_EXTRA_CA_CERTS); null: those only. */
  ca: string | null;
}

/**
 * Records travel as one flat array of strings, numbers and nulls per batch, in the order the functions below write and
 * read them: structured clone of plain objects repeats every key with every record, and cost 2–4 µs a request on each
 * side where the flat array costs under one (BENCHMARKS.md). A tag opens each record.
 */
export type RecordBatch = (string | number | null)[];

const REQUEST = 0;
const FAILURE = 1;
const METRIC = 2;

function writeFailure(out: RecordBatch, f: FailureRecord): void {
  out.push(f.source, f.reason, f.message, f.policy, f.failedOpen ? 1 : 0);
}

/** A request with its backend call and failures (failure messages already masked by the gateway). */
export function writeRequest(out: RecordBatch, r: RequestRecord): void {
  out.push(REQUEST, r.requestId, r.traceId, r.spanId, r.parentSpanId, r.method, r.route, r.url, r.api, r.operation, r.status, r.startTime, r.durationMs);
  const b = r.backend;
  if (b === null) out.push(0);
  else {
    out.push(1, b.method, b.origin, b.path, b.pathTemplate, b.startTime, b.durationMs, b.status);
    if (b.failure === null) out.push(0);
    else {
      out.push(1);
      writeFailure(out, b.failure);
    }
  }
  out.push(r.failures.length);
  for (const f of r.failures) writeFailure(out, f);
}

/** A failure sent on its own: noticed after the response head, or of a request sampled out. `time`: epoch ms. */
export function writeLoneFailure(out: RecordBatch, f: FailureRecord, about: RequestRef, time: number): void {
  out.push(FAILURE);
  writeFailure(out, f);
  out.push(about.requestId, about.api, about.operation, about.traceId, about.parentSpanId, time);
}

export function writeMetric(out: RecordBatch, e: MetricEmission): void {
  out.push(METRIC, e.name, e.value, e.dimensions.length);
  for (const [name, value] of e.dimensions) out.push(name, value);
}

export interface RecordReader {
  request(r: RequestRecord): void;
  failure(f: FailureRecord, about: RequestRef, time: number): void;
  metric(e: MetricEmission): void;
}

/** Reads a batch back into records, handing each to `reader`; returns how many records it held. */
export function readRecords(batch: RecordBatch, reader: RecordReader): number {
  let at = 0;
  let records = 0;
  const next = () => batch[at++]!;
  const failure = (): FailureRecord => ({
    source: next() as FailureRecord['source'],
    reason: next() as string,
    message: next() as string,
    policy: next() as string | null,
    failedOpen: next() === 1,
  });
  while (at < batch.length) {
    records++;
    const tag = next();
    if (tag === REQUEST) {
      const r = {
        requestId: next() as string,
        traceId: next() as string,
        spanId: next() as string,
        parentSpanId: next() as string | null,
        method: next() as string,
        route: next() as string | null,
        url: next() as string,
        api: next() as string,
        operation: next() as string,
        status: next() as number,
        startTime: next() as number,
        durationMs: next() as number,
      };
      let backend: BackendCallRecord | null = null;
      if (next() === 1) {
        backend = {
          method: next() as string,
          origin: next() as string,
          path: next() as string,
          pathTemplate: next() as string,
          startTime: next() as number,
          durationMs: next() as number,
          status: next() as number | null,
          failure: null,
        };
        if (next() === 1) backend.failure = failure();
      }
      const failures: FailureRecord[] = [];
      for (let n = next() as number; n > 0; n--) failures.push(failure());
      reader.request({ ...r, backend, failures });
    } else if (tag === FAILURE) {
      const f = failure();
      const about = { requestId: next() as string, api: next() as string, operation: next() as string, traceId: next() as string, parentSpanId: next() as string | null };
      reader.failure(f, about, next() as number);
    } else if (tag === METRIC) {
      const name = next() as string;
      const value = next() as number;
      const dimensions: [string, string][] = [];
      for (let n = next() as number; n > 0; n--) dimensions.push([next() as string, next() as string]);
      reader.metric({ name, value, dimensions });
    } else {
      throw new Error(`a telemetry batch holds an unknown record tag ${String(tag)} at ${at - 1}`);
    }
  }
  return records;
}

/** Why telemetry was not delivered: the label of gatehouse_appinsights_dropped_total. */
export type DropReason =
  /** The queue was full (the ingestion endpoint slower than the traffic, or away). */
  | 'queue-full'
  /** The ingestion endpoint refused it for good (a 400, a partial answer's non-retriable items). */
  | 'rejected'
  /** Sending kept failing (unreachable, timeouts, 5xx) until the retries ran out. */
  | 'send-failed'
  /** The exporter thread stopped unexpectedly while holding it. */
  | 'exporter-lost'
  /** Still unsent when the shutdown's flush time ran out. */
  | 'shutdown';

export type ToExporter =
  /** `records` records, written by the functions above. */
  | { kind: 'records'; records: number; batch: RecordBatch }
  /** Send everything held, metrics included, and answer `closed`; no retry starts after `deadline` (epoch ms). */
  | { kind: 'close'; deadline: number };

export type FromExporter =
  | { kind: 'ready' }
  /** A batch of `records` was taken; `queued`: envelopes the thread holds now. */
  | { kind: 'taken'; records: number; queued: number }
  /** Envelopes delivered or dropped since the last report. */
  | { kind: 'outcome'; sent: number; dropped: Partial<Record<DropReason, number>>; queued: number }
  /** A problem worth a log line (rate-limited by the exporter thread). */
  | { kind: 'problem'; message: string; detail: Record<string, string | number> }
  | { kind: 'closed'; unsent: number };
