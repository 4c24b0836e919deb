// The gateway's cache in the fleet's Redis (GATEHOUSE_REDIS_URL), shared by every gateway that names it: what one
// gateway stored, the others find. Redis expires the entries (PX); how much Redis holds in all is Redis's own setting
// (maxmemory with an eviction policy such as allkeys-lru, docs/operations.md).
//
// A Redis that is down, slow or refusing is a miss for the caller, never an error: reads answer null, writes are dropped.
// The change is logged once each way and counted; while Redis is away no command is sent (ioredis reconnects on its own).

import { Redis } from 'ioredis';
import type { Logger } from '../telemetry/logger.ts';
import type { Counter, MetricsRegistry } from '../telemetry/metrics.ts';
import { DEFAULT_CACHE_LIMITS, type CacheLimits, type CacheStore } from './cache-store.ts';
import { addressOf } from './redis-counter-store.ts';

export interface RedisCacheStoreOptions {
  /** `redis://[:password@]host:port[/db]` or `rediss://…` for TLS. */
  url: string;
  logger: Logger;
  metrics: MetricsRegistry;
  limits?: CacheLimits;
  /** A command slower than this is a miss (default 100 ms: a cache slower than that is not worth waiting for). */
  commandTimeoutMs?: number;
  /** Prefix of every key (default `gatehouse:cache:`). */
  keyPrefix?: string;
}

export class RedisCacheStore implements CacheStore {
  private readonly redis: Redis;
  private readonly logger: Logger;
  private readonly limits: CacheLimits;
  private readonly keyPrefix: string;
  private readonly address: string;
  private readonly failures: Counter;
  private state: 'up' | 'down' | null = null;
  private lastError: string | null = null;
  private closed = false;

  constructor(options: RedisCacheStoreOptions) {
    this.logger = options.logger.child({ component: 'cache' });
    this.limits = options.limits ?? DEFAULT_CACHE_LIMITS;
    this.keyPrefix = options.keyPrefix ?? 'gatehouse:cache:';
    this.address = addressOf(options.url);
    this.redis = new Redis(options.url, {
      // Fail at once while disconnected rather than queue: a request never waits for Redis to come back.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: options.commandTimeoutMs ?? 100,
      connectTimeout: 1000,
      retryStrategy: (attempt: number) => Math.min(100 * attempt, 2000),
    });
    this.redis.on('error', (err: Error) => {
      this.lastError = err.message;
    });
    this.redis.on('ready', () => this.switchTo('up'));
    this.redis.on('close', () => this.switchTo('down', this.lastError ?? 'the connection to Redis was closed'));
    this.failures = options.metrics.counter('gatehouse_cache_redis_failures_total', 'Cache reads and writes that Redis did not answer (each read a miss).');
    options.metrics.gauge('gatehouse_cache_redis_up', 'Whether the cache in Redis answers (1) or every lookup is a miss (0).', () => (this.state === 'up' ? 1 : 0));
  }

  private switchTo(state: 'up' | 'down', error?: string): void {
    if (state === this.state || this.closed) return;
    const before = this.state;
    this.state = state;
    if (state === 'down') {
      this.logger.warn('Redis unreachable: every cache lookup is a miss until it is back', {
        redis: this.address,
        error,
        action: `check that Redis runs and that this gateway reaches ${this.address} (GATEHOUSE_REDIS_URL); requests go to their backends meanwhile`,
      });
    } else {
      this.logger.info(before === null ? 'the cache is kept in Redis' : 'Redis is back: the cache is used again', { redis: this.address });
    }
  }

  private failed(err: unknown): void {
    this.failures.inc();
    this.lastError = (err as Error).message;
  }

  async get(key: string): Promise<Uint8Array | null> {
    if (this.redis.status !== 'ready') return null;
    try {
      const value = await this.redis.getBuffer(this.keyPrefix + key);
      // A value over the entry limit was not written by a gateway with these limits: not trusted.
      return value === null || value.byteLength > this.limits.maxEntryBytes ? null : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    } catch (err) {
      this.failed(err);
      return null;
    }
  }

  async set(key: string, value: Uint8Array, ttlSeconds: number): Promise<void> {
    if (this.redis.status !== 'ready' || value.byteLength > this.limits.maxEntryBytes || !(ttlSeconds > 0)) return;
    const ttlMs = Math.round(Math.min(ttlSeconds, this.limits.maxTtlSeconds) * 1000);
    try {
      await this.redis.set(this.keyPrefix + key, Buffer.from(value.buffer, value.byteOffset, value.byteLength), 'PX', Math.max(1, ttlMs));
    } catch (err) {
      this.failed(err);
    }
  }

  async delete(key: string): Promise<void> {
    if (this.redis.status !== 'ready') return;
    try {
      await this.redis.del(this.keyPrefix + key);
    } catch (err) {
      this.failed(err);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.redis.disconnect();
  }
}
