// The policy author's toolchain: build, new, test, and the npm bin, on real files in a temporary folder.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { checkPolicyModule, functionSignatures } from '../abi/index.ts';
import { PolicyLoadError } from '../runtime/policy-host/index.ts';
import { buildPolicy, checkModule, PolicyBuildError } from '../sdk/build/index.ts';
import { runCli } from '../sdk/cli/gatehouse-policy.ts';
import { runPolicyTests } from '../sdk/cli/policy-test.ts';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { newHost, rawModule } from './support/policies.ts';

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
    assert.match(ok.out.join('\n'), /^ok 1 - /m);
    assert.match(ok.out.join('\n'), /^# fail 0$/m);

    const file = join(dir, 'policy.test.json');
    const cases = JSON.parse(readFileSync(file, 'utf8')) as { cases: { expect: { outcome?: string; status?: number } }[] };
    const respondCase = cases.cases.find((c) => c.expect.outcome === 'respond')!;
    respondCase.expect.status = 418;
    writeFileSync(file, JSON.stringify(cases, null, 2));
    const broken = capture();
    assert.equal(await runCli(['test', dir], broken.io), 1);
    assert.match(broken.out.join('\n'), /^not ok \d+ - [\s\S]*status: expected 418, got \d+/m);
    assert.match(broken.out.join('\n'), /^# fail 1$/m);
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

  test('policy.json "deterministic": true goes into the descriptor; anything but a boolean is refused at its line', async () => {
    const source = ['import { request, CONTINUE } from "@gatehouse/policy-sdk";', 'export function on_inbound(): i32 {', '  request.setHeader("x-d", "1");', '  return CONTINUE;', '}', ''].join('\n');
    const built = await buildPolicy({ source: join(policyFolder('declares', source, '{ "name": "declares", "deterministic": true }'), 'policy.ts') });
    assert.equal(built.descriptor.deterministic, true);
    const plain = await buildPolicy({ source: join(policyFolder('plain', source), 'policy.ts') });
    assert.equal(plain.descriptor.deterministic, false);
    const dir = policyFolder('misdeclares', source, '{\n  "name": "misdeclares",\n  "deterministic": "yes"\n}');
    const err = await buildPolicy({ source: join(dir, 'policy.ts') }).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(err instanceof PolicyBuildError, `expected a PolicyBuildError, got ${String(err)}`);
    assert.equal(err.diagnostics[0]!.line, 3);
    assert.match(err.message, /"deterministic" must be true or false \(got "yes"\)/);
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
    // sha256Hex hashes a string's UTF-8 bytes: ASCII at the block boundaries, two- and three-byte characters, and a
    // text longer than the SDK's 1 KiB scratch buffer.
    for (const text of ['', 'a'.repeat(55), 'a'.repeat(56), 'a'.repeat(64), 'bench-key-0001', 'café ☕ naïve', 'x'.repeat(5000)]) {
      const exchange = makeExchange({ headers: { 'x-text': text } });
      await binding.run('inbound', exchange);
      assert.equal(exchange.request.headers.get('x-text-sha256')?.[0], createHash('sha256').update(text, 'utf8').digest('hex'), `sha256Hex of ${text.length} characters`);
    }
  });
});

// The SDK's build and the gateway's loader decide whether a module is acceptable with the same check
// (abi/module-check.ts): what the build accepts, the gateway loads. Modules written by hand, for what the compiler
// would not produce.
describe('the build refuses what the gateway refuses, with the same check', () => {
  /** The sections of a module: id, and where its content starts. */
  function sections(bytes: Uint8Array): { id: number; contentStart: number }[] {
    const out: { id: number; contentStart: number }[] = [];
    let pos = 8;
    while (pos < bytes.length) {
      const id = bytes[pos++]!;
      let size = 0;
      for (let shift = 0; ; shift += 7) {
        const b = bytes[pos++]!;
        size += (b & 0x7f) * 2 ** shift;
        if ((b & 0x80) === 0) break;
      }
      out.push({ id, contentStart: pos });
      pos += size;
    }
    return out;
  }

  /** What the gateway's loader and the build's check say of `bytes`: null for accepted, else the error. */
  async function verdicts(bytes: Uint8Array): Promise<{ loaded: unknown; built: unknown }> {
    const { host } = newHost();
    const loaded = await host.load(bytes).then(
      () => null,
      (e: unknown) => e,
    );
    const built = await checkModule(new Uint8Array(bytes), join(work, 'hand-written', 'policy.ts')).then(
      () => null,
      (e: unknown) => e,
    );
    return { loaded, built };
  }

  test('a module whose export section runs past its end is refused by both; the reader says so instead of reading on', async () => {
    const good = await rawModule();
    const exports = sections(good).find((s) => s.id === 7)!;
    // Cut three bytes into the export section: its size claims bytes the module does not have.
    const cut = good.slice(0, exports.contentStart + 3);
    assert.throws(() => functionSignatures(cut), /section 7 runs past the end of the module/);
    const { loaded, built } = await verdicts(cut);
    assert.ok(loaded instanceof PolicyLoadError, String(loaded));
    assert.match(loaded.message, /not a valid WebAssembly module/);
    assert.ok(built instanceof PolicyBuildError, String(built));
    assert.match(built.message, /not valid WebAssembly/);
  });

  test('modules the build let through before and the gateway refused are refused by both, for the same reason', async () => {
    const cases: { what: string; bytes: Uint8Array; gateway: RegExp; build: RegExp }[] = [
      {
        what: 'a host function declared with other parameters',
        bytes: await rawModule({ imports: '(import "gatehouse:host/v1" "get" (func $g (param i32) (result i32)))' }),
        gateway: /import gatehouse:host\/v1\.get: declared as \(i32\) -> i32, but it is \(i32, i32, i32, i32, i32\) -> i32/,
        build: /import gatehouse:host\/v1\.get: declared as \(i32\) -> i32, but it is \(i32, i32, i32, i32, i32\) -> i32/,
      },
      {
        what: 'a global imported from the host module',
        bytes: await rawModule({ imports: '(import "gatehouse:host/v1" "get" (global i32))' }),
        gateway: /import gatehouse:host\/v1\.get \(global\): only functions can be imported/,
        build: /import gatehouse:host\/v1\.get \(global\): only functions can be imported/,
      },
      {
        what: 'a handler exported as a global',
        bytes: await rawModule({ exports: '(global (export "on_inbound") i32 (i32.const 0))' }),
        gateway: /no phase handler exported/,
        build: /no phase handler is exported: add at least one of export function on_inbound\(\): i32/,
      },
    ];
    for (const c of cases) {
      assert.ok((await checkPolicyModule(new Uint8Array(c.bytes), { allowWasi: false })).problems.length > 0, c.what);
      const { loaded, built } = await verdicts(c.bytes);
      assert.ok(loaded instanceof PolicyLoadError, `${c.what}: the gateway refuses it (${String(loaded)})`);
      assert.match(loaded.message, c.gateway, c.what);
      assert.ok(built instanceof PolicyBuildError, `${c.what}: the build refuses it (${String(built)})`);
      assert.match(built.message, c.build, c.what);
    }
  });

  test('a module written by hand that keeps the ABI passes both; WASI alone is refused by the build and left to the grants by the gateway', async () => {
    const good = await verdicts(await rawModule());
    assert.deepEqual(good, { loaded: null, built: null });
    const wasi = await verdicts(await rawModule({ imports: '(import "wasi_snapshot_preview1" "random_get" (func $r (param i32 i32) (result i32)))' }));
    assert.equal(wasi.loaded, null, 'the gateway loads it; binding it needs the wasi grant');
    assert.ok(wasi.built instanceof PolicyBuildError);
    assert.match(wasi.built.message, /import wasi_snapshot_preview1::random_get is not allowed: WASI \(random_get\) is not available to SDK policies/);
  });

  test('a schema.json that is not a JSON Schema is refused at build time, as the gateway refuses the descriptor', async () => {
    const dir = policyFolder(
      'bad-schema',
      ['import { CONTINUE } from "@gatehouse/policy-sdk";', 'export function on_inbound(): i32 {', '  return CONTINUE;', '}', ''].join('\n'),
    );
    writeFileSync(join(dir, 'schema.json'), '{ "type": "no-such-type" }');
    const err = await buildPolicy({ source: join(dir, 'policy.ts') }).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(err instanceof PolicyBuildError, String(err));
    assert.match(err.message, /bad-schema\/schema\.json:1:1: descriptor\.configSchema is not a valid JSON Schema/);
  });
});
