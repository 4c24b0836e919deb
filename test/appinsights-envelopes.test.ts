// The exporter thread writes Application Insights envelopes byte by byte into shared buffers
// (runtime/telemetry/appinsights-envelopes.ts). These hold what that must keep: strings escaped exactly as JSON.stringify
// escapes them, with every character past U+007F as a \u escape (a character is a byte); an envelope that does not fit
// in its buffer's rest moved whole into a new one, the envelopes already written left intact; the SDK's time spans.
// test/appinsights-sdk-parity.test.ts holds the envelopes' shapes against the SDK's own.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EnvelopeBytes, EnvelopeWriter, batchBody, timeSpan } from '../runtime/telemetry/appinsights-envelopes.ts';
import type { RequestRecord } from '../runtime/telemetry/request-telemetry.ts';
import { EnvelopeCounter } from '../scripts/bench/ingestion-endpoint.ts';

/** The reference: JSON.stringify, then every code unit past U+007F as \uXXXX. */
function expectedJson(value: string): string {
  return JSON.stringify(value).replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

test('strings are written as JSON.stringify writes them, in ASCII', () => {
  const every = Array.from({ length: 0x80 }, (_, c) => String.fromCharCode(c)).join('');
  const samples = [
    '',
    'plain text',
    every,
    'quote " backslash \\ slash /',
    'ünïcødé € 😀 中文',
    '\ud800 lone high, lone low \udc00, reversed \udc00\ud800',
    '\u2028\u2029\ufeff\uffff',
    'x'.repeat(10_000),
  ];
  const bytes = new EnvelopeBytes();
  for (const s of samples) {
    const written = bytes.str(s).end();
    assert.equal(written.toString('latin1'), expectedJson(s), `written as ${written.toString('latin1').slice(0, 80)}`);
    assert.ok(written.every((b) => b < 0x80), 'ASCII only');
    assert.equal(JSON.parse(written.toString('latin1')), s);
  }
});

function requestRecord(n: number, url: string): RequestRecord {
  return {
    requestId: `req-${n}`,
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    spanId: '00f067aa0ba902b7',
    parentSpanId: n % 2 === 0 ? null : 'b7ad6b7169203331',
    method: 'GET',
    route: '/shop/orders/{id}',
    url,
    api: 'shop',
    operation: 'get-order',
    status: 200,
    startTime: Date.UTC(2026, 11, 6, 8, 27, 58, 123),
    durationMs: 12.5,
    backend: { method: 'GET', origin: 'http://orders.test:8080', path: '/v1/orders/1', pathTemplate: '/v1/orders/{id}', startTime: Date.UTC(2026, 11, 6, 8, 27, 58, 124), durationMs: 10.25, status: 200, failure: null },
    failures: [],
  };
}

test('envelopes stay whole and unchanged when the writer moves to a new buffer', () => {
  const writer = new EnvelopeWriter({ instrumentationKey: '00000000-0000-4000-8000-000000000000', roleName: 'gatehouse', roleInstance: 'host', sdkVersion: 'gatehouse:test', samplingPercentage: 100 });
  const envelopes: Buffer[] = [];
  const urls: string[] = [];
  // Envelopes of about 1 KiB, then some of 100 KiB and one of 600 KiB (larger than a buffer), then small ones again:
  // the writer changes buffers many times, some in the middle of an envelope.
  for (let n = 0; n < 1200; n++) {
    const url = `http://gateway.test/shop/orders/${n}${n % 300 === 7 ? `?${'q'.repeat(100_000)}` : ''}${n === 600 ? 'ü'.repeat(300_000) : ''}`;
    urls.push(url);
    writer.request(requestRecord(n, url), envelopes);
  }
  assert.equal(envelopes.length, 2400, 'a request and its backend call each');
  const parsed = JSON.parse(batchBody(envelopes).toString('latin1')) as Array<{ name: string; data: { baseData: { url?: string; properties: { requestId: string } } } }>;
  assert.equal(parsed.length, 2400);
  for (let n = 0; n < 1200; n++) {
    const request = parsed[2 * n]!;
    const dependency = parsed[2 * n + 1]!;
    assert.equal(request.name, 'Microsoft.ApplicationInsights.Request');
    assert.equal(request.data.baseData.url, urls[n]);
    assert.equal(request.data.baseData.properties.requestId, `req-${n}`);
    assert.equal(dependency.name, 'Microsoft.ApplicationInsights.RemoteDependency');
    assert.equal(dependency.data.baseData.properties.requestId, `req-${n}`);
  }
  // Each envelope is one JSON text on its own as well (a partial answer's retry sends some alone).
  assert.equal((JSON.parse(envelopes[1200]!.toString('latin1')) as { data: { baseData: { url: string } } }).data.baseData.url, urls[600]);
});

test('time spans are the SDK\'s', () => {
  assert.equal(timeSpan(0), '00:00:00.000');
  assert.equal(timeSpan(-5), '00:00:00.000');
  assert.equal(timeSpan(Number.NaN), '00:00:00.000');
  assert.equal(timeSpan(12.5), '00:00:00.0125');
  assert.equal(timeSpan(1000), '00:00:01.000');
  assert.equal(timeSpan(0.0001), '00:00:00.0000001');
  assert.equal(timeSpan(61_234.5), '00:01:01.2345');
  assert.equal(timeSpan(3_600_000 * 25 + 1_234), '1.01:00:01.234');
  assert.equal(timeSpan(86_400_000 * 3 + 0.5), '3.00:00:00.0005');
});

test('the benchmark\'s ingestion endpoint counts envelopes whose type names straddle its chunks', () => {
  const types = ['Request', 'RemoteDependency', 'Exception', 'Metric'];
  const body = Buffer.from(
    JSON.stringify(Array.from({ length: 200 }, (_, n) => ({ ver: 1, name: `Microsoft.ApplicationInsights.${types[n % 4]}`, pad: 'x'.repeat(n % 37) }))),
  );
  for (const size of [1, 7, 31, 38, 39, 40, 64, 1000, body.length]) {
    const counter = new EnvelopeCounter();
    for (let at = 0; at < body.length; at += size) counter.add(body.subarray(at, at + size));
    counter.end();
    assert.deepEqual([counter.envelopes, counter.requests], [200, 50], `chunks of ${size} bytes`);
  }
});
