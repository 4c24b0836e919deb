// Runs a policy chain over an exchange in the phases of Azure API Management:
// inbound → backend → (forward) → outbound, and on-error when a policy or the backend fails.

import type { Phase } from '../../abi/index.ts';
import type { PolicyBinding } from '../policy-host/binding.ts';
import { PolicyFailure } from '../policy-host/errors.ts';
import { roundMs, type Exchange, type ResponseState } from '../policy-host/exchange.ts';

export interface PolicyChain {
  inbound: readonly PolicyBinding[];
  backend: readonly PolicyBinding[];
  outbound: readonly PolicyBinding[];
  'on-error': readonly PolicyBinding[];
}

export const EMPTY_CHAIN: PolicyChain = { inbound: [], backend: [], outbound: [], 'on-error': [] };

/** Stacks scopes: global, then API, then operation, in every phase. */
export function stackScopes(...scopes: Partial<PolicyChain>[]): PolicyChain {
  const merged = (phase: Phase) => scopes.flatMap((s) => s[phase] ?? []);
  return {
    inbound: merged('inbound'),
    backend: merged('backend'),
    outbound: merged('outbound'),
    'on-error': merged('on-error'),
  };
}

/** Why the backend could not answer. The data plane's forwarder throws it; the chain sends it to on-error. */
export class BackendError extends Error {
  constructor(
    // refused: the address a policy's wildcard grant led to is not one it may reach (abi/policy-abi.md, section 5).
    readonly reason: 'timeout' | 'unreachable' | 'reset' | 'too-large' | 'bad-response' | 'refused',
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'BackendError';
  }
}

/** A request the gateway refuses on the client's account (a body over the limit): on-error, with a 4xx status. */
export class RequestError extends Error {
  constructor(
    readonly reason: 'too-large' | 'bad-request',
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'RequestError';
  }
}

/** Sends the (possibly rewritten) request to the backend and returns its response. */
export type Forward = (exchange: Exchange) => Promise<ResponseState>;

export interface ChainHooks {
  /** Called when a fail-open policy failed and was skipped. */
  onFailOpen?: (binding: PolicyBinding, failure: PolicyFailure) => void;
}

export async function runChain(
  chain: PolicyChain,
  exchange: Exchange,
  forward: Forward,
  hooks: ChainHooks = {},
): Promise<void> {
  try {
    if (await runPhase('inbound', chain.inbound, exchange, hooks)) return;
    if (await runPhase('backend', chain.backend, exchange, hooks)) return;
    const draft = exchange.response;
    const response = await forward(exchange);
    // Response headers that inbound/backend policies set are applied to the backend's response: they replace the
    // backend's, except Vary, a list of what the response depends on, which both add to (CORS adds Origin to it).
    for (const [name, values] of draft.headers) {
      const backend = name === 'vary' ? response.headers.get('vary') : undefined;
      response.headers.set(name, backend ? mergeVary(backend, values) : values);
    }
    exchange.response = response;
    await runPhase('outbound', chain.outbound, exchange, hooks);
  } catch (err) {
    exchange.error = describeError(err);
    await runOnError(chain['on-error'], exchange, hooks);
  }
}

/** One Vary value with the fields of both, each once (field names compare without case). */
function mergeVary(backend: readonly string[], added: readonly string[]): string[] {
  const fields: string[] = [];
  const seen = new Set<string>();
  for (const value of [...backend, ...added]) {
    for (const raw of value.split(',')) {
      const field = raw.trim();
      if (field !== '' && !seen.has(field.toLowerCase())) {
        seen.add(field.toLowerCase());
        fields.push(field);
      }
    }
  }
  return [fields.join(', ')];
}

/** Runs one phase; returns true when a policy answered (the rest of the chain is skipped). */
async function runPhase(
  phase: Phase,
  bindings: readonly PolicyBinding[],
  exchange: Exchange,
  hooks: ChainHooks,
): Promise<boolean> {
  exchange.phase = phase;
  if (bindings.length === 0) return false;
  // Calls are timed with the clock of their CPU budgets, and one reading between two calls ends one's timing and
  // starts the next's, budget included: a reading costs 0.1 us under Node, 0.2 us under Deno.
  let started = bindings[0]!.wallMs();
  for (const binding of bindings) {
    try {
      // Most calls complete synchronously (no effects): only those that do not are awaited.
      const pending = binding.runNow(phase, exchange, started);
      if (pending) await pending;
    } catch (err) {
      const ms = roundMs(binding.wallMs() - started);
      if (err instanceof PolicyFailure && binding.failOpen) {
        exchange.timings.push({ binding: binding.id, phase, ms, outcome: 'failed-open' });
        hooks.onFailOpen?.(binding, err);
        started = binding.wallMs();
        continue;
      }
      exchange.timings.push({ binding: binding.id, phase, ms, outcome: 'failed' });
      throw err;
    }
    const ended = binding.wallMs();
    const ms = roundMs(ended - started);
    started = ended;
    exchange.timings.push({ binding: binding.id, phase, ms, outcome: exchange.responded ? 'respond' : 'continue' });
    if (exchange.responded) return true;
  }
  return false;
}

async function runOnError(bindings: readonly PolicyBinding[], exchange: Exchange, hooks: ChainHooks): Promise<void> {
  const error = exchange.error!;
  exchange.responded = false;
  // The backend's unread body (an outbound policy failed) would otherwise hold its connection.
  exchange.response.stream?.destroy();
  exchange.response = defaultErrorResponse(exchange);
  try {
    await runPhase('on-error', bindings, exchange, hooks);
  } catch {
    // An on-error policy that fails leaves the default error response; its failure is already logged and counted.
    exchange.response = defaultErrorResponse(exchange);
  }
  exchange.error = error;
}

function describeError(err: unknown): NonNullable<Exchange['error']> {
  if (err instanceof PolicyFailure) {
    return { source: 'policy', reason: err.reason, message: err.message, policy: err.policy, status: 500 };
  }
  if (err instanceof BackendError) {
    return { source: 'backend', reason: err.reason, message: err.message, policy: '', status: err.status };
  }
  if (err instanceof RequestError) {
    return { source: 'gateway', reason: err.reason, message: err.message, policy: '', status: err.status };
  }
  return { source: 'gateway', reason: 'internal', message: (err as Error)?.message ?? String(err), policy: '', status: 500 };
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  413: 'Content Too Large',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  504: 'Gateway Timeout',
};

/** An RFC 9457 problem body. It names what failed, never a policy's or backend's internal message. */
export function defaultErrorResponse(exchange: Exchange): ResponseState {
  const error = exchange.error!;
  const detail =
    error.source === 'policy'
      ? `policy ${error.policy} failed (${error.reason})`
      : error.source === 'backend'
        ? `backend failed (${error.reason})`
        : error.status < 500
          ? error.message
          : 'internal gateway error';
  const body = JSON.stringify({
    type: 'about:blank',
    title: TITLES[error.status] ?? 'Error',
    status: error.status,
    detail,
    requestId: exchange.requestId,
  });
  return {
    status: error.status,
    headers: new Map([['content-type', ['application/problem+json']]]),
    body: new TextEncoder().encode(body),
  };
}
