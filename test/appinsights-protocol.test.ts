// The records the gateway's thread hands its Application Insights exporter thread (runtime/telemetry/appinsights-protocol.ts),
// written as bytes and read back: every kind of record, every field, texts that are not ASCII, nulls, a backend with
// no status, and a batch larger than the writer's first buffer.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BatchWriter, readRecords, writeLoneFailure, writeMetric, writeRequest, type RecordBatch } from '../runtime/telemetry/appinsights-protocol.ts';
import type { MetricEmission } from '../runtime/telemetry/custom-metrics.ts';
import type { FailureRecord, RequestRecord, RequestRef } from '../runtime/telemetry/request-telemetry.ts';

const trap: FailureRecord = { source: 'policy', reason: 'trap', message: 'unreachable exécuté — 🙃', policy: 'api:shop/inbound/0', failedOpen: true };
const refused: FailureRecord = { source: 'backend', reason: 'unreachable', message: 'connect ECONNREFUSED', policy: null, failedOpen: false };

function request(n: number): RequestRecord {
  return {
    requestId: `req-${n}`,
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    spanId: '00f067aa0ba902b7',
    parentSpanId: n % 2 === 0 ? null : 'b7ad6b7169203331',
    method: 'POST',
    route: n % 3 === 0 ? null : '/shop/orders/{id}',
    url: `https://example.com/shop/orders/${n}/ünïcode`,
    api: 'shop',
    operation: 'get-order',
    status: 502,
    startTime: 1_765_000_000_000 + n + 0.25,
    durationMs: 12.5,
    backend:
      n % 4 === 0
        ? null
        : {
            method: 'GET',
            origin: 'http://127.0.0.1:9101',
            path: '/v2/orders',
            pathTemplate: '/v2/orders/{id}',
            startTime: 1_765_000_000_001,
            durationMs: 3.75,
            status: n % 4 === 1 ? null : 200,
            failure: n % 4 === 1 ? refused : null,
          },
    failures: n % 2 === 0 ? [] : [trap, refused],
  };
}

type Read = ['request', RequestRecord] | ['failure', FailureRecord, RequestRef, number] | ['metric', MetricEmission];

function readAll(batch: RecordBatch): { records: number; read: Read[] } {
  const read: Read[] = [];
  const records = readRecords(batch, {
    request: (r) => read.push(['request', r]),
    failure: (f, about, time) => read.push(['failure', f, about, time]),
    metric: (e) => read.push(['metric', e]),
  });
  return { records, read };
}

describe('Application Insights records between the threads', () => {
  test('every kind of record and every field comes back as written, from a batch that outgrew its first buffer', () => {
    const writer = new BatchWriter(16);
    const written: Read[] = [];
    const about: RequestRef = { requestId: 'req-late', api: 'shop', operation: 'get-order', traceId: '4bf92f3577b34da6a3ce929d0e0e4736', parentSpanId: null };
    const metric: MetricEmission = { name: 'orders_total', value: 2.5, dimensions: [['region', 'eu-west'], ['café', 'naïve']] };
    for (let n = 0; n < 300; n++) {
      writeRequest(writer, request(n));
      written.push(['request', request(n)]);
      if (n % 50 === 0) {
        writeLoneFailure(writer, trap, about, 1_765_000_000_123);
        written.push(['failure', trap, about, 1_765_000_000_123]);
        writeMetric(writer, metric);
        written.push(['metric', metric]);
      }
    }
    const batch = writer.take();
    assert.ok(batch.bytes.byteLength > 16 && batch.length <= batch.bytes.byteLength);
    const { records, read } = readAll(batch);
    assert.equal(records, written.length);
    assert.deepEqual(read, written);
  });

  test('take hands over what was written and starts an empty batch', () => {
    const writer = new BatchWriter();
    writeMetric(writer, { name: 'first', value: 1, dimensions: [] });
    const first = writer.take();
    writeMetric(writer, { name: 'second', value: 2, dimensions: [] });
    const second = writer.take();
    assert.notEqual(first.bytes, second.bytes, 'a new buffer: the last one may have been transferred');
    assert.deepEqual(readAll(first).read, [['metric', { name: 'first', value: 1, dimensions: [] }]]);
    assert.deepEqual(readAll(second).read, [['metric', { name: 'second', value: 2, dimensions: [] }]]);
    assert.deepEqual(readAll(writer.take()), { records: 0, read: [] });
  });

  test('a batch with a record tag it does not know is refused, naming the tag', () => {
    const writer = new BatchWriter();
    writer.num(7);
    assert.throws(() => readAll(writer.take()), /unknown record tag 7 at byte 0/);
  });
});
