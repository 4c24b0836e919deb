// The Hono apps: the data plane (probe path + everything else to the gateway) and the admin listener.

import { Hono } from 'hono';
import type { MetricsRegistry } from '../telemetry/metrics.ts';
import { STATUS_PATH, type Gateway } from '../gateway/gateway.ts';

/** Paths the data plane serves itself; every other request is proxied (runtime/server/http-server.ts). */
export const FIXED_PATHS: ReadonlySet<string> = new Set([STATUS_PATH]);

export function dataPlaneApp(gateway: Gateway): Hono {
  const app = new Hono();
  // Azure API Management's probe path: 200 once a configuration is loaded, 503 before it and from SIGTERM on.
  app.get(STATUS_PATH, (c) => {
    const reason = gateway.notReadyReason;
    return reason === null ? c.text('ok') : c.text(reason, 503);
  });
  return app;
}

export function adminApp(gateway: Gateway, metrics: MetricsRegistry): Hono {
  const app = new Hono();
  app.get('/metrics', (c) => c.text(metrics.render(), 200, { 'content-type': 'text/plain; version=0.0.4' }));
  app.get('/readyz', (c) => {
    const reason = gateway.notReadyReason;
    return reason === null
      ? c.json({ status: 'ready', config: gateway.config!.source })
      : c.json({ status: 'not ready', reason }, 503);
  });
  app.get('/livez', (c) => c.text('ok'));
  return app;
}
