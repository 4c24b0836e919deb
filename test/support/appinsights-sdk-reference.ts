// The reference for test/appinsights-sdk-parity.test.ts: one request, its backend call, a failure and a metric sent
// with the `applicationinsights` SDK itself, the calls Gatehouse made before it wrote envelopes of its own.
// Run as its own process (NODE_EXTRA_CA_CERTS is read only at a process's start): deno run -A <this> <connection string>

import { TelemetryClient } from 'applicationinsights';

const connectionString = process.argv[2];
if (!connectionString) throw new Error('usage: appinsights-sdk-reference.ts <connection string>');
process.env.APPLICATION_INSIGHTS_NO_STATSBEAT = 'true';
process.env.APPLICATIONINSIGHTS_OPENTELEMETRY_RESOURCE_METRIC_DISABLED = 'true';
const client = new TelemetryClient(connectionString, { useGlobalProviders: false });
client.config.enableUseDiskRetryCaching = false;
client.initialize();
const properties = { api: 'shop', operation: 'get-order', requestId: 'ref-1' };
client.trackRequest({
  name: 'GET /shop/orders/{id}',
  url: 'http://gateway.test/shop/orders/1',
  time: new Date(),
  duration: 12.5,
  resultCode: '502',
  success: false,
  properties: { ...properties, 'http.method': 'GET', 'http.route': '/shop/orders/{id}' },
});
client.trackDependency({
  name: 'GET /v1/orders/{id}',
  dependencyTypeName: 'HTTP',
  target: 'orders.test:8080',
  time: new Date(),
  duration: 10.25,
  resultCode: 'unreachable',
  success: false,
  properties: { ...properties, 'http.method': 'GET', 'http.scheme': 'http', 'http.host': 'orders.test:8080', 'http.target': '/v1/orders/1' },
});
const error = new Error('backend unreachable (ECONNREFUSED)');
error.name = 'BackendError';
error.stack = `${error.name}: ${error.message}`;
client.trackException({ exception: error, severity: 'Error', properties: { ...properties, source: 'backend', reason: 'unreachable' } });
client.trackMetric({ name: 'orders_seen', value: 3, properties: { region: 'eu-west' } });
await client.flush();
await client.shutdown();
