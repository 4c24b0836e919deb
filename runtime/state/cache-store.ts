// The gateway's cache, behind the cache steps (pipeline/cache-steps.ts): responses and values kept for a while. In this
// process's memory by default (MemoryCacheStore, least recently used out first, bounded by bytes), in the fleet's
// Redis when GATEHOUSE_REDIS_URL is set (redis-cache-store.ts). A store never fails a request: a store that cannot
// answer is a miss, and a write it cannot make is dropped.
//
// Keys are what the cache steps made of the request (the API's id first, so that one API never reads another's
// entries), hashed: a key is 43 characters whatever a configuration or a request puts into it.

import { createHash } from 'node:crypto';

export interface CacheStore {
  /** The value stored under `key`, or null: never stored, expired, evicted, or the store cannot answer. */
  get(key: string): Promise<Uint8Array | null>;
  /** get() without waiting, when the store answers without I/O (the in-memory store). */
  getNow?(key: string): Uint8Array | null;
  /** Stores `value` for `ttlSeconds`. Never rejects: a value the store cannot keep is not kept. */
  set(key: string, value: Uint8Array, ttlSeconds: number): Promise<void>;
  /** Removes `key`. Never rejects. */
  delete(key: string): Promise<void>;
  close?(): Promise<void>;
}

export interface CacheLimits {
  /** The largest value stored (a response: its body, status and headers). Default 1 MiB. */
  maxEntryBytes: number;
  /** What the in-memory store holds at most, every API together. Default 64 MiB. */
  maxTotalBytes: number;
  /** The longest time an entry is kept, whatever a configuration asks. Default a day. */
  maxTtlSeconds: number;
}

export const DEFAULT_CACHE_LIMITS: CacheLimits = { maxEntryBytes: 1024 * 1024, maxTotalBytes: 64 * 1024 * 1024, maxTtlSeconds: 86_400 };

/** The store's key for what the cache steps made of a request: its parts, NUL-separated, hashed (SHA-256, base64url). */
export function cacheKey(parts: readonly string[]): string {
  return createHash('sha256').update(parts.join('\u0000')).digest('base64url');
}

interface MemoryEntry {
  value: Uint8Array;
  expiresAt: number;
  /** What it takes of the budget: the value, the key and the map's overhead. */
  bytes: number;
}

/** What an entry costs besides its value: the key (43 UTF-16 characters), the entry object and the map's slot. */
const ENTRY_OVERHEAD = 200;

/**
 * A bounded in-memory cache. A Map keeps insertion order: reading an entry moves it to the end, so the first entry is
 * the least recently used, and entries are dropped from the front until the total fits.
 */
export class MemoryCacheStore implements CacheStore {
  private readonly entries = new Map<string, MemoryEntry>();
  private total = 0;

  constructor(
    private readonly limits: CacheLimits = DEFAULT_CACHE_LIMITS,
    private readonly now: () => number = Date.now,
  ) {}

  /** Bytes held, for metrics and tests. */
  get bytes(): number {
    return this.total;
  }

  get size(): number {
    return this.entries.size;
  }

  getNow(key: string): Uint8Array | null {
    const entry = this.entries.get(key);
    if (entry === undefined) return null;
    this.entries.delete(key);
    if (entry.expiresAt <= this.now()) {
      this.total -= entry.bytes;
      return null;
    }
    this.entries.set(key, entry);
    return entry.value;
  }

  get(key: string): Promise<Uint8Array | null> {
    return Promise.resolve(this.getNow(key));
  }

  setNow(key: string, value: Uint8Array, ttlSeconds: number): void {
    this.deleteNow(key);
    const bytes = value.byteLength + ENTRY_OVERHEAD;
    if (value.byteLength > this.limits.maxEntryBytes || bytes > this.limits.maxTotalBytes || !(ttlSeconds > 0)) return;
    const ttl = Math.min(ttlSeconds, this.limits.maxTtlSeconds);
    this.entries.set(key, { value, expiresAt: this.now() + ttl * 1000, bytes });
    this.total += bytes;
    for (const [oldest, entry] of this.entries) {
      if (this.total <= this.limits.maxTotalBytes) break;
      this.entries.delete(oldest);
      this.total -= entry.bytes;
    }
  }

  set(key: string, value: Uint8Array, ttlSeconds: number): Promise<void> {
    this.setNow(key, value, ttlSeconds);
    return Promise.resolve();
  }

  deleteNow(key: string): void {
    const entry = this.entries.get(key);
    if (entry === undefined) return;
    this.entries.delete(key);
    this.total -= entry.bytes;
  }

  delete(key: string): Promise<void> {
    this.deleteNow(key);
    return Promise.resolve();
  }
}
