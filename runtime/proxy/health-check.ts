// Active health checks of a pool's members, beside the passive ejection (backends.ts): every `intervalMs` each member
// is asked for `path` on its own keep-alive connections; `unhealthyThreshold` failed checks in a row take it out of
// the round robin, `healthyThreshold` passed ones bring it back. A member starts healthy, so that a configuration is
// served from its first request (as nginx's checks without `mandatory`). One check per member at a time: a member
// slower than the interval is not asked twice.

import type { Pool } from 'undici';

/** A pool member as the checks see it (backends.ts's CheckedMember). */
export interface CheckedMember {
  readonly url: string;
  readonly basePath: string;
  readonly pool: Pick<Pool, 'request'>;
  healthy: boolean;
}

export interface HealthCheckSettings {
  /** Appended to each member's URL path, as request paths are. */
  path: string;
  intervalMs: number;
  timeoutMs: number;
  expectedStatuses: ReadonlySet<number>;
  healthyThreshold: number;
  unhealthyThreshold: number;
}

export interface HealthEvents {
  /** Each check's outcome. */
  checked(target: CheckedMember, passed: boolean): void;
  /** A member was taken out (false) or brought back (true); `why`: the last check's failure or status. */
  changed(target: CheckedMember, healthy: boolean, why: string): void;
}

export class HealthChecker {
  private timer: ReturnType<typeof setInterval> | null = null;
  private readonly running = new Set<CheckedMember>();
  private readonly streak = new Map<CheckedMember, number>();

  constructor(
    private readonly targets: readonly CheckedMember[],
    private readonly settings: HealthCheckSettings,
    private readonly events: HealthEvents,
  ) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.round(), this.settings.intervalMs);
    // Checks never keep a stopping process alive.
    (this.timer as { unref?: () => void }).unref?.();
    this.round();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private round(): void {
    for (const target of this.targets) {
      if (this.running.has(target)) continue;
      this.running.add(target);
      void this.check(target).finally(() => this.running.delete(target));
    }
  }

  private async check(target: CheckedMember): Promise<void> {
    let why: string;
    let passed = false;
    try {
      const res = await target.pool.request({
        path: target.basePath + this.settings.path,
        method: 'GET',
        headersTimeout: this.settings.timeoutMs,
        bodyTimeout: this.settings.timeoutMs,
        headers: { 'user-agent': 'gatehouse-health-check' },
      });
      await res.body.dump();
      passed = this.settings.expectedStatuses.has(res.statusCode);
      why = `status ${res.statusCode}`;
    } catch (err) {
      why = (err as { code?: string }).code ?? (err as Error).message;
    }
    if (this.timer === null) return;
    this.events.checked(target, passed);
    // Positive: passes in a row; negative: failures in a row.
    const before = this.streak.get(target) ?? 0;
    const streak = passed ? Math.max(0, before) + 1 : Math.min(0, before) - 1;
    this.streak.set(target, streak);
    if (target.healthy && -streak >= this.settings.unhealthyThreshold) {
      target.healthy = false;
      this.events.changed(target, false, why);
    } else if (!target.healthy && streak >= this.settings.healthyThreshold) {
      target.healthy = true;
      this.events.changed(target, true, why);
    }
  }
}
