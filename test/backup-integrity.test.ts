// What a gateway reads back from its backup folder is checked as what it downloads is: a configuration backup altered
// into other valid JSON is not served, and a module file (or its signature) altered on disk is not loaded.

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConfigError } from '../runtime/config/config-error.ts';
import { ModuleSigner, newSigningKey, trustedKey } from '../runtime/gateway-api/module-signatures.ts';
import { sha256Hex } from '../runtime/policy-host/module.ts';
import { ConfigBackup } from '../runtime/sync/backup.ts';
import { ControlPlaneClient } from '../runtime/sync/control-plane-client.ts';
import { ModuleCache, ModuleDownloadError } from '../runtime/sync/modules.ts';
import { tempDir } from './support/gateway-process.ts';

const documentWith = (marker: string) => JSON.stringify({ version: 1, apis: [{ id: 'stock', pathPrefix: '/stock', backend: { url: `http://127.0.0.1:1/${marker}` } }] });

describe('the configuration backup read back', () => {
  test('a current backup altered into other valid JSON is not used: the previous one is; both altered, none is', async () => {
    const dir = tempDir('gatehouse-backup-altered-');
    const backup = new ConfigBackup(dir);
    await backup.save({ text: documentWith('first'), etag: '"1"', revision: 'r1' });
    await backup.save({ text: documentWith('second'), etag: '"2"', revision: 'r2' });
    assert.deepEqual((await backup.entries()).usable.map((e) => e.revision), ['r2', 'r1']);

    // Altered, not cut short: the file is still JSON of the right shape, its digest left as it was.
    const alter = (name: string) => {
      const file = JSON.parse(readFileSync(join(dir, name), 'utf8')) as { text: string };
      file.text = file.text.replace(/127\.0\.0\.1:1/, '203.0.113.66:80');
      writeFileSync(join(dir, name), JSON.stringify(file));
    };
    alter('config.json');
    const oneLeft = await backup.entries();
    assert.deepEqual(oneLeft.usable.map((e) => [e.revision, e.text]), [['r1', documentWith('first')]]);
    assert.equal(oneLeft.problems.length, 1);
    assert.match(oneLeft.problems[0]!, /config\.json: its digest does not match its content/);

    alter('config.previous.json');
    const none = await backup.entries();
    assert.deepEqual(none.usable, []);
    assert.equal(none.problems.length, 2);
  });
});

describe('policy modules read back from the backup folder', () => {
  const signer = new ModuleSigner(newSigningKey());
  const bytes = new TextEncoder().encode('module bytes: the cache checks their digest and signature, not their content');
  const sha = sha256Hex(bytes);
  const document = JSON.stringify({
    version: 1,
    apis: [{ id: 'a', pathPrefix: '/a', backend: { url: 'http://127.0.0.1:1' }, policies: { inbound: [{ module: `sha256:${sha}` }] } }],
  });
  // The control plane's module download (GET /gateway/v1/modules/<sha>), counted; closed, it stands for one unreachable.
  let downloads = 0;
  let server: Server;
  let url: string;

  before(async () => {
    server = createServer((req, res) => {
      downloads++;
      if (req.url !== `/gateway/v1/modules/${sha}`) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'application/wasm', 'x-gatehouse-signature': signer.sign(sha) });
      res.end(bytes);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  const cacheIn = (dir: string, at = url) =>
    new ModuleCache({ client: new ControlPlaneClient({ url: at, token: 'gateway-token', timeoutMs: 2000 }), dir, trustedKey: trustedKey(signer.publicKeyPem) });

  test('a module altered on disk, or its signature, is downloaded again; with the control plane unreachable it is refused', async () => {
    const dir = tempDir('gatehouse-modules-altered-');
    const wasm = join(dir, `${sha}.wasm`);
    const sig = join(dir, `${sha}.sig`);
    await cacheIn(dir).prepare(document);
    assert.equal(downloads, 1);
    // A restart with the files intact: read back, checked, not downloaded again.
    await cacheIn(dir).prepare(document);
    assert.equal(downloads, 1);

    // Altered module: a restart downloads it again and writes back the bytes that check out.
    writeFileSync(wasm, Buffer.concat([readFileSync(wasm), Buffer.from('!')]));
    await cacheIn(dir).prepare(document);
    assert.equal(downloads, 2);
    assert.deepEqual(new Uint8Array(readFileSync(wasm)), bytes);

    // Altered signature (a valid signature of another digest): the same.
    writeFileSync(sig, signer.sign('0'.repeat(64)));
    await cacheIn(dir).prepare(document);
    assert.equal(downloads, 3);
    assert.equal(readFileSync(sig, 'utf8'), signer.sign(sha));

    // A start from the backup with the control plane unreachable: what does not check out on disk is not loaded.
    const unreachable = 'http://127.0.0.1:1';
    for (const [file, altered] of [
      [wasm, Buffer.concat([Buffer.from(bytes), Buffer.from('!')])],
      [sig, Buffer.from(signer.sign('0'.repeat(64)))],
    ] as const) {
      const intact = readFileSync(file);
      writeFileSync(file, altered);
      const err = await cacheIn(dir, unreachable).prepare(document).then(
        () => null,
        (e: unknown) => e,
      );
      assert.ok(err instanceof ModuleDownloadError, `${file}: ${String(err)}`);
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, new RegExp(`sha256:${sha}`));
      writeFileSync(file, intact);
    }
    assert.equal(downloads, 3);
  });
});
