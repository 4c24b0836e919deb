// npm run scenario:rate-limit — how exact a rate limit is across a fleet sharing one Redis.
//
// Starts a redis-server and three gateway processes on 127.0.0.1 (GATEHOUSE_REDIS_URL set on each), all serving an API
// limited by rate-limit-by-key to N calls an hour per tenant. Sends 1.5 N requests for one fresh tenant, spread round
// robin over the three gateways with many in flight at once, and counts what got through. Then does the same against
// one gateway without Redis (in-memory counters), which must be exact.
//
// Prints, on stdout:
//   distributed-rate-limit-overshoot-pct: (allowed - N) / N × 100, 0 when none over
//   distributed-rate-limit-undershoot-pct: (N - allowed) / N × 100, 0 when none under
//   distributed-allowed, distributed-limit, distributed-requests, distributed-errors, single-gateway-exact (yes|no)
// and exits 1 when the limit is missed (over by more than 1%, or under at all), a request fails, or single is not exact.
//
// Environment: SCENARIO_LIMIT (N, default 3000), SCENARIO_IN_FLIGHT (default 48). Needs redis-server on PATH; as root,
// installs it with apt-get when missing.

import { Agent, request } from 'undici';
import { startGatewayProcess, tempDir, writeConfig, type GatewayProcess } from '../test/support/gateway-process.ts';
import { startRedis, type RedisProcess } from '../test/support/redis-process.ts';
import { positiveFromEnv } from './lib/env.ts';
import { awayFromWindowEdge, ensureRedis, waitRedisUp } from './lib/redis.ts';
import { runScenario } from './lib/run.ts';

const LIMIT = positiveFromEnv('SCENARIO_LIMIT', 3000);
const IN_FLIGHT = positiveFromEnv('SCENARIO_IN_FLIGHT', 48);
const PERIOD_S = 3600;
const log = (line: string) => process.stderr.write(`${line}\n`);

function config(): string {
  return `
version: 1
apis:
  - id: limited
    pathPrefix: /limited
    backend: { url: builtin:echo }
    policies:
      inbound:
        - policy: rate-limit-by-key
          config: { calls: ${LIMIT}, renewalPeriod: ${PERIOD_S}, counterKey: { from: header, name: x-tenant }, headers: false }
`;
}

/** Sends `total` requests over `gateways` round robin, IN_FLIGHT at a time; counts the answers by status. */
async function drive(gateways: GatewayProcess[], total: number, tenant: string): Promise<Map<number | 'error', number>> {
  const agent = new Agent({ connections: IN_FLIGHT });
  const counts = new Map<number | 'error', number>();
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < total; i = next++) {
      const g = gateways[i % gateways.length]!;
      let key: number | 'error';
      try {
        const res = await request(`${g.url}/limited/x`, { headers: { 'x-tenant': tenant }, dispatcher: agent });
        await res.body.dump();
        key = res.statusCode;
      } catch {
        key = 'error';
      }
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  await agent.close();
  return counts;
}

const children: GatewayProcess[] = [];
let redis: RedisProcess | null = null;

async function main(): Promise<number> {
  ensureRedis();
  redis = await startRedis();
  const file = writeConfig(tempDir('gatehouse-scenario-'), 'gateway.yaml', config());
  log(`# redis-server on ${redis.port}; three gateways; rate-limit-by-key ${LIMIT} calls per ${PERIOD_S} s`);
  const fleet = await Promise.all([0, 1, 2].map(() => startGatewayProcess({ config: file, env: { GATEHOUSE_REDIS_URL: redis!.url } })));
  children.push(...fleet);
  for (const g of fleet) await waitRedisUp(g);
  await awayFromWindowEdge(redis, PERIOD_S, 120);

  const total = Math.ceil(LIMIT * 1.5);
  const started = performance.now();
  const counts = await drive(fleet, total, `scenario-${Date.now()}`);
  const seconds = (performance.now() - started) / 1000;
  const allowed = counts.get(200) ?? 0;
  const refused = counts.get(429) ?? 0;
  const errors = total - allowed - refused;
  log(`# ${total} requests in ${seconds.toFixed(1)} s (${Math.round(total / seconds)} req/s): ${allowed} × 200, ${refused} × 429, ${errors} other`);

  const single = await startGatewayProcess({ config: file });
  children.push(single);
  await awayFromWindowEdge(redis, PERIOD_S, 60);
  const singleCounts = await drive([single], total, `single-${Date.now()}`);
  const singleAllowed = singleCounts.get(200) ?? 0;
  const singleExact = singleAllowed === LIMIT && (singleCounts.get(429) ?? 0) === total - LIMIT;
  log(`# one gateway, in-memory counters: ${singleAllowed} of ${total} allowed`);

  const over = (Math.max(0, allowed - LIMIT) / LIMIT) * 100;
  const under = (Math.max(0, LIMIT - allowed) / LIMIT) * 100;
  const out = [
    `distributed-rate-limit-overshoot-pct: ${over.toFixed(2)}`,
    `distributed-rate-limit-undershoot-pct: ${under.toFixed(2)}`,
    `distributed-allowed: ${allowed}`,
    `distributed-limit: ${LIMIT}`,
    `distributed-requests: ${total}`,
    `distributed-errors: ${errors}`,
    `single-gateway-exact: ${singleExact ? 'yes' : 'no'}`,
  ];
  process.stdout.write(out.join('\n') + '\n');
  return over > 1 || under > 0 || errors > 0 || !singleExact ? 1 : 0;
}

async function cleanup(): Promise<void> {
  await Promise.all(children.map((c) => c.stop().catch(() => null)));
  await redis?.stop();
}

runScenario(main, cleanup);
