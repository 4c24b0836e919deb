// The Hono apps: the data plane (probe path + everything else to the gateway) and the admin listener.

import { Hono } from 'hono';
import { serveGatewayRequest } from '../platform/http.ts';
import type { MetricsRegistry } from '../telemetry/metrics.ts';
import { STATUS_PATH, type Gateway } from './gateway.ts';

export function dataPlaneApp(gateway: Gateway, scheme: 'http' | 'https'): Hono {
  const app = new Hono();
  // Azure API Management's probe path: 200 once a configuration is loaded, 503 before.
  app.get(STATUS_PATH, (c) => (gateway.ready ? c.text('ok') : c.text('no configuration loaded', 503)));
  app.all('*', (c) => serveGatewayRequest(c.env, c.req.raw, scheme, (req) => gateway.handle(req)));
  return app;
}

export function adminApp(gateway: Gateway, metrics: MetricsRegistry): Hono {
  const app = new Hono();
  app.get('/metrics', (c) => c.text(metrics.render(), 200, { 'content-type': 'text/plain; version=0.0.4' }));
  app.get('/readyz', (c) =>
    gateway.ready
      ? c.json({ status: 'ready', config: gateway.config!.source })
      : c.json({ status: 'not ready', reason: 'no configuration loaded' }, 503),
  );
  app.get('/livez', (c) => c.text('ok'));
  return app;
}
