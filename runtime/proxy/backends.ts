// A backend or a load-balanced pool of backends, each with its own keep-alive connections (h1-backend.ts for HTTP/1.1,
// h2-backend.ts for HTTP/2; an undici Pool for the health checks).
// Passive health: a backend that fails `ejectAfterFailures` times in a row is left out for `ejectForMs`. Active health
// (health-check.ts), when configured, leaves out a member its checks failed. Retries (retry.ts) draw from the set's budget.

import { Pool, type Dispatcher } from 'undici';
import { Http1Backend } from './h1-backend.ts';
import { Http2Backend } from './h2-backend.ts';
import { undiciConnector, type ConnectorFactory } from '../network/connector.ts';
import { HealthChecker, type HealthCheckSettings, type HealthEvents } from './health-check.ts';
import { NO_RETRY, RetryBudget, type RetrySettings } from './retry.ts';

export type BackendProtocol = 'http/1.1' | 'h2';

/** HTTP/2 connections kept per backend, and the streams each carries at once (the backend's own limit if lower). */
export const H2_CONNECTIONS = 4;
export const H2_STREAMS_PER_CONNECTION = 100;
/** How long an idle HTTP/1.1 connection to a backend is kept (less when the backend's Keep-Alive header says so). */
const KEEP_ALIVE_MS = 30_000;

export interface BackendOptions {
  /** The API's id, for metrics and logs. */
  api?: string;
  timeoutMs: number;
  ejectAfterFailures: number;
  ejectForMs: number;
  /** Connections kept per backend (HTTP/1.1; HTTP/2 backends get H2_CONNECTIONS, each carrying many streams). */
  connections: number;
  /** What the backends speak: HTTP/1.1, or HTTP/2 (gRPC): ALPN h2 on https URLs, prior knowledge on http ones. */
  protocol?: BackendProtocol;
  /** The runtime adapter's connector; undici's own when absent. */
  connect?: ConnectorFactory;
  /** When and how often a failed request is tried again; none when absent. */
  retry?: RetrySettings;
  /** Active health checks of the members, and who hears of them. */
  healthCheck?: { settings: HealthCheckSettings; events: HealthEvents };
}

/** A backend URL's path without a trailing slash: request paths are appended to it. */
export function basePathOf(url: URL): string {
  return url.pathname.replace(/\/+$/, '');
}

export class BackendTarget {
  readonly origin: string;
  /** The backend URL's path without a trailing slash; request paths are appended to it. */
  readonly basePath: string;
  /** What forwards the requests: the gateway's HTTP/1.1 connections, or the HTTP/2 sessions of an `h2` backend. */
  readonly dispatcher: Pick<Dispatcher, 'dispatch'> & { close(): Promise<void>; destroy(): Promise<void> };
  /** undici's pool for the health checks, made by the first check (most backends have none). */
  private healthPool: Pool | null = null;
  consecutiveFailures = 0;
  ejectedUntil = 0;
  /** False while active health checks find it failing. */
  healthy = true;

  constructor(
    readonly url: string,
    private readonly options: BackendOptions,
  ) {
    const parsed = new URL(url);
    this.origin = parsed.origin;
    this.basePath = basePathOf(parsed);
    this.dispatcher =
      options.protocol === 'h2'
        ? new Http2Backend(this.origin, { sessions: H2_CONNECTIONS, streamsPerSession: H2_STREAMS_PER_CONNECTION, timeoutMs: options.timeoutMs })
        : new Http1Backend(this.origin, {
            connections: options.connections,
            timeoutMs: options.timeoutMs,
            keepAliveMs: KEEP_ALIVE_MS,
            connect: (options.connect ?? undiciConnector)(),
          });
  }

  /** undici's pool: the health checks of either kind (an `h2` backend's over HTTP/2). */
  get pool(): Pool {
    if (this.healthPool === null) {
      const { options } = this;
      const h2 = options.protocol === 'h2';
      this.healthPool = new Pool(this.origin, {
        connections: h2 ? H2_CONNECTIONS : options.connections,
        headersTimeout: options.timeoutMs,
        bodyTimeout: options.timeoutMs,
        keepAliveTimeout: KEEP_ALIVE_MS,
        ...(h2 ? { allowH2: true, maxConcurrentStreams: H2_STREAMS_PER_CONNECTION } : {}),
        connect: h2 ? (options.connect ?? undiciConnector)({ h2 }) : options.connect?.(),
      });
    }
    return this.healthPool;
  }

  /** Closes its connections once their requests are done; with `cut`, at once. */
  async close(cut: boolean): Promise<void> {
    const all = this.healthPool === null ? [this.dispatcher] : [this.dispatcher, this.healthPool];
    await Promise.all(all.map((d) => (cut ? d.destroy() : d.close())));
  }
}

export class BackendSet {
  readonly targets: BackendTarget[];
  readonly retry: RetrySettings;
  readonly budget: RetryBudget;
  private next = 0;
  private readonly checker: HealthChecker | null;

  constructor(
    urls: string[],
    readonly options: BackendOptions,
    private readonly now: () => number = Date.now,
  ) {
    this.targets = urls.map((u) => new BackendTarget(u, options));
    this.retry = options.retry ?? NO_RETRY;
    this.budget = new RetryBudget(this.retry);
    this.checker = options.healthCheck ? new HealthChecker(this.targets, options.healthCheck.settings, options.healthCheck.events) : null;
  }

  /** Starts the active health checks, if any (once the configuration is put in force). */
  startHealthChecks(): void {
    this.checker?.start();
  }

  /** In the round robin: not ejected, and not failing its health checks. */
  inService(target: BackendTarget, now = this.now()): boolean {
    return target.healthy && target.ejectedUntil <= now;
  }

  /**
   * Round robin over the backends in service; when none is, the healthy one back soonest from ejection, or when none
   * is healthy either, the one back soonest (fail open: a guess beats refusing every request).
   */
  pick(): BackendTarget {
    const n = this.targets.length;
    const now = this.now();
    for (let i = 0; i < n; i++) {
      const target = this.targets[(this.next + i) % n]!;
      if (this.inService(target, now)) {
        this.next = (this.next + i + 1) % n;
        return target;
      }
    }
    const healthy = this.targets.filter((t) => t.healthy);
    return (healthy.length > 0 ? healthy : this.targets).reduce((a, b) => (b.ejectedUntil < a.ejectedUntil ? b : a));
  }

  /** Records an outcome; returns true when this failure ejected the backend. */
  report(target: BackendTarget, ok: boolean): boolean {
    if (ok) {
      target.consecutiveFailures = 0;
      return false;
    }
    target.consecutiveFailures++;
    if (target.consecutiveFailures >= this.options.ejectAfterFailures && target.ejectedUntil <= this.now()) {
      target.ejectedUntil = this.now() + this.options.ejectForMs;
      target.consecutiveFailures = 0;
      return true;
    }
    return false;
  }

  /**
   * Closes the connection pools once their requests are done (after a configuration swap); with `cut`, at once, the
   * requests they run failed (the shutdown timeout has passed).
   */
  async close(cut = false): Promise<void> {
    this.checker?.stop();
    await Promise.all(this.targets.map((t) => t.close(cut)));
  }
}
