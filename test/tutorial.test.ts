// docs/tutorial.md, followed as written: every shell command of the page is run, in a temporary folder, with the edits
// the page asks for taken from its own code blocks, and what the page shows it printing is checked. The list of the
// page's commands is held here too, so that a command added to the page without being run here fails this test.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { isDeno } from '../runtime/adapters/index.ts';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { startGatewayProcess, tempDir, type GatewayProcess } from './support/gateway-process.ts';

const root = repoRoot();
const page = readFileSync(join(root, 'docs', 'tutorial.md'), 'utf8');
const blocks = [...page.matchAll(/```(\w*)\n([\s\S]*?)```/g)].map((m) => ({ lang: m[1]!, text: m[2]!, at: m.index }));
const commands = blocks.filter((b) => b.lang === 'sh').flatMap((b) => b.text.split('\n').filter((l) => l.trim() !== ''));
/** The block of `lang` that follows `marker` in the page. */
function blockAfter(marker: string, lang: string): string {
  const at = page.indexOf(marker);
  assert.ok(at >= 0, `the tutorial has "${marker}"`);
  const block = blocks.find((b) => b.at > at && b.lang === lang);
  assert.ok(block, `a ${lang} block follows "${marker}"`);
  return block.text;
}

const work = tempDir('gatehouse-tutorial-');
let gateway: GatewayProcess | undefined;
after(async () => {
  await gateway?.stop();
  rmSync(work, { recursive: true, force: true });
});

interface Ran {
  status: number | null;
  out: string;
}

/** `npx gatehouse-policy ...` of the checkout, in `cwd`: its launcher under Node, its source under Deno. */
function gatehousePolicy(args: string[], cwd = work): Ran {
  const [cmd, pre] = isDeno
    ? [(globalThis as unknown as { Deno: { execPath(): string } }).Deno.execPath(), ['run', '-A', join(root, 'sdk', 'cli', 'gatehouse-policy.ts')]]
    : [process.execPath, [join(root, 'sdk', 'bin', 'gatehouse-policy.js')]];
  const run = spawnSync(cmd, [...pre, ...args], { cwd, encoding: 'utf8', timeout: 600_000 });
  return { status: run.status, out: run.stdout + run.stderr };
}

function shell(line: string, cwd: string): Ran {
  const run = spawnSync('bash', ['-c', line], { cwd, encoding: 'utf8', timeout: 600_000 });
  return { status: run.status, out: run.stdout + run.stderr };
}

const BUILD_MS = 300_000;

describe('docs/tutorial.md', () => {
  test('its commands are the ones this test runs', () => {
    assert.deepEqual(commands, [
      'npm install',
      'npx gatehouse-policy --help',
      'npx gatehouse-policy new my-policy',
      'npx gatehouse-policy test my-policy',
      'npx gatehouse-policy test my-policy',
      'npx gatehouse-policy test my-policy',
      'npx gatehouse-policy test my-policy',
      'npx gatehouse-policy build my-policy',
      'npm start -- --config gateway.yaml',
      'curl -i http://127.0.0.1:8080/hello',
      "curl -i -H 'x-api-key: k' http://127.0.0.1:8080/hello",
      'npm install --save-dev file:/path/to/gatehouse/sdk',
      'npx gatehouse-policy new my-policy',
      'npx gatehouse-policy test my-policy',
    ]);
  });

  test('from new to a request through a gateway, and a change while it runs', { timeout: 6 * BUILD_MS }, async () => {
    // `npm install` is the checkout's own setup, which every test run has done.
    const help = gatehousePolicy(['--help']);
    assert.equal(help.status, 0);
    assert.ok(help.out.startsWith(blockAfter('npx gatehouse-policy --help', '').split('\n')[0]!), help.out);

    const created = gatehousePolicy(['new', 'my-policy']);
    assert.equal(created.status, 0, created.out);
    for (const line of blockAfter('npx gatehouse-policy new my-policy', '').trim().split('\n')) assert.ok(created.out.includes(line), `${line} in ${created.out}`);

    const first = gatehousePolicy(['test', 'my-policy']);
    assert.equal(first.status, 0, first.out);
    assert.match(first.out, /^# pass 4$/m);
    for (const line of blockAfter('## 2. Run the tests', '').split('\n').filter((l) => /^ok \d/.test(l))) {
      assert.ok(first.out.includes(line.replace(/ # \d+ ms$/, '')), `${line} in ${first.out}`);
    }

    // 3: the page's case, added at the end of the list; the test fails as the page shows.
    const casesFile = join(work, 'my-policy', 'policy.test.json');
    const cases = JSON.parse(readFileSync(casesFile, 'utf8')) as { cases: unknown[] };
    cases.cases.push(JSON.parse(blockAfter('## 3. Add a test, see it fail', 'json')));
    writeFileSync(casesFile, JSON.stringify(cases, null, 2));
    const failing = gatehousePolicy(['test', 'my-policy']);
    assert.equal(failing.status, 1, failing.out);
    const problem = blockAfter('mind the comma after the', '').split('\n').find((l) => l.includes('response.headers.x-request-id'))!;
    assert.ok(failing.out.includes(problem.trim()), `${problem} in ${failing.out}`);

    // 4: the page's on_outbound, then the page's import line.
    const policyFile = join(work, 'my-policy', 'policy.ts');
    const outbound = blockAfter('## 4. Make it pass', 'ts');
    const source = readFileSync(policyFile, 'utf8');
    const withOutbound = source.replace(/export function on_outbound\(\): i32 \{[\s\S]*?\n\}\n/, outbound);
    assert.notEqual(withOutbound, source);
    writeFileSync(policyFile, withOutbound);
    const missingImport = gatehousePolicy(['test', 'my-policy']);
    assert.equal(missingImport.status, 1);
    assert.match(missingImport.out, /my-policy\/policy\.ts:\d+:\d+: Cannot find name 'context'/);
    const importLine = blockAfter("add it to the\nimport on line 2", 'ts').trim();
    writeFileSync(policyFile, withOutbound.replace(/^import \{[^}]*\} from "@gatehouse\/policy-sdk";$/m, importLine));
    const passing = gatehousePolicy(['test', 'my-policy']);
    assert.equal(passing.status, 0, passing.out);
    assert.match(passing.out, /^ok 5 - my-policy: responses carry the request id/m);

    const built = gatehousePolicy(['build', 'my-policy']);
    assert.equal(built.status, 0, built.out);
    assert.match(built.out, /^built my-policy\/my-policy\.wasm: my-policy@0\.1\.0, \d+ bytes, sha256 [0-9a-f]{64} \(cached, \d+ ms\)/);

    // 6: the page's gateway.yaml, served (npm start runs the build first, which the test run has done).
    writeFileSync(join(work, 'gateway.yaml'), blockAfter('## 6. Serve it from a gateway', 'yaml'));
    gateway = await startGatewayProcess({ config: join(work, 'gateway.yaml'), startTimeoutMs: BUILD_MS });
    const at = (line: string) => line.replace('127.0.0.1:8080', `127.0.0.1:${gateway!.httpPort}`);
    const refused = shell(at('curl -s -i http://127.0.0.1:8080/hello'), work);
    assert.match(refused.out, /^HTTP\/1\.1 401 Unauthorized/);
    assert.ok(refused.out.endsWith('{"error":"missing header x-api-key"}'), refused.out);
    const passed = shell(at("curl -s -i -H 'x-api-key: k' http://127.0.0.1:8080/hello"), work);
    assert.match(passed.out, /^HTTP\/1\.1 200 OK/);
    assert.match(passed.out, /^x-checked-by: my-policy\r?$/m);
    assert.match(passed.out, /"x-api-key":"k"/);

    // 7: the change the page makes, picked up by the running gateway.
    writeFileSync(policyFile, readFileSync(policyFile, 'utf8').replace('"missing header "', '"send the header "'));
    await gateway.waitForLog((l) => l.msg === 'configuration applied' && l.changed === 'policy source', BUILD_MS);
    const changed = shell(at('curl -s -i http://127.0.0.1:8080/hello'), work);
    assert.ok(changed.out.endsWith('{"error":"send the header x-api-key"}'), changed.out);
  });

  test('outside the repository: the SDK as a file: dependency, offline, and npx finds the command', { timeout: 2 * BUILD_MS }, () => {
    const project = tempDir('gatehouse-tutorial-project-');
    try {
      writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'my-policies', private: true, type: 'module' }));
      const install = shell(`npm install --save-dev --offline --no-audit --no-fund file:${join(root, 'sdk')}`, project);
      assert.equal(install.status, 0, install.out);
      const created = shell('npx --offline gatehouse-policy new my-policy', project);
      assert.equal(created.status, 0, created.out);
      assert.match(created.out, /^created my-policy\/policy\.ts$/m);
      const tested = shell('npx --offline gatehouse-policy test my-policy', project);
      assert.equal(tested.status, 0, tested.out);
      assert.match(tested.out, /^# pass 4$/m);
    } finally {
      rmSync(project, { recursive: true, force: true });
    }
  });
});
