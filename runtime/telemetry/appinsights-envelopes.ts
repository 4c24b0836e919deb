// Application Insights envelopes as JSON text, made from the gateway's records: the shapes the `applicationinsights`
// SDK (3.x, through its OpenTelemetry exporter) sends for trackRequest, trackDependency, trackException and trackMetric,
// field for field (test/appinsights.test.ts reads them back from an ingestion endpoint, test/appinsights-sdk-parity.test.ts
// holds them against the SDK's own). Written as text with JSON.stringify only around the values: no object per envelope
// to build and then serialise, which is most of what the SDK spent per request.

import type { MetricEmission } from './custom-metrics.ts';
import type { BackendCallRecord, FailureRecord, RequestRecord, RequestRef } from './request-telemetry.ts';
import { newSpanId } from './trace-context.ts';

export interface EnvelopeContext {
  instrumentationKey: string;
  roleName: string;
  roleInstance: string;
  sdkVersion: string;
  /** The request and dependency envelopes' `sampleRate` (100: every request sent). */
  samplingPercentage: number;
}

/** A policy metric's values since the last send, for one name and set of dimensions. */
export interface MetricAggregate {
  emission: MetricEmission;
  sum: number;
  count: number;
  min: number;
  max: number;
}

/** A failure's type name, by who failed. */
export const ERROR_NAMES: Record<FailureRecord['source'], string> = {
  policy: 'PolicyFailure',
  backend: 'BackendError',
  gateway: 'GatewayError',
};

/** The name of the request a failure belongs to, as its envelope's `ai.operation.name`. */
export function operationName(r: RequestRecord): string {
  // The route keeps names few (ids stay out of them).
  return `${r.method} ${r.route ?? '(no matching API)'}`;
}

/** Milliseconds as the envelopes' time span, `[D.]HH:MM:SS.fffffff` trimmed as the SDK trims it (at most 4 zeros). */
export function timeSpan(totalMs: number): string {
  const ms = Number.isFinite(totalMs) && totalMs > 0 ? totalMs : 0;
  let seconds = ((ms / 1000) % 60).toFixed(7);
  let end = seconds.length;
  for (let trimmed = 0; trimmed < 4 && seconds.charCodeAt(end - 1) === 48; trimmed++) end--;
  if (end !== seconds.length) seconds = seconds.slice(0, end);
  if (seconds.charCodeAt(1) === 46) seconds = `0${seconds}`; // "5.0125" → "05.0125"
  const minutes = Math.floor(ms / 60_000) % 60;
  const hours = Math.floor(ms / 3_600_000) % 24;
  const days = Math.floor(ms / 86_400_000);
  return `${days > 0 ? `${days}.` : ''}${hours < 10 ? '0' : ''}${hours}:${minutes < 10 ? '0' : ''}${minutes}:${seconds}`;
}

const HEX = '0123456789abcdef';
/** The bytes of each ASCII text the writer repeats, encoded once. */
const asciiBytes = (text: string) => Buffer.from(text, 'latin1');
/** A new buffer holds at least this much: envelopes are about 1 KiB, and a buffer is shared by many. */
const CHUNK_BYTES = 256 * 1024;

/**
 * JSON text written as ASCII bytes into large buffers, one envelope after another; each finished envelope is a slice
 * (`end()`). Strings are escaped as JSON.stringify escapes them, and every character past U+007F is written as a \u
 * escape too, so that a character is a byte. A buffer is dropped by the writer when full and freed when its last
 * envelope is sent.
 */
export class EnvelopeBytes {
  private chunk = Buffer.allocUnsafe(CHUNK_BYTES);
  private at = 0;
  /** Where the envelope being written starts. */
  private start = 0;

  /** Room for `bytes` more: a new buffer when needed, the envelope begun so far moved into it. */
  private room(bytes: number): void {
    if (this.at + bytes <= this.chunk.length) return;
    const begun = this.at - this.start;
    const next = Buffer.allocUnsafe(Math.max(CHUNK_BYTES, 2 * (begun + bytes)));
    this.chunk.copy(next, 0, this.start, this.at);
    this.chunk = next;
    this.start = 0;
    this.at = begun;
  }

  /** Bytes encoded beforehand (asciiBytes). */
  bytes(b: Buffer): this {
    this.room(b.length);
    this.chunk.set(b, this.at);
    this.at += b.length;
    return this;
  }

  /** Text known to be ASCII and to need no escaping in JSON (ids, numbers, the writer's own names). */
  ascii(text: string): this {
    const n = text.length;
    this.room(n);
    const chunk = this.chunk;
    let at = this.at;
    for (let i = 0; i < n; i++) chunk[at++] = text.charCodeAt(i);
    this.at = at;
    return this;
  }

  /** Any string as a JSON string, quotes included. */
  str(text: string): this {
    const n = text.length;
    this.room(n * 6 + 2);
    const chunk = this.chunk;
    let at = this.at;
    chunk[at++] = 0x22;
    for (let i = 0; i < n; i++) {
      const c = text.charCodeAt(i);
      if (c >= 0x20 && c < 0x80 && c !== 0x22 && c !== 0x5c) {
        chunk[at++] = c;
        continue;
      }
      chunk[at++] = 0x5c; // \
      if (c === 0x22 || c === 0x5c) chunk[at++] = c;
      else if (c === 0x08) chunk[at++] = 0x62; // b
      else if (c === 0x09) chunk[at++] = 0x74; // t
      else if (c === 0x0a) chunk[at++] = 0x6e; // n
      else if (c === 0x0c) chunk[at++] = 0x66; // f
      else if (c === 0x0d) chunk[at++] = 0x72; // r
      else {
        chunk[at++] = 0x75; // u
        chunk[at++] = HEX.charCodeAt(c >> 12);
        chunk[at++] = HEX.charCodeAt((c >> 8) & 15);
        chunk[at++] = HEX.charCodeAt((c >> 4) & 15);
        chunk[at++] = HEX.charCodeAt(c & 15);
      }
    }
    chunk[at++] = 0x22;
    this.at = at;
    return this;
  }

  /** The envelope written since the last end(). */
  end(): Buffer {
    const envelope = this.chunk.subarray(this.start, this.at);
    this.start = this.at;
    return envelope;
  }
}

/** Envelopes (ASCII JSON texts, as EnvelopeBytes writes them) as the body of one POST: a JSON array. */
export function batchBody(envelopes: readonly Buffer[]): Buffer {
  let bytes = 1;
  for (const e of envelopes) bytes += e.length + 1;
  const body = Buffer.allocUnsafe(Math.max(2, bytes));
  body[0] = 0x5b; // [
  let at = 1;
  for (const e of envelopes) {
    body.set(e, at);
    at += e.length;
    body[at++] = 0x2c; // ,
  }
  body[Math.max(1, at - 1)] = 0x5d; // ]
  return body.subarray(0, Math.max(2, at));
}

/**
 * Epoch milliseconds as ISO 8601 (`2026-12-06T08:27:58.123Z`), the date and time up to the second rendered once a
 * second: most envelopes of a batch share them.
 */
class IsoTimes {
  private second = NaN;
  private prefix = '';

  format(ms: number): string {
    const second = Math.floor(ms / 1000);
    if (second !== this.second) {
      const iso = new Date(second * 1000).toISOString();
      // Years past 9999 have another format: those few go through Date each time.
      if (iso.length !== 24) return new Date(ms).toISOString();
      this.second = second;
      this.prefix = iso.slice(0, 20);
    }
    const millis = Math.floor(ms - second * 1000);
    return `${this.prefix}${millis < 10 ? '00' : millis < 100 ? '0' : ''}${millis}Z`;
  }
}

const TEXT = {
  operationId: asciiBytes(',"ai.operation.id":"'),
  operationParentId: asciiBytes('","ai.operation.parentId":"'),
  parentIdOnly: asciiBytes(',"ai.operation.parentId":"'),
  quotedOperationName: asciiBytes('","ai.operation.name":'),
  operationName: asciiBytes(',"ai.operation.name":'),
  requestData: asciiBytes('},"data":{"baseType":"RequestData","baseData":{"ver":2,"id":"'),
  name: asciiBytes('","name":'),
  duration: asciiBytes(',"duration":"'),
  success: asciiBytes('","success":'),
  responseCode: asciiBytes(',"responseCode":"'),
  url: asciiBytes('","url":'),
  properties: asciiBytes(',"properties":'),
  end: asciiBytes('},"measurements":{}}}}'),
  api: asciiBytes('{"api":'),
  operation: asciiBytes(',"operation":'),
  requestId: asciiBytes(',"requestId":'),
  dependencyData: asciiBytes('"},"data":{"baseType":"RemoteDependencyData","baseData":{"ver":2,"id":"'),
  resultCode: asciiBytes(',"resultCode":'),
  data: asciiBytes(',"data":'),
  target: asciiBytes(',"type":"Http","target":'),
  exceptionData: asciiBytes('},"data":{"baseType":"ExceptionData","baseData":{"ver":2,"exceptions":[{"typeName":"'),
  message: asciiBytes('","message":'),
  severity: asciiBytes(',"hasFullStack":false,"parsedStack":[]}],"severityLevel":"'),
  quotedProperties: asciiBytes('","properties":'),
  source: asciiBytes(',"source":'),
  reason: asciiBytes(',"reason":'),
  policy: asciiBytes(',"policy":'),
  failedOpen: asciiBytes(',"failedOpen":"true"'),
  metricData: asciiBytes('},"data":{"baseType":"MetricData","baseData":{"ver":2,"metrics":[{"name":'),
  aggregation: asciiBytes(',"kind":"Aggregation","value":'),
  count: asciiBytes(',"count":'),
  min: asciiBytes(',"min":'),
  max: asciiBytes(',"max":'),
  metricProperties: asciiBytes('}],"properties":{'),
  metricEnd: asciiBytes('}}}}'),
  colon: asciiBytes(':'),
  comma: asciiBytes(','),
  true: asciiBytes('true'),
  false: asciiBytes('false'),
};

type EnvelopeType = 'Request' | 'RemoteDependency' | 'Exception' | 'Metric';

/** Makes the envelopes of one gateway into `bytes`: what every envelope repeats is encoded once. */
export class EnvelopeWriter {
  private readonly times = new IsoTimes();
  /** `{"ver":1,"name":"Microsoft.ApplicationInsights.<type>","time":"`, by type. */
  private readonly opening: Record<EnvelopeType, Buffer>;
  /**
   * `","sampleRate":<rate>,"iKey":…,"tags":{"ai.internal.sdkVersion":…,"ai.cloud.role":…,"ai.cloud.roleInstance":…`,
   * for the requests' sample rate and for 100 (failures sent on their own, metrics).
   */
  private readonly sampledRest: Buffer;
  private readonly unsampledRest: Buffer;

  constructor(
    context: EnvelopeContext,
    private readonly bytes: EnvelopeBytes = new EnvelopeBytes(),
  ) {
    const opening = (type: EnvelopeType) => asciiBytes(`{"ver":1,"name":"Microsoft.ApplicationInsights.${type}","time":"`);
    this.opening = { Request: opening('Request'), RemoteDependency: opening('RemoteDependency'), Exception: opening('Exception'), Metric: opening('Metric') };
    const rest = (sampleRate: string) => {
      const b = new EnvelopeBytes();
      b.ascii(`","sampleRate":${sampleRate},"iKey":`).str(context.instrumentationKey).ascii(',"tags":{"ai.internal.sdkVersion":').str(context.sdkVersion);
      b.ascii(',"ai.cloud.role":').str(context.roleName).ascii(',"ai.cloud.roleInstance":').str(context.roleInstance);
      return Buffer.from(b.end());
    };
    this.sampledRest = rest(String(context.samplingPercentage));
    this.unsampledRest = rest('100');
  }

  /** `{"ver":1,"name":…,"time":…,"sampleRate":…,"iKey":…,"tags":{…` (the tags left open); `sampled`: the request's sample rate, else 100. */
  private head(type: EnvelopeType, time: number, sampled: boolean): void {
    this.bytes.bytes(this.opening[type]).ascii(this.times.format(time)).bytes(sampled ? this.sampledRest : this.unsampledRest);
  }

  /** `{"api":…,"operation":…,"requestId":…` (left open for more members). */
  private refProperties(about: RequestRef): void {
    this.bytes.bytes(TEXT.api).str(about.api).bytes(TEXT.operation).str(about.operation).bytes(TEXT.requestId).str(about.requestId);
  }

  /** The request's envelope, its backend call's and its failures', the request their parent. */
  request(r: RequestRecord, out: Buffer[]): void {
    const b = this.bytes;
    // The operation is the W3C trace the request belongs to, the request the gateway's span in it, its parent the
    // caller's span when the caller sent one: a transaction search shows client, gateway and backend as one trace.
    const name = operationName(r);
    this.head('Request', r.startTime, true);
    b.bytes(TEXT.operationId).ascii(r.traceId);
    if (r.parentSpanId !== null) b.bytes(TEXT.operationParentId).ascii(r.parentSpanId);
    b.bytes(TEXT.quotedOperationName).str(name).bytes(TEXT.requestData).ascii(r.spanId).bytes(TEXT.name).str(name);
    b.bytes(TEXT.duration).ascii(timeSpan(r.durationMs)).bytes(TEXT.success);
    // 4xx answers are the gateway doing its job (a refused key, a rate limit): only 5xx count as failed.
    b.bytes(r.status < 500 ? TEXT.true : TEXT.false).bytes(TEXT.responseCode).ascii(String(r.status)).bytes(TEXT.url).str(r.url).bytes(TEXT.properties);
    this.refProperties(r);
    out.push(b.bytes(TEXT.end).end());
    if (r.backend !== null) out.push(this.backendCall(r, r.backend, newSpanId()));
    const time = r.startTime + r.durationMs;
    for (const failure of r.failures) {
      this.head('Exception', time, true);
      b.bytes(TEXT.operationId).ascii(r.traceId).bytes(TEXT.operationParentId).ascii(r.spanId).bytes(TEXT.quotedOperationName).str(name);
      out.push(this.exception(failure, r));
    }
  }

  /** A failure without its request: noticed after the response head, or its request sampled out. Always sent, in the request's trace. */
  failure(f: FailureRecord, about: RequestRef, time: number, out: Buffer[]): void {
    this.head('Exception', time, false);
    this.bytes.bytes(TEXT.operationId).ascii(about.traceId);
    if (about.parentSpanId !== null) this.bytes.bytes(TEXT.operationParentId).ascii(about.parentSpanId);
    this.bytes.ascii('"');
    out.push(this.exception(f, about));
  }

  /** A policy metric's aggregate since the last send, as the SDK's metric exporter sends it. */
  metric(a: MetricAggregate, time: number, out: Buffer[]): void {
    const b = this.bytes;
    this.head('Metric', time, false);
    b.bytes(TEXT.metricData).str(a.emission.name).bytes(TEXT.aggregation).ascii(String(a.sum)).bytes(TEXT.count).ascii(String(a.count));
    b.bytes(TEXT.min).ascii(String(a.min)).bytes(TEXT.max).ascii(String(a.max)).bytes(TEXT.metricProperties);
    let first = true;
    for (const [name, value] of a.emission.dimensions) {
      if (!first) b.bytes(TEXT.comma);
      first = false;
      b.str(name).bytes(TEXT.colon).str(value);
    }
    out.push(b.bytes(TEXT.metricEnd).end());
  }

  private backendCall(r: RequestRecord, call: BackendCallRecord, id: string): Buffer {
    const b = this.bytes;
    this.head('RemoteDependency', call.startTime, true);
    b.bytes(TEXT.operationId).ascii(r.traceId).bytes(TEXT.operationParentId).ascii(r.spanId).bytes(TEXT.dependencyData).ascii(id);
    // No status: the failure's reason (`timeout`, `unreachable`) stands in for it.
    const resultCode = call.status !== null ? String(call.status) : (call.failure?.reason ?? 'failed');
    b.bytes(TEXT.name).str(`${call.method} ${call.pathTemplate}`).bytes(TEXT.resultCode).str(resultCode);
    // The URL without the query, which the gateway never records (keys travel in queries often enough).
    b.bytes(TEXT.data).str(call.origin + call.path).bytes(TEXT.target).str(call.origin.slice(call.origin.indexOf('//') + 2));
    b.bytes(TEXT.duration).ascii(timeSpan(call.durationMs)).bytes(TEXT.success).bytes(call.status !== null && call.status < 500 ? TEXT.true : TEXT.false);
    b.bytes(TEXT.properties);
    this.refProperties(r);
    return b.bytes(TEXT.end).end();
  }

  /** The rest of an exception's envelope, after its head and its operation tags (up to the closing quote of the last). */
  private exception(f: FailureRecord, about: RequestRef): Buffer {
    const b = this.bytes;
    b.bytes(TEXT.exceptionData).ascii(ERROR_NAMES[f.source]).bytes(TEXT.message).str(f.message);
    // A fail-open policy's failure did not fail the request.
    b.bytes(TEXT.severity).ascii(f.failedOpen ? 'Warning' : 'Error').bytes(TEXT.quotedProperties);
    this.refProperties(about);
    b.bytes(TEXT.source).str(f.source).bytes(TEXT.reason).str(f.reason);
    if (f.policy !== null) b.bytes(TEXT.policy).str(f.policy);
    if (f.failedOpen) b.bytes(TEXT.failedOpen);
    return b.bytes(TEXT.end).end();
  }
}
