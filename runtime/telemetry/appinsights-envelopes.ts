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

/** Milliseconds as the envelopes' time span, `[D.]HH:MM:SS.fffffff` trimmed as the SDK trims it. */
export function timeSpan(totalMs: number): string {
  const ms = Number.isFinite(totalMs) && totalMs > 0 ? totalMs : 0;
  let seconds = ((ms / 1000) % 60).toFixed(7).replace(/0{0,4}$/, '');
  if (seconds.indexOf('.') < 2) seconds = `0${seconds}`;
  const minutes = String(Math.floor(ms / 60_000) % 60).padStart(2, '0');
  const hours = String(Math.floor(ms / 3_600_000) % 24).padStart(2, '0');
  const days = Math.floor(ms / 86_400_000);
  return `${days > 0 ? `${days}.` : ''}${hours}:${minutes}:${seconds}`;
}

const NON_ASCII = /[^\x00-\x7f]/;
const NON_ASCII_ALL = /[^\x00-\x7f]/g;

/**
 * A string as JSON text in ASCII only (anything past U+007F as a \u escape), so that a batch is written into its
 * buffer byte for byte (latin1, one byte a character): encoding large strings as UTF-8 took longer than making the envelopes (BENCHMARKS.md).
 */
function str(value: string): string {
  const text = JSON.stringify(value);
  return NON_ASCII.test(text) ? text.replace(NON_ASCII_ALL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`) : text;
}

/** Envelopes (ASCII JSON texts, as this module makes them) as the body of one POST: a JSON array. */
export function batchBody(envelopes: readonly string[]): Buffer {
  let bytes = 1;
  for (const e of envelopes) bytes += e.length + 1;
  const body = Buffer.allocUnsafe(Math.max(2, bytes));
  body[0] = 0x5b; // [
  let at = 1;
  for (const e of envelopes) {
    at += body.write(e, at, 'latin1');
    body[at++] = 0x2c; // ,
  }
  body[Math.max(1, at - 1)] = 0x5d; // ]
  return body.subarray(0, Math.max(2, at));
}

/** `{"api":…,"operation":…,"requestId":…` (left open for more members). */
function refProperties(about: RequestRef): string {
  return `{"api":${str(about.api)},"operation":${str(about.operation)},"requestId":${str(about.requestId)}`;
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

/** Makes the envelopes of one gateway: what every envelope repeats is rendered once. */
export class EnvelopeWriter {
  private readonly times = new IsoTimes();
  /** `"iKey":…,"tags":{"ai.internal.sdkVersion":…,"ai.cloud.role":…,"ai.cloud.roleInstance":…` */
  private readonly common: string;
  private readonly requestSampleRate: string;

  constructor(context: EnvelopeContext) {
    this.common =
      `"iKey":${str(context.instrumentationKey)},"tags":{"ai.internal.sdkVersion":${str(context.sdkVersion)},` +
      `"ai.cloud.role":${str(context.roleName)},"ai.cloud.roleInstance":${str(context.roleInstance)}`;
    this.requestSampleRate = String(context.samplingPercentage);
  }

  private head(type: string, time: number, sampleRate: string): string {
    return `{"ver":1,"name":"Microsoft.ApplicationInsights.${type}","time":"${this.times.format(time)}","sampleRate":${sampleRate},${this.common}`;
  }

  /** The request's envelope, its backend call's and its failures', the request their parent. */
  request(r: RequestRecord, out: string[]): void {
    // The operation is the W3C trace the request belongs to, the request the gateway's span in it, its parent the
    // caller's span when the caller sent one: a transaction search shows client, gateway and backend as one trace.
    const operationId = r.traceId;
    const id = r.spanId;
    const name = operationName(r);
    const nameText = str(name);
    const properties = refProperties(r);
    out.push(
      `${this.head('Request', r.startTime, this.requestSampleRate)},"ai.operation.id":"${operationId}",` +
        `${r.parentSpanId === null ? '' : `"ai.operation.parentId":"${r.parentSpanId}",`}"ai.operation.name":${nameText}},` +
        `"data":{"baseType":"RequestData","baseData":{"ver":2,"id":"${id}","name":${nameText},"duration":"${timeSpan(r.durationMs)}",` +
        // 4xx answers are the gateway doing its job (a refused key, a rate limit): only 5xx count as failed.
        `"success":${r.status < 500},"responseCode":"${r.status}","url":${str(r.url)},"properties":${properties}},"measurements":{}}}}`,
    );
    const parent = `,"ai.operation.id":"${operationId}","ai.operation.parentId":"${id}"`;
    if (r.backend !== null) out.push(this.backendCall(r.backend, newSpanId(), parent, properties));
    const time = r.startTime + r.durationMs;
    for (const failure of r.failures) out.push(this.exception(failure, r, time, `${parent},"ai.operation.name":${nameText}`, this.requestSampleRate));
  }

  /** A failure without its request: noticed after the response head, or its request sampled out. Always sent, in the request's trace. */
  failure(f: FailureRecord, about: RequestRef, time: number, out: string[]): void {
    const parent = about.parentSpanId === null ? '' : `,"ai.operation.parentId":"${about.parentSpanId}"`;
    out.push(this.exception(f, about, time, `,"ai.operation.id":"${about.traceId}"${parent}`, '100'));
  }

  /** A policy metric's aggregate since the last send, as the SDK's metric exporter sends it. */
  metric(a: MetricAggregate, time: number, out: string[]): void {
    let properties = '';
    for (const [name, value] of a.emission.dimensions) properties += `${properties === '' ? '' : ','}${str(name)}:${str(value)}`;
    out.push(
      `${this.head('Metric', time, '100')}},"data":{"baseType":"MetricData","baseData":{"ver":2,"metrics":[{"name":${str(a.emission.name)},` +
        `"kind":"Aggregation","value":${a.sum},"count":${a.count},"min":${a.min},"max":${a.max}}],"properties":{${properties}}}}}`,
    );
  }

  /** `properties`: the request's, left open as refProperties leaves them. */
  private backendCall(b: BackendCallRecord, id: string, parent: string, properties: string): string {
    const slashes = b.origin.indexOf('//');
    const host = b.origin.slice(slashes + 2);
    // No status: the failure's reason (`timeout`, `unreachable`) stands in for it.
    const resultCode = b.status !== null ? String(b.status) : (b.failure?.reason ?? 'failed');
    return (
      `${this.head('RemoteDependency', b.startTime, this.requestSampleRate)}${parent}},"data":{"baseType":"RemoteDependencyData","baseData":{"ver":2,` +
      `"id":"${id}","name":${str(`${b.method} ${b.pathTemplate}`)},"resultCode":${str(resultCode)},` +
      // The URL without the query, which the gateway never records (keys travel in queries often enough).
      `"data":${str(b.origin + b.path)},"type":"Http","target":${str(host)},"duration":"${timeSpan(b.durationMs)}",` +
      `"success":${b.status !== null && b.status < 500},"properties":${properties}},"measurements":{}}}}`
    );
  }

  private exception(f: FailureRecord, about: RequestRef, time: number, operationTags: string, sampleRate: string): string {
    let properties = `${refProperties(about)},"source":${str(f.source)},"reason":${str(f.reason)}`;
    if (f.policy !== null) properties += `,"policy":${str(f.policy)}`;
    if (f.failedOpen) properties += ',"failedOpen":"true"';
    return (
      `${this.head('Exception', time, sampleRate)}${operationTags}},"data":{"baseType":"ExceptionData","baseData":{"ver":2,` +
      `"exceptions":[{"typeName":"${ERROR_NAMES[f.source]}","message":${str(f.message)},"hasFullStack":false,"parsedStack":[]}],` +
      // A fail-open policy's failure did not fail the request.
      `"severityLevel":"${f.failedOpen ? 'Warning' : 'Error'}","properties":${properties}},"measurements":{}}}}`
    );
  }
}
