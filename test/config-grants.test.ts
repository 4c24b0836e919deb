// Grants are checked when a configuration is loaded: an entry whose policy declares in its policy.json `needs` a grant
// the entry does not give is a configuration error naming both; a grant the policy does not declare is a warning.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ConfigError } from '../runtime/config/config-error.ts';
import { readGatewayDocument } from '../runtime/config/parse-document.ts';
import { bindChains } from '../runtime/config/policies.ts';
import { RepositoryPolicySources } from '../runtime/config/repository-policies.ts';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { bindingsIn } from '../runtime/pipeline/chain.ts';
import { makeExchange, newHost } from './support/policies.ts';
import { messageAt } from './support/config-problems.ts';

const work = mkdtempSync(join(tmpdir(), 'gatehouse-grants-test-'));
after(() => rmSync(work, { recursive: true, force: true }));
const policies = new RepositoryPolicySources(join(repoRoot(), 'policies'));

/** A folder with a counting policy that declares `needs`, and gw.yaml binding it with `entry` (YAML lines). */
function setUp(name: string, entry: string[], needs: string[] = ['counters']): string {
  const dir = join(work, name);
  mkdirSync(join(dir, 'per-user'), { recursive: true });
  writeFileSync(
    join(dir, 'per-user', 'policy.ts'),
    [
      'import { counter, request, respond, CONTINUE, PENDING } from "@gatehouse/policy-sdk";',
      'export function on_inbound(): i32 {',
      '  const r = counter("user:" + request.clientAddress(), 2, 86400);',
      '  if (r === null) return PENDING;',
      '  return r.allowed ? CONTINUE : respond(429, "slow down");',
      '}',
      '',
    ].join('\n'),
  );
  writeFileSync(join(dir, 'per-user', 'policy.json'), JSON.stringify({ name: 'per-user', needs }));
  const file = join(dir, 'gw.yaml');
  writeFileSync(
    file,
    ['version: 1', 'apis:', '  - id: a', '    pathPrefix: /a', '    backend: { url: builtin:echo }', '    policies:', '      inbound:', ...entry.map((l) => `        ${l}`), ''].join(
      '\n',
    ),
  );
  return file;
}

async function bind(file: string) {
  const { host } = newHost();
  return bindChains(await readGatewayDocument(file), { host, baseDir: join(file, '..'), policies, sourceName: 'gw.yaml' });
}

describe('grants checked at configuration load', () => {
  test('a binding without a grant its policy needs is a configuration error naming the place, the policy and the grant', async () => {
    const file = setUp('missing', ['- source: ./per-user'], ['counters', 'http']);
    const err = await bind(file).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(err instanceof ConfigError, String(err));
    const at = messageAt(err.problems, 'gw.yaml:8: apis[0].policies.inbound[0]');
    assert.match(at, /policy per-user needs the "counters" grant \(its policy\.json "needs"\), which this entry does not give: add `grants: \{ counters: true \}`/);
    assert.match(at, /policy per-user needs the "http" grant .*allowedHosts/);
  });

  test('with the grant the policy is bound and counts; a grant it does not declare is a warning at its place', async () => {
    const file = setUp('granted', ['- source: ./per-user', '  grants:', '    counters: true', '    http: { allowedHosts: ["example.com:443"] }']);
    const chains = await bind(file);
    assert.deepEqual(
      chains.warnings.map((w) => [w.where, w.message]),
      [['gw.yaml:11: apis[0].policies.inbound[0].grants.http', 'policy per-user does not declare the "http" grant in its policy.json "needs": the grant is given but likely unused']],
    );
    const binding = bindingsIn(chains.apis.get('a')!.api.inbound!)[0]!;
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) {
      const ex = makeExchange();
      await binding.run('inbound', ex);
      statuses.push(ex.responded ? ex.response.status : 200);
    }
    assert.deepEqual(statuses, [200, 200, 429]);
  });

  test('built-ins are given what they need (counters, the backend of their configuration) and warn of nothing', async () => {
    const file = setUp('builtins', [
      '- policy: rate-limit',
      '  config: { calls: 5, renewalPeriod: 60 }',
      '- policy: set-backend-service',
      '  config: { baseUrl: "http://127.0.0.1:9/v2" }',
    ]);
    const chains = await bind(file);
    assert.deepEqual(chains.warnings, []);
    assert.equal(chains.apis.get('a')!.api.inbound!.length, 2);
  });

  test('the default document and the example configurations load without a grant problem', async () => {
    const { gatewayAssets } = await import('../runtime/assets/repository.ts');
    const assets = gatewayAssets();
    const { host } = newHost();
    const doc = await readGatewayDocument(assets.defaultDocument.source);
    const chains = await bindChains(doc, { host, baseDir: assets.defaultDocument.baseDir, policies: assets.policies, sourceName: 'default' });
    assert.deepEqual(chains.warnings, []);
  });
});
