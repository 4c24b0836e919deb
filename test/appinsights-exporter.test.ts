// The Application Insights exporter thread (runtime/telemetry/appinsights-exporter.ts) as the gateway relies on it:
// every request delivered when all are sent, sampling kept, what is pending delivered by the flush on SIGTERM, a
// partial answer's envelopes sent again or dropped as it asks, and an exporter thread that stops reported, counted and
// started again while the gateway serves on. Real gateway processes
// (Node, or Deno under Deno), a real exporter thread, a local HTTPS ingestion endpoint.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { isDeno } from '../runtime/adapters/index.ts';
import { gatewayAssets } from '../runtime/assets/repository.ts';
import { ApplicationInsightsTelemetry, parseConnectionString, startApplicationInsights } from '../runtime/telemetry/appinsights.ts';
import { Logger, type LogRecord } from '../runtime/telemetry/logger.ts';
import { MetricsRegistry } from '../runtime/telemetry/metrics.ts';
import type { RequestRecord } from '../runtime/telemetry/request-telemetry.ts';
import { startGatewayProcess, tempDir, writeConfig, type GatewayProcess } from './support/gateway-process.ts';
import { connectionString, ofType, property, startIngestionEndpoint, type IngestionEndpoint } from './support/ingestion.ts';
import { send, startRecordingBackend, type RecordingBackend } from './support/requests.ts';
import { waitFor } from './support/wait.ts';

/** A request's record as the gateway hands it to the telemetry. */
function request(id: string, url = 'http://127.0.0.1/api/x'): RequestRecord {
  return {
    requestId: id,
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    spanId: '00f067aa0ba902b7',
    parentSpanId: null,
    method: 'GET',
    route: '/api/*',
    url,
    api: 'api',
    operation: 'default',
    status: 200,
    startTime: Date.now(),
    durationMs: 1,
    backend: null,
    failures: [],
  };
}

/** Telemetry sending every request to `ingestion` every 50 ms, from this process. */
async function startTelemetry(ingestion: IngestionEndpoint, logger: Logger, metrics: MetricsRegistry) {
  const parsed = parseConnectionString(connectionString(ingestion.port));
  assert.ok(parsed.ok);
  const assets = gatewayAssets();
  return startApplicationInsights(
    // In this process, NODE_EXTRA_CA_CERTS was not set at its start: the endpoint's certificate is given instead.
    { ...parsed.value, samplingPercentage: 100, sendIntervalMs: 50, ca: readFileSync(ingestion.certFile, 'utf8') },
    logger,
    { script: assets.appInsightsExporter, version: assets.version },
    metrics,
  );
}

/** A counter's value in the registry's exposition; undefined when it has none. */
function metricValue(metrics: MetricsRegistry, name: string): number | undefined {
  const line = metrics.render().split('\n').find((l) => l.startsWith(name));
  return line === undefined ? undefined : Number(line.split(' ').pop());
}

/** `total` requests through the gateway, `concurrency` at a time, each named by its x-request-id. */
async function load(gw: GatewayProcess, total: number, concurrency: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < total) {
      const i = next++;
      const res = await send(gw.url, `/api/items/${i}`, { headers: { 'x-request-id': `load-${i}` } });
      assert.equal(res.status, 200, `request ${i}`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

async function gatewayFor(ingestion: IngestionEndpoint, backend: RecordingBackend, env: Record<string, string>): Promise<GatewayProcess> {
  const config = writeConfig(tempDir(), 'gateway.yaml', `version: 1\napis:\n  - id: api\n    pathPrefix: /api\n    backend: { url: "http://127.0.0.1:${backend.port}" }\n`);
  return startGatewayProcess({
    config,
    env: {
      GATEHOUSE_APPINSIGHTS_CONNECTION_STRING: connectionString(ingestion.port),
      NODE_EXTRA_CA_CERTS: ingestion.certFile,
      // Nothing is sent before the flush on SIGTERM unless a batch of 100 fills: the flush must deliver the rest.
      GATEHOUSE_APPINSIGHTS_SEND_INTERVAL_MS: '600000',
      GATEHOUSE_APPINSIGHTS_BATCH_SIZE: '100',
      ...env,
    },
  });
}

describe('application insights: delivery', () => {
  test('every request sent, each once, with its backend call; what was pending is delivered by the flush on SIGTERM', async () => {
    const ingestion = await startIngestionEndpoint();
    const backend = await startRecordingBackend(() => ({ body: 'fine' }));
    try {
      const gw = await gatewayFor(ingestion, backend, {});
      // Two envelopes a request (its backend call): 4,050 envelopes, 40 full batches of 100, and 50 envelopes, the last
      // 25 requests, in a batch that never fills.
      const total = 2025;
      await load(gw, total, 16);
      await waitFor('the full batches', () => ofType(ingestion.envelopes, 'Request').length >= 2000, 30_000);
      assert.ok(ofType(ingestion.envelopes, 'Request').length < total, 'a partial batch waits for the send interval');
      const code = await gw.stop('SIGTERM');
      if (!isDeno) assert.equal(code, 0);
      assert.ok(gw.logs.some((l) => l.msg === 'telemetry flushed'), 'the flush finished before the process exited');

      const requests = ofType(ingestion.envelopes, 'Request').map((e) => property(e, 'requestId'));
      assert.equal(requests.length, total, 'one Request envelope a request');
      assert.equal(new Set(requests).size, total, 'none twice');
      for (let i = 0; i < total; i++) assert.ok(requests.includes(`load-${i}`), `load-${i} arrived`);
      assert.equal(ofType(ingestion.envelopes, 'RemoteDependency').length, total, 'one backend call a request');
      assert.ok(ingestion.envelopes.every((e) => e.sampleRate === 100));
    } finally {
      await ingestion.close();
      await new Promise<void>((resolve) => backend.server.close(() => resolve()));
    }
  });

  test('sampling at 50%: about half the requests, each with its backend call, marked with their sample rate', async () => {
    const ingestion = await startIngestionEndpoint();
    const backend = await startRecordingBackend(() => ({ body: 'fine' }));
    try {
      const gw = await gatewayFor(ingestion, backend, { GATEHOUSE_APPINSIGHTS_SAMPLING_PERCENTAGE: '50' });
      const total = 2000;
      await load(gw, total, 16);
      await gw.stop('SIGTERM');
      const requests = ofType(ingestion.envelopes, 'Request');
      // Binomial(2000, 0.5): standard deviation 22; six of them either side fail one run in hundreds of millions.
      assert.ok(requests.length > 868 && requests.length < 1132, `${requests.length} of ${total} sent`);
      assert.ok(requests.every((e) => e.sampleRate === 50));
      const kept = new Set(requests.map((e) => property(e, 'requestId')));
      const dependencies = ofType(ingestion.envelopes, 'RemoteDependency');
      assert.equal(dependencies.length, requests.length, 'a backend call for each request sent');
      assert.ok(dependencies.every((e) => kept.has(property(e, 'requestId'))), 'no backend call of a request left out');
    } finally {
      await ingestion.close();
      await new Promise<void>((resolve) => backend.server.close(() => resolve()));
    }
  });
});

describe('application insights: an exporter thread that stops', () => {
  test('is reported, what it held counted as lost, and started again; telemetry then flows again', async () => {
    const ingestion = await startIngestionEndpoint();
    const records: LogRecord[] = [];
    const logger = new Logger((line) => records.push(JSON.parse(line) as LogRecord), 'debug');
    const metrics = new MetricsRegistry();
    const telemetry = await startTelemetry(ingestion, logger, metrics);
    assert.ok(telemetry instanceof ApplicationInsightsTelemetry);
    const metric = (name: string) => metricValue(metrics, name);
    try {
      telemetry.request(request('before'));
      await waitFor('the first request', () => ofType(ingestion.envelopes, 'Request').length === 1, 15_000);

      const first = telemetry.exporterThread;
      assert.ok(first);
      // Records handed over (a full batch: 1,024) just before the thread goes: lost with it, and counted.
      for (let i = 0; i < 1100; i++) telemetry.request(request(`lost-${i}`));
      await first.terminate();
      await waitFor('the report', () => records.some((r) => r.msg.startsWith('the Application Insights exporter thread stopped')), 5000);
      const report = records.find((r) => r.msg.startsWith('the Application Insights exporter thread stopped'))!;
      assert.equal(report.level, 'error');
      assert.equal(typeof report.lost, 'number');

      // Meanwhile the gateway keeps recording: held until the new thread runs.
      telemetry.request(request('while-down'));
      await waitFor('a new exporter thread', () => telemetry.exporterThread !== null && telemetry.exporterThread !== first, 10_000);
      assert.ok(records.some((r) => r.msg === 'the Application Insights exporter thread runs again'));
      telemetry.request(request('after'));
      const arrived = (id: string) => ofType(ingestion.envelopes, 'Request').some((e) => property(e, 'requestId') === id);
      await waitFor('the requests after the restart', () => arrived('while-down') && arrived('after'), 15_000);

      assert.equal(metric('gatehouse_appinsights_exporter_restarts_total'), 1);
      const lost = metric('gatehouse_appinsights_dropped_total{reason="exporter-lost"}') ?? 0;
      const lostArrived = ofType(ingestion.envelopes, 'Request').filter((e) => property(e, 'requestId')?.startsWith('lost-')).length;
      // Each of the 300 either arrived (sent before the thread went) or is counted as lost: the count may exceed the
      // loss by what was in a POST when the thread went, never fall short of it.
      assert.ok(lost + lostArrived >= 1100, `${lost} counted lost, ${lostArrived} arrived, of 1100`);
    } finally {
      await telemetry.close(5000);
      await ingestion.close();
    }
    assert.ok(records.some((r) => r.msg === 'telemetry flushed'));
  });
});

describe('application insights: a partial answer (206)', () => {
  test('the envelopes it asks for again are sent again, alone, those it refuses are dropped and counted, the rest counted sent', async () => {
    const ingestion = await startIngestionEndpoint({ answer: 'partial-first' });
    const metrics = new MetricsRegistry();
    const telemetry = await startTelemetry(ingestion, new Logger(() => {}), metrics);
    const metric = (name: string) => metricValue(metrics, name);
    try {
      // One batch of 50 Request envelopes (the records handed over together, sent after 50 ms).
      for (let i = 0; i < 50; i++) {
        telemetry.request(request(`partial-${i}`, `http://127.0.0.1/api/${i}`));
      }
      await waitFor('the first envelope sent again', () => ingestion.posts >= 2, 15_000);
      await waitFor('the outcome counted', () => metric('gatehouse_appinsights_sent_total') === 49, 5000);
      const received = ofType(ingestion.envelopes, 'Request').map((e) => property(e, 'requestId'));
      const first = received.slice(0, 50);
      assert.equal(first.length, 50, 'the whole batch first');
      const firstId = first[0]!;
      const secondId = first[1]!;
      assert.deepEqual(received.slice(50), [firstId], 'then the envelope asked for again, alone');
      const requests = ofType(ingestion.envelopes, 'Request');
      assert.deepEqual(requests[50], requests[0], 'as it was');
      assert.equal(received.filter((id) => id === secondId).length, 1, 'the refused envelope is not sent again');
      assert.equal(metric('gatehouse_appinsights_dropped_total{reason="rejected"}'), 1);
      assert.equal(ingestion.posts, 2);
    } finally {
      await telemetry.close(5000);
      await ingestion.close();
    }
  });
});
