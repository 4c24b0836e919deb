// The settings of OTLP export (runtime/telemetry/otlp.ts), read from the environment without loading the exporter:
// the OpenTelemetry packages are loaded only by a gateway told to export.

export const OTLP_ENDPOINT_VARIABLE = 'GATEHOUSE_OTLP_ENDPOINT';
export const OTLP_QUEUE_LIMIT_VARIABLE = 'GATEHOUSE_OTLP_QUEUE_LIMIT';
export const OTLP_BATCH_SIZE_VARIABLE = 'GATEHOUSE_OTLP_BATCH_SIZE';
export const OTLP_SEND_INTERVAL_VARIABLE = 'GATEHOUSE_OTLP_SEND_INTERVAL_MS';
export const OTLP_METRICS_INTERVAL_VARIABLE = 'GATEHOUSE_OTLP_METRICS_INTERVAL_MS';

export const DEFAULT_OTLP_QUEUE_LIMIT = 4096;
export const DEFAULT_OTLP_BATCH_SIZE = 512;
export const DEFAULT_OTLP_SEND_INTERVAL_MS = 1000;
export const DEFAULT_OTLP_METRICS_INTERVAL_MS = 60_000;

export interface OtlpSettings {
  /** The collector's OTLP/HTTP base URL (`http://collector:4318`): spans go to `/v1/traces`, metrics to `/v1/metrics`. */
  endpoint: string;
  /** Requests whose spans wait at most for the collector; more are dropped and counted. */
  queueLimit: number;
  /** Requests (each one or two spans) in one export at most. */
  batchSize: number;
  /** How long a batch that is not full waits before it is exported. */
  sendIntervalMs: number;
  /** How often the metrics are exported. */
  metricsIntervalMs: number;
}

/**
 * GATEHOUSE_OTLP_ENDPOINT: an `http://` or `https://` URL without query or credentials, or the problem with it. Its path,
 * if any, is kept as a prefix (`https://otel.example.com/otlp` sends to `/otlp/v1/traces`).
 */
export function parseOtlpEndpoint(text: string): { ok: true; value: string } | { ok: false; problem: string } {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return { ok: false, problem: 'is not a URL (http://collector:4318)' };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return { ok: false, problem: `is a ${url.protocol} URL: OTLP export takes http:// or https:// (OTLP/HTTP)` };
  if (url.username !== '' || url.password !== '') return { ok: false, problem: 'has credentials in it: the gateway would send them in the clear to every export' };
  if (url.search !== '' || url.hash !== '') return { ok: false, problem: 'has a query or a fragment: give the base URL (http://collector:4318)' };
  return { ok: true, value: url.href.replace(/\/+$/, '') };
}

/** The URL a signal (`traces`, `metrics`) is exported to, below the endpoint. */
export function signalUrl(endpoint: string, signal: 'traces' | 'metrics'): string {
  return `${endpoint}/v1/${signal}`;
}
