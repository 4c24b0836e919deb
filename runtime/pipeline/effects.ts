// The gateway's effect runner: what policies ask for through `effect` (abi/policy-abi.md, section 5).

import { Agent, request as undiciRequest, type Dispatcher } from 'undici';
import { EffectKind } from '../../abi/index.ts';
import type { EffectContext, EffectRunner, ExchangeUsage } from '../policy-host/binding.ts';
import type { Logger } from '../telemetry/logger.ts';
import { checkEgress, EgressRefused, portOf } from '../policy-host/egress.ts';
import { CallAbort } from '../policy-host/errors.ts';
import type { CounterStore } from '../state/counter-store.ts';
import { collectBody } from '../proxy/body.ts';
import { backendConnect } from '../platform/backend-sockets.ts';
import { EgressGuard } from '../platform/egress.ts';

const MAX_HTTP_RESPONSE_BYTES = 1024 * 1024;
const MAX_HTTP_TIMEOUT_MS = 30_000;
const COUNTER_CACHE_SIZE = 4096;
/** HTTP effects in flight at once in a gateway, unless told otherwise (GATEHOUSE_POLICY_HTTP_IN_FLIGHT). */
export const DEFAULT_HTTP_IN_FLIGHT = 64;
/** The variable that sets it, named in the error result a policy gets past the limit. */
export const HTTP_IN_FLIGHT_VARIABLE = 'GATEHOUSE_POLICY_HTTP_IN_FLIGHT';

export interface GatewayEffectsOptions {
  counters: CounterStore;
  /** Where failures that have no request to fail (metering at the end of an exchange) are reported. */
  logger?: Logger;
  /**
   * Checks the addresses of destinations a wildcard grant entry admitted, and knows the gateway's own listeners; the
   * forwarder shares it. Default: one of its own, which knows no listeners.
   */
  egress?: EgressGuard;
  /**
   * HTTP effects in flight at once, every policy of the gateway together (DEFAULT_HTTP_IN_FLIGHT). Past it an
   * effect's result is `{"error": ...}` at once: nothing waits in a queue, and what one request asks for cannot hold
   * the gateway's memory or connections.
   */
  maxHttpInFlight?: number;
}

export class GatewayEffects implements EffectRunner {
  /** Destinations the grant names exactly: connected to as named. */
  private readonly named: Dispatcher;
  /** Destinations a wildcard admitted: connected to only on addresses that pass the egress checks. */
  private readonly checked: Dispatcher;
  private readonly maxHttpInFlight: number;
  private httpInFlight = 0;

  constructor(private readonly options: GatewayEffectsOptions) {
    this.named = new Agent({ connect: backendConnect() });
    this.checked = (options.egress ?? new EgressGuard()).agent();
    this.maxHttpInFlight = options.maxHttpInFlight ?? DEFAULT_HTTP_IN_FLIGHT;
  }

  /** Closes the HTTP effects' connections (at shutdown); with `cut`, the effects in flight fail (the shutdown timeout has passed). */
  async close(cut = false): Promise<void> {
    await Promise.all([this.named, this.checked].map((d) => (cut ? d.destroy() : d.close())));
  }

  async perform(kind: number, request: string, context: EffectContext): Promise<string> {
    const parsed = parseObject(request, kind);
    if (kind === EffectKind.LEASE) {
      const { key, limit, ttlSeconds } = leaseRequest(parsed, context);
      return JSON.stringify(await this.options.counters.acquire(key, limit, ttlSeconds));
    }
    if (kind === EffectKind.METER) return meterResult(parsed);
    if (kind === EffectKind.COUNTER) {
      const { key, amount, limit, periodSeconds, always } = counterRequest(parsed, context);
      return JSON.stringify(await this.options.counters.consume(key, amount, limit, periodSeconds, always));
    }
    if (kind === EffectKind.HTTP) return JSON.stringify(await this.http(parsed, context));
    throw new CallAbort('bad-argument', `unknown effect kind ${kind}`);
  }

  /** A counter the store can update without I/O (the in-memory one) completes inside the handler's call. */
  performNow(kind: number, request: string, context: EffectContext): string | undefined {
    const store = this.options.counters;
    if (kind === EffectKind.METER) return meterResult(parseObject(request, kind));
    if (kind === EffectKind.LEASE) {
      const { key, limit, ttlSeconds } = leaseRequest(parseObject(request, kind), context);
      const lease = store.acquireNow?.(key, limit, ttlSeconds);
      return lease === undefined ? undefined : JSON.stringify(lease);
    }
    if (kind !== EffectKind.COUNTER || !store.consumeNow) return undefined;
    const { key, amount, limit, periodSeconds, always } = this.parsedCounter(request, context);
    const o = store.consumeNow(key, amount, limit, periodSeconds, always);
    if (o === undefined) return undefined;
    // The shape JSON.stringify would give, built directly: this runs on every rate-limited request.
    return `{"allowed":${o.allowed},"count":${o.count},"limit":${o.limit},"remaining":${o.remaining},"resetSeconds":${o.resetSeconds}}`;
  }

  /** A lease is released when the exchange ends; a meter adds the exchange's bytes to its counter then. */
  atEnd(kind: number, request: string, result: string, context: EffectContext): ((usage: ExchangeUsage) => void) | null {
    if (kind === EffectKind.LEASE) return this.releaseOf(request, result, context);
    if (kind === EffectKind.METER) {
      const { key, periodSeconds, unit } = meterRequest(parseObject(request, kind), context);
      return (usage) => {
        const bytes = usage.requestBytes + usage.responseBytes;
        const amount = unit === 'kilobytes' ? Math.ceil(bytes / 1024) : bytes;
        if (amount === 0) return;
        // Accounting after the fact: added whatever the limit (the bytes were sent); a failure to record is logged.
        this.options.counters.consume(key, amount, Number.MAX_SAFE_INTEGER, periodSeconds, true).catch((err: Error) => {
          this.options.logger?.warn('could not meter an exchange', { counter: key, error: err.message });
        });
      };
    }
    return null;
  }

  /** A lease taken by a call that then failed is given back at once. */
  undo(kind: number, request: string, result: string, context: EffectContext): void {
    if (kind === EffectKind.LEASE) this.releaseOf(request, result, context)?.();
  }

  /** What gives back the slot a LEASE result holds; null when it holds none. */
  private releaseOf(request: string, result: string, context: EffectContext): (() => void) | null {
    const lease = JSON.parse(result) as { acquired: boolean; lease: string };
    if (!lease.acquired) return null;
    const { key } = leaseRequest(parseObject(request, EffectKind.LEASE), context);
    return () => this.options.counters.release(key, lease.lease);
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

  /**
   * The HTTP effect. A URL outside the grant fails the call (CallAbort); anything that goes wrong on the way (the limit
   * of effects in flight, the network, a response too large) is a result the policy handles, `{"error": ...}`.
   */
  private async http(req: Record<string, unknown>, context: EffectContext): Promise<Record<string, unknown>> {
    let url: URL;
    try {
      url = new URL(String(req.url));
    } catch {
      throw badRequest('HTTP', `url ${JSON.stringify(req.url)} is not an absolute URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw badRequest('HTTP', 'url must be http or https');
    const access = checkEgress(url, 'http', context.grants.http?.allowedHosts, context.policy);
    // Counted before the first await: effects asked for together are started together, and each sees the others.
    if (this.httpInFlight >= this.maxHttpInFlight) {
      return {
        error:
          `the gateway already has ${this.maxHttpInFlight} HTTP effects in flight, its limit (${HTTP_IN_FLIGHT_VARIABLE}); ` +
          'this one was not sent',
      };
    }
    this.httpInFlight++;
    try {
      return await this.send(url, req, access === 'exact' ? this.named : this.checked);
    } catch (err) {
      // The name resolved to an address the wildcard entry does not reach: outside the grant, like a host it does not name.
      if (err instanceof EgressRefused) {
        throw new CallAbort('capability', `policy ${context.policy} may not call ${url.hostname}:${portOf(url)}: ${err.message}`);
      }
      return { error: (err as Error).message };
    } finally {
      this.httpInFlight--;
    }
  }

  /** Sends the request and reads the answer, up to MAX_HTTP_RESPONSE_BYTES. */
  private async send(url: URL, req: Record<string, unknown>, dispatcher: Dispatcher): Promise<Record<string, unknown>> {
    const method = typeof req.method === 'string' ? req.method.toUpperCase() : 'GET';
    const headers = isStringRecord(req.headers) ? req.headers : {};
    const timeoutMs = Math.min(isPositiveInt(req.timeoutMs) ? req.timeoutMs : 5000, MAX_HTTP_TIMEOUT_MS);
    const res = await undiciRequest(url, {
      dispatcher,
      method: method as 'GET',
      headers,
      body: typeof req.body === 'string' ? req.body : null,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
    });
    const tooLarge = { error: `response larger than ${MAX_HTTP_RESPONSE_BYTES} bytes` };
    // A length announced above the cap is refused at the head: none of the body is read.
    if (Number(res.headers['content-length']) > MAX_HTTP_RESPONSE_BYTES) {
      abandon(res.body);
      return tooLarge;
    }
    const body = await collectBody(res.body, MAX_HTTP_RESPONSE_BYTES);
    if (body === null) {
      abandon(res.body);
      return tooLarge;
    }
    const outHeaders: Record<string, string> = {};
    for (const [k, v] of Object.entries(res.headers)) {
      if (v !== undefined) outHeaders[k] = Array.isArray(v) ? v.join(', ') : v;
    }
    return { status: res.statusCode, headers: outHeaders, body: new TextDecoder().decode(body) };
  }
}

/**
 * Stops reading a response body: its request is aborted. The body then emits the abort as an 'error', which nothing
 * else listens for once reading stopped; unheard, it would be an uncaught exception, and end the process.
 */
function abandon(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => undefined);
  body.destroy();
}

interface CounterRequest {
  /** Namespaced by the binding. */
  key: string;
  amount: number;
  limit: number;
  periodSeconds: number;
  always: boolean;
}

function counterRequest(req: Record<string, unknown>, context: EffectContext): CounterRequest {
  const { key, limit, periodSeconds, amount = 1, always = false } = req;
  if (typeof key !== 'string' || key === '') throw badRequest('COUNTER', 'key must be a non-empty string');
  if (!isPositiveInt(limit)) throw badRequest('COUNTER', 'limit must be a positive integer');
  if (!isPositiveInt(periodSeconds)) throw badRequest('COUNTER', 'periodSeconds must be a positive integer');
  if (!(isPositiveInt(amount) || amount === 0)) throw badRequest('COUNTER', 'amount must be an integer, 0 or more');
  if (typeof always !== 'boolean') throw badRequest('COUNTER', 'always must be true or false');
  return { key: `${context.binding}:${key}`, amount, limit, periodSeconds, always };
}

function leaseRequest(req: Record<string, unknown>, context: EffectContext) {
  const { key, limit, ttlSeconds = 300 } = req;
  if (typeof key !== 'string' || key === '') throw badRequest('LEASE', 'key must be a non-empty string');
  if (!isPositiveInt(limit)) throw badRequest('LEASE', 'limit must be a positive integer');
  if (!isPositiveInt(ttlSeconds)) throw badRequest('LEASE', 'ttlSeconds must be a positive integer');
  return { key: `${context.binding}:lease:${key}`, limit, ttlSeconds };
}

function meterRequest(req: Record<string, unknown>, context: EffectContext) {
  const { key, periodSeconds, unit = 'bytes' } = req;
  if (typeof key !== 'string' || key === '') throw badRequest('METER', 'key must be a non-empty string');
  if (!isPositiveInt(periodSeconds)) throw badRequest('METER', 'periodSeconds must be a positive integer');
  if (unit !== 'bytes' && unit !== 'kilobytes') throw badRequest('METER', 'unit must be bytes or kilobytes');
  return { key: `${context.binding}:${key}`, periodSeconds, unit };
}

/** A meter is registered, not performed: its result only says so (the request is checked now, not at the end). */
function meterResult(req: Record<string, unknown>): string {
  meterRequest(req, { binding: '', policy: '', grants: {} });
  return '{"metered":true}';
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
