// Four policies written as an author would from sdk/README.md and docs/tutorial.md (test/fixtures/policies/author-*):
// their offline cases pass under the SDK's strict runner, and a real gateway serving them as `source:` policies in
// front of a real backend has each one's effect on what the backend receives and what the client gets.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { rmSync } from 'node:fs';
import { Agent, request } from 'undici';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { runPolicyTests } from '../sdk/cli/policy-test.ts';
import { startGatewayProcess, stopAll, tempDir, writeConfig, type GatewayProcess } from './support/gateway-process.ts';

const POLICIES = ['claim-to-header', 'json-body-guard', 'hmac-signer', 'per-user-counter'];
const folder = (name: string) => join(repoRoot(), 'test', 'fixtures', 'policies', `author-${name}`);

/** Compiling four policies takes seconds, more on a busy machine. */
const BUILD_MS = 240_000;

/** A bearer token with these claims (unsigned: the policies read claims without checking them). */
function bearer(claims: Record<string, unknown>): string {
  return `Bearer e30.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`;
}

describe('the four author policies offline', () => {
  for (const name of POLICIES) {
    test(`${name}: every case of policy.test.json passes`, { timeout: BUILD_MS }, async () => {
      const run = await runPolicyTests(folder(name));
      assert.ok(run.results.length >= 4, `${name} has its cases (got ${run.results.length})`);
      assert.deepEqual(
        run.results.filter((r) => !r.ok).map((r) => `${r.name}: ${r.problems.join('; ')}`),
        [],
      );
      assert.equal(run.failed, 0);
    });
  }
});

interface Received {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

describe('the four author policies in a gateway', () => {
  const dir = tempDir('gatehouse-author-policies-');
  const agent = new Agent({ keepAliveTimeout: 1000 });
  const received: Received[] = [];
  let backend: Server | undefined;
  let gateway: GatewayProcess | undefined;

  before(async () => {
    backend = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push({ method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks) });
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('ok');
      });
    });
    await new Promise<void>((done) => backend!.listen(0, '127.0.0.1', done));
    const port = (backend.address() as AddressInfo).port;
    const api = (id: string, policy: string, extra: string[], backendPath = '', phase = 'inbound') => [
      `  - id: ${id}`,
      `    pathPrefix: /${id}`,
      `    backend: { url: "http://127.0.0.1:${port}${backendPath}" }`,
      '    policies:',
      `      ${phase}:`,
      `        - source: ${JSON.stringify(folder(policy))}`,
      ...extra.map((l) => `          ${l}`),
    ];
    const config = writeConfig(
      dir,
      'gateway.yaml',
      [
        'version: 1',
        'namedValues:',
        '  hmac-key: { value: "k-3f9a0c7e", secret: true }',
        'apis:',
        ...api('claim', 'claim-to-header', ['config: { claim: sub, header: x-user }']),
        ...api('guard', 'json-body-guard', ['config: { maxBytes: 64 }']),
        ...api('sign', 'hmac-signer', ['config: { secret: "{{hmac-key}}" }'], '/up/', 'backend'),
        ...api('count', 'per-user-counter', ['config: { limit: 2, periodSeconds: 600 }', 'grants: { counters: true }']),
        '',
      ].join('\n'),
    );
    gateway = await startGatewayProcess({ config, startTimeoutMs: BUILD_MS });
  });

  after(async () => {
    await stopAll(gateway, agent, [backend]);
    rmSync(dir, { recursive: true, force: true });
  });

  async function call(method: string, path: string, headers: Record<string, string> = {}, body?: string) {
    const before = received.length;
    const res = await request(`${gateway!.url}${path}`, { method: method as 'GET', headers, body, dispatcher: agent });
    const text = await res.body.text();
    return { status: res.statusCode, headers: res.headers, body: text, reached: received.slice(before) };
  }

  test('claim-to-header: the claim reaches the backend as a header; a spoofed header is dropped; a bad claim is a 400', { timeout: BUILD_MS }, async () => {
    const ok = await call('GET', '/claim/me', { authorization: bearer({ sub: 'alice' }) });
    assert.equal(ok.status, 200);
    assert.equal(ok.reached.length, 1);
    assert.equal(ok.reached[0]!.headers['x-user'], 'alice');

    const spoofed = await call('GET', '/claim/me', { 'x-user': 'admin' });
    assert.equal(spoofed.status, 200);
    assert.equal(spoofed.reached[0]!.headers['x-user'], undefined);

    const bad = await call('GET', '/claim/me', { authorization: bearer({ sub: 'eve\r\nx-admin: 1' }) });
    assert.equal(bad.status, 400);
    assert.match(bad.headers['content-type'] as string, /application\/problem\+json/);
    assert.match(bad.body, /claim sub cannot be sent as a header/);
    assert.equal(bad.reached.length, 0, 'the backend never sees the request');
  });

  test('json-body-guard: a JSON body within the limit passes; a larger one gets 413, one that is not JSON 400', { timeout: BUILD_MS }, async () => {
    const small = JSON.stringify({ item: 'book', qty: 2 });
    const ok = await call('POST', '/guard/orders', { 'content-type': 'application/json' }, small);
    assert.equal(ok.status, 200);
    assert.equal(ok.reached[0]!.body.toString(), small);

    const large = JSON.stringify({ item: 'x'.repeat(100) });
    const tooLarge = await call('POST', '/guard/orders', { 'content-type': 'application/json' }, large);
    assert.equal(tooLarge.status, 413);
    assert.match(tooLarge.body, new RegExp(`the body has ${large.length} bytes, more than 64`));
    assert.equal(tooLarge.reached.length, 0);

    const broken = await call('POST', '/guard/orders', { 'content-type': 'application/json' }, '{"item":');
    assert.equal(broken.status, 400);
    assert.match(broken.body, /not valid JSON/);
    assert.equal(broken.reached.length, 0);
  });

  test('hmac-signer: the signature the backend receives verifies over the method, path and body it received', { timeout: BUILD_MS }, async () => {
    const body = JSON.stringify({ amount: 12.5, to: 'bob' });
    const res = await call('POST', '/sign/payments/7?trace=1', { 'content-type': 'application/json' }, body);
    assert.equal(res.status, 200);
    const got = res.reached[0]!;
    assert.equal(got.url, '/up/payments/7?trace=1', 'the backend URL path /up/ is put before the path below /sign');
    assert.equal(got.body.toString(), body);
    const path = got.url.split('?')[0]!;
    const expected = createHmac('sha256', 'k-3f9a0c7e').update(`${got.method}\n${path}\n`).update(got.body).digest('hex');
    assert.equal(got.headers['x-signature'], expected);

    // A request without a body is signed too, and differently.
    const bare = await call('GET', '/sign/payments/7');
    const g = bare.reached[0]!;
    assert.equal(g.headers['x-signature'], createHmac('sha256', 'k-3f9a0c7e').update(`GET\n/up/payments/7\n`).digest('hex'));
    // The secret named value never reaches a log line.
    assert.ok(!JSON.stringify(gateway!.logs).includes('k-3f9a0c7e'), 'the secret is not logged');
  });

  test('per-user-counter: each user gets 2 calls then 429, counted apart, with the calls left in a header', { timeout: BUILD_MS }, async () => {
    const alice1 = await call('GET', '/count/x', { 'x-user': 'alice' });
    const alice2 = await call('GET', '/count/x', { 'x-user': 'alice' });
    const alice3 = await call('GET', '/count/x', { 'x-user': 'alice' });
    const bob1 = await call('GET', '/count/x', { 'x-user': 'bob' });
    assert.deepEqual(
      [alice1, alice2, alice3, bob1].map((r) => [r.status, r.headers['x-calls-remaining'], r.reached.length]),
      [
        [200, '1', 1],
        [200, '0', 1],
        [429, '0', 0],
        [200, '1', 1],
      ],
    );
    assert.match(alice3.body, /more than 2 calls/);
    const anonymous = await call('GET', '/count/x');
    assert.equal(anonymous.status, 401);
  });
});
