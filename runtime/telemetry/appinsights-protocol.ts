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
 * Records travel as bytes, one buffer a batch, moved to the exporter thread without a copy (a transferred
 * ArrayBuffer), in the order the functions below write and read them; a tag opens each record. Numbers are float64;
 * a text is its length in UTF-8 bytes (uint32; NO_TEXT for null) and those bytes. Each record's texts are copied into
 * the buffer when it is written, so the batch keeps no string alive. Before this the batch was a flat array of the
 * records' values, cloned when handed over, whose strings survived the young generation's collections for the 100 ms
 * a batch waits: 2.8 us a request of the gateway thread's collector and 3.4 us of V8's helper threads, which fell to
 * 0.5 and 0 (BENCHMARKS.md, issue 17, sixteenth session).
 */
export interface RecordBatch {
  bytes: ArrayBuffer;
  /** Bytes used. */
  length: number;
}

const NO_TEXT = 0xffffffff;
/** What a batch's buffer starts at, at most: a full batch of requests (HANDOVER_BATCH, 1,024) takes some 400 KiB. */
const MAX_START_BYTES = 1024 * 1024;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Writes records into a buffer that grows as it must; take() hands the batch over and starts another. */
export class BatchWriter {
  private bytes!: Uint8Array;
  private view!: DataView;
  private at = 0;

  /** `capacity`: the first buffer's size; a batch's buffer starts as large as the last one grew. */
  constructor(capacity = 64 * 1024) {
    this.use(new Uint8Array(capacity));
  }

  num(n: number): void {
    if (this.at + 8 > this.bytes.length) this.grow(8);
    this.view.setFloat64(this.at, n, true);
    this.at += 8;
  }

  text(s: string | null): void {
    if (s === null) {
      if (this.at + 4 > this.bytes.length) this.grow(4);
      this.view.setUint32(this.at, NO_TEXT, true);
      this.at += 4;
      return;
    }
    // UTF-8 takes at most three bytes a UTF-16 unit.
    const most = 4 + s.length * 3;
    if (this.at + most > this.bytes.length) this.grow(most);
    const bytes = this.bytes;
    const start = this.at + 4;
    let end = start;
    // ASCII, which nearly every value is (ids, paths, names), byte by byte: no view of the buffer to make.
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) {
        end = start + encoder.encodeInto(s, bytes.subarray(start)).written;
        break;
      }
      bytes[end++] = c;
    }
    this.view.setUint32(this.at, end - start, true);
    this.at = end;
  }

  /** The batch written so far (to be transferred: this writer no longer touches it), and a new buffer for the next. */
  take(): RecordBatch {
    const batch = { bytes: this.bytes.buffer as ArrayBuffer, length: this.at };
    // A batch that grew while the exporter thread was away does not make every later buffer as large.
    this.use(new Uint8Array(Math.min(this.bytes.length, MAX_START_BYTES)));
    this.at = 0;
    return batch;
  }

  private grow(needed: number): void {
    let size = this.bytes.length * 2;
    while (size < this.at + needed) size *= 2;
    const bytes = new Uint8Array(size);
    bytes.set(this.bytes.subarray(0, this.at));
    this.use(bytes);
  }

  private use(bytes: Uint8Array): void {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer);
  }
}

/** Reads a batch's values back in the order BatchWriter wrote them. */
class BatchReader {
  private readonly bytes: Uint8Array;
  private readonly view: DataView;
  at = 0;

  constructor(readonly batch: RecordBatch) {
    this.bytes = new Uint8Array(batch.bytes, 0, batch.length);
    this.view = new DataView(batch.bytes, 0, batch.length);
  }

  get done(): boolean {
    return this.at >= this.batch.length;
  }

  num(): number {
    const n = this.view.getFloat64(this.at, true);
    this.at += 8;
    return n;
  }

  text(): string | null {
    const length = this.view.getUint32(this.at, true);
    this.at += 4;
    if (length === NO_TEXT) return null;
    const start = this.at;
    this.at += length;
    return decoder.decode(this.bytes.subarray(start, this.at));
  }

  /** A text written as a string (not null). */
  str(): string {
    return this.text() as string;
  }
}

const REQUEST = 0;
const FAILURE = 1;
const METRIC = 2;
const NO_FAILURES: readonly FailureRecord[] = [];

function writeFailure(out: BatchWriter, f: FailureRecord): void {
  out.text(f.source);
  out.text(f.reason);
  out.text(f.message);
  out.text(f.policy);
  out.num(f.failedOpen ? 1 : 0);
}

function readFailure(at: BatchReader): FailureRecord {
  return {
    source: at.str() as FailureRecord['source'],
    reason: at.str(),
    message: at.str(),
    policy: at.text(),
    failedOpen: at.num() === 1,
  };
}

function readBackend(at: BatchReader): BackendCallRecord | null {
  if (at.num() !== 1) return null;
  const method = at.str();
  const origin = at.str();
  const path = at.str();
  const pathTemplate = at.str();
  const startTime = at.num();
  const durationMs = at.num();
  const status = at.num();
  const failure = at.num() === 1 ? readFailure(at) : null;
  return { method, origin, path, pathTemplate, startTime, durationMs, status: Number.isNaN(status) ? null : status, failure };
}

function readFailures(at: BatchReader): readonly FailureRecord[] {
  const count = at.num();
  if (count === 0) return NO_FAILURES;
  const read: FailureRecord[] = [];
  for (let n = 0; n < count; n++) read.push(readFailure(at));
  return read;
}

/** A request with its backend call and failures (failure messages already masked by the gateway). */
export function writeRequest(out: BatchWriter, r: RequestRecord): void {
  out.num(REQUEST);
  out.text(r.requestId);
  out.text(r.traceId);
  out.text(r.spanId);
  out.text(r.parentSpanId);
  out.text(r.method);
  out.text(r.route);
  out.text(r.url);
  out.text(r.api);
  out.text(r.operation);
  out.num(r.status);
  out.num(r.startTime);
  out.num(r.durationMs);
  const b = r.backend;
  if (b === null) out.num(0);
  else {
    out.num(1);
    out.text(b.method);
    out.text(b.origin);
    out.text(b.path);
    out.text(b.pathTemplate);
    out.num(b.startTime);
    out.num(b.durationMs);
    out.num(b.status ?? NaN);
    if (b.failure === null) out.num(0);
    else {
      out.num(1);
      writeFailure(out, b.failure);
    }
  }
  out.num(r.failures.length);
  for (const f of r.failures) writeFailure(out, f);
}

/** A failure sent on its own: noticed after the response head, or of a request sampled out. `time`: epoch ms. */
export function writeLoneFailure(out: BatchWriter, f: FailureRecord, about: RequestRef, time: number): void {
  out.num(FAILURE);
  writeFailure(out, f);
  out.text(about.requestId);
  out.text(about.api);
  out.text(about.operation);
  out.text(about.traceId);
  out.text(about.parentSpanId);
  out.num(time);
}

export function writeMetric(out: BatchWriter, e: MetricEmission): void {
  out.num(METRIC);
  out.text(e.name);
  out.num(e.value);
  out.num(e.dimensions.length);
  for (const [name, value] of e.dimensions) {
    out.text(name);
    out.text(value);
  }
}

export interface RecordReader {
  request(r: RequestRecord): void;
  failure(f: FailureRecord, about: RequestRef, time: number): void;
  metric(e: MetricEmission): void;
}

/** Reads a batch back into records, handing each to `reader`; returns how many records it held. */
export function readRecords(batch: RecordBatch, reader: RecordReader): number {
  const at = new BatchReader(batch);
  let records = 0;
  while (!at.done) {
    records++;
    const tag = at.num();
    if (tag === REQUEST) {
      // One object literal of a fixed shape (a spread showed in the exporter thread's profile); its members are
      // evaluated in the order they are written, which is the order of the values.
      reader.request({
        requestId: at.str(),
        traceId: at.str(),
        spanId: at.str(),
        parentSpanId: at.text(),
        method: at.str(),
        route: at.text(),
        url: at.str(),
        api: at.str(),
        operation: at.str(),
        status: at.num(),
        startTime: at.num(),
        durationMs: at.num(),
        backend: readBackend(at),
        failures: readFailures(at),
      });
    } else if (tag === FAILURE) {
      const f = readFailure(at);
      const about = { requestId: at.str(), api: at.str(), operation: at.str(), traceId: at.str(), parentSpanId: at.text() };
      reader.failure(f, about, at.num());
    } else if (tag === METRIC) {
      const name = at.str();
      const value = at.num();
      const dimensions: [string, string][] = [];
      for (let n = at.num(); n > 0; n--) dimensions.push([at.str(), at.str()]);
      reader.metric({ name, value, dimensions });
    } else {
      throw new Error(`a telemetry batch holds an unknown record tag ${String(tag)} at byte ${at.at - 8}`);
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
  /** `records` records, written by the functions above (`batch.bytes` is transferred). */
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
