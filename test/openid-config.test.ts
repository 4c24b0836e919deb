// validate-jwt with keys from OpenID Connect discovery, in real gateway processes against a real local issuer
// (node:http serving discovery documents and a JWKS, keys made with node:crypto): the gateway fetches the keys (never
// the module), keeps them, fetches them again on an unknown kid (at most once per interval, however many arrive) and
// on expiry, keeps the keys it has when the issuer fails, and refuses documents over their caps and key URLs the egress
// rules forbid. PS256 is checked beside RS256 and ES256. And the KEYS effect refuses a URL its grant does not name.

import assert from 'node:assert/strict';
import { constants, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Agent } from 'undici';
import { EffectKind } from '../abi/index.ts';
import { GatewayEffects } from '../runtime/pipeline/effects.ts';
import { CallAbort } from '../runtime/policy-host/errors.ts';
import { MemoryCounterStore } from '../runtime/state/counter-store.ts';
import { Logger } from '../runtime/telemetry/logger.ts';
import { send as sendTo } from './support/requests.ts';
import { startGatewayProcess, stopAll, tempDir, writeConfig, type GatewayProcess } from './support/gateway-process.ts';

interface IssuerKey {
  kid: string;
  alg: 'RS256' | 'PS256' | 'ES256';
  privateKey: KeyObject;
  jwk: Record<string, unknown>;
}

function rsaKey(kid: string, alg: 'RS256' | 'PS256' = 'RS256'): IssuerKey {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { kid, alg, privateKey, jwk: { ...publicKey.export({ format: 'jwk' }), kid, use: 'sig' } };
}

function ecKey(kid: string): IssuerKey {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { kid, alg: 'ES256', privateKey, jwk: { ...publicKey.export({ format: 'jwk' }), kid, use: 'sig' } };
}

function token(key: IssuerKey, claims: Record<string, unknown> = {}, kid = key.kid): string {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const input = `${b64({ alg: key.alg, typ: 'JWT', kid })}.${b64({ sub: 'user-1', iss: 'https://issuer.test/', exp: Math.floor(Date.now() / 1000) + 600, ...claims })}`;
  const signer =
    key.alg === 'PS256'
      ? { key: key.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }
      : key.alg === 'ES256'
        ? { key: key.privateKey, dsaEncoding: 'ieee-p1363' as const }
        : key.privateKey;
  return `${input}.${sign('sha256', Buffer.from(input), signer).toString('base64url')}`;
}

/** A local issuer: discovery documents under several tenants, a JWKS, and what was asked of it. */
interface Issuer {
  server: Server;
  port: number;
  keys: IssuerKey[];
  cacheControl: string;
  failing: boolean;
  /** Requests by path. */
  hits: Map<string, number>;
}

async function startIssuer(): Promise<Issuer> {
  const issuer: Issuer = { server: createServer(), port: 0, keys: [], cacheControl: 'max-age=3600', failing: false, hits: new Map() };
  issuer.server.on('request', (req, res) => {
    const path = req.url ?? '';
    issuer.hits.set(path, (issuer.hits.get(path) ?? 0) + 1);
    const base = `http://127.0.0.1:${issuer.port}`;
    const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(typeof body === 'string' ? body : JSON.stringify(body));
    };
    if (issuer.failing) return json(503, { error: 'down' });
    const tenant = /^\/(\w+)\/\.well-known\/openid-configuration$/.exec(path)?.[1];
    if (tenant === 'far') return json(200, { issuer: base, jwks_uri: `http://localhost:${issuer.port}/keys` });
    if (tenant) return json(200, { issuer: base, jwks_uri: `${base}/${tenant === 'big' ? 'big-keys' : 'keys'}` });
    if (path === '/keys') return json(200, { keys: issuer.keys.map((k) => k.jwk) }, { 'cache-control': issuer.cacheControl });
    if (path === '/big-keys') return json(200, `{"keys":[${'{"kty":"oct","k":"AAAA"},'.repeat(12_000)}{"kty":"oct"}]}`);
    json(404, {});
  });
  await new Promise<void>((r) => issuer.server.listen(0, '127.0.0.1', r));
  issuer.port = (issuer.server.address() as AddressInfo).port;
  return issuer;
}

let issuer: Issuer;
let quick: GatewayProcess;
let steady: GatewayProcess;
const agent = new Agent({ connections: 8 });
const MIN_REFRESH_MS = 300;

function gatewayConfig(tenants: string[]): string {
  return `version: 1
apis:
${tenants
  .map(
    (t) => `  - id: ${t}
    pathPrefix: /${t}
    backend: { url: builtin:echo }
    policies:
      inbound:
        - policy: validate-jwt
          config:
            openidConfig: ["http://127.0.0.1:${issuer.port}/${t}/.well-known/openid-configuration"]
            issuers: ["https://issuer.test/"]
        - policy: return-response
          config: { status: 200, body: { expr: "'hello ' + jwt.sub" } }
`,
  )
  .join('')}`;
}

before(async () => {
  issuer = await startIssuer();
  issuer.keys = [rsaKey('k1'), ecKey('e1')];
  const dir = tempDir();
  [quick, steady] = await Promise.all([
    startGatewayProcess({ config: writeConfig(dir, 'quick.yaml', gatewayConfig(['rot', 'big', 'far'])), env: { GATEHOUSE_JWKS_MIN_REFRESH_MS: String(MIN_REFRESH_MS) } }),
    startGatewayProcess({ config: writeConfig(dir, 'steady.yaml', gatewayConfig(['flood'])) }),
  ]);
});

after(() => stopAll(quick, agent, [issuer?.server, { close: (done: () => void) => steady.stop().then(done) }]));

const call = (gateway: GatewayProcess, api: string, jwt: string) => sendTo(gateway.url, `/${api}/x`, { dispatcher: agent, headers: { authorization: `Bearer ${jwt}` } });
const hits = (path: string) => issuer.hits.get(path) ?? 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('validate-jwt with openidConfig', () => {
  test('the keys come from the discovery document and its JWKS, fetched once and kept', async () => {
    const first = await call(quick, 'rot', token(issuer.keys[0]!));
    assert.equal(first.status, 200, first.body);
    assert.equal(first.body, 'hello user-1');
    assert.equal((await call(quick, 'rot', token(issuer.keys[1]!))).status, 200, 'ES256 from the same JWKS');
    assert.equal(hits('/rot/.well-known/openid-configuration'), 1);
    const keysFetched = hits('/keys');
    for (let i = 0; i < 5; i++) assert.equal((await call(quick, 'rot', token(issuer.keys[0]!))).status, 200);
    assert.equal(hits('/keys'), keysFetched, 'kept, not fetched for each request');
  });

  test('PS256 (RSASSA-PSS) tokens are checked: one signed by the key passes, one by another key does not', async () => {
    const pss = rsaKey('p1', 'PS256');
    issuer.keys = [...issuer.keys, pss];
    await sleep(MIN_REFRESH_MS + 50);
    assert.equal((await call(quick, 'rot', token(pss))).status, 200, 'a new kid made the gateway fetch the keys again');
    const forged = await call(quick, 'rot', token({ ...rsaKey('p1', 'PS256'), kid: 'p1' }));
    assert.equal(forged.status, 401);
    assert.match(String(forged.headers['www-authenticate']), /error_description="signature"/);
  });

  test('rotation: a token of a new key passes without a configuration change; the retired key stops passing', async () => {
    const retired = issuer.keys[0]!;
    const next = rsaKey('k2');
    issuer.keys = [next, ...issuer.keys.slice(1)];
    await sleep(MIN_REFRESH_MS + 50);
    assert.equal((await call(quick, 'rot', token(next))).status, 200);
    assert.equal((await call(quick, 'rot', token(retired))).status, 401);
  });

  test('expiry: keys are fetched again after the max-age of the JWKS (bounded below by the refresh interval)', async () => {
    issuer.cacheControl = 'max-age=0';
    await sleep(MIN_REFRESH_MS + 50);
    // An unknown kid fetches them (and learns the new max-age).
    await call(quick, 'rot', token(issuer.keys[0]!, {}, 'unknown'));
    const before = hits('/keys');
    await sleep(MIN_REFRESH_MS + 50);
    assert.equal((await call(quick, 'rot', token(issuer.keys[0]!))).status, 200);
    assert.equal(hits('/keys'), before + 1, 'a known kid, but the keys had expired');
    issuer.cacheControl = 'max-age=3600';
  });

  test('an issuer that fails keeps the keys already held in use', async () => {
    issuer.failing = true;
    try {
      await sleep(MIN_REFRESH_MS + 50);
      const before = hits('/keys') + hits('/rot/.well-known/openid-configuration');
      assert.equal((await call(quick, 'rot', token(issuer.keys[0]!))).status, 200);
      assert.ok(hits('/keys') + hits('/rot/.well-known/openid-configuration') > before, 'it did try');
    } finally {
      issuer.failing = false;
    }
  });

  test('a flood of tokens with made-up kids costs the issuer no more than the rate limit allows', async () => {
    const key = issuer.keys[0]!;
    assert.equal((await call(steady, 'flood', token(key))).status, 200);
    const before = hits('/keys') + hits('/flood/.well-known/openid-configuration');
    const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => call(steady, 'flood', token(key, {}, `made-up-${i}`))));
    assert.ok(answers.every((a) => a.status === 401));
    assert.equal(hits('/keys') + hits('/flood/.well-known/openid-configuration'), before, 'no fetch within the 30 s interval');
    assert.equal((await call(steady, 'flood', token(key))).status, 200, 'the known key still works');
  });

  test('a JWKS over its size cap, and a jwks_uri on another origin that is loopback, give no keys', async () => {
    const big = await call(quick, 'big', token(issuer.keys[0]!));
    assert.equal(big.status, 401);
    assert.match(String(big.headers['www-authenticate']), /signing keys unavailable/);
    assert.equal(hits('/big-keys'), 1, 'it was fetched, and refused for its size');
    const keysBefore = hits('/keys');
    const far = await call(quick, 'far', token(issuer.keys[0]!));
    assert.equal(far.status, 401);
    assert.match(String(far.headers['www-authenticate']), /signing keys unavailable/);
    assert.equal(hits('/far/.well-known/openid-configuration'), 1);
    assert.equal(hits('/keys'), keysBefore, 'the loopback jwks_uri on another origin was never connected to');
  });
});

describe('the KEYS effect', () => {
  test('a URL the grant does not name fails the call (capability): a module cannot make the gateway fetch anything else', async () => {
    const effects = new GatewayEffects({ counters: new MemoryCounterStore(), logger: new Logger(() => undefined, 'error') });
    try {
      const context = { binding: 'b', policy: 'hostile', grants: { openidConfig: ['https://issuer.test/.well-known/openid-configuration'] } };
      for (const url of ['http://127.0.0.1:9/.well-known/openid-configuration', 'https://issuer.test/.well-known/openid-configuration?x', 'x'.repeat(100_000)]) {
        await assert.rejects(effects.perform(EffectKind.KEYS, JSON.stringify({ url, kid: '' }), context), (err: unknown) => err instanceof CallAbort && err.reason === 'capability');
        assert.throws(() => effects.performNow(EffectKind.KEYS, JSON.stringify({ url, kid: '' }), context), CallAbort);
      }
      await assert.rejects(effects.perform(EffectKind.KEYS, JSON.stringify({ url: context.grants.openidConfig[0], kid: 'k'.repeat(300) }), context), CallAbort);
      assert.equal(effects.keySets.fetches, 0);
    } finally {
      await effects.close();
    }
  });
});
