// Application Insights as the gateway's upstream telemetry (GATEHOUSE_APPINSIGHTS_CONNECTION_STRING): requests,
// backend calls, failures and policy metrics, sent with explicit track calls of the `applicationinsights` package.
//
// This module is the only one that touches the package, and it loads it (about a second of imports) only when
// Application Insights is configured. What it sets up, and why:
// - An isolated TelemetryClient (`useGlobalProviders: false`): no auto-instrumentation of HTTP, console, loggers or
//   databases, no performance counters, no live metrics. The gateway knows each request and backend call already;
//   instrumenting Node's HTTP stack would count them twice and slow every request.
// - No offline storage: the exporter would otherwise keep failed batches in a temporary directory (up to 50 MB) and
//   replay them after restarts. What the ingestion endpoint does not take after the SDK's retries is dropped.
// - Each ingestion request times out after INGESTION_TIMEOUT_MS (the SDK sets none: a silent endpoint would hold
//   every batch sent to it).
// - No statsbeat (the SDK's reports about itself to Microsoft's endpoints, not the connection string's) and no
//   resource metric envelope with every batch, unless the operator set those variables themselves.
// - Correlation: the request is tracked first, a span processor notes the span id the SDK gave it, and the backend
//   call and the failures are tracked inside that span's context, so Application Insights shows them as its children.
//   The SDK reads the parent from the OpenTelemetry API's active context; a synchronous context manager (below) makes
//   that context active for the length of the track calls, without async hooks on the request path.

import { hostname } from 'node:os';
import type { TelemetryClient } from 'applicationinsights';
import type * as OtelApi from '@opentelemetry/api';
import type { MetricEmission } from './custom-metrics.ts';
import type { Logger } from './logger.ts';
import type { MetricsRegistry } from './metrics.ts';
import type { BackendCallRecord, FailureRecord, RequestRecord, RequestRef, RequestTelemetry } from './request-telemetry.ts';

export const CONNECTION_STRING_VARIABLE = 'GATEHOUSE_APPINSIGHTS_CONNECTION_STRING';
export const SAMPLING_VARIABLE = 'GATEHOUSE_APPINSIGHTS_SAMPLING_PERCENTAGE';

/** How long one request to the ingestion endpoint may take before it is abandoned (the SDK then retries it). */
const INGESTION_TIMEOUT_MS = 10_000;
/** The cloud role the telemetry carries (Application Map's node name). */
const ROLE_NAME = 'gatehouse';
/** At most one line of the SDK's own warnings a minute reaches the log (an ingestion outage repeats them). */
const SDK_LOG_INTERVAL_MS = 60_000;

// --- configuration -----------------------------------------------------------------------------------------------

export interface ApplicationInsightsSettings {
  /** The connection string as the SDK needs it (empty parts removed). */
  connectionString: string;
  /** Where telemetry goes, for the start-up log line. */
  ingestionEndpoint: string;
  /** 100: every request; less: that share of requests, with their backend calls (failures are always sent). */
  samplingPercentage: number;
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string };

const INSTRUMENTATION_KEY = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Checks a connection string the way the SDK reads it, so that what it would reject silently (and then send nothing)
 * is refused at start instead, with what is wrong.
 */
export function parseConnectionString(text: string): Parsed<{ connectionString: string; ingestionEndpoint: string }> {
  const fields = new Map<string, string>();
  const parts: string[] = [];
  for (const raw of text.split(';')) {
    const part = raw.trim();
    if (part === '') continue;
    const pieces = part.split('=');
    // The SDK splits on every `=` and discards the whole string when a part does not give exactly two pieces.
    if (pieces.length !== 2 || pieces[0]!.trim() === '') {
      return { ok: false, problem: `"${part.length > 40 ? `${part.slice(0, 40)}…` : part}" is not Key=Value (a value may not contain "=")` };
    }
    fields.set(pieces[0]!.trim().toLowerCase(), pieces[1]!.trim());
    parts.push(`${pieces[0]!.trim()}=${pieces[1]!.trim()}`);
  }
  const key = fields.get('instrumentationkey');
  if (key === undefined || key === '') return { ok: false, problem: 'it has no InstrumentationKey' };
  if (!INSTRUMENTATION_KEY.test(key)) {
    return { ok: false, problem: `InstrumentationKey ${key} is not a GUID in lower case (the SDK accepts no other form)` };
  }
  const authorization = fields.get('authorization');
  if (authorization !== undefined && authorization.toLowerCase() !== 'ikey') {
    return { ok: false, problem: `Authorization=${authorization} is not supported: Gatehouse sends with the instrumentation key only` };
  }
  for (const name of ['IngestionEndpoint', 'LiveEndpoint']) {
    const value = fields.get(name.toLowerCase());
    if (value === undefined) continue;
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      return { ok: false, problem: `${name} ${value} is not a URL` };
    }
    // The SDK turns http:// into https:// without a word, so a plain-HTTP endpoint would receive nothing.
    if (url.protocol !== 'https:') return { ok: false, problem: `${name} ${value} is not an https:// URL (the SDK sends over HTTPS only)` };
  }
  const suffix = fields.get('endpointsuffix');
  const location = fields.get('location');
  const ingestionEndpoint =
    fields.get('ingestionendpoint') ??
    (suffix ? `https://${location ? `${location}.` : ''}dc.${suffix}` : 'https://dc.services.visualstudio.com');
  return { ok: true, value: { connectionString: parts.join(';'), ingestionEndpoint } };
}

/** GATEHOUSE_APPINSIGHTS_SAMPLING_PERCENTAGE: absent means 100. */
export function parseSamplingPercentage(text: string | undefined): Parsed<number> {
  if (text === undefined || text.trim() === '') return { ok: true, value: 100 };
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0 || value > 100) {
    return { ok: false, problem: `${text} is not a percentage above 0 and at most 100` };
  }
  return { ok: true, value };
}

// --- the telemetry -----------------------------------------------------------------------------------------------

type Sdk = typeof import('applicationinsights');
type Otel = typeof OtelApi;
type Properties = Record<string, string | number>;

/**
 * Loads the SDK and starts sending. Throws (with what failed) when the SDK cannot be loaded or set up. With `metrics`,
 * the requests and backend calls the SDK drops (its queue full) are counted there.
 */
export async function startApplicationInsights(
  settings: ApplicationInsightsSettings,
  logger: Logger,
  metrics?: MetricsRegistry,
): Promise<RequestTelemetry> {
  for (const [name, value] of Object.entries(SDK_SWITCHES)) {
    if (process.env[name] === undefined) process.env[name] = value;
  }
  const [sdk, otel, resources] = await Promise.all([
    // Named exports, which Node's and Deno's CommonJS interop both give: no `default` unwrapping.
    import('applicationinsights') as Promise<Sdk>,
    import('@opentelemetry/api') as Promise<Otel>,
    import('@opentelemetry/resources'),
  ]);
  const log = logger.child({ component: 'application-insights' });
  const dropped = metrics?.counter(
    'gatehouse_appinsights_spans_dropped_total',
    'Requests and backend calls the Application Insights SDK dropped because its queue was full (counted when it next queues one).',
  );
  dropped?.inc({}, 0);
  otel.diag.setLogger(new SdkLog(log, (n) => dropped?.inc({}, n)), otel.DiagLogLevel.WARN);
  const contextManager = new SynchronousContextManager(otel.ROOT_CONTEXT);
  // Fails only if another context manager is registered in this process (none is, in the gateway): correlation
  // then depends on that one.
  if (!otel.context.setGlobalContextManager(contextManager)) log.warn('another OpenTelemetry context manager is registered; correlation may be lost');
  const requestSpans = new RequestSpanCapture(otel.SpanKind.SERVER);

  const client = new sdk.TelemetryClient(settings.connectionString, { useGlobalProviders: false });
  // Sampling is decided here, per request, before the SDK is called: the SDK's own sampler still made a trace id and a
  // span for each request it then dropped (at 10%: 38 µs of CPU a request, against 16–28 µs deciding here; BENCHMARKS.md).
  client.config.samplingPercentage = 100;
  client.config.enableUseDiskRetryCaching = false;
  client.config.azureMonitorOpenTelemetryOptions = {
    resource: resources.resourceFromAttributes({ 'service.name': ROLE_NAME, 'service.instance.id': hostname() }),
    azureMonitorExporterOptions: {
      connectionString: settings.connectionString,
      disableOfflineStorage: true,
      additionalPolicies: [
        {
          position: 'perRetry',
          policy: {
            name: 'gatehouseIngestionTimeout',
            sendRequest: (request, next) => {
              if (!request.timeout) request.timeout = INGESTION_TIMEOUT_MS;
              return next(request);
            },
          },
        },
      ],
    },
    spanProcessors: [requestSpans],
  };
  client.initialize();
  log.info('sending telemetry to Application Insights', {
    ingestionEndpoint: settings.ingestionEndpoint,
    samplingPercentage: settings.samplingPercentage,
  });
  return new ApplicationInsightsTelemetry(client, otel, requestSpans, settings.samplingPercentage, log);
}

/** Set in the environment before the SDK loads, unless already set: see the head of this file. */
const SDK_SWITCHES: Record<string, string> = {
  APPLICATION_INSIGHTS_NO_STATSBEAT: 'true',
  APPLICATIONINSIGHTS_OPENTELEMETRY_RESOURCE_METRIC_DISABLED: 'true',
};

class ApplicationInsightsTelemetry implements RequestTelemetry {
  private closed = false;
  /** `microsoft.sample_rate` on sampled telemetry, so that Application Insights counts each item for 100/p. */
  private readonly sampleRate: number | null;

  constructor(
    private readonly client: TelemetryClient,
    private readonly otel: Otel,
    private readonly requestSpans: RequestSpanCapture,
    private readonly samplingPercentage: number,
    private readonly log: Logger,
  ) {
    this.sampleRate = samplingPercentage < 100 ? samplingPercentage : null;
  }

  request(r: RequestRecord): void {
    if (this.closed) return;
    try {
      if (this.sampleRate !== null && Math.random() * 100 >= this.samplingPercentage) {
        // Sampled out: the request and its backend call are not sent; its failures are, without a parent.
        for (const failure of r.failures) this.trackFailure(failure, r, null);
        return;
      }
      // The exporter names a request `<http.method> <http.route>`: the route keeps names few (ids stay out of them).
      const route = r.route ?? '(no matching API)';
      const name = `${r.method} ${route}`;
      const properties: Properties = { api: r.api, operation: r.operation, requestId: r.requestId, 'http.method': r.method, 'http.route': route };
      if (this.sampleRate !== null) properties['microsoft.sample_rate'] = this.sampleRate;
      this.requestSpans.begin();
      this.client.trackRequest({
        name,
        url: r.url,
        time: new Date(r.startTime),
        duration: r.durationMs,
        resultCode: String(r.status),
        // 4xx answers are the gateway doing its job (a refused key, a rate limit): only 5xx count as failed.
        success: r.status < 500,
        properties,
      });
      // Null only if the SDK dropped the request itself (its sampler is set to keep everything).
      const span = this.requestSpans.started();
      const context = span === null ? this.otel.ROOT_CONTEXT : this.otel.trace.setSpanContext(this.otel.ROOT_CONTEXT, span);
      this.otel.context.with(context, () => {
        if (r.backend !== null && span !== null) this.trackBackendCall(r, r.backend);
        for (const failure of r.failures) this.trackFailure(failure, r, name);
      });
    } catch (err) {
      this.log.warn('could not record a request', { requestId: r.requestId, error: (err as Error).message });
    }
  }

  lateFailure(failure: FailureRecord, about: RequestRef): void {
    if (this.closed) return;
    try {
      this.trackFailure(failure, about, null);
    } catch (err) {
      this.log.warn('could not record a failure', { requestId: about.requestId, error: (err as Error).message });
    }
  }

  metric(e: MetricEmission): void {
    if (this.closed) return;
    try {
      const properties: Properties = {};
      for (const [name, value] of e.dimensions) properties[name] = value;
      this.client.trackMetric({ name: e.name, value: e.value, properties });
    } catch (err) {
      this.log.warn('could not record a policy metric', { metric: e.name, error: (err as Error).message });
    }
  }

  async close(timeoutMs: number): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const outcome = await Promise.race([
      this.client.shutdown().then(
        () => 'flushed' as const,
        (err: unknown) => (err as Error)?.message ?? String(err),
      ),
      new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), Math.max(0, timeoutMs));
      }),
    ]);
    clearTimeout(timer);
    if (outcome === 'flushed') this.log.info('telemetry flushed');
    else if (outcome === 'timeout') this.log.warn('telemetry not flushed within the shutdown timeout: the rest is dropped', { timeoutMs });
    else this.log.warn('flushing telemetry failed: the rest is dropped', { error: outcome });
  }

  private trackBackendCall(r: RequestRecord, b: BackendCallRecord): void {
    // The exporter builds the dependency's URL from scheme, host and target and keeps our name; given a full URL
    // it would name the call after the raw path instead.
    const slashes = b.origin.indexOf('//');
    const host = b.origin.slice(slashes + 2);
    const properties: Properties = {
      api: r.api,
      operation: r.operation,
      requestId: r.requestId,
      'http.method': b.method,
      'http.scheme': b.origin.slice(0, slashes - 1),
      'http.host': host,
      'http.target': b.path,
    };
    if (this.sampleRate !== null) properties['microsoft.sample_rate'] = this.sampleRate;
    this.client.trackDependency({
      name: `${b.method} ${b.pathTemplate}`,
      dependencyTypeName: 'HTTP',
      target: host,
      time: new Date(b.startTime),
      duration: b.durationMs,
      // No status: the failure's reason (`timeout`, `unreachable`) stands in for it.
      resultCode: b.status !== null ? String(b.status) : (b.failure?.reason ?? 'failed'),
      success: b.status !== null && b.status < 500,
      properties,
    });
  }

  private trackFailure(f: FailureRecord, about: RequestRef, operationName: string | null): void {
    const properties: Properties = { api: about.api, operation: about.operation, requestId: about.requestId, source: f.source, reason: f.reason };
    if (f.policy !== null) properties.policy = f.policy;
    if (f.failedOpen) properties.failedOpen = 'true';
    // Groups the exception under its request's operation in the portal.
    if (operationName !== null) properties['ai.operation.name'] = operationName;
    this.client.trackException({
      // A policy may repeat its configuration in its message: secret named values are masked as in the log.
      exception: failureError(f, this.log.redact(f.message)),
      // A fail-open policy's failure did not fail the request.
      severity: f.failedOpen ? 'Warning' : 'Error',
      properties,
    });
  }
}

const ERROR_NAMES: Record<FailureRecord['source'], string> = {
  policy: 'PolicyFailure',
  backend: 'BackendError',
  gateway: 'GatewayError',
};

/** The failure as the Error the SDK wants. It has no stack: it is not an exception in the gateway's own code. */
function failureError(f: FailureRecord, message: string): Error {
  const error = new Error(message);
  error.name = ERROR_NAMES[f.source];
  error.stack = `${error.name}: ${message}`;
  return error;
}

// --- OpenTelemetry plumbing ----------------------------------------------------------------------------------------

/**
 * Makes a context active while a function runs, synchronously. The track calls read the active context before they
 * return, so nothing needs to follow promises (which is what the async-hooks context manager would cost on every
 * request).
 */
class SynchronousContextManager implements OtelApi.ContextManager {
  private current: OtelApi.Context;

  constructor(private readonly root: OtelApi.Context) {
    this.current = root;
  }

  active(): OtelApi.Context {
    return this.current;
  }

  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    context: OtelApi.Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    const previous = this.current;
    this.current = context;
    try {
      return fn.call(thisArg, ...args);
    } finally {
      this.current = previous;
    }
  }

  bind<T>(_context: OtelApi.Context, target: T): T {
    return target;
  }

  enable(): this {
    return this;
  }

  disable(): this {
    this.current = this.root;
    return this;
  }
}

/**
 * Notes the span context of the last server span started: trackRequest returns nothing, and this is how the request's
 * span id becomes its backend call's and failures' parent. trackRequest starts its span synchronously, so `last` is
 * the request just tracked; it stays null when the sampler dropped it (no processor hears of such a span).
 */
class RequestSpanCapture {
  private last: OtelApi.SpanContext | null = null;

  constructor(private readonly serverKind: OtelApi.SpanKind) {}

  /** Before a request is tracked. */
  begin(): void {
    this.last = null;
  }

  /** After it was tracked: its span's context, or null when it was sampled out. */
  started(): OtelApi.SpanContext | null {
    return this.last;
  }

  onStart(span: { kind: OtelApi.SpanKind; spanContext(): OtelApi.SpanContext }): void {
    if (span.kind === this.serverKind) this.last = span.spanContext();
  }

  onEnd(): void {}

  forceFlush(): Promise<void> {
    return Promise.resolve();
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * What the span processor says when it queues a span after dropping some (its queue full): the only report of those
 * drops it gives. It drops exceptions (log records) without a word.
 */
const SPANS_DROPPED = /^Dropped (\d+) spans because maxQueueSize reached/;

/**
 * The SDK's own warnings and errors (an unreachable ingestion endpoint, a timeout), at most one line a minute; each
 * report of spans dropped is counted (`spansDropped`), including those the line limit holds back.
 */
class SdkLog implements OtelApi.DiagLogger {
  private lastAt = -Infinity;
  private suppressed = 0;

  constructor(
    private readonly log: Logger,
    private readonly spansDropped: (count: number) => void,
  ) {}

  private write(level: 'warn' | 'error', message: string, args: unknown[]): void {
    const dropped = SPANS_DROPPED.exec(message);
    if (dropped) this.spansDropped(Number(dropped[1]));
    const now = Date.now();
    if (now - this.lastAt < SDK_LOG_INTERVAL_MS) {
      this.suppressed++;
      return;
    }
    this.lastAt = now;
    const detail = args.map((a) => (a instanceof Error ? a.message : typeof a === 'string' ? a : String(a))).join(' ');
    this.log.warn('application insights SDK', {
      sdkLevel: level,
      sdkMessage: detail ? `${message} ${detail}` : message,
      suppressedSinceLast: this.suppressed,
    });
    this.suppressed = 0;
  }

  error(message: string, ...args: unknown[]): void {
    this.write('error', message, args);
  }

  warn(message: string, ...args: unknown[]): void {
    this.write('warn', message, args);
  }

  info(): void {}
  debug(): void {}
  verbose(): void {}
}
