// What the gateway tells an upstream telemetry service (Application Insights: appinsights.ts) about the requests it
// answers. The gateway builds these records only when such a service is configured, and hands each one over once,
// when the response head is known; the service decides how to send them and must never throw back into a request.

import type { MetricEmission } from './custom-metrics.ts';

/** Something that went wrong while answering a request. */
export interface FailureRecord {
  /** Who failed: a policy (trap, CPU budget, its own error), the backend (unreachable, timeout), the gateway itself. */
  source: 'policy' | 'backend' | 'gateway';
  /** A short closed word: `trap`, `cpu-budget`, `timeout`, `unreachable`, `truncated`, `internal`… */
  reason: string;
  message: string;
  /** The failing policy's binding (`api:shop/inbound/0`); null when no policy failed. */
  policy: string | null;
  /** The policy is fail-open: it was skipped and the request went on. */
  failedOpen: boolean;
}

/** The one call to the backend a request made (policies' own HTTP calls are not included). */
export interface BackendCallRecord {
  method: string;
  /** `scheme://host:port`: never credentials, which the gateway drops from backend URLs. */
  origin: string;
  /** The path sent, without the query (queries carry keys often enough to keep them out of telemetry). */
  path: string;
  /**
   * A name for the call with few distinct values: the backend's base path and the operation's URL template when no
   * policy rewrote the path or changed the backend, otherwise the path sent.
   */
  pathTemplate: string;
  /** Milliseconds since the epoch. */
  startTime: number;
  durationMs: number;
  /** The backend's status; null when it gave none (`failure` says why). */
  status: number | null;
  failure: FailureRecord | null;
}

export interface RequestRecord {
  requestId: string;
  /** API and operation ids, `""` when none matched (as in the access log and the metrics). */
  api: string;
  operation: string;
  /** The W3C trace the request belongs to (runtime/telemetry/trace-context.ts). */
  traceId: string;
  /** The gateway's span in it. */
  spanId: string;
  /** The caller's span, the parent of the gateway's (`traceparent`), or null when the gateway started the trace. */
  parentSpanId: string | null;
  method: string;
  /** The API prefix and the operation's URL template (`/shop/orders/{id}`); null when no API matched. */
  route: string | null;
  /** `scheme://host/path` as the client asked, without the query. */
  url: string;
  status: number;
  /** Milliseconds since the epoch. */
  startTime: number;
  /** Time to the response head. */
  durationMs: number;
  backend: BackendCallRecord | null;
  /** Failures that made the answer (policy failures, backend errors, the gateway's own) and fail-open policies skipped. */
  failures: readonly FailureRecord[];
}

/** Which request a failure noticed after its response head belongs to. */
export interface RequestRef {
  requestId: string;
  api: string;
  operation: string;
  traceId: string;
  /**
   * The span the failure is a child of: the gateway's when its request was sent, else the caller's (null when the
   * gateway started the trace).
   */
  parentSpanId: string | null;
}

export interface RequestTelemetry {
  /** A request answered (its response head is ready). */
  request(record: RequestRecord): void;
  /** A failure noticed after the response head went out: the backend's body cut short. */
  lateFailure(failure: FailureRecord, about: RequestRef): void;
  /** A value a policy emitted (`emit-metric`), once it is recorded locally too. */
  metric(emission: MetricEmission): void;
  /** Sends what is pending and stops; resolves within `timeoutMs` whatever the ingestion endpoint does. */
  close(timeoutMs: number): Promise<void>;
}

/** Several upstream telemetry services told the same (Application Insights and OTLP export both configured). */
export class TelemetryFanout implements RequestTelemetry {
  constructor(private readonly services: readonly RequestTelemetry[]) {}

  request(record: RequestRecord): void {
    for (const s of this.services) s.request(record);
  }

  lateFailure(failure: FailureRecord, about: RequestRef): void {
    for (const s of this.services) s.lateFailure(failure, about);
  }

  metric(emission: MetricEmission): void {
    for (const s of this.services) s.metric(emission);
  }

  async close(timeoutMs: number): Promise<void> {
    await Promise.all(this.services.map((s) => s.close(timeoutMs)));
  }
}
