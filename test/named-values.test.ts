// Named values: `{{name}}` in policy configurations, kept once in the document (or the control plane), secrets kept
// out of problems, out of the control plane's answers, and encrypted in the gateway's configuration backup.
// Documents are parsed and bound in process; the control plane and the gateways run as their own processes.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { parseGatewayDocument } from '../runtime/config/parse-document.ts';
import { secretValues } from '../runtime/config/named-values.ts';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { ConfigBackup, sealSecrets, unsealSecrets } from '../runtime/sync/backup.ts';
import { startControlPlane, type ControlPlaneProcess } from './support/control-plane-process.ts';
import { startGatewayProcess, tempDir, type GatewayProcess } from './support/gateway-process.ts';
import { problemsOf } from './support/config-problems.ts';
import { send } from './support/requests.ts';
import { waitForAsync } from './support/wait.ts';

const SECRET = 'partner-key-6f1c2a9e';
const ROTATED = 'partner-key-77d0b3c4';

describe('named values in a document', () => {
  test('{{name}} in any string of a policy configuration is replaced by its value; nothing else is', () => {
    const doc = parseGatewayDocument(
      `version: 1
namedValues:
  greeting: { value: hello }
  key.partner_1: { value: ${SECRET}, secret: true }
  braces: { value: "{{greeting}}" }
apis:
  - id: a
    pathPrefix: /a
    backend: { url: builtin:echo }
    policies:
      inbound:
        - policy: key-auth
          config: { keys: [{ id: partner, key: "{{key.partner_1}}" }] }
      outbound:
        - policy: set-header
          config: { name: x-greeting, value: "{{greeting}}, {{greeting}} and {{braces}}" }
`,
      'gw.yaml',
    );
    const [api] = doc.apis;
    assert.deepEqual(api!.policies!.inbound![0]!.config, { keys: [{ id: 'partner', key: SECRET }] });
    // Substituted once: the value "{{greeting}}" of `braces` stays literal.
    assert.equal(api!.policies!.outbound![0]!.config!.value, 'hello, hello and {{greeting}}');
  });

  test('an undefined name, a malformed reference and a bad name are problems at their places; values are not repeated', () => {
    const badReferences = `apis:
  - id: a
    pathPrefix: /a
    backend: { url: builtin:echo }
    policies:
      outbound:
        - policy: set-header
          config: { name: x-a, value: "{{missing}}" }
        - policy: set-header
          config: { name: x-b, value: "{{ spaced }}" }
`;
    const problems = problemsOf(`version: 1
namedValues:
  "bad name": { value: x }
  long: { value: "${'s'.repeat(4097)}", secret: true }
  numeric: { value: 12345678, secret: true }
${badReferences}`);
    const text = problems.map((p) => `${p.where}: ${p.message}`).join('\n');
    assert.match(text, /gw\.yaml:3: namedValues\["bad name"\]: a named value name is letters, digits/);
    assert.match(text, /gw\.yaml:4: namedValues\.long\.value: must be at most 4096 characters \(got 4097\)/);
    assert.match(text, /gw\.yaml:5: namedValues\.numeric\.value: must be a string \(got number\)/);
    assert.doesNotMatch(text, /sssss|12345678/, 'no value is repeated in a problem');
    // Schema problems first: references are resolved only in a well-formed document.
    const resolved = problemsOf(`version: 1
namedValues: { known: { value: x } }
${badReferences}`);
    assert.deepEqual(resolved, [
      { where: 'gw.yaml:10: apis[0].policies.outbound[0].config.value', message: 'refers to named value "missing", which is not defined' },
      {
        where: 'gw.yaml:12: apis[0].policies.outbound[1].config.value',
        message: '"{{ spaced }}" is not a named value reference (a named value name is letters, digits, ".", "_" and "-", at most 256 characters)',
      },
    ]);
  });

  test('a secret that a policy repeats in a message is masked in the gateway\'s logs; a plain value is not', async () => {
    const dir = tempDir('gatehouse-nv-mask-');
    const file = join(dir, 'gw.yaml');
    // A policy that fails with a message made from its configuration: one secret, one plain value.
    const probe = join(repoRoot(), 'test', 'fixtures', 'policies', 'chain-probe');
    writeFileSync(
      file,
      `version: 1
namedValues:
  blocked: { value: ${SECRET}, secret: true }
  plain: { value: plain-value-shown }
apis:
  - id: s
    pathPrefix: /s
    backend: { url: builtin:echo }
    policies:
      inbound: [{ source: ${probe}, config: { fail: "refused by {{blocked}}" } }]
  - id: p
    pathPrefix: /p
    backend: { url: builtin:echo }
    policies:
      inbound: [{ source: ${probe}, config: { fail: "refused by {{plain}}" } }]
`,
    );
    const gateway = await startGatewayProcess({ config: file });
    try {
      assert.equal((await send(gateway.url, '/s/x')).status, 500);
      assert.equal((await send(gateway.url, '/p/x')).status, 500);
      await gateway.waitForLog((l) => JSON.stringify(l).includes('refused by plain-value-shown'));
      const masked = await gateway.waitForLog((l) => JSON.stringify(l).includes('refused by ***'));
      assert.match(JSON.stringify(masked), /api:s\/inbound/, 'the line of API s');
      assert.ok(!gateway.logs.some((l) => JSON.stringify(l).includes(SECRET)), 'a log line shows the secret');
    } finally {
      await gateway.stop();
    }
  });

  test('during a rotation\'s overlap a list entry holds both values; elsewhere, and once the overlap ended, only the current one', () => {
    const text = (until: string) => `version: 1
namedValues:
  key: { value: ${ROTATED}, secret: true, previous: { value: ${SECRET}, until: "${until}" } }
apis:
  - id: a
    pathPrefix: /a
    backend: { url: builtin:echo }
    policies:
      inbound:
        - policy: key-auth
          config: { keys: [{ id: partner, key: "{{key}}" }, { id: other, key: other-key-123 }] }
        - policy: check-header
          config: { name: x-check, values: ["{{key}}", "fixed"] }
      outbound:
        - policy: set-header
          config: { name: x-key, value: "{{key}}" }
`;
    const later = new Date(Date.now() + 60_000).toISOString();
    const overlapping = parseGatewayDocument(text(later), 'gw.yaml');
    assert.deepEqual(secretValues(overlapping).sort(), [ROTATED, SECRET].sort(), 'both values are masked in logs');
    const [api] = overlapping.apis;
    const { inbound, outbound } = api!.policies!;
    assert.deepEqual(inbound![0]!.config, {
      keys: [{ id: 'partner', key: ROTATED }, { id: 'partner', key: SECRET }, { id: 'other', key: 'other-key-123' }],
    });
    assert.deepEqual(inbound![1]!.config, { name: 'x-check', values: [ROTATED, SECRET, 'fixed'] });
    assert.deepEqual(outbound![0]!.config, { name: 'x-key', value: ROTATED });
    const [ended] = parseGatewayDocument(text(new Date(Date.now() - 1000).toISOString()), 'gw.yaml').apis;
    assert.deepEqual(ended!.policies!.inbound![0]!.config, { keys: [{ id: 'partner', key: ROTATED }, { id: 'other', key: 'other-key-123' }] });
    const problems = problemsOf(text('tomorrow'));
    assert.equal(problems.length, 1, 'until is an ISO 8601 time in UTC');
    assert.match(problems[0]!.where, /namedValues\.key\.previous\.until/);
  });

  test('sealed secrets: only secret values leave the text; the wrong key or an altered document does not open them', async () => {
    const key = Buffer.alloc(32, 7);
    const text = JSON.stringify({
      version: 1,
      apis: [],
      namedValues: { s: { value: SECRET, secret: true, previous: { value: ROTATED, until: '2030-01-01T00:00:00Z' } }, p: { value: 'plain' } },
    });
    const { text: emptied, sealed } = await sealSecrets(text, async () => key);
    assert.ok(sealed);
    assert.ok(!emptied.includes(SECRET) && !sealed.includes(SECRET));
    assert.ok(!emptied.includes(ROTATED), "a rotation's previous value is sealed too");
    assert.match(emptied, /"plain"/);
    assert.equal(unsealSecrets(emptied, sealed, key), text);
    assert.throws(() => unsealSecrets(emptied, sealed, Buffer.alloc(32, 8)), /sealed with another backup key/);
    assert.throws(() => unsealSecrets(emptied.replace('plain', 'plainer'), sealed, key), /do not open with the backup key \(altered\)/);
    // Nothing secret, nothing sealed, and no key needed.
    const plain = await sealSecrets(JSON.stringify({ version: 1, apis: [] }), () => Promise.reject(new Error('no key wanted')));
    assert.equal(plain.sealed, undefined);
  });

  test('replicas sharing a backup folder agree on one key made beside it: each saves at once, and each opens what any saved', async () => {
    const dir = tempDir('gatehouse-nv-shared-');
    const text = JSON.stringify({ version: 1, apis: [], namedValues: { s: { value: SECRET, secret: true } } });
    const replicas = Array.from({ length: 8 }, () => new ConfigBackup(dir));
    await Promise.all(replicas.map((r, i) => r.save({ text, etag: `"e${i}"`, revision: `r${i}` })));
    const key = readFileSync(join(dir, 'backup.key'), 'utf8');
    assert.match(key, /^[0-9a-f]{64}\n$/);
    assert.deepEqual(readdirSync(dir).filter((name) => name.endsWith('.tmp')), [], 'no temporary file is left');
    for (const r of [...replicas, new ConfigBackup(dir)]) {
      const { usable, problems } = await r.entries();
      assert.deepEqual(problems, []);
      assert.ok(usable.length >= 1 && usable.every((u) => u.text === text));
    }
  });

  test('temporary files a writer left behind (it died mid-write) are removed at the first save; a recent one is kept', async () => {
    const dir = tempDir('gatehouse-nv-stale-');
    const abandoned = join(dir, 'config.json.0123456789abcdef.tmp');
    const inProgress = join(dir, 'config.json.fedcba9876543210.tmp');
    const notOurs = join(dir, 'notes.tmp');
    for (const file of [abandoned, inProgress, notOurs]) writeFileSync(file, 'partial');
    const hourAgo = new Date(Date.now() - 3_600_000);
    utimesSync(abandoned, hourAgo, hourAgo);
    utimesSync(notOurs, hourAgo, hourAgo);
    await new ConfigBackup(dir).save({ text: JSON.stringify({ version: 1, apis: [] }), etag: null, revision: null });
    assert.deepEqual(readdirSync(dir).sort(), ['config.json', 'config.json.fedcba9876543210.tmp', 'notes.tmp']);
  });
});

describe('named values from the control plane', () => {
  const agent = new Agent({ connections: 4 });
  let cp: ControlPlaneProcess;
  let token: string;
  let gateway: GatewayProcess | null = null;
  const backupDir = tempDir('gatehouse-nv-backup-');

  const admin = (method: string, path: string, body?: unknown) => cp.admin(method, path, body);

  const partnerApi = {
    pathPrefix: '/partner',
    backend: { url: 'builtin:echo' },
    policies: {
      inbound: [{ policy: 'key-auth', config: { keys: [{ id: 'partner', key: '{{partner-key}}' }] } }],
      outbound: [{ policy: 'set-header', config: { name: 'x-greeting', value: '{{greeting}}' } }],
    },
  };
  const gatewayEnv = (extra: Record<string, string> = {}) => ({
    GATEHOUSE_CONFIG_URL: cp.url,
    GATEHOUSE_TOKEN: token,
    GATEHOUSE_SYNC_INTERVAL_MS: '200',
    GATEHOUSE_BACKUP_DIR: backupDir,
    ...extra,
  });
  const withKey = async (g: GatewayProcess, key: string) =>
    send(g.url, '/partner/x', { headers: { 'x-api-key': key }, dispatcher: agent });

  before(async () => {
    cp = await startControlPlane(tempDir('gatehouse-nv-cp-'));
  });

  after(async () => {
    await gateway?.stop();
    await cp?.stop();
    await agent.close();
  });

  test('the admin API keeps secrets write-only, checks names, references and deletions, and each change is a revision', async () => {
    assert.equal((await admin('PUT', '/admin/named-values/partner-key', { value: SECRET, secret: true })).status, 200);
    assert.equal((await admin('PUT', '/admin/named-values/greeting', { value: 'hello' })).status, 200);
    assert.equal((await admin('PUT', '/admin/named-values/unused-secret', { value: 'never-sent-1234', secret: true })).status, 200);

    const listed = await admin('GET', '/admin/named-values');
    assert.ok(!listed.text.includes(SECRET), 'a secret is never shown back');
    assert.deepEqual(
      (listed.body.namedValues as Record<string, unknown>[]).map(({ updatedAt, ...rest }) => (assert.ok(updatedAt), rest)),
      [
        { name: 'greeting', secret: false, value: 'hello', usedBy: [] },
        { name: 'partner-key', secret: true, usedBy: [] },
        { name: 'unused-secret', secret: true, usedBy: [] },
      ],
    );
    // Rotating with the value alone keeps it secret.
    const rotated = await admin('PUT', '/admin/named-values/unused-secret', { value: 'still-never-sent' });
    assert.equal(rotated.body.secret, true);
    assert.equal(rotated.body.value, undefined);

    const badName = await admin('PUT', '/admin/named-values/bad%20name', { value: 'x' });
    assert.equal(badName.status, 400);
    assert.match(String(badName.body.detail), /letters, digits/);
    assert.equal((await admin('PUT', '/admin/named-values/x', { value: 1 })).status, 400);
    assert.equal((await admin('PUT', '/admin/named-values/x', { value: 'x'.repeat(4097) })).status, 400);

    const missing = await admin('PUT', '/admin/apis/broken', {
      ...partnerApi,
      policies: { outbound: [{ policy: 'set-header', config: { name: 'x', value: '{{nope}}' } }] },
    });
    assert.equal(missing.status, 400);
    assert.deepEqual(missing.body.problems, [
      {
        path: ['policies', 'outbound', 0, 'config', 'value'],
        where: 'api broken: policies.outbound[0].config.value',
        message: 'refers to named value "nope", which is not defined',
      },
    ]);

    assert.equal((await admin('PUT', '/admin/apis/partner', partnerApi)).status, 200);
    const used = await admin('DELETE', '/admin/named-values/partner-key');
    assert.equal(used.status, 409);
    assert.deepEqual(used.body.usedBy, ['partner']);
    assert.equal((await admin('DELETE', '/admin/named-values/nothing')).status, 404);

    const revisions = await admin('GET', '/admin/revisions');
    assert.match(revisions.text, /named value partner-key (created|updated) \(secret\)/);
    assert.ok(!revisions.text.includes(SECRET));
  });

  test('a gateway gets the values its APIs use (no others), serves with them, and a rotated secret reaches it within a poll', async () => {
    assert.equal((await admin('PUT', '/admin/gateways/gw-nv', { apis: ['partner'] })).status, 200);
    token = (await admin('POST', '/admin/gateways/gw-nv/tokens', {})).body.token as string;

    const config = await request(`${cp.url}/gateway/v1/config`, { headers: { authorization: `GatewayKey ${token}` }, dispatcher: agent });
    const doc = (await config.body.json()) as { namedValues: Record<string, unknown> };
    assert.deepEqual(doc.namedValues, { 'partner-key': { value: SECRET, secret: true }, greeting: { value: 'hello' } });

    gateway = await startGatewayProcess({ env: gatewayEnv() });
    await gateway.waitForLog((l) => l.msg === 'configuration from the control plane applied', 15_000);
    const ok = await withKey(gateway, SECRET);
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['x-greeting'], 'hello');
    assert.equal((await withKey(gateway, ROTATED)).status, 401);

    // Rotated with an overlap: clients holding the old key keep working while they move to the new one.
    const rotated = await admin('PUT', '/admin/named-values/partner-key', { value: ROTATED, overlapSeconds: 4 });
    assert.equal(rotated.status, 200);
    assert.ok(Date.parse(String(rotated.body.previousAcceptedUntil)) > Date.now(), 'the answer says until when the old value is accepted');
    assert.ok(!JSON.stringify(rotated.body).includes(SECRET), 'and never shows it');
    await waitForAsync('the rotated key', async () => (await withKey(gateway!, ROTATED)).status === 200, 5000);
    assert.equal((await withKey(gateway, SECRET)).status, 200, 'the old key still works during the overlap');
    const served = async (etag?: string) => {
      const res = await request(`${cp.url}/gateway/v1/config`, {
        headers: { authorization: `GatewayKey ${token}`, ...(etag ? { 'if-none-match': etag } : {}) },
        dispatcher: agent,
      });
      const body = await res.body.text();
      return { status: res.statusCode, etag: String(res.headers.etag), doc: body ? (JSON.parse(body) as { namedValues: Record<string, { previous?: unknown }> }) : null };
    };
    const during = await served();
    assert.ok(during.doc!.namedValues['partner-key']!.previous, 'the document carries the previous value during the overlap');
    await waitForAsync('the overlap to end', async () => (await withKey(gateway!, SECRET)).status === 401, 10_000);
    // The control plane's document changes by itself when the overlap ends, with no new revision.
    const afterwards = await served(during.etag);
    assert.equal(afterwards.status, 200, 'the document a gateway holds from the overlap is no longer current');
    assert.notEqual(afterwards.etag, during.etag);
    assert.equal(afterwards.doc!.namedValues['partner-key']!.previous, undefined);
    assert.equal((await withKey(gateway, ROTATED)).status, 200);
    const used = (await admin('GET', '/admin/named-values/partner-key')).body;
    assert.deepEqual(used.usedBy, ['partner']);
    assert.equal(used.previousAcceptedUntil, undefined);
    assert.equal((await admin('PUT', '/admin/named-values/partner-key', { value: ROTATED, overlapSeconds: -1 })).status, 400);
  });

  test('the backup holds the secret only encrypted; a restart without the control plane serves with it; another key cannot open it', async () => {
    await waitForAsync('a backup with the rotated key', async () => {
      try {
        return readFileSync(join(backupDir, 'config.json'), 'utf8').includes('"sealed"');
      } catch {
        return false;
      }
    }, 5000);
    await gateway!.stop();
    gateway = null;
    // No file in the backup directory (documents, modules, key) holds a secret in clear.
    for (const name of readdirSync(backupDir, { recursive: true }) as string[]) {
      let text: string;
      try {
        text = readFileSync(join(backupDir, name), 'latin1');
      } catch {
        continue; // a folder
      }
      assert.ok(!text.includes(ROTATED) && !text.includes(SECRET), `${name} holds a secret in clear`);
    }
    assert.ok(readdirSync(backupDir).includes('backup.key'), 'without GATEHOUSE_BACKUP_KEY the key is made beside the backup');

    await cp.stop('SIGKILL');
    const restarted = await startGatewayProcess({ env: gatewayEnv() });
    try {
      await restarted.waitForLog((l) => String(l.msg).startsWith('started from the configuration backup'), 15_000);
      assert.equal((await withKey(restarted, ROTATED)).status, 200);
      assert.equal((await withKey(restarted, SECRET)).status, 401);
      assert.ok(restarted.logs.some((l) => l.level === 'warn' && String(l.msg).includes('GATEHOUSE_BACKUP_KEY')));
    } finally {
      await restarted.stop();
    }

    const otherKey = startGatewayProcess({ env: gatewayEnv({ GATEHOUSE_BACKUP_KEY: 'ab'.repeat(32) }) });
    const other = await otherKey;
    try {
      const refused = await other.waitForLog((l) => String(l.msg).startsWith('no usable configuration backup'), 15_000);
      assert.match(JSON.stringify(refused.problems), /sealed with another backup key .*was GATEHOUSE_BACKUP_KEY changed/);
      assert.equal((await send(other.url, '/status-0123456789abcdef', { dispatcher: agent })).status, 503);
    } finally {
      await other.stop();
    }

    // The key beside the backup lost: reading the backup says so, and does not make a key that could never open it.
    rmSync(join(backupDir, 'backup.key'));
    const keyless = await startGatewayProcess({ env: gatewayEnv() });
    try {
      const refused = await keyless.waitForLog((l) => String(l.msg).startsWith('no usable configuration backup'), 15_000);
      assert.match(JSON.stringify(refused.problems), /secrets are sealed, but there is no backup key: GATEHOUSE_BACKUP_KEY is not set and .*backup\.key is gone/);
      assert.ok(!readdirSync(backupDir).includes('backup.key'), 'reading the backup made a key');
    } finally {
      await keyless.stop();
    }
  });

  test('a malformed GATEHOUSE_BACKUP_KEY stops the gateway at start, saying what a key looks like', async () => {
    const keyFile = join(tempDir('gatehouse-nv-key-'), 'key');
    writeFileSync(keyFile, 'short\n');
    for (const [value, expected] of [
      ['not-a-key-and-no-such-file', /GATEHOUSE_BACKUP_KEY: neither a key \(64 hex digits or 44 base64 characters\) nor a file/],
      [keyFile, /does not hold a key: 32 bytes as 64 hex digits/],
    ] as const) {
      const g = await startGatewayProcess({ env: gatewayEnv({ GATEHOUSE_BACKUP_KEY: value }) }).catch((err: Error) => err);
      assert.ok(g instanceof Error, 'the gateway started');
      assert.match(g.message, expected);
    }
  });
});
