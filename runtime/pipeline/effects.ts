// The gateway's effect runner: what policies ask for through `effect` (abi/policy-abi.md, section 5). Counters, leases
// and meters are CounterEffects' (counter-effects.ts); this adds the HTTP effect, and KEYS (key-sets.ts).

import { Agent, request as undiciRequest, type Dispatcher } from 'undici';
import { EffectKind } from '../../abi/index.ts';
import type { EffectContext } from '../policy-host/binding.ts';
import { checkEgress, EgressRefused, portOf } from '../policy-host/egress.ts';
import { CallAbort } from '../policy-host/errors.ts';
import { badRequest, CounterEffects, isPositiveInt, parseObject, type CounterEffectsOptions } from '../policy-host/counter-effects.ts';
import { collectBody } from './body.ts';
import { EgressGuard } from '../network/egress-guard.ts';
import { KeySets, type FetchedDocument } from './key-sets.ts';
import { newSpanId, traceparentOf, type TraceContext } from '../telemetry/trace-context.ts';

const MAX_HTTP_RESPONSE_BYTES = 1024 * 1024;
const MAX_HTTP_TIMEOUT_MS = 30_000;
/** How long the gateway waits for an issuer's discovery document or JWKS. */
const KEYS_FETCH_TIMEOUT_MS = 5000;
/** HTTP effects in flight at once in a gateway, unless told otherwise (GATEHOUSE_POLICY_HTTP_IN_FLIGHT). */
export const DEFAULT_HTTP_IN_FLIGHT = 64;
/** The variable that sets it, named in the error result a policy gets past the limit. */
export const HTTP_IN_FLIGHT_VARIABLE = 'GATEHOUSE_POLICY_HTTP_IN_FLIGHT';

export interface GatewayEffectsOptions extends CounterEffectsOptions {
  /**
   * Checks the addresses of destinations a wildcard grant entry admitted, and knows the gateway's own listeners; the
   * forwarder shares it; its connector opens every connection. Default: one of its own, which knows no listeners.
   */
  egress?: EgressGuard;
  /**
   * HTTP effects in flight at once, every policy of the gateway together (DEFAULT_HTTP_IN_FLIGHT). Past it an
   * effect's result is `{"error": ...}` at once: nothing waits in a queue, and what one request asks for cannot hold
   * the gateway's memory or connections.
   */
  maxHttpInFlight?: number;
  /** The least time between two fetches of one issuer's keys (GATEHOUSE_JWKS_MIN_REFRESH_MS; default 30 s). */
  keysMinRefreshMs?: number;
}

export class GatewayEffects extends CounterEffects {
  /** Destinations the grant names exactly: connected to as named. */
  private readonly named: Dispatcher;
  /** Destinations a wildcard admitted: connected to only on addresses that pass the egress checks. */
  private readonly checked: Dispatcher;
  private readonly maxHttpInFlight: number;
  private httpInFlight = 0;
  /** Issuers' signing keys, fetched and kept for the KEYS effect. */
  readonly keySets: KeySets;

  constructor(options: GatewayEffectsOptions) {
    super(options);
    const egress = options.egress ?? new EgressGuard();
    this.named = new Agent({ connect: egress.direct() });
    this.checked = egress.agent();
    this.maxHttpInFlight = options.maxHttpInFlight ?? DEFAULT_HTTP_IN_FLIGHT;
    this.keySets = new KeySets({
      minRefreshMs: options.keysMinRefreshMs,
      fetch: (url, maxBytes, sameOrigin) => this.fetchDocument(url, maxBytes, sameOrigin ? this.named : this.checked),
    });
  }

  /** Closes the HTTP effects' connections (at shutdown); with `cut`, the effects in flight fail (the shutdown timeout has passed). */
  async close(cut = false): Promise<void> {
    await Promise.all([this.named, this.checked].map((d) => (cut ? d.destroy() : d.close())));
  }

  /** HTTP here; counters, leases and meters as CounterEffects performs them. */
  override async perform(kind: number, request: string, context: EffectContext): Promise<string> {
    if (kind === EffectKind.HTTP) return JSON.stringify(await this.http(parseObject(request, kind), context));
    if (kind === EffectKind.KEYS) {
      const { url, kid } = keysRequest(request, context);
      return this.keySets.keys(url, kid);
    }
    return super.perform(kind, request, context);
  }

  /** Keys already held (and no fetch due) complete inside the handler's call. */
  override performNow(kind: number, request: string, context: EffectContext): string | undefined {
    if (kind === EffectKind.KEYS) {
      const { url, kid } = keysRequest(request, context);
      return this.keySets.keysNow(url, kid);
    }
    return super.performNow(kind, request, context);
  }

  /** GETs an issuer's document for KeySets: a timeout, a size cap, and the egress rules of the dispatcher given. */
  private async fetchDocument(url: URL, maxBytes: number, dispatcher: Dispatcher): Promise<FetchedDocument> {
    const res = await undiciRequest(url, {
      dispatcher,
      method: 'GET',
      headers: { accept: 'application/json' },
      headersTimeout: KEYS_FETCH_TIMEOUT_MS,
      bodyTimeout: KEYS_FETCH_TIMEOUT_MS,
      signal: AbortSignal.timeout(KEYS_FETCH_TIMEOUT_MS),
    });
    const body = Number(res.headers['content-length']) > maxBytes ? null : await collectBody(res.body, maxBytes);
    if (body === null) {
      abandon(res.body);
      throw new Error(`${url.href} answered more than ${maxBytes} bytes`);
    }
    const cacheControl = res.headers['cache-control'];
    return {
      status: res.statusCode,
      cacheControl: cacheControl === undefined ? null : String(cacheControl),
      body: new TextDecoder().decode(body),
    };
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
      return await this.send(url, req, access === 'exact' ? this.named : this.checked, context.trace ?? null);
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
  private async send(url: URL, req: Record<string, unknown>, dispatcher: Dispatcher, trace: TraceContext | null): Promise<Record<string, unknown>> {
    const method = typeof req.method === 'string' ? req.method.toUpperCase() : 'GET';
    const asked = isStringRecord(req.headers) ? req.headers : {};
    const headers = trace === null ? asked : withTraceContext(asked, trace);
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

/** A KEYS request: `{"url": <a discovery URL the binding's grant names>, "kid": <the token's kid, or "">}`. */
function keysRequest(request: string, context: EffectContext): { url: string; kid: string } {
  const req = parseObject(request, EffectKind.KEYS);
  const { url, kid } = req;
  if (typeof url !== 'string') throw badRequest('KEYS', 'url must be a string');
  if (kid !== undefined && (typeof kid !== 'string' || kid.length > 256)) throw badRequest('KEYS', 'kid must be a string of at most 256 characters');
  // Only what the operator's configuration named: a module cannot make the gateway fetch anything else.
  if (!(context.grants.openidConfig ?? []).includes(url)) {
    throw new CallAbort('capability', `policy ${context.policy} may not ask for the keys of ${JSON.stringify(url.slice(0, 200))}: not in its openidConfig grant`);
  }
  return { url, kid: kid ?? '' };
}

/**
 * The headers of a policy's outbound call with the request's trace context: a `traceparent` whose parent is a new span,
 * a child of the gateway's, and the request's `tracestate`. A policy that set either header itself keeps its own.
 */
function withTraceContext(asked: Record<string, string>, trace: TraceContext): Record<string, string> {
  const headers = { ...asked };
  let parent = false;
  let state = false;
  for (const name of Object.keys(asked)) {
    const lower = name.toLowerCase();
    if (lower === 'traceparent') parent = true;
    else if (lower === 'tracestate') state = true;
  }
  if (!parent) {
    headers.traceparent = traceparentOf(trace, newSpanId());
    if (!state && trace.state !== null) headers.tracestate = trace.state;
  }
  return headers;
}

function isStringRecord(v: unknown): v is Record<string, string> {
  return typeof v === 'object' && v !== null && Object.values(v).every((x) => typeof x === 'string');
}
