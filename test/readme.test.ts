// The README's example, as a reader would run it: its policy and its configuration taken from README.md, the policy
// built from source when the document loads, served by a real gateway process, and the answers the README promises.

import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { startGatewayProcess, tempDir, type GatewayProcess } from './support/gateway-process.ts';

const readme = readFileSync(join(repoRoot(), 'README.md'), 'utf8');

/** The first fenced block of `language` in the README. */
function block(language: string): string {
  const found = new RegExp('```' + language + '\\n([\\s\\S]*?)```').exec(readme);
  assert.ok(found, `README.md has no \`\`\`${language} block`);
  return found[1]!;
}

let dir = '';
let gateway: GatewayProcess;

before(async () => {
  dir = tempDir('gatehouse-readme-');
  mkdirSync(join(dir, 'tenant'));
  writeFileSync(join(dir, 'tenant', 'policy.ts'), block('ts'));
  writeFileSync(join(dir, 'gateway.yaml'), block('yaml'));
  // Building the policy from source takes the AssemblyScript compiler a few seconds on a cold cache.
  gateway = await startGatewayProcess({ config: join(dir, 'gateway.yaml'), startTimeoutMs: 60_000 });
});

after(async () => {
  await gateway?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('without x-tenant the policy answers 400 with its problem', async () => {
  const res = await request(`${gateway.url}/orders/1`);
  assert.equal(res.statusCode, 400);
  const body = (await res.body.json()) as { detail: string };
  assert.equal(body.detail, 'name your tenant in the x-tenant header');
});

test('with x-tenant the backend gets it as x-tenant-id, and the rate limit counts the call', async () => {
  const res = await request(`${gateway.url}/orders/1`, { headers: { 'x-tenant': 'acme' } });
  assert.equal(res.statusCode, 200);
  const echoed = (await res.body.json()) as { path: string; headers: Record<string, string> };
  assert.equal(echoed.headers['x-tenant-id'], 'acme');
  assert.equal(echoed.path, '/1');
  assert.equal(res.headers['ratelimit-policy'], '100;w=60');
  assert.equal(res.headers['ratelimit-remaining'], '99');
});
