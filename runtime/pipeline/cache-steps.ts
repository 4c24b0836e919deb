// The cache steps, run by the host itself like set-variable (steps.ts): cache-lookup and cache-store keep whole
// responses, cache-lookup-value, cache-store-value and cache-remove-value keep values for expressions and modules.
// They are the gateway's and not modules because what they keep is the gateway's: responses with their bodies, in a
// store (state/cache-store.ts) that the fleet may share through Redis. A store that cannot answer is a miss.
//
// Every key starts with the API's id: a configuration (or a request) of one API cannot read, overwrite or remove the
// entries of another, whatever key it writes. Keys are hashed, so their size is fixed.

import type { Phase } from '../../abi/index.ts';
import type { Expression } from '../expressions/cel.ts';
import { PolicyFailure } from '../policy-host/errors.ts';
import type { BodySink, Exchange, HeaderMap, ResponseBody, ResponseState } from '../policy-host/exchange.ts';
import { cacheKey, type CacheLimits, type CacheStore } from '../state/cache-store.ts';
import { concatChunks } from './body.ts';
import { BackendError, type ChainStep } from './chain.ts';
import { setVariable, textOf } from './steps.ts';

/** cache-lookup's settings (the document's `cache-lookup` entry, names lower-cased). */
export interface ResponseCacheSettings {
  /** Request headers whose values are part of the key (lower case). */
  varyByHeaders: readonly string[];
  /** Query parameters that are part of the key; null: all of them (sorted, so their order does not matter). */
  varyByQueryParameters: readonly string[] | null;
  /** Requests with an Authorization header are served from (and stored in) the cache, keyed by that header. */
  allowPrivateResponseCaching: boolean;
  /** What responses this cache answers (and stores) tell caches downstream: nothing, `private` or `public` with max-age. */
  downstreamCachingType: 'none' | 'private' | 'public';
  mustRevalidate: boolean;
}

/** What cache-lookup decided for a request, for the cache-store of its outbound phase. */
interface Lookup {
  key: string;
  settings: ResponseCacheSettings;
  /** The request carries Authorization (and private caching is allowed). */
  authorized: boolean;
  /**
   * The request's headers as the lookup saw them, each as one text: what a stored variant is compared with, whatever
   * the policies between the lookup and the store change.
   */
  requestHeaders: Map<string, string>;
}

/** cache-lookup leaves its key here for cache-store: the steps are separate entries, possibly of separate scopes. */
const lookups = new WeakMap<Exchange, Lookup>();

/** Statuses stored by default: those RFC 9111 lets a cache store without explicit freshness, that APIs cache. */
export const DEFAULT_CACHEABLE_STATUSES: readonly number[] = [200, 203, 204, 300, 301, 404, 410];

/** Response headers never stored: they belong to one connection, or to one caller (Set-Cookie is not cached at all). */
const NOT_STORED = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authenticate', 'content-length', 'age', 'date']);

/** The directives of a Cache-Control value, by lower-case name (value "" when it has none). */
export function cacheControl(values: readonly string[] | undefined): Map<string, string> {
  const directives = new Map<string, string>();
  for (const value of values ?? []) {
    for (const part of value.split(',')) {
      const eq = part.indexOf('=');
      const name = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase();
      if (name !== '') directives.set(name, eq < 0 ? '' : part.slice(eq + 1).trim().replace(/^"|"$/g, ''));
    }
  }
  return directives;
}

/** A delta-seconds directive's value, or null when absent or not a number. */
function seconds(directives: Map<string, string>, name: string): number | null {
  const raw = directives.get(name);
  if (raw === undefined || !/^\d{1,10}$/.test(raw)) return null;
  return Number(raw);
}

/** The request's query, parameters as the key needs them: the ones asked for (or all), sorted, each with its values. */
function queryPart(query: string, names: readonly string[] | null): string {
  if (query === '') return '';
  const params = new URLSearchParams(query);
  const wanted = names === null ? [...new Set(params.keys())].sort() : names;
  return wanted.map((n) => `${n}=${params.getAll(n).join('\u0001')}`).join('&');
}

/** The key of a request's response: API, operation, path, query and the headers it varies by. */
function responseKey(exchange: Exchange, settings: ResponseCacheSettings, authorized: boolean): string {
  const req = exchange.request;
  const parts = ['response', exchange.api, exchange.operation, req.path, queryPart(req.query, settings.varyByQueryParameters)];
  for (const name of settings.varyByHeaders) parts.push(`${name}:${(req.headers.get(name) ?? []).join('\u0001')}`);
  // A response to an authorized caller is that caller's: its key always has the credentials, varied by or not.
  if (authorized) parts.push(`authorization:${(req.headers.get('authorization') ?? []).join('\u0001')}`);
  return cacheKey(parts);
}

// A stored response: 4 bytes (big-endian) giving the length of a JSON head {s: status, h: headers, t: stored at (ms),
// v: the request's headers it varies by, [name, value]}, the head, then the body.

/** A request header's values as one text, to compare variants by. */
function headerText(headers: HeaderMap, name: string): string {
  return (headers.get(name) ?? []).join(', ');
}

function headerTexts(headers: HeaderMap): Map<string, string> {
  const texts = new Map<string, string>();
  for (const name of headers.keys()) texts.set(name, headerText(headers, name));
  return texts;
}

/**
 * The request headers the response varies by, with the values this request had: those its `Vary` names, and
 * `accept-encoding` when its body is encoded (a backend that compresses without saying `Vary: Accept-Encoding` would
 * otherwise have a gzip entry served to a client that never offered gzip). A lookup serves the entry only to a request
 * with the same values (RFC 9111, 4.1).
 */
function variation(request: Map<string, string>, response: HeaderMap): [string, string][] {
  const names = new Set<string>();
  for (const value of response.get('vary') ?? []) for (const field of value.split(',')) if (field.trim() !== '') names.add(field.trim().toLowerCase());
  const coding = headerText(response, 'content-encoding').trim().toLowerCase();
  if (coding !== '' && coding !== 'identity') names.add('accept-encoding');
  return [...names].map((name) => [name, request.get(name) ?? '']);
}

function encodeResponse(response: ResponseState, body: Uint8Array, storedAt: number, varies: [string, string][]): Uint8Array {
  const headers: [string, string[]][] = [];
  for (const [name, values] of response.headers) if (!NOT_STORED.has(name)) headers.push([name, values]);
  const head = new TextEncoder().encode(JSON.stringify({ s: response.status, h: headers, t: storedAt, v: varies }));
  const out = new Uint8Array(4 + head.byteLength + body.byteLength);
  new DataView(out.buffer).setUint32(0, head.byteLength);
  out.set(head, 4);
  out.set(body, 4 + head.byteLength);
  return out;
}

/** The response stored in `bytes`, or null when they are not one (a store is not trusted to hold what was written). */
function decodeResponse(bytes: Uint8Array): { status: number; headers: HeaderMap; body: Uint8Array; storedAt: number; varies: [string, string][] } | null {
  if (bytes.byteLength < 4) return null;
  const length = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0);
  if (4 + length > bytes.byteLength) return null;
  try {
    const head = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + length))) as { s: unknown; h: unknown; t: unknown; v?: unknown };
    if (!Number.isInteger(head.s) || (head.s as number) < 200 || (head.s as number) > 599 || !Array.isArray(head.h) || typeof head.t !== 'number') return null;
    // Entries written before variants were kept have none.
    const varies = head.v ?? [];
    if (!Array.isArray(varies) || !varies.every((e) => Array.isArray(e) && e.length === 2 && typeof e[0] === 'string' && typeof e[1] === 'string')) return null;
    const headers: HeaderMap = new Map();
    for (const entry of head.h as unknown[]) {
      if (!Array.isArray(entry) || typeof entry[0] !== 'string' || !Array.isArray(entry[1]) || !entry[1].every((v) => typeof v === 'string')) return null;
      if (!NOT_STORED.has(entry[0])) headers.set(entry[0], entry[1] as string[]);
    }
    return { status: head.s as number, headers, body: bytes.slice(4 + length), storedAt: head.t, varies: varies as [string, string][] };
  } catch {
    return null;
  }
}

/** Sets Cache-Control for caches downstream, as the lookup's settings ask. */
function tellDownstream(headers: HeaderMap, settings: ResponseCacheSettings, maxAge: number): void {
  if (settings.downstreamCachingType === 'none') return;
  const directives = [settings.downstreamCachingType, `max-age=${Math.max(0, Math.floor(maxAge))}`];
  if (settings.mustRevalidate) directives.push('must-revalidate');
  headers.set('cache-control', [directives.join(', ')]);
}

/** Runs `run` and hands back a promise only when it waits: a step that completes at once stays synchronous. */
function settle<T>(value: T | Promise<T>, then: (value: T) => void): Promise<void> | undefined {
  if (value instanceof Promise) return value.then(then);
  then(value);
  return undefined;
}

function read(store: CacheStore, key: string): Uint8Array | null | Promise<Uint8Array | null> {
  return store.getNow ? store.getNow(key) : store.get(key);
}

/** What every cache step has: its entry's id and fail-open flag, the store and its limits, the chain's clock. */
export interface CacheStepBase {
  id: string;
  failOpen: boolean;
  store: CacheStore;
  limits: CacheLimits;
  wallMs: () => number;
}

abstract class CacheStep implements ChainStep {
  readonly nested: readonly ChainStep[] = [];
  readonly id: string;
  readonly failOpen: boolean;
  readonly wallMs: () => number;
  protected readonly store: CacheStore;
  protected readonly limits: CacheLimits;

  constructor(base: CacheStepBase) {
    ({ id: this.id, failOpen: this.failOpen, wallMs: this.wallMs, store: this.store, limits: this.limits } = base);
  }

  abstract runNow(phase: Phase, exchange: Exchange): Promise<void> | undefined;
}

/**
 * cache-lookup (inbound): answers a GET or HEAD from the cache when a fresh response is stored under the request's
 * key, and otherwise leaves the key for cache-store. A request that says `no-store` is neither served nor stored;
 * `no-cache` (or `max-age=0`, or `Pragma: no-cache`) goes to the backend, and its response is stored.
 */
export class CacheLookup extends CacheStep {
  constructor(base: CacheStepBase, private readonly settings: ResponseCacheSettings) {
    super(base);
  }

  runNow(_phase: Phase, exchange: Exchange): Promise<void> | undefined {
    const req = exchange.request;
    if (req.method !== 'GET' && req.method !== 'HEAD') return undefined;
    const authorized = req.headers.has('authorization');
    if (authorized && !this.settings.allowPrivateResponseCaching) return undefined;
    const directives = cacheControl(req.headers.get('cache-control'));
    if (directives.has('no-store')) return undefined;
    const key = responseKey(exchange, this.settings, authorized);
    lookups.set(exchange, { key, settings: this.settings, authorized, requestHeaders: headerTexts(req.headers) });
    const revalidate = directives.has('no-cache') || seconds(directives, 'max-age') === 0 || (req.headers.get('pragma') ?? []).some((v) => /no-cache/i.test(v));
    if (revalidate) return undefined;
    return settle(read(this.store, key), (bytes) => {
      const found = bytes === null ? null : decodeResponse(bytes);
      // Another variant than this request's: the backend answers, and cache-store keeps its answer instead.
      if (found === null || found.varies.some(([name, value]) => headerText(req.headers, name) !== value)) return;
      const age = Math.max(0, Math.floor((Date.now() - found.storedAt) / 1000));
      found.headers.set('age', [String(age)]);
      const stored = cacheControl(found.headers.get('cache-control'));
      const maxAge = seconds(stored, 's-maxage') ?? seconds(stored, 'max-age');
      if (maxAge !== null) tellDownstream(found.headers, this.settings, maxAge - age);
      exchange.response = { status: found.status, headers: found.headers, body: req.method === 'HEAD' ? new Uint8Array(0) : found.body };
      exchange.responded = true;
      lookups.delete(exchange);
    });
  }
}

export interface ResponseStoreSettings {
  /** Seconds an entry is fresh, unless the response's own max-age (or s-maxage) is shorter. */
  durationSeconds: number;
  statuses: readonly number[];
}

/**
 * cache-store (outbound): stores the response under the key cache-lookup computed, when the request went through a
 * lookup and the response may be stored: a stored status, no `no-store`, `no-cache` or `private` (unless private
 * caching is allowed and the caller was authorized), no Set-Cookie, no `Vary: *`, a body within the store's entry
 * limit. The write does not hold the response.
 */
export class CacheStoreResponse extends CacheStep {
  constructor(
    base: CacheStepBase,
    private readonly settings: ResponseStoreSettings,
  ) {
    super(base);
  }

  runNow(_phase: Phase, exchange: Exchange): Promise<void> | undefined {
    const lookup = lookups.get(exchange);
    if (lookup === undefined || exchange.request.method !== 'GET') return undefined;
    lookups.delete(exchange);
    const response = exchange.response;
    if (!this.settings.statuses.includes(response.status) || response.headers.has('set-cookie')) return undefined;
    if ((response.headers.get('vary') ?? []).some((v) => v.split(',').some((f) => f.trim() === '*'))) return undefined;
    const directives = cacheControl(response.headers.get('cache-control'));
    if (directives.has('no-store') || directives.has('no-cache')) return undefined;
    if (directives.has('private') && !lookup.authorized) return undefined;
    const freshFor = seconds(directives, 's-maxage') ?? seconds(directives, 'max-age');
    const ttl = Math.min(this.settings.durationSeconds, freshFor ?? Infinity, this.limits.maxTtlSeconds);
    if (!(ttl > 0)) return undefined;
    tellDownstream(response.headers, lookup.settings, ttl);
    const varies = variation(lookup.requestHeaders, response.headers);
    if (response.body !== null && !response.stream) {
      this.write(lookup.key, response, response.body, ttl, varies);
      return undefined;
    }
    const stream = response.stream;
    const length = Number((response.headers.get('content-length') ?? [])[0] ?? NaN);
    if (!stream || length > this.limits.maxEntryBytes) return undefined;
    // Read up to the entry limit: a body that ends within it is stored; a longer one goes on to the client from where
    // the reading stopped, with what was read in front.
    return readUpTo(stream, this.limits.maxEntryBytes).then((read) => {
      if (read.rest !== null) {
        response.stream = read.rest;
        return;
      }
      response.body = read.body;
      response.stream = null;
      response.headers.delete('content-length');
      this.write(lookup.key, response, read.body, ttl, varies);
    });
  }

  private write(key: string, response: ResponseState, body: Uint8Array, ttl: number, varies: [string, string][]): void {
    if (body.byteLength > this.limits.maxEntryBytes) return;
    void this.store.set(key, encodeResponse(response, body, Date.now(), varies), ttl);
  }
}

/**
 * Reads `stream` until it ends or passes `maxBytes`: the whole body, or the body to send instead of `stream` (what was
 * read, then the rest). A backend that fails while it is read is a backend failure (on-error).
 */
async function readUpTo(stream: ResponseBody, maxBytes: number): Promise<{ body: Uint8Array; rest: null } | { body: null; rest: ResponseBody }> {
  const iterator = stream[Symbol.asyncIterator]();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const next = await iterator.next();
      if (next.done) break;
      chunks.push(next.value);
      size += next.value.byteLength;
      if (size > maxBytes) return { body: null, rest: new ReadAhead(chunks, iterator, stream) };
    }
  } catch (err) {
    throw new BackendError('reset', 502, `backend response body cut short: ${(err as Error)?.message ?? String(err)}`);
  }
  return { body: concatChunks(chunks, size), rest: null };
}

/** A backend body of which the first chunks were read already: those, then the rest as it comes. */
class ReadAhead implements ResponseBody {
  constructor(
    private readonly head: Uint8Array[],
    private readonly rest: AsyncIterator<Uint8Array>,
    private readonly source: ResponseBody,
  ) {}

  get bytesReceived(): number {
    return this.source.bytesReceived;
  }

  get trailers(): HeaderMap | null {
    return this.source.trailers;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    for (let chunk = this.head.shift(); chunk; chunk = this.head.shift()) yield chunk;
    for (;;) {
      const next = await this.rest.next();
      if (next.done) return;
      yield next.value;
    }
  }

  /** Writes the body into `destination` with backpressure, and ends it; a failure or a client gone destroys both. */
  sendTo(destination: BodySink): void {
    let closed = false;
    let drained: (() => void) | null = null;
    destination.once('close', () => {
      closed = true;
      drained?.();
      this.source.destroy();
    });
    destination.on('drain', () => drained?.());
    const pump = async () => {
      for await (const chunk of this) {
        if (closed || destination.destroyed) return;
        if (!destination.write(chunk)) await new Promise<void>((resolve) => (drained = resolve));
        drained = null;
      }
      destination.end();
    };
    pump().catch(() => {
      this.source.destroy();
      destination.destroy();
    });
  }

  destroy(error?: Error): void {
    this.source.destroy(error);
  }
}

/** The key of a value: the API's, whatever the configuration wrote. */
function valueKey(id: string, exchange: Exchange, key: Expression | string): string {
  return cacheKey(['value', exchange.api, textOf(id, key, exchange)]);
}

/** cache-lookup-value: the value stored under a key into a variable, or the default (or nothing) when there is none. */
export class CacheLookupValue extends CacheStep {
  constructor(
    base: CacheStepBase,
    private readonly key: Expression | string,
    private readonly variableName: string,
    private readonly defaultValue: Expression | string | null,
  ) {
    super(base);
  }

  runNow(_phase: Phase, exchange: Exchange): Promise<void> | undefined {
    const key = valueKey(this.id, exchange, this.key);
    return settle(read(this.store, key), (bytes) => {
      if (bytes !== null) setVariable(this.id, exchange, this.variableName, new TextDecoder().decode(bytes));
      else if (this.defaultValue !== null) setVariable(this.id, exchange, this.variableName, textOf(this.id, this.defaultValue, exchange));
    });
  }
}

/** cache-store-value: a value (text or an expression's) under a key, for a duration. */
export class CacheStoreValue extends CacheStep {
  constructor(
    base: CacheStepBase,
    private readonly key: Expression | string,
    private readonly value: Expression | string,
    private readonly durationSeconds: number,
  ) {
    super(base);
  }

  runNow(_phase: Phase, exchange: Exchange): Promise<void> | undefined {
    const key = valueKey(this.id, exchange, this.key);
    const value = new TextEncoder().encode(textOf(this.id, this.value, exchange));
    if (value.byteLength > this.limits.maxEntryBytes) {
      throw new PolicyFailure(this.id, 'output-cap', `the value is ${value.byteLength} bytes; the cache keeps values of at most ${this.limits.maxEntryBytes}`);
    }
    // Awaited, so that a lookup later in the same request finds it (a store that cannot keep it drops it).
    return this.store.set(key, value, this.durationSeconds);
  }
}

/** cache-remove-value: removes the value under a key. */
export class CacheRemoveValue extends CacheStep {
  constructor(
    base: CacheStepBase,
    private readonly key: Expression | string,
  ) {
    super(base);
  }

  runNow(_phase: Phase, exchange: Exchange): Promise<void> | undefined {
    return this.store.delete(valueKey(this.id, exchange, this.key));
  }
}
