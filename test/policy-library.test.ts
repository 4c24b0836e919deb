// The built-in policy library at gateway level: a real gateway process, a real backend on 127.0.0.1, real requests.
// Each policy's own cases (policies/<name>/policy.test.json) run offline in builtin-policies.test.ts; this file checks
// what only a gateway shows: configuration checked before anything runs, grants given to built-ins, headers set inbound
// reaching the client, paths reaching the backend, and CORS preflights routed to API-scope policies.

import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { startGatewayProcess, tempDir, writeConfig, type GatewayProcess } from './support/gateway-process.ts';
import { send } from './support/requests.ts';

let backend: Server;
let backendPort: number;
let gateway: GatewayProcess;
const seen: { url: string; headers: IncomingMessage['headers'] }[] = [];
const agent = new Agent({ connections: 4 });

function config(): string {
  return `
version: 1
apis:
  - id: shop
    pathPrefix: /shop
    backend: { url: "http://127.0.0.1:${backendPort}/base" }
    policies:
      inbound:
        - policy: cors
          config: { allowedOrigins: ["https://app.example.com"], allowedHeaders: [x-api-key], exposeHeaders: [x-request-id] }
        - policy: key-auth
          config:
            keys:
              - { id: alice, key: alice-key-0001 }
              - { id: bob, sha256: ${sha256('bob-key-0002')} }
              - { id: carol, key: carol-key-0003 }
              - { id: dave, key: dave-key-0004 }
            identityHeader: x-consumer-id
        - policy: rate-limit
          config: { calls: 3, renewalPeriod: 3600 }
    operations:
      - id: getOrder
        method: GET
        urlTemplate: /orders/{orderId}
        policies:
          inbound:
            - policy: rewrite-uri
              config: { template: "/v2/orders/{orderId}?source=gateway" }
      - id: listOrders
        method: GET
        urlTemplate: /orders
  - id: secure
    pathPrefix: /secure
    backend: { url: "http://127.0.0.1:${backendPort}" }
    policies:
      inbound:
        - policy: validate-jwt
          config:
            jwks: { keys: [${JSON.stringify(idpJwk)}] }
            issuers: ["https://idp.example.com/"]
            audiences: ["api://secure"]
        - policy: rate-limit-by-key
          config: { calls: 100, renewalPeriod: 86400, counterKey: { from: variable, name: jwt-subject } }
  - id: limits
    pathPrefix: /limits
    backend: { url: "http://127.0.0.1:${backendPort}" }
    operations:
      - id: slow
        method: GET
        urlTemplate: /slow
        policies:
          inbound:
            - policy: limit-concurrency
              config: { maxCount: 2 }
      - id: drip
        method: GET
        urlTemplate: /drip
        policies:
          inbound:
            - policy: limit-concurrency
              config: { maxCount: 1 }
      - id: big
        method: GET
        urlTemplate: /big
        policies:
          inbound:
            - policy: quota-by-key
              config: { bandwidth: 2, calls: 100, renewalPeriod: 3600, counterKey: { from: header, name: x-tenant } }
  - id: tenants
    pathPrefix: /tenants
    backend: { url: "http://127.0.0.1:${backendPort}" }
    policies:
      inbound:
        - policy: rate-limit-by-key
          config: { calls: 2, renewalPeriod: 3600, counterKey: { from: header, name: x-tenant }, onMissingKey: reject }
      outbound:
        - policy: emit-metric
          config: { name: tenant_calls, dimensions: [{ name: tenant, from: header, key: x-tenant }, { name: status, from: status }] }
    operations:
      - id: get
        method: GET
        urlTemplate: /
`;
}

/** The identity provider of the validate-jwt test: an EC P-256 key whose public half the gateway gets as a JWKS. */
const idp = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const idpJwk = { ...idp.publicKey.export({ format: 'jwk' }), kid: 'idp-1', use: 'sig' };

function es256Token(claims: Record<string, unknown>): string {
  const part = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = `${part({ alg: 'ES256', kid: 'idp-1', typ: 'JWT' })}.${part(claims)}`;
  const signature = sign('sha256', Buffer.from(input), { key: idp.privateKey, dsaEncoding: 'ieee-p1363' });
  return `${input}.${signature.toString('base64url')}`;
}

/** Computed here rather than pasted, so that the test states which key the digest stands for. */
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

before(async () => {
  backend = createServer((req, res) => {
    seen.push({ url: req.url!, headers: req.headers });
    if (req.url!.startsWith('/slow')) {
      setTimeout(() => res.end('slow'), 400);
      return;
    }
    if (req.url!.startsWith('/drip')) {
      // A body that takes 5 s, a byte every 50 ms, unless the other side goes away.
      let sent = 0;
      const timer = setInterval(() => (++sent >= 100 ? (clearInterval(timer), res.end('.')) : res.write('.')), 50);
      res.on('close', () => clearInterval(timer));
      return;
    }
    if (req.url!.startsWith('/big')) {
      // 1.5 KiB, sent chunked (no Content-Length): the gateway counts what it sends, not what a header says.
      res.write('x'.repeat(1024));
      res.end('y'.repeat(512));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain', vary: 'Accept-Encoding' });
    res.end(`backend saw ${req.url}`);
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  backendPort = (backend.address() as AddressInfo).port;
  const dir = tempDir();
  gateway = await startGatewayProcess({ config: writeConfig(dir, 'gateway.yaml', config()) });
});

after(async () => {
  await gateway?.stop();
  await agent.close();
  await new Promise((r) => backend.close(r));
});

const get = (path: string, headers: Record<string, string> = {}, method = 'GET') =>
  send(gateway.url, path, { method, headers, dispatcher: agent });

describe('built-in policies in a gateway', () => {
  test('key-auth: 401 without a key or with a wrong one; with a key, the identity reaches the backend and the key does not', async () => {
    const none = await get('/shop/orders');
    assert.equal(none.status, 401);
    assert.equal(none.headers['content-type'], 'application/problem+json');
    assert.match(none.body, /missing API key/);
    const wrong = await get('/shop/orders', { 'x-api-key': 'not-a-key-at-all' });
    assert.equal(wrong.status, 401);
    assert.doesNotMatch(wrong.body, /not-a-key-at-all/);
    const before = seen.length;
    const ok = await get('/shop/orders', { 'x-api-key': 'bob-key-0002' });
    assert.equal(ok.status, 200, ok.body);
    const saw = seen[before]!;
    assert.equal(saw.headers['x-consumer-id'], 'bob');
    assert.equal(saw.headers['x-api-key'], undefined, 'the key is not forwarded');
  });

  test('rate-limit (granted counters by the gateway): 3 calls an hour per identity, then 429 with Retry-After and RateLimit-*', async () => {
    // alice's own counter (bob used one call above on his).
    const statuses: number[] = [];
    let last: Awaited<ReturnType<typeof get>> | null = null;
    for (let i = 0; i < 4; i++) {
      last = await get('/shop/orders', { 'x-api-key': 'alice-key-0001' });
      statuses.push(last.status);
      if (i === 0) {
        assert.equal(last.headers['ratelimit-limit'], '3');
        assert.equal(last.headers['ratelimit-remaining'], '2');
        assert.equal(last.headers['ratelimit-policy'], '3;w=3600');
      }
    }
    assert.deepEqual(statuses, [200, 200, 200, 429]);
    const retryAfter = Number(last!.headers['retry-after']);
    assert.ok(retryAfter >= 1 && retryAfter <= 3600, `Retry-After ${last!.headers['retry-after']}`);
    assert.equal(last!.headers['ratelimit-remaining'], '0');
    assert.match(last!.body, /rate limit of 3 calls per 3600 s exceeded/);
    const bob = await get('/shop/orders', { 'x-api-key': 'bob-key-0002' });
    assert.equal(bob.status, 200, 'another identity has its own counter');
    assert.equal(bob.headers['ratelimit-remaining'], '1');
  });

  test('rewrite-uri: the backend receives the template with the route parameter, encoded so it cannot climb out', async () => {
    const before = seen.length;
    const ok = await get('/shop/orders/42?view=full', { 'x-api-key': 'carol-key-0003' });
    assert.equal(ok.status, 200, ok.body);
    assert.equal(seen[before]!.url, '/base/v2/orders/42?source=gateway&view=full');
    const slash = await get('/shop/orders/a%2Fb', { 'x-api-key': 'carol-key-0003' });
    assert.equal(slash.status, 200, slash.body);
    assert.equal(seen[before + 1]!.url, '/base/v2/orders/a%2Fb?source=gateway');
    // A parameter holding a dot segment (here in the request path already) never reaches the backend: more cases in
    // test/hostile-http.test.ts.
    const sneaky = await get('/shop/orders/..%2F..%2Fadmin', { 'x-api-key': 'carol-key-0003' });
    assert.equal(sneaky.status, 400, sneaky.body);
    assert.equal(seen.length, before + 2);
  });

  test('cors: a preflight to an operation without OPTIONS is answered by the API-scope policy; CORS headers and Vary on answers', async () => {
    const before = seen.length;
    const preflight = await get(
      '/shop/orders/7',
      { origin: 'https://app.example.com', 'access-control-request-method': 'GET', 'access-control-request-headers': 'x-api-key' },
      'OPTIONS',
    );
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers['access-control-allow-origin'], 'https://app.example.com');
    assert.equal(preflight.headers['access-control-allow-headers'], 'x-api-key');
    assert.equal(seen.length, before, 'the backend never saw the preflight');
    // The same preflight from an origin that is not allowed: answered, without CORS headers.
    const foreign = await get('/shop/orders/7', { origin: 'https://evil.test', 'access-control-request-method': 'GET' }, 'OPTIONS');
    assert.equal(foreign.status, 200);
    assert.equal(foreign.headers['access-control-allow-origin'], undefined);
    // An actual request: the inbound policy's headers are applied to the backend's answer, its Vary added to.
    const actual = await get('/shop/orders', { origin: 'https://app.example.com', 'x-api-key': 'dave-key-0004' });
    assert.equal(actual.headers['access-control-allow-origin'], 'https://app.example.com');
    assert.equal(actual.headers['access-control-expose-headers'], 'x-request-id');
    assert.equal(actual.headers.vary, 'Accept-Encoding, Origin');
  });

  test('validate-jwt: an ES256 token from the JWKS passes and its subject keys the next policy; a tampered one is refused', async () => {
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: 'https://idp.example.com/', aud: 'api://secure', sub: 'user-42', exp: now + 300 };
    const good = await get('/secure/x', { authorization: `Bearer ${es256Token(claims)}` });
    assert.equal(good.status, 200, good.body);
    assert.equal(good.headers['ratelimit-remaining'], '99', 'rate-limit-by-key counted on the token\'s subject');
    const [header, , signature] = es256Token(claims).split('.');
    const forged = `${header}.${Buffer.from(JSON.stringify({ ...claims, sub: 'admin' })).toString('base64url')}.${signature}`;
    const tampered = await get('/secure/x', { authorization: `Bearer ${forged}` });
    assert.equal(tampered.status, 401);
    assert.match(tampered.body, /invalid token: signature/);
    assert.doesNotMatch(tampered.body, /admin/);
    const expired = await get('/secure/x', { authorization: `Bearer ${es256Token({ ...claims, exp: now - 60 })}` });
    assert.equal(expired.status, 401);
    assert.match(expired.body, /invalid token: expired/);
  });

  test('limit-concurrency: two slow requests in flight take both slots, a third gets 429; the slots come back when they end', async () => {
    const three = await Promise.all([get('/limits/slow'), get('/limits/slow'), new Promise((r) => setTimeout(r, 100)).then(() => get('/limits/slow'))]);
    assert.deepEqual(three.map((r) => r.status).sort(), [200, 200, 429]);
    assert.match(three.find((r) => r.status === 429)!.body, /more than 2 requests in flight at once/);
    const after = await Promise.all([get('/limits/slow'), get('/limits/slow')]);
    assert.deepEqual(after.map((r) => r.status), [200, 200], 'the slots were given back');
  });

  test('limit-concurrency: a slot is held while the body streams, and given back when the client goes away mid-body', async () => {
    const first = await request(`${gateway.url}/limits/drip`, { dispatcher: agent });
    assert.equal(first.statusCode, 200);
    const reader = first.body[Symbol.asyncIterator]();
    assert.ok(!(await reader.next()).done, 'the body has begun');
    const whileStreaming = await get('/limits/drip');
    assert.equal(whileStreaming.status, 429, 'the streaming response still holds the only slot');
    await reader.return!(); // the client goes away mid-body
    let status = 0;
    for (let i = 0; i < 40 && status !== 200; i++) {
      const res = await request(`${gateway.url}/limits/drip`, { dispatcher: agent });
      status = res.statusCode;
      if (status === 200) await res.body[Symbol.asyncIterator]().return!();
      else await res.body.dump();
      if (status !== 200) await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(status, 200, 'the slot was given back');
  });

  test('limit-concurrency: no slot leaks when many clients give up at random moments', async () => {
    // 30 requests against 2 slots and a 400 ms backend; every other client hangs up after 0-300 ms.
    const outcomes = await Promise.all(
      Array.from({ length: 30 }, async (_, i) => {
        const signal = i % 2 ? AbortSignal.timeout(Math.floor(Math.random() * 300)) : undefined;
        try {
          const res = await request(`${gateway.url}/limits/slow`, { dispatcher: agent, signal });
          await res.body.text();
          return res.statusCode;
        } catch {
          return 'aborted';
        }
      }),
    );
    assert.ok(outcomes.includes(200) && outcomes.includes(429), `outcomes: ${outcomes.join(',')}`);
    // Every slot must come back once the backend's slow answers have ended.
    let both: number[] = [];
    for (let i = 0; i < 20 && !(both[0] === 200 && both[1] === 200); i++) {
      await new Promise((r) => setTimeout(r, 100));
      both = (await Promise.all([get('/limits/slow'), get('/limits/slow')])).map((r) => r.status);
    }
    assert.deepEqual(both, [200, 200], 'both slots are free again');
  });

  test('quota-by-key: bandwidth is counted from the bytes each exchange carried, once it ends', async () => {
    const first = await get('/limits/big', { 'x-tenant': 'bw' });
    assert.equal(first.status, 200);
    assert.equal(first.body.length, 1536);
    // 1.5 KiB rounds up to 2 KB: the quota of 2 KB is used up, so the next request is refused.
    const second = await get('/limits/big', { 'x-tenant': 'bw' });
    assert.equal(second.status, 403, second.body);
    assert.match(second.body, /bandwidth quota of 2 KB per 3600 s used up/);
    assert.ok(Number(second.headers['retry-after']) > 0);
    assert.equal((await get('/limits/big', { 'x-tenant': 'other' })).status, 200, 'another key has its own quota');
  });

  test('an OPTIONS preflight where no policy answers it is still 405, and plain OPTIONS too', async () => {
    const preflight = await get('/tenants/', { origin: 'https://app.example.com', 'access-control-request-method': 'GET', 'x-tenant': 't' }, 'OPTIONS');
    assert.equal(preflight.status, 405);
    assert.equal(preflight.headers.allow, 'GET');
    const plain = await get('/shop/orders', {}, 'OPTIONS');
    assert.equal(plain.status, 405);
  });

  test('rate-limit-by-key: each tenant has its own counter; a request without the key is refused with 400', async () => {
    const a = [];
    for (let i = 0; i < 3; i++) a.push((await get('/tenants/', { 'x-tenant': 'contoso' })).status);
    assert.deepEqual(a, [200, 200, 429]);
    assert.equal((await get('/tenants/', { 'x-tenant': 'fabrikam' })).status, 200);
    const missing = await get('/tenants/');
    assert.equal(missing.status, 400);
    assert.match(missing.body, /the rate limit key \(header x-tenant\) is missing/);
    // emit-metric (outbound) counted the answers that reached the outbound phase, by tenant and status.
    const metrics = await (await request(`http://127.0.0.1:${gateway.adminPort}/metrics`, { dispatcher: agent })).body.text();
    assert.match(metrics, /gatehouse_policy_metric_total\{metric="tenant_calls",status="200",tenant="contoso"\} 2\n/);
    assert.match(metrics, /gatehouse_policy_metric_total\{metric="tenant_calls",status="200",tenant="fabrikam"\} 1\n/);
  });

  test('a configuration whose policy settings fail their schema is refused at start, naming each problem and its place', async () => {
    const dir = tempDir();
    const file = writeConfig(
      dir,
      'bad.yaml',
      `
version: 1
apis:
  - id: bad
    pathPrefix: /bad
    backend: { url: "http://127.0.0.1:${backendPort}" }
    policies:
      inbound:
        - policy: rate-limit
          config: { calls: 0, renewalPeriod: 60 }
        - policy: cors
          config: { allowedOrigins: ["*"], allowCredentials: true }
        - policy: rewrite-uri
          config: { template: "no-slash" }
`,
    );
    const bad = await startGatewayProcess({ config: file }).then(
      async (g) => {
        await g.stop();
        return null;
      },
      (err: Error) => err,
    );
    assert.ok(bad instanceof Error, 'the gateway refused to start');
    assert.match(bad.message, /bad\.yaml:9: apis\[0\]\.policies\.inbound\[0\]: config \/calls: must be >= 1/);
    assert.match(bad.message, /bad\.yaml:11: .*\/allowedOrigins: with allowCredentials, list the origins/);
    assert.match(bad.message, /bad\.yaml:13: .*\/template: must match pattern/);
    assert.doesNotMatch(bad.message, /"then" schema/);
  });
});
