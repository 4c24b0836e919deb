// Application Insights as the gateway's upstream telemetry (GATEHOUSE_APPINSIGHTS_CONNECTION_STRING): requests,
// backend calls, failures and policy metrics.
//
// The gateway's thread does as little as it can per request: it draws the sample, and keeps the record it was handed
// (failure messages masked like the log's), handing records over in batches to the exporter thread
// (appinsights-exporter.ts, a node:worker_threads Worker). That thread makes the envelopes, serialises, compresses
// and sends them. The `applicationinsights` SDK did all of that on the event loop, a span object per request and
// per backend call, then a batch of 512 converted and serialised in one go: with every request sent it cost about
// twice the gateway's own CPU a request and 10 ms of p99 (BENCHMARKS.md). The envelopes are the SDK's, field for
// field (appinsights-envelopes.ts); nothing else of it is needed, so it is not loaded.
//
// What is held is bounded: records waiting to be handed over plus those the exporter thread has not taken yet (at most
// the queue limit), and envelopes the thread holds (the same limit); what does not fit is dropped and counted in
// gatehouse_appinsights_dropped_total by reason. An exporter thread that stops is reported, what it held counted as
// lost, and it is started again; the gateway serves on whatever happens to it.

import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import {
  BatchWriter,
  writeLoneFailure,
  writeMetric,
  writeRequest,
  type DropReason,
  type ExporterSettings,
  type FromExporter,
  type ToExporter,
} from './appinsights-protocol.ts';
import type { MetricEmission } from './custom-metrics.ts';
import type { Logger } from './logger.ts';
import { MetricsRegistry, type Counter } from './metrics.ts';
import type { FailureRecord, RequestRecord, RequestRef, RequestTelemetry } from './request-telemetry.ts';

export const CONNECTION_STRING_VARIABLE = 'GATEHOUSE_APPINSIGHTS_CONNECTION_STRING';
export const SAMPLING_VARIABLE = 'GATEHOUSE_APPINSIGHTS_SAMPLING_PERCENTAGE';
export const QUEUE_LIMIT_VARIABLE = 'GATEHOUSE_APPINSIGHTS_QUEUE_LIMIT';
export const BATCH_SIZE_VARIABLE = 'GATEHOUSE_APPINSIGHTS_BATCH_SIZE';
export const SEND_INTERVAL_VARIABLE = 'GATEHOUSE_APPINSIGHTS_SEND_INTERVAL_MS';
export const CA_FILE_VARIABLE = 'GATEHOUSE_APPINSIGHTS_CA_FILE';

// --- configuration -----------------------------------------------------------------------------------------------

export interface ApplicationInsightsSettings {
  /** The resource's instrumentation key, which every envelope carries. */
  instrumentationKey: string;
  /** Where telemetry goes (`https://…/`, without `v2.1/track`). */
  ingestionEndpoint: string;
  /** 100: every request; less: that share of requests, with their backend calls (failures are always sent). */
  samplingPercentage: number;
  /** Telemetry held at most while the ingestion endpoint is slow or away (GATEHOUSE_APPINSIGHTS_QUEUE_LIMIT). */
  queueLimit?: number;
  /** Envelopes a POST carries at most (GATEHOUSE_APPINSIGHTS_BATCH_SIZE). */
  batchSize?: number;
  /** How long a batch that is not full waits before it is sent (GATEHOUSE_APPINSIGHTS_SEND_INTERVAL_MS). */
  sendIntervalMs?: number;
  /** PEM certificates to trust for the ingestion endpoint besides the system's (GATEHOUSE_APPINSIGHTS_CA_FILE). */
  ca?: string;
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string };

const INSTRUMENTATION_KEY = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Checks a connection string the way Application Insights' SDKs read it, so that what they would reject silently (and
 * then send nothing) is refused at start instead, with what is wrong.
 */
export function parseConnectionString(text: string): Parsed<{ instrumentationKey: string; ingestionEndpoint: string }> {
  const fields = new Map<string, string>();
  for (const raw of text.split(';')) {
    const part = raw.trim();
    if (part === '') continue;
    const pieces = part.split('=');
    // The SDKs split on every `=` and discard the whole string when a part does not give exactly two pieces.
    if (pieces.length !== 2 || pieces[0]!.trim() === '') {
      return { ok: false, problem: `"${part.length > 40 ? `${part.slice(0, 40)}…` : part}" is not Key=Value (a value may not contain "=")` };
    }
    fields.set(pieces[0]!.trim().toLowerCase(), pieces[1]!.trim());
  }
  const key = fields.get('instrumentationkey');
  if (key === undefined || key === '') return { ok: false, problem: 'it has no InstrumentationKey' };
  if (!INSTRUMENTATION_KEY.test(key)) {
    return { ok: false, problem: `InstrumentationKey ${key} is not a GUID in lower case (Application Insights accepts no other form)` };
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
    // Ingestion is HTTPS only; the SDKs turn http:// into https:// without a word, so such a string is a mistake.
    if (url.protocol !== 'https:') return { ok: false, problem: `${name} ${value} is not an https:// URL (Application Insights takes telemetry over HTTPS only)` };
  }
  const suffix = fields.get('endpointsuffix');
  const location = fields.get('location');
  const ingestionEndpoint =
    fields.get('ingestionendpoint') ??
    (suffix ? `https://${location ? `${location}.` : ''}dc.${suffix}` : 'https://dc.services.visualstudio.com');
  return { ok: true, value: { instrumentationKey: key, ingestionEndpoint } };
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


/** GATEHOUSE_APPINSIGHTS_QUEUE_LIMIT, _BATCH_SIZE, _SEND_INTERVAL_MS: absent means `fallback`. */
export function parsePositiveInteger(text: string | undefined, fallback: number, max: number): Parsed<number> {
  if (text === undefined || text.trim() === '') return { ok: true, value: fallback };
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1 || value > max) return { ok: false, problem: `${text} is not a whole number from 1 to ${max}` };
  return { ok: true, value };
}

// --- the telemetry -----------------------------------------------------------------------------------------------

export const DEFAULT_QUEUE_LIMIT = 8192;
export const DEFAULT_BATCH_SIZE = 512;
export const DEFAULT_SEND_INTERVAL_MS = 1000;
/** Policy metrics are aggregated and sent once a minute, as the SDK did (and at shutdown). */
const METRIC_INTERVAL_MS = 60_000;
/** How long one POST to the ingestion endpoint may take before it is abandoned (and retried). */
const INGESTION_TIMEOUT_MS = 10_000;
/** The cloud role the telemetry carries (Application Map's node name). */
const ROLE_NAME = 'gatehouse';
/**
 * Records are handed to the exporter thread in batches: one postMessage per this many, or per this long. Each
 * message also wakes the other thread, which on a busy machine costs more than what it carries; nothing is sent
 * sooner than the send interval anyway.
 */
const HANDOVER_BATCH = 1024;
const HANDOVER_INTERVAL_MS = 100;
/** How long the exporter thread may take to start (load its code, open its port). */
const EXPORTER_START_TIMEOUT_MS = 15_000;
/** An exporter thread that stops is started again after this long, doubled each time it stops again, up to the max. */
const RESTART_DELAY_MS = 100;
const MAX_RESTART_DELAY_MS = 60_000;
/** A thread that ran this long without stopping resets the restart delay. */
const STABLE_AFTER_MS = 60_000;

/** Where the exporter thread's code is and what the envelopes say made them: from the gateway's assets. */
export interface ExporterSource {
  /** The module the Worker runs (appinsights-exporter.ts, or its build, or a data: URL in the bundle). */
  script: URL;
  /** The gateway's version, for the envelopes' `ai.internal.sdkVersion`. */
  version: string;
}

/**
 * Starts the exporter thread and resolves once it runs; rejects, saying what failed, when it cannot start (the gateway
 * then does not start either). With `metrics`, what was sent and dropped is counted there.
 */
export async function startApplicationInsights(
  settings: ApplicationInsightsSettings,
  logger: Logger,
  source: ExporterSource,
  metrics?: MetricsRegistry,
): Promise<RequestTelemetry> {
  const log = logger.child({ component: 'application-insights' });
  const queueLimit = settings.queueLimit ?? DEFAULT_QUEUE_LIMIT;
  const exporterSettings: ExporterSettings = {
    instrumentationKey: settings.instrumentationKey,
    trackUrl: new URL('v2.1/track', settings.ingestionEndpoint.endsWith('/') ? settings.ingestionEndpoint : `${settings.ingestionEndpoint}/`).href,
    roleName: ROLE_NAME,
    roleInstance: hostname(),
    sdkVersion: `gatehouse:${source.version}`,
    samplingPercentage: settings.samplingPercentage,
    queueLimit,
    batchSize: settings.batchSize ?? DEFAULT_BATCH_SIZE,
    sendIntervalMs: settings.sendIntervalMs ?? DEFAULT_SEND_INTERVAL_MS,
    metricIntervalMs: METRIC_INTERVAL_MS,
    requestTimeoutMs: INGESTION_TIMEOUT_MS,
    ca: settings.ca ?? null,
  };
  const telemetry = new ApplicationInsightsTelemetry(source.script, exporterSettings, log, metrics ?? new MetricsRegistry());
  await telemetry.start();
  log.info('sending telemetry to Application Insights', {
    ingestionEndpoint: settings.ingestionEndpoint,
    samplingPercentage: settings.samplingPercentage,
    queueLimit,
  });
  return telemetry;
}

/** The running exporter thread, and what it was last known to hold. */
interface ExporterThread {
  worker: Worker;
  startedAt: number;
  /** Records posted that it has not taken yet. */
  untaken: number;
  /** Envelopes it said it holds. */
  held: number;
}

export class ApplicationInsightsTelemetry implements RequestTelemetry {
  private closed = false;
  /** Records waiting to be handed over, written as bytes (appinsights-protocol.ts), and how many. */
  private readonly pending = new BatchWriter();
  private pendingRecords = 0;
  private handOverTimer: ReturnType<typeof setTimeout> | null = null;
  private thread: ExporterThread | null = null;
  private restartDelayMs = RESTART_DELAY_MS;
  private restartTimer: ReturnType<typeof setTimeout> | null = null;
  /** Settles when the exporter thread answers `closed` (true) or stops first (its error). */
  private onClosed: ((outcome: true | string) => void) | null = null;
  private readonly dropped: Counter;
  /** The name the queue-full drops had before the exporter thread: dashboards and alerts that read it keep working. */
  private readonly droppedQueueFull: Counter;
  private readonly sent: Counter;
  private readonly restarts: Counter;

  constructor(
    private readonly script: URL,
    private readonly settings: ExporterSettings,
    private readonly log: Logger,
    metrics: MetricsRegistry,
  ) {
    this.dropped = metrics.counter(
      'gatehouse_appinsights_dropped_total',
      'Application Insights telemetry not delivered, by reason: queue-full, rejected, send-failed, exporter-lost, shutdown (records or envelopes).',
    );
    this.dropped.inc({ reason: 'queue-full' }, 0);
    this.droppedQueueFull = metrics.counter(
      'gatehouse_appinsights_spans_dropped_total',
      'Deprecated: gatehouse_appinsights_dropped_total{reason="queue-full"}, under its earlier name.',
    );
    this.droppedQueueFull.inc({}, 0);
    this.sent = metrics.counter('gatehouse_appinsights_sent_total', 'Application Insights envelopes the ingestion endpoint accepted.');
    this.sent.inc({}, 0);
    this.restarts = metrics.counter('gatehouse_appinsights_exporter_restarts_total', 'Times the Application Insights exporter thread stopped and was started again.');
    this.restarts.inc({}, 0);
    metrics.gauge('gatehouse_appinsights_queued', 'Application Insights records and envelopes waiting to be sent.', () => {
      const t = this.thread;
      return this.pendingRecords + (t ? t.untaken + t.held : 0);
    });
  }

  /** The exporter thread now running, if any (the tests stop it to see the gateway start another). */
  get exporterThread(): Worker | null {
    return this.thread?.worker ?? null;
  }

  /** Starts the exporter thread; resolves once it is ready. */
  async start(): Promise<void> {
    const worker = new Worker(this.script, { workerData: { role: 'appinsights-exporter', settings: this.settings } });
    // The exporter thread never keeps the process alive: close() flushes it on the way out.
    worker.unref();
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`it did not start within ${EXPORTER_START_TIMEOUT_MS} ms`)), EXPORTER_START_TIMEOUT_MS);
      const fail = (err: Error) => {
        clearTimeout(timer);
        worker.off('message', ready);
        void worker.terminate();
        reject(new Error(`the Application Insights exporter thread (${describeScript(this.script)}) could not start: ${err.message}`));
      };
      const ready = (m: FromExporter) => {
        if (m.kind !== 'ready') return;
        clearTimeout(timer);
        worker.off('message', ready);
        worker.off('error', fail);
        worker.off('exit', exited);
        resolve();
      };
      const exited = (code: number) => fail(new Error(`it exited with code ${code}`));
      worker.on('message', ready);
      worker.once('error', fail);
      worker.once('exit', exited);
    });
    const thread: ExporterThread = { worker, startedAt: performance.now(), untaken: 0, held: 0 };
    this.thread = thread;
    worker.on('message', (m: FromExporter) => this.heard(thread, m));
    let failure: string | null = null;
    worker.on('error', (err) => {
      failure = (err as Error)?.message ?? String(err);
    });
    worker.on('exit', (code) => this.stopped(thread, code, failure));
    if (this.pendingRecords > 0) this.handOver();
  }

  request(r: RequestRecord): void {
    if (this.closed) return;
    if (this.settings.samplingPercentage < 100 && Math.random() * 100 >= this.settings.samplingPercentage) {
      // Sampled out: the request and its backend call are not sent; its failures are, in its trace, their parent the
      // caller's span (the gateway's was not sent).
      const time = r.startTime + r.durationMs;
      const about = { requestId: r.requestId, api: r.api, operation: r.operation, traceId: r.traceId, parentSpanId: r.parentSpanId };
      for (const failure of r.failures) {
        if (!this.room()) return;
        writeLoneFailure(this.pending, this.masked(failure), about, time);
        this.added();
      }
      return;
    }
    if (!this.room()) return;
    // A policy may repeat its configuration in its message: secret named values are masked as in the log.
    writeRequest(this.pending, r.failures.length === 0 ? r : { ...r, failures: r.failures.map((f) => this.masked(f)) });
    this.added();
  }

  lateFailure(failure: FailureRecord, about: RequestRef): void {
    if (this.closed || !this.room()) return;
    writeLoneFailure(this.pending, this.masked(failure), about, Date.now());
    this.added();
  }

  metric(emission: MetricEmission): void {
    if (this.closed || !this.room()) return;
    writeMetric(this.pending, emission);
    this.added();
  }

  async close(timeoutMs: number): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.restartTimer !== null) clearTimeout(this.restartTimer);
    const thread = this.thread;
    if (thread === null) {
      const lost = this.pendingRecords;
      this.pending.take();
      this.pendingRecords = 0;
      if (lost > 0) this.drop('shutdown', lost);
      this.log.warn('flushing telemetry failed: the rest is dropped', { error: 'the exporter thread is not running', dropped: lost });
      return;
    }
    this.handOver();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const outcome = await Promise.race([
      new Promise<true | string>((resolve) => {
        this.onClosed = resolve;
        thread.worker.postMessage({ kind: 'close', deadline: Date.now() + timeoutMs } satisfies ToExporter);
      }),
      new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), Math.max(0, timeoutMs));
      }),
    ]);
    clearTimeout(timer);
    this.onClosed = null;
    this.thread = null;
    if (outcome === true) {
      this.log.info('telemetry flushed');
    } else {
      const unsent = thread.untaken + thread.held;
      if (unsent > 0) this.drop('shutdown', unsent);
      if (outcome === 'timeout') this.log.warn('telemetry not flushed within the shutdown timeout: the rest is dropped', { timeoutMs, dropped: unsent });
      else this.log.warn('flushing telemetry failed: the rest is dropped', { error: outcome, dropped: unsent });
    }
    await thread.worker.terminate();
  }

  private masked(f: FailureRecord): FailureRecord {
    const message = this.log.redact(f.message);
    return message === f.message ? f : { ...f, message };
  }

  /** Whether one more record may be held: otherwise it is counted as dropped. */
  private room(): boolean {
    if (this.pendingRecords + (this.thread?.untaken ?? 0) < this.settings.queueLimit) return true;
    this.drop('queue-full', 1);
    return false;
  }

  /** A record was written to `pending`: hand the batch over when it is full, or soon. */
  private added(): void {
    this.pendingRecords++;
    if (this.thread === null) return;
    if (this.pendingRecords >= HANDOVER_BATCH) this.handOver();
    else if (this.handOverTimer === null) {
      this.handOverTimer = setTimeout(() => this.handOver(), HANDOVER_INTERVAL_MS);
      this.handOverTimer.unref?.();
    }
  }

  private handOver(): void {
    if (this.handOverTimer !== null) {
      clearTimeout(this.handOverTimer);
      this.handOverTimer = null;
    }
    const thread = this.thread;
    if (thread === null || this.pendingRecords === 0) return;
    const batch = this.pending.take();
    const records = this.pendingRecords;
    this.pendingRecords = 0;
    thread.untaken += records;
    thread.worker.postMessage({ kind: 'records', records, batch } satisfies ToExporter, [batch.bytes]);
  }

  private heard(thread: ExporterThread, m: FromExporter): void {
    switch (m.kind) {
      case 'taken':
        thread.untaken -= m.records;
        thread.held = m.queued;
        return;
      case 'outcome':
        thread.held = m.queued;
        if (m.sent > 0) this.sent.inc({}, m.sent);
        for (const [reason, count] of Object.entries(m.dropped)) this.drop(reason as DropReason, count);
        return;
      case 'problem':
        this.log.warn(m.message, m.detail);
        return;
      case 'closed':
        this.onClosed?.(true);
        return;
      case 'ready':
        return;
    }
  }

  private drop(reason: DropReason, count: number): void {
    this.dropped.inc({ reason }, count);
    if (reason === 'queue-full') this.droppedQueueFull.inc({}, count);
  }

  /** The exporter thread ended: expected after close(), otherwise reported, its telemetry counted lost, and restarted. */
  private stopped(thread: ExporterThread, exitCode: number, failure: string | null): void {
    if (this.thread !== thread) return;
    this.thread = null;
    if (this.closed) {
      this.onClosed?.(failure ?? `the exporter thread exited with code ${exitCode}`);
      return;
    }
    const lost = thread.untaken + thread.held;
    if (lost > 0) this.drop('exporter-lost', lost);
    if (performance.now() - thread.startedAt > STABLE_AFTER_MS) this.restartDelayMs = RESTART_DELAY_MS;
    const delayMs = this.restartDelayMs;
    this.restartDelayMs = Math.min(MAX_RESTART_DELAY_MS, this.restartDelayMs * 2);
    this.log.error('the Application Insights exporter thread stopped: what it held is lost; starting another', {
      exitCode,
      error: failure ?? 'none',
      lost,
      restartInMs: delayMs,
    });
    this.restartTimer = setTimeout(() => this.restart(), delayMs);
    this.restartTimer.unref?.();
  }

  private restart(): void {
    this.restartTimer = null;
    if (this.closed) return;
    this.restarts.inc();
    this.start().then(
      () => this.log.info('the Application Insights exporter thread runs again'),
      (err: unknown) => {
        const delayMs = this.restartDelayMs;
        this.restartDelayMs = Math.min(MAX_RESTART_DELAY_MS, this.restartDelayMs * 2);
        this.log.error('could not start the Application Insights exporter thread again; trying later', { error: (err as Error).message, retryInMs: delayMs });
        this.restartTimer = setTimeout(() => this.restart(), delayMs);
        this.restartTimer.unref?.();
      },
    );
  }
}

function describeScript(script: URL): string {
  return script.protocol === 'data:' ? 'embedded in the bundle' : script.protocol === 'file:' ? fileURLToPath(script) : script.href;
}
