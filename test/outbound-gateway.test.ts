// send-request, send-one-way-request, retry and wait in a real gateway process: a real backend and a real outbound
// service on 127.0.0.1 (which records every call, answers slowly or hugely on demand, and fails a given number of
// times), real compiled policies (chain-probe reads the stored response through the ABI's VARIABLE field), and the
// hostile cases: a host the entry does not grant, a response far over the cap, a retry whose condition always holds.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Agent } from 'undici';
import { buildFixture } from './support/policies.ts';
import { send as sendTo, startRecordingBackend, type RecordingBackend } from './support/requests.ts';
import { startGatewayProcess, stopAll, tempDir, writeConfig, type GatewayProcess } from './support/gateway-process.ts';

interface Call {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** The service send-request calls: records each call, and the most calls it had open at once. */
interface OutboundService {
  server: Server;
  port: number;
  calls: Call[];
  maxOpen: number;
}

async function startOutboundService(): Promise<OutboundService> {
  const service: OutboundService = { server: null as unknown as Server, port: 0, calls: [], maxOpen: 0 };
  let open = 0;
  const failures = new Map<string, number>();
  service.server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url!, 'http://x');
      service.calls.push({ method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      open++;
      service.maxOpen = Math.max(service.maxOpen, open);
      const done = (status: number, body: string | Buffer, type = 'application/json') => {
        open--;
        res.writeHead(status, { 'content-type': type, 'x-service': 'outbound' });
        res.end(body);
      };
      switch (url.pathname) {
        case '/token':
          return done(200, JSON.stringify({ access_token: 'tok-123', scope: 'read', echo: Buffer.concat(chunks).toString('utf8') }));
        case '/huge':
          // 5 MiB, announced: refused at its head.
          return done(200, Buffer.alloc(5 * 1024 * 1024, 0x61), 'text/plain');
        case '/big':
          // 100 KiB: under the HTTP effect's 1 MiB, over the 16 KiB a response variable holds by default.
          return done(200, Buffer.alloc(100 * 1024, 0x62), 'text/plain');
        case '/flaky': {
          // Fails `fail` times for each key, then answers 200.
          const key = url.searchParams.get('key') ?? '';
          const seen = failures.get(key) ?? 0;
          failures.set(key, seen + 1);
          return done(seen < Number(url.searchParams.get('fail') ?? 0) ? 503 : 200, JSON.stringify({ try: seen + 1 }));
        }
        case '/always-fails':
          return done(500, '{}');
        case '/slow':
          return void setTimeout(() => done(200, JSON.stringify({ slow: true })), Number(url.searchParams.get('ms') ?? 300));
        default:
          return done(404, '{}');
      }
    });
  });
  await new Promise<void>((r) => service.server.listen(0, '127.0.0.1', r));
  service.port = (service.server.address() as AddressInfo).port;
  return service;
}

let backend: RecordingBackend;
let service: OutboundService;
let gateway: GatewayProcess;
const agent = new Agent({ connections: 4 });

function config(): string {
  const target = `http://127.0.0.1:${service.port}`;
  const api = (id: string, inbound: string, extra = '') => `
  - id: ${id}
    pathPrefix: /${id}
    backend: { url: "http://127.0.0.1:${backend.port}" }
    policies:
      inbound:
${inbound}${extra}`;
  return `
version: 1
namedValues:
  service-token: { value: s3cret-service-token, secret: true }
  legacy-password: { value: open sesame, secret: true }
apis:${api(
    'send',
    `        - send-request:
            url: "${target}/token"
            method: POST
            headers:
              authorization: "Bearer {{service-token}}"
              x-caller: { expr: "request.headers[?'x-caller'].orValue('nobody')" }
            body: { expr: "'for ' + request.path" }
            responseVariable: token
        - policy: set-header
          config: { name: x-token, value: { expr: "responses.token.json.access_token + '/' + string(responses.token.status)" } }
        - policy: set-header
          config: { name: x-token-type, value: { expr: "responses.token.headers['content-type']" } }
        - module: ./chain-probe.wasm
          config: { copyVarToHeader: token }
`,
  )}${api(
    'copy',
    `        - send-request:
            mode: copy
            url: "${target}/token"
            responseVariable: copied
        - policy: set-header
          config: { name: x-echo, value: { expr: "responses.copied.json.echo" } }
`,
  )}${api(
    'computed',
    `        - send-request:
            url: { expr: "'${target}/token?for=' + request.query[?'who'].orValue('x')" }
            responseVariable: token
          grants: { http: { allowedHosts: ["127.0.0.1:${service.port}"] } }
        - policy: set-header
          config: { name: x-token, value: { expr: "responses.token.json.access_token" } }
`,
  )}${api(
    'ungranted',
    `        - send-request:
            url: { expr: "'http://127.0.0.1:${backend.port}/secret-admin'" }
            responseVariable: stolen
          grants: { http: { allowedHosts: ["127.0.0.1:${service.port}"] } }
`,
    `
      on-error:
        - policy: set-header
          config: { name: x-last-error, value: { expr: "lastError.source + '/' + lastError.reason + '/' + lastError.policy" } }
`,
  )}${api(
    'huge',
    `        - send-request:
            url: "${target}/huge"
            responseVariable: huge
`,
    `
      on-error:
        - policy: set-header
          config: { name: x-last-error, value: { expr: "lastError.reason + ': ' + lastError.message" } }
`,
  )}${api(
    'big',
    `        - send-request:
            url: "${target}/big"
            responseVariable: big
            ignoreError: true
        - policy: set-header
          config: { name: x-had-big, value: { expr: "string('big' in responses) + '/' + string('big' in variables)" } }
        - send-request:
            url: "${target}/big"
            responseVariable: bigger
            maxResponseBytes: 200000
        - policy: set-header
          config: { name: x-bigger, value: { expr: "string(size(responses.bigger.body))" } }
`,
  )}${api(
    'retry',
    `        - retry:
            condition: "responses.flaky.status >= 500"
            count: 5
            interval: 0.01
            policies:
              - send-request:
                  url: { expr: "'${target}/flaky?fail=2&key=' + requestId" }
                  responseVariable: flaky
                grants: { http: { allowedHosts: ["127.0.0.1:${service.port}"] } }
        - policy: set-header
          config: { name: x-flaky, value: { expr: "string(responses.flaky.status) + ' after ' + string(responses.flaky.json['try'])" } }
`,
  )}${api(
    'retry-bounded',
    `        - retry:
            condition: "true"
            count: 3
            interval: 0
            policies:
              - send-request:
                  url: "${target}/always-fails"
                  responseVariable: failing
`,
  )}${api(
    'wait-all',
    `        - wait:
            for: all
            policies:
              - send-request: { url: "${target}/slow?ms=300&n=1", responseVariable: one }
              - send-request: { url: "${target}/slow?ms=300&n=2", responseVariable: two }
        - policy: set-header
          config: { name: x-both, value: { expr: "string('one' in responses && 'two' in responses)" } }
`,
  )}${api(
    'wait-any',
    `        - wait:
            for: any
            policies:
              - send-request: { url: "${target}/slow?ms=3000&n=late", responseVariable: late }
              - send-request: { url: "${target}/token", responseVariable: early }
        - policy: set-header
          config: { name: x-first, value: { expr: "string('early' in responses) + '/' + string('late' in responses)" } }
`,
  )}${api(
    'one-way',
    `        - send-one-way-request:
            url: "${target}/token?one-way=1"
            method: PUT
            body: { expr: "'audit ' + requestId" }
`,
  )}${api(
    'body',
    `        - set-body:
            template: liquid
            contentType: application/json
            value: '{"name": "{{ body.first }} {{ body.last | upcase }}", "method": "{{ context.Request.Method }}", "tier": "{{ context.Request.Headers["x-tier"] | default: "free" }}"}'
        - policy: authentication-basic
          config: { username: Aladdin, password: "{{legacy-password}}" }
        - trace:
            source: body-api
            severity: information
            message: { expr: "'rewrote ' + request.path" }
            metadata: { tier: { expr: "request.headers[?'x-tier'].orValue('free')" } }
`,
    `
      outbound:
        - set-body:
            value: { expr: "'status was ' + string(response.status)" }
            contentType: text/plain
`,
  )}${api(
    'explode',
    `        - set-body:
            template: liquid
            value: "{% for i in (1..100000000) %}{% for j in (1..100000000) %}x{% endfor %}{% endfor %}"
`,
    `
      on-error:
        - policy: set-header
          config: { name: x-last-error, value: { expr: "lastError.reason" } }
`,
  )}`;
}

before(async () => {
  backend = await startRecordingBackend(({ url }) => ({ status: 200, headers: { 'content-type': 'text/plain' }, body: `saw ${url}` }));
  service = await startOutboundService();
  const dir = tempDir();
  writeFileSync(join(dir, 'chain-probe.wasm'), await buildFixture('chain-probe'));
  gateway = await startGatewayProcess({ config: writeConfig(dir, 'gateway.yaml', config()) });
});

after(() => stopAll(gateway, agent, [backend?.server, service?.server]));

const send = (path: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}) =>
  sendTo(gateway.url, path, { ...options, dispatcher: agent });

const callsTo = (path: string) => service.calls.filter((c) => c.url.startsWith(path));

describe('send-request in a gateway', () => {
  test('computed headers and body go out; the response is read by expressions (status, headers, JSON) and by a module (VARIABLE)', async () => {
    const before = service.calls.length;
    const res = await send('/send/orders', { headers: { 'x-caller': 'alice' } });
    assert.equal(res.status, 200, res.body);
    const call = service.calls[before]!;
    assert.equal(call.method, 'POST');
    assert.equal(call.url, '/token');
    assert.equal(call.headers.authorization, 'Bearer s3cret-service-token', 'a secret named value in a header');
    assert.equal(call.headers['x-caller'], 'alice');
    assert.equal(call.body, 'for /send/orders');
    const seen = backend.seen.at(-1)!;
    assert.equal(seen.headers['x-token'], 'tok-123/200');
    assert.equal(seen.headers['x-token-type'], 'application/json');
    const stored = JSON.parse(String(seen.headers['x-var-token'])) as { status: number; headers: Record<string, string>; body: string };
    assert.equal(stored.status, 200);
    assert.equal(stored.headers['x-service'], 'outbound');
    assert.equal(JSON.parse(stored.body).access_token, 'tok-123');
  });

  test('mode copy sends the request\'s method and headers (not its Host)', async () => {
    const before = service.calls.length;
    const res = await send('/copy/x', { method: 'DELETE', headers: { 'x-copied': 'yes' } });
    assert.equal(res.status, 200, res.body);
    const call = service.calls[before]!;
    assert.equal(call.method, 'DELETE');
    assert.equal(call.headers['x-copied'], 'yes');
    assert.equal(call.headers.host, `127.0.0.1:${service.port}`);
  });

  test('a computed URL reaches what the entry grants', async () => {
    const res = await send('/computed/a?who=bob');
    assert.equal(res.status, 200, res.body);
    assert.equal(backend.seen.at(-1)!.headers['x-token'], 'tok-123');
    assert.equal(callsTo('/token?for=bob').length, 1);
  });

  test('hostile: a computed URL to a host the grant does not name is refused, and on-error sees lastError', async () => {
    const backendCalls = backend.seen.length;
    const res = await send('/ungranted/a');
    assert.equal(res.status, 500);
    assert.equal(res.headers['x-last-error'], 'policy/capability/api:ungranted/inbound/0');
    assert.equal(backend.seen.length, backendCalls, 'neither the target nor the backend was called');
  });

  test('hostile: a 5 MiB response is refused at its head; a 100 KiB one is over the variable cap unless allowed', async () => {
    const huge = await send('/huge/a');
    assert.equal(huge.status, 500);
    assert.match(String(huge.headers['x-last-error']), /^outbound: policy api:huge\/inbound\/0 failed \(outbound\): response larger than 1048576 bytes/);
    const big = await send('/big/a');
    assert.equal(big.status, 200, big.body);
    const seen = backend.seen.at(-1)!;
    assert.equal(seen.headers['x-had-big'], 'false/false', 'ignoreError: no response is stored');
    assert.equal(seen.headers['x-bigger'], String(100 * 1024));
  });
});

describe('retry in a gateway', () => {
  test('retries while the condition holds, then goes on with the last response', async () => {
    const res = await send('/retry/a');
    assert.equal(res.status, 200, res.body);
    assert.equal(backend.seen.at(-1)!.headers['x-flaky'], '200 after 3');
  });

  test('hostile: a condition that always holds stops after count retries', async () => {
    const before = callsTo('/always-fails').length;
    const res = await send('/retry-bounded/a');
    assert.equal(res.status, 200, res.body);
    assert.equal(callsTo('/always-fails').length - before, 4, 'the first try and 3 retries');
  });
});

describe('wait in a gateway', () => {
  test('for all: the calls are made side by side, and both responses are there after', async () => {
    service.maxOpen = 0;
    const res = await send('/wait-all/a');
    assert.equal(res.status, 200, res.body);
    assert.equal(backend.seen.at(-1)!.headers['x-both'], 'true');
    assert.equal(service.maxOpen, 2, 'both calls were open at once');
  });

  test('for any: the chain goes on after the first answer', async () => {
    const res = await send('/wait-any/a');
    assert.equal(res.status, 200, res.body);
    assert.equal(backend.seen.at(-1)!.headers['x-first'], 'true/false');
  });
});

describe('send-one-way-request in a gateway', () => {
  test('the call is made and the chain does not wait for it', async () => {
    const res = await send('/one-way/a');
    assert.equal(res.status, 200, res.body);
    for (let i = 0; i < 100 && callsTo('/token?one-way=1').length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    const call = callsTo('/token?one-way=1')[0]!;
    assert.equal(call.method, 'PUT');
    assert.match(call.body, /^audit /);
  });
});

describe('set-body, authentication-basic and trace in a gateway', () => {
  test('a Liquid template rewrites the request body from its JSON; an expression sets the response body', async () => {
    const res = await send('/body/a', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-tier': 'gold' },
      body: JSON.stringify({ first: 'Ada', last: 'Lovelace' }),
    });
    assert.equal(res.status, 200, res.body);
    const seen = backend.seen.at(-1)!;
    assert.deepEqual(JSON.parse(seen.body), { name: 'Ada LOVELACE', method: 'POST', tier: 'gold' });
    assert.equal(seen.headers['content-type'], 'application/json');
    assert.equal(seen.headers['content-length'], String(Buffer.byteLength(seen.body)));
    assert.equal(res.body, 'status was 200');
    assert.equal(res.headers['content-type'], 'text/plain');
    assert.equal(res.headers['content-length'], String(res.body.length));
  });

  test('authentication-basic: the backend gets the credentials, with the password from a secret named value', async () => {
    await send('/body/a', { method: 'POST', headers: { authorization: 'Bearer caller', 'content-type': 'application/json' }, body: '{}' });
    assert.equal(backend.seen.at(-1)!.headers.authorization, 'Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==');
  });

  test('trace: a record in the access log line of the request', async () => {
    const res = await send('/body/traced', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    const line = await gateway.waitForLog((l) => l.msg === 'request' && l.requestId === res.headers['x-request-id']);
    assert.deepEqual(line.traces, [
      { binding: 'api:body/inbound/2', source: 'body-api', severity: 'information', message: 'rewrote /body/traced', metadata: { tier: 'free' } },
    ]);
  });

  test('hostile: a template that would build a huge body is stopped by its bounds, as a policy failure', async () => {
    const res = await send('/explode/a');
    assert.equal(res.status, 500);
    assert.equal(res.headers['x-last-error'], 'expression');
  });
});
