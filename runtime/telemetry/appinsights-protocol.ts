// The messages between the gateway's thread and its Application Insights exporter thread (appinsights-exporter.ts).
// The gateway hands over compact records in batches; the exporter thread turns them into envelopes, serialises them,
// compresses them when the ingestion endpoint is Azure's, sends them, and retries or drops them. Nothing here waits:
// each side only posts.

import type { MetricEmission } from './custom-metrics.ts';
import type { FailureRecord, RequestRecord, RequestRef } from './request-telemetry.ts';

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
}

/** A request with its backend call and failures; failure messages already redacted by the gateway. */
export interface RequestItem {
  kind: 'request';
  record: RequestRecord;
}

/** A failure sent on its own: noticed after the response head, or of a request sampled out. */
export interface FailureItem {
  kind: 'failure';
  failure: FailureRecord;
  about: RequestRef;
  /** Milliseconds since the epoch. */
  time: number;
}

export interface MetricItem {
  kind: 'metric';
  emission: MetricEmission;
}

export type TelemetryItem = RequestItem | FailureItem | MetricItem;

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
  | { kind: 'items'; items: TelemetryItem[] }
  /** Send everything held, metrics included, and answer `closed`; no retry starts after `deadline` (epoch ms). */
  | { kind: 'close'; deadline: number };

export type FromExporter =
  | { kind: 'ready' }
  /** A batch of `items` was taken; `queued`: envelopes the thread holds now. */
  | { kind: 'taken'; items: number; queued: number }
  /** Envelopes delivered or dropped since the last report. */
  | { kind: 'outcome'; sent: number; dropped: Partial<Record<DropReason, number>>; queued: number }
  /** A problem worth a log line (rate-limited by the exporter thread). */
  | { kind: 'problem'; message: string; detail: Record<string, string | number> }
  | { kind: 'closed'; unsent: number };
