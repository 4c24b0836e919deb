// The module cache, driven directly: a real HTTP server on 127.0.0.1 stands for the control plane's module download
// (GET /gateway/v1/modules/<sha>), modules are signed with a real Ed25519 key, and the cache folder is a real temp folder.
// What is downloaded and when, what is refused and whether as the document's fault (ConfigError) or the control plane's
// (ModuleDownloadError, tried again), and what pruning removes.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConfigError } from '../runtime/config/config-error.ts';
import { ModuleSigner, newSigningKey, trustedKey } from '../runtime/gateway-api/module-signatures.ts';
import { sha256Hex } from '../runtime/policy-host/module.ts';
import { ControlPlaneClient } from '../runtime/sync/control-plane-client.ts';
import { STALE_TEMP_MS } from '../runtime/sync/durable-file.ts';
import { ModuleCache, ModuleDownloadError } from '../runtime/sync/modules.ts';
import { tempDir } from './support/gateway-process.ts';

const signer = new ModuleSigner(newSigningKey());
const trusted = trustedKey(signer.publicKeyPem);
const moduleBytes = (name: string) => new TextEncoder().encode(`module ${name}: the cache checks digest and signature, not content`);
const modA = moduleBytes('a');
const modB = moduleBytes('b');
const shaA = sha256Hex(modA);
const shaB = sha256Hex(modB);
const TOKEN = 'gw2.edge.1.2000000000.0123456789abcdef.token-for-the-test';

/** A document naming `shas` as uploaded modules (inbound, API scope), and one built-in policy that is left as it is. */
const documentNaming = (...shas: string[]) =>
  JSON.stringify({
    version: 1,
    apis: [
      {
        id: 'a',
        pathPrefix: '/a',
        backend: { url: 'http://127.0.0.1:1' },
        policies: { inbound: [...shas.map((sha) => ({ module: `sha256:${sha}` })), { policy: 'set-header', config: { name: 'x', value: 'y' } }] },
      },
    ],
  });
const modulesOf = (text: string) =>
  (JSON.parse(text) as { apis: { policies: { inbound: { module?: string }[] } }[] }).apis[0]!.policies.inbound.flatMap((p) => (p.module ? [p.module] : []));

/** What the control plane answers for a module: its bytes and signature, unless told otherwise. */
type Answer = (res: ServerResponse) => void;
const serve = (bytes: Uint8Array, signature?: string): Answer => (res) => {
  res.writeHead(200, { 'content-type': 'application/wasm', ...(signature === undefined ? {} : { 'x-gatehouse-signature': signature }) });
  res.end(bytes);
};

describe('the module cache', () => {
  let server: Server;
  let url: string;
  const answers = new Map<string, Answer>();
  const requests: { method: string; url: string; headers: IncomingHttpHeaders }[] = [];

  before(async () => {
    server = createServer((req, res) => {
      requests.push({ method: req.method!, url: req.url!, headers: req.headers });
      const answer = answers.get(req.url!.slice('/gateway/v1/modules/'.length));
      if (!req.url!.startsWith('/gateway/v1/modules/') || !answer) return void res.writeHead(404).end();
      answer(res);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  // Every client the tests make, closed at the end: their kept-alive connections would hold the process open.
  const clients: ControlPlaneClient[] = [];
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await new Promise<void>((r) => server.close(() => r()));
  });

  const reset = (entries: [string, Answer][]) => {
    answers.clear();
    for (const [sha, answer] of entries) answers.set(sha, answer);
    requests.length = 0;
  };
  const client = (at = url, timeoutMs = 2000) => {
    const made = new ControlPlaneClient({ url: at, token: TOKEN, timeoutMs });
    clients.push(made);
    return made;
  };
  const cacheIn = (dir: string | undefined, at = url) => new ModuleCache({ client: client(at), dir, trustedKey: trusted });
  const failure = (promise: Promise<unknown>) =>
    promise.then(
      () => assert.fail('expected the document to be refused'),
      (err: unknown) => err as ConfigError,
    );
  const refusedAs = (err: ConfigError, sha: string, message: string, summary: string) => {
    assert.ok(err instanceof ConfigError, String(err));
    assert.deepEqual(err.problems, [{ where: `module sha256:${sha}`, message }]);
    assert.equal(err.message.split('\n')[0], `${summary} (1 problem):`);
  };
  const REFUSED = 'a policy module from the control plane was refused';
  const NOT_DOWNLOADED = 'a policy module from the control plane could not be downloaded';

  test('a document naming no uploaded module is left as it is, relative to the working folder, and nothing is fetched', async () => {
    reset([]);
    const cache = new ModuleCache({ client: client() });
    for (const text of [documentNaming(), 'version: 1', '{"version":1,"apis":[{"id":"a","policies":{"inbound":[{"module":"sha256:short"}]}}]}']) {
      assert.deepEqual(await cache.prepare(text), { text, dir: process.cwd() });
    }
    assert.deepEqual(requests, []);
    assert.deepEqual(await cache.prune([documentNaming()]), [], 'a cache that never made its folder has nothing to prune');
  });

  test('without a trusted key, a document naming an uploaded module is refused, and nothing is fetched', async () => {
    reset([[shaA, serve(modA, signer.sign(shaA))]]);
    const err = await failure(new ModuleCache({ client: client(), dir: tempDir('gatehouse-modcache-nokey-') }).prepare(documentNaming(shaA)));
    assert.ok(!(err instanceof ModuleDownloadError));
    refusedAs(err, shaA, "the document names uploaded modules, and GATEHOUSE_TRUSTED_KEY (the control plane's public key) is not set", REFUSED);
    assert.deepEqual(requests, []);
  });

  test('each module named is downloaded once with the gateway token, checked, kept, and named by its file in the document', async () => {
    reset([
      [shaA, serve(modA, signer.sign(shaA))],
      [shaB, serve(modB, signer.sign(shaB))],
    ]);
    const dir = join(tempDir('gatehouse-modcache-fetch-'), 'backup', 'modules');
    const cache = cacheIn(dir);
    const prepared = await cache.prepare(documentNaming(shaA, shaB, shaA));
    assert.equal(prepared.dir, dir);
    assert.deepEqual(modulesOf(prepared.text), [`${shaA}.wasm`, `${shaB}.wasm`, `${shaA}.wasm`]);
    assert.match(prepared.text, /"policy":"set-header"/);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.deepEqual(readdirSync(dir).sort(), [`${shaA}.sig`, `${shaA}.wasm`, `${shaB}.sig`, `${shaB}.wasm`].sort());
    assert.deepEqual(new Uint8Array(readFileSync(join(dir, `${shaA}.wasm`))), modA);
    assert.equal(readFileSync(join(dir, `${shaB}.sig`), 'utf8'), signer.sign(shaB));
    assert.deepEqual(requests.map((r) => r.url).sort(), [`/gateway/v1/modules/${shaA}`, `/gateway/v1/modules/${shaB}`].sort());
    assert.ok(requests.every((r) => r.method === 'GET' && r.headers.authorization === `GatewayKey ${TOKEN}`));

    // Kept: the same cache, or another over the same folder (a restart), fetches nothing again.
    await cache.prepare(documentNaming(shaB));
    await cacheIn(dir).prepare(documentNaming(shaA, shaB));
    assert.equal(requests.length, 2);
  });

  test('a signature kept with a line end still checks; a module kept without its signature, or a signature without its module, is fetched again', async () => {
    reset([[shaA, serve(modA, signer.sign(shaA))]]);
    const dir = tempDir('gatehouse-modcache-kept-');
    writeFileSync(join(dir, `${shaA}.wasm`), modA);
    writeFileSync(join(dir, `${shaA}.sig`), `${signer.sign(shaA)}\n`);
    await cacheIn(dir).prepare(documentNaming(shaA));
    assert.equal(requests.length, 0);

    writeFileSync(join(dir, `${shaA}.sig`), '');
    await cacheIn(dir).prepare(documentNaming(shaA));
    assert.equal(requests.length, 1, 'an empty signature file does not check out');

    for (const missing of [`${shaA}.sig`, `${shaA}.wasm`]) {
      const path = join(dir, missing);
      const kept = readFileSync(path);
      rmSync(path);
      await cacheIn(dir).prepare(documentNaming(shaA));
      assert.deepEqual(readFileSync(path), kept, missing);
    }
    assert.equal(requests.length, 3);
  });

  test('without a folder given, the modules are kept in a private temp folder of their own, the same for every document', async () => {
    reset([
      [shaA, serve(modA, signer.sign(shaA))],
      [shaB, serve(modB, signer.sign(shaB))],
    ]);
    const cache = cacheIn(undefined);
    const first = await cache.prepare(documentNaming(shaA));
    assert.equal(dirname(first.dir), tmpdir());
    assert.match(first.dir, /[/\\]gatehouse-modules-[^/\\]+$/);
    assert.equal(statSync(first.dir).mode & 0o777, 0o700);
    const second = await cache.prepare(documentNaming(shaB));
    assert.equal(second.dir, first.dir);
    assert.deepEqual(readdirSync(first.dir).sort(), [`${shaA}.sig`, `${shaA}.wasm`, `${shaB}.sig`, `${shaB}.wasm`].sort());
  });

  test('the content or signature the control plane sends must check out: otherwise the document is refused and nothing is kept', async () => {
    const dir = tempDir('gatehouse-modcache-bad-download-');
    const cases: [Answer, string][] = [
      [serve(modB, signer.sign(shaA)), 'its content does not match its sha256 (altered or cut short)'],
      [serve(modA.subarray(1), signer.sign(shaA)), 'its content does not match its sha256 (altered or cut short)'],
      [serve(modA, signer.sign(shaB)), "its signature is not the trusted control plane's"],
      [serve(modA, new ModuleSigner(newSigningKey()).sign(shaA)), "its signature is not the trusted control plane's"],
      [serve(modA), "its signature is not the trusted control plane's"],
    ];
    for (const [answer, message] of cases) {
      reset([[shaA, answer]]);
      const err = await failure(cacheIn(dir).prepare(documentNaming(shaA)));
      assert.ok(!(err instanceof ModuleDownloadError), message);
      refusedAs(err, shaA, message, REFUSED);
      assert.deepEqual(readdirSync(dir), []);
    }
  });

  test('a module the control plane does not have refuses the document; an error, a refused token or no answer is the control plane\'s, tried again', async () => {
    const dir = tempDir('gatehouse-modcache-status-');
    const status = (code: number): Answer => (res) => void res.writeHead(code).end('no');
    for (const code of [404, 400, 410, 204, 302, 499]) {
      reset([[shaA, status(code)]]);
      const err = await failure(cacheIn(dir).prepare(documentNaming(shaA)));
      assert.ok(!(err instanceof ModuleDownloadError), `${code}`);
      refusedAs(err, shaA, `could not be downloaded: the control plane answered ${code}`, REFUSED);
    }
    for (const code of [500, 502, 503, 599, 401, 403]) {
      reset([[shaA, status(code)]]);
      const err = await failure(cacheIn(dir).prepare(documentNaming(shaA)));
      assert.ok(err instanceof ModuleDownloadError, `${code}`);
      assert.equal(err.name, 'ModuleDownloadError');
      refusedAs(err, shaA, `could not be downloaded: the control plane answered ${code}`, NOT_DOWNLOADED);
    }
    const unreachable = await failure(cacheIn(dir, 'http://127.0.0.1:1').prepare(documentNaming(shaA)));
    assert.ok(unreachable instanceof ModuleDownloadError);
    assert.equal(unreachable.problems.length, 1);
    assert.equal(unreachable.problems[0]!.where, `module sha256:${shaA}`);
    assert.match(unreachable.problems[0]!.message, /^could not be downloaded: \S/);
    assert.deepEqual(readdirSync(dir), []);
  });

  test('a download may take longer than a poll: the client\'s own timeout does not cut it short', async () => {
    // The client's calls time out after 100 ms; the module comes after 300 ms, far inside the 10 s a download is given.
    const slow: Answer = (res) => void setTimeout(() => serve(modA, signer.sign(shaA))(res), 300);
    reset([[shaA, slow]]);
    const dir = tempDir('gatehouse-modcache-slow-');
    const cache = new ModuleCache({ client: client(url, 100), dir, trustedKey: trusted });
    await cache.prepare(documentNaming(shaA));
    assert.deepEqual(new Uint8Array(readFileSync(join(dir, `${shaA}.wasm`))), modA);
  });

  test('temporary files of a download that died are removed when the folder is first used, once', async () => {
    reset([
      [shaA, serve(modA, signer.sign(shaA))],
      [shaB, serve(modB, signer.sign(shaB))],
    ]);
    const dir = tempDir('gatehouse-modcache-sweep-');
    const hourAgo = new Date(Date.now() - 3_600_000);
    const abandoned = (name: string) => {
      writeFileSync(join(dir, name), 'partial');
      utimesSync(join(dir, name), hourAgo, hourAgo);
    };
    abandoned(`${shaB}.wasm.0123456789abcdef.tmp`);
    const cache = cacheIn(dir);
    await cache.prepare(documentNaming(shaA));
    assert.deepEqual(readdirSync(dir).sort(), [`${shaA}.sig`, `${shaA}.wasm`]);
    abandoned(`${shaB}.wasm.fedcba9876543210.tmp`);
    await cache.prepare(documentNaming(shaB));
    assert.ok(existsSync(join(dir, `${shaB}.wasm.fedcba9876543210.tmp`)), 'the sweep is the first use\'s only');
  });

  test('pruning removes the modules no document names, once old enough; a document that cannot be read keeps everything', async () => {
    reset([
      [shaA, serve(modA, signer.sign(shaA))],
      [shaB, serve(modB, signer.sign(shaB))],
    ]);
    const dir = tempDir('gatehouse-modcache-prune-');
    const cache = cacheIn(dir);
    await cache.prepare(documentNaming(shaA, shaB));
    mkdirSync(join(dir, 'other'));
    // Not the cache's files, though they hold a digest: left alone whatever the documents name.
    const notModules = ['notes.txt', `copy-${shaB}.wasm`, `${shaB}.wasm.bak`, `${shaB}.sig.orig`];
    for (const name of notModules) writeFileSync(join(dir, name), 'not a module');
    const age = (ms: number) => {
      const then = new Date(Date.now() - ms);
      for (const name of readdirSync(dir)) utimesSync(join(dir, name), then, then);
    };
    const everything = [`${shaA}.sig`, `${shaA}.wasm`, `${shaB}.sig`, `${shaB}.wasm`, ...notModules, 'other'].sort();

    // Young files stay whatever names them (a replica's download for a revision not seen here yet).
    assert.deepEqual(await cache.prune([documentNaming(shaA)]), []);
    age(STALE_TEMP_MS / 2);
    assert.deepEqual(await cache.prune([documentNaming(shaA)]), [], 'the default age is STALE_TEMP_MS');
    assert.deepEqual(await cache.prune([documentNaming(shaA)], STALE_TEMP_MS / 4), [shaB]);
    assert.deepEqual(readdirSync(dir).sort(), [`${shaA}.sig`, `${shaA}.wasm`, ...notModules, 'other'].sort());

    await cache.prepare(documentNaming(shaA, shaB));
    age(2 * STALE_TEMP_MS);
    assert.deepEqual(await cache.prune([documentNaming(shaA), 'not json']), [], 'an unreadable document might name anything');
    assert.deepEqual(await cache.prune([documentNaming(shaB), documentNaming(shaA)]), []);
    assert.deepEqual(readdirSync(dir).sort(), everything);
    assert.deepEqual((await cache.prune([documentNaming(shaB)])).sort(), [shaA]);
    assert.deepEqual((await cache.prune([])).sort(), [shaB]);
    assert.deepEqual(readdirSync(dir).sort(), [...notModules, 'other'].sort());
  });
});
