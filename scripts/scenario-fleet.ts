// npm run scenario:fleet: a fleet under steady load through the events of its life, with real processes on 127.0.0.1.
//
// A control plane (its own data folder and admin token file), a redis-server, two backends (scripts/bench/backend.ts,
// each its own process) and three gateways configured by the control plane (each with its own gateway token, backup
// folder and GATEHOUSE_REDIS_URL; polling every second, GATEHOUSE_SYNC_INTERVAL_MS=1000, so that the story takes
// seconds; shutdown delay 5 s, the default). Two APIs: `fleet` (the backend pool, an outbound header naming the
// configuration's version) and `limited` (rate-limit-by-key, LIMIT calls an hour for one tenant).
//
// Load comes from this process the way a Kubernetes Service sends it: each gateway's probe is polled every 150 ms
// and requests go round robin to the gateways whose last probe answered 200 (scripts/lib/ready-endpoints.ts). Two
// streams: ordinary requests to `fleet` (FLEET_RATE a second), and requests to `limited` for one tenant (150 a second)
// until 1.5 × LIMIT have been sent. Meanwhile:
//   1. a change (the header's value, through the admin API); the time until every gateway serves it is measured;
//   2. one gateway gets SIGTERM: it must turn not-ready, serve on through its delay, drain and exit 0; it is started
//      again on the same ports and backup folder and must become ready;
//   3. the control plane is killed (SIGKILL) and started again on the same data;
//   4. a second change, which must reach every gateway.
//
// Prints on stdout `fleet-requests`, `fleet-failed-requests` (any answer other than 2xx, or 429 on `limited`, and any
// connection error), `fleet-rate-limited-requests`, `fleet-rate-limit-allowed: A of limit M`,
// `fleet-change-propagation-ms` (the slower change; each change is the time until the last gateway serves it) and the
// lines of each event; the story on stderr. Exits 1 when a request failed, the fleet let through other than the limit
// (up to 1% over is issue 4's target), a change did not reach every gateway within 15 s, the stopped gateway did not
// turn not-ready before closing or did not exit 0, or the restarted one did not become ready.
//
// Environment: FLEET_RATE (ordinary requests a second, default 600), FLEET_RATE_LIMIT (M, default 3000),
// FLEET_IN_FLIGHT (per stream, default 32). `npx deno run -A scripts/scenario-fleet.ts` runs the gateways under Deno
// (the control plane, whose SQLite driver Deno cannot load, under Node as always).

import { Agent, request } from 'undici';
import { isDeno } from '../runtime/adapters/index.ts';
import { startControlPlane, type ControlPlaneProcess } from '../test/support/control-plane-process.ts';
import { startGatewayProcess, tempDir, type GatewayProcess } from '../test/support/gateway-process.ts';
import { startRedis, type RedisProcess } from '../test/support/redis-process.ts';
import { startBenchBackend, type BenchBackend as Backend } from './lib/bench-backend.ts';
import { positiveFromEnv } from './lib/env.ts';
import { LoadStream } from './lib/load-stream.ts';
import { ReadyEndpoints } from './lib/ready-endpoints.ts';
import { awayFromWindowEdge, ensureRedis, waitRedisUp } from './lib/redis.ts';
import { runScenario } from './lib/run.ts';
import { STATUS_PATH } from '../runtime/gateway/gateway.ts';

const RATE = positiveFromEnv('FLEET_RATE', 600);
const LIMIT = positiveFromEnv('FLEET_RATE_LIMIT', 3000);
const IN_FLIGHT = positiveFromEnv('FLEET_IN_FLIGHT', 32);
const LIMITED_RATE = 150;
const PERIOD_S = 3600;
const SYNC_INTERVAL_MS = 1000;
const SHUTDOWN_DELAY_MS = 5000;
const PROBE_INTERVAL_MS = 150;
const PROPAGATION_TIMEOUT_MS = 15_000;
const GATEWAYS = ['gw-1', 'gw-2', 'gw-3'];
/** The gateway that is stopped with SIGTERM and started again. */
const ROLLED = 'gw-2';

const t0 = Date.now();
const log = (line: string) => process.stderr.write(`# ${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s  ${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------------------------
// Processes

const started: { stop(): Promise<unknown> }[] = [];
let redis: RedisProcess | null = null;
/** Every gateway process started, by name, the stopped one too: their logs explain a failed run. */
const gatewayProcesses: { name: string; g: GatewayProcess }[] = [];
let succeeded = false;

function fleetApi(version: string, backends: Backend[]) {
  return {
    pathPrefix: '/fleet',
    backend: { pool: { urls: backends.map((b) => b.url) } },
    policies: { outbound: [{ policy: 'set-header', config: { name: 'x-config-version', value: version } }] },
  };
}

function limitedApi(backends: Backend[]) {
  return {
    pathPrefix: '/limited',
    backend: { pool: { urls: backends.map((b) => b.url) } },
    policies: {
      inbound: [
        {
          policy: 'rate-limit-by-key',
          config: { calls: LIMIT, renewalPeriod: PERIOD_S, counterKey: { from: 'header', name: 'x-tenant' }, headers: false },
        },
      ],
    },
  };
}

async function admin(cp: ControlPlaneProcess, method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const reply = await cp.admin(method, path, body);
  if (reply.status !== 200) throw new Error(`${method} ${path}: ${reply.status} ${reply.text}`);
  return reply.body;
}

// ---------------------------------------------------------------------------------------------------------------
// Measurements

const checks = new Agent({ connections: 2 });

async function versionServed(url: string): Promise<string | null> {
  try {
    const res = await request(`${url}/fleet/version`, { dispatcher: checks, headersTimeout: 2000, bodyTimeout: 2000 });
    await res.body.dump();
    return res.statusCode === 200 ? ((res.headers['x-config-version'] as string | undefined) ?? null) : null;
  } catch {
    return null;
  }
}

/**
 * Time from `since` until each gateway serves `version` (polled every 25 ms, directly, not through the endpoints):
 * the slowest, or null when one did not within the timeout.
 */
async function propagation(gateways: Map<string, GatewayProcess>, version: string, since: number): Promise<number | null> {
  const times = await Promise.all(
    [...gateways].map(async ([name, g]) => {
      while (Date.now() - since < PROPAGATION_TIMEOUT_MS) {
        if ((await versionServed(g.url)) === version) return [name, Date.now() - since] as const;
        await sleep(25);
      }
      return [name, null] as const;
    }),
  );
  log(`${version} served by ${times.map(([n, ms]) => `${n} after ${ms ?? 'never'} ms`).join(', ')}`);
  return times.some(([, ms]) => ms === null) ? null : Math.max(...times.map(([, ms]) => ms!));
}

async function waitUntil(what: string, condition: () => Promise<boolean> | boolean, timeoutMs: number): Promise<number> {
  const since = Date.now();
  while (!(await condition())) {
    if (Date.now() - since > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
  return Date.now() - since;
}

// ---------------------------------------------------------------------------------------------------------------
// The story

async function main(): Promise<number> {
  ensureRedis();
  redis = await startRedis();
  const backends = await Promise.all(['backend-a', 'backend-b'].map((name) => startBenchBackend(name)));
  started.push(...backends);

  const cpData = tempDir('gatehouse-fleet-cp-');
  let cp = await startControlPlane(cpData);
  started.push({ stop: () => cp.stop() });
  const cpPort = Number(new URL(cp.url).port);
  await admin(cp, 'PUT', '/admin/apis/fleet', fleetApi('v1', backends));
  await admin(cp, 'PUT', '/admin/apis/limited', limitedApi(backends));
  await admin(cp, 'PUT', '/admin/gateways/edge', { apis: ['fleet', 'limited'] });
  log(`control plane on ${cpPort} (data ${cpData}), redis-server on ${redis.port}, backends ${backends.map((b) => b.url).join(' ')}`);

  const envs = new Map<string, Record<string, string>>();
  for (const name of GATEWAYS) {
    const { token } = (await admin(cp, 'POST', '/admin/gateways/edge/tokens', { expiresInDays: 1 })) as { token: string };
    envs.set(name, {
      GATEHOUSE_CONFIG_URL: cp.url,
      GATEHOUSE_TOKEN: token,
      GATEHOUSE_REDIS_URL: redis.url,
      GATEHOUSE_BACKUP_DIR: tempDir(`gatehouse-fleet-${name}-backup-`),
      GATEHOUSE_SYNC_INTERVAL_MS: String(SYNC_INTERVAL_MS),
      GATEHOUSE_HEARTBEAT_INTERVAL_MS: '2000',
      GATEHOUSE_SHUTDOWN_DELAY_MS: String(SHUTDOWN_DELAY_MS),
    });
  }
  const gateways = new Map<string, GatewayProcess>();
  await Promise.all(
    GATEWAYS.map(async (name) => {
      const g = await startGatewayProcess({ env: envs.get(name)! });
      gateways.set(name, g);
      gatewayProcesses.push({ name, g });
      started.push({ stop: () => gateways.get(name)!.stop('SIGINT') });
    }),
  );
  const endpoints = new ReadyEndpoints(STATUS_PATH, PROBE_INTERVAL_MS);
  for (const name of GATEWAYS) endpoints.add(name, gateways.get(name)!.url);
  await waitUntil('every gateway to be ready', async () => (await endpoints.pollAll(), GATEWAYS.every((n) => endpoints.get(n).ready)), 30_000);
  for (const g of gateways.values()) await waitRedisUp(g);
  await awayFromWindowEdge(redis, PERIOD_S, 180);
  log(`three gateways ready (${GATEWAYS.map((n) => `${n} on ${gateways.get(n)!.httpPort}`).join(', ')}), counters shared through Redis`);

  // Load.
  const traffic = new Agent({ connections: IN_FLIGHT, keepAliveTimeout: 30_000 });
  /** When ROLLED answered requests between its SIGTERM and its exit. */
  const rolledAnswers: number[] = [];
  let rolledStopping = false;
  const byBackend = new Map<string, number>();
  const ordinary = new LoadStream(
    {
      name: 'fleet',
      ratePerS: RATE,
      maxInFlight: IN_FLIGHT,
      path: '/fleet/items',
      onAnswer: (endpoint, _status, headers) => {
        const backend = String(headers['x-backend']);
        byBackend.set(backend, (byBackend.get(backend) ?? 0) + 1);
        if (endpoint === ROLLED && rolledStopping) rolledAnswers.push(Date.now());
      },
    },
    endpoints,
    traffic,
  );
  const tenant = `fleet-${Date.now()}`;
  const limited = new LoadStream(
    { name: 'limited', ratePerS: LIMITED_RATE, maxInFlight: IN_FLIGHT, path: '/limited/items', headers: { 'x-tenant': tenant }, alsoExpected: [429] },
    endpoints,
    traffic,
  );
  endpoints.start();
  ordinary.start();
  limited.start();
  const loadStarted = Date.now();
  log(`load: ${RATE} requests/s to /fleet, ${LIMITED_RATE}/s to /limited (tenant ${tenant}, limit ${LIMIT}), round robin over ready gateways`);
  await sleep(3000);

  // 1. A change.
  await admin(cp, 'PUT', '/admin/apis/fleet', fleetApi('v2', backends));
  log('change 1: x-config-version v2');
  const change1 = await propagation(gateways, 'v2', Date.now());

  // 2. SIGTERM one gateway, as Kubernetes does; then start it again.
  const rolled = gateways.get(ROLLED)!;
  const rolledSignalledAt = Date.now();
  rolledStopping = true;
  rolled.child.kill('SIGTERM');
  log(`${ROLLED}: SIGTERM`);
  const exitCode = await rolled.exited;
  rolledStopping = false;
  const orderlyEnd = rolled.logs.some((l) => l.msg === 'stopped');
  // Under Deno (`deno run -A scripts/scenario-fleet.ts`, gateways under Deno too) node:child_process reports a child
  // that exits after handling a signal as killed by it, with no code (test/gateway.test.ts): the log line tells then.
  const exitedCleanly = exitCode === 0 || (isDeno && exitCode === null && orderlyEnd);
  const exitedAfterMs = Date.now() - rolledSignalledAt;
  const turned = endpoints.changes.find((c) => c.endpoint === ROLLED && !c.ready && c.at >= rolledSignalledAt);
  const notReadyMs = turned ? turned.at - rolledSignalledAt : null;
  const servedDuringDelay = rolledAnswers.length;
  const lastAnswerMs = rolledAnswers.length > 0 ? rolledAnswers[rolledAnswers.length - 1]! - rolledSignalledAt : null;
  log(
    `${ROLLED}: not ready after ${notReadyMs ?? '?'} ms (probe: ${turned?.seen ?? 'never seen'}); answered ${servedDuringDelay} requests after ` +
      `SIGTERM, the last after ${lastAnswerMs ?? '-'} ms; exited with ${exitCode} after ${exitedAfterMs} ms`,
  );
  const restartedAt = Date.now();
  const restarted = await startGatewayProcess({
    env: { ...envs.get(ROLLED)!, GATEHOUSE_HTTP_PORT: String(rolled.httpPort), GATEHOUSE_ADMIN_PORT: String(rolled.adminPort) },
  });
  gateways.set(ROLLED, restarted);
  gatewayProcesses.push({ name: `${ROLLED} (restarted)`, g: restarted });
  const restartedReadyMs = await waitUntil(`${ROLLED} to be ready again`, () => endpoints.get(ROLLED).ready, 30_000)
    .then(() => Date.now() - restartedAt)
    .catch(() => null);
  log(`${ROLLED}: started again on the same ports and backup folder; ready (as the endpoints saw it) after ${restartedReadyMs ?? 'never'} ms, serving ${await versionServed(restarted.url)}`);
  await sleep(2000);

  // 3. The control plane is killed, and comes back on the same data.
  await cp.stop('SIGKILL');
  const cpKilledAt = Date.now();
  log('control plane killed (SIGKILL)');
  await sleep(3 * SYNC_INTERVAL_MS);
  cp = await startControlPlane(cpData, cpPort);
  const cpDownMs = Date.now() - cpKilledAt;
  log(`control plane back on the same data after ${cpDownMs} ms`);

  // 4. A second change, made at once.
  await admin(cp, 'PUT', '/admin/apis/fleet', fleetApi('v3', backends));
  log('change 2: x-config-version v3');
  const change2 = await propagation(gateways, 'v3', Date.now());

  // The rate-limited stream goes on until it has sent 1.5 × the limit.
  const limitedTarget = Math.ceil(LIMIT * 1.5);
  await waitUntil(`${limitedTarget} requests to /limited`, () => limited.sent >= limitedTarget, 120_000);
  await Promise.all([limited.stop(), ordinary.stop()]);
  const loadSeconds = (Date.now() - loadStarted) / 1000;
  await endpoints.stop();
  await traffic.close();

  // What the control plane knows of the fleet: each live instance's revision (heartbeats every 2 s).
  let current = 0;
  await waitUntil('heartbeats from three instances on the current revision', async () => (current = await instancesCurrent(cp)) >= 3, 10_000).catch(
    () => undefined,
  );

  const allowed = limited.count(200);
  const refused = limited.count(429);
  const requests = ordinary.sent + limited.sent;
  const failed = ordinary.failed + limited.failed;
  for (const f of [...ordinary.failures, ...limited.failures].slice(0, 20)) {
    log(`failed: ${f.stream} via ${f.endpoint}: ${f.what}, sent at ${((f.sentAt - t0) / 1000).toFixed(2)} s, failed after ${f.at - f.sentAt} ms`);
  }
  log(`${requests} requests in ${loadSeconds.toFixed(1)} s; by gateway ${[...mergeCounts(ordinary.byEndpoint, limited.byEndpoint)].map(([k, v]) => `${k} ${v}`).join(', ')}; ` +
    `/fleet by backend ${[...byBackend].map(([k, v]) => `${k} ${v}`).join(', ')}; no ready gateway ${ordinary.noEndpointWaits + limited.noEndpointWaits} times`);
  const overshootPct = ((allowed - LIMIT) / LIMIT) * 100;
  const propagated = [change1, change2];
  const lines = [
    `fleet-requests: ${requests}`,
    `fleet-failed-requests: ${failed}`,
    `fleet-rate-limited-requests: ${refused}`,
    `fleet-rate-limit-allowed: ${allowed} of limit ${LIMIT}`,
    `fleet-rate-limit-overshoot-pct: ${overshootPct.toFixed(2)}`,
    `fleet-change-propagation-ms: ${propagated.every((p) => p !== null) ? Math.max(...(propagated as number[])) : 'n/a'}`,
    `fleet-change-1-propagation-ms: ${change1 ?? 'n/a'}`,
    `fleet-change-2-propagation-ms: ${change2 ?? 'n/a'} (control plane restarted just before)`,
    `fleet-stopped-gateway-not-ready-ms: ${notReadyMs ?? 'n/a'}`,
    `fleet-stopped-gateway-answers-after-sigterm: ${servedDuringDelay}`,
    `fleet-stopped-gateway-exit-code: ${exitCode}${exitCode === null && isDeno ? ' (as Deno reports it)' : ''}`,
    `fleet-stopped-gateway-orderly-end: ${orderlyEnd ? 'yes' : 'no'}`,
    `fleet-stopped-gateway-exit-ms: ${exitedAfterMs}`,
    `fleet-restarted-gateway-ready-ms: ${restartedReadyMs ?? 'n/a'}`,
    `fleet-control-plane-down-ms: ${cpDownMs}`,
    `fleet-instances-on-current-revision: ${current} of 3`,
    `fleet-requests-per-s: ${Math.round(requests / loadSeconds)}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
  const problems = [
    failed > 0 && `${failed} requests failed`,
    (allowed < LIMIT || overshootPct > 1) && `the fleet let ${allowed} through for a limit of ${LIMIT}`,
    propagated.some((p) => p === null) && 'a change did not reach every gateway',
    (turned?.seen !== 503) && `${ROLLED} was not seen answering 503 on its probe before it went`,
    !exitedCleanly && `${ROLLED} exited with ${exitCode}${orderlyEnd ? '' : ', without its "stopped" log line'}`,
    restartedReadyMs === null && `${ROLLED} did not become ready again`,
    current < 3 && 'the control plane does not see three instances on the current revision',
  ].filter((p): p is string => typeof p === 'string');
  for (const p of problems) log(`requirement not met: ${p}`);
  succeeded = problems.length === 0;
  return succeeded ? 0 : 1;
}

/** Instances whose heartbeat is recent (5 s) and on the control plane's current revision. */
async function instancesCurrent(cp: ControlPlaneProcess): Promise<number> {
  const { gateways } = (await admin(cp, 'GET', '/admin/gateways')) as {
    gateways: { instances: { revisionsBehind: number | null; secondsSinceHeartbeat: number }[] }[];
  };
  return gateways.flatMap((g) => g.instances).filter((i) => i.revisionsBehind === 0 && i.secondsSinceHeartbeat <= 5).length;
}

function mergeCounts(...maps: Map<string, number>[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of maps) for (const [k, v] of m) out.set(k, (out.get(k) ?? 0) + v);
  return new Map([...out].sort());
}

/** After a failed run: what each gateway logged besides requests (warnings, errors, configuration, shutdown). */
function reportGatewayLogs(): void {
  for (const { name, g } of gatewayProcesses) {
    const lines = g.logs.filter((l) => l.msg !== 'request');
    log(`${name}, pid ${g.child.pid}, last of ${lines.length} log lines other than requests:`);
    for (const l of lines.slice(-12)) process.stderr.write(`    ${JSON.stringify(l)}\n`);
  }
}

async function cleanup(): Promise<void> {
  if (!succeeded) reportGatewayLogs();
  await Promise.all(started.map((p) => p.stop().catch(() => null)));
  await redis?.stop();
  await checks.close();
}

runScenario(main, cleanup);
