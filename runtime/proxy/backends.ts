// A backend or a load-balanced pool of backends, each with its own keep-alive connection pool (undici Pool).
// Passive health: a backend that fails `ejectAfterFailures` times in a row is left out for `ejectForMs`.

import { Pool } from 'undici';
import type { ConnectorFactory } from '../network/connector.ts';

export interface BackendOptions {
  timeoutMs: number;
  ejectAfterFailures: number;
  ejectForMs: number;
  /** Connections kept per backend. */
  connections: number;
  /** The runtime adapter's connector; undici's own when absent. */
  connect?: ConnectorFactory;
}

/** A backend URL's path without a trailing slash: request paths are appended to it. */
export function basePathOf(url: URL): string {
  return url.pathname.replace(/\/+$/, '');
}

export class BackendTarget {
  readonly origin: string;
  /** The backend URL's path without a trailing slash; request paths are appended to it. */
  readonly basePath: string;
  readonly pool: Pool;
  consecutiveFailures = 0;
  ejectedUntil = 0;

  constructor(
    readonly url: string,
    options: BackendOptions,
  ) {
    const parsed = new URL(url);
    this.origin = parsed.origin;
    this.basePath = basePathOf(parsed);
    this.pool = new Pool(this.origin, {
      connections: options.connections,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      keepAliveTimeout: 30_000,
      connect: options.connect?.(),
    });
  }
}

export class BackendSet {
  readonly targets: BackendTarget[];
  private next = 0;

  constructor(
    urls: string[],
    readonly options: BackendOptions,
    private readonly now: () => number = Date.now,
  ) {
    this.targets = urls.map((u) => new BackendTarget(u, options));
  }

  /** Round robin over the backends in service; when every one is ejected, the one back soonest (fail open). */
  pick(): BackendTarget {
    const n = this.targets.length;
    const now = this.now();
    for (let i = 0; i < n; i++) {
      const target = this.targets[(this.next + i) % n]!;
      if (target.ejectedUntil <= now) {
        this.next = (this.next + i + 1) % n;
        return target;
      }
    }
    return this.targets.reduce((a, b) => (b.ejectedUntil < a.ejectedUntil ? b : a));
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
    await Promise.all(this.targets.map((t) => (cut ? t.pool.destroy() : t.pool.close())));
  }
}
