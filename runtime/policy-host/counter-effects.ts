// The effects a gateway performs without the network (abi/policy-abi.md, section 5): COUNTER, LEASE and METER,
// over a counter store (in memory, or Redis for a fleet). GatewayEffects adds HTTP; on its own, this runner is what an
// embedding of the policy host without network access uses (the SDK's offline test runner).

import { EffectKind } from '../../abi/index.ts';
import type { EffectContext, EffectRunner, ExchangeUsage } from './binding.ts';
import { CallAbort } from './errors.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { CounterStore } from '../state/counter-store.ts';

const COUNTER_CACHE_SIZE = 4096;

export interface CounterEffectsOptions {
  counters: CounterStore;
  /** Where failures that have no request to fail (metering at the end of an exchange) are reported. */
  logger?: Logger;
}

export class CounterEffects implements EffectRunner {
  constructor(protected readonly options: CounterEffectsOptions) {}

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
    // GatewayEffects performs HTTP; a host without it cannot run the effect (the call fails, as for a kind it lacks).
    if (kind === EffectKind.HTTP) throw new CallAbort('effects', 'HTTP effect: this host sends no HTTP requests');
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

export function parseObject(text: string, kind: number): Record<string, unknown> {
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

export function badRequest(kind: string, what: string): CallAbort {
  return new CallAbort('bad-argument', `${kind} effect: ${what}`);
}

export function isPositiveInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v > 0;
}
