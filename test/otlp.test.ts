// OTLP export end to end: the gateway as its own process with GATEHOUSE_OTLP_ENDPOINT, a real backend, and a local
// OTLP/HTTP receiver (node:http) decoding the JSON exports the OpenTelemetry exporters send: the spans' trace, ids,
// parents, names and attributes, the request metrics; then a collector that refuses connections and one that never
// answers, which cost the requests nothing and are counted.
// Runs under Node (gateway under Node) and under Deno (gateway under Deno).

import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { startGatewayProcess, tempDir, writeConfig, type GatewayProcess } from './support/gateway-process.ts';
import { send, startRecordingBackend, type RecordingBackend } from './support/requests.ts';
import { waitFor, waitForAsync } from './support/wait.ts';

const TRACE = '0af7651916cd43dd8448eb211c80319c';
const CALLER_SPAN = 'b7ad6b7169203331';
/** OTLP's span kinds (the protobuf enum the JSON carries). */
const SERVER = 2;
const CLIENT = 3;
const STATUS_ERROR = 2;

type AnyValue = { stringValue?: string; intValue?: number | string; doubleValue?: number; boolValue?: boolean };
type KeyValue = { key: string; value: AnyValue };
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string | number;
  endTimeUnixNano: string | number;
  attributes: KeyValue[];
  events?: { name: string; attributes: KeyValue[] }[];
  status?: { code?: number };
}
interface Received {
  resource: KeyValue[];
  span: OtlpSpan;
}

function value(v: AnyValue | undefined): unknown {
  if (v === undefined) return undefined;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  return v.boolValue;
}

function attr(list: KeyValue[] | undefined, key: string): unknown {
  return value(list?.find((a) => a.key === key)?.value);
}

/** A local OTLP/HTTP receiver: what it decoded from /v1/traces and /v1/metrics. */
interface Receiver {
  port: number;
  spans: Received[];
  /** Metric names with their data points' attributes, as received. */
  metrics: { name: string; points: { attributes: KeyValue[]; count?: number | string }[] }[];
  contentTypes: Set<string>;
  close(): Promise<void>;
}

async function startReceiver(): Promise<Receiver> {
  const receiver: Omit<Receiver, 'port' | 'close'> = { spans: [], metrics: [], contentTypes: new Set() };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const body = JSON.parse((req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw).toString('utf8')) as Record<string, unknown[]>;
      receiver.contentTypes.add(String(req.headers['content-type']));
      if (req.url === '/v1/traces') {
        for (const rs of body.resourceSpans as { resource: { attributes: KeyValue[] }; scopeSpans: { spans: OtlpSpan[] }[] }[]) {
          for (const ss of rs.scopeSpans) for (const span of ss.spans) receiver.spans.push({ resource: rs.resource.attributes, span });
        }
      } else if (req.url === '/v1/metrics') {
        type Metric = { name: string; histogram?: { dataPoints: { attributes: KeyValue[]; count: number }[] }; sum?: { dataPoints: { attributes: KeyValue[] }[] } };
        for (const rm of body.resourceMetrics as { scopeMetrics: { metrics: Metric[] }[] }[]) {
          for (const sm of rm.scopeMetrics) {
            for (const m of sm.metrics) receiver.metrics.push({ name: m.name, points: m.histogram?.dataPoints ?? m.sum?.dataPoints ?? [] });
          }
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    ...receiver,
    port: (server.address() as AddressInfo).port,
    close: () => closeServer(server),
  };
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections?.();
  return new Promise((resolve) => server.close(() => resolve()));
}

async function metricValue(gw: GatewayProcess, line: RegExp): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${gw.adminPort}/metrics`)).text();
  const m = line.exec(text);
  return m ? Number(m[1]) : 0;
}

describe('OTLP export: what the collector receives', () => {
  let receiver: Receiver;
  let backend: RecordingBackend;
  let gw: GatewayProcess;

  before(async () => {
    receiver = await startReceiver();
    backend = await startRecordingBackend(() => ({ body: 'ok' }));
    const config = writeConfig(
      tempDir(),
      'gateway.yaml',
      `version: 1
apis:
  - id: shop
    pathPrefix: /shop
    backend: { url: "http://127.0.0.1:${backend.port}/v1" }
    operations:
      - { id: get-order, method: GET, urlTemplate: "/orders/{id}" }
  - id: down
    pathPrefix: /down
    backend: { url: "http://127.0.0.1:1" }
`,
    );
    gw = await startGatewayProcess({
      config,
      env: {
        GATEHOUSE_OTLP_ENDPOINT: `http://127.0.0.1:${receiver.port}`,
        GATEHOUSE_OTLP_SEND_INTERVAL_MS: '100',
        GATEHOUSE_OTLP_METRICS_INTERVAL_MS: '300',
      },
    });
  });

  after(async () => {
    await gw?.stop();
    await receiver?.close();
    if (backend) await closeServer(backend.server);
  });

  const serverSpan = (requestId: string) => receiver.spans.find((s) => s.span.kind === SERVER && attr(s.span.attributes, 'gatehouse.request_id') === requestId);
  const clientSpan = (requestId: string) => receiver.spans.find((s) => s.span.kind === CLIENT && attr(s.span.attributes, 'gatehouse.request_id') === requestId);

  test('a traced request: the server span continues the caller\'s trace, the backend call is its child', async () => {
    const res = await send(gw.url, '/shop/orders/42?key=secret', { headers: { traceparent: `00-${TRACE}-${CALLER_SPAN}-01`, 'x-request-id': 'otlp-1' } });
    assert.equal(res.status, 200);
    await waitFor('the two spans', () => serverSpan('otlp-1') !== undefined && clientSpan('otlp-1') !== undefined, 15_000);
    const { span, resource } = serverSpan('otlp-1')!;
    assert.equal(span.traceId, TRACE);
    assert.equal(span.parentSpanId, CALLER_SPAN);
    assert.equal(span.name, 'GET /shop/orders/{id}');
    assert.equal(attr(span.attributes, 'http.request.method'), 'GET');
    assert.equal(attr(span.attributes, 'http.route'), '/shop/orders/{id}');
    assert.equal(attr(span.attributes, 'http.response.status_code'), 200);
    assert.equal(attr(span.attributes, 'url.full'), `http://127.0.0.1:${gw.httpPort}/shop/orders/42`, 'without the query');
    assert.equal(attr(span.attributes, 'gatehouse.api'), 'shop');
    assert.equal(attr(span.attributes, 'gatehouse.operation'), 'get-order');
    assert.equal(attr(resource, 'service.name'), 'gatehouse');
    assert.ok(BigInt(span.endTimeUnixNano) >= BigInt(span.startTimeUnixNano));
    // The span the backend was told is its parent is the gateway's server span.
    const seen = backend.seen.find((s) => s.url === '/v1/orders/42?key=secret');
    assert.equal(seen?.headers.traceparent, `00-${TRACE}-${span.spanId}-01`);

    const call = clientSpan('otlp-1')!.span;
    assert.equal(call.traceId, TRACE);
    assert.equal(call.parentSpanId, span.spanId);
    assert.notEqual(call.spanId, span.spanId);
    assert.equal(call.name, 'GET /v1/orders/{id}');
    assert.equal(attr(call.attributes, 'server.port'), backend.port);
    assert.equal(attr(call.attributes, 'http.response.status_code'), 200);
    assert.ok(receiver.contentTypes.has('application/json'), `JSON exports: ${[...receiver.contentTypes].join(', ')}`);
  });

  test('an untraced request: a new trace, a root span; a failed backend call: error status and an exception event', async () => {
    assert.equal((await send(gw.url, '/down/x', { headers: { 'x-request-id': 'otlp-2' } })).status, 502);
    await waitFor('the spans of the failed request', () => serverSpan('otlp-2') !== undefined && clientSpan('otlp-2') !== undefined, 15_000);
    const span = serverSpan('otlp-2')!.span;
    assert.match(span.traceId, /^[0-9a-f]{32}$/);
    assert.notEqual(span.traceId, TRACE);
    assert.ok(!span.parentSpanId, 'a trace the gateway started: its span is the root');
    assert.equal(span.status?.code, STATUS_ERROR);
    const event = span.events?.find((e) => e.name === 'exception');
    assert.equal(attr(event?.attributes, 'exception.type'), 'BackendError');
    assert.equal(attr(event?.attributes, 'gatehouse.reason'), 'unreachable');
    const call = clientSpan('otlp-2')!.span;
    assert.equal(call.status?.code, STATUS_ERROR);
    assert.equal(attr(call.attributes, 'error.type'), 'unreachable');
  });

  test('request metrics: a duration histogram by method, status, route, API and operation', async () => {
    await waitFor(
      'the request duration metric',
      () => receiver.metrics.some((m) => m.name === 'http.server.request.duration' && m.points.some((p) => attr(p.attributes, 'gatehouse.operation') === 'get-order')),
      15_000,
    );
    const points = receiver.metrics.filter((m) => m.name === 'http.server.request.duration').flatMap((m) => m.points);
    const shop = points.find((p) => attr(p.attributes, 'gatehouse.api') === 'shop')!;
    assert.equal(attr(shop.attributes, 'http.route'), '/shop/orders/{id}');
    assert.equal(attr(shop.attributes, 'http.response.status_code'), 200);
    assert.ok(Number(shop.count) >= 1);
    assert.ok(receiver.metrics.some((m) => m.name === 'http.client.request.duration'));
    assert.ok(await metricValue(gw, /^gatehouse_otlp_exported_total (\d+)$/m) >= 4);
  });
});

describe('OTLP export: a collector away or stuck costs the requests nothing', () => {
  test('refused connections: every request answered, the spans counted as send-failed', async () => {
    const backend = await startRecordingBackend(() => ({ body: 'ok' }));
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const refusedPort = (closed.address() as AddressInfo).port;
    await closeServer(closed);
    const config = writeConfig(tempDir(), 'gateway.yaml', `version: 1\napis:\n  - { id: up, pathPrefix: /up, backend: { url: "http://127.0.0.1:${backend.port}" } }\n`);
    const gw = await startGatewayProcess({ config, env: { GATEHOUSE_OTLP_ENDPOINT: `http://127.0.0.1:${refusedPort}`, GATEHOUSE_OTLP_SEND_INTERVAL_MS: '50' } });
    try {
      for (let i = 0; i < 20; i++) assert.equal((await send(gw.url, `/up/${i}`)).status, 200);
      await waitForAsync('the failed exports counted', async () => (await metricValue(gw, /^gatehouse_otlp_dropped_total\{reason="send-failed",signal="traces"\} (\d+)$/m)) >= 1, 30_000);
      await gw.waitForLog((l) => l.msg === 'could not export spans to the OTLP collector', 5000);
    } finally {
      await gw.stop();
      await closeServer(backend.server);
    }
  });

  test('a collector that never answers: past the queue limit requests\' spans are dropped and counted, requests stay fast', async () => {
    const backend = await startRecordingBackend(() => ({ body: 'ok' }));
    const sockets = new Set<Socket>();
    const stuck = createServer(() => undefined);
    stuck.on('connection', (s) => sockets.add(s));
    await new Promise<void>((resolve) => stuck.listen(0, '127.0.0.1', resolve));
    const config = writeConfig(tempDir(), 'gateway.yaml', `version: 1\napis:\n  - { id: up, pathPrefix: /up, backend: { url: "http://127.0.0.1:${backend.port}" } }\n`);
    const gw = await startGatewayProcess({
      config,
      env: {
        GATEHOUSE_OTLP_ENDPOINT: `http://127.0.0.1:${(stuck.address() as AddressInfo).port}`,
        GATEHOUSE_OTLP_QUEUE_LIMIT: '5',
        GATEHOUSE_OTLP_BATCH_SIZE: '1',
        GATEHOUSE_OTLP_SEND_INTERVAL_MS: '10',
      },
    });
    try {
      const started = performance.now();
      for (let i = 0; i < 30; i++) assert.equal((await send(gw.url, `/up/${i}`)).status, 200);
      const took = performance.now() - started;
      // Two exports hang, five requests wait: the other 23 are dropped at once.
      const dropped = await metricValue(gw, /^gatehouse_otlp_dropped_total\{reason="queue-full",signal="traces"\} (\d+)$/m);
      assert.ok(dropped >= 20 && dropped <= 28, `${dropped} dropped`);
      assert.equal(await metricValue(gw, /^gatehouse_otlp_queued (\d+)$/m), 5);
      assert.ok(took < 10_000, `30 requests took ${Math.round(took)} ms`);
    } finally {
      await gw.stop();
      for (const s of sockets) s.destroy();
      await closeServer(stuck);
      await closeServer(backend.server);
    }
  });

  test('a bad endpoint stops the start, naming the variable', async () => {
    for (const [endpoint, problem] of [
      ['collector:4318', /is not a URL|is a collector: URL/],
      ['grpc://127.0.0.1:4317', /OTLP\/HTTP/],
      ['http://user:pw@127.0.0.1:4318', /credentials/],
    ] as const) {
      const gw = startGatewayProcess({ env: { GATEHOUSE_OTLP_ENDPOINT: endpoint }, startTimeoutMs: 15_000 });
      await assert.rejects(gw, (err: Error) => err.message.includes('GATEHOUSE_OTLP_ENDPOINT') && problem.test(err.message), endpoint);
    }
  });
});
