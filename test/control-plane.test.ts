// The control plane and config sync, as separate processes on 127.0.0.1: the reference control plane (SQLite), and
// gateways that take their configuration from it.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { startControlPlane, type ControlPlaneProcess } from './support/control-plane-process.ts';
import { startGatewayProcess, tempDir, type GatewayProcess } from './support/gateway-process.ts';
import { send } from './support/requests.ts';
import { waitFor, waitForAsync } from './support/wait.ts';
import { selfSignedCertificate } from '../scripts/lib/certificate.ts';
import { ControlPlaneClient } from '../runtime/sync/control-plane-client.ts';
import { ModuleCache } from '../runtime/sync/modules.ts';
import { checkToken, issueToken, MAX_CLOCK_SKEW_SECONDS, MAX_TOKEN_DAYS, newTokenId, readClaims } from '../runtime/gateway-api/tokens.ts';
import { earlierFormatToken, tokenKeyOf } from './support/token-key.ts';
import { saveApiPastTheCheck, withControlPlaneDb } from './support/control-plane-db.ts';

const agent = new Agent({ connections: 4 });
let dataDir: string;
let cp: ControlPlaneProcess;

const admin = (method: string, path: string, body?: unknown) => cp.admin(method, path, body);

const echoApi = (prefix: string, header: string) => ({
  pathPrefix: prefix,
  backend: { url: 'builtin:echo' },
  policies: { outbound: [{ policy: 'set-header', config: { name: 'x-config', value: header } }] },
});

before(async () => {
  dataDir = tempDir('gatehouse-cp-');
  cp = await startControlPlane(dataDir);
});

after(async () => {
  await cp?.stop();
  await agent.close();
});

describe('control plane', () => {
  test('the admin API needs the admin token; an API that fails the gateway schema is refused with every problem', async () => {
    const anonymous = await request(`${cp.url}/admin/apis`, { dispatcher: agent });
    assert.equal(anonymous.statusCode, 401);
    await anonymous.body.dump();
    const bad = await admin('PUT', '/admin/apis/broken', { pathPrefix: 'no-slash' });
    assert.equal(bad.status, 400);
    const problems = (bad.body.problems as { message: string }[]).map((p) => p.message).join('; ');
    assert.match(problems, /must start with "\/"/);
    assert.match(problems, /is required/);
  });

  test('a log level it does not know stops the start: exit 2, naming the variable', async () => {
    await assert.rejects(startControlPlane(tempDir('gatehouse-cp-'), 0, { GATEHOUSE_LOG_LEVEL: 'verbose' }), (err: Error) => {
      assert.ok(
        err.message.includes('control plane exited with 2: gatehouse control plane: GATEHOUSE_LOG_LEVEL=verbose must be one of trace, debug, info, warn, error'),
        err.message,
      );
      return true;
    });
  });

  test('tokens: forged, expired, revoked and malformed ones are refused with 401; expiry is at most 30 days', async () => {
    assert.equal((await admin('PUT', '/admin/gateways/gw-tokens', { apis: [] })).status, 200);
    assert.equal((await admin('POST', '/admin/gateways/gw-tokens/tokens', { expiresInDays: 31 })).status, 400);
    const issued = await admin('POST', '/admin/gateways/gw-tokens/tokens', { expiresInDays: 1 });
    const token = issued.body.token as string;
    const config = (t: string) => send(cp.url, '/gateway/v1/config', { headers: { authorization: `GatewayKey ${t}` }, dispatcher: agent });
    assert.equal((await config(token)).status, 200);
    const parts = token.split('.');
    const forged = [parts[0], parts[1], parts[2], String(Number(parts[3]) + 86_400 * 365), parts[4], parts[5]].join('.');
    assert.match((await config(forged)).body, /gateway token forged/);
    assert.match((await config('not-a-token')).body, /missing or malformed/);
    // A token whose expiry has passed, validly signed, as the control plane would have issued it a month ago.
    const expired = issueToken(tokenKeyOf(dataDir), { gateway: 'gw-tokens', generation: 1, expires: Math.floor(Date.now() / 1000) - 60, id: newTokenId() });
    assert.match((await config(expired)).body, /gateway token expired/);
    // A gateway holding it is refused, and says so in its log (and, with nothing applied yet, stays not ready).
    const gateway = await startGatewayProcess({ env: { GATEHOUSE_CONFIG_URL: cp.url, GATEHOUSE_TOKEN: expired, GATEHOUSE_SYNC_INTERVAL_MS: '200' } });
    try {
      const refused = await gateway.waitForLog((l) => l.msg === 'the control plane refused this gateway\'s token', 10_000);
      assert.equal(refused.level, 'error');
      assert.equal(refused.detail, 'gateway token expired');
      const warned = await gateway.waitForLog((l) => String(l.msg).startsWith('the gateway token expires soon'), 5000);
      assert.equal(warned.hoursLeft, 0);
      assert.equal(warned.gateway, 'gw-tokens');
      assert.equal((await send(gateway.url, '/status-0123456789abcdef', { dispatcher: agent })).status, 503);
    } finally {
      await gateway.stop();
    }
    assert.equal((await admin('POST', '/admin/gateways/gw-tokens/revoke-tokens')).status, 200);
    const revoked = await config(token);
    assert.equal(revoked.status, 401);
    assert.match(revoked.body, /revoked/);
  });
});

describe('gateway token lifetime', () => {
  const key = Buffer.alloc(32, 7);
  const now = 1_800_000_000;
  const days = (n: number) => n * 86_400;

  test('checkToken refuses a correctly signed token whose expiry is further away than any token is issued for', () => {
    const id = newTokenId();
    const tenYears = issueToken(key, { gateway: 'gw-long', generation: 1, expires: now + days(3650), id });
    assert.deepEqual(checkToken(key, tenYears, now), {
      ok: false,
      reason: 'lifetime-exceeded',
      claims: { gateway: 'gw-long', generation: 1, expires: now + days(3650), id },
    });
    // Issued for the longest lifetime now, or by a control plane whose clock runs up to the allowance ahead: accepted.
    for (const expires of [now + days(MAX_TOKEN_DAYS), now + days(MAX_TOKEN_DAYS) + MAX_CLOCK_SKEW_SECONDS]) {
      const token = issueToken(key, { gateway: 'gw-long', generation: 1, expires, id });
      assert.deepEqual(checkToken(key, token, now), { ok: true, claims: { gateway: 'gw-long', generation: 1, expires, id } });
    }
    const justOver = issueToken(key, { gateway: 'gw-long', generation: 1, expires: now + days(MAX_TOKEN_DAYS) + MAX_CLOCK_SKEW_SECONDS + 1, id });
    assert.equal(checkToken(key, justOver, now).ok, false);
    assert.equal((checkToken(key, justOver, now) as { reason: string }).reason, 'lifetime-exceeded');
    // Nothing of a forged token is believed, its expiry included: forged is the reason.
    const forged = issueToken(Buffer.alloc(32, 8), { gateway: 'gw-long', generation: 1, expires: now + days(3650), id });
    assert.deepEqual(checkToken(key, forged, now), { ok: false, reason: 'forged' });
  });

  test('checkToken reads a token of the earlier format (gw1., no id) signed with the key; forged, expired or too long-lived, it is refused', () => {
    const expires = now + days(MAX_TOKEN_DAYS);
    assert.deepEqual(checkToken(key, earlierFormatToken(key, 'gw-old', 3, expires), now), { ok: true, claims: { gateway: 'gw-old', generation: 3, expires, id: null } });
    assert.deepEqual(checkToken(Buffer.alloc(32, 8), earlierFormatToken(key, 'gw-old', 3, expires), now), { ok: false, reason: 'forged' });
    // Its fields are signed: another gateway's name, or a later expiry, breaks the signature.
    const [, , generation, expiry, signature] = earlierFormatToken(key, 'gw-old', 3, expires).split('.');
    assert.deepEqual(checkToken(key, ['gw1', 'gw-other', generation, expiry, signature].join('.'), now), { ok: false, reason: 'forged' });
    assert.deepEqual(checkToken(key, ['gw1', 'gw-old', generation, String(expires + 60), signature].join('.'), now), { ok: false, reason: 'forged' });
    assert.deepEqual(checkToken(key, earlierFormatToken(key, 'gw-old', 3, now - 1), now), { ok: false, reason: 'expired' });
    assert.equal((checkToken(key, earlierFormatToken(key, 'gw-old', 3, now + days(3650)), now) as { reason: string }).reason, 'lifetime-exceeded');
    assert.equal(readClaims(earlierFormatToken(key, 'gw-old', 3, expires))?.expires, expires, 'its holder reads its expiry');
  });

  test('the control plane answers 401 naming the lifetime to a signed ten-year token, and logs the refusal with what to do', async () => {
    assert.equal((await admin('PUT', '/admin/gateways/gw-long', { apis: [] })).status, 200);
    const longLived = issueToken(tokenKeyOf(dataDir), { gateway: 'gw-long', generation: 1, expires: Math.floor(Date.now() / 1000) + days(3650), id: newTokenId() });
    const headers = { authorization: `GatewayKey ${longLived}` };
    const config = await send(cp.url, '/gateway/v1/config', { headers, dispatcher: agent });
    assert.equal(config.status, 401);
    const problem = JSON.parse(config.body) as Record<string, unknown>;
    assert.equal(problem.reason, 'lifetime-exceeded');
    assert.match(String(problem.detail), /gateway token expires .* more than 30 days from now/);
    const heartbeat = await send(cp.url, '/gateway/v1/heartbeat', { method: 'POST', headers, body: '{}', dispatcher: agent });
    assert.equal(heartbeat.status, 401);
    const logged = await cp.waitForLog((l) => l.msg === 'gateway token refused' && l.reason === 'lifetime-exceeded');
    assert.equal(logged.level, 'error');
    assert.equal(logged.gateway, 'gw-long');
    assert.equal(logged.maxDays, MAX_TOKEN_DAYS);
    assert.ok(Date.parse(String(logged.expiresAt)) > Date.now() + days(3000) * 1000, String(logged.expiresAt));
    assert.match(String(logged.action), /token key/);
    // Within the lifetime, the same key and gateway, but not issued by the control plane (it holds no row for its id):
    // refused as well. One it issued is accepted.
    const fresh = issueToken(tokenKeyOf(dataDir), { gateway: 'gw-long', generation: 1, expires: Math.floor(Date.now() / 1000) + days(MAX_TOKEN_DAYS), id: newTokenId() });
    const outside = await send(cp.url, '/gateway/v1/config', { headers: { authorization: `GatewayKey ${fresh}` }, dispatcher: agent });
    assert.equal(outside.status, 401);
    assert.match(JSON.parse(outside.body).detail, /is not one this control plane holds for gateway gw-long/);
    const issued = (await admin('POST', '/admin/gateways/gw-long/tokens', {})).body.token as string;
    assert.equal((await send(cp.url, '/gateway/v1/config', { headers: { authorization: `GatewayKey ${issued}` }, dispatcher: agent })).status, 200);
    // A gateway holding the long-lived token is refused, and its log says why.
    const gateway = await startGatewayProcess({ env: { GATEHOUSE_CONFIG_URL: cp.url, GATEHOUSE_TOKEN: longLived, GATEHOUSE_SYNC_INTERVAL_MS: '200' } });
    try {
      const refused = await gateway.waitForLog((l) => l.msg === 'the control plane refused this gateway\'s token', 10_000);
      assert.match(String(refused.detail), /more than 30 days from now/);
    } finally {
      await gateway.stop();
    }
  });
});

describe('a control plane served over HTTPS', () => {
  test('a gateway that trusts its certificate syncs; one that does not is refused the connection and says why', async () => {
    const dir = tempDir('gatehouse-cp-tls-');
    const { certFile, keyFile } = selfSignedCertificate(dir);
    const secure = await startControlPlane(join(dir, 'data'), 0, { GATEHOUSE_CP_TLS_CERT_FILE: certFile, GATEHOUSE_CP_TLS_KEY_FILE: keyFile });
    const gateways: GatewayProcess[] = [];
    try {
      assert.match(secure.url, /^https:/);
      assert.equal((await secure.admin('PUT', '/admin/apis/tls', echoApi('/tls', 'over-tls'))).status, 200);
      assert.equal((await secure.admin('PUT', '/admin/gateways/gw-tls', { apis: ['tls'] })).status, 200);
      const token = (await secure.admin('POST', '/admin/gateways/gw-tls/tokens', {})).body.token as string;
      const env = { GATEHOUSE_CONFIG_URL: secure.url, GATEHOUSE_TOKEN: token, GATEHOUSE_SYNC_INTERVAL_MS: '200' };
      const trusting = await startGatewayProcess({ env: { ...env, GATEHOUSE_CONFIG_CA_FILE: certFile } });
      gateways.push(trusting);
      await trusting.waitForLog((l) => l.msg === 'configuration from the control plane applied', 15_000);
      assert.equal((await send(trusting.url, '/tls/x', { dispatcher: agent })).headers['x-config'], 'over-tls');
      const wary = await startGatewayProcess({ env });
      gateways.push(wary);
      const unreachable = await wary.waitForLog((l) => String(l.msg).startsWith('control plane unreachable'), 15_000);
      assert.match(String(unreachable.error), /certificate/i);
    } finally {
      await Promise.all(gateways.map((g) => g.stop()));
      await secure.stop();
    }
  });
});

describe('a gateway configured by the control plane', () => {
  let gateway: GatewayProcess;

  before(async () => {
    assert.equal((await admin('PUT', '/admin/apis/orders', echoApi('/orders', 'v1'))).status, 200);
    assert.equal((await admin('PUT', '/admin/gateways/gw-1', { apis: ['orders'] })).status, 200);
    const token = (await admin('POST', '/admin/gateways/gw-1/tokens', {})).body.token as string;
    gateway = await startGatewayProcess({
      env: {
        GATEHOUSE_CONFIG_URL: cp.url,
        GATEHOUSE_TOKEN: token,
        GATEHOUSE_SYNC_INTERVAL_MS: '200',
        GATEHOUSE_HEARTBEAT_INTERVAL_MS: '300',
        GATEHOUSE_TELEMETRY_INTERVAL_MS: '300',
      },
    });
  });

  after(async () => {
    await gateway?.stop();
  });

  const header = async () => (await send(gateway.url, '/orders/x', { dispatcher: agent })).headers['x-config'];
  /** The header the configuration sets, once it is `expected` (polled for up to 5 s: several sync intervals). */
  const headerBecomes = async (expected: string) => {
    const started = Date.now();
    let seen = await header();
    while (seen !== expected && Date.now() - started < 5000) {
      await new Promise((r) => setTimeout(r, 50));
      seen = await header();
    }
    return seen;
  };

  test('serves what the control plane assigned it, and a change reaches it within one poll', async () => {
    await waitFor('the first configuration', () => gateway.logs.some((l) => l.msg === 'configuration from the control plane applied'), 10_000);
    assert.equal(await header(), 'v1');
    assert.equal((await admin('PUT', '/admin/apis/orders', echoApi('/orders', 'v2'))).status, 200);
    assert.equal(await headerBecomes('v2'), 'v2');
  });

  test('heartbeats: the control plane shows the instance, its host and version, the revision it runs and its lag', async () => {
    const current = async () => {
      const list = (await admin('GET', '/admin/gateways')).body as { revision: number; gateways: { id: string; instances: Record<string, unknown>[] }[] };
      return { revision: list.revision, instance: list.gateways.find((g) => g.id === 'gw-1')?.instances[0] };
    };
    let seen = await current();
    const started = Date.now();
    while ((seen.instance === undefined || seen.instance.revision !== seen.revision) && Date.now() - started < 5000) {
      await new Promise((r) => setTimeout(r, 100));
      seen = await current();
    }
    assert.ok(seen.instance, 'a heartbeat arrived');
    assert.equal(seen.instance.revision, seen.revision, 'it runs the current revision');
    assert.equal(seen.instance.revisionsBehind, 0);
    assert.equal(seen.instance.health, 'ready');
    assert.equal(seen.instance.version, '0.1.0');
    assert.equal(typeof seen.instance.host, 'string');
    assert.ok((seen.instance.secondsSinceHeartbeat as number) <= 2);
    // The token it authenticated with (issued for the default 30 days) and when it expires.
    const daysLeft = (Date.parse(String(seen.instance.tokenExpiresAt)) - Date.now()) / 86_400_000;
    assert.ok(daysLeft > 29.9 && daysLeft <= 30, `token expires in ${daysLeft} days`);
    assert.ok(!gateway.logs.some((l) => String(l.msg).startsWith('the gateway token expires soon')), 'no warning 30 days ahead');
    // A forged token cannot post heartbeats.
    const forged = await send(cp.url, '/gateway/v1/heartbeat', { method: 'POST', headers: { authorization: 'GatewayKey gw1.gw-1.1.9999999999.AAAA' }, body: '{}', dispatcher: agent });
    assert.equal(forged.status, 401);
  });

  test('a policy the gateway does not have is refused by the control plane at save, naming its place; nothing changes', async () => {
    const before = (await admin('GET', '/admin/revisions')).body.revisions as unknown[];
    const unusable = { pathPrefix: '/orders', backend: { url: 'builtin:echo' }, policies: { inbound: [{ policy: 'no-such-policy' }] } };
    const refused = await admin('PUT', '/admin/apis/orders', unusable);
    assert.equal(refused.status, 400);
    const [first] = refused.body.problems as { where: string; path: unknown[]; message: string }[];
    assert.deepEqual(first!.path, ['policies', 'inbound', 0]);
    assert.equal(first!.where, 'api orders: policies.inbound[0]');
    assert.match(first!.message, /no-such-policy/);
    assert.deepEqual((await admin('GET', '/admin/revisions')).body.revisions, before, 'no revision');
    assert.equal(await header(), 'v2');
  });

  test('a document the gateway cannot use is rejected and the running configuration stays', async () => {
    // Written past the control plane's check, as one of another version might have saved it.
    const unusable = { id: 'orders', pathPrefix: '/orders', backend: { url: 'builtin:echo' }, policies: { inbound: [{ policy: 'no-such-policy' }] } };
    saveApiPastTheCheck(dataDir, unusable);
    await gateway.waitForLog((l) => String(l.msg).startsWith('configuration from the control plane rejected'), 10_000);
    assert.equal(await header(), 'v2', 'still the last good configuration');
    assert.equal((await admin('PUT', '/admin/apis/orders', echoApi('/orders', 'v3'))).status, 200);
    assert.equal(await headerBecomes('v3'), 'v3', 'a good document after the bad one is applied');
  });

  test('control plane killed: the gateway keeps serving; restarted on the same data, state survives and sync resumes', async () => {
    const port = Number(new URL(cp.url).port);
    await cp.stop('SIGKILL');
    const outageStarted = Date.now();
    let failures = 0;
    for (let i = 0; i < 20; i++) {
      const res = await send(gateway.url, '/orders/x', { dispatcher: agent });
      if (res.status !== 200) failures++;
      await new Promise((r) => setTimeout(r, 25));
    }
    assert.equal(failures, 0);
    await gateway.waitForLog((l) => String(l.msg).startsWith('control plane unreachable'), 5000);
    const outageEnded = Date.now();
    cp = await startControlPlane(dataDir, port);
    // The per-period aggregates made while the control plane was away were kept, and arrive after it is back.
    const during = async () => {
      const rows = (await admin('GET', '/admin/telemetry?gateway=gw-1')).body.aggregates as { api: string; minute: string; requests: number }[];
      return rows
        .filter((r) => r.api === 'orders' && Date.parse(r.minute) >= outageStarted - 300 && Date.parse(r.minute) < outageEnded)
        .reduce((n, r) => n + r.requests, 0);
    };
    let counted = await during();
    for (let i = 0; i < 50 && counted < 20; i++) {
      await new Promise((r) => setTimeout(r, 100));
      counted = await during();
    }
    assert.ok(counted >= 20, `the 20 requests made during the outage are in the control plane's telemetry (${counted})`);
    const apis = await admin('GET', '/admin/apis');
    assert.deepEqual((apis.body.apis as { id: string }[]).map((a) => a.id).sort(), ['orders']);
    await gateway.waitForLog((l) => l.msg === 'control plane reachable again', 10_000);
    assert.equal((await admin('PUT', '/admin/apis/orders', echoApi('/orders', 'v4'))).status, 200);
    assert.equal(await headerBecomes('v4'), 'v4', 'a change made after the restart arrives');
  });
});

describe('fail static: the configuration backup', () => {
  let backupDir: string;
  let token: string;

  before(async () => {
    backupDir = tempDir('gatehouse-backup-');
    assert.equal((await admin('PUT', '/admin/apis/stock', echoApi('/stock', 'b1'))).status, 200);
    assert.equal((await admin('PUT', '/admin/gateways/gw-backup', { apis: ['stock'] })).status, 200);
    token = (await admin('POST', '/admin/gateways/gw-backup/tokens', {})).body.token as string;
  });

  const gatewayWith = (url: string, dir: string) =>
    startGatewayProcess({ env: { GATEHOUSE_CONFIG_URL: url, GATEHOUSE_TOKEN: token, GATEHOUSE_SYNC_INTERVAL_MS: '200', GATEHOUSE_BACKUP_DIR: dir } });
  const stockHeader = async (g: GatewayProcess) => (await send(g.url, '/stock/x', { dispatcher: agent })).headers['x-config'];
  const probe = async (g: GatewayProcess) => (await send(g.url, '/status-0123456789abcdef', { dispatcher: agent })).status;

  test('each applied document is backed up, the one before kept; a restart with the control plane gone serves the backup', async () => {
    const first = await gatewayWith(cp.url, backupDir);
    try {
      await first.waitForLog((l) => l.msg === 'configuration from the control plane applied', 10_000);
      assert.equal((await admin('PUT', '/admin/apis/stock', echoApi('/stock', 'b2'))).status, 200);
      await waitFor('the second document', () => first.logs.filter((l) => l.msg === 'configuration from the control plane applied').length >= 2, 10_000);
    } finally {
      await first.stop();
    }
    // Beside the backup, the instrumented-module cache (GATEHOUSE_INSTRUMENTED_CACHE_DIR's default with a backup).
    assert.deepEqual(readdirSync(backupDir).sort(), ['config.json', 'config.previous.json', 'instrumented']);
    await cp.stop('SIGKILL');
    const restarted = await gatewayWith(cp.url, backupDir);
    try {
      await restarted.waitForLog((l) => String(l.msg).startsWith('started from the configuration backup'), 10_000);
      assert.equal(await probe(restarted), 200);
      assert.equal(await stockHeader(restarted), 'b2');
    } finally {
      await restarted.stop();
    }
  });

  test('the control plane host name does not resolve and the newest backup is corrupt: the previous one is served', async () => {
    writeFileSync(join(backupDir, 'config.json'), '{"text": "cut sho');
    const gateway = await gatewayWith('http://control-plane.invalid:7070', backupDir);
    try {
      const started = await gateway.waitForLog((l) => String(l.msg).startsWith('started from the configuration backup'), 15_000);
      assert.match(String(started.file), /config\.previous\.json$/);
      assert.match(JSON.stringify(started.skipped), /not valid JSON/);
      assert.equal(await stockHeader(gateway), 'b1');
    } finally {
      await gateway.stop();
    }
  });

  test('no usable backup and no control plane: not ready (503), says why, and keeps trying', async () => {
    const empty = tempDir('gatehouse-backup-empty-');
    const gateway = await gatewayWith(cp.url, empty);
    try {
      await gateway.waitForLog((l) => String(l.msg).startsWith('no usable configuration backup'), 10_000);
      assert.equal(await probe(gateway), 503);
      // Still polling: the control plane comes back on its data, and the gateway becomes ready.
      cp = await startControlPlane(dataDir, Number(new URL(cp.url).port));
      await gateway.waitForLog((l) => l.msg === 'configuration from the control plane applied', 10_000);
      assert.equal(await probe(gateway), 200);
      assert.equal(await stockHeader(gateway), 'b2');
    } finally {
      await gateway.stop();
    }
  });

  test('replicas of one gateway share a backup folder: each revision written once, the one before kept, a restart serves it', async () => {
    const shared = tempDir('gatehouse-backup-shared-');
    assert.equal((await admin('PUT', '/admin/apis/stock', echoApi('/stock', 'b2'))).status, 200);
    const replicas = await Promise.all([gatewayWith(cp.url, shared), gatewayWith(cp.url, shared)]);
    const revisionIn = (name: string) => (JSON.parse(readFileSync(join(shared, name), 'utf8')) as { text: string }).text.match(/"value":"(b\d)"/)?.[1];
    try {
      for (const r of replicas) await r.waitForLog((l) => l.msg === 'configuration from the control plane applied', 10_000);
      // Both replicas apply each change within a poll of each other, many times, so that their saves overlap.
      for (const header of ['b3', 'b4', 'b5', 'b6']) {
        assert.equal((await admin('PUT', '/admin/apis/stock', echoApi('/stock', header))).status, 200);
        await waitForAsync(`${header} on both replicas`, async () => (await Promise.all(replicas.map(stockHeader))).every((h) => h === header), 10_000);
        await waitFor(`${header} backed up`, () => revisionIn('config.json') === header, 5000);
        assert.equal(revisionIn('config.previous.json'), `b${Number(header.slice(1)) - 1}`, 'the revision before is kept');
      }
    } finally {
      await Promise.all(replicas.map((r) => r.stop()));
    }
    assert.deepEqual(readdirSync(shared).sort(), ['config.json', 'config.previous.json', 'instrumented'], 'no temporary file is left');
    assert.equal(readdirSync(join(shared, 'instrumented')).filter((n) => n.endsWith('.tmp')).length, 0, 'nor in the instrumented-module cache');
    const restarted = await gatewayWith('http://control-plane.invalid:7070', shared);
    try {
      await restarted.waitForLog((l) => String(l.msg).startsWith('started from the configuration backup'), 15_000);
      assert.equal(await stockHeader(restarted), 'b6');
    } finally {
      await restarted.stop();
    }
  });
});

describe('policy modules uploaded to the control plane', () => {
  let gateway: GatewayProcess;
  let keyFile: string;
  let good: string;

  const upload = async (bytes: Uint8Array) => {
    const res = await request(`${cp.url}/admin/modules`, {
      method: 'POST',
      headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/wasm' },
      body: bytes,
      dispatcher: agent,
    });
    return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
  };
  const probeApi = (module: string, tag: string) => ({
    pathPrefix: '/probe',
    backend: { url: 'builtin:echo' },
    policies: { outbound: [{ module, config: { tag } }] },
  });
  const trace = async () => (await send(gateway.url, '/probe/x', { dispatcher: agent })).headers['x-trace'];

  before(async () => {
    const { buildFixture } = await import('./support/policies.ts');
    const uploaded = await upload(await buildFixture('chain-probe'));
    assert.equal(uploaded.status, 200, JSON.stringify(uploaded.body));
    good = uploaded.body.module as string;
    const pem = await (await request(`${cp.url}/admin/signing-key`, { headers: { authorization: `Bearer ${cp.adminToken}` }, dispatcher: agent })).body.text();
    keyFile = join(tempDir('gatehouse-key-'), 'control-plane.pem');
    writeFileSync(keyFile, pem);
    assert.equal((await admin('PUT', '/admin/apis/probe', probeApi(good, 'm1'))).status, 200);
    assert.equal((await admin('PUT', '/admin/gateways/gw-mod', { apis: ['probe'] })).status, 200);
    const token = (await admin('POST', '/admin/gateways/gw-mod/tokens', {})).body.token as string;
    gateway = await startGatewayProcess({
      env: { GATEHOUSE_CONFIG_URL: cp.url, GATEHOUSE_TOKEN: token, GATEHOUSE_SYNC_INTERVAL_MS: '200', GATEHOUSE_TRUSTED_KEY: keyFile },
    });
  });

  after(async () => {
    await gateway?.stop();
  });

  test('a module no longer named by the configuration or its backup is removed from the backup folder', async () => {
    const backupDir = tempDir('gatehouse-backup-prune-');
    const sha = good.slice('sha256:'.length);
    const moduleFiles = [`${sha}.wasm`, `${sha}.sig`].map((name) => join(backupDir, 'modules', name));
    const headerApi = (value: string) => ({
      pathPrefix: '/pruned',
      backend: { url: 'builtin:echo' },
      policies: { outbound: [{ policy: 'set-header', config: { name: 'x-config', value } }] },
    });
    assert.equal((await admin('PUT', '/admin/apis/pruned', { ...probeApi(good, 'p0'), pathPrefix: '/pruned' })).status, 200);
    assert.equal((await admin('PUT', '/admin/gateways/gw-prune', { apis: ['pruned'] })).status, 200);
    const token = (await admin('POST', '/admin/gateways/gw-prune/tokens', {})).body.token as string;
    const g = await startGatewayProcess({
      env: { GATEHOUSE_CONFIG_URL: cp.url, GATEHOUSE_TOKEN: token, GATEHOUSE_SYNC_INTERVAL_MS: '200', GATEHOUSE_TRUSTED_KEY: keyFile, GATEHOUSE_BACKUP_DIR: backupDir },
    });
    try {
      const applied = () => g.logs.filter((l) => l.msg === 'configuration from the control plane applied').length;
      await waitFor('the module configuration', () => applied() >= 1, 20_000);
      assert.deepEqual(moduleFiles.map((f) => readdirSync(join(backupDir, 'modules')).includes(f.split('/').at(-1)!)), [true, true]);
      // Two changes: the module is then named by neither the configuration in force nor the backup (current, previous).
      const hourAgo = new Date(Date.now() - 3_600_000);
      for (const [i, value] of ['v1', 'v2', 'v3'].entries()) {
        // Old enough to be removed (a younger file may be a replica's download in progress).
        for (const file of moduleFiles) utimesSync(file, hourAgo, hourAgo);
        assert.equal((await admin('PUT', '/admin/apis/pruned', headerApi(value))).status, 200);
        await waitFor(`change ${value}`, () => applied() >= i + 2, 10_000);
        const removed = g.logs.find((l) => l.msg === 'unused policy modules removed');
        // v1: the backup's current still names it; v2: its previous; v3: nothing does.
        assert.equal(removed !== undefined, value === 'v3', `removed after ${value}`);
        if (removed) assert.deepEqual(removed.modules, [good]);
      }
      assert.deepEqual(readdirSync(join(backupDir, 'modules')), []);
    } finally {
      await g.stop();
    }
  });

  test('a module that is not a loadable policy, a path, or an unknown digest is refused by the control plane', async () => {
    const garbage = await upload(new TextEncoder().encode('not wasm'));
    assert.equal(garbage.status, 400);
    assert.equal((await admin('PUT', '/admin/apis/probe2', probeApi('./policies/x.wasm', 'x'))).status, 400);
    const unknown = await admin('PUT', '/admin/apis/probe2', probeApi(`sha256:${'0'.repeat(64)}`, 'x'));
    assert.equal(unknown.status, 400);
    assert.match(JSON.stringify(unknown.body.problems), /no uploaded module sha256:0{64}/);
  });

  test('the gateway fetches the module, checks its digest and signature, and runs it', async () => {
    await gateway.waitForLog((l) => l.msg === 'configuration from the control plane applied', 20_000);
    assert.equal(await trace(), 'm1');
  });

  test('a module altered in the control plane\'s database is refused, and the running chain stays', async () => {
    const { buildFixture } = await import('./support/policies.ts');
    const second = await upload(await buildFixture('header-ops'));
    assert.equal(second.status, 200, JSON.stringify(second.body));
    const sha = String(second.body.module).slice('sha256:'.length);
    // Tampering at rest: the stored bytes change, the name and signature do not.
    withControlPlaneDb(dataDir,
      `const r=db.prepare('SELECT bytes FROM modules WHERE sha256=?').get(${JSON.stringify(sha)});const b=Buffer.from(r.bytes);b[b.length-1]^=1;` +
      `db.prepare('UPDATE modules SET bytes=? WHERE sha256=?').run(b,${JSON.stringify(sha)})`);
    // The control plane checks what it saves, the module's bytes against their name included.
    const refused = await admin('PUT', '/admin/apis/probe', probeApi(`sha256:${sha}`, 'm2'));
    assert.equal(refused.status, 400);
    assert.match(JSON.stringify(refused.body.problems), /does not match its sha256/);
    // Saved past that check (as one of another version might have), the gateway makes its own.
    saveApiPastTheCheck(dataDir, { id: 'probe', ...probeApi(`sha256:${sha}`, 'm2') });
    const rejected = await gateway.waitForLog((l) => String(l.msg).startsWith('configuration from the control plane rejected'), 10_000);
    assert.match(JSON.stringify(rejected.problems), /does not match its sha256/);
    assert.equal(await trace(), 'm1', 'the running chain stays');
  });

  test('a gateway that trusts another key refuses the control plane\'s modules', async () => {
    assert.equal((await admin('PUT', '/admin/apis/probe', probeApi(good, 'm3'))).status, 200);
    const { generateKeyPairSync } = await import('node:crypto');
    const otherKey = join(tempDir('gatehouse-key-'), 'other.pem');
    writeFileSync(otherKey, generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }) as string);
    const token = (await admin('POST', '/admin/gateways/gw-mod/tokens', {})).body.token as string;
    const wary = await startGatewayProcess({
      env: { GATEHOUSE_CONFIG_URL: cp.url, GATEHOUSE_TOKEN: token, GATEHOUSE_SYNC_INTERVAL_MS: '200', GATEHOUSE_TRUSTED_KEY: otherKey },
    });
    try {
      const rejected = await wary.waitForLog((l) => String(l.msg).startsWith('configuration from the control plane rejected'), 20_000);
      assert.match(JSON.stringify(rejected.problems), /signature is not the trusted control plane/);
      assert.equal((await send(wary.url, '/status-0123456789abcdef', { dispatcher: agent })).status, 503);
    } finally {
      await wary.stop();
    }
  });
});

describe('the module cache in the backup folder', () => {
  test('modules that neither the configuration in force nor the backup names are removed once 10 minutes old', async () => {
    const dir = tempDir('gatehouse-modules-prune-');
    const client = new ControlPlaneClient({ url: 'http://127.0.0.1:9', token: 'unused' });
    await client.close(); // prune makes no call
    const cache = new ModuleCache({ client, dir });
    const [inForce, backedUp, unused, recent] = ['a', 'b', 'c', 'd'].map((c) => c.repeat(64)) as [string, string, string, string];
    const hourAgo = new Date(Date.now() - 3_600_000);
    for (const sha of [inForce, backedUp, unused, recent]) {
      for (const ext of ['wasm', 'sig']) {
        writeFileSync(join(dir, `${sha}.${ext}`), 'x');
        if (sha !== recent) utimesSync(join(dir, `${sha}.${ext}`), hourAgo, hourAgo);
      }
    }
    writeFileSync(join(dir, 'notes.txt'), 'not a module');
    utimesSync(join(dir, 'notes.txt'), hourAgo, hourAgo);
    const doc = (sha: string) =>
      JSON.stringify({ version: 1, apis: [{ id: 'a', pathPrefix: '/a', backend: { url: 'builtin:echo' }, policies: { inbound: [{ module: `sha256:${sha}` }] } }] });
    // A document that cannot be read might name anything: nothing is removed.
    assert.deepEqual(await cache.prune([doc(inForce), '{"cut sho']), []);
    assert.deepEqual(await cache.prune([doc(inForce), doc(backedUp)]), [unused]);
    assert.deepEqual(readdirSync(dir).sort(), [...[backedUp, inForce, recent].sort().flatMap((sha) => [`${sha}.sig`, `${sha}.wasm`]), 'notes.txt'].sort());
  });
});

describe('gatehouse apply and get', () => {
  test('apply pushes a declared configuration, building and uploading a policy folder; get shows APIs, gateways and revisions', async () => {
    const { runCli } = await import('../runtime/operator-cli/gatehouse.ts');
    const { repoRoot } = await import('../runtime/assets/repo-root.ts');
    const dir = tempDir('gatehouse-apply-');
    const file = join(dir, 'gatehouse.yaml');
    writeFileSync(
      file,
      `controlPlane: ${cp.url}
namedValues:
  declared-key: { fromEnv: GATEHOUSE_TEST_DECLARED_KEY, secret: true }
apis:
  - id: declared
    pathPrefix: /declared
    backend: { url: builtin:echo }
    policies:
      inbound:
        - policy: check-header
          config: { name: x-api-key, values: ["{{declared-key}}"] }
      outbound:
        - source: ${join(repoRoot(), 'test', 'fixtures', 'policies', 'chain-probe')}
          config: { tag: declared }
gateways:
  - id: gw-declared
    apis: [declared]
`,
    );
    const out: string[] = [];
    const err: string[] = [];
    const io = { out: (l: string) => out.push(l), err: (l: string) => err.push(l) };
    const saved = { ...process.env };
    process.env.GATEHOUSE_ADMIN_TOKEN = cp.adminToken;
    process.env.GATEHOUSE_CONTROL_PLANE = cp.url;
    try {
      // A named value read from the environment: missing, the apply stops before it changes anything.
      assert.equal(await runCli(['apply', '-f', file], io), 1);
      assert.match(err.join('\n'), /namedValues\.declared-key\.fromEnv: the environment variable GATEHOUSE_TEST_DECLARED_KEY is not set/);
      assert.equal((await admin('GET', '/admin/apis/declared')).status, 404);
      process.env.GATEHOUSE_TEST_DECLARED_KEY = 'declared-secret-value';
      err.length = 0;
      assert.equal(await runCli(['apply', '-f', file], io), 0, err.join('\n'));
      assert.match(out.join('\n'), /named value declared-key: created/);
      assert.match(out.join('\n'), /module chain-probe .*: sha256:[0-9a-f]{64}/);
      assert.match(out.join('\n'), /api declared: created/);
      assert.match(out.join('\n'), /gateway gw-declared: created/);
      assert.match(out.join('\n'), /applied: revision \d+ \(APIs declared; gateways gw-declared; named values declared-key\)/);
      const stored = await admin('GET', '/admin/apis/declared');
      const outbound = (stored.body.policies as { outbound: { module?: string; source?: string }[] }).outbound[0]!;
      assert.match(String(outbound.module), /^sha256:[0-9a-f]{64}$/, 'the folder was replaced by the uploaded module');
      assert.equal(outbound.source, undefined);
      out.length = 0;
      assert.equal(await runCli(['get'], io), 0, err.join('\n'));
      assert.match(out.join('\n'), /declared\s+\/declared/);
      assert.match(out.join('\n'), /gw-declared: declared/);
      assert.match(out.join('\n'), /declared-key \(secret\): used by declared/);
      assert.ok(!out.join('\n').includes('declared-secret-value'));
      // Without the token: a clear error, exit 1.
      delete process.env.GATEHOUSE_ADMIN_TOKEN;
      assert.equal(await runCli(['get'], io), 1);
      assert.match(err.join('\n'), /set GATEHOUSE_ADMIN_TOKEN/);
    } finally {
      process.env = saved;
    }
  });
});
