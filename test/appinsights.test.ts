// Application Insights end to end: the gateway as its own process with GATEHOUSE_APPINSIGHTS_CONNECTION_STRING, its
// exporter thread, a local HTTPS ingestion endpoint it trusts through NODE_EXTRA_CA_CERTS, a real backend and real
// policies. The assertions read the envelopes that arrived (the shapes the `applicationinsights` SDK sends: the
// parity with the SDK itself is test/appinsights-sdk-parity.test.ts).
// Runs under Node (gateway under Node) and under Deno (gateway under Deno).

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isDeno } from '../runtime/adapters/index.ts';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { startGatewayProcess, tempDir, writeConfig, type GatewayProcess } from './support/gateway-process.ts';
import { REFUSED_PORT } from './support/ports.ts';
import {
  INSTRUMENTATION_KEY,
  connectionString,
  ofType,
  property,
  startIngestionEndpoint,
  type Envelope,
  type IngestionEndpoint,
} from './support/ingestion.ts';
import { send, startRecordingBackend, type RecordingBackend } from './support/requests.ts';
import { waitFor, waitForAsync } from './support/wait.ts';

const adversarial = join(repoRoot(), 'test', 'fixtures', 'policies', 'adversarial');
const chainProbe = join(repoRoot(), 'test', 'fixtures', 'policies', 'chain-probe');

/**
 * Environment of a gateway sending to `port`, trusting `certFile`. Telemetry goes out in batches every 100 ms instead
 * of every second.
 */
function telemetryEnv(port: number, certFile: string): Record<string, string> {
  return {
    GATEHOUSE_APPINSIGHTS_CONNECTION_STRING: connectionString(port),
    NODE_EXTRA_CA_CERTS: certFile,
    GATEHOUSE_APPINSIGHTS_SEND_INTERVAL_MS: '100',
  };
}

/** "00:00:01.5" (the envelope's duration) in milliseconds. */
function durationMs(text: unknown): number {
  const m = /^(?:(\d+)\.)?(\d+):(\d+):(\d+(?:\.\d+)?)$/.exec(String(text));
  assert.ok(m, `a duration: ${String(text)}`);
  return ((Number(m[1] ?? 0) * 24 + Number(m[2])) * 60 + Number(m[3])) * 60_000 + Number(m[4]) * 1000;
}

describe('application insights: what is sent for each request', () => {
  let ingestion: IngestionEndpoint;
  let backend: RecordingBackend;
  let gw: GatewayProcess;

  before(async () => {
    ingestion = await startIngestionEndpoint();
    backend = await startRecordingBackend(() => ({ headers: { 'content-type': 'application/json' }, body: '{"ok":true}' }));
    const dir = tempDir();
    const config = writeConfig(
      dir,
      'gateway.yaml',
      `version: 1
namedValues:
  partner-token: { value: tok-51c0a7e2d9, secret: true }
apis:
  - id: shop
    pathPrefix: /shop
    backend: { url: "http://127.0.0.1:${backend.port}/v1" }
    operations:
      - { id: get-order, method: GET, urlTemplate: "/orders/{id}" }
    policies:
      inbound:
        - policy: emit-metric
          config:
            name: orders_seen
            value: 3
            dimensions:
              - { name: tenant, from: header, key: x-tenant }
              - { name: region, value: eu-west }
        - { source: "${adversarial}", config: { mode: trap-sometimes }, failOpen: true }
  - id: down
    pathPrefix: /down
    backend: { url: "http://127.0.0.1:${REFUSED_PORT}" }
  - id: broken
    pathPrefix: /broken
    backend: { url: "http://127.0.0.1:${backend.port}" }
    policies:
      inbound:
        - { source: "${adversarial}", config: { mode: trap } }
  - id: secretive
    pathPrefix: /secretive
    backend: { url: "http://127.0.0.1:${backend.port}" }
    policies:
      inbound:
        - { source: "${chainProbe}", config: { fail: "refused with {{partner-token}}" } }
`,
    );
    gw = await startGatewayProcess({ config, env: telemetryEnv(ingestion.port, ingestion.certFile) });
  });

  after(async () => {
    await gw?.stop();
    await ingestion?.close();
    await new Promise<void>((resolve) => backend?.server.close(() => resolve()));
  });

  const requestOf = (id: string) => ofType(ingestion.envelopes, 'Request').find((e) => property(e, 'requestId') === id);
  const dependencyOf = (id: string) => ofType(ingestion.envelopes, 'RemoteDependency').find((e) => property(e, 'requestId') === id);
  const exceptionOf = (id: string) => ofType(ingestion.envelopes, 'Exception').find((e) => property(e, 'requestId') === id);

  /** The request envelope and the operation it started: its children carry the same operation id and its id as parent. */
  function assertChildOf(child: Envelope, request: Envelope): void {
    assert.match(request.tags['ai.operation.id'] ?? '', /^[0-9a-f]{32}$/);
    assert.equal(child.tags['ai.operation.id'], request.tags['ai.operation.id'], 'same operation id');
    assert.equal(child.tags['ai.operation.parentId'], request.data.baseData.id, 'the request is the parent');
  }

  test('a proxied request: a Request named by its route, a RemoteDependency for the backend call as its child', async () => {
    const res = await send(gw.url, '/shop/orders/42?key=secret', { headers: { 'x-tenant': 'acme', 'x-request-id': 'req-ok' } });
    assert.equal(res.status, 200);
    await waitFor('the request and its backend call', () => requestOf('req-ok') !== undefined && dependencyOf('req-ok') !== undefined, 15_000);

    const request = requestOf('req-ok')!;
    const data = request.data.baseData;
    assert.equal(request.iKey, INSTRUMENTATION_KEY);
    assert.equal(data.name, 'GET /shop/orders/{id}', 'the route template, not the path with the id');
    assert.equal(data.responseCode, '200');
    assert.equal(data.success, true);
    assert.equal(data.url, `http://127.0.0.1:${gw.httpPort}/shop/orders/42`, 'the URL without its query');
    assert.deepEqual(
      { api: property(request, 'api'), operation: property(request, 'operation') },
      { api: 'shop', operation: 'get-order' },
    );
    assert.equal(request.tags['ai.cloud.role'], 'gatehouse');
    assert.equal(request.tags['ai.operation.name'], 'GET /shop/orders/{id}');

    const dependency = dependencyOf('req-ok')!;
    const dep = dependency.data.baseData;
    assert.equal(dep.type, 'Http');
    assert.equal(dep.name, 'GET /v1/orders/{id}', 'the backend base path and the operation template');
    assert.equal(dep.target, `127.0.0.1:${backend.port}`);
    assert.equal(dep.data, `http://127.0.0.1:${backend.port}/v1/orders/42`, 'the backend URL without the query');
    assert.equal(dep.resultCode, '200');
    assert.equal(dep.success, true);
    assert.ok(durationMs(dep.duration) <= durationMs(data.duration), 'the backend call fits in the request');
    assertChildOf(dependency, request);
    assert.equal(backend.seen.at(-1)?.url, '/v1/orders/42?key=secret', 'the backend itself got the query');
  });

  test('a caller\'s traceparent: the operation id is its trace id, the Request\'s parent its span, the backend\'s parent the Request', async () => {
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    const callerSpan = 'b7ad6b7169203331';
    const res = await send(gw.url, '/shop/orders/7', {
      headers: { 'x-tenant': 'acme', 'x-request-id': 'req-traced', traceparent: `00-${traceId}-${callerSpan}-01` },
    });
    assert.equal(res.status, 200);
    await waitFor('the traced request and its backend call', () => requestOf('req-traced') !== undefined && dependencyOf('req-traced') !== undefined, 15_000);
    const request = requestOf('req-traced')!;
    assert.equal(request.tags['ai.operation.id'], traceId, 'the operation is the caller\'s trace');
    assert.equal(request.tags['ai.operation.parentId'], callerSpan, 'the caller\'s span is the Request\'s parent');
    const gatewaySpan = request.data.baseData.id as string;
    assert.match(gatewaySpan, /^[0-9a-f]{16}$/);
    assert.notEqual(gatewaySpan, callerSpan);
    assertChildOf(dependencyOf('req-traced')!, request);
    assert.notEqual(dependencyOf('req-traced')!.data.baseData.id, gatewaySpan);
    // The backend continues the same trace, its parent the gateway's span: the Request.
    const seen = backend.seen.find((s) => s.url === '/v1/orders/7');
    assert.equal(seen?.headers.traceparent, `00-${traceId}-${gatewaySpan}-01`);
  });

  test('without a traceparent: a new trace, the Request without a parent, its id what the backend got as parent', async () => {
    const res = await send(gw.url, '/shop/orders/8', { headers: { 'x-tenant': 'acme', 'x-request-id': 'req-untraced' } });
    assert.equal(res.status, 200);
    await waitFor('the request', () => requestOf('req-untraced') !== undefined, 15_000);
    const request = requestOf('req-untraced')!;
    assert.equal(request.tags['ai.operation.parentId'], undefined, 'a trace the gateway started has no parent');
    const seen = backend.seen.find((s) => s.url === '/v1/orders/8');
    assert.equal(seen?.headers.traceparent, `00-${request.tags['ai.operation.id']}-${request.data.baseData.id as string}-01`);
  });

  test('a backend that refuses connections: a failed Request (502), a failed dependency and a BackendError, correlated', async () => {
    const res = await send(gw.url, '/down/anything', { headers: { 'x-request-id': 'req-down' } });
    assert.equal(res.status, 502);
    await waitFor('the 502 with its dependency and exception', () => !!(requestOf('req-down') && dependencyOf('req-down') && exceptionOf('req-down')), 15_000);

    const request = requestOf('req-down')!;
    assert.equal(request.data.baseData.name, 'GET /down/*', 'an API without operations: its catch-all');
    assert.equal(request.data.baseData.responseCode, '502');
    assert.equal(request.data.baseData.success, false);

    const dependency = dependencyOf('req-down')!;
    assert.equal(dependency.data.baseData.success, false);
    assert.equal(dependency.data.baseData.resultCode, 'unreachable');
    assert.equal(dependency.data.baseData.target, `127.0.0.1:${REFUSED_PORT}`);
    assertChildOf(dependency, request);

    const exception = exceptionOf('req-down')!;
    const [details] = exception.data.baseData.exceptions as Array<{ typeName: string; message: string }>;
    assert.equal(details?.typeName, 'BackendError');
    assert.match(details?.message ?? '', /unreachable.*ECONNREFUSED/);
    assert.equal(property(exception, 'api'), 'down');
    assert.equal(property(exception, 'source'), 'backend');
    assert.equal(property(exception, 'reason'), 'unreachable');
    assert.equal(exception.data.baseData.severityLevel, 'Error');
    assertChildOf(exception, request);
  });

  test('a policy that traps: a 500 Request and a PolicyFailure naming the policy, and no backend call', async () => {
    const res = await send(gw.url, '/broken/x', { headers: { 'x-request-id': 'req-trap' } });
    assert.equal(res.status, 500);
    await waitFor('the 500 and its exception', () => !!(requestOf('req-trap') && exceptionOf('req-trap')), 15_000);

    const request = requestOf('req-trap')!;
    assert.equal(request.data.baseData.responseCode, '500');
    assert.equal(request.data.baseData.success, false);
    const exception = exceptionOf('req-trap')!;
    const [details] = exception.data.baseData.exceptions as Array<{ typeName: string; message: string }>;
    assert.equal(details?.typeName, 'PolicyFailure');
    assert.equal(property(exception, 'policy'), 'api:broken/inbound/0');
    assert.equal(property(exception, 'reason'), 'trap');
    assert.equal(property(exception, 'operation'), 'default');
    assertChildOf(exception, request);
    assert.equal(dependencyOf('req-trap'), undefined, 'the backend was not called');
  });

  test('a secret named value that a policy repeats in its failure is masked in the exception, as in the log', async () => {
    assert.equal((await send(gw.url, '/secretive/x', { headers: { 'x-request-id': 'req-secret' } })).status, 500);
    await waitFor('the exception', () => exceptionOf('req-secret') !== undefined, 15_000);
    const [details] = exceptionOf('req-secret')!.data.baseData.exceptions as Array<{ message: string }>;
    assert.equal(details?.message, 'policy api:secretive/inbound/0 failed (error): refused with ***');
    assert.ok(!JSON.stringify(ingestion.envelopes).includes('tok-51c0a7e2d9'), 'the secret reached Application Insights');
  });

  test('a fail-open policy that fails: the request succeeds, and the failure arrives as a warning', async () => {
    const res = await send(gw.url, '/shop/orders/43', { headers: { 'x-tenant': 'acme', 'x-trap': '1', 'x-request-id': 'req-open' } });
    assert.equal(res.status, 200);
    await waitFor('the request and the skipped policy', () => !!(requestOf('req-open') && exceptionOf('req-open')), 15_000);
    assert.equal(requestOf('req-open')!.data.baseData.success, true);
    const exception = exceptionOf('req-open')!;
    assert.equal(exception.data.baseData.severityLevel, 'Warning');
    assert.equal(property(exception, 'failedOpen'), 'true');
    assert.equal(property(exception, 'policy'), 'api:shop/inbound/1');
    assertChildOf(exception, requestOf('req-open')!);
  });

  test('a 404 is a Request with one name for every unknown path, not a failure', async () => {
    const res = await send(gw.url, '/no/such/api/123', { headers: { 'x-request-id': 'req-404' } });
    assert.equal(res.status, 404);
    await waitFor('the 404', () => requestOf('req-404') !== undefined, 15_000);
    const data = requestOf('req-404')!.data.baseData;
    assert.equal(data.name, 'GET (no matching API)');
    assert.equal(data.responseCode, '404');
    assert.equal(data.success, true, '4xx answers count as successful: only 5xx are failures');
  });

  // Last: it stops the gateway. Metrics are aggregated in the gateway and sent every minute, or at shutdown.
  test('on SIGTERM the pending telemetry is flushed: the emit-metric values arrive as a custom metric', async () => {
    const code = await gw.stop('SIGTERM');
    if (!isDeno) assert.equal(code, 0);
    assert.ok(gw.logs.some((l) => l.msg === 'telemetry flushed'), 'the flush finished before the process exited');
    type Point = { name: string; value: number; count: number; min: number; max: number };
    const metrics = ofType(ingestion.envelopes, 'Metric');
    const seen = metrics.filter((e) => (e.data.baseData.metrics as Point[])[0]?.name === 'orders_seen');
    assert.ok(seen.length > 0, `orders_seen among ${metrics.length} metric envelopes`);
    // Sent every minute and at shutdown: a run slower than a minute may have sent part of it earlier.
    const points = seen.map((e) => (e.data.baseData.metrics as Point[])[0]!);
    const total = { value: 0, count: 0, min: Infinity, max: -Infinity };
    for (const p of points) {
      total.value += p.value;
      total.count += p.count;
      total.min = Math.min(total.min, p.min);
      total.max = Math.max(total.max, p.max);
    }
    // Four requests through the shop API, 3 each: the sum, the count, the smallest and the largest value.
    assert.deepEqual(total, { value: 12, count: 4, min: 3, max: 3 });
    for (const e of seen) assert.deepEqual(e.data.baseData.properties, { tenant: 'acme', region: 'eu-west' });
    assert.equal(metrics.length, seen.length, 'no other metric: no statsbeat, no resource metric, no performance counters');
    assert.ok(ingestion.envelopes.every((e) => e.iKey === INSTRUMENTATION_KEY));
  });
});

describe('application insights: an ingestion endpoint that fails does not break serving', () => {
  const config = async (backend: RecordingBackend) =>
    writeConfig(tempDir(), 'gateway.yaml', `version: 1\napis:\n  - id: api\n    pathPrefix: /\n    backend: { url: "http://127.0.0.1:${backend.port}" }\n`);

  async function serveThrough(env: Record<string, string>, backend: RecordingBackend): Promise<GatewayProcess> {
    const gw = await startGatewayProcess({ config: await config(backend), env: { ...env, GATEHOUSE_SHUTDOWN_TIMEOUT_MS: '2000' } });
    for (let i = 0; i < 20; i++) {
      const res = await send(gw.url, `/item/${i}`);
      assert.equal(res.status, 200, `request ${i}`);
    }
    return gw;
  }

  /** SIGTERM: the flush is bounded by the shutdown timeout, so the process ends in a few seconds. */
  async function stopsPromptly(gw: GatewayProcess): Promise<void> {
    const asked = Date.now();
    const code = await gw.stop('SIGTERM');
    assert.ok(Date.now() - asked < 10_000, `stopped in ${Date.now() - asked} ms`);
    if (!isDeno) assert.equal(code, 0);
  }

  test('answering 500 to everything', async () => {
    const ingestion = await startIngestionEndpoint({ answer: 'fail' });
    const backend = await startRecordingBackend(() => ({ body: 'fine' }));
    try {
      const gw = await serveThrough(telemetryEnv(ingestion.port, ingestion.certFile), backend);
      await waitFor('the exporter to try sending', () => ingestion.posts > 0, 15_000);
      const res = await send(gw.url, '/after-a-failed-export');
      assert.equal(res.status, 200, 'still serving after the ingestion endpoint answered 500');
      await stopsPromptly(gw);
    } finally {
      await ingestion.close();
      await new Promise<void>((resolve) => backend.server.close(() => resolve()));
    }
  });

  test('unreachable (connections refused)', async () => {
    const backend = await startRecordingBackend(() => ({ body: 'fine' }));
    const certDonor = await startIngestionEndpoint();
    await certDonor.close();
    try {
      const gw = await serveThrough(telemetryEnv(REFUSED_PORT, certDonor.certFile), backend);
      // Past the first export attempts (100 ms batches, retried), serving goes on.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const res = await send(gw.url, '/after-a-failed-export');
      assert.equal(res.status, 200);
      assert.ok(!gw.logs.some((l) => l.level === 'error'), 'nothing logged as an error');
      await stopsPromptly(gw);
    } finally {
      await new Promise<void>((resolve) => backend.server.close(() => resolve()));
    }
  });
});

describe('application insights: a queue that fills', () => {
  test('requests past the queue limit are dropped and counted on /metrics: each one is sent or counted', async () => {
    // Each answer takes 1.5 s, and at most four batches are in flight: the queue (50 here, 8,192 by default) fills.
    const ingestion = await startIngestionEndpoint({ delayMs: 1500 });
    const config = writeConfig(tempDir(), 'gateway.yaml', 'version: 1\napis: []\n');
    const env = { ...telemetryEnv(ingestion.port, ingestion.certFile), GATEHOUSE_APPINSIGHTS_QUEUE_LIMIT: '50', GATEHOUSE_APPINSIGHTS_BATCH_SIZE: '10' };
    const gw = await startGatewayProcess({ config, env });
    const dropped = async () => {
      const text = (await send(`http://127.0.0.1:${gw.adminPort}`, '/metrics')).body;
      const lines = text.split('\n').filter((l) => l.startsWith('gatehouse_appinsights_dropped_total{'));
      assert.ok(lines.length > 0, 'the counter is on /metrics');
      const other = lines.filter((l) => !l.startsWith('gatehouse_appinsights_dropped_total{reason="queue-full"} ') && !l.endsWith(' 0'));
      assert.deepEqual(other, [], 'dropped for no other reason');
      return lines.reduce((sum, l) => sum + Number(l.split(' ')[1]), 0);
    };
    try {
      assert.equal(await dropped(), 0);
      let sent = 0;
      for (; sent < 300; sent++) assert.equal((await send(gw.url, `/flood/${sent}`)).status, 404);
      // A hang guard: at most 50 queued requests, 10 a batch, 1.5 s a batch, is under 10 s alone; beside the whole
      // suite and other work on two cores it passed 30 s.
      let count = 0;
      await waitForAsync(
        'every request sent or counted as dropped',
        async () => {
          count = await dropped();
          return ofType(ingestion.envelopes, 'Request').length + count === sent;
        },
        120_000,
      );
      assert.ok(count >= 100, `${count} of ${sent} dropped`);
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.equal(await dropped(), count, 'no drop counted twice');
      assert.equal(ofType(ingestion.envelopes, 'Request').length + count, sent, 'no request sent twice');
      const metrics = (await send(`http://127.0.0.1:${gw.adminPort}`, '/metrics')).body;
      assert.match(metrics, new RegExp(`^gatehouse_appinsights_spans_dropped_total ${count}$`, 'm'), 'the earlier name counts the same drops');
    } finally {
      await gw.stop();
      await ingestion.close();
    }
  });
});

describe('application insights: sampling', () => {
  test('a request sampled out is not sent, with its backend call; its failure is sent all the same', async () => {
    const ingestion = await startIngestionEndpoint();
    const backend = await startRecordingBackend(() => ({ body: 'fine' }));
    const config = writeConfig(
      tempDir(),
      'gateway.yaml',
      `version: 1
apis:
  - id: up
    pathPrefix: /up
    backend: { url: "http://127.0.0.1:${backend.port}" }
  - id: down
    pathPrefix: /down
    backend: { url: "http://127.0.0.1:${REFUSED_PORT}" }
`,
    );
    // One request in 100,000 is kept: these few are all but certainly left out.
    const env = { ...telemetryEnv(ingestion.port, ingestion.certFile), GATEHOUSE_APPINSIGHTS_SAMPLING_PERCENTAGE: '0.001' };
    const gw = await startGatewayProcess({ config, env });
    try {
      assert.equal((await send(gw.url, '/up/a', { headers: { 'x-request-id': 'sampled-up' } })).status, 200);
      assert.equal((await send(gw.url, '/down/a', { headers: { 'x-request-id': 'sampled-down' } })).status, 502);
      await waitFor('the failure', () => ofType(ingestion.envelopes, 'Exception').some((e) => property(e, 'requestId') === 'sampled-down'), 15_000);
      const exception = ofType(ingestion.envelopes, 'Exception').find((e) => property(e, 'requestId') === 'sampled-down')!;
      assert.equal(property(exception, 'reason'), 'unreachable');
      assert.equal(exception.tags['ai.operation.parentId'], undefined, 'no request was sent to be its parent, and the trace is the gateway\'s');
      assert.match(exception.tags['ai.operation.id'] ?? '', /^[0-9a-f]{32}$/, 'the failure is in its request\'s trace');
      // The gateway flushes at shutdown: anything it kept has arrived once it is gone.
      await gw.stop('SIGTERM');
      assert.deepEqual(
        ingestion.envelopes.filter((e) => e.name !== 'Microsoft.ApplicationInsights.Exception').map((e) => e.name),
        [],
        'no Request, no RemoteDependency',
      );
    } finally {
      await gw.stop();
      await ingestion.close();
      await new Promise<void>((resolve) => backend.server.close(() => resolve()));
    }
  });
});

describe('application insights: a connection string the SDKs would ignore stops the start', () => {
  test('an instrumentation key that is not a GUID: exit 2, naming the variable and the problem', async () => {
    await assert.rejects(
      startGatewayProcess({ env: { GATEHOUSE_APPINSIGHTS_CONNECTION_STRING: 'InstrumentationKey=not-a-key;IngestionEndpoint=https://127.0.0.1:1/' } }),
      (err: Error) => {
        assert.match(err.message, /exited with 2/);
        assert.match(err.message, /GATEHOUSE_APPINSIGHTS_CONNECTION_STRING/);
        assert.match(err.message, /InstrumentationKey not-a-key is not a GUID/);
        return true;
      },
    );
  });

  test('a plain-HTTP ingestion endpoint (the SDKs would send nothing to it)', async () => {
    await assert.rejects(
      startGatewayProcess({ env: { GATEHOUSE_APPINSIGHTS_CONNECTION_STRING: `InstrumentationKey=${INSTRUMENTATION_KEY};IngestionEndpoint=http://127.0.0.1:1/` } }),
      /GATEHOUSE_APPINSIGHTS_CONNECTION_STRING.*IngestionEndpoint http:\/\/127\.0\.0\.1:1\/ is not an https:\/\/ URL/,
    );
  });
});
