// The instrumented-module cache (runtime/sync/instrumented-cache.ts): a module metered once is read back instead of
// metered again, binaryen is not loaded when every module is a hit, and an entry that does not prove itself (altered,
// cut short, another module's, another instrumenter's, sealed with another key, not a regular file) is refused: the
// module is metered again from its own bytes, the entry rewritten, and a looping module is still stopped by its budget.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes, createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Agent } from 'undici';
import { isDeno } from '../runtime/adapters/index.ts';
import { processClocks } from '../runtime/adapters/process-clocks.ts';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { GatewayEffects } from '../runtime/pipeline/effects.ts';
import { PolicyFailure, PolicyHost, PolicyLoadError, type PolicyModule } from '../runtime/policy-host/index.ts';
import { instrumentForBudget, instrumenterVersion } from '../runtime/policy-host/instrument.ts';
import { sha256Hex, type InstrumentedModuleStore } from '../runtime/policy-host/module.ts';
import { MemoryCounterStore } from '../runtime/state/counter-store.ts';
import { InstrumentedModuleCache, KEY_FILE, openEntry, sealEntry } from '../runtime/sync/instrumented-cache.ts';
import { Logger, memorySink, type LogRecord } from '../runtime/telemetry/logger.ts';
import { forever, hostileModule } from './support/hostile-modules.ts';
import { startGatewayProcess, tempDir, writeConfig, type GatewayCommand, type GatewayProcess } from './support/gateway-process.ts';
import { send } from './support/requests.ts';
import { makeExchange } from './support/policies.ts';

const LOOP = () => hostileModule({ name: 'loop', inbound: forever('(nop)') });
const STEADY = () => hostileModule({ name: 'steady', inbound: '(i32.const 0)' });
const REFUSED = 'instrumented-module cache entry refused; metering the module again from its own bytes';
const NOT_CACHED = 'instrumented modules are not cached: every start meters every policy module again (binaryen)';

const versionDigest = () => createHash('sha256').update(instrumenterVersion()).digest();

/** A policy host whose modules are metered through a cache on `dir` (a new cache each: as a new process has). */
function cachedHost(dir: string, key?: Buffer) {
  const logs: LogRecord[] = [];
  const logger = new Logger(memorySink(logs), 'debug');
  const cache = new InstrumentedModuleCache({ dir, key, logger });
  const host = new PolicyHost({ logger, effects: new GatewayEffects({ counters: new MemoryCounterStore() }), clocks: processClocks, instrumented: cache });
  return { host, cache, logs };
}

function entryOf(dir: string, module: Uint8Array): string {
  const sha = sha256Hex(module);
  const names = readdirSync(dir).filter((n) => n.startsWith(sha));
  assert.equal(names.length, 1, `one entry for sha256:${sha.slice(0, 12)} in ${readdirSync(dir).join(', ')}`);
  return join(dir, names[0]!);
}

const keptKey = (dir: string) => Buffer.from(readFileSync(join(dir, KEY_FILE), 'utf8').trim(), 'hex');

/** The loop, bound with a budget of 50 ms and called: it must be stopped for its budget. */
async function assertLoopStopped(host: PolicyHost, module: PolicyModule): Promise<void> {
  const binding = host.bind({ id: 'cache/loop', phase: 'inbound', module, config: {}, limits: { cpuMs: 50 }, circuitBreaker: { failures: 0 } });
  const err = await binding.run('inbound', makeExchange()).then(() => null, (e: unknown) => e);
  assert.ok(err instanceof PolicyFailure && err.reason === 'cpu-budget', `the loop is stopped by its CPU budget: ${String(err)}`);
}

describe('instrumented-module cache', () => {
  test('a module metered once is read back from the cache as binaryen made it, and its loop is still stopped', async () => {
    const dir = join(tempDir(), 'instrumented');
    const loop = await LOOP();
    const first = cachedHost(dir);
    await first.host.load(loop);
    assert.deepEqual(first.cache.counts(), { fromCache: 0, byBinaryen: 1, refused: 0 });
    assert.equal((readFileSync(join(dir, KEY_FILE), 'utf8').trim()).length, 64);

    const second = cachedHost(dir);
    const module = await second.host.load(loop);
    assert.deepEqual(second.cache.counts(), { fromCache: 1, byBinaryen: 0, refused: 0 });
    const opened = openEntry(readFileSync(entryOf(dir, loop)), keptKey(dir), versionDigest(), sha256Hex(loop));
    assert.ok('metered' in opened);
    assert.deepEqual(opened.metered, await instrumentForBudget(loop), 'the entry holds what binaryen makes of the module');
    await assertLoopStopped(second.host, module);
  });

  test('a store that hands back a module without its meter (a bug, or a way round the seal) has it refused at load, never run', async () => {
    const loop = await LOOP();
    const logs: LogRecord[] = [];
    const unmetered: InstrumentedModuleStore = { read: async () => new Uint8Array(loop), write: async () => undefined };
    const host = new PolicyHost({
      logger: new Logger(memorySink(logs), 'debug'),
      effects: new GatewayEffects({ counters: new MemoryCounterStore() }),
      clocks: processClocks,
      instrumented: unmetered,
    });
    await assert.rejects(host.load(loop), (err: unknown) =>
      err instanceof PolicyLoadError && /lacks the gatehouse\$fuel export and the gatehouse:internal budget_check import/.test(err.message),
    );
  });

  // Each way an entry can be wrong, done to the loop's entry; none may hang: a payload accepted by mistake here fails to
  // compile or is another module, so a broken check fails the test instead of running an unmetered loop in it (that
  // payload, the module's own unmetered bytes, is the real-process test below).
  const tampers: { name: string; reason: RegExp; tamper: (entry: string, dir: string, steadyEntry: string) => void }[] = [
    {
      name: 'bytes flipped in its module',
      reason: /HMAC does not check out/,
      tamper: (entry) => {
        const bytes = readFileSync(entry);
        // The first byte of the metered module (its magic, 0x00): accepted, it would not even compile.
        bytes[8 + 64] = bytes[8 + 64]! ^ 0xff;
        writeFileSync(entry, bytes);
      },
    },
    {
      name: 'cut short',
      reason: /HMAC does not check out/,
      tamper: (entry) => writeFileSync(entry, readFileSync(entry).subarray(0, -100)),
    },
    {
      name: 'not an entry at all',
      reason: /not an entry of this cache/,
      tamper: (entry) => writeFileSync(entry, 'hello'),
    },
    {
      name: "another module's entry swapped in",
      reason: /the metered module of another module \(sha256:/,
      tamper: (entry, _dir, steadyEntry) => copyFileSync(steadyEntry, entry),
    },
    {
      name: 'made by another version of the instrumenter',
      reason: /another version of the instrumenter/,
      tamper: (entry, dir) => {
        const sha = entry.split('/').pop()!.split('.')[0]!;
        const older = createHash('sha256').update('an older instrumenter').digest();
        const opened = openEntry(readFileSync(entry), keptKey(dir), versionDigest(), sha);
        assert.ok('metered' in opened);
        writeFileSync(entry, sealEntry(keptKey(dir), older, sha, opened.metered));
      },
    },
    {
      name: 'a FIFO in its place',
      reason: /not a regular file/,
      tamper: (entry) => {
        rmSync(entry);
        assert.equal(spawnSync('mkfifo', [entry]).status, 0, 'mkfifo');
      },
    },
    {
      name: 'a symbolic link in its place',
      reason: /symbolic link/,
      tamper: (entry, _dir, steadyEntry) => {
        rmSync(entry);
        symlinkSync(steadyEntry, entry);
      },
    },
  ];
  for (const { name, reason, tamper } of tampers) {
    test(`an entry ${name} is refused, named in a warning and rewritten; the loop is still stopped by its budget`, async () => {
      const dir = join(tempDir(), 'instrumented');
      const [loop, steady] = [await LOOP(), await STEADY()];
      const first = cachedHost(dir);
      await first.host.load(loop);
      await first.host.load(steady);
      const entry = entryOf(dir, loop);
      const genuine = readFileSync(entry);
      tamper(entry, dir, entryOf(dir, steady));

      const second = cachedHost(dir);
      const module = await second.host.load(loop);
      const warnings = second.logs.filter((l) => l.msg === REFUSED);
      assert.equal(warnings.length, 1, JSON.stringify(second.logs));
      assert.equal(warnings[0]!.level, 'warn');
      assert.equal(warnings[0]!.entry, entry);
      assert.equal(warnings[0]!.module, sha256Hex(loop));
      assert.match(String(warnings[0]!.reason), reason);
      assert.deepEqual(second.cache.counts(), { fromCache: 0, byBinaryen: 1, refused: 1 });
      assert.equal(module.descriptor.name, 'loop');
      await assertLoopStopped(second.host, module);
      assert.deepEqual(readFileSync(entry), genuine, 'the entry is rewritten as it was made');
      const third = cachedHost(dir);
      await third.host.load(loop);
      assert.deepEqual(third.cache.counts(), { fromCache: 1, byBinaryen: 0, refused: 0 });
    });
  }

  test('the key kept in the folder is refused when others may read it, or when others may write the folder', async () => {
    for (const [what, change, reason] of [
      ['key file readable by others', (dir: string) => chmodSync(join(dir, KEY_FILE), 0o644), /key file .* has mode 0644/],
      ['folder writable by others', (dir: string) => chmodSync(dir, 0o777), /folder .* has mode 0777/],
      ['key file a symbolic link', (dir: string) => {
        writeFileSync(join(dir, 'elsewhere.key'), randomBytes(32).toString('hex'), { mode: 0o600 });
        rmSync(join(dir, KEY_FILE));
        symlinkSync(join(dir, 'elsewhere.key'), join(dir, KEY_FILE));
      }, /symbolic link/],
    ] as const) {
      const dir = join(tempDir(), 'instrumented');
      const loop = await LOOP();
      await cachedHost(dir).host.load(loop);
      change(dir);
      const { host, cache, logs } = cachedHost(dir);
      const module = await host.load(loop);
      await host.load(await STEADY());
      const warnings = logs.filter((l) => l.msg === NOT_CACHED);
      assert.equal(warnings.length, 1, `${what}: said once (${JSON.stringify(logs)})`);
      assert.match(String(warnings[0]!.reason), reason, what);
      assert.deepEqual(cache.counts(), { fromCache: 0, byBinaryen: 2, refused: 0 }, what);
      await assertLoopStopped(host, module);
    }
  });

  test('a lost key is made again; the entries sealed with the old one are not used', async () => {
    const dir = join(tempDir(), 'instrumented');
    const loop = await LOOP();
    await cachedHost(dir).host.load(loop);
    const oldKey = keptKey(dir);
    rmSync(join(dir, KEY_FILE));
    const { host, cache } = cachedHost(dir);
    await host.load(loop);
    assert.notDeepEqual(keptKey(dir), oldKey);
    assert.deepEqual(cache.counts(), { fromCache: 0, byBinaryen: 1, refused: 0 });
    assert.equal(readdirSync(dir).filter((n) => n.endsWith('.metered')).length, 2, 'a new entry, beside the old key\'s');
  });

  test('gateways given the same key share entries; one with another key keeps its own, refusing nothing', async () => {
    const dir = join(tempDir(), 'instrumented');
    const loop = await LOOP();
    const fleetKey = randomBytes(32);
    await cachedHost(dir, fleetKey).host.load(loop);
    assert.equal(existsSync(join(dir, KEY_FILE)), false, 'no key is made when one is given');
    const replica = cachedHost(dir, fleetKey);
    await replica.host.load(loop);
    assert.deepEqual(replica.cache.counts(), { fromCache: 1, byBinaryen: 0, refused: 0 });
    const stranger = cachedHost(dir, randomBytes(32));
    await stranger.host.load(loop);
    assert.deepEqual(stranger.cache.counts(), { fromCache: 0, byBinaryen: 1, refused: 0 });
    const again = cachedHost(dir, fleetKey);
    await again.host.load(loop);
    assert.deepEqual(again.cache.counts(), { fromCache: 1, byBinaryen: 0, refused: 0 }, "the stranger's entry did not replace the fleet's");
  });
});

/**
 * The gateway under Node with a loader hook that writes the URL of every module it loads to `record` (one a line):
 * loaded, not merely resolved (the instrumenter resolves binaryen to read its version).
 */
function recordingCommand(dir: string, record: string): GatewayCommand {
  const hooks = join(dir, 'record-hooks.mjs');
  writeFileSync(
    hooks,
    `import { appendFileSync } from 'node:fs';
export async function load(url, context, next) {
  appendFileSync(${JSON.stringify(record)}, url + '\\n');
  return next(url, context);
}
`,
  );
  const register = join(dir, 'register-hooks.mjs');
  writeFileSync(register, `import { register } from 'node:module';\nregister(${JSON.stringify(`file://${hooks}`)});\n`);
  return {
    cmd: process.execPath,
    args: ['--disable-warning=ExperimentalWarning', '--import', register, join(repoRoot(), 'dist', 'runtime', 'entry', 'gateway.js')],
  };
}

const chainConfig = (extra = '') => `version: 1
apis:
  - id: chain
    pathPrefix: /chain
    backend: { url: "builtin:echo" }
    policies:
      inbound:
        - policy: cors
          config: { allowedOrigins: ["https://app.example.com"] }
        - policy: key-auth
          config: { keys: [{ id: client, key: client-key-1 }] }
        - policy: rewrite-uri
          config: { template: /v2 }
${extra}`;

const applied = (gw: GatewayProcess) => gw.waitForLog((l) => l.msg === 'configuration applied');

describe('instrumented-module cache in a gateway process', () => {
  test('a second start reads every module from the cache and never loads binaryen', async () => {
    const dir = tempDir();
    const config = writeConfig(dir, 'gateway.yaml', chainConfig());
    const env = { GATEHOUSE_INSTRUMENTED_CACHE_DIR: join(dir, 'instrumented'), GATEHOUSE_LOG_LEVEL: 'info' };
    const record = join(dir, 'resolved.txt');
    const binaryenResolved = () => readFileSync(record, 'utf8').split('\n').filter((url) => url.includes('/node_modules/binaryen/'));
    const start = () => startGatewayProcess({ config, env, command: isDeno ? undefined : recordingCommand(dir, record) });

    const first = await start();
    assert.deepEqual((await applied(first)).metering, { fromCache: 0, byBinaryen: 3, refused: 0 });
    await first.stop();
    // The hook sees binaryen when it is loaded: what the second start is held to below is not a blind spot.
    if (!isDeno) assert.ok(binaryenResolved().length > 0, 'the first start loaded binaryen');

    rmSync(record, { force: true });
    const second = await start();
    try {
      assert.deepEqual((await applied(second)).metering, { fromCache: 3, byBinaryen: 0, refused: 0 });
      if (!isDeno) {
        assert.ok(readFileSync(record, 'utf8').includes('/runtime/entry/gateway.js'), 'the hook recorded the second start');
        assert.deepEqual(binaryenResolved(), [], 'binaryen was not loaded');
      }
      const res = await send(second.url, '/chain/x', { headers: { 'x-api-key': 'client-key-1' } });
      assert.equal(res.status, 200);
    } finally {
      await second.stop();
    }
  });

  test("an entry whose metering was stripped (the module's own bytes, sealed with another key) is refused; the loop is stopped", async () => {
    const dir = tempDir();
    const loop = await LOOP();
    writeFileSync(join(dir, 'loop.wasm'), loop);
    const config = writeConfig(dir, 'gateway.yaml', chainConfig(`  - id: loop
    pathPrefix: /loop
    backend: { url: "builtin:echo" }
    policies:
      inbound:
        - module: ./loop.wasm
          limits: { cpuMs: 50 }
`));
    const cacheDir = join(dir, 'instrumented');
    const env = { GATEHOUSE_INSTRUMENTED_CACHE_DIR: cacheDir, GATEHOUSE_LOG_LEVEL: 'info' };
    await (await startGatewayProcess({ config, env })).stop();
    const entry = entryOf(cacheDir, loop);
    // What an attacker who can write the folder but not read the key would put there: the loop as it was before it was
    // metered, sealed with a key of their own. Accepted, it would run forever and this request would never be answered.
    writeFileSync(entry, sealEntry(randomBytes(32), versionDigest(), sha256Hex(loop), loop));

    const gw = await startGatewayProcess({ config, env });
    const agent = new Agent({ headersTimeout: 20_000, bodyTimeout: 20_000 });
    try {
      // First the loop: with the entry taken, this request is never answered (the agent gives up after 20 s).
      const looped = await send(gw.url, '/loop/x', { dispatcher: agent });
      assert.equal(looped.status, 500, looped.body);
      await gw.waitForLog((l) => l.msg === 'policy call failed' && l.reason === 'cpu-budget');
      const refusal = await gw.waitForLog((l) => l.msg === REFUSED);
      assert.equal(refusal.level, 'warn');
      assert.equal(refusal.entry, entry);
      assert.match(String(refusal.reason), /HMAC does not check out/);
      assert.deepEqual((await applied(gw)).metering, { fromCache: 3, byBinaryen: 1, refused: 1 });
      assert.equal((await send(gw.url, '/chain/x', { headers: { 'x-api-key': 'client-key-1' }, dispatcher: agent })).status, 200);
      const rewritten = openEntry(readFileSync(entry), keptKey(cacheDir), versionDigest(), sha256Hex(loop));
      assert.ok('metered' in rewritten, 'the entry is rewritten with the metered module');
    } finally {
      await agent.close();
      // A gateway stuck in an unmetered loop would not heed SIGTERM.
      if (gw.child.exitCode === null) gw.child.kill('SIGKILL');
      await gw.exited;
    }
  });

  test('with no folder it can write, the gateway starts, meters in memory and says so once', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'a-file'), '');
    const gw = await startGatewayProcess({
      config: writeConfig(dir, 'gateway.yaml', chainConfig()),
      // Beneath a file: no user, root included, can make that folder.
      env: { GATEHOUSE_INSTRUMENTED_CACHE_DIR: join(dir, 'a-file', 'instrumented'), GATEHOUSE_LOG_LEVEL: 'info' },
    });
    try {
      assert.deepEqual((await applied(gw)).metering, { fromCache: 0, byBinaryen: 3, refused: 0 });
      const warnings = gw.logs.filter((l) => l.msg === NOT_CACHED);
      assert.equal(warnings.length, 1, 'said once');
      assert.match(String(warnings[0]!.reason), /ENOTDIR|not a directory/i);
      assert.equal((await send(gw.url, '/chain/x', { headers: { 'x-api-key': 'client-key-1' } })).status, 200);
    } finally {
      await gw.stop();
    }
  });

  test('a key variable naming no key stops the start, saying which variable', async () => {
    const dir = tempDir();
    await assert.rejects(
      startGatewayProcess({ config: writeConfig(dir, 'gateway.yaml', chainConfig()), env: { GATEHOUSE_INSTRUMENTED_CACHE_KEY: join(dir, 'missing.key') } }),
      /GATEHOUSE_INSTRUMENTED_CACHE_KEY: neither a key .* nor a file holding one/,
    );
  });
});
