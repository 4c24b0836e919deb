// Fail static against what the control plane serves, with real processes on 127.0.0.1: a control plane, gateways
// killed and restarted on their backup folder, and Redis. A control plane that answers with something the gateway
// cannot use (a revision it rejects, a token it refuses) counts as one that cannot be reached: the gateway starts from
// its backup, keeps serving, keeps polling, and says what it refused in its log, its heartbeat and its metrics.

import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { startControlPlane, type ControlPlaneProcess } from './support/control-plane-process.ts';
import { recordControlPlane, type ControlPlaneRecorder } from './support/control-plane-recorder.ts';
import { startGatewayProcess, tempDir, writeConfig, type GatewayProcess } from './support/gateway-process.ts';
import { freePort } from './support/ports.ts';
import { redisAvailable, startRedis } from './support/redis-process.ts';
import { send } from './support/requests.ts';
import { waitForAsync } from './support/wait.ts';

const agent = new Agent({ connections: 8 });
let dataDir: string;
let cp: ControlPlaneProcess;
const gateways: GatewayProcess[] = [];

before(async () => {
  dataDir = tempDir('gatehouse-fail-static-cp-');
  cp = await startControlPlane(dataDir);
});

after(async () => {
  await Promise.all(gateways.map((g) => g.stop()));
  await cp?.stop();
  await agent.close();
});

const admin = async (method: string, path: string, body?: unknown) => {
  const reply = await cp.admin(method, path, body);
  assert.ok(reply.status === 200, `${method} ${path}: ${reply.status} ${reply.text}`);
  return reply.body;
};

const echoApi = (prefix: string, value: string, extra: Record<string, unknown> = {}) => ({
  pathPrefix: prefix,
  backend: { url: 'builtin:echo' },
  policies: { outbound: [{ policy: 'set-header', config: { name: 'x-config', value } }] },
  ...extra,
});

async function gateway(env: Record<string, string>): Promise<GatewayProcess> {
  const g = await startGatewayProcess({ env: { GATEHOUSE_SYNC_INTERVAL_MS: '200', ...env } });
  gateways.push(g);
  return g;
}

const header = async (g: GatewayProcess, path: string) => (await send(g.url, path, { dispatcher: agent })).headers['x-config'];
const readyz = async (g: GatewayProcess) => {
  const reply = await send(`http://127.0.0.1:${g.adminPort}`, '/readyz', { dispatcher: agent });
  return { status: reply.status, body: JSON.parse(reply.body) as Record<string, unknown> };
};

/** The gateway's unlabelled metrics, by name. */
async function metricsOf(g: GatewayProcess): Promise<Map<string, number>> {
  const text = await (await request(`http://127.0.0.1:${g.adminPort}/metrics`, { dispatcher: agent })).body.text();
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+) (\S+)$/.exec(line);
    if (m) values.set(m[1]!, Number(m[2]));
  }
  return values;
}

/** The instance row the control plane keeps for `instance` of `gatewayId`, once `ok` holds for it (or fails after 5 s). */
async function instanceRow(gatewayId: string, instance: string, what: string, ok: (row: Record<string, unknown>) => boolean) {
  let row: Record<string, unknown> | undefined;
  await waitForAsync(what, async () => {
    const list = (await admin('GET', '/admin/gateways')) as { gateways: { id: string; instances: Record<string, unknown>[] }[] };
    row = list.gateways.find((g) => g.id === gatewayId)?.instances.find((i) => i.instance === instance);
    return row !== undefined && ok(row);
  }, 5000).catch((err: Error) => {
    throw new Error(`${err.message}; last seen: ${JSON.stringify(row)}`);
  });
  return row!;
}

describe('fail static: a revision the gateway rejects', () => {
  let recorder: ControlPlaneRecorder;
  let env: Record<string, string>;
  let module: string;
  let good: number;
  let bad: number;
  let first: GatewayProcess;
  let firstInstance: string;
  let second: GatewayProcess;
  let secondInstance: string;

  /** The instance id of the first heartbeat from an instance not in `known`, within 5 s. */
  async function newInstance(known: string[]): Promise<string> {
    const instances = () => recorder.calls.filter((c) => c.path === '/gateway/v1/heartbeat').map((c) => String((c.json as { instance?: unknown }).instance));
    await waitForAsync('a heartbeat from the new instance', async () => instances().some((i) => !known.includes(i)), 5000);
    return instances().find((i) => !known.includes(i))!;
  }

  /** The first heartbeat `instance` sent that satisfies `ok`, within 5 s: heartbeats go every minute otherwise. */
  async function heartbeat(instance: string, what: string, ok: (beat: Record<string, unknown>) => boolean) {
    let found: Record<string, unknown> | undefined;
    await waitForAsync(what, async () => (found = recorder.heartbeats(instance).find(ok)) !== undefined, 5000).catch((err: Error) => {
      throw new Error(`${err.message}; heartbeats seen: ${JSON.stringify(recorder.heartbeats(instance))}`);
    });
    return found!;
  }

  before(async () => {
    const { buildFixture } = await import('./support/policies.ts');
    recorder = await recordControlPlane(cp.url);
    const uploaded = await request(`${cp.url}/admin/modules`, {
      method: 'POST',
      headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/wasm' },
      body: await buildFixture('chain-probe'),
      dispatcher: agent,
    });
    module = String(((await uploaded.body.json()) as { module: string }).module);
    // The gateways trust another control plane's key: every module this one signs fails its signature check there,
    // while the control plane itself, which checks what it saves, accepts the API that names it.
    const otherKey = generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }) as string;
    const keyFile = join(tempDir('gatehouse-fail-static-key-'), 'other-control-plane.pem');
    writeFileSync(keyFile, otherKey);
    await admin('PUT', '/admin/apis/shelf', echoApi('/shelf', 'good'));
    // The revision a gateway runs is the control plane's revision when it fetched the document: this one.
    good = (await admin('PUT', '/admin/gateways/gw-rejects', { apis: ['shelf'] })).revision as number;
    const token = (await admin('POST', '/admin/gateways/gw-rejects/tokens', {})).token as string;
    // Heartbeats every minute (the default): only a heartbeat sent right after a change can show it within a test.
    env = { GATEHOUSE_CONFIG_URL: recorder.url, GATEHOUSE_TOKEN: token, GATEHOUSE_BACKUP_DIR: tempDir('gatehouse-fail-static-backup-'), GATEHOUSE_TRUSTED_KEY: keyFile };
    first = await gateway(env);
    await first.waitForLog((l) => l.msg === 'configuration from the control plane applied', 15_000);
    firstInstance = await newInstance([]);
  });

  after(() => recorder?.close());

  test('the gateway logs at start the instance id its heartbeats carry, and the control plane lists it under that id', async () => {
    const listening = await first.waitForLog((l) => l.msg === 'gatehouse listening');
    assert.equal(listening.instance, firstInstance);
    assert.match(firstInstance, /^[0-9a-f-]{36}$/);
    await instanceRow('gw-rejects', firstInstance, 'the instance in the fleet view', () => true);
  });

  test('its first heartbeat goes after its first configuration is applied, ready at its revision', async () => {
    await heartbeat(firstInstance, 'a first heartbeat', () => true);
    const [beat] = recorder.heartbeats(firstInstance);
    assert.equal(beat!.revision, good, `the first heartbeat carries the revision applied: ${JSON.stringify(beat)}`);
    assert.equal(beat!.health, 'ready');
    assert.equal(beat!.configSource, 'control-plane');
    assert.equal(beat!.tokenState, 'accepted');
    assert.equal(beat!.syncFailures, 0);
    assert.equal(beat!.rejectedRevision, null);
    assert.ok(Math.abs(Date.parse(String(beat!.lastSyncAt)) - Date.now()) < 10_000, `lastSyncAt ${beat!.lastSyncAt}`);
    await instanceRow('gw-rejects', firstInstance, 'the instance ready at its revision in the fleet view', (r) => r.revision === good && r.health === 'ready');
    const applied = await first.waitForLog((l) => l.msg === 'configuration from the control plane applied');
    assert.equal(applied.revision, good);
    assert.deepEqual(applied.apis, ['shelf'], 'the log says which APIs were applied');
    assert.equal(await header(first, '/shelf/x'), 'good');
  });

  test('a revision it rejects: the revision in force stays and the log says which, and a heartbeat right after says what was rejected', async () => {
    // The API now names a module whose signature the gateway does not trust: every gateway must refuse it.
    bad = (await admin('PUT', '/admin/apis/shelf', { ...echoApi('/shelf', 'bad'), policies: { outbound: [{ module, config: { tag: 'bad' } }] } })).revision as number;
    const rejected = await first.waitForLog((l) => String(l.msg).startsWith('configuration from the control plane rejected'), 15_000);
    assert.equal(await header(first, '/shelf/x'), 'good');
    assert.match(JSON.stringify(rejected.problems), /signature is not the trusted control plane's/);
    const beat = await heartbeat(firstInstance, 'a heartbeat right after the refusal', (b) => b.rejectedRevision === bad);
    assert.equal(beat.revision, good);
    assert.equal(beat.configSource, 'control-plane');
    assert.match(String(beat.rejectedReason), /signature is not the trusted control plane's/);
    assert.ok(Math.abs(Date.parse(String(beat.rejectedAt)) - Date.now()) < 10_000, `rejectedAt ${beat.rejectedAt}`);
    assert.ok(Number(beat.syncFailures) >= 1);
    assert.equal(rejected.revision, bad);
    assert.equal(rejected.inForce, good);
    assert.match(String(rejected.msg), new RegExp(`revision ${good} stays in force`));
    const metrics = await metricsOf(first);
    assert.equal(metrics.get('gatehouse_sync_revision'), good);
    assert.equal(metrics.get('gatehouse_sync_rejected_revision'), bad);
    assert.equal(metrics.get('gatehouse_sync_serving_backup'), 0);
  });

  test('restarted while the control plane serves the revision it rejects, it starts from its backup and is ready', async () => {
    await first.stop();
    second = await gateway(env);
    const started = await second.waitForLog((l) => String(l.msg).startsWith('started from the configuration backup'), 15_000);
    assert.equal((await readyz(second)).status, 200);
    assert.equal(await header(second, '/shelf/x'), 'good');
    assert.match(String(started.msg), new RegExp(`revision ${bad} .*rejected`));
    assert.equal(started.revision, good);
    assert.equal(started.rejectedRevision, bad);
    assert.ok(!second.logs.some((l) => String(l.msg).includes('the running configuration stays in force')), 'nothing claims a configuration that is not there');
    secondInstance = await newInstance([firstInstance]);
  });

  test('its metrics and its heartbeat say it serves the backup, and which revision it rejected', async () => {
    const metrics = await metricsOf(second);
    assert.equal(metrics.get('gatehouse_sync_revision'), good);
    assert.equal(metrics.get('gatehouse_sync_rejected_revision'), bad);
    assert.equal(metrics.get('gatehouse_sync_serving_backup'), 1);
    assert.equal(metrics.get('gatehouse_sync_token_refused'), 0);
    assert.equal(metrics.get('gatehouse_sync_last_success_timestamp_seconds'), 0, 'it was never in step with the control plane');
    assert.ok((metrics.get('gatehouse_sync_consecutive_failures') ?? 0) >= 1, 'a revision it cannot use is not a successful sync');
    const beat = await heartbeat(secondInstance, 'a heartbeat after the start from the backup', (b) => b.revision === good);
    assert.equal(recorder.heartbeats(secondInstance)[0]!.revision, good, 'no heartbeat went before the first poll');
    assert.equal(beat.health, 'ready');
    assert.equal(beat.configSource, 'backup');
    assert.equal(beat.rejectedRevision, bad);
    assert.equal(beat.lastSyncAt, null);
    await instanceRow('gw-rejects', secondInstance, 'the restarted instance in the fleet view', (r) => r.revision === good && r.health === 'ready');
  });

  test('the next good revision is applied at the next poll, and the rejection is over', async () => {
    const fixed = (await admin('PUT', '/admin/apis/shelf', echoApi('/shelf', 'fixed'))).revision as number;
    await waitForAsync('the good revision after the bad one', async () => (await header(second, '/shelf/x')) === 'fixed', 10_000);
    const metrics = await metricsOf(second);
    assert.equal(metrics.get('gatehouse_sync_revision'), fixed);
    assert.equal(metrics.get('gatehouse_sync_rejected_revision'), 0);
    assert.equal(metrics.get('gatehouse_sync_serving_backup'), 0);
    assert.equal(metrics.get('gatehouse_sync_consecutive_failures'), 0);
    assert.ok(Math.abs((metrics.get('gatehouse_sync_last_success_timestamp_seconds') ?? 0) - Date.now() / 1000) < 10);
    const beat = await heartbeat(secondInstance, 'a heartbeat right after the good revision', (b) => b.revision === fixed);
    assert.equal(beat.rejectedRevision, null);
    assert.equal(beat.rejectedReason, null);
    assert.equal(beat.configSource, 'control-plane');
    assert.equal(beat.syncFailures, 0);
  });
});

describe('fail static: a token the control plane refuses', () => {
  let token: string;
  let env: Record<string, string>;
  let running: GatewayProcess;

  before(async () => {
    await admin('PUT', '/admin/apis/bin', echoApi('/bin', 'kept'));
    await admin('PUT', '/admin/gateways/gw-revoked', { apis: ['bin'] });
    token = (await admin('POST', '/admin/gateways/gw-revoked/tokens', {})).token as string;
    env = { GATEHOUSE_CONFIG_URL: cp.url, GATEHOUSE_TOKEN: token, GATEHOUSE_BACKUP_DIR: tempDir('gatehouse-fail-static-token-') };
    running = await gateway(env);
    await running.waitForLog((l) => l.msg === 'configuration from the control plane applied', 15_000);
  });

  test('revoked under a running gateway: it keeps serving and stays ready, and its metrics say the token is refused', async () => {
    const before = await metricsOf(running);
    await admin('POST', '/admin/gateways/gw-revoked/revoke-tokens');
    assert.equal(before.get('gatehouse_sync_token_refused'), 0);
    const expiry = before.get('gatehouse_sync_token_expiry_timestamp_seconds') ?? 0;
    assert.ok(Math.abs(expiry - (Date.now() / 1000 + 30 * 86_400)) < 120, `token expiry ${expiry}`);
    const refused = await running.waitForLog((l) => l.msg === 'the control plane refused this gateway\'s token', 10_000);
    assert.equal((await readyz(running)).status, 200, 'a configuration is in force: ready');
    assert.equal(await header(running, '/bin/x'), 'kept');
    assert.match(String(refused.serving), /revision \d+ from the control plane/);
    assert.match(String(refused.action), /token/);
    await waitForAsync('the refused token in the metrics', async () => (await metricsOf(running)).get('gatehouse_sync_token_refused') === 1, 5000);
    assert.ok(((await metricsOf(running)).get('gatehouse_sync_consecutive_failures') ?? 0) >= 1);
  });

  test('restarted with the refused token, it starts from its backup and is ready', async () => {
    await running.stop();
    const restarted = await gateway(env);
    const started = await restarted.waitForLog((l) => String(l.msg).startsWith('started from the configuration backup'), 15_000);
    assert.equal((await readyz(restarted)).status, 200);
    assert.equal(await header(restarted, '/bin/x'), 'kept');
    assert.match(String(started.msg), /refused this gateway's token/);
    assert.equal((await metricsOf(restarted)).get('gatehouse_sync_token_refused'), 1);
  });

  test('refused with no backup to start from: not ready, and /readyz says the token was refused', async () => {
    const g = await gateway({ GATEHOUSE_CONFIG_URL: cp.url, GATEHOUSE_TOKEN: token });
    await g.waitForLog((l) => l.msg === 'the control plane refused this gateway\'s token', 10_000);
    assert.equal((await send(g.url, '/status-0123456789abcdef', { dispatcher: agent })).status, 503);
    await waitForAsync('the reason on /readyz', async () => /refused this gateway's token/.test(String((await readyz(g)).body.reason)), 5000);
    const ready = await readyz(g);
    assert.equal(ready.status, 503);
    assert.match(String(ready.body.reason), /^no configuration loaded: /);
  });
});

describe('messages say what is true and what to do', () => {
  test('control plane unreachable with nothing loaded and an empty backup folder: the log says nothing is served and why no backup was used', async () => {
    const port = await freePort();
    const empty = tempDir('gatehouse-fail-static-empty-');
    const g = await gateway({ GATEHOUSE_CONFIG_URL: `http://127.0.0.1:${port}`, GATEHOUSE_TOKEN: 'gw1.gw-none.1.1.AAAA', GATEHOUSE_BACKUP_DIR: empty });
    const unreachable = await g.waitForLog((l) => String(l.msg).startsWith('control plane unreachable'), 10_000);
    assert.doesNotMatch(String(unreachable.msg), /serving the configuration in memory/);
    assert.match(String(unreachable.msg), /no configuration/);
    assert.match(String(unreachable.action), new RegExp(`127\\.0\\.0\\.1:${port}`));
    const none = await g.waitForLog((l) => String(l.msg).startsWith('no usable configuration backup'), 10_000);
    const problems = none.problems as string[];
    assert.ok(problems.length > 0, 'an empty folder is a reason too');
    assert.ok(problems.some((p) => p.includes(empty)), JSON.stringify(problems));
    const ready = await readyz(g);
    assert.equal(ready.status, 503);
    assert.match(String(ready.body.reason), /unreachable/);
  });

  test('a Redis that refuses the connection is logged with its address and the error, not as "connection closed"', async () => {
    assert.ok(redisAvailable(), 'redis-server is not on PATH: install it (apt-get install redis-server); .ci/run does');
    const redis = await startRedis();
    await redis.stop(); // its port now refuses connections
    const config = writeConfig(tempDir(), 'gateway.yaml', 'version: 1\napis:\n  - id: echo\n    pathPrefix: /echo\n    backend: { url: builtin:echo }\n');
    const g = await startGatewayProcess({ config, env: { GATEHOUSE_REDIS_URL: redis.url } });
    gateways.push(g);
    const line = await g.waitForLog((l) => String(l.msg).startsWith('Redis unreachable'), 10_000);
    assert.equal(line.redis, `127.0.0.1:${redis.port}`);
    assert.match(String(line.error), /ECONNREFUSED|refused/i);
    assert.match(String(line.action), /GATEHOUSE_REDIS_URL/);
  });
});
