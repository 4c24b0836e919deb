// The single-file gateway (npm run bundle) and its `deno compile` executable, as a user runs them: the file is built
// from the code under test, copied alone into an empty folder, and run from there with Node and with Deno, with the
// embedded default, with a configuration of its own, from a control plane, and with Application Insights.

import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isDeno } from '../runtime/adapters/index.ts';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { buildBundle, compileBundle, CompileUnavailable, denoExecutable } from '../scripts/lib/bundle.ts';
import { startControlPlane } from './support/control-plane-process.ts';
import { startGatewayProcess, tempDir, type GatewayCommand, type GatewayProcess } from './support/gateway-process.ts';
import { connectionString, startIngestionEndpoint } from './support/ingestion.ts';
import { redisAvailable, startRedis } from './support/redis-process.ts';
import { buildFixture } from './support/policies.ts';
import { send } from './support/requests.ts';
import { waitForAsync } from './support/wait.ts';

/** The folder the bundle was copied into, alone. */
let alone: string;
let bundle: string;
const running: GatewayProcess[] = [];

const version = (JSON.parse(readFileSync(join(repoRoot(), 'package.json'), 'utf8')) as { version: string }).version;

/** Deno: the one running this suite, or the repository's (the npm package `deno`) under Node. */
const deno = isDeno ? (globalThis as unknown as { Deno: { execPath(): string } }).Deno.execPath() : denoExecutable();
/** Node: the one running this suite, or the one on the PATH under Deno (which runs `npm test` too). */
const node = isDeno ? 'node' : process.execPath;

const runtimes: { name: string; command: () => GatewayCommand }[] = [
  { name: 'node', command: () => ({ cmd: node, args: ['--disable-warning=ExperimentalWarning', bundle], cwd: alone }) },
  { name: 'deno', command: () => ({ cmd: deno, args: ['run', '-A', bundle], cwd: alone }) },
];

async function start(command: GatewayCommand, options: { config?: string; env?: Record<string, string> } = {}): Promise<GatewayProcess> {
  const gateway = await startGatewayProcess({ ...options, command });
  running.push(gateway);
  return gateway;
}

before(async () => {
  // Built from the sources under test; the built-in policies come from the SDK's cache once another test built them.
  const built = await buildBundle(join(tempDir('gatehouse-bundle-build-'), 'gatehouse.mjs'));
  alone = tempDir('gatehouse-bundle-alone-');
  bundle = join(alone, 'gatehouse.mjs');
  copyFileSync(built.outFile, bundle);
});

after(async () => {
  await Promise.all(running.map((g) => g.stop()));
});

describe('single-file bundle', { timeout: 240_000 }, () => {
  test('a configuration of its own: a built-in that keeps counters (granted as from the repository) and a module: file', async () => {
    writeFileSync(join(alone, 'set-header.wasm'), await buildFixture('set-header'));
    const config = join(alone, 'gateway.yaml');
    writeFileSync(
      config,
      [
        'version: 1',
        'apis:',
        '  - id: limited',
        '    pathPrefix: /limited',
        '    backend: { url: "builtin:echo" }',
        '    policies:',
        '      inbound:',
        '        - policy: rate-limit',
        '          config: { calls: 2, renewalPeriod: 86400 }',
        '      outbound:',
        '        - module: ./set-header.wasm',
        '          config: { name: x-from-module, value: "yes" }',
        '',
      ].join('\n'),
    );
    const gateway = await start(runtimes[0]!.command(), { config });
    for (let i = 0; i < 2; i++) {
      const res = await send(gateway.url, '/limited/x');
      assert.equal(res.status, 200, res.body);
      assert.equal(res.headers['x-from-module'], 'yes');
    }
    assert.equal((await send(gateway.url, '/limited/x')).status, 429);
  });

  test('a source: policy is refused at start with what to do instead', async () => {
    const config = join(alone, 'with-source.yaml');
    writeFileSync(
      config,
      'version: 1\napis:\n  - id: own\n    pathPrefix: /own\n    backend: { url: "builtin:echo" }\n    policies:\n      inbound:\n        - source: ./my-policy\n',
    );
    await assert.rejects(start(runtimes[0]!.command(), { config }), (err: Error) => {
      assert.match(err.message, /exited with 1/);
      assert.match(err.message, /with-source\.yaml:\d+: apis\[0\]\.policies\.inbound\[0\]/);
      assert.match(err.message, /has no AssemblyScript compiler, so "source:" policies are not supported here/);
      assert.match(err.message, /gatehouse-policy build .* and name it with "module:", or run the gateway from the npm install/);
      return true;
    });
  });

  test('configured by a control plane: synced, backed up, and its heartbeat carries the version', async () => {
    const cp = await startControlPlane(tempDir('gatehouse-bundle-cp-'));
    try {
      const api = { pathPrefix: '/synced', backend: { url: 'builtin:echo' }, policies: { outbound: [{ policy: 'set-header', config: { name: 'x-synced', value: 'bundle' } }] } };
      assert.equal((await cp.admin('PUT', '/admin/apis/synced', api)).status, 200);
      assert.equal((await cp.admin('PUT', '/admin/gateways/gw-bundle', { apis: ['synced'] })).status, 200);
      const token = (await cp.admin('POST', '/admin/gateways/gw-bundle/tokens', {})).body.token as string;
      const backupDir = tempDir('gatehouse-bundle-backup-');
      const gateway = await start(runtimes[0]!.command(), {
        env: { GATEHOUSE_CONFIG_URL: cp.url, GATEHOUSE_TOKEN: token, GATEHOUSE_BACKUP_DIR: backupDir, GATEHOUSE_HEARTBEAT_INTERVAL_MS: '200' },
      });
      await waitForAsync('the synced API', async () => (await send(gateway.url, '/synced/a')).headers['x-synced'] === 'bundle', 10_000);
      await waitForAsync(
        'a heartbeat with the version',
        async () => {
          const list = (await cp.admin('GET', '/admin/gateways')).body as { gateways: { id: string; instances: { version?: string }[] }[] };
          return list.gateways.find((g) => g.id === 'gw-bundle')?.instances[0]?.version === version;
        },
        10_000,
      );
      // Logged once the backup is written (it follows putting the document in force).
      assert.equal((await gateway.waitForLog((l) => l.msg === 'configuration from the control plane applied')).backedUp, true);
      assert.match(readFileSync(join(backupDir, 'config.json'), 'utf8'), /x-synced/);
    } finally {
      await cp.stop();
    }
  });

  test('counters shared through Redis (GATEHOUSE_REDIS_URL)', { skip: !redisAvailable() && 'redis-server is not installed (.ci/run installs it)' }, async () => {
    const redis = await startRedis();
    try {
      const config = join(alone, 'shared-limit.yaml');
      writeFileSync(
        config,
        'version: 1\napis:\n  - id: shared\n    pathPrefix: /shared\n    backend: { url: "builtin:echo" }\n    policies:\n      inbound:\n        - policy: rate-limit\n          config: { calls: 3, renewalPeriod: 86400 }\n',
      );
      // Two gateways, one Redis: the limit holds across both.
      const env = { GATEHOUSE_REDIS_URL: redis.url };
      const [a, b] = await Promise.all([start(runtimes[0]!.command(), { config, env }), start(runtimes[0]!.command(), { config, env })]);
      const statuses: number[] = [];
      for (const gateway of [a, b, a, b]) statuses.push((await send(gateway.url, '/shared/x')).status);
      assert.deepEqual(statuses, [200, 200, 200, 429]);
      const metrics = (await send(`http://127.0.0.1:${a.adminPort}`, '/metrics')).body;
      assert.match(metrics, /gatehouse_counter_store_redis_up 1\n/);
    } finally {
      await redis.stop();
    }
  });

  // One gateway per runtime for both: each start costs a second or two.
  for (const runtime of runtimes) {
    test(`${runtime.name}: from an empty folder it serves the embedded default with its built-in policies, and sends Application Insights telemetry`, async () => {
      const ingestion = await startIngestionEndpoint();
      try {
        const gateway = await start(runtime.command(), {
          env: { GATEHOUSE_APPINSIGHTS_CONNECTION_STRING: connectionString(ingestion.port), NODE_EXTRA_CA_CERTS: ingestion.certFile },
        });
        assert.equal((await send(gateway.url, '/echo/hello')).status, 401);
        const allowed = await send(gateway.url, '/echo/hello', { headers: { 'x-api-key': 'demo-key' } });
        assert.equal(allowed.status, 200, allowed.body);
        assert.equal(allowed.headers['x-gatehouse-policy'], 'set-header');
        assert.equal((JSON.parse(allowed.body) as { path: string }).path, '/hello');
        assert.equal((await send(gateway.url, '/status-0123456789abcdef')).status, 200);
        const applied = await gateway.waitForLog((l) => l.msg === 'configuration applied');
        assert.match(String(applied.config), /embedded default configuration/);
        // Sent at shutdown at the latest: the SDK batches every 5 s, and the gateway flushes it as it stops.
        const code = await gateway.stop();
        // Deno's node:child_process reports a child that ended after a signal as killed by it, whatever its exit code.
        if (!isDeno) assert.equal(code, 0);
        const requests = ingestion.envelopes.filter((e) => e.data.baseType === 'RequestData').map((e) => `${e.data.baseData.name} ${e.data.baseData.responseCode}`);
        // The probe is not a request of an API: it is not sent.
        assert.deepEqual(requests.sort(), ['GET /echo/* 200', 'GET /echo/* 401'], `requests sent: ${requests.join(', ')}`);
      } finally {
        await ingestion.close();
      }
    });
  }
});

describe('deno compile of the bundle', { timeout: 240_000 }, () => {
  test('one executable, run from an empty folder, serves the embedded default', async (t) => {
    const executable = join(tempDir('gatehouse-compiled-'), 'gatehouse');
    try {
      await compileBundle(bundle, executable);
    } catch (err) {
      // Deno builds executables on its runtime binary, downloaded from dl.deno.land: not every machine can reach it.
      if (err instanceof CompileUnavailable) return t.skip(err.message.split('\n')[0]);
      throw err;
    }
    const gateway = await start({ cmd: executable, args: [], cwd: alone });
    assert.equal((await send(gateway.url, '/echo/hello')).status, 401);
    assert.equal((await send(gateway.url, '/echo/hello', { headers: { 'x-api-key': 'demo-key' } })).status, 200);
  });
});
