// OTLP export (GATEHOUSE_OTLP_ENDPOINT): each request as a span, its backend call as a child span, and request metrics,
// to an OpenTelemetry collector over OTLP/HTTP (JSON), with the `@opentelemetry/*` exporters. Loaded (with the
// packages) only by a gateway told to export (runtime/composition-root/gateway.ts imports this module lazily).
//
// The request path keeps the record it is handed (a push) and records its metric points; spans are made from the
// records and sent in batches off the request path, one export at a time and at most two in flight. What is held is
// bounded: past the queue limit a request's spans are dropped and counted
// (gatehouse_otlp_dropped_total{reason="queue-full"}), and so is a batch the collector did not take
// (reason="send-failed", after the exporter's own retries). Nothing is written to disk; a request never waits on the
// collector and never fails because of it.
//
// The spans carry the request's W3C trace (runtime/telemetry/trace-context.ts): the server span's id is the gateway's
// span, which the backend got as its parent, and its parent the caller's span.

import { hostname } from 'node:os';
import type { Attributes, Counter as MetricCounter, HrTime, SpanContext } from '@opentelemetry/api';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider, PeriodicExportingMetricReader, type PushMetricExporter } from '@opentelemetry/sdk-metrics';
import { ERROR_NAMES, operationName } from './appinsights-envelopes.ts';
import type { MetricEmission } from './custom-metrics.ts';
import type { Logger } from './logger.ts';
import type { Counter, MetricsRegistry } from './metrics.ts';
import type { BackendCallRecord, FailureRecord, RequestRecord, RequestRef, RequestTelemetry } from './request-telemetry.ts';
import { newSpanId } from './trace-context.ts';
import { signalUrl, type OtlpSettings } from './otlp-settings.ts';

/** The span shape the trace exporter reads (sdk-trace's ReadableSpan, which the exporter's types name). */
type ExportedSpan = Parameters<OTLPTraceExporter['export']>[0][number];

const SPAN_KIND_SERVER = 1;
const SPAN_KIND_CLIENT = 2;
const STATUS_UNSET = 0;
const STATUS_ERROR = 2;
const SAMPLED = 1;
/** How long one export may take before it is abandoned (the exporter retries within it). */
const EXPORT_TIMEOUT_MS = 10_000;
/** Exports in flight at once: past it, batches wait in the queue (and requests past its limit are dropped). */
const MAX_EXPORTS_IN_FLIGHT = 2;
/** Problems with the collector reach the log at most once this often. */
const WARN_INTERVAL_MS = 60_000;

/** Epoch milliseconds as OpenTelemetry's [seconds, nanoseconds]. */
function hrTime(ms: number): HrTime {
  const seconds = Math.floor(ms / 1000);
  return [seconds, Math.round((ms - seconds * 1000) * 1e6)];
}

function context(traceId: string, spanId: string, remote: boolean): SpanContext {
  return { traceId, spanId, traceFlags: SAMPLED, isRemote: remote };
}

export async function startOtlp(settings: OtlpSettings, logger: Logger, version: string, metrics: MetricsRegistry): Promise<RequestTelemetry> {
  const telemetry = new OtlpTelemetry(settings, logger.child({ component: 'otlp' }), version, metrics);
  logger.info('exporting spans and metrics over OTLP', { endpoint: settings.endpoint, queueLimit: settings.queueLimit });
  return telemetry;
}

export class OtlpTelemetry implements RequestTelemetry {
  private readonly spans: OTLPTraceExporter;
  private readonly meters: MeterProvider;
  private readonly resource;
  private readonly scope: { name: string; version: string };
  private readonly requestDuration;
  private readonly backendDuration;
  private readonly meter;
  private readonly policyMetrics = new Map<string, MetricCounter>();
  /** Records waiting to be exported, and late failures (as records of their own). */
  private pending: (RequestRecord | LateFailure)[] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;
  private inFlight = 0;
  private closed = false;
  private lastWarning = -Infinity;
  /** The last span export failed: at shutdown, what waits is dropped rather than sent to a collector that is away. */
  private failing = false;
  private readonly exported: Counter;
  private readonly dropped: Counter;
  /** Resolved when the exports in flight have settled (shutdown waits for them). */
  private settled: (() => void) | null = null;

  constructor(
    private readonly settings: OtlpSettings,
    private readonly log: Logger,
    version: string,
    metrics: MetricsRegistry,
  ) {
    this.resource = resourceFromAttributes({ 'service.name': 'gatehouse', 'service.version': version, 'service.instance.id': hostname() });
    this.scope = { name: 'gatehouse', version };
    this.spans = new OTLPTraceExporter({ url: signalUrl(settings.endpoint, 'traces'), timeoutMillis: EXPORT_TIMEOUT_MS, concurrencyLimit: MAX_EXPORTS_IN_FLIGHT });
    this.exported = metrics.counter('gatehouse_otlp_exported_total', 'Spans the OTLP collector accepted.');
    this.dropped = metrics.counter('gatehouse_otlp_dropped_total', 'Spans and metric exports not delivered to the OTLP collector, by signal and reason (queue-full, send-failed, shutdown).');
    metrics.gauge('gatehouse_otlp_queued', 'Requests whose spans wait to be exported over OTLP.', () => this.pending.length);
    const metricExporter = new OTLPMetricExporter({ url: signalUrl(settings.endpoint, 'metrics'), timeoutMillis: EXPORT_TIMEOUT_MS });
    this.meters = new MeterProvider({
      resource: this.resource,
      readers: [
        new PeriodicExportingMetricReader({
          exporter: this.countedMetrics(metricExporter),
          exportIntervalMillis: settings.metricsIntervalMs,
          exportTimeoutMillis: Math.min(EXPORT_TIMEOUT_MS, settings.metricsIntervalMs),
        }),
      ],
    });
    this.meter = this.meters.getMeter('gatehouse', version);
    this.requestDuration = this.meter.createHistogram('http.server.request.duration', {
      unit: 's',
      description: 'Time to the response head of requests the gateway answered.',
    });
    this.backendDuration = this.meter.createHistogram('http.client.request.duration', {
      unit: 's',
      description: 'Time to the response head of the gateway\'s calls to backends.',
    });
  }

  /** The metric exporter, its failed exports counted and logged. */
  private countedMetrics(exporter: OTLPMetricExporter): PushMetricExporter {
    return {
      export: (batch, done) =>
        exporter.export(batch, (result) => {
          if (result.code !== 0) {
            this.dropped.inc({ signal: 'metrics', reason: 'send-failed' });
            this.warn('could not export metrics to the OTLP collector', result.error);
          }
          done(result);
        }),
      forceFlush: () => exporter.forceFlush(),
      shutdown: () => exporter.shutdown(),
      selectAggregationTemporality: exporter.selectAggregationTemporality?.bind(exporter),
    };
  }

  request(r: RequestRecord): void {
    if (this.closed) return;
    const attributes = { 'http.request.method': r.method, 'http.response.status_code': r.status, 'gatehouse.api': r.api, 'gatehouse.operation': r.operation };
    this.requestDuration.record(r.durationMs / 1000, r.route === null ? attributes : { ...attributes, 'http.route': r.route });
    if (r.backend !== null) {
      const b = r.backend;
      this.backendDuration.record(b.durationMs / 1000, { 'http.request.method': b.method, 'server.address': hostOf(b.origin), 'gatehouse.api': r.api, 'http.response.status_code': b.status ?? 0 });
    }
    this.queue(r);
  }

  lateFailure(failure: FailureRecord, about: RequestRef): void {
    if (this.closed) return;
    this.queue({ late: failure, about, time: Date.now() });
  }

  metric(emission: MetricEmission): void {
    if (this.closed) return;
    let counter = this.policyMetrics.get(emission.name);
    if (counter === undefined) {
      counter = this.meter.createCounter(emission.name, { description: 'A metric policies emit (emit-metric).' });
      this.policyMetrics.set(emission.name, counter);
    }
    const attributes: Attributes = {};
    for (const [name, value] of emission.dimensions) attributes[name] = value;
    counter.add(emission.value, attributes);
  }

  private queue(item: RequestRecord | LateFailure): void {
    if (this.pending.length >= this.settings.queueLimit) {
      this.dropped.inc({ signal: 'traces', reason: 'queue-full' });
      return;
    }
    this.pending.push(item);
    if (this.pending.length >= this.settings.batchSize) this.send();
    else this.timer ??= setTimeout(() => this.send(), this.settings.sendIntervalMs);
  }

  /** Exports the next batch, unless enough are in flight (the one that settles sends the next). */
  private send(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.pending.length === 0 || this.inFlight >= MAX_EXPORTS_IN_FLIGHT) return;
    const batch = this.pending.length <= this.settings.batchSize ? this.pending : this.pending.slice(0, this.settings.batchSize);
    this.pending = batch === this.pending ? [] : this.pending.slice(batch.length);
    const spans: ExportedSpan[] = [];
    for (const item of batch) this.spansOf(item, spans);
    this.inFlight++;
    this.spans.export(spans, (result) => {
      this.inFlight--;
      this.failing = result.code !== 0;
      if (result.code === 0) this.exported.inc({}, spans.length);
      else {
        this.dropped.inc({ signal: 'traces', reason: 'send-failed' }, spans.length);
        this.warn('could not export spans to the OTLP collector', result.error);
      }
      if (this.inFlight === 0 && this.settled) this.settled();
      if (this.pending.length >= this.settings.batchSize || (this.closed && this.pending.length > 0)) this.send();
      else if (this.pending.length > 0) this.timer ??= setTimeout(() => this.send(), this.settings.sendIntervalMs);
    });
  }

  private warn(message: string, error: Error | undefined): void {
    const now = performance.now();
    if (now - this.lastWarning < WARN_INTERVAL_MS) return;
    this.lastWarning = now;
    this.log.warn(message, { endpoint: this.settings.endpoint, error: error?.message ?? 'unknown' });
  }

  /** The spans of one record: the request's server span and its backend call's client span; a late failure's event. */
  private spansOf(item: RequestRecord | LateFailure, out: ExportedSpan[]): void {
    if ('late' in item) {
      // A failure after the response head (a body cut short): a span of its own under the request's.
      const { late, about, time } = item;
      out.push(this.span('backend body cut short', SPAN_KIND_CLIENT, context(about.traceId, newSpanId(), false), about.parentSpanId, time, 0, STATUS_ERROR, refAttributes(about), [failureEvent(this.log, late, time)]));
      return;
    }
    const r = item;
    const attributes: Attributes = {
      ...refAttributes(r),
      'http.request.method': r.method,
      'url.full': r.url,
      'http.response.status_code': r.status,
    };
    if (r.route !== null) attributes['http.route'] = r.route;
    const end = r.startTime + r.durationMs;
    const events = r.failures.map((f) => failureEvent(this.log, f, end));
    const status = r.status >= 500 ? STATUS_ERROR : STATUS_UNSET;
    out.push(this.span(operationName(r), SPAN_KIND_SERVER, context(r.traceId, r.spanId, false), r.parentSpanId, r.startTime, r.durationMs, status, attributes, events));
    if (r.backend !== null) out.push(this.backendSpan(r, r.backend));
  }

  private backendSpan(r: RequestRecord, b: BackendCallRecord): ExportedSpan {
    const url = new URL(b.origin);
    const attributes: Attributes = {
      'http.request.method': b.method,
      'server.address': url.hostname,
      'server.port': Number(url.port || (url.protocol === 'https:' ? 443 : 80)),
      'url.full': b.origin + b.path,
      'gatehouse.api': r.api,
      'gatehouse.request_id': r.requestId,
    };
    if (b.status !== null) attributes['http.response.status_code'] = b.status;
    else if (b.failure !== null) attributes['error.type'] = b.failure.reason;
    const failed = b.status === null || b.status >= 500;
    return this.span(`${b.method} ${b.pathTemplate}`, SPAN_KIND_CLIENT, context(r.traceId, newSpanId(), false), r.spanId, b.startTime, b.durationMs, failed ? STATUS_ERROR : STATUS_UNSET, attributes, []);
  }

  private span(
    name: string,
    kind: number,
    own: SpanContext,
    parentSpanId: string | null,
    startMs: number,
    durationMs: number,
    status: number,
    attributes: Attributes,
    events: ExportedSpan['events'],
  ): ExportedSpan {
    return {
      name,
      kind,
      spanContext: () => own,
      parentSpanContext: parentSpanId === null ? undefined : context(own.traceId, parentSpanId, true),
      startTime: hrTime(startMs),
      endTime: hrTime(startMs + durationMs),
      duration: hrTime(durationMs),
      status: { code: status },
      attributes,
      links: [],
      events,
      ended: true,
      resource: this.resource,
      instrumentationScope: this.scope,
      droppedAttributesCount: 0,
      droppedEventsCount: 0,
      droppedLinksCount: 0,
    } as ExportedSpan;
  }

  async close(timeoutMs: number): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const deadline = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), timeoutMs).unref?.());
    const flushed = (async () => {
      while ((this.pending.length > 0 || this.inFlight > 0) && !this.failing) {
        if (this.inFlight === 0) this.send();
        await new Promise<void>((resolve) => (this.settled = resolve));
        this.settled = null;
      }
      // A collector that is away would hold the metrics' last export (and the shutdown) for the export timeout.
      if (this.failing) return;
      await this.meters.shutdown();
      await this.spans.shutdown();
    })().catch((err: unknown) => this.log.warn('flushing OTLP telemetry failed', { error: (err as Error)?.message ?? String(err) }));
    if ((await Promise.race([flushed, deadline])) === 'timeout' || this.failing) {
      const left = this.pending.length;
      if (left > 0) this.dropped.inc({ signal: 'traces', reason: 'shutdown' }, left);
      this.pending = [];
      this.log.warn('OTLP telemetry not flushed (the collector is away, or the shutdown timeout passed): the rest is dropped', { timeoutMs, dropped: left });
    } else this.log.info('OTLP telemetry flushed', {});
  }
}

interface LateFailure {
  late: FailureRecord;
  about: RequestRef;
  time: number;
}

function refAttributes(r: RequestRef): Attributes {
  return { 'gatehouse.api': r.api, 'gatehouse.operation': r.operation, 'gatehouse.request_id': r.requestId };
}

/** A failure as the span event OpenTelemetry names `exception`; its message masked as the log masks it. */
function failureEvent(log: Logger, f: FailureRecord, time: number): ExportedSpan['events'][number] {
  const attributes: Attributes = {
    'exception.type': ERROR_NAMES[f.source],
    'exception.message': log.redact(f.message),
    'gatehouse.reason': f.reason,
  };
  if (f.policy !== null) attributes['gatehouse.policy'] = f.policy;
  if (f.failedOpen) attributes['gatehouse.failed_open'] = true;
  return { name: 'exception', attributes, time: hrTime(time), droppedAttributesCount: 0 };
}

function hostOf(origin: string): string {
  const at = origin.indexOf('//');
  return origin.slice(at + 2);
}
