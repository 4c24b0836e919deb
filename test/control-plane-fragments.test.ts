// Policy fragments managed by the control plane: the admin API's /admin/fragments (checked as a gateway checks them,
// references both ways), the documents gateways receive (only the fragments their APIs use), and `gatehouse apply` of a
// file with `fragments:` (atomic, pruned). A real control plane process, real gateways syncing from it, the real
// `gatehouse` command, also applying what `gatehouse import-apim` makes of APIM policy fragments.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Agent } from 'undici';
import { parse } from 'yaml';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { startControlPlane, type ControlPlaneProcess } from './support/control-plane-process.ts';
import { runGatehouse } from './support/gatehouse-cli.ts';
import { startGatewayProcess, tempDir, type GatewayProcess } from './support/gateway-process.ts';
import { send } from './support/requests.ts';
import { waitForAsync } from './support/wait.ts';

const agent = new Agent({ connections: 4 });

after(async () => {
  await agent.close();
});

/** A fragment that sets a response header. */
const tagging = (value: string) => ({ entries: [{ policy: 'set-header', config: { name: 'x-tag', value } }] });

interface Problem {
  path: (string | number)[] | null;
  where: string;
  message: string;
}

describe('fragments on the control plane', () => {
  let dataDir: string;
  let cp: ControlPlaneProcess;
  let gateway: GatewayProcess | undefined;
  const tokens: Record<string, string> = {};
  const admin = (method: string, path: string, body?: unknown) => cp.admin(method, path, body);
  const problems = (body: Record<string, unknown>) => body.problems as Problem[];
  /** The document the control plane serves a gateway, with its ETag (and a 304 for `etag` when it is still current). */
  const served = async (gw: string, etag?: string) => {
    const res = await send(cp.url, '/gateway/v1/config', {
      headers: { authorization: `GatewayKey ${tokens[gw]}`, ...(etag ? { 'if-none-match': etag } : {}) },
      dispatcher: agent,
    });
    return { status: res.status, etag: String(res.headers.etag), doc: res.body ? (JSON.parse(res.body) as { fragments?: Record<string, unknown[]> }) : null };
  };
  const tagOf = async (path: string) => (await send(gateway!.url, path, { dispatcher: agent })).headers['x-tag'];

  before(async () => {
    dataDir = tempDir('gatehouse-cp-fragments-');
    cp = await startControlPlane(dataDir);
  });

  after(async () => {
    await gateway?.stop();
    await cp?.stop();
  });

  test('a fragment is checked as a gateway checks it: a bad name, a bad entry, a missing include and a cycle are refused where they are', async () => {
    const badName = await admin('PUT', '/admin/fragments/-dash-first', tagging('x'));
    assert.equal(badName.status, 400);
    assert.match(String(badName.body.detail), /a fragment name is letters, digits, "\.", "_" and "-", starting with a letter or digit/);
    const notEntries = await admin('PUT', '/admin/fragments/tag', { policies: [] });
    assert.equal(notEntries.status, 400);
    assert.match(String(notEntries.body.detail), /the body must be \{"entries": \[<policy entry>, \.\.\.\]\} \(unknown: policies\)/);

    const badEntry = await admin('PUT', '/admin/fragments/tag', { entries: [{ policy: 'set-header', config: { name: 'x-tag', value: 'v', colour: 'red' } }] });
    assert.equal(badEntry.status, 400);
    const entryProblem = problems(badEntry.body).find((p) => p.path?.[0] === 'entries');
    assert.ok(entryProblem, JSON.stringify(badEntry.body));
    assert.deepEqual(entryProblem.path!.slice(0, 2), ['entries', 0]);
    assert.match(entryProblem.where, /^fragment tag: entries\[0\]/);
    assert.match(entryProblem.message, /colour/);

    const missing = await admin('PUT', '/admin/fragments/tag', { entries: [{ 'include-fragment': 'nope' }] });
    assert.equal(missing.status, 400);
    assert.deepEqual(problems(missing.body), [
      {
        path: ['entries', 0, 'include-fragment'],
        where: 'fragment tag: entries[0].include-fragment',
        message: 'includes fragment "nope", which does not exist (PUT /admin/fragments/nope, or declare it under fragments:)',
      },
    ]);
    assert.equal((await admin('GET', '/admin/fragments/tag')).status, 404, 'nothing was saved');

    const saved = await admin('PUT', '/admin/fragments/tag', tagging('v1'));
    assert.equal(saved.status, 200, saved.text);
    assert.deepEqual(saved.body.entries, tagging('v1').entries);
    assert.deepEqual(saved.body.changes, [{ kind: 'fragment', id: 'tag', action: 'create' }]);
    assert.equal((await admin('PUT', '/admin/fragments/outer', { entries: [{ 'include-fragment': 'tag' }] })).status, 200);
    assert.equal((await admin('PUT', '/admin/fragments/outermost', { entries: [{ 'include-fragment': 'outer' }] })).status, 200);
    // outer -> outermost -> outer: refused, naming the circle, at the include the request adds.
    const cycle = await admin('PUT', '/admin/fragments/outer', { entries: [{ 'include-fragment': 'outermost' }] });
    assert.equal(cycle.status, 400);
    assert.deepEqual(problems(cycle.body), [
      {
        path: ['entries', 0, 'include-fragment'],
        where: 'fragment outer: entries[0].include-fragment',
        message: 'fragment "outermost" includes itself: outermost -> outer -> outermost',
      },
    ]);
    const itself = await admin('PUT', '/admin/fragments/loop', { entries: [{ 'include-fragment': 'loop' }] });
    assert.equal(itself.status, 400);
    assert.equal(problems(itself.body)[0]!.message, 'fragment "loop" includes itself: loop -> loop');

    // Included 100 times by one that is included 101 times: past the bound of entries a chain expands to.
    const many = (name: string, n: number) => ({ entries: Array.from({ length: n }, () => ({ 'include-fragment': name })) });
    assert.equal((await admin('PUT', '/admin/fragments/hundred', many('tag', 100))).status, 200);
    const huge = await admin('PUT', '/admin/fragments/huge', many('hundred', 101));
    assert.equal(huge.status, 400);
    assert.match(problems(huge.body)[0]!.message, /expand to more than 10000 entries with their fragments/);
    assert.equal(problems(huge.body)[0]!.where.startsWith('fragment huge'), true, problems(huge.body)[0]!.where);
    assert.equal((await admin('DELETE', '/admin/fragments/hundred')).status, 200);

    const listed = await admin('GET', '/admin/fragments');
    assert.deepEqual((listed.body.fragments as { name: string }[]).map((f) => f.name), ['outer', 'outermost', 'tag']);
    assert.deepEqual((await admin('GET', '/admin/fragments/tag')).body.includedBy, { apis: [], fragments: ['outer'] });
  });

  test("a fragment binds in the phase its APIs use it in: one that cannot is refused, in the API's PUT and in the fragment's", async () => {
    // `response` exists in outbound only: alone, the fragment is accepted (it binds in outbound)...
    const responseOnly = { entries: [{ policy: 'set-header', when: 'response.status == 200', config: { name: 'x-ok', value: '1' } }] };
    assert.equal((await admin('PUT', '/admin/fragments/after-response', responseOnly)).status, 200);
    // ... and an API including it in inbound is refused, at the fragment's entry, saying where it was included.
    const early = await admin('PUT', '/admin/apis/early', {
      pathPrefix: '/early',
      backend: { url: 'builtin:echo' },
      policies: { inbound: [{ 'include-fragment': 'after-response' }] },
    });
    assert.equal(early.status, 400);
    assert.deepEqual(problems(early.body), [
      {
        path: null,
        where: 'api early: fragment after-response: [0].when',
        message: 'reads response, which exists in outbound and on-error only (this is inbound) (included at api early: policies.inbound[0])',
      },
    ]);

    // A fragment an API includes in inbound cannot become one that does not bind there.
    assert.equal((await admin('PUT', '/admin/fragments/pre', tagging('pre'))).status, 200);
    assert.equal(
      (await admin('PUT', '/admin/apis/early', { pathPrefix: '/early', backend: { url: 'builtin:echo' }, policies: { inbound: [{ 'include-fragment': 'pre' }] } })).status,
      200,
    );
    const breaking = await admin('PUT', '/admin/fragments/pre', responseOnly);
    assert.equal(breaking.status, 400);
    const atEntry = problems(breaking.body).find((p) => p.path !== null && p.path[0] === 'entries');
    assert.ok(atEntry, JSON.stringify(breaking.body));
    assert.deepEqual(atEntry.path!.slice(0, 3), ['entries', 0, 'when']);
    assert.deepEqual((await admin('GET', '/admin/fragments/pre')).body.entries, tagging('pre').entries, 'the fragment is as it was');

    const missing = await admin('PUT', '/admin/apis/broken', { pathPrefix: '/broken', backend: { url: 'builtin:echo' }, policies: { outbound: [{ 'include-fragment': 'nope' }] } });
    assert.equal(missing.status, 400);
    assert.deepEqual(problems(missing.body), [
      {
        path: ['policies', 'outbound', 0, 'include-fragment'],
        where: 'api broken: policies.outbound[0].include-fragment',
        message: 'includes fragment "nope", which does not exist (PUT /admin/fragments/nope, or declare it under fragments:)',
      },
    ]);
    assert.equal((await admin('DELETE', '/admin/apis/early')).status, 200);
    assert.equal((await admin('DELETE', '/admin/fragments/pre')).status, 200);
    assert.equal((await admin('DELETE', '/admin/fragments/after-response')).status, 200);
  });

  test('a gateway serves through the fragment and gets its changes; a gateway whose APIs do not use it keeps its ETag', async () => {
    const api = (prefix: string, outbound: unknown[]) => ({ pathPrefix: prefix, backend: { url: 'builtin:echo' }, policies: { outbound } });
    assert.equal((await admin('PUT', '/admin/apis/shop', api('/shop', [{ 'include-fragment': 'tag' }]))).status, 200);
    assert.equal((await admin('PUT', '/admin/apis/other', api('/other', []))).status, 200);
    for (const [gw, apis] of [['gw-shop', ['shop']], ['gw-other', ['other']]] as const) {
      assert.equal((await admin('PUT', `/admin/gateways/${gw}`, { apis })).status, 200);
      tokens[gw] = (await admin('POST', `/admin/gateways/${gw}/tokens`, {})).body.token as string;
    }
    // Only the fragments its APIs use: tag, not outer or outermost (which include it, unused).
    const shopDoc = await served('gw-shop');
    assert.deepEqual(shopDoc.doc!.fragments, { tag: tagging('v1').entries });
    const otherDoc = await served('gw-other');
    assert.equal(otherDoc.doc!.fragments, undefined);

    gateway = await startGatewayProcess({
      env: { GATEHOUSE_CONFIG_URL: cp.url, GATEHOUSE_TOKEN: tokens['gw-shop']!, GATEHOUSE_SYNC_INTERVAL_MS: '200', GATEHOUSE_BACKUP_DIR: tempDir('gatehouse-fragments-backup-') },
    });
    await gateway.waitForLog((l) => l.msg === 'configuration from the control plane applied', 15_000);
    assert.equal(await tagOf('/shop/x'), 'v1');

    const changed = await admin('PUT', '/admin/fragments/tag', tagging('v2'));
    assert.equal(changed.status, 200);
    assert.deepEqual(changed.body.changes, [{ kind: 'fragment', id: 'tag', action: 'update', fields: [{ path: '[0].config.value', before: 'v1', after: 'v2' }] }]);
    await waitForAsync('the changed fragment', async () => (await tagOf('/shop/x')) === 'v2', 5000);
    const revision = changed.body.revision as number;
    await gateway.waitForLog((l) => l.msg === 'configuration from the control plane applied' && l.revision === revision, 5000);
    assert.equal((await served('gw-other', otherDoc.etag)).status, 304, "a fragment gw-other's APIs do not use changes nothing for it");
    const revisions = (await admin('GET', '/admin/revisions')).body.revisions as { revision: number; change: string }[];
    assert.equal(revisions.find((r) => r.revision === revision)?.change, 'fragment tag updated');

    // Through another fragment: gw-other's document carries outermost, outer and tag.
    assert.equal((await admin('PUT', '/admin/apis/other', api('/other', [{ 'include-fragment': 'outermost' }]))).status, 200);
    assert.deepEqual(Object.keys((await served('gw-other')).doc!.fragments ?? {}), ['outer', 'outermost', 'tag']);
  });

  test('a fragment in use cannot be deleted: 409 naming what includes it and the APIs it would break', async () => {
    const used = await admin('DELETE', '/admin/fragments/tag');
    assert.equal(used.status, 409);
    assert.deepEqual(used.body.usedBy, ['other', 'shop']);
    assert.equal(
      problems(used.body)[0]!.message,
      'fragment tag is included by api shop, fragment outer, api other (through a fragment): change those first',
    );
    assert.equal((await admin('DELETE', '/admin/fragments/outer')).status, 409);
    assert.equal((await admin('DELETE', '/admin/fragments/nothing')).status, 404);
    assert.equal(await tagOf('/shop/x'), 'v2');
  });

  test('fragments survive a restart of the control plane; the gateway keeps syncing them', async () => {
    const port = new URL(cp.url).port;
    await cp.stop();
    cp = await startControlPlane(dataDir, Number(port));
    const listed = (await admin('GET', '/admin/fragments')).body.fragments as { name: string; entries: unknown[]; usedByApis: string[] }[];
    assert.deepEqual(listed.map((f) => [f.name, f.usedByApis]), [['outer', ['other']], ['outermost', ['other']], ['tag', ['other', 'shop']]]);
    assert.deepEqual(listed[2]!.entries, tagging('v2').entries);
    assert.equal((await admin('PUT', '/admin/fragments/tag', tagging('v3'))).status, 200);
    await waitForAsync('the fragment changed after the restart', async () => (await tagOf('/shop/x')) === 'v3', 10_000);
  });

  test('the named values a fragment uses travel with it; one a fragment uses cannot be deleted', async () => {
    assert.equal((await admin('PUT', '/admin/named-values/greeting', { value: 'hello' })).status, 200);
    assert.equal((await admin('PUT', '/admin/fragments/tag', { entries: [{ policy: 'set-header', config: { name: 'x-tag', value: '{{greeting}}' } }] })).status, 200);
    await waitForAsync('the value through the fragment', async () => (await tagOf('/shop/x')) === 'hello', 10_000);
    assert.deepEqual(((await served('gw-shop')).doc as { namedValues?: unknown }).namedValues, { greeting: { value: 'hello' } });
    const used = await admin('DELETE', '/admin/named-values/greeting');
    assert.equal(used.status, 409);
    assert.deepEqual(used.body.usedBy, ['other', 'shop']);
    assert.equal(
      problems(used.body)[0]!.message,
      'named value greeting is used by fragment tag, api other (through a fragment), api shop (through a fragment): change those first',
    );
    assert.deepEqual((await admin('GET', '/admin/named-values/greeting')).body.usedBy, ['other', 'shop']);
  });

  test('fragments nested thousands deep are refused with 400 at the deepest, and the control plane goes on answering', async () => {
    const fragments: Record<string, unknown[]> = {};
    for (let i = 0; i < 5000; i++) fragments[`f${i}`] = i < 4999 ? [{ 'include-fragment': `f${i + 1}` }] : tagging('deep').entries;
    const deep = await admin('POST', '/admin/apply', { fragments });
    assert.equal(deep.status, 400, deep.text.slice(0, 500));
    assert.deepEqual(problems(deep.body), [
      { path: ['fragments', 'f0'], where: 'fragments.f0', message: 'fragment "f0" nests fragments 5000 deep through include-fragment (at most 32)' },
    ]);
    assert.equal((await admin('GET', '/admin/fragments/f0')).status, 404);
  });
});

describe('gatehouse apply with fragments', () => {
  let cp: ControlPlaneProcess;
  let dir: string;
  const gatehouse = (args: string[]) => runGatehouse(args, { GATEHOUSE_ADMIN_TOKEN: cp.adminToken, GATEHOUSE_CONTROL_PLANE: cp.url });
  const file = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const declaration = (fragments: string) => `fragments:
${fragments}apis:
  - id: web
    pathPrefix: /web
    backend: { url: builtin:echo }
    policies:
      outbound:
        - include-fragment: stamp
gateways:
  - id: edge
    apis: [web]
`;
  const fragmentNames = async () => ((await cp.admin('GET', '/admin/fragments')).body.fragments as { name: string }[]).map((f) => f.name);

  before(async () => {
    dir = tempDir('gatehouse-apply-fragments-');
    cp = await startControlPlane(tempDir('gatehouse-cp-apply-fragments-'));
  });

  after(async () => {
    await cp?.stop();
  });

  test('fragments are applied with the rest as one revision, all or nothing, and pruned like the other kinds', async () => {
    const first = await gatehouse([
      'apply',
      '-f',
      file(
        'first.yaml',
        declaration(`  stamp:
    - policy: set-header
      config: { name: x-stamp, value: one }
  spare:
    - include-fragment: stamp
`),
      ),
    ]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /fragment stamp: created\nfragment spare: created\napi web: created\ngateway edge: created/);
    assert.match(first.stdout, /applied: revision \d+ \(APIs web; gateways edge; fragments stamp, spare\)/);
    const revisions = async () => ((await cp.admin('GET', '/admin/revisions')).body.revisions as unknown[]).length;
    const before = await revisions();

    // A bad fragment: nothing of the file is applied, and the problem is at its line.
    const badText = declaration(`  stamp:
    - policy: set-header
      config: { name: x-stamp, value: two }
  broken:
    - policy: set-header
      config: { name: x-b, value: b, colour: red }
`);
    const bad = await gatehouse(['apply', '-f', file('bad.yaml', badText)]);
    assert.equal(bad.code, 1, bad.stdout);
    const line = badText.split('\n').findIndex((l) => l.includes('colour'));
    assert.match(bad.stderr, new RegExp(`bad\\.yaml:${line}: fragments\\.broken\\[0\\]: config \\(root\\): unknown property "colour"`));
    assert.equal(await revisions(), before, 'no revision');
    assert.deepEqual((await cp.admin('GET', '/admin/fragments/stamp')).body.entries, [{ policy: 'set-header', config: { name: 'x-stamp', value: 'one' } }]);
    assert.deepEqual(await fragmentNames(), ['spare', 'stamp']);

    // With --prune, the fragment the file no longer declares goes; a dry run first says so and changes nothing.
    const pruned = declaration(`  stamp:
    - policy: set-header
      config: { name: x-stamp, value: two }
`);
    const dry = await gatehouse(['apply', '-f', file('pruned.yaml', pruned), '--prune', '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /fragment stamp: would be updated\n {2}\[0\]\.config\.value: "one" -> "two"\nfragment spare: would be deleted/);
    assert.deepEqual(await fragmentNames(), ['spare', 'stamp']);
    const applied = await gatehouse(['apply', '-f', join(dir, 'pruned.yaml'), '--prune']);
    assert.equal(applied.code, 0, applied.stderr);
    assert.match(applied.stdout, /fragment spare: deleted/);
    assert.equal(await revisions(), before + 1, 'one revision');
    assert.deepEqual(await fragmentNames(), ['stamp']);

    // A fragment the APIs still include is not pruned away: the apply is refused, naming it.
    const withoutStamp = await gatehouse(['apply', '-f', file('without.yaml', declaration('  {}\n')), '--prune']);
    assert.equal(withoutStamp.code, 1, withoutStamp.stdout);
    assert.match(withoutStamp.stderr, /includes fragment "stamp", which this change deletes/);
    assert.deepEqual(await fragmentNames(), ['stamp']);
  });

  test('APIM fragments imported with gatehouse import-apim are applied: alone, then with the API that includes them', async () => {
    const fixture = (name: string) => join(repoRoot(), 'test', 'fixtures', 'apim', name);
    const stored = async (name: string) => (await cp.admin('GET', `/admin/fragments/${name}`)).body as { entries: unknown[]; includedBy: unknown };
    // The library first: every fragment of the folder, none included yet.
    const library = await runGatehouse(['import-apim', '--fragments', fixture('fragments')]);
    assert.equal(library.code, 0, library.stderr);
    const alone = await gatehouse(['apply', '-f', file('library.yaml', library.stdout)]);
    assert.equal(alone.code, 0, alone.stderr);
    assert.match(alone.stdout, /fragment client-tag: created\nfragment response-stamp: created\nfragment tenant-check: created/);
    const fromLibrary = parse(library.stdout) as { fragments: Record<string, unknown[]> };
    assert.deepEqual((await stored('tenant-check')).entries, fromLibrary.fragments['tenant-check']);

    // Then the API's document with them: response-stamp, included in outbound, is now translated for the response.
    const api = await runGatehouse(['import-apim', fixture('fragment-policy.xml'), '--fragments', fixture('fragments'), '--api', 'orders', '--path', '/orders', '--backend', 'builtin:echo', '--apply']);
    assert.equal(api.code, 0, api.stderr);
    const applied = await gatehouse(['apply', '-f', file('orders.yaml', api.stdout)]);
    assert.equal(applied.code, 0, applied.stderr);
    assert.match(applied.stdout, /fragment response-stamp: updated\n {2}\[1\]\.config\.scope: "request" -> "response"\napi orders: created/);
    assert.match(applied.stdout, /\(2 unchanged\)/);
    const imported = parse(api.stdout) as { fragments: Record<string, unknown[]> };
    assert.deepEqual((await stored('response-stamp')).entries, imported.fragments['response-stamp']);
    assert.deepEqual((await stored('tenant-check')).includedBy, { apis: ['orders'], fragments: [] });
    assert.deepEqual((await stored('client-tag')).includedBy, { apis: [], fragments: ['tenant-check'] });
  });

  test("a problem in a fragment is reported at the fragment's line, naming the API and the entry that include it", async () => {
    const text = `fragments:
  late:
    - policy: set-header
      when: response.status == 200
      config: { name: x-late, value: '1' }
apis:
  - id: early
    pathPrefix: /early
    backend: { url: builtin:echo }
    policies:
      inbound:
        - policy: set-header
          config: { name: x-first, value: '1' }
        - include-fragment: late
`;
    const path = file('late.yaml', text);
    const run = await gatehouse(['apply', '-f', path]);
    assert.equal(run.code, 1, run.stdout);
    assert.equal(
      run.stderr.trim().split('\n').find((l) => l.includes('fragments.late')),
      `  ${path}:4: fragments.late[0].when: reads response, which exists in outbound and on-error only (this is inbound) (included at api early: policies.inbound[1])`,
    );
    assert.equal((await cp.admin('GET', '/admin/apis/early')).status, 404, 'nothing was applied');
  });
});
