// The signing keys of OpenID Connect issuers, for the KEYS effect (abi/policy-abi.md, section 5): validate-jwt names a
// discovery document (`https://issuer/.well-known/openid-configuration`), and the gateway, not the module, fetches it,
// follows its `jwks_uri`, and keeps the keys. Key rotation needs no configuration change:
//   - a token whose `kid` is not among the keys makes the gateway fetch them again, at most once per `minRefreshMs`
//     for each issuer, however many such tokens arrive (a flood of made-up kids costs the issuer one fetch);
//   - the keys expire after the JWKS response's Cache-Control max-age, kept between `minRefreshMs` and `maxTtlMs`
//     (an hour without one), and are fetched again on the next use after that;
//   - a fetch that fails keeps the keys already held (a rotation at the issuer is not an outage at the gateway), and
//     is retried at most once per `minRefreshMs`.
// Fetches are single-flight per issuer, with a timeout and a size cap on each document.

import { EgressRefused } from '../policy-host/egress.ts';

export interface FetchedDocument {
  status: number;
  /** Cache-Control of the response, if any. */
  cacheControl: string | null;
  body: string;
}

/** Fetches `url` (GET), reading at most `maxBytes` of its body; rejects on a network failure, a timeout or a body over the cap. */
export type FetchDocument = (url: URL, maxBytes: number, sameOrigin: boolean) => Promise<FetchedDocument>;

export interface KeySetsOptions {
  fetch: FetchDocument;
  /** The least time between two fetches of one issuer's keys (default 30 s). */
  minRefreshMs?: number;
  /** The longest time keys are used without a fetch (default a day). */
  maxTtlMs?: number;
  now?: () => number;
}

/** Bytes of a discovery document read at most. */
export const MAX_DISCOVERY_BYTES = 64 * 1024;
/** Bytes of a JWKS read at most. */
export const MAX_JWKS_BYTES = 256 * 1024;
/** Keys of one JWKS kept at most. */
export const MAX_KEYS = 64;
const DEFAULT_TTL_MS = 3_600_000;

interface KeySet {
  /** The KEYS result: `{"keys":[...]}`, or null until the first fetch succeeded. */
  result: string | null;
  kids: Set<string>;
  expiresAt: number;
  /** When the last fetch started: the next waits until minRefreshMs after it. */
  lastAttempt: number;
  lastError: string | null;
  inFlight: Promise<void> | null;
}

export class KeySets {
  private readonly sets = new Map<string, KeySet>();
  private readonly minRefreshMs: number;
  private readonly maxTtlMs: number;
  private readonly now: () => number;
  /** Fetches made, for tests and metrics. */
  fetches = 0;

  constructor(private readonly options: KeySetsOptions) {
    this.minRefreshMs = options.minRefreshMs ?? 30_000;
    this.maxTtlMs = Math.max(options.maxTtlMs ?? 86_400_000, this.minRefreshMs);
    this.now = options.now ?? Date.now;
  }

  /** The result at once when no fetch is due (keys held and fresh, the kid known or a fetch made too recently); else undefined. */
  keysNow(url: string, kid: string): string | undefined {
    const set = this.sets.get(url);
    if (set === undefined || set.inFlight !== null || this.due(set, kid)) return undefined;
    return resultOf(set);
  }

  /** The result, after a fetch when one is due. */
  async keys(url: string, kid: string): Promise<string> {
    let set = this.sets.get(url);
    if (set === undefined) {
      set = { result: null, kids: new Set(), expiresAt: 0, lastAttempt: -Infinity, lastError: null, inFlight: null };
      this.sets.set(url, set);
    }
    if (set.inFlight === null && this.due(set, kid)) set.inFlight = this.refresh(url, set).finally(() => (set.inFlight = null));
    if (set.inFlight !== null) await set.inFlight;
    return resultOf(set);
  }

  private due(set: KeySet, kid: string): boolean {
    const now = this.now();
    if (now - set.lastAttempt < this.minRefreshMs) return false;
    return set.result === null || now >= set.expiresAt || (kid !== '' && !set.kids.has(kid));
  }

  private async refresh(url: string, set: KeySet): Promise<void> {
    set.lastAttempt = this.now();
    this.fetches++;
    try {
      const discoveryUrl = new URL(url);
      const discovery = await this.options.fetch(discoveryUrl, MAX_DISCOVERY_BYTES, true);
      if (discovery.status !== 200) throw new Error(`the discovery document ${url} answered ${discovery.status}`);
      const jwksUri = (parseObject(discovery.body, `the discovery document ${url}`) as { jwks_uri?: unknown }).jwks_uri;
      let jwksUrl: URL;
      try {
        jwksUrl = new URL(String(jwksUri));
      } catch {
        throw new Error(`the discovery document ${url} has no jwks_uri URL`);
      }
      if (jwksUrl.protocol !== 'https:' && jwksUrl.protocol !== 'http:') throw new Error(`the jwks_uri of ${url} is not an http(s) URL`);
      // The discovery document's own origin is what the operator named; any other is reached only on addresses the
      // egress checks allow (never the gateway itself, loopback or link-local).
      const jwks = await this.options.fetch(jwksUrl, MAX_JWKS_BYTES, jwksUrl.origin === discoveryUrl.origin);
      if (jwks.status !== 200) throw new Error(`the JWKS ${jwksUrl.href} answered ${jwks.status}`);
      const keys = (parseObject(jwks.body, `the JWKS ${jwksUrl.href}`) as { keys?: unknown }).keys;
      if (!Array.isArray(keys)) throw new Error(`the JWKS ${jwksUrl.href} has no "keys" list`);
      const kept = keys.filter((k): k is Record<string, unknown> => typeof k === 'object' && k !== null && !Array.isArray(k)).slice(0, MAX_KEYS);
      set.result = JSON.stringify({ keys: kept });
      set.kids = new Set(kept.map((k) => k.kid).filter((kid): kid is string => typeof kid === 'string'));
      set.expiresAt = this.now() + this.ttlOf(jwks.cacheControl);
      set.lastError = null;
    } catch (err) {
      set.lastError = err instanceof EgressRefused ? `refused: ${err.message}` : ((err as Error)?.message ?? String(err));
    }
  }

  /** How long keys are used: the JWKS response's max-age, between minRefreshMs and maxTtlMs; an hour without one. */
  private ttlOf(cacheControl: string | null): number {
    const match = /(?:^|,)\s*max-age\s*=\s*"?(\d{1,10})"?/i.exec(cacheControl ?? '');
    const noCache = /(?:^|,)\s*(no-cache|no-store)\b/i.test(cacheControl ?? '');
    const ttl = noCache ? 0 : match ? Number(match[1]) * 1000 : DEFAULT_TTL_MS;
    return Math.min(Math.max(ttl, this.minRefreshMs), this.maxTtlMs);
  }
}

function resultOf(set: KeySet): string {
  return set.result ?? JSON.stringify({ error: set.lastError ?? 'no keys fetched yet' });
}

function parseObject(text: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error(`${what} is not JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${what} is not a JSON object`);
  return value as Record<string, unknown>;
}
