// The images of deploy/docker built with podman and run for real, with the commands docs/deployment.md shows
// (scripts/lib/containers.ts): the gateway alone, then a control plane and two gateways configured by it through an
// outage. Minutes of work (the builds), so it runs only as `npm run test:containers` (GATEHOUSE_CONTAINER_TESTS=1),
// which .ci/run runs where podman can run containers; in `npm test` and `deno task test` it is skipped. Containers use
// the host's network and are reached on 127.0.0.1, on free ports; every container and volume made here is removed
// at the end, whatever failed.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chownSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { STATUS_PATH } from '../runtime/gateway/gateway.ts';
import {
  CONTROL_PLANE_DOCKERFILE,
  GATEWAY_BACKUP_PATH,
  GATEWAY_DOCKERFILE,
  GATEWAY_FILES,
  STOP_GRACE_SECONDS,
  buildImage,
  containerLogs,
  containerState,
  fileBytes,
  controlPlaneRunArgs,
  gatewayRunArgs,
  healthcheckArgs,
  imageBytes,
  imageTags,
  podman,
  podmanUnavailable,
  probe,
  removeContainers,
  runtimeBase,
  stopArgs,
  waitForProbe,
} from '../scripts/lib/containers.ts';
import { runGatehouse } from './support/gatehouse-cli.ts';
import { tempDir } from './support/gateway-process.ts';
import { freePort } from './support/ports.ts';
import { send } from './support/requests.ts';
import { waitForAsync } from './support/wait.ts';

const enabled = process.env.GATEHOUSE_CONTAINER_TESTS === '1';
const tags = imageTags();
/** A suffix for this run's container and volume names, so that they collide with nothing else on the host. */
const run = `ct${process.pid}-${randomBytes(3).toString('hex')}`;
const made = { containers: [] as string[], volumes: [] as string[] };

/** A name of this run's, recorded for removal before the container or volume exists (a failed run may make it). */
function container(base: string): string {
  const name = `${base}-${run}`;
  made.containers.push(name);
  return name;
}
function volume(base: string): string {
  const name = `${base}-${run}`;
  made.volumes.push(name);
  return name;
}

/** The gateway's default shutdown delay (GATEHOUSE_SHUTDOWN_DELAY_MS, not set by the documented command). */
const SHUTDOWN_DELAY_MS = 5000;
/** How long after the delay the request in flight at the signal goes on sending its body. */
const UPLOAD_AFTER_DELAY_MS = 1500;
/**
 * How long after the last request in flight ends the container may take to be reported exited: the gateway closes and
 * flushes, conmon records the exit, podman stop returns. A bound far below STOP_GRACE_SECONDS, so a kill (exit 137
 * after 45 s) and a drain are told apart.
 */
const EXIT_MARGIN_MS = 5000;
/** How long a change may take to reach a gateway: its poll (10 s by default) twice, and a loaded machine. */
const PROPAGATION_MS = 45_000;

describe('container images, built and run with podman', { skip: !enabled && 'minutes of image builds: run by npm run test:containers (.ci/run, where podman can run containers)' }, () => {
  before(async () => {
    const why = await podmanUnavailable();
    if (why) throw new Error(`podman cannot run containers here (.ci/run installs and sets it up): ${why}`);
    await buildImage(GATEWAY_DOCKERFILE, tags.gateway);
    await buildImage(CONTROL_PLANE_DOCKERFILE, tags.controlPlane);
  });

  after(async () => {
    await removeContainers(made.containers, made.volumes);
  });

  test('the gateway image holds the Node binary and the bundle on its base, and keeps its health check', async () => {
    const base = runtimeBase(GATEWAY_DOCKERFILE);
    const { stdout } = await podman(['diff', tags.gateway, base]);
    const changes = stdout.trim().split('\n').map((l) => l.trim().split(/\s+/) as [string, string]);
    const added = changes.filter(([kind]) => kind === 'A').map(([, path]) => path);
    // The user and group the image runs as, the state folder, and two files: nothing else over the base.
    const expected = new Set([...GATEWAY_FILES, '/opt/gatehouse', '/var/lib/gatehouse', GATEWAY_BACKUP_PATH]);
    const accounts = /^\/etc\/(passwd|group|shadow|gshadow)-?$/;
    assert.deepEqual(added.filter((p) => !accounts.test(p)).sort(), [...expected].sort(), `files the image adds to ${base}`);
    // Changed: only the account files and the folders the added paths are in.
    const folders = new Set(added.flatMap((p) => p.split('/').slice(1, -1).map((_, i, parts) => `/${parts.slice(0, i + 1).join('/')}`)));
    for (const [kind, path] of changes) {
      if (kind === 'D') assert.fail(`the image deletes ${path} from ${base}`);
      if (kind === 'C') assert.ok(accounts.test(path) || folders.has(path), `the image changes ${path} of ${base}`);
    }
    // The layers over the base weigh what the two files do (the account files are a few kilobytes).
    const fileSizes = [...(await fileBytes(tags.gateway, GATEWAY_FILES)).values()].reduce((sum, n) => sum + n, 0);
    const overBase = (await imageBytes(tags.gateway)) - (await imageBytes(base));
    assert.ok(Math.abs(overBase - fileSizes) < 1 << 20, `the image is ${overBase} bytes over its base; Node and the bundle are ${fileSizes}`);
    const health = await podman(['image', 'inspect', '--format', '{{json .HealthCheck}}', tags.gateway]);
    assert.match(health.stdout, new RegExp(STATUS_PATH), 'HEALTHCHECK kept (podman build --format docker)');
  });

  test('the gateway alone: the demo on a read-only root filesystem as uid 10001, healthy; SIGTERM drains it and it exits 0', async () => {
    const name = container('gatehouse-gateway');
    const backup = volume('gatehouse-backup');
    const [httpPort, adminPort] = [await freePort(), await freePort()];
    const url = `http://127.0.0.1:${httpPort}`;
    await podman(gatewayRunArgs({ name, image: tags.gateway, backupVolume: backup, httpPort, adminPort }));
    await waitForProbe(name, httpPort);

    assert.equal((await send(url, '/echo/hello')).status, 401, 'check-header refuses a request without the key');
    const keyed = await send(url, '/echo/hello', { headers: { 'x-api-key': 'demo-key' } });
    assert.equal(keyed.status, 200, keyed.body);
    assert.equal(keyed.headers['x-gatehouse-policy'], 'set-header');

    // PID 1 is the gateway itself (exec-form ENTRYPOINT), running as the image's user.
    const status = await podman(['exec', name, 'cat', '/proc/1/status']);
    assert.match(status.stdout, /^Uid:\s+10001\s+10001\s+10001\s+10001$/m);
    assert.match(status.stdout, /^Gid:\s+10001\s+10001\s+10001\s+10001$/m);
    // Even root cannot write to the image's files, while the backup volume is the gateway's own to write (a new named
    // volume takes the owner and mode of the image's folder).
    const write = await podman(['exec', '--user', '0', name, 'touch', '/opt/gatehouse/written'], { allowFailure: true });
    assert.notEqual(write.code, 0);
    assert.match(write.stderr + write.stdout, /Read-only file system/);
    assert.equal((await podman(['exec', name, 'stat', '-c', '%u %a', GATEWAY_BACKUP_PATH])).stdout.trim(), '10001 700');
    await podman(['exec', name, 'sh', '-c', `touch ${GATEWAY_BACKUP_PATH}/written && rm ${GATEWAY_BACKUP_PATH}/written`]);
    assert.equal((await podman(healthcheckArgs(name), { allowFailure: true })).code, 0, 'HEALTHCHECK passes');

    // A request in flight when the signal comes: its body is still being sent after the shutdown delay.
    const slowAgent = new Agent();
    const slow = request(`${url}/echo/upload`, {
      method: 'POST',
      dispatcher: slowAgent,
      headers: { 'x-api-key': 'demo-key', 'content-type': 'text/plain' },
      body: Readable.from((async function* () {
        yield 'sent before the signal, ';
        await sleep(SHUTDOWN_DELAY_MS + UPLOAD_AFTER_DELAY_MS);
        yield 'and after the delay';
      })()),
    }).then(async (res) => ({ status: res.statusCode, body: await res.body.text() }));
    await sleep(300);
    const stopStarted = Date.now();
    const stopped = podman(stopArgs(name), { timeoutMs: (STOP_GRACE_SECONDS + 15) * 1000 });
    await waitForAsync('the probe to answer 503 after SIGTERM', async () => (await probe(httpPort)) === 503, SHUTDOWN_DELAY_MS);
    const during = await send(url, '/echo/during', { headers: { 'x-api-key': 'demo-key' } });
    assert.equal(during.status, 200, 'requests are still served during the shutdown delay');
    const inFlight = await slow;
    await slowAgent.close();
    assert.equal(inFlight.status, 200, inFlight.body);
    assert.match(inFlight.body, /sent before the signal, and after the delay/);
    await stopped;
    const elapsed = Date.now() - stopStarted;
    const state = await containerState(name);
    assert.equal(state.status, 'exited');
    assert.equal(state.exitCode, 0, await containerLogs(name));
    assert.ok(elapsed >= SHUTDOWN_DELAY_MS, `stopped after ${elapsed} ms: the shutdown delay is ${SHUTDOWN_DELAY_MS} ms`);
    assert.ok(elapsed < SHUTDOWN_DELAY_MS + UPLOAD_AFTER_DELAY_MS + EXIT_MARGIN_MS, `stopped after ${elapsed} ms: drained, not killed after ${STOP_GRACE_SECONDS} s`);
    assert.match(await containerLogs(name), /"msg":"stopped"/);
  });

  test('a control plane and two gateways: a change reaches both, a gateway restarts on its backup while the control plane is away, and both catch up when it is back on its volume', async () => {
    const adminToken = randomBytes(24).toString('hex');
    // The variables the documented commands pass on by name (-e NAME).
    const env = { GATEHOUSE_ADMIN_TOKEN: adminToken, GATEHOUSE_BACKUP_KEY: randomBytes(32).toString('hex') };
    const cp = { name: container('gatehouse-control-plane'), image: tags.controlPlane, dataVolume: volume('gatehouse-cp'), port: await freePort() };
    const cpUrl = `http://127.0.0.1:${cp.port}`;
    const cli = { GATEHOUSE_CONTROL_PLANE: cpUrl, GATEHOUSE_ADMIN_TOKEN: adminToken };
    const work = tempDir('gatehouse-containers-');
    const tokenDir = join(work, 'gateway-token');
    try {
      await podman(controlPlaneRunArgs(cp), { env });
      await waitForProbe(cp.name, cp.port, { path: '/status' });

      const apply = async (revision: string): Promise<string> => {
        const file = join(work, 'gatehouse.yaml');
        writeFileSync(file, fleetFile(revision));
        const out = await runGatehouse(['apply', '-f', file], cli);
        assert.equal(out.code, 0, out.stderr);
        return out.stdout;
      };
      assert.match(await apply('one'), /applied: revision \d+/);

      // The gateway token, in a folder of its own that the gateways' user (uid 10001 in the image) can read.
      const issued = await runGatehouse(['token', 'issue', 'edge'], cli);
      assert.equal(issued.code, 0, issued.stderr);
      mkdirSync(tokenDir, { mode: 0o700 });
      writeFileSync(join(tokenDir, 'token'), issued.stdout.trim(), { mode: 0o600 });
      chownSync(tokenDir, 10001, 10001);
      chownSync(join(tokenDir, 'token'), 10001, 10001);

      const gateways = await Promise.all(
        ['gatehouse-gateway-1', 'gatehouse-gateway-2'].map(async (base, i) => ({
          name: container(base),
          image: tags.gateway,
          backupVolume: volume(`gatehouse-backup-${i + 1}`),
          httpPort: await freePort(),
          adminPort: await freePort(),
          controlPlane: { url: cpUrl, tokenDir },
        })),
      );
      for (const g of gateways) await podman(gatewayRunArgs(g), { env });
      for (const g of gateways) await waitForProbe(g.name, g.httpPort);
      for (const g of gateways) assert.equal(await servedRevision(g.httpPort), 'one', `${g.name} serves the first apply`);

      await apply('two');
      await bothServe(gateways, 'two');

      // The control plane goes away; gateway 1 is replaced by a new container on its backup volume.
      await podman(stopArgs(cp.name), { timeoutMs: (STOP_GRACE_SECONDS + 15) * 1000 });
      assert.equal((await containerState(cp.name)).exitCode, 0, await containerLogs(cp.name));
      await podman(['rm', cp.name]);
      const [first, second] = gateways as [(typeof gateways)[0], (typeof gateways)[0]];
      await podman(stopArgs(first.name), { timeoutMs: (STOP_GRACE_SECONDS + 15) * 1000 });
      await podman(['rm', first.name]);
      await podman(gatewayRunArgs(first), { env });
      await waitForProbe(first.name, first.httpPort);
      assert.match(await containerLogs(first.name), /started from the configuration backup/);
      assert.equal(await servedRevision(first.httpPort), 'two', 'the restarted gateway serves its backup');
      assert.equal(await servedRevision(second.httpPort), 'two', 'the other gateway serves on');

      // A new control plane container on the same data volume: the same state (re-applying is no change), the same
      // token key (the gateways' token is accepted), and the next change reaches both.
      await podman(controlPlaneRunArgs(cp), { env });
      await waitForProbe(cp.name, cp.port, { path: '/status' });
      assert.match(await apply('two'), /no change: revision \d+ is current/, 'the control plane kept its state on its volume');
      await apply('three');
      await bothServe(gateways, 'three');
      await waitForAsync(
        'gateway 1 to report being back in step with the control plane',
        async () => /control plane reachable again/.test(await containerLogs(first.name)),
        PROPAGATION_MS,
      );
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});

/** The apply file: one API on the built-in echo backend whose answers carry `revision`, served by gateway `edge`. */
function fleetFile(revision: string): string {
  return `apis:
  - id: fleet
    pathPrefix: /fleet
    backend: { url: "builtin:echo" }
    policies:
      outbound:
        - policy: set-header
          config: { name: x-fleet-revision, value: ${revision} }
gateways:
  - id: edge
    apis: [fleet]
`;
}

async function servedRevision(port: number): Promise<string | undefined> {
  const res = await send(`http://127.0.0.1:${port}`, '/fleet/orders');
  return res.status === 200 ? (res.headers['x-fleet-revision'] as string) : `status ${res.status}`;
}

async function bothServe(gateways: { name: string; httpPort: number }[], revision: string): Promise<void> {
  for (const g of gateways) {
    await waitForAsync(`${g.name} to serve revision "${revision}"`, async () => (await servedRevision(g.httpPort)) === revision, PROPAGATION_MS);
  }
}
