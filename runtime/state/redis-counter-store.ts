// Counters shared by a fleet of gateways, in Redis (GATEHOUSE_REDIS_URL). One Lua script per update keeps it atomic:
// however many gateways count on one key, a window never lets more than `limit` through. Windows follow Redis's clock
// (TIME inside the script), so gateways whose clocks disagree still share one window.
//
// When Redis cannot be reached (refused, timed out, gone mid-command), the gateway keeps serving: it counts in its own
// memory (MemoryCounterStore), says so once in the log and in metrics, and goes back to Redis as soon as Redis answers
// again. Counts made locally meanwhile are not carried over into Redis: during an outage each gateway enforces the
// limit on its own share of the traffic.
//
// ioredis (a well-kept client: reconnection with back-off, scripts by SHA with a fallback to EVAL) does the protocol.

import { Redis } from 'ioredis';
import type { Logger } from '../telemetry/logger.ts';
import type { Counter, MetricsRegistry } from '../telemetry/metrics.ts';
import { MemoryCounterStore, type CounterOutcome, type CounterStore } from './counter-store.ts';

/**
 * KEYS[1]: the counter's key without its window; ARGV: amount, limit, period in seconds.
 * The window starts at a multiple of the period in Redis time; its key expires a second after the window ends.
 * Returns { allowed (0/1), count, milliseconds until the window ends }.
 */
const CONSUME_SCRIPT = `
local now = redis.call('TIME')
local nowMs = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local amount = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local periodMs = tonumber(ARGV[3]) * 1000
local start = nowMs - (nowMs % periodMs)
local key = KEYS[1] .. ':' .. start
local count = tonumber(redis.call('GET', key) or '0')
local allowed = 0
if count + amount <= limit then
  count = redis.call('INCRBY', key, amount)
  allowed = 1
  if count == amount then redis.call('PEXPIRE', key, periodMs + 1000) end
end
return { allowed, count, start + periodMs - nowMs }
`;

export interface RedisCounterStoreOptions {
  /** `redis://[:password@]host:port[/db]` or `rediss://…` for TLS. */
  url: string;
  logger: Logger;
  metrics: MetricsRegistry;
  /** A command slower than this counts as Redis being unreachable (default 250 ms). */
  commandTimeoutMs?: number;
  /** After a failed command, how long to count locally before trying Redis again (default 1,000 ms). */
  retryAfterMs?: number;
  /** Prefix of every key (default `gatehouse:counter:`). */
  keyPrefix?: string;
}

type Consume = (key: string, amount: number, limit: number, periodSeconds: number) => Promise<[number, number, number]>;

export class RedisCounterStore implements CounterStore {
  private readonly redis: Redis & { gatehouseConsume: Consume };
  private readonly local = new MemoryCounterStore();
  private readonly logger: Logger;
  private readonly retryAfterMs: number;
  private readonly keyPrefix: string;
  /** While counting locally, Redis is tried again (with a real update) once this time has passed. */
  private failedUntil = 0;
  /** Where counting happens: null until the first connection succeeds or fails. Changes are logged once each. */
  private state: 'redis' | 'local' | null = null;
  private readonly localCounts: Counter;
  private closed = false;

  constructor(options: RedisCounterStoreOptions) {
    this.logger = options.logger.child({ component: 'counters' });
    this.retryAfterMs = options.retryAfterMs ?? 1000;
    this.keyPrefix = options.keyPrefix ?? 'gatehouse:counter:';
    const redis = new Redis(options.url, {
      // Fail at once while disconnected rather than queue: a request must not wait for Redis to come back.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: options.commandTimeoutMs ?? 250,
      connectTimeout: 1000,
      // Reconnect for ever, at most every 2 s.
      retryStrategy: (attempt: number) => Math.min(100 * attempt, 2000),
      lazyConnect: false,
    });
    redis.defineCommand('gatehouseConsume', { numberOfKeys: 1, lua: CONSUME_SCRIPT });
    // Connection errors are expected while Redis is away; the switch to local counting is what gets logged.
    redis.on('error', () => undefined);
    // A connection that is ready answered Redis's ready check: Redis is back.
    redis.on('ready', () => this.switchTo('redis'));
    redis.on('close', () => this.switchTo('local', 'connection closed'));
    this.redis = redis as Redis & { gatehouseConsume: Consume };
    const metrics = options.metrics;
    this.localCounts = metrics.counter(
      'gatehouse_counter_local_fallback_total',
      'Counter updates made in this gateway because Redis could not be reached.',
    );
    metrics.gauge('gatehouse_counter_store_redis_up', 'Whether counters are shared through Redis now (1) or kept locally (0).', () =>
      this.state === 'redis' ? 1 : 0,
    );
  }

  private switchTo(state: 'redis' | 'local', error?: string): void {
    if (state === this.state || this.closed) return;
    const before = this.state;
    this.state = state;
    if (state === 'local') {
      this.failedUntil = Date.now() + this.retryAfterMs;
      this.logger.warn('Redis unreachable: counting in this gateway until it is back', { error });
    } else {
      this.logger.info(before === null ? 'counters are shared through Redis' : 'Redis is back: counters are shared again');
    }
  }

  /** Whether this update goes to Redis: always while Redis works; while counting locally, once a retry is due. */
  private tryRedis(): boolean {
    if (this.redis.status !== 'ready') return false;
    return this.state === 'redis' || Date.now() >= this.failedUntil;
  }

  /** Answers at once only while counting locally; with Redis up, the update is a round trip (an effect round). */
  consumeNow(key: string, amount: number, limit: number, periodSeconds: number): CounterOutcome | undefined {
    if (this.tryRedis()) return undefined;
    this.localCounts.inc();
    return this.local.consumeNow(key, amount, limit, periodSeconds);
  }

  async consume(key: string, amount: number, limit: number, periodSeconds: number): Promise<CounterOutcome> {
    if (this.tryRedis()) {
      try {
        const [allowed, count, msLeft] = await this.redis.gatehouseConsume(this.keyPrefix + key, amount, limit, periodSeconds);
        this.switchTo('redis');
        return {
          allowed: allowed === 1,
          count,
          limit,
          remaining: Math.max(0, limit - count),
          resetSeconds: Math.max(0, Math.ceil(msLeft / 1000)),
        };
      } catch (err) {
        if (this.state === 'local') this.failedUntil = Date.now() + this.retryAfterMs;
        this.switchTo('local', (err as Error).message);
      }
    }
    this.localCounts.inc();
    return this.local.consumeNow(key, amount, limit, periodSeconds);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.redis.disconnect();
  }
}
