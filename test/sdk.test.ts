// The policy author's toolchain: build, new, test, and the npm bin, on real files in a temporary folder.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { buildPolicy, PolicyBuildError } from '../sdk/build/index.ts';
import { runCli } from '../sdk/cli/gatehouse-policy.ts';
import { runPolicyTests } from '../sdk/cli/policy-test.ts';
import { repoRoot } from '../runtime/platform/paths.ts';

const work = mkdtempSync(join(tmpdir(), 'gatehouse-sdk-test-'));
after(() => rmSync(work, { recursive: true, force: true }));

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (l: string) => out.push(l), err: (l: string) => err.push(l) }, out, err };
}

function policyFolder(name: string, source: string, json = `{ "name": "${name}", "version": "0.1.0" }`): string {
  const dir = join(work, name);
  rmSync(dir, { recursive: true, force: true });
  spawnSync('mkdir', ['-p', dir]);
  writeFileSync(join(dir, 'policy.ts'), source);
  writeFileSync(join(dir, 'policy.json'), json);
  return dir;
}

describe('gatehouse-policy', () => {
  test('new scaffolds a policy whose generated tests pass, and refuses to overwrite it', async () => {
    const dir = join(work, 'scaffolded');
    assert.equal(await runCli(['new', dir], capture().io), 0);
    for (const file of ['policy.ts', 'policy.json', 'schema.json', 'policy.test.json', 'README.md']) {
      assert.ok(existsSync(join(dir, file)), `${file} was created`);
    }
    const run = await runPolicyTests(dir);
    assert.equal(run.failed, 0, JSON.stringify(run.results));
    assert.ok(run.passed >= 2);
    const outcomes = (JSON.parse(readFileSync(join(dir, 'policy.test.json'), 'utf8')) as { cases: { expect: { outcome?: string } }[] })
      .cases.map((c) => c.expect.outcome);
    assert.ok(outcomes.includes('continue') && outcomes.includes('respond'));
    const again = capture();
    assert.equal(await runCli(['new', dir], again.io), 1);
    assert.match(again.err.join('\n'), /refusing to overwrite .*policy\.ts/);
  });

  test('test reports each case and fails when an expectation does not hold', async () => {
    const dir = join(work, 'to-break');
    assert.equal(await runCli(['new', dir], capture().io), 0);
    const ok = capture();
    assert.equal(await runCli(['test', dir], ok.io), 0);
    assert.match(ok.out.join('\n'), /^ok - /m);
    assert.match(ok.out.at(-1)!, /^\d+ passed, 0 failed$/);

    const file = join(dir, 'policy.test.json');
    const cases = JSON.parse(readFileSync(file, 'utf8')) as { cases: { expect: { outcome?: string; status?: number } }[] };
    const respondCase = cases.cases.find((c) => c.expect.outcome === 'respond')!;
    respondCase.expect.status = 418;
    writeFileSync(file, JSON.stringify(cases, null, 2));
    const broken = capture();
    assert.equal(await runCli(['test', dir], broken.io), 1);
    assert.match(broken.out.join('\n'), /^not ok - .*status: expected 418, got \d+/m);
    assert.match(broken.out.at(-1)!, /^\d+ passed, 1 failed$/);
  });

  test('a case gives a body that is not text as bodyBase64; both forms at once, or a bad one, is the case\'s error', async () => {
    const dir = join(work, 'binary-body');
    assert.equal(await runCli(['new', dir], capture().io), 0);
    const file = join(dir, 'cases.json');
    const config = { header: 'x-api-key' };
    writeFileSync(file, JSON.stringify({
      cases: [
        { name: 'bytes', config, request: { headers: { 'x-api-key': 'k' }, bodyBase64: '/wA=' }, expect: { outcome: 'continue' } },
        { name: 'both', config, request: { body: 'a', bodyBase64: 'YQ==' }, expect: {} },
        { name: 'bad', config, phase: 'outbound', response: { bodyBase64: 'no base64!' }, expect: {} },
      ],
    }));
    const run = await runPolicyTests(dir, { casesFile: file });
    assert.deepEqual(run.results.map((r) => [r.name, r.ok]), [['bytes', true], ['both', false], ['bad', false]], JSON.stringify(run.results));
    assert.match(run.results[1]!.problems.join(), /request: give "body" or "bodyBase64", not both/);
    assert.match(run.results[2]!.problems.join(), /response\.bodyBase64 is not base64/);
  });

  test('build errors point at the author\'s file and line', async () => {
    const dir = policyFolder(
      'broken',
      ['import { request, CONTINUE } from "@gatehouse/policy-sdk";', '', 'export function on_inbound(): i32 {', '  const x: i32 = request.path();', '  return CONTINUE;', '}', ''].join('\n'),
    );
    const err = await buildPolicy({ source: join(dir, 'policy.ts') }).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(err instanceof PolicyBuildError, `expected a PolicyBuildError, got ${String(err)}`);
    const first = err.diagnostics[0]!;
    assert.ok(first.file.endsWith(join('broken', 'policy.ts')), first.file);
    assert.equal(first.line, 4);
    assert.match(err.message, /broken\/policy\.ts:4:\d+: .*string.*i32|broken\/policy\.ts:4:\d+: .*i32.*string/);
  });

  test('a policy that reaches for an unavailable import is refused at build time with what to use instead', async () => {
    const dir = policyFolder(
      'uses-date',
      ['import { request, CONTINUE } from "@gatehouse/policy-sdk";', 'export function on_inbound(): i32 {', '  request.setHeader("x-now", Date.now().toString());', '  return CONTINUE;', '}', ''].join('\n'),
    );
    await assert.rejects(buildPolicy({ source: join(dir, 'policy.ts') }), /Date\.now[\s\S]*now\(\)/);
  });

  test('build writes an optimised module with no env.abort import, and caches by content', async () => {
    const dir = policyFolder(
      'tiny',
      ['import { request, CONTINUE } from "@gatehouse/policy-sdk";', 'export function on_inbound(): i32 {', '  request.setHeader("x-tiny", "1");', '  return CONTINUE;', '}', ''].join('\n'),
    );
    const outFile = join(work, 'tiny.wasm');
    const { io } = capture();
    assert.equal(await runCli(['build', join(dir, 'policy.ts'), '-o', outFile], io), 0);
    const bytes = readFileSync(outFile);
    const module = await WebAssembly.compile(bytes);
    const importModules = new Set(WebAssembly.Module.imports(module).map((i) => i.module));
    assert.deepEqual([...importModules].filter((m) => m !== 'extism:host/env' && m !== 'gatehouse:host/v1'), []);
    const exports = WebAssembly.Module.exports(module).map((e) => e.name);
    assert.ok(exports.includes('gatehouse_policy_v1') && exports.includes('on_inbound') && exports.includes('memory'));
    assert.ok(bytes.byteLength < 64 * 1024, `the module is ${bytes.byteLength} bytes`);
    const again = await buildPolicy({ source: join(dir, 'policy.ts') });
    assert.equal(again.cached, true);
    assert.equal(again.descriptor.name, 'tiny');
  });

  test('npx gatehouse-policy runs from the repository root', () => {
    const result = spawnSync('npx', ['--no-install', 'gatehouse-policy', '--help'], { cwd: repoRoot(), encoding: 'utf8' });
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout + result.stderr, /gatehouse-policy new <dir>/);
  });

  test('the SDK\'s SHA-256 and HMAC-SHA-256 agree with node:crypto at every length around the block boundaries', async () => {
    const { createHash, createHmac, randomBytes } = await import('node:crypto');
    const { buildFixture, makeExchange, newHost } = await import('./support/policies.ts');
    const { host } = newHost();
    const binding = host.bind({ id: 'crypto/0', phase: 'inbound', module: await host.load(await buildFixture('crypto-vectors')) });
    const lengths = [...Array.from({ length: 130 }, (_, i) => i), 1000, 4095];
    for (const length of lengths) {
      const data = randomBytes(length);
      // Keys shorter than, equal to and longer than the 64-byte block (a long key is hashed first).
      const key = randomBytes([0, 20, 64, 65, 131][length % 5]!);
      const exchange = makeExchange({ method: 'POST', body: new Uint8Array(data), headers: { 'x-key': key.toString('hex') } });
      await binding.run('inbound', exchange);
      assert.equal(exchange.request.headers.get('x-sha256')?.[0], createHash('sha256').update(data).digest('hex'), `sha256, ${length} bytes`);
      assert.equal(exchange.request.headers.get('x-hmac')?.[0], createHmac('sha256', key).update(data).digest('hex'), `hmac, ${length} bytes, key ${key.length}`);
    }
  });
});
