// The gateway configuration document's policies, resolved and bound, and the file watcher that reloads it. Real files
// in a temporary folder, policies compiled by the SDK. Parsing and checking the document: config-load.test.ts.

import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ConfigError } from '../runtime/config/config-error.ts';
import { readGatewayDocument } from '../runtime/config/parse-document.ts';
import { bindChains } from '../runtime/config/policies.ts';
import { bindingsIn, type PolicyChain } from '../runtime/pipeline/chain.ts';
import { RepositoryPolicySources } from '../runtime/config/repository-policies.ts';
import { ConfigFileWatcher } from '../runtime/config/watch.ts';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { buildFixture, makeExchange, newHost } from './support/policies.ts';
import { messageAt } from './support/config-problems.ts';
import { waitFor } from './support/wait.ts';
import { gatewayAssets } from '../runtime/assets/repository.ts';

const work = mkdtempSync(join(tmpdir(), 'gatehouse-config-test-'));
after(() => rmSync(work, { recursive: true, force: true }));

const builtinDir = join(repoRoot(), 'policies');
const policies = new RepositoryPolicySources(builtinDir);

async function rejects(promise: Promise<unknown>): Promise<ConfigError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${(err as Error)?.stack ?? String(err)}`);
    return err;
  }
  assert.fail('accepted');
}

describe('binding the policies of a document', () => {
  test('the default document: built-in policies, bound, warmed, working', async () => {
    const { host } = newHost();
    const doc = await readGatewayDocument(gatewayAssets().defaultDocument.source);
    const chains = await bindChains(doc, { host, baseDir: join(repoRoot(), 'runtime', 'config'), policies, sourceName: 'default.yaml' });
    const echo = chains.apis.get('echo')!;
    assert.deepEqual(bindingsIn(echo.api.inbound!).map((b) => [b.id, b.name]), [['api:echo/inbound/0', 'check-header']]);
    assert.deepEqual(bindingsIn(echo.api.outbound!).map((b) => [b.id, b.name]), [['api:echo/outbound/0', 'set-header']]);
    assert.equal(echo.operations.size, 0);
    assert.equal(chains.global.inbound!.length, 0);

    const refused = makeExchange({ path: '/echo/hello' });
    await bindingsIn(echo.api.inbound!)[0]!.run('inbound', refused);
    assert.equal(refused.responded, true);
    assert.equal(refused.response.status, 401);
    const allowed = makeExchange({ path: '/echo/hello', headers: { 'x-api-key': 'demo-key' } });
    await bindingsIn(echo.api.inbound!)[0]!.run('inbound', allowed);
    assert.equal(allowed.responded, false);
  });

  test('built-in names, a .wasm module path and a source folder, at every scope, with stable ids', async () => {
    const dir = join(work, 'bind-ok');
    mkdirSync(join(dir, 'modules'), { recursive: true });
    writeFileSync(join(dir, 'modules', 'probe.wasm'), await buildFixture('chain-probe'));
    cpSync(join(builtinDir, 'set-header'), join(dir, 'my-set-header'), { recursive: true });
    const file = join(dir, 'gw.yaml');
    writeFileSync(
      file,
      `version: 1
policies:
  inbound:
    - module: modules/probe.wasm
      config: { tag: g }
apis:
  - id: shop
    pathPrefix: /shop
    backend: { url: builtin:echo }
    policies:
      inbound:
        - policy: check-header
          config: { name: x-key }
      outbound:
        - module: ./modules/probe.wasm
          config: { tag: a }
          limits: { cpuMs: 100 }
          failOpen: true
        - source: my-set-header
          config: { name: x-from-source, value: "1" }
    operations:
      - id: getItem
        method: GET
        urlTemplate: /items/{id}
        policies:
          inbound:
            - source: ./my-set-header/policy.ts
              config: { name: x-op, value: "2" }
          on-error:
            - module: ${join(dir, 'modules', 'probe.wasm')}
      - id: list
        method: GET
        urlTemplate: /items
`,
    );
    const { host } = newHost();
    const doc = await readGatewayDocument(file);
    const chains = await bindChains(doc, { host, baseDir: dir, policies, sourceName: file });
    const ids = (c: Partial<PolicyChain>) =>
      Object.fromEntries(Object.entries(c).filter(([, v]) => v!.length > 0).map(([k, v]) => [k, bindingsIn(v!).map((b) => `${b.id} ${b.name}`)]));
    assert.deepEqual(ids(chains.global), { inbound: ['global/inbound/0 chain-probe'] });
    const shop = chains.apis.get('shop')!;
    assert.deepEqual(ids(shop.api), {
      inbound: ['api:shop/inbound/0 check-header'],
      outbound: ['api:shop/outbound/0 chain-probe', 'api:shop/outbound/1 set-header'],
    });
    assert.deepEqual(ids(shop.operations.get('getItem')!), {
      inbound: ['api:shop/op:getItem/inbound/0 set-header'],
      'on-error': ['api:shop/op:getItem/on-error/0 chain-probe'],
    });
    assert.deepEqual(ids(shop.operations.get('list')!), {});
    assert.equal(shop.api.outbound![0]!.failOpen, true);
    // One module per content: chain-probe, check-header, set-header (the copy builds to the same bytes or not, at most 4).
    assert.ok(host.loadedModules().length >= 3 && host.loadedModules().length <= 4, String(host.loadedModules().length));
  });

  test('every bad entry is reported with its place: unknown built-in, missing files, bad configuration, wrong phase', async () => {
    const dir = join(work, 'bind-bad');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'not-a-module.wasm'), 'hello');
    mkdirSync(join(dir, 'broken'), { recursive: true });
    writeFileSync(join(dir, 'broken', 'policy.ts'), 'export function on_inbound(): i32 { return undefinedThing; }\n');
    const file = join(dir, 'gw.yaml');
    writeFileSync(
      file,
      `version: 1
policies:
  inbound:
    - policy: no-such-policy
apis:
  - id: a
    pathPrefix: /a
    backend: { url: builtin:echo }
    policies:
      inbound:
        - policy: check-header
          config: { values: [x] }
        - module: missing.wasm
        - module: not-a-module.wasm
        - source: broken
        - source: nowhere
      outbound:
        - policy: check-header
          config: { name: x-ok }
        - policy: set-header
          config: { name: x, value: y }
          limits: { memoryBytes: 1000 }
`,
    );
    const { host } = newHost();
    const doc = await readGatewayDocument(file);
    const err = await rejects(bindChains(doc, { host, baseDir: dir, policies, sourceName: 'gw.yaml' }));
    const at = (where: string) => messageAt(err.problems, where);
    assert.match(at('gw.yaml:4: policies.inbound[0]'), /no built-in policy "no-such-policy" \(built-in policies: authentication-basic, check-header, cors, .*, set-header, .*\)/);
    assert.match(at('gw.yaml:11: apis[0].policies.inbound[0]'), /config .*required property 'name'/);
    assert.match(at('gw.yaml:13: apis[0].policies.inbound[1]'), /cannot read module missing\.wasm \(.*missing\.wasm\): no such file/);
    assert.match(at('gw.yaml:14: apis[0].policies.inbound[2]'), /the module cannot be loaded: /);
    assert.match(at('gw.yaml:15: apis[0].policies.inbound[3]'), /the policy cannot be built: .*policy\.ts:1:\d+: .*undefinedThing/);
    assert.match(at('gw.yaml:16: apis[0].policies.inbound[4]'), /the policy cannot be built: .*nowhere.*no such file/);
    assert.match(at('gw.yaml:18: apis[0].policies.outbound[0]'), /policy check-header has no outbound handler/);
    assert.match(at('gw.yaml:20: apis[0].policies.outbound[1]'), /limits\.memoryBytes: policy set-header needs \d+ bytes at start, above the cap of 1000/);
    assert.equal(err.problems.length, 8, err.message);
    assert.ok(err.message.split('\n').length === 9, err.message);
  });

  test('a built-in policy whose schema requires configuration, given no `config:` in the file, is refused at its place', async () => {
    const file = join(work, 'no-config.yaml');
    writeFileSync(
      file,
      `version: 1
apis:
  - id: keyed
    pathPrefix: /keyed
    backend: { url: builtin:echo }
    policies:
      inbound:
        - policy: check-header
`,
    );
    const { host } = newHost();
    const err = await rejects(bindChains(await readGatewayDocument(file), { host, baseDir: work, policies, sourceName: 'no-config.yaml' }));
    assert.deepEqual(err.problems, [
      { where: 'no-config.yaml:8: apis[0].policies.inbound[0]', message: "config (root): must have required property 'name'" },
    ]);
    assert.equal(
      err.message,
      "the policies of no-config.yaml cannot be used (1 problem):\n  no-config.yaml:8: apis[0].policies.inbound[0]: config (root): must have required property 'name'",
    );
  });

  test('a document built in code is bound too (problems without lines)', async () => {
    const { host } = newHost();
    const err = await rejects(
      bindChains(
        { version: 1, apis: [{ id: 'x', pathPrefix: '/x', backend: { url: 'builtin:echo' }, policies: { backend: [{ policy: 'check-header', config: {} }] } }] },
        { host, baseDir: work, policies, sourceName: 'code' },
      ),
    );
    assert.deepEqual(err.problems, [{ where: 'code: apis[0].policies.backend[0]', message: "config (root): must have required property 'name'" }]);
  });
});

describe('configuration file watcher', () => {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  /**
   * Resolves once a whole check that began after this call has run (and applied what it found). One poll joins a check
   * already under way, which may have read the file before the caller's last write; the second begins after it.
   */
  const checkedSinceNow = async (watcher: ConfigFileWatcher) => {
    await watcher.poll();
    await watcher.poll();
  };

  test('a change is applied with the new text; a touch without changes is not', async () => {
    const file = join(work, 'watched.yaml');
    writeFileSync(file, 'one\n');
    const seen: string[] = [];
    const watcher = new ConfigFileWatcher(file, { intervalMs: 10, settleMs: 5, onChange: async (text) => void seen.push(text) });
    // The first poll takes note of the content; polled here rather than waited for, so that a loaded machine cannot
    // let the change below happen before it.
    await watcher.poll();
    watcher.start();
    try {
      await checkedSinceNow(watcher);
      assert.deepEqual(seen, [], 'the content at start is not a change');
      writeFileSync(file, 'two\n');
      await waitFor('the change', () => seen.length === 1);
      assert.deepEqual(seen, ['two\n']);
      const later = new Date(Date.now() + 60_000);
      utimesSync(file, later, later);
      writeFileSync(file, 'two\n'); // a save without changes
      await checkedSinceNow(watcher);
      assert.deepEqual(seen, ['two\n']);
      // Renamed over, as editors save.
      writeFileSync(`${file}.tmp`, 'three\n');
      const { renameSync } = await import('node:fs');
      renameSync(`${file}.tmp`, file);
      await waitFor('the renamed file', () => seen.length === 2);
      assert.deepEqual(seen, ['two\n', 'three\n']);
    } finally {
      await watcher.stop();
    }
  });

  test('initialText: a change made before the first poll is applied', async () => {
    const file = join(work, 'initial.yaml');
    writeFileSync(file, 'changed meanwhile\n');
    const seen: string[] = [];
    const watcher = new ConfigFileWatcher(file, { intervalMs: 10, initialText: 'as read', onChange: async (t) => void seen.push(t) });
    watcher.start();
    try {
      await waitFor('the change', () => seen.length === 1);
      assert.deepEqual(seen, ['changed meanwhile\n']);
    } finally {
      await watcher.stop();
    }
  });

  test('a burst of writes: one change at a time, and the last content is applied last', async () => {
    const file = join(work, 'burst.yaml');
    writeFileSync(file, 'v0');
    const applied: string[] = [];
    let active = 0;
    let overlapped = false;
    // The first change applied is held until the burst is over, so that the watcher keeps finding newer versions while
    // one is being applied (a second onChange meanwhile would overlap it), and whatever it found is applied after.
    let burstOver!: () => void;
    const burst = new Promise<void>((r) => (burstOver = r));
    const watcher = new ConfigFileWatcher(file, {
      intervalMs: 5,
      settleMs: 0,
      onChange: async (text) => {
        active++;
        if (active > 1) overlapped = true;
        if (applied.length === 0) await burst;
        await sleep(30);
        applied.push(text);
        active--;
      },
    });
    await watcher.poll();
    watcher.start();
    try {
      // Saved as editors do: a new file renamed over the old one (a plain write can be caught half done). The rest of
      // the burst comes while v1 is being applied.
      for (let i = 1; i <= 30; i++) {
        await writeFile(`${file}.tmp`, `v${i}`);
        await rename(`${file}.tmp`, file);
        if (i === 1) await waitFor('v1 to be applied', () => active === 1);
      }
      burstOver();
      await waitFor('the last version', () => applied.at(-1) === 'v30');
      await checkedSinceNow(watcher);
      assert.equal(applied.at(-1), 'v30');
      assert.equal(overlapped, false);
      // v1, the latest version found while it was applied, and v30 if that was found later: 3 at most.
      assert.equal(applied[0], 'v1');
      assert.ok(applied.length <= 3, `${applied.length} applications for 30 writes: ${applied.join(' ')}`);
      const versions = applied.map((t) => Number(t.slice(1)));
      assert.deepEqual(versions, [...versions].sort((a, b) => a - b), 'never an older version after a newer one');
    } finally {
      await watcher.stop();
    }
  });

  test('a file caught halfway through a write is not applied: it is read again until two reads agree', async () => {
    const file = join(work, 'settle.yaml');
    writeFileSync(file, 'start');
    const seen: string[] = [];
    const watcher = new ConfigFileWatcher(file, { intervalMs: 10, settleMs: 150, onChange: async (t) => void seen.push(t) });
    // The watcher keeps the size of the file it read last: how the test knows the half-written file was read.
    const sizeRead = () => (watcher as unknown as { lastStat: { size: number } | null }).lastStat?.size;
    await watcher.poll();
    watcher.start();
    try {
      writeFileSync(file, 'half');
      await waitFor('the watcher to read the half-written file', () => sizeRead() === 'half'.length);
      // It reads again 150 ms after that read (settleMs); the rest is written before, by a timer due long before its.
      writeFileSync(file, 'half and the rest');
      await waitFor('the change', () => seen.length === 1);
      await checkedSinceNow(watcher);
      assert.deepEqual(seen, ['half and the rest'], 'the half-written file, read, was never applied');
    } finally {
      await watcher.stop();
    }
  });

  test('read errors go to onError (once while they last) and are retried; a failing onChange too', async () => {
    const file = join(work, 'comes-and-goes.yaml');
    writeFileSync(file, 'a');
    const seen: string[] = [];
    const errors: string[] = [];
    const watcher = new ConfigFileWatcher(file, {
      intervalMs: 5,
      settleMs: 5,
      initialText: 'a',
      onChange: async (text) => {
        seen.push(text);
        if (text === 'bad') throw new Error('rejected');
      },
      onError: (err) => errors.push(err.message),
    });
    watcher.start();
    try {
      rmSync(file);
      await waitFor('the read error', () => errors.length === 1);
      await checkedSinceNow(watcher);
      await checkedSinceNow(watcher);
      assert.equal(errors.length, 1, 'reported once while the file is missing');
      assert.match(errors[0]!, /ENOENT/);
      writeFileSync(file, 'bad');
      await waitFor('the new file', () => seen.length === 1);
      await waitFor('the onChange failure', () => errors.length === 2);
      assert.equal(errors[1], 'rejected');
      writeFileSync(file, 'good');
      await waitFor('the next change', () => seen.length === 2);
      assert.deepEqual(seen, ['bad', 'good']);
    } finally {
      await watcher.stop();
    }
  });

  test('stop() stops: no change is applied after it', async () => {
    const file = join(work, 'stopped.yaml');
    writeFileSync(file, 'a');
    const seen: string[] = [];
    const watcher = new ConfigFileWatcher(file, { intervalMs: 5, onChange: async (t) => void seen.push(t) });
    // The content is noted first, so that a change after it would be applied if the watcher still ran.
    await watcher.poll();
    watcher.start();
    await watcher.stop();
    writeFileSync(file, 'b');
    // Ten intervals without a check (nothing to wait on: the point is that nothing happens), and a check asked for.
    await sleep(50);
    await watcher.poll();
    assert.deepEqual(seen, []);
    assert.equal(readFileSync(file, 'utf8'), 'b');
  });
});
