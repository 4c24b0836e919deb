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
/** The values writeFailure writes. */
const FAILURE_FIELDS = 5;
const NO_FAILURES: readonly FailureRecord[] = [];

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
  // Each record is built as one object literal of a fixed shape, read at known offsets: no closure per value and no
  // spread (both showed in the exporter thread's profile).
  let at = 0;
  let records = 0;
  const failureAt = (i: number): FailureRecord => ({
    source: batch[i] as FailureRecord['source'],
    reason: batch[i + 1] as string,
    message: batch[i + 2] as string,
    policy: batch[i + 3] as string | null,
    failedOpen: batch[i + 4] === 1,
  });
  while (at < batch.length) {
    records++;
    const tag = batch[at];
    if (tag === REQUEST) {
      let i = at + 14;
      let backend: BackendCallRecord | null = null;
      if (batch[at + 13] === 1) {
        backend = {
          method: batch[i] as string,
          origin: batch[i + 1] as string,
          path: batch[i + 2] as string,
          pathTemplate: batch[i + 3] as string,
          startTime: batch[i + 4] as number,
          durationMs: batch[i + 5] as number,
          status: batch[i + 6] as number | null,
          failure: batch[i + 7] === 1 ? failureAt(i + 8) : null,
        };
        i += backend.failure === null ? 8 : 8 + FAILURE_FIELDS;
      }
      let failures = NO_FAILURES;
      const count = batch[i++] as number;
      if (count > 0) {
        const read: FailureRecord[] = [];
        for (let n = 0; n < count; n++, i += FAILURE_FIELDS) read.push(failureAt(i));
        failures = read;
      }
      reader.request({
        requestId: batch[at + 1] as string,
        traceId: batch[at + 2] as string,
        spanId: batch[at + 3] as string,
        parentSpanId: batch[at + 4] as string | null,
        method: batch[at + 5] as string,
        route: batch[at + 6] as string | null,
        url: batch[at + 7] as string,
        api: batch[at + 8] as string,
        operation: batch[at + 9] as string,
        status: batch[at + 10] as number,
        startTime: batch[at + 11] as number,
        durationMs: batch[at + 12] as number,
        backend,
        failures,
      });
      at = i;
    } else if (tag === FAILURE) {
      const f = failureAt(at + 1);
      const i = at + 1 + FAILURE_FIELDS;
      const about = { requestId: batch[i] as string, api: batch[i + 1] as string, operation: batch[i + 2] as string, traceId: batch[i + 3] as string, parentSpanId: batch[i + 4] as string | null };
      reader.failure(f, about, batch[i + 5] as number);
      at = i + 6;
    } else if (tag === METRIC) {
      const name = batch[at + 1] as string;
      const value = batch[at + 2] as number;
      const dimensions: [string, string][] = [];
      let i = at + 4;
      for (let n = batch[at + 3] as number; n > 0; n--, i += 2) dimensions.push([batch[i] as string, batch[i + 1] as string]);
      reader.metric({ name, value, dimensions });
      at = i;
    } else {
      throw new Error(`a telemetry batch holds an unknown record tag ${String(tag)} at ${at}`);
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
