// Gateway tokens rotated without an outage: several valid at once, each revocable by its id, unique when issued in the
// same second, managed with `gatehouse token`, and read by the gateway from a file it reads again before each call (as
// a Kubernetes Secret volume updates it). Real processes on 127.0.0.1: the control plane (SQLite), gateways, the CLI.

import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Agent } from 'undici';
import { startControlPlane, type ControlPlaneProcess } from './support/control-plane-process.ts';
import { startGatewayProcess, tempDir } from './support/gateway-process.ts';
import { runGatehouse } from './support/gatehouse-cli.ts';
import { SecretVolume } from './support/secret-volume.ts';
import { earlierFormatToken, tokenKeyOf } from './support/token-key.ts';
import { send } from './support/requests.ts';
import { waitForAsync } from './support/wait.ts';

const agent = new Agent({ connections: 4 });
let cp: ControlPlaneProcess;
let dataDir: string;

const admin = (method: string, path: string, body?: unknown) => cp.admin(method, path, body);
const config = (token: string) => send(cp.url, '/gateway/v1/config', { headers: { authorization: `GatewayKey ${token}` }, dispatcher: agent });
const echoApi = (prefix: string, value: string) => ({
  pathPrefix: prefix,
  backend: { url: 'builtin:echo' },
  policies: { outbound: [{ policy: 'set-header', config: { name: 'x-config', value } }] },
});
/** `gatehouse` against this test's control plane, with its admin token. */
const gatehouse = (...args: string[]) => runGatehouse(args, { GATEHOUSE_CONTROL_PLANE: cp.url, GATEHOUSE_ADMIN_TOKEN: cp.adminToken, GATEHOUSE_ADMIN_TOKEN_FILE: undefined });

interface TokenRow {
  id: string;
  state: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}
const tokensOf = async (gateway: string) => (await admin('GET', `/admin/gateways/${gateway}/tokens`)).body.tokens as TokenRow[];

before(async () => {
  dataDir = tempDir('gatehouse-cp-tokens-');
  cp = await startControlPlane(dataDir);
});

after(async () => {
  await cp?.stop();
  await agent.close();
});

describe('gateway tokens in the admin API', () => {
  test('two tokens issued in the same second differ; both are valid; one is revoked by its id and the other stays valid', async () => {
    assert.equal((await admin('PUT', '/admin/gateways/gw-pair', { apis: [] })).status, 200);
    // Two at once, again until a pair falls within one second (expiry has a resolution of a second).
    let [a, b] = [await admin('POST', '/admin/gateways/gw-pair/tokens', {}), await admin('POST', '/admin/gateways/gw-pair/tokens', {})];
    // Tokens of pairs that straddled a second stay valid: they count among the tokens left after the revocation.
    let issued = 2;
    for (let i = 0; i < 5 && a.body.expiresAt !== b.body.expiresAt; i++) {
      [a, b] = await Promise.all([admin('POST', '/admin/gateways/gw-pair/tokens', {}), admin('POST', '/admin/gateways/gw-pair/tokens', {})]);
      issued += 2;
    }
    assert.equal(a.status, 200);
    assert.equal(b.status, 200);
    assert.equal(a.body.expiresAt, b.body.expiresAt, 'issued in the same second');
    assert.notEqual(a.body.token, b.body.token);
    assert.notEqual(a.body.id, b.body.id);
    const [tokenA, tokenB] = [String(a.body.token), String(b.body.token)];
    assert.equal((await config(tokenA)).status, 200);
    assert.equal((await config(tokenB)).status, 200);

    const revoked = await admin('POST', `/admin/gateways/gw-pair/tokens/${a.body.id}/revoke`);
    assert.equal(revoked.status, 200, revoked.text);
    assert.equal(revoked.body.state, 'revoked');
    assert.equal(revoked.body.validTokensLeft, issued - 1);
    const refused = await config(tokenA);
    assert.equal(refused.status, 401);
    const problem = JSON.parse(refused.body) as { reason: string; detail: string };
    assert.equal(problem.reason, 'revoked');
    assert.match(problem.detail, new RegExp(`gateway token ${a.body.id} revoked at \\d{4}-`));
    assert.equal((await config(tokenB)).status, 200, 'the other token stays valid');
    const logged = await cp.waitForLog((l) => l.msg === 'gateway token refused' && l.tokenId === a.body.id);
    assert.equal(logged.gateway, 'gw-pair');

    const listed = (await tokensOf('gw-pair')).filter((t) => t.id === a.body.id || t.id === b.body.id);
    assert.deepEqual(listed.map((t) => [t.id, t.state]).sort(), [[a.body.id, 'revoked'], [b.body.id, 'valid']].sort());
    assert.ok(listed.every((t) => t.lastUsedAt !== null), 'each was used');
    assert.ok(!JSON.stringify(listed).includes(tokenB), 'a listing names tokens by id, never shows one');

    // Revoked twice: the same answer, the first time kept. A token of another gateway, or none: 404 naming it.
    const again = await admin('POST', `/admin/gateways/gw-pair/tokens/${a.body.id}/revoke`);
    assert.equal(again.body.revokedAt, revoked.body.revokedAt);
    assert.equal((await admin('PUT', '/admin/gateways/gw-other', { apis: [] })).status, 200);
    const elsewhere = await admin('POST', `/admin/gateways/gw-other/tokens/${b.body.id}/revoke`);
    assert.equal(elsewhere.status, 404);
    assert.match(String(elsewhere.body.detail), new RegExp(`gateway gw-other has no token ${b.body.id}`));
    assert.equal((await config(tokenB)).status, 200);
  });

  test('revoke-tokens still revokes every token of the gateway at once; a token issued after it is valid', async () => {
    assert.equal((await admin('PUT', '/admin/gateways/gw-all', { apis: [] })).status, 200);
    const before = await Promise.all([1, 2].map(async () => String((await admin('POST', '/admin/gateways/gw-all/tokens', {})).body.token)));
    for (const t of before) assert.equal((await config(t)).status, 200);
    assert.equal((await admin('POST', '/admin/gateways/gw-all/revoke-tokens')).status, 200);
    for (const t of before) assert.equal((await config(t)).status, 401);
    assert.deepEqual((await tokensOf('gw-all')).map((t) => t.state), ['revoked', 'revoked']);
    const after = String((await admin('POST', '/admin/gateways/gw-all/tokens', {})).body.token);
    assert.equal((await config(after)).status, 200);
  });
});

describe('tokens of the earlier format (gw1., no id), held by gateways running when the control plane is upgraded', () => {
  const seconds = () => Math.floor(Date.now() / 1000);

  test('accepted while signed, unexpired and of the current generation: the gateway syncs, the use is logged once and listed; revoke --all refuses it', async () => {
    assert.equal((await admin('PUT', '/admin/apis/earlier', echoApi('/earlier', 'e1'))).status, 200);
    assert.equal((await admin('PUT', '/admin/gateways/gw-earlier', { apis: ['earlier'] })).status, 200);
    // Expiring within a day: its holder warns, reading the expiry from a token without an id.
    const expires = seconds() + 20 * 3600;
    const token = earlierFormatToken(tokenKeyOf(dataDir), 'gw-earlier', 1, expires);
    assert.equal((await config(token)).status, 200);
    const listedFirst = await admin('GET', '/admin/gateways/gw-earlier/tokens');
    assert.deepEqual(listedFirst.body.tokens, [], 'it has no row');
    assert.equal(listedFirst.body.earlierFormatExpiresAt, new Date(expires * 1000).toISOString());
    const gateway = await startGatewayProcess({
      env: { GATEHOUSE_CONFIG_URL: cp.url, GATEHOUSE_TOKEN: token, GATEHOUSE_SYNC_INTERVAL_MS: '200', GATEHOUSE_HEARTBEAT_INTERVAL_MS: '200' },
    });
    try {
      await gateway.waitForLog((l) => l.msg === 'configuration from the control plane applied', 15_000);
      assert.equal((await send(gateway.url, '/earlier/x', { dispatcher: agent })).headers['x-config'], 'e1');
      const warned = await gateway.waitForLog((l) => String(l.msg).startsWith('the gateway token expires soon'), 5000);
      assert.equal(warned.gateway, 'gw-earlier');
      assert.equal(warned.expiresAt, new Date(expires * 1000).toISOString());
      assert.ok(warned.hoursLeft === 19 || warned.hoursLeft === 20, `hoursLeft ${warned.hoursLeft}`);
      // A change reaches it; meanwhile it polls and beats many times, and the control plane says so once.
      assert.equal((await admin('PUT', '/admin/apis/earlier', echoApi('/earlier', 'e2'))).status, 200);
      await waitForAsync('e2 through the gw1 token', async () => (await send(gateway.url, '/earlier/x', { dispatcher: agent })).headers['x-config'] === 'e2', 10_000);
      await new Promise((r) => setTimeout(r, 1000));
      const notices = cp.logs.filter((l) => l.msg === 'gateway uses a token of the earlier format (gw1., without an id)' && l.gateway === 'gw-earlier');
      assert.equal(notices.length, 1, 'logged once per gateway, not per request');
      assert.equal(notices[0]!.level, 'warn');
      assert.equal(notices[0]!.expiresAt, new Date(expires * 1000).toISOString());
      assert.match(String(notices[0]!.action), /issue it a new token \(gatehouse token issue gw-earlier\).*revoke the old ones with --all/);

      const listed = await admin('GET', '/admin/gateways/gw-earlier/tokens');
      const lastUsed = Date.parse(String(listed.body.earlierFormatLastUsedAt));
      assert.ok(Date.now() - lastUsed < 15_000, `earlierFormatLastUsedAt ${listed.body.earlierFormatLastUsedAt}`);
      const cli = await gatehouse('token', 'list', 'gw-earlier');
      assert.equal(cli.code, 0, cli.stderr);
      assert.match(cli.stdout, /earlierFormatLastUsed \d{4}-\S+Z  expires \d{4}-\S+Z: a token of the earlier format \(gw1\., no id\) is in use/);

      const revoked = await gatehouse('token', 'revoke', 'gw-earlier', '--all');
      assert.equal(revoked.code, 0, revoked.stderr);
      const refused = await config(token);
      assert.equal(refused.status, 401);
      const problem = JSON.parse(refused.body) as { reason: string; detail: string };
      assert.equal(problem.reason, 'revoked');
      assert.match(problem.detail, /earlier format \(gw1\.\) revoked, with every token of gateway gw-earlier .*gatehouse token issue gw-earlier/);
      await gateway.waitForLog((l) => l.msg === "the control plane refused this gateway's token" && /earlier format/.test(String(l.detail)), 5000);
      assert.equal((await send(gateway.url, '/earlier/x', { dispatcher: agent })).headers['x-config'], 'e2', 'it keeps serving what it has');
    } finally {
      await gateway.stop();
    }
    const after = await admin('GET', '/admin/gateways/gw-earlier/tokens');
    assert.equal(after.body.earlierFormatLastUsedAt, null, 'no token of the earlier format can be in use any more');
    assert.doesNotMatch((await gatehouse('token', 'list', 'gw-earlier')).stdout, /earlierFormatLastUsed/);
  });

  test('expired, forged, too long-lived, or for a gateway that does not exist: refused; a token issued now is gw2', async () => {
    assert.equal((await admin('PUT', '/admin/gateways/gw-earlier-refused', { apis: [] })).status, 200);
    const key = tokenKeyOf(dataDir);
    const reasonOf = async (token: string) => {
      const reply = await config(token);
      assert.equal(reply.status, 401, reply.body);
      return JSON.parse(reply.body) as { reason: string; detail: string };
    };
    assert.equal((await reasonOf(earlierFormatToken(key, 'gw-earlier-refused', 1, seconds() - 60))).reason, 'expired');
    assert.equal((await reasonOf(earlierFormatToken(Buffer.alloc(32, 9), 'gw-earlier-refused', 1, seconds() + 3600))).reason, 'forged');
    const [, , generation, expiry, signature] = earlierFormatToken(key, 'gw-earlier-refused', 1, seconds() + 3600).split('.');
    assert.equal((await reasonOf(['gw1', 'gw-earlier-refused', generation, String(Number(expiry) + 86_400), signature].join('.'))).reason, 'forged');
    assert.equal((await reasonOf(earlierFormatToken(key, 'gw-earlier-refused', 1, seconds() + 60 * 86_400))).reason, 'lifetime-exceeded');
    const nowhere = await reasonOf(earlierFormatToken(key, 'gw-nowhere', 1, seconds() + 3600));
    assert.match(nowhere.detail, /earlier format \(gw1\.\) for gateway gw-nowhere, which does not exist/);
    assert.equal((await admin('GET', '/admin/gateways/gw-earlier-refused/tokens')).body.earlierFormatLastUsedAt, null, 'a refused token is no use');
    assert.match(String((await admin('POST', '/admin/gateways/gw-earlier-refused/tokens', {})).body.token), /^gw2\./);
  });
});

describe('gatehouse token issue|list|revoke', () => {
  test('issue prints the token alone, list shows each with its state and last use, revoke takes one by id', async () => {
    assert.equal((await admin('PUT', '/admin/gateways/gw-cli', { apis: [] })).status, 200);
    const issued = await gatehouse('token', 'issue', 'gw-cli', '--days', '7');
    assert.equal(issued.code, 0, issued.stderr);
    const token = issued.stdout.trim();
    assert.equal(issued.stdout, `${token}\n`, 'the token alone, for $(...) or a file');
    assert.match(token, /^gw2\.gw-cli\.\d+\.\d+\.[0-9a-f]{16}\.[A-Za-z0-9_-]{43}$/);
    const id = token.split('.')[4]!;
    assert.match(issued.stderr, new RegExp(`gateway gw-cli: token ${id} issued by ${cp.url}, expires \\d{4}-`));
    assert.equal((await config(token)).status, 200);
    const second = (await gatehouse('token', 'issue', 'gw-cli')).stdout.trim();

    const listed = await gatehouse('token', 'list', 'gw-cli');
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, new RegExp(`${id}  valid {4}issued \\S+  expires \\S+  revoked -  last used \\d{4}-`));
    assert.match(listed.stdout, new RegExp(`${second.split('.')[4]}  valid {4}.*revoked -  last used -`));
    assert.ok(!listed.stdout.includes(token));

    const revoked = await gatehouse('token', 'revoke', 'gw-cli', id);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.match(revoked.stdout, new RegExp(`gateway gw-cli: token ${id} revoked \\d{4}-`));
    assert.equal((await config(token)).status, 401);
    assert.equal((await config(second)).status, 200);
    assert.match((await gatehouse('token', 'list', 'gw-cli')).stdout, new RegExp(`${id}  revoked  issued \\S+  expires \\S+  revoked \\d{4}-`));

    // The last valid one: revoked, with a warning that the gateway is left without one.
    const last = await gatehouse('token', 'revoke', 'gw-cli', second.split('.')[4]!);
    assert.equal(last.code, 0);
    assert.match(last.stderr, /gateway gw-cli has no valid token left/);
    const all = await gatehouse('token', 'revoke', 'gw-cli', '--all');
    assert.equal(all.code, 0, all.stderr);
    assert.match(all.stdout, /every token issued so far is revoked/);
  });

  test('mistakes: a gateway that does not exist, an id it does not have, a missing argument', async () => {
    const unknown = await gatehouse('token', 'issue', 'gw-nowhere');
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /gatehouse: POST \/admin\/gateways\/gw-nowhere\/tokens: 404 no gateway gw-nowhere/);
    assert.equal(unknown.stdout, '', 'nothing a script could take for a token');
    const noSuchId = await gatehouse('token', 'revoke', 'gw-cli', '0123456789abcdef');
    assert.equal(noSuchId.code, 1);
    assert.match(noSuchId.stderr, /gateway gw-cli has no token 0123456789abcdef \(gatehouse token list gw-cli shows its tokens\)/);
    const noId = await gatehouse('token', 'revoke', 'gw-cli');
    assert.equal(noId.code, 1);
    assert.match(noId.stderr, /token revoke needs the token's id/);
    const usage = await gatehouse('token');
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /gatehouse token issue <gateway>/);
  });
});

describe('a gateway reading its token from GATEHOUSE_TOKEN_FILE', () => {
  test('rotation: token B written over A in a Secret volume is used without a restart or a refused call; A revoked, syncing goes on', async () => {
    assert.equal((await admin('PUT', '/admin/apis/rotated', echoApi('/rotated', 'r1'))).status, 200);
    assert.equal((await admin('PUT', '/admin/gateways/gw-rot', { apis: ['rotated'] })).status, 200);
    const issue = async () => {
      const run = await gatehouse('token', 'issue', 'gw-rot');
      assert.equal(run.code, 0, run.stderr);
      const token = run.stdout.trim();
      return { token, id: token.split('.')[4]! };
    };
    const a = await issue();
    const volume = new SecretVolume(join(tempDir('gatehouse-secret-'), 'gateway-token'));
    volume.write({ token: `${a.token}\n` });
    const gateway = await startGatewayProcess({
      env: { GATEHOUSE_CONFIG_URL: cp.url, GATEHOUSE_TOKEN_FILE: volume.path('token'), GATEHOUSE_SYNC_INTERVAL_MS: '200', GATEHOUSE_HEARTBEAT_INTERVAL_MS: '300' },
    });
    let sent = 0;
    const failed: number[] = [];
    let sending = true;
    let traffic: Promise<void> = Promise.resolve();
    try {
      const read = await gateway.waitForLog((l) => l.msg === 'gateway token read from its file', 5000);
      assert.equal(read.tokenId, a.id);
      assert.ok(!JSON.stringify(gateway.logs).includes(a.token), 'the token itself is never logged');
      await gateway.waitForLog((l) => l.msg === 'configuration from the control plane applied', 15_000);
      // Requests from here on, all along the rotation: it must not cost one.
      traffic = (async () => {
        while (sending) {
          const res = await send(gateway.url, '/rotated/x', { dispatcher: agent });
          sent++;
          if (res.status !== 200) failed.push(res.status);
          await new Promise((r) => setTimeout(r, 20));
        }
      })();

      const b = await issue();
      volume.write({ token: `${b.token}\n` });
      const changed = await gateway.waitForLog((l) => l.msg === 'gateway token changed: the new one from the file is used from now on', 5000);
      assert.equal(changed.tokenId, b.id);
      assert.equal(changed.previousTokenId, a.id);
      await waitForAsync('token B used by the gateway', async () => (await tokensOf('gw-rot')).find((t) => t.id === b.id)?.lastUsedAt !== null, 5000);

      const revoked = await gatehouse('token', 'revoke', 'gw-rot', a.id);
      assert.equal(revoked.code, 0, revoked.stderr);
      // Still syncing: a change made after the revocation arrives.
      assert.equal((await admin('PUT', '/admin/apis/rotated', echoApi('/rotated', 'r2'))).status, 200);
      await waitForAsync('the change after the rotation', async () => (await send(gateway.url, '/rotated/x', { dispatcher: agent })).headers['x-config'] === 'r2', 10_000);
      // Polls and heartbeats go on with B alone for a while: any call still carrying A would be refused now.
      await new Promise((r) => setTimeout(r, 1000));
    } finally {
      sending = false;
      await traffic;
      await gateway.stop();
    }
    assert.deepEqual(failed, [], `${failed.length} of ${sent} requests failed`);
    assert.ok(sent > 20, `${sent} requests sent`);
    assert.deepEqual(gateway.logs.filter((l) => l.msg === "the control plane refused this gateway's token"), [], 'no call was refused');
    assert.deepEqual(cp.logs.filter((l) => l.msg === 'gateway token refused' && l.gateway === 'gw-rot'), [], 'the control plane refused none');
    assert.equal(gateway.logs.filter((l) => l.msg === 'gatehouse listening').length, 1, 'one start: no restart');
  });

  test('missing or empty at start: exit 2 naming the file; missing, empty or half-written later: the token read before stays in use', async () => {
    assert.equal((await admin('PUT', '/admin/apis/filed', echoApi('/filed', 'f1'))).status, 200);
    assert.equal((await admin('PUT', '/admin/gateways/gw-file', { apis: ['filed'] })).status, 200);
    const dir = tempDir('gatehouse-token-file-');
    const file = join(dir, 'token');
    const env = { GATEHOUSE_CONFIG_URL: cp.url, GATEHOUSE_TOKEN_FILE: file, GATEHOUSE_SYNC_INTERVAL_MS: '200' };
    await assert.rejects(startGatewayProcess({ env }), (err: Error) => {
      assert.match(err.message, new RegExp(`exited with 2 before listening: gatehouse: GATEHOUSE_TOKEN_FILE=${file}: the file does not exist`));
      return true;
    });
    writeFileSync(file, '\n');
    await assert.rejects(startGatewayProcess({ env }), /exited with 2 before listening: gatehouse: GATEHOUSE_TOKEN_FILE=.*: the file is empty/);
    const first = String((await admin('POST', '/admin/gateways/gw-file/tokens', {})).body.token);
    writeFileSync(file, first);
    await assert.rejects(startGatewayProcess({ env: { ...env, GATEHOUSE_TOKEN: first } }), /give either GATEHOUSE_TOKEN or GATEHOUSE_TOKEN_FILE, not both/);

    const gateway = await startGatewayProcess({ env });
    const header = async () => (await send(gateway.url, '/filed/x', { dispatcher: agent })).headers['x-config'];
    const unusable = (problem: RegExp) => gateway.waitForLog((l) => l.msg === 'the gateway token file cannot be used: the token read before stays in use' && problem.test(String(l.problem)), 5000);
    try {
      await gateway.waitForLog((l) => l.msg === 'configuration from the control plane applied', 15_000);
      rmSync(file);
      await unusable(/the file does not exist/);
      assert.equal((await admin('PUT', '/admin/apis/filed', echoApi('/filed', 'f2'))).status, 200);
      await waitForAsync('f2 with the file gone', async () => (await header()) === 'f2', 10_000);
      writeFileSync(file, '');
      await unusable(/the file is empty/);
      const next = String((await admin('POST', '/admin/gateways/gw-file/tokens', {})).body.token);
      writeFileSync(file, next.slice(0, 40));
      await unusable(/does not hold a whole gateway token/);
      assert.equal((await admin('PUT', '/admin/apis/filed', echoApi('/filed', 'f3'))).status, 200);
      await waitForAsync('f3 with half a token in the file', async () => (await header()) === 'f3', 10_000);
      writeFileSync(file, `${next}\n`);
      await gateway.waitForLog((l) => l.msg === 'the gateway token file is usable again', 5000);
      const changed = await gateway.waitForLog((l) => l.msg === 'gateway token changed: the new one from the file is used from now on', 5000);
      assert.equal(changed.tokenId, next.split('.')[4]);
      assert.deepEqual(gateway.logs.filter((l) => l.msg === "the control plane refused this gateway's token"), []);
    } finally {
      await gateway.stop();
    }
  });
});
