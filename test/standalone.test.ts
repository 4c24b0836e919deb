// The standalone gateway (runtime/composition-root/gateway.ts) started in this process, as runtime/entry/gateway.ts starts it: what it
// serves and logs at start, how it refuses to start, how it follows its configuration file, and how stop() drains:
// the delay while still serving, requests in flight finished, the shutdown timeout cutting the ones that outlast it.
// A real backend on 127.0.0.1 and real listeners; the log lines are read as the gateway writes them.

import assert from 'node:assert/strict';
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { selfSignedCertificate } from '../scripts/lib/certificate.ts';
import { gatewayAssets } from '../runtime/assets/repository.ts';
import { ConfigError } from '../runtime/config/config-error.ts';
import { STATUS_PATH } from '../runtime/gateway/gateway.ts';
import { startGateway, type RunningGateway, type GatewayOptions } from '../runtime/composition-root/gateway.ts';
import { parseConnectionString } from '../runtime/telemetry/appinsights.ts';
import { Logger, type LogRecord } from '../runtime/telemetry/logger.ts';
import { startControlPlane, type ControlPlaneProcess } from './support/control-plane-process.ts';
import { tempDir, writeConfig } from './support/gateway-process.ts';
import { connectionString } from './support/ingestion.ts';
import { send, type Reply } from './support/requests.ts';
import { waitForAsync } from './support/wait.ts';

/** Bounds the waits on log lines and on held requests: a test fails here rather than hanging. */
const TEST_TIMEOUT = { timeout: 15_000 };

/** The gateway's log lines as it writes them, and a wait on the first that matches (already written or to come). */
class Logs {
  readonly records: LogRecord[] = [];
  private readonly waiting: { match: (r: LogRecord) => boolean; resolve: (r: LogRecord) => void }[] = [];
  /** Called with each record as it is written, before the waits (a test acting at a precise point of the start). */
  onRecord: ((r: LogRecord) => void) | null = null;

  readonly logger = new Logger((line) => {
    const record = JSON.parse(line) as LogRecord;
    this.records.push(record);
    this.onRecord?.(record);
    for (const w of [...this.waiting]) {
      if (w.match(record)) {
        this.waiting.splice(this.waiting.indexOf(w), 1);
        w.resolve(record);
      }
    }
  }, 'debug');

  next(msg: string, match: (r: LogRecord) => boolean = () => true): Promise<LogRecord> {
    const wanted = (r: LogRecord) => r.msg === msg && match(r);
    const seen = this.records.find(wanted);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => this.waiting.push({ match: wanted, resolve }));
  }

  messages(): string[] {
    return this.records.map((r) => r.msg);
  }
}

/** The backend: `/held` requests wait until the test answers them; every other one is answered `ok` at once. */
let backend: Server;
let backendUrl: string;
const heldResponses: ServerResponse[] = [];
const heldWaiters: (() => void)[] = [];
function nextHeld(): Promise<ServerResponse> {
  if (heldResponses.length > 0) return Promise.resolve(heldResponses.shift()!);
  return new Promise((resolve) => heldWaiters.push(() => resolve(heldResponses.shift()!)));
}

before(async () => {
  backend = createServer((req, res) => {
    req.resume();
    if (req.url?.startsWith('/held')) {
      heldResponses.push(res);
      heldWaiters.shift()?.();
    } else res.end('ok');
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  backendUrl = `http://127.0.0.1:${(backend.address() as AddressInfo).port}`;
});

after(async () => {
  backend.closeAllConnections();
  await new Promise((r) => backend.close(r));
});

const configText = (apiId: string, prefix = '/', timeoutMs = 120_000) =>
  `version: 1\napis:\n  - id: ${apiId}\n    pathPrefix: ${prefix}\n    backend: { url: "${backendUrl}", timeoutMs: ${timeoutMs} }\n`;

interface Started {
  gateway: RunningGateway;
  logs: Logs;
  url: string;
  admin: string;
}

async function start(options: Partial<GatewayOptions> = {}, logs = new Logs()): Promise<Started> {
  const gateway = await startGateway({
    logger: logs.logger,
    configFile: options.configFile === undefined ? writeConfig(tempDir(), 'gateway.yaml', configText('shop')) : options.configFile,
    assets: gatewayAssets(),
    httpPort: 0,
    httpsPort: null,
    adminPort: 0,
    shutdownTimeoutMs: 30_000,
    ...options,
  });
  return { gateway, logs, url: `http://127.0.0.1:${gateway.httpPort}`, admin: `http://127.0.0.1:${gateway.adminPort}` };
}

/** A request on a connection of its own (the gateway closes kept ones while it drains). */
async function fresh(url: string, path: string): Promise<Reply> {
  const dispatcher = new Agent({ pipelining: 0 });
  try {
    return await send(url, path, { dispatcher });
  } finally {
    await dispatcher.destroy();
  }
}

function metric(text: string, line: string): number | null {
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found === undefined ? null : Number(found.slice(line.length + 1));
}

describe('start', () => {
  test('from a configuration file: serves it and logs its listeners, where its counters are kept and what it applied', TEST_TIMEOUT, async () => {
    const echoApi = '  - id: echo\n    pathPrefix: /echo\n    backend: { url: "builtin:echo" }\n';
    const file = writeConfig(tempDir(), 'gateway.yaml', configText('shop') + echoApi);
    const g = await start({ configFile: file });
    try {
      assert.equal((await send(g.url, '/orders')).body, 'ok');
      // builtin:echo is the gateway's own echo backend.
      const echoed = await send(g.url, '/echo/hi');
      assert.equal(echoed.status, 200);
      assert.match(echoed.body, /\/hi/);
      assert.equal((await send(g.admin, '/readyz')).status, 200);
      assert.equal(g.gateway.httpsPort, null);
      const listening = await g.logs.next('gatehouse listening');
      assert.deepEqual(
        { http: listening.http, https: listening.https, admin: listening.admin, config: listening.config },
        { http: g.gateway.httpPort, https: null, admin: `127.0.0.1:${g.gateway.adminPort}`, config: file },
      );
      assert.ok(!('instance' in listening), 'no control plane, no instance id');
      assert.deepEqual((await g.logs.next('configuration applied')).apis, ['shop', 'echo']);
      assert.equal((await g.logs.next('configuration applied')).config, file);
      assert.ok(g.logs.messages().includes('counters are kept in this gateway (set GATEHOUSE_REDIS_URL to share them)'));
      assert.equal(g.gateway.inFlight(), 0);
    } finally {
      await g.gateway.stop();
    }
  });

  test('without a file, the embedded default; an IPv6 admin address is logged in brackets', TEST_TIMEOUT, async () => {
    const dir = tempDir();
    const assets = gatewayAssets();
    const source = join(dir, 'embedded.yaml');
    const g = await start({
      configFile: null,
      adminHost: '::1',
      assets: { ...assets, defaultDocument: { source, baseDir: dir, read: async () => configText('embedded', '/embedded') } },
    });
    try {
      assert.equal((await send(g.url, '/embedded/x')).body, 'ok');
      assert.equal((await send(`http://[::1]:${g.gateway.adminPort}`, '/readyz')).status, 200);
      const listening = await g.logs.next('gatehouse listening');
      assert.equal(listening.admin, `[::1]:${g.gateway.adminPort}`);
      assert.equal(listening.config, 'embedded default');
      const applied = await g.logs.next('configuration applied');
      assert.deepEqual([applied.config, applied.apis], [source, ['embedded']]);
    } finally {
      await g.gateway.stop();
    }
    // No file, nothing to watch (a watcher's first poll, at its start, would have reported the file unreadable).
    assert.ok(!g.logs.messages().includes('cannot read the configuration file'), JSON.stringify(g.logs.records));
  });

  test('with a certificate, HTTPS as well', TEST_TIMEOUT, async () => {
    const { cert, key } = selfSignedCertificate(tempDir());
    const g = await start({ httpsPort: 0, tls: { cert, key } });
    const tls = new Agent({ connect: { ca: cert } });
    try {
      assert.notEqual(g.gateway.httpsPort, null);
      const res = await request(`https://127.0.0.1:${g.gateway.httpsPort}/over-tls`, { dispatcher: tls });
      assert.equal(await res.body.text(), 'ok');
      assert.equal((await g.logs.next('gatehouse listening')).https, g.gateway.httpsPort);
    } finally {
      await tls.close();
      await g.gateway.stop();
    }
  });

  test('a configuration it refuses: the ConfigError itself; a file it cannot read: the error prefixed with the file', TEST_TIMEOUT, async () => {
    const invalid = writeConfig(tempDir(), 'gateway.yaml', 'version: 1\napis: nonsense\n');
    const refused = await start({ configFile: invalid }).then(
      () => assert.fail('started'),
      (e: unknown) => e,
    );
    assert.ok(refused instanceof ConfigError, String(refused));
    assert.match(refused.problems[0]!.message, /must be a list/);
    const missing = join(tempDir(), 'absent.yaml');
    await assert.rejects(start({ configFile: missing }), (err: Error) => {
      assert.ok(!(err instanceof ConfigError));
      assert.ok(err.message.startsWith(`${missing}: `), err.message);
      assert.match(err.message, /ENOENT/);
      return true;
    });
  });
});

describe('the configuration file', () => {
  test('a change, also one made before the first poll, is applied; one refused leaves the running one; a file gone is reported', TEST_TIMEOUT, async () => {
    const file = writeConfig(tempDir(), 'gateway.yaml', configText('first', '/first'));
    const logs = new Logs();
    // Changed the moment the first document is applied: before the watcher's first poll.
    logs.onRecord = (r) => {
      if (r.msg === 'configuration applied' && logs.records.filter((x) => x.msg === 'configuration applied').length === 1) {
        writeFileSync(file, configText('second', '/second'));
      }
    };
    const g = await start({ configFile: file, watchIntervalMs: 10 }, logs);
    try {
      const applied = await logs.next('configuration applied', (r) => (r.apis as string[]).includes('second'));
      assert.equal(applied.config, file);
      assert.equal((await send(g.url, '/second/x')).body, 'ok');

      writeFileSync(file, 'version: 1\napis: nonsense\n');
      const rejected = await logs.next('configuration rejected; the running configuration stays in force');
      assert.equal(rejected.level, 'error');
      assert.equal(rejected.config, file);
      // The configuration's own problems, each where it is: not the error's whole message.
      assert.deepEqual(rejected.problems, [{ where: `${file}:2: apis`, message: 'must be a list (got string "nonsense")' }]);
      assert.equal((await send(g.url, '/second/x')).body, 'ok');
      const metrics = (await send(g.admin, '/metrics')).body;
      assert.equal(metric(metrics, 'gatehouse_config_reloads_total{result="applied"}'), 1);
      assert.equal(metric(metrics, 'gatehouse_config_reloads_total{result="rejected"}'), 1);

      rmSync(file);
      const unreadable = await logs.next('cannot read the configuration file');
      assert.equal(unreadable.level, 'warn');
      assert.equal(unreadable.config, file);
      assert.match(String(unreadable.error), /ENOENT/);
    } finally {
      await g.gateway.stop();
    }
    // Stopped: nothing more is applied.
    writeFileSync(file, configText('third', '/third'));
    const appliedCount = logs.messages().filter((m) => m === 'configuration applied').length;
    assert.equal(appliedCount, 2, 'the first document and the change before the first poll');
  });
});

describe('stop', () => {
  test('the delay: not ready at once, serving on; a second call joins it, stop(0) ends it; then draining, requests in flight finished', TEST_TIMEOUT, async () => {
    const g = await start({ shutdownDelayMs: 60_000 });
    const inFlight = send(g.url, '/held/slow');
    const held = await nextHeld();
    const stopped = g.gateway.stop();
    try {
      assert.equal((await send(g.url, STATUS_PATH)).status, 503);
      const notReady = await g.logs.next('not ready: serving on until load balancers have seen it');
      assert.deepEqual([notReady.delayMs, notReady.inFlight], [60_000, 1]);
      assert.equal((await fresh(g.url, '/during-delay')).body, 'ok');
      assert.equal(g.gateway.stop(5), stopped, 'a second call joins the first');
      assert.equal((await fresh(g.url, '/still-during-delay')).body, 'ok');
      assert.ok(!g.logs.messages().includes('no longer accepting connections: draining'), 'the delay goes on');

      assert.equal(g.gateway.stop(0), stopped);
      const draining = await g.logs.next('no longer accepting connections: draining');
      assert.equal(draining.inFlight, 1);
      await assert.rejects(fresh(g.url, '/after-delay'), 'the listener is closed');
      assert.equal(g.gateway.inFlight(), 1);
      assert.ok(!g.logs.messages().includes('stopped'), 'waits for the request in flight');
      held.end('slow done');
      assert.deepEqual(await inFlight.then((r) => [r.status, r.body]), [200, 'slow done']);
      await stopped;
      const order = g.logs.messages().filter((m) => ['not ready: serving on until load balancers have seen it', 'no longer accepting connections: draining', 'stopped'].includes(m));
      assert.deepEqual(order, ['not ready: serving on until load balancers have seen it', 'no longer accepting connections: draining', 'stopped']);
      assert.ok(!g.logs.messages().includes('shutdown timeout: in-flight requests cut off'));
    } finally {
      held.end();
      await stopped;
    }
  });

  test('without a delay: draining at once', TEST_TIMEOUT, async () => {
    const g = await start();
    await g.gateway.stop();
    assert.ok(!g.logs.messages().includes('not ready: serving on until load balancers have seen it'));
    assert.deepEqual(g.logs.messages().slice(-2), ['no longer accepting connections: draining', 'stopped']);
    await assert.rejects(fresh(g.url, '/after-stop'));
    await assert.rejects(fresh(g.admin, '/readyz'));
  });

  test('a request that outlasts the shutdown timeout is cut at the timeout, and stop() ends', TEST_TIMEOUT, async () => {
    const SHUTDOWN_TIMEOUT_MS = 300;
    const g = await start({ shutdownTimeoutMs: SHUTDOWN_TIMEOUT_MS });
    const hanging = send(g.url, '/held/hang').catch((err: unknown) => err);
    const held = await nextHeld();
    try {
      const began = performance.now();
      await g.gateway.stop();
      const took = performance.now() - began;
      const cut = await g.logs.next('shutdown timeout: in-flight requests cut off');
      assert.equal(cut.inFlight, 1);
      assert.equal(cut.level, 'warn');
      // Timers fire no earlier than asked (a millisecond of rounding allowed); the upper bound is only against a
      // timeout multiplied away: closing what is left takes milliseconds, far below 5 s even on a loaded machine.
      assert.ok(took >= SHUTDOWN_TIMEOUT_MS - 1, `stopped ${took} ms after stop(): not before the timeout`);
      assert.ok(took < SHUTDOWN_TIMEOUT_MS + 5000, `stopped ${took} ms after stop(), the timeout is ${SHUTDOWN_TIMEOUT_MS} ms`);
      assert.equal(g.logs.messages().at(-1), 'stopped');
      const outcome = await hanging;
      // Its backend connection destroyed: the gateway's 502, or the connection closed; never the backend's answer.
      assert.ok(outcome instanceof Error || (outcome as Reply).status === 502, `the request was cut: ${JSON.stringify(outcome)}`);
    } finally {
      held.destroy();
    }
  });
  test('telemetry is flushed in what is left of the shutdown timeout, and not waited on past it', TEST_TIMEOUT, async () => {
    // An ingestion endpoint that takes connections and never answers (not even the TLS handshake): the flush runs
    // until its time is up, and its log line says how long it was given.
    const sockets: Socket[] = [];
    const silent = createTcpServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const parsed = parseConnectionString(connectionString((silent.address() as AddressInfo).port));
    assert.ok(parsed.ok);
    const SHUTDOWN_TIMEOUT_MS = 2500;
    const g = await start({ shutdownTimeoutMs: SHUTDOWN_TIMEOUT_MS, appInsights: { ...parsed.value, samplingPercentage: 100 } });
    try {
      assert.equal((await fresh(g.url, '/shop/flushed')).status, 200);
      const began = performance.now();
      await g.gateway.stop();
      const took = performance.now() - began;
      const dropped = await g.logs.next('telemetry not flushed within the shutdown timeout: the rest is dropped');
      const given = dropped.timeoutMs as number;
      // Draining took a little of the timeout; the flush had the rest, more than the 1 s it is given at least.
      assert.ok(given > SHUTDOWN_TIMEOUT_MS - 1000 && given <= SHUTDOWN_TIMEOUT_MS, `the flush was given ${given} ms of ${SHUTDOWN_TIMEOUT_MS}`);
      assert.ok(sockets.length > 0, 'the flush tried the endpoint');
      assert.ok(took >= given - 1 && took < SHUTDOWN_TIMEOUT_MS + 5000, `stop() took ${took} ms`);
      assert.equal(g.logs.messages().at(-1), 'stopped');
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});

describe('with a control plane', () => {
  let cp: ControlPlaneProcess;
  let token: string;
  const admin = async (method: string, path: string, body?: unknown) => {
    const reply = await cp.admin(method, path, body);
    assert.equal(reply.status, 200, `${method} ${path}: ${reply.text}`);
    return reply.body;
  };

  before(async () => {
    cp = await startControlPlane(tempDir('gatehouse-standalone-cp-'));
    await admin('PUT', '/admin/apis/shop', { pathPrefix: '/shop', backend: { url: backendUrl } });
    await admin('PUT', '/admin/gateways/gw-standalone', { apis: ['shop'] });
    token = (await admin('POST', '/admin/gateways/gw-standalone/tokens', {})).token as string;
  });

  after(async () => {
    await cp?.stop();
  });

  /** This instance's row in the fleet view once `ok` holds for it. */
  async function instanceRow(instance: string, what: string, ok: (row: Record<string, unknown>) => boolean) {
    let row: Record<string, unknown> | undefined;
    await waitForAsync(what, async () => {
      const { gateways } = (await admin('GET', '/admin/gateways')) as { gateways: { id: string; instances: Record<string, unknown>[] }[] };
      row = gateways.find((gw) => gw.id === 'gw-standalone')?.instances.find((i) => i.instance === instance);
      return row !== undefined && ok(row);
    });
    return row!;
  }

  test('its document is applied, served and backed up; heartbeats say ready, then not ready once stopping; telemetry reaches it', TEST_TIMEOUT, async () => {
    const backupDir = tempDir('gatehouse-standalone-backup-');
    const g = await start({ configFile: null, controlPlane: { url: cp.url, token, intervalMs: 50, backupDir, heartbeatMs: 50, telemetryMs: 100 } });
    let stopped: Promise<void> | null = null;
    try {
      const applied = await g.logs.next('configuration from the control plane applied');
      assert.deepEqual(applied.apis, ['shop']);
      assert.equal(applied.backedUp, true);
      assert.ok(readdirSync(backupDir).length > 0, 'the backup is written');
      assert.equal((await send(g.url, '/shop/x')).body, 'ok');
      assert.equal((await send(g.admin, '/readyz')).status, 200);
      const listening = await g.logs.next('gatehouse listening');
      assert.equal(listening.config, `control plane ${cp.url}`);
      const instance = String(listening.instance);
      assert.match(instance, /./);
      const metrics = (await send(g.admin, '/metrics')).body;
      assert.equal(metric(metrics, 'gatehouse_config_reloads_total{result="applied"}'), 1);
      assert.equal(metric(metrics, 'gatehouse_telemetry_dropped'), 0);

      const ready = await instanceRow(instance, 'a heartbeat saying ready', (r) => r.reportedHealth === 'ready');
      assert.equal(ready.version, gatewayAssets().version);
      await waitForAsync('the request counted in the telemetry', async () => {
        const { aggregates } = (await admin('GET', '/admin/telemetry?gateway=gw-standalone')) as { aggregates: { api: string; requests: number }[] };
        return aggregates.some((a) => a.api === 'shop' && a.requests >= 1);
      });

      stopped = g.gateway.stop(60_000);
      await instanceRow(instance, 'a heartbeat saying not ready', (r) => r.reportedHealth === 'not-ready');
    } finally {
      g.gateway.stop(0);
      await stopped;
      await g.gateway.stop();
    }
  });

  test('before a first document: not ready, and the probe says why', TEST_TIMEOUT, async () => {
    // A control plane that refuses the token: no document, and no backup to fall back on.
    const g = await start({ configFile: null, controlPlane: { url: cp.url, token: 'gw1.gw-standalone.1.1.AAAA', intervalMs: 50 } });
    try {
      let reason = '';
      await waitForAsync('the probe to say why no configuration is loaded', async () => {
        const readyz = await send(g.admin, '/readyz');
        reason = String((JSON.parse(readyz.body) as { reason?: string }).reason);
        return readyz.status === 503 && reason.startsWith('no configuration loaded: ');
      });
      assert.ok(reason.length > 'no configuration loaded: '.length, reason);
    } finally {
      await g.gateway.stop();
    }
  });
});
