// Redis for the scenario scripts that share counters across gateways: making sure redis-server is there, and keeping a
// run inside one rate-limit window.

import { spawnSync } from 'node:child_process';
import { Redis } from 'ioredis';
import { request } from 'undici';
import type { GatewayProcess } from '../../test/support/gateway-process.ts';
import { redisAvailable, type RedisProcess } from '../../test/support/redis-process.ts';
import { waitForAsync } from '../../test/support/wait.ts';

const log = (line: string) => process.stderr.write(`${line}\n`);

/** Stops the script unless redis-server is on PATH; as root, installs it with apt-get first. */
export function ensureRedis(): void {
  if (redisAvailable()) return;
  if (process.getuid?.() !== 0) throw new Error('redis-server is not on PATH: install it (apt-get install redis-server)');
  log('# installing redis-server with apt-get');
  const r = spawnSync('sh', ['-c', 'apt-get update -qq && apt-get install -y -qq redis-server'], { stdio: 'inherit' });
  if (r.status !== 0 || !redisAvailable()) throw new Error('could not install redis-server');
}

/**
 * Waits while the current window of `periodS` seconds (Redis's clock, as the gateways' counters use it) ends within
 * `marginS`, so that a run counting against one limit stays in one window.
 */
export async function awayFromWindowEdge(redis: RedisProcess, periodS: number, marginS: number): Promise<void> {
  const client = new Redis(redis.url);
  try {
    const [seconds] = await client.time();
    const left = periodS - (Number(seconds) % periodS);
    if (left < marginS) {
      log(`# the ${periodS} s window ends in ${left} s: waiting for the next one`);
      await new Promise((r) => setTimeout(r, (left + 1) * 1000));
    }
  } finally {
    client.disconnect();
  }
}

/** Until the gateway's metrics say its counters are shared through Redis. */
export function waitRedisUp(g: GatewayProcess, timeoutMs = 15_000): Promise<void> {
  return waitForAsync(`gateway on ${g.httpPort} to reach Redis`, async () => {
    const res = await request(`http://127.0.0.1:${g.adminPort}/metrics`);
    return /gatehouse_counter_store_redis_up 1/.test(await res.body.text());
  }, timeoutMs);
}
