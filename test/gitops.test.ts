// `gatehouse apply` for GitOps, `gatehouse delete`, references, and the fleet view (`gatehouse get`, GET
// /admin/gateways), against a real control plane process, with the real `gatehouse` command run as its own process
// (the npm launcher, bin/gatehouse.js).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isDeno } from '../runtime/adapters/index.ts';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { startControlPlane, type ControlPlaneProcess } from './support/control-plane-process.ts';
import { tempDir } from './support/gateway-process.ts';
import { send } from './support/requests.ts';
import { waitForAsync } from './support/wait.ts';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `command` (argv, or a shell line with `shell`) with `env` added, to its end. */
function run(command: string[], env: Record<string, string>, shell = false): Promise<Run> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = shell ? ['bash', '-o', 'pipefail', '-c', command.join(' ')] : command;
    const child = spawn(cmd!, args, { cwd: repoRoot(), env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The gatehouse command: a Node program (as the control plane, also when the suite runs under Deno). */
const NODE = isDeno ? 'node' : process.execPath;
const LAUNCHER = join(repoRoot(), 'bin', 'gatehouse.js');

/** The 1-based line of the first line of `text` containing `marker`. */
function lineOf(text: string, marker: string): number {
  const index = text.split('\n').findIndex((l) => l.includes(marker));
  assert.ok(index >= 0, `no line with ${marker}`);
  return index + 1;
}

describe('gatehouse apply for GitOps', () => {
  let cp: ControlPlaneProcess;
  let dir: string;
  const admin = (method: string, path: string, body?: unknown) => cp.admin(method, path, body);
  const env = () => ({ GATEHOUSE_ADMIN_TOKEN: cp.adminToken, GATEHOUSE_CONTROL_PLANE: cp.url });
  const gatehouse = (args: string[], extra: Record<string, string> = {}) => run([NODE, LAUNCHER, ...args], { ...env(), ...extra });
  const revisions = async () => ((await admin('GET', '/admin/revisions')).body.revisions as unknown[]).length;
  /** Writes `text` as a file of the test's folder; returns its path. */
  const file = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  const GOOD = `apis:
  - id: orders
    pathPrefix: /orders
    backend: { url: builtin:echo }
    policies:
      inbound:
        - policy: rate-limit
          config: { calls: 5, renewalPeriod: 86400 }
  - id: stock
    pathPrefix: /stock
    backend: { url: builtin:echo }
gateways:
  - id: edge
    apis: [orders, stock]
`;

  before(async () => {
    dir = tempDir('gatehouse-gitops-');
    cp = await startControlPlane(tempDir('gatehouse-cp-gitops-'));
  });

  after(async () => {
    await cp?.stop();
  });

  test('a policy name or configuration a gateway would refuse is refused at apply, at its line; nothing of the file is saved', async () => {
    const text = `apis:
  - id: fine
    pathPrefix: /fine
    backend: { url: builtin:echo }
  - id: typo
    pathPrefix: /typo
    backend: { url: builtin:echo }
    policies:
      inbound:
        - policy: rate-limt
  - id: sixty
    pathPrefix: /sixty
    backend: { url: builtin:echo }
    policies:
      inbound:
        - policy: rate-limit
          config: { calls: 5, renewalPeriod: "sixty" }
`;
    const path = file('bad.yaml', text);
    const before = await revisions();
    const result = await gatehouse(['apply', '-f', path]);
    assert.notEqual(result.code, 0, result.stdout);
    assert.match(result.stderr, new RegExp(`bad\\.yaml:${lineOf(text, 'policy: rate-limt')}: apis\\[1\\]\\.policies\\.inbound\\[0\\]: .*rate-limt`));
    assert.match(result.stderr, new RegExp(`bad\\.yaml:${lineOf(text, 'policy: rate-limit')}: apis\\[2\\]\\.policies\\.inbound\\[0\\]: .*renewalPeriod`));
    assert.equal(await revisions(), before, 'no revision');
    assert.equal((await admin('GET', '/admin/apis/fine')).status, 404, 'all or nothing: the valid API of the file was not saved either');
  });

  test('an unknown top-level key is an error naming the key and its line; nothing is sent', async () => {
    const text = `apis: []\ngateway:\n  - id: edge\n    apis: []\n`;
    const before = await revisions();
    const result = await gatehouse(['apply', '-f', file('typo.yaml', text)]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /typo\.yaml:2: gateway: unknown key \(a file declares controlPlane, namedValues, fragments, apis, gateways\); did you mean gateways\?/);
    assert.equal(result.stdout, '', 'not even the control plane is contacted');
    assert.equal(await revisions(), before);
  });

  test('apply makes one revision for the whole file, says which control plane (the environment over the file) and what it applied', async () => {
    const before = await revisions();
    // The file names a control plane nobody listens on: the environment's wins.
    const result = await gatehouse(['apply', '-f', file('good.yaml', `controlPlane: http://127.0.0.1:9\n${GOOD}`)]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, new RegExp(`^control plane ${cp.url} \\(from GATEHOUSE_CONTROL_PLANE\\)`));
    assert.match(result.stdout, /api orders: created\napi stock: created\ngateway edge: created/);
    assert.match(result.stdout, /applied: revision \d+ \(APIs orders, stock; gateways edge\)/);
    assert.equal(await revisions(), before + 1, 'one revision for three objects');
    const applied = cp.logs.find((l) => l.msg === 'configuration applied');
    assert.deepEqual(applied?.apis, ['orders created', 'stock created'], 'the control plane logs which APIs');

    // Without the environment variable, the file's control plane is used, and said so.
    const fromFile = await run([NODE, LAUNCHER, 'apply', '-f', file('file-cp.yaml', `controlPlane: ${cp.url}\n${GOOD}`)], { GATEHOUSE_ADMIN_TOKEN: cp.adminToken, GATEHOUSE_CONTROL_PLANE: '' });
    assert.equal(fromFile.code, 0, fromFile.stderr);
    assert.match(fromFile.stdout, /control plane .* \(from .*file-cp\.yaml:1\)/);
  });

  test('re-applying an unchanged file makes no revision', async () => {
    const before = await revisions();
    const result = await gatehouse(['apply', '-f', join(dir, 'good.yaml')]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /no change: revision \d+ is current \(3 unchanged\)/);
    assert.equal(await revisions(), before);
  });

  test('--dry-run prints each object and field that would change, and changes nothing', async () => {
    const changed = GOOD.replace('calls: 5', 'calls: 10').replace('  - id: stock\n    pathPrefix: /stock\n', '  - id: stock\n    pathPrefix: /stock2\n');
    const path = file('changed.yaml', `${changed}  - id: other\n    apis: [stock]\n`);
    const before = await revisions();
    const result = await gatehouse(['apply', '-f', path, '--dry-run']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /api orders: would be updated\n  policies\.inbound\[0\]\.config\.calls: 5 -> 10/);
    assert.match(result.stdout, /api stock: would be updated\n  pathPrefix: "\/stock" -> "\/stock2"/);
    assert.match(result.stdout, /gateway other: would be created/);
    assert.match(result.stdout, /dry run: nothing was changed/);
    assert.equal(await revisions(), before);
    assert.equal((await admin('GET', '/admin/apis/stock')).body.pathPrefix, '/stock');
    assert.equal((await admin('GET', '/admin/gateways')).body.gateways instanceof Array, true);
    assert.ok(!((await admin('GET', '/admin/gateways')).body.gateways as { id: string }[]).some((g) => g.id === 'other'));
  });

  test('--prune deletes, of the kinds the file declares, what it no longer declares; without it, nothing is deleted', async () => {
    const withoutStock = `apis:
  - id: orders
    pathPrefix: /orders
    backend: { url: builtin:echo }
    policies:
      inbound:
        - policy: rate-limit
          config: { calls: 5, renewalPeriod: 86400 }
gateways:
  - id: edge
    apis: [orders]
`;
    const path = file('pruned.yaml', withoutStock);
    const kept = await gatehouse(['apply', '-f', path]);
    assert.equal(kept.code, 0, kept.stderr);
    assert.equal((await admin('GET', '/admin/apis/stock')).status, 200, 'without --prune the API stays');
    const pruned = await gatehouse(['apply', '-f', path, '--prune']);
    assert.equal(pruned.code, 0, pruned.stderr);
    assert.match(pruned.stdout, /api stock: deleted/);
    assert.equal((await admin('GET', '/admin/apis/stock')).status, 404);
    // A file of APIs alone prunes no gateway.
    const apisOnly = await gatehouse(['apply', '-f', file('apis-only.yaml', withoutStock.slice(0, withoutStock.indexOf('gateways:'))), '--prune']);
    assert.equal(apisOnly.code, 0, apisOnly.stderr);
    assert.ok(((await admin('GET', '/admin/gateways')).body.gateways as { id: string }[]).some((g) => g.id === 'edge'));
  });

  test('references both ways: a gateway cannot name a missing API; an API in use is deleted only with --force, which says what it breaks', async () => {
    const missing = await admin('PUT', '/admin/gateways/edge', { apis: ['orders', 'nowhere'] });
    assert.equal(missing.status, 400);
    assert.match(JSON.stringify(missing.body.problems), /names API nowhere, which does not exist/);

    const refused = await gatehouse(['delete', 'api', 'orders']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /API orders is served by gateway edge/);
    assert.match(refused.stderr, /gatehouse delete --force/);
    assert.equal((await admin('GET', '/admin/apis/orders')).status, 200);

    const forced = await gatehouse(['delete', 'api', 'orders', '--force']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stdout, /forced: gateway edge stops serving API orders/);
    assert.match(forced.stdout, /deleted api orders \(revision \d+/);
    const get = await gatehouse(['get']);
    assert.match(get.stdout, /edge: orders\n {4}! names API orders, which does not exist/);

    // A named value or a module an API uses cannot go at all.
    assert.equal((await admin('PUT', '/admin/named-values/greeting', { value: 'hello' })).status, 200);
    const api = { pathPrefix: '/hello', backend: { url: 'builtin:echo' }, policies: { outbound: [{ policy: 'set-header', config: { name: 'x-hello', value: '{{greeting}}' } }] } };
    assert.equal((await admin('PUT', '/admin/apis/hello', api)).status, 200);
    const value = await gatehouse(['delete', 'named-value', 'greeting', '--force']);
    assert.equal(value.code, 1);
    assert.match(value.stderr, /named value greeting is used by api hello/);

    // Gateways can be deleted; what is not there is a JSON problem, never a plain-text 404.
    const gone = await gatehouse(['delete', 'gateway', 'edge']);
    assert.equal(gone.code, 0, gone.stderr);
    const again = await admin('DELETE', '/admin/gateways/edge');
    assert.equal(again.status, 404);
    assert.equal(again.body.detail, 'no gateway edge');
    const nowhere = await send(cp.url, '/admin/nowhere', { headers: { authorization: `Bearer ${cp.adminToken}` } });
    assert.equal(nowhere.status, 404);
    assert.equal(nowhere.headers['content-type'], 'application/problem+json');
    assert.match(JSON.parse(nowhere.body).detail, /no such endpoint: GET \/admin\/nowhere/);
  });

  test('a wrong admin token is told apart from a missing one, and logged without the token', async () => {
    const wrong = await gatehouse(['get'], { GATEHOUSE_ADMIN_TOKEN: 'not-the-token' });
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /401 the admin token is wrong/);
    const missing = await send(cp.url, '/admin/apis');
    assert.match(JSON.parse(missing.body).detail, /an admin token is required/);
    const logged = await cp.waitForLog((l) => l.msg === 'admin token refused' && l.reason === 'wrong', 5000);
    assert.ok(!JSON.stringify(cp.logs).includes('not-the-token'), 'the token is not logged');
    assert.equal(logged.path, '/admin/apis');
  });
});

describe('the fleet view', () => {
  let cp: ControlPlaneProcess;
  const admin = (method: string, path: string, body?: unknown) => cp.admin(method, path, body);
  const api = (header: string) => ({ pathPrefix: `/${header}`, backend: { url: 'builtin:echo' } });
  const heartbeat = (token: string, body: Record<string, unknown>) =>
    send(cp.url, '/gateway/v1/heartbeat', {
      method: 'POST',
      headers: { authorization: `GatewayKey ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ host: 'test-host', version: '0.1.0', uptimeSeconds: 1, health: 'ready', ...body }),
    });
  const instances = async (gateway: string) =>
    ((await admin('GET', '/admin/gateways')).body.gateways as { id: string; instances: Record<string, unknown>[] }[]).find((g) => g.id === gateway)!.instances;
  const gatehouse = (args: string[]) => run([NODE, LAUNCHER, ...args], { GATEHOUSE_ADMIN_TOKEN: cp.adminToken, GATEHOUSE_CONTROL_PLANE: cp.url });
  let tokenA: string;

  before(async () => {
    // Stale after 6 s of silence (long enough for a few runs of the command on a loaded machine), forgotten after 10 s
    // (minutes by default).
    cp = await startControlPlane(tempDir('gatehouse-cp-fleet-'), 0, { GATEHOUSE_CP_STALE_AFTER_MS: '6000', GATEHOUSE_CP_DROP_AFTER_MS: '10000' });
    for (const id of ['a1', 'b1']) assert.equal((await admin('PUT', `/admin/apis/${id}`, api(id))).status, 200);
    assert.equal((await admin('PUT', '/admin/gateways/gw-a', { apis: ['a1'] })).status, 200);
    assert.equal((await admin('PUT', '/admin/gateways/gw-b', { apis: ['b1'] })).status, 200);
    tokenA = (await admin('POST', '/admin/gateways/gw-a/tokens', { expiresInDays: 1 })).body.token as string;
  });

  after(async () => {
    await cp?.stop();
  });

  test('lag counts only the revisions that changed that gateway\'s document', async () => {
    const revision = (await admin('GET', '/admin/gateways')).body.revision as number;
    assert.equal((await heartbeat(tokenA, { instance: 'lag-1', revision })).status, 200);
    for (let i = 0; i < 3; i++) assert.equal((await admin('PUT', '/admin/apis/b1', { ...api('b1'), pathPrefix: `/b1-${i}` })).status, 200);
    assert.equal((await instances('gw-a')).find((i) => i.instance === 'lag-1')!.revisionsBehind, 0, 'three revisions of another gateway');
    assert.equal((await admin('PUT', '/admin/apis/a1', { ...api('a1'), pathPrefix: '/a1-new' })).status, 200);
    assert.equal((await instances('gw-a')).find((i) => i.instance === 'lag-1')!.revisionsBehind, 1);
  });

  test('the sync report of a heartbeat is kept and shown; stale instances are marked, then dropped; get marks token problems', async () => {
    const report = {
      instance: 'sync-1',
      revision: 3,
      configSource: 'backup',
      rejectedRevision: 7,
      rejectedReason: `apis[0].policies.inbound[0]: no policy named rate-limt ${'x'.repeat(300)}`,
      rejectedAt: new Date().toISOString(),
      tokenState: 'accepted',
      lastSyncAt: new Date().toISOString(),
      syncFailures: 2,
    };
    assert.equal((await heartbeat(tokenA, report)).status, 200);
    // An earlier gateway's heartbeat, without the report, is still taken.
    assert.equal((await heartbeat(tokenA, { instance: 'old-1', revision: null })).status, 200);
    const bad = await heartbeat(tokenA, { instance: 'bad-1', revision: null, tokenState: 'fine' });
    assert.equal(bad.status, 400);
    assert.match(JSON.parse(bad.body).detail, /tokenState must be "unknown", "accepted" or "refused"/);

    const shown = (await instances('gw-a')).find((i) => i.instance === 'sync-1')!;
    assert.equal(shown.configSource, 'backup');
    assert.equal(shown.rejectedRevision, 7);
    assert.equal((shown.rejectedReason as string).length, 200);
    assert.equal(shown.syncFailures, 2);
    assert.equal(shown.stale, false);
    const old = (await instances('gw-a')).find((i) => i.instance === 'old-1')!;
    assert.deepEqual([old.configSource, old.tokenState, old.syncFailures], [null, 'unknown', 0]);

    const get = await gatehouse(['get']);
    assert.equal(get.code, 0, get.stderr);
    assert.match(get.stdout, /sync-1 on test-host: revision 3 \(.*, from its backup\), ready, .*! token expires in 2\d h: issue a new one, ! refused revision 7: apis\[0\]/);
    assert.match(get.stdout, /! 2 failed polls, last answered \d+ s ago/);

    // A token the gateway says is refused, and a revoked token used since.
    assert.equal((await heartbeat(tokenA, { ...report, instance: 'refused-1', tokenState: 'refused' })).status, 200);
    assert.match((await gatehouse(['get'])).stdout, /refused-1 .*! its token is refused: issue a new one/);
    const tokenB = (await admin('POST', '/admin/gateways/gw-b/tokens', {})).body.token as string;
    assert.equal((await admin('POST', '/admin/gateways/gw-b/revoke-tokens')).status, 200);
    assert.equal((await heartbeat(tokenB, { instance: 'b-1', revision: null })).status, 401);
    assert.match((await gatehouse(['get'])).stdout, /gw-b: b1\n {4}! a token of this gateway was refused \d+ s ago \(revoked\): issue a new one/);

    // Silent for 6 s: stale (whatever it last said); for 10 s: gone.
    await waitForAsync('the instance to turn stale', async () => (await instances('gw-a')).find((i) => i.instance === 'sync-1')?.stale === true, 10_000);
    const stale = (await instances('gw-a')).find((i) => i.instance === 'sync-1')!;
    assert.equal(stale.health, 'stale');
    assert.equal(stale.reportedHealth, 'ready');
    assert.match((await gatehouse(['get'])).stdout, /sync-1 on test-host: .*, stale, .*! stale: no heartbeat for \d+ s/);
    await waitForAsync('the instance to be dropped', async () => !(await instances('gw-a')).some((i) => i.instance === 'sync-1'), 15_000);
  });

  test('gatehouse get into a pipe closed early ends cleanly: no EPIPE, no stack trace', async () => {
    const env = { GATEHOUSE_ADMIN_TOKEN: cp.adminToken, GATEHOUSE_CONTROL_PLANE: cp.url };
    const line = `${JSON.stringify(NODE)} ${JSON.stringify(LAUNCHER)} get`;
    const head = await run([`${line} | head -1`], env, true);
    assert.equal(head.code, 0, head.stderr);
    assert.equal(head.stdout, `control plane ${cp.url}, revision ${(await admin('GET', '/admin/gateways')).body.revision}\n`);
    assert.equal(head.stderr, '');
    // A reader gone before the first line: every write fails.
    const gone = await run([`${line} | true`], env, true);
    assert.equal(gone.code, 0, gone.stderr);
    assert.doesNotMatch(gone.stderr, /EPIPE|Error/);
  });
});
