// What the gateway tells of its backends' active health checks: each check counted, each change of state logged
// (a member taken out is a warning: fewer members serve) and each member's state as a gauge.

import type { HealthEvents } from '../proxy/health-check.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { MetricsRegistry } from '../telemetry/metrics.ts';
import type { ConfigStore } from './config-store.ts';

/** The health events of each API's checks, for buildLiveConfig. */
export function healthEvents(logger: Logger, metrics: MetricsRegistry): (api: string) => HealthEvents {
  const checks = metrics.counter('gatehouse_backend_health_checks_total', 'Active health checks of pool members, by API, backend and result (pass, fail).');
  return (api) => ({
    checked: (target, passed) => checks.inc({ api, backend: target.url, result: passed ? 'pass' : 'fail' }),
    changed: (target, healthy, why) => {
      if (healthy) logger.info('backend healthy again: back in the pool', { api, backend: target.url, check: why });
      else logger.warn('backend failed its health checks: out of the pool', { api, backend: target.url, check: why });
    },
  });
}

/** 1 for each backend of the configuration in force that takes requests (healthy, not ejected), else 0. */
export function registerBackendGauge(configs: ConfigStore, metrics: MetricsRegistry): void {
  metrics.gaugeSet('gatehouse_backend_in_service', 'Whether each backend takes requests (1) or is left out by its health checks or ejection (0), by API and backend.', () => {
    const rows: [Record<string, string>, number][] = [];
    for (const api of configs.current?.apis ?? []) {
      for (const t of api.backends.targets) rows.push([{ api: api.id, backend: t.url }, api.backends.inService(t) ? 1 : 0]);
    }
    return rows;
  });
}
