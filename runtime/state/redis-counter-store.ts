// Counters shared by a fleet of gateways, in Redis (GATEHOUSE_REDIS_URL). One Lua script per update keeps it atomic:
// however many gateways count on one key, a window never lets more than `limit` through. Windows follow Redis's clock
// (TIME inside the script), so gateways whose clocks disagree still share one window.
//
// When Redis cannot be reached (refused, timed out, gone mid-command), the gateway keeps serving: it counts in its own
// memory (MemoryCounterStore), says so once in the log and in metrics, and goes back to Redis as soon as Redis answers
// again. Each gateway's local count starts from the count Redis last gave it for that window, so during an outage a
// gateway lets through at most what was left of the limit when it last heard from Redis (with N gateways, up to N
// times that in all). Counts made locally are not carried over into Redis when it is back.
//
// ioredis (a well-kept client: reconnection with back-off, scripts by SHA with a fallback to EVAL) does the protocol.

import { Redis } from 'ioredis';
import type { Logger } from '../telemetry/logger.ts';
import type { Counter, MetricsRegistry } from '../telemetry/metrics.ts';
import { randomUUID } from 'node:crypto';
import { MemoryCounterStore, type CounterOutcome, type CounterStore, type LeaseOutcome } from './counter-store.ts';

/**
 * KEYS[1]: the counter's key without its window; ARGV: amount, limit, period in seconds, always (1: add even over the
 * limit).
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
if count + amount <= limit then allowed = 1 end
if amount > 0 and (allowed == 1 or ARGV[4] == '1') then
  count = redis.call('INCRBY', key, amount)
  if count == amount then redis.call('PEXPIRE', key, periodMs + 1000) end
end
return { allowed, count, start + periodMs - nowMs }
`;

/**
 * KEYS[1]: a concurrency key (a sorted set of leases by expiry time); ARGV: limit, ttl in ms, lease id. Expired leases
 * (their gateway died holding them) are dropped first. Returns { acquired (0/1), leases held }.
 */
const ACQUIRE_SCRIPT = `
local now = redis.call('TIME')
local nowMs = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', nowMs)
local held = redis.call('ZCARD', KEYS[1])
if held >= tonumber(ARGV[1]) then return { 0, held } end
redis.call('ZADD', KEYS[1], nowMs + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + 1000)
return { 1, held + 1 }
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

/** A command slower than this counts as Redis being unreachable, unless the options say otherwise. */
const DEFAULT_COMMAND_TIMEOUT_MS = 250;
/** A connection not made within this is given up (and tried again: ioredis's retryStrategy below). */
const CONNECT_TIMEOUT_MS = 1000;

type Acquire = (key: string, limit: number, ttlMs: number, lease: string) => Promise<[number, number]>;
type Consume = (key: string, amount: number, limit: number, periodSeconds: number, always: 0 | 1) => Promise<[number, number, number]>;

export class RedisCounterStore implements CounterStore {
  private readonly redis: Redis & { gatehouseConsume: Consume; gatehouseAcquire: Acquire };
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
  /** The last connection error, for the line that says counting moved here. */
  private lastError: string | null = null;
  /** host:port, for logs: never the URL, which may carry the password. */
  private readonly address: string;
  /** Settles once `state` is first set, or after the bound set in the constructor: see firstConnection. */
  private readonly firstSettled: Promise<void>;
  private settleFirst: () => void = () => {};

  constructor(options: RedisCounterStoreOptions) {
    this.logger = options.logger.child({ component: 'counters' });
    this.retryAfterMs = options.retryAfterMs ?? 1000;
    this.keyPrefix = options.keyPrefix ?? 'gatehouse:counter:';
    this.address = addressOf(options.url);
    this.firstSettled = new Promise<void>((resolve) => {
      // A connection that neither gets ready nor fails is bounded too: to a Redis that accepts connections and never
      // answers (stopped, overloaded, or not Redis), ioredis times its ready check out after 500 ms here but closes the
      // connection, the failure this store sees, only about 2.5 s after connecting.
      const boundMs = CONNECT_TIMEOUT_MS + (options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS) + 250;
      const bound = setTimeout(() => {
        if (this.state === null) this.switchTo('local', `connected, but no answer to the ready check within ${boundMs} ms`);
        resolve();
      }, boundMs);
      this.settleFirst = () => {
        clearTimeout(bound);
        resolve();
      };
    });
    const redis = new Redis(options.url, {
      // Fail at once while disconnected rather than queue: a request must not wait for Redis to come back.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS,
      connectTimeout: CONNECT_TIMEOUT_MS,
      // Reconnect for ever, at most every 2 s.
      retryStrategy: (attempt: number) => Math.min(100 * attempt, 2000),
      lazyConnect: false,
    });
    redis.defineCommand('gatehouseConsume', { numberOfKeys: 1, lua: CONSUME_SCRIPT });
    redis.defineCommand('gatehouseAcquire', { numberOfKeys: 1, lua: ACQUIRE_SCRIPT });
    // Connection errors are expected while Redis is away; the switch to local counting is what gets logged, with the
    // error that caused it (a refused connection comes as an error, then a close).
    redis.on('error', (err: Error) => {
      this.lastError = err.message;
    });
    // A connection that is ready answered Redis's ready check: Redis is back.
    redis.on('ready', () => {
      this.lastError = null;
      this.switchTo('redis');
    });
    redis.on('close', () => this.switchTo('local', this.lastError ?? 'the connection to Redis was closed'));
    this.redis = redis as Redis & { gatehouseConsume: Consume; gatehouseAcquire: Acquire };
    const metrics = options.metrics;
    this.localCounts = metrics.counter(
      'gatehouse_counter_local_fallback_total',
      'Counter updates made in this gateway because Redis could not be reached.',
    );
    metrics.gauge('gatehouse_counter_store_redis_up', 'Whether counters are shared through Redis now (1) or kept locally (0).', () =>
      this.state === 'redis' ? 1 : 0,
    );
  }

  /**
   * Settles once the first connection to Redis is ready (its ready check answered) or has failed (refused, closed, its
   * ready check timed out), and at the latest after the connect timeout and a command's: a gateway starts serving
   * after it, so that with Redis up its limits are the fleet's from its first request, not its own until the
   * connection happens to be made. Never rejects: with Redis away the gateway serves with local counters, as later.
   */
  firstConnection(): Promise<void> {
    return this.firstSettled;
  }

  private switchTo(state: 'redis' | 'local', error?: string): void {
    if (state === this.state || this.closed) return;
    const before = this.state;
    this.state = state;
    this.settleFirst();
    if (state === 'local') {
      this.failedUntil = Date.now() + this.retryAfterMs;
      this.logger.warn('Redis unreachable: counting in this gateway until it is back', {
        redis: this.address,
        error,
        action: `check that Redis runs and that this gateway reaches ${this.address} (GATEHOUSE_REDIS_URL); it is tried again every second or two, requests are served meanwhile`,
      });
    } else {
      this.logger.info(before === null ? 'counters are shared through Redis' : 'Redis is back: counters are shared again', { redis: this.address });
    }
  }

  /** Whether this update goes to Redis: always while Redis works; while counting locally, once a retry is due. */
  private tryRedis(): boolean {
    if (this.redis.status !== 'ready') return false;
    return this.state === 'redis' || Date.now() >= this.failedUntil;
  }

  /** Answers at once only while counting locally; with Redis up, the update is a round trip (an effect round). */
  consumeNow(key: string, amount: number, limit: number, periodSeconds: number, always = false): CounterOutcome | undefined {
    if (this.tryRedis()) return undefined;
    this.localCounts.inc();
    return this.local.consumeNow(key, amount, limit, periodSeconds, always);
  }

  async consume(key: string, amount: number, limit: number, periodSeconds: number, always = false): Promise<CounterOutcome> {
    if (this.tryRedis()) {
      try {
        const [allowed, count, msLeft] = await this.redis.gatehouseConsume(this.keyPrefix + key, amount, limit, periodSeconds, always ? 1 : 0);
        this.switchTo('redis');
        // Should Redis become unreachable, counting here goes on from the fleet's count, not from zero.
        this.local.seed(key, periodSeconds, count, Date.now() + msLeft);
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
    return this.local.consumeNow(key, amount, limit, periodSeconds, always);
  }

  acquireNow(key: string, limit: number, ttlSeconds: number): LeaseOutcome | undefined {
    if (this.tryRedis()) return undefined;
    this.localCounts.inc();
    return this.local.acquireNow(key, limit, ttlSeconds);
  }

  async acquire(key: string, limit: number, ttlSeconds: number): Promise<LeaseOutcome> {
    if (this.tryRedis()) {
      const lease = randomUUID();
      try {
        const [acquired, held] = await this.redis.gatehouseAcquire(this.keyPrefix + key, limit, ttlSeconds * 1000, lease);
        this.switchTo('redis');
        return { acquired: acquired === 1, count: held, limit, lease: acquired === 1 ? lease : '' };
      } catch (err) {
        if (this.state === 'local') this.failedUntil = Date.now() + this.retryAfterMs;
        this.switchTo('local', (err as Error).message);
      }
    }
    this.localCounts.inc();
    return this.local.acquireNow(key, limit, ttlSeconds);
  }

  /** A lease taken in Redis is removed there (or expires, if Redis cannot be reached now); a local one locally. */
  release(key: string, lease: string): void {
    if (lease === 'local') {
      this.local.release(key, lease);
      return;
    }
    if (this.redis.status !== 'ready') return;
    this.redis.zrem(this.keyPrefix + key, lease).catch(() => undefined);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.settleFirst();
    this.redis.disconnect();
  }
}

/** `host:port` of a redis:// URL (6379 when it names none): what a log may show of it. */
export function addressOf(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || '6379'}`;
  } catch {
    return '(GATEHOUSE_REDIS_URL)';
  }
}
