// The gateway's effect runner: what policies ask for through `effect` (docs/policy-abi.md, section 5).

import { request as undiciRequest } from 'undici';
import { EffectKind } from '../policy-host/abi.ts';
import type { EffectContext, EffectRunner } from '../policy-host/binding.ts';
import { CallAbort } from '../policy-host/errors.ts';
import type { CounterStore } from '../state/counter-store.ts';
import { collectBody } from '../proxy/body.ts';

const MAX_HTTP_RESPONSE_BYTES = 1024 * 1024;
const MAX_HTTP_TIMEOUT_MS = 30_000;
const COUNTER_CACHE_SIZE = 4096;

export interface GatewayEffectsOptions {
  counters: CounterStore;
}

export class GatewayEffects implements EffectRunner {
  constructor(private readonly options: GatewayEffectsOptions) {}

  async perform(kind: number, request: string, context: EffectContext): Promise<string> {
    const parsed = parseObject(request, kind);
    if (kind === EffectKind.COUNTER) {
      const { key, amount, limit, periodSeconds } = counterRequest(parsed, context);
      return JSON.stringify(await this.options.counters.consume(key, amount, limit, periodSeconds));
    }
    if (kind === EffectKind.HTTP) return JSON.stringify(await this.http(parsed, context));
    throw new CallAbort('bad-argument', `unknown effect kind ${kind}`);
  }

  /** A counter the store can update without I/O (the in-memory one) completes inside the handler's call. */
  performNow(kind: number, request: string, context: EffectContext): string | undefined {
    const store = this.options.counters;
    if (kind !== EffectKind.COUNTER || !store.consumeNow) return undefined;
    const { key, amount, limit, periodSeconds } = this.parsedCounter(request, context);
    const o = store.consumeNow(key, amount, limit, periodSeconds);
    if (o === undefined) return undefined;
    // The shape JSON.stringify would give, built directly: this runs on every rate-limited request.
    return `{"allowed":${o.allowed},"count":${o.count},"limit":${o.limit},"remaining":${o.remaining},"resetSeconds":${o.resetSeconds}}`;
  }

  /**
   * Counter requests, parsed and checked, by binding and request text: a policy sends the same few requests again and
   * again (one per client or key), so most are parsed once. Each binding keeps at most COUNTER_CACHE_SIZE.
   */
  private readonly counterRequests = new WeakMap<EffectContext, Map<string, CounterRequest>>();

  private parsedCounter(request: string, context: EffectContext): CounterRequest {
    let cache = this.counterRequests.get(context);
    if (!cache) {
      cache = new Map();
      this.counterRequests.set(context, cache);
    }
    let parsed = cache.get(request);
    if (!parsed) {
      parsed = counterRequest(parseObject(request, EffectKind.COUNTER), context);
      if (cache.size >= COUNTER_CACHE_SIZE) cache.clear();
      cache.set(request, parsed);
    }
    return parsed;
  }

  private async http(req: Record<string, unknown>, context: EffectContext) {
    const allowed = context.grants.http?.allowedHosts ?? [];
    let url: URL;
    try {
      url = new URL(String(req.url));
    } catch {
      throw badRequest('HTTP', `url ${JSON.stringify(req.url)} is not an absolute URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw badRequest('HTTP', 'url must be http or https');
    if (!hostAllowed(url.hostname, allowed)) {
      throw new CallAbort(
        'capability',
        `policy ${context.policy} may not call ${url.hostname} (allowed hosts: ${allowed.join(', ')})`,
      );
    }
    const method = typeof req.method === 'string' ? req.method.toUpperCase() : 'GET';
    const headers = isStringRecord(req.headers) ? req.headers : {};
    const timeoutMs = Math.min(isPositiveInt(req.timeoutMs) ? req.timeoutMs : 5000, MAX_HTTP_TIMEOUT_MS);
    try {
      const res = await undiciRequest(url, {
        method: method as 'GET',
        headers,
        body: typeof req.body === 'string' ? req.body : null,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        signal: AbortSignal.timeout(timeoutMs),
      });
      const body = await collectBody(res.body, MAX_HTTP_RESPONSE_BYTES);
      if (body === null) {
        res.body.destroy();
        return { error: `response larger than ${MAX_HTTP_RESPONSE_BYTES} bytes` };
      }
      const outHeaders: Record<string, string> = {};
      for (const [k, v] of Object.entries(res.headers)) {
        if (v !== undefined) outHeaders[k] = Array.isArray(v) ? v.join(', ') : v;
      }
      return { status: res.statusCode, headers: outHeaders, body: new TextDecoder().decode(body) };
    } catch (err) {
      return { error: (err as Error).message };
    }
  }
}

/** `example.com` matches itself only; `*.example.com` matches its subdomains. */
export function hostAllowed(host: string, allowed: readonly string[]): boolean {
  const h = host.toLowerCase();
  return allowed.some((pattern) => {
    const p = pattern.toLowerCase();
    return p.startsWith('*.') ? h.endsWith(p.slice(1)) && h.length > p.length - 1 : h === p;
  });
}

interface CounterRequest {
  /** Namespaced by the binding. */
  key: string;
  amount: number;
  limit: number;
  periodSeconds: number;
}

function counterRequest(req: Record<string, unknown>, context: EffectContext): CounterRequest {
  const { key, limit, periodSeconds, amount = 1 } = req;
  if (typeof key !== 'string' || key === '') throw badRequest('COUNTER', 'key must be a non-empty string');
  if (!isPositiveInt(limit)) throw badRequest('COUNTER', 'limit must be a positive integer');
  if (!isPositiveInt(periodSeconds)) throw badRequest('COUNTER', 'periodSeconds must be a positive integer');
  if (!isPositiveInt(amount)) throw badRequest('COUNTER', 'amount must be a positive integer');
  return { key: `${context.binding}:${key}`, amount, limit, periodSeconds };
}

function parseObject(text: string, kind: number): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new CallAbort('bad-argument', `effect ${kind}: request is not JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new CallAbort('bad-argument', `effect ${kind}: request must be a JSON object`);
  }
  return value as Record<string, unknown>;
}

function badRequest(kind: string, what: string): CallAbort {
  return new CallAbort('bad-argument', `${kind} effect: ${what}`);
}

function isPositiveInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v > 0;
}

function isStringRecord(v: unknown): v is Record<string, string> {
  return typeof v === 'object' && v !== null && Object.values(v).every((x) => typeof x === 'string');
}
