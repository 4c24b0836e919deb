// json-to-xml and xml-to-json at gateway level: a real gateway process, a real backend on 127.0.0.1 that records
// what it received, real requests. The policies' own cases run offline in builtin-policies.test.ts; this file checks
// what only a gateway shows: converted request bodies arriving whole at the backend with their new content type and
// length, converted response bodies reaching the client according to its Accept header, and a malformed XML request
// answered 400 without calling the backend.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Agent } from 'undici';
import { assertFramed, send as sendTo, startRecordingBackend, type RecordingBackend } from './support/requests.ts';
import { startGatewayProcess, stopAll, tempDir, writeConfig, type GatewayProcess } from './support/gateway-process.ts';

let backend: RecordingBackend;
let gateway: GatewayProcess;
const agent = new Agent({ connections: 4 });

const ORDER_JSON = '{"order":{"id":7,"note":"fish & chips <large>","lines":[{"sku":"A-1"},{"sku":"B-2"}]}}';
const ORDER_XML = '<?xml version="1.0"?><order id="7"><line sku="A-1">2</line><line sku="B-2">1</line></order>';

function config(): string {
  return `
version: 1
apis:
  - id: xml
    pathPrefix: /xml
    backend: { url: "http://127.0.0.1:${backend.port}" }
    operations:
      - id: get-order-json
        method: GET
        urlTemplate: /order.json
        policies:
          outbound:
            - policy: json-to-xml
              config: { rootElement: response }
      - id: get-order-xml
        method: GET
        urlTemplate: /order.xml
        policies:
          outbound:
            - policy: xml-to-json
      - id: post-xml
        method: POST
        urlTemplate: /orders
        policies:
          inbound:
            - policy: xml-to-json
      - id: post-json
        method: POST
        urlTemplate: /legacy
        policies:
          inbound:
            - policy: json-to-xml
              config: { rootElement: request }
`;
}

function startBackend(): Promise<RecordingBackend> {
  return startRecordingBackend(({ url }) => {
    if (url === '/order.json') {
      return { headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(ORDER_JSON) }, body: ORDER_JSON };
    }
    if (url === '/order.xml') {
      return { headers: { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(ORDER_XML) }, body: ORDER_XML };
    }
    return { headers: { 'content-type': 'text/plain' }, body: 'received' };
  });
}

before(async () => {
  backend = await startBackend();
  gateway = await startGatewayProcess({ config: writeConfig(tempDir(), 'gateway.yaml', config()) });
});

after(() => stopAll(gateway, agent, [backend?.server]));

const send = (path: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}) =>
  sendTo(gateway.url, path, { ...options, dispatcher: agent });

describe('json-to-xml and xml-to-json in a gateway', () => {
  test('json-to-xml in outbound: a client that accepts XML gets the JSON answer as XML, whole', async () => {
    const res = await send('/xml/order.json', { headers: { accept: 'application/xml' } });
    assert.equal(res.status, 200, res.body);
    assert.equal(res.headers['content-type'], 'application/xml; charset=utf-8');
    assert.equal(
      res.body,
      '<?xml version="1.0" encoding="utf-8"?><response><order><id>7</id><note>fish &amp; chips &lt;large&gt;</note>' +
        '<lines><sku>A-1</sku></lines><lines><sku>B-2</sku></lines></order></response>',
    );
    assertFramed(res);
    assert.match(String(res.headers['vary']), /Accept/);
  });

  test('json-to-xml in outbound: a client without an XML Accept gets the JSON as the backend sent it', async () => {
    const variants: Record<string, string>[] = [{}, { accept: 'application/json' }, { accept: '*/*' }];
    for (const headers of variants) {
      const res = await send('/xml/order.json', { headers });
      assert.equal(res.status, 200, res.body);
      assert.equal(res.headers['content-type'], 'application/json');
      assert.equal(res.body, ORDER_JSON);
      assert.match(String(res.headers['vary']), /Accept/);
    }
  });

  test('xml-to-json in outbound: a client that accepts JSON gets the XML answer as JSON', async () => {
    const res = await send('/xml/order.xml', { headers: { accept: 'application/json' } });
    assert.equal(res.status, 200, res.body);
    assert.equal(res.headers['content-type'], 'application/json; charset=utf-8');
    assert.deepEqual(JSON.parse(res.body), {
      order: { '@id': '7', line: [{ '@sku': 'A-1', '#text': '2' }, { '@sku': 'B-2', '#text': '1' }] },
    });
    assertFramed(res);
  });

  test('xml-to-json in inbound: the backend receives the XML request body as JSON, with its content type and length', async () => {
    const before = backend.seen.length;
    const sent = '<?xml version="1.0" encoding="utf-8"?>\n<order>\n  <item qty="2">tea &amp; cake</item>\n  <item qty="1">café</item>\n</order>\n';
    const res = await send('/xml/orders', { method: 'POST', headers: { 'content-type': 'application/xml' }, body: sent });
    assert.equal(res.status, 200, res.body);
    assert.equal(backend.seen.length, before + 1);
    const saw = backend.seen[before]!;
    const expected = '{"order":{"item":[{"@qty":"2","#text":"tea & cake"},{"@qty":"1","#text":"café"}]}}';
    assert.equal(saw.body, expected);
    assert.equal(saw.headers['content-type'], 'application/json; charset=utf-8');
    assert.equal(saw.headers['content-length'], String(Buffer.byteLength(expected)));
  });

  test('json-to-xml in inbound: the backend receives the JSON request body as XML', async () => {
    const before = backend.seen.length;
    const res = await send('/xml/legacy', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: '{"customer":{"@id":"c-1","name":"Zoë"},"tags":["a","b"]}',
    });
    assert.equal(res.status, 200, res.body);
    const saw = backend.seen[before]!;
    const expected =
      '<?xml version="1.0" encoding="utf-8"?><request><customer id="c-1"><name>Zoë</name></customer><tags>a</tags><tags>b</tags></request>';
    assert.equal(saw.body, expected);
    assert.equal(saw.headers['content-type'], 'application/xml; charset=utf-8');
    assert.equal(saw.headers['content-length'], String(Buffer.byteLength(expected)));
  });

  test('xml-to-json in inbound: malformed XML is answered 400 with a problem, and the backend is not called', async () => {
    const before = backend.seen.length;
    const res = await send('/xml/orders', { method: 'POST', headers: { 'content-type': 'application/xml' }, body: '<order><item></order>' });
    assert.equal(res.status, 400);
    assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
    const problem = JSON.parse(res.body) as { status: number; title: string; detail: string; requestId: string };
    assert.equal(problem.status, 400);
    assert.equal(problem.title, 'Bad Request');
    assert.equal(problem.detail, 'the body is not well-formed XML: mismatched end tag </order> (expected </item>) at line 1, column 14');
    assert.equal(problem.requestId, res.headers['x-request-id']);
    assert.equal(backend.seen.length, before, 'no backend was called');
  });

  test('xml-to-json in inbound: a DOCTYPE is refused with 400, and the backend is not called', async () => {
    const before = backend.seen.length;
    const res = await send('/xml/orders', {
      method: 'POST',
      headers: { 'content-type': 'text/xml' },
      body: '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
    });
    assert.equal(res.status, 400);
    assert.match(JSON.parse(res.body).detail, /DOCTYPE declaration is not allowed/);
    assert.equal(backend.seen.length, before, 'no backend was called');
  });
});
