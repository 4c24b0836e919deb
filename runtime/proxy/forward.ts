// Forwards an exchange's request to its backend: keep-alive connections per backend (h1-backend.ts, h2-backend.ts), bodies streamed both ways
// unless a policy declared it reads them, hop-by-hop headers dropped, X-Forwarded-*, the request id and traceparent added.

import { errors, type Dispatcher } from 'undici';
import { BackendError, RequestError } from '../pipeline/chain.ts';
import { EgressGuard } from '../network/egress-guard.ts';
import { EgressRefused } from '../policy-host/egress.ts';
import type { Exchange, ResponseState } from '../policy-host/exchange.ts';
import { BackendResponse, type BackendHead } from './backend-response.ts';
import { Http1Agent } from './h1-backend.ts';
import { basePathOf, type BackendSet, type BackendTarget } from './backends.ts';
import { backoffMs, nextTarget, replayable, retryAfterMs, retryFailure } from './retry.ts';
import type { Counter, MetricsRegistry } from '../telemetry/metrics.ts';
import { collectBody } from '../pipeline/body.ts';
import { ContentCodingError, decodableAcceptEncoding, decodeForPolicies, unchangedEncoding } from '../pipeline/content-coding.ts';
import { traceparentOf } from '../telemetry/trace-context.ts';
import { grpcTimeoutMs } from './grpc.ts';

/** Hop-by-hop headers (RFC 9110 7.6.1) and those the proxy sets itself. */
const NOT_FORWARDED = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'host',
  'content-length',
  // The gateway's HTTP server answers `Expect: 100-continue` itself; undici refuses to send it on.
  'expect',
]);
const NOT_RETURNED = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  // Asks the gateway, the backend's client, for proxy credentials: meant for that hop, not for the gateway's client.
  'proxy-authenticate',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
]);

/** A response header meant for the hop it came over (Connection, Upgrade...), not for the gateway's client. */
export function hopByHopResponseHeader(name: string): boolean {
  return NOT_RETURNED.has(name);
}

/** How long an idle connection to a backend URL a policy chose is kept (undici's default, which these pools had). */
const CHOSEN_KEEP_ALIVE_MS = 4_000;

export interface ForwarderOptions {
  timeoutMs: number;
  /** Where retries are counted; not counted when absent. */
  metrics?: MetricsRegistry;
  /** The most a buffered backend response may hold (a policy declared it reads the response body). */
  maxBufferedResponseBytes?: number;
  /**
   * Checks the addresses of backend URLs a policy reached through a wildcard grant entry, and knows the gateway's own
   * listeners (shared with the HTTP effect); its connector opens every connection. Default: one of its own, which knows no
   * listeners.
   */
  egress?: EgressGuard;
}

/** Where one request goes: the backend picked for it (if any) and how the path maps. */
export interface ForwardTarget {
  backends: BackendSet | null;
  target: BackendTarget | null;
  /** The API's path prefix, stripped from the request path before it is appended to the backend URL. */
  apiPrefix: string;
  /** A policy reads the response body: buffer it instead of streaming. */
  bufferResponse: boolean;
  /** Told when the backend fails after its response head, while the body streams (the client's response is cut). */
  onBodyFailure?: (error: Error) => void;
}

export class Forwarder {
  /** For backend URLs that policies chose (set-backend-service) and that their grant names exactly: a pool per origin. */
  private readonly agent: Http1Agent;
  /** For those a wildcard grant entry admitted: connections only to addresses that pass the egress checks. */
  private readonly checked: Http1Agent;
  private readonly maxBuffered: number;
  /** Checks and opens the connections (the WebSocket forwarder opens its own through it). */
  readonly egress: EgressGuard;
  private readonly metrics: { retries: Counter; skipped: Counter } | null;

  constructor(options: ForwarderOptions) {
    const egress = options.egress ?? new EgressGuard();
    this.egress = egress;
    const pools = { connections: 64, timeoutMs: options.timeoutMs, keepAliveMs: CHOSEN_KEEP_ALIVE_MS };
    this.agent = new Http1Agent({ ...pools, connect: egress.direct() });
    this.checked = new Http1Agent({ ...pools, connect: egress.connector() });
    this.maxBuffered = options.maxBufferedResponseBytes ?? 16 * 1024 * 1024;
    this.metrics = options.metrics
      ? {
          retries: options.metrics.counter('gatehouse_backend_retries_total', 'Requests tried again on a backend, by API and reason (connect-failure, reset, timeout, or the status).'),
          skipped: options.metrics.counter('gatehouse_backend_retries_skipped_total', 'Retries not made, by API and why (budget: the retry budget was spent; retry-after: the backend asked for a longer wait than the backoff allows).'),
        }
      : null;
  }

  /** Where the request goes: the picked backend's pool, or a shared agent for a URL a policy chose. */
  private route(exchange: Exchange, to: ForwardTarget) {
    const { chosen, origin, path } = backendLocation(exchange, to);
    const req = exchange.request;
    const headers = upstreamHeaders(exchange);
    // A body the policies read decoded and left as it was goes on as the client encoded it.
    const unchanged = unchangedEncoding(req);
    if (unchanged !== null) headers['content-encoding'] = unchanged.coding;
    // A response the policies read must come in a coding the gateway decodes for them.
    const accepted = to.bufferResponse ? req.headers.get('accept-encoding') : undefined;
    if (accepted !== undefined) headers['accept-encoding'] = decodableAcceptEncoding(accepted);
    const options: Dispatcher.DispatchOptions = {
      origin,
      path: path + (req.query ? `?${req.query}` : ''),
      method: req.method as Dispatcher.HttpMethod,
      headers,
      body: unchanged?.bytes ?? req.body ?? (req.stream as Dispatcher.DispatchOptions['body']) ?? null,
    };
    if (chosen && to.backends?.options.protocol === 'h2') {
      // gRPC servers answer with trailers to a client that says it takes them.
      if (req.headers.get('te')?.[0] === 'trailers') headers.te = 'trailers';
      // The call's deadline, bounded by the API's timeout: the backend hears it, and the gateway waits no longer.
      const deadline = grpcTimeoutMs(req.headers.get('grpc-timeout')?.[0]);
      if (deadline !== null) {
        const ms = Math.min(deadline, to.backends.options.timeoutMs);
        headers['grpc-timeout'] = `${ms}m`;
        options.headersTimeout = ms;
        options.bodyTimeout = ms;
      }
    }
    const shared = exchange.backendAccess === 'wildcard' ? this.checked : this.agent;
    return { chosen, dispatcher: (chosen ? chosen.dispatcher : shared) as Dispatcher, options };
  }

  /**
   * Sends the request and resolves at the backend's response head. The body is not read: it stays paused in undici
   * until the gateway sends, reads or destroys it (`ResponseState.stream`), unless a policy declared it reads the
   * response body, in which case it is buffered here (up to `maxBufferedResponseBytes`).
   */
  async forward(exchange: Exchange, to: ForwardTarget): Promise<ResponseState> {
    const { chosen, dispatcher, options } = this.route(exchange, to);
    // Retries go to the API's own backends only, never to a URL a policy chose.
    const backends = chosen ? to.backends : null;
    backends?.budget.deposit();
    let target = chosen;
    let tried: Set<BackendTarget> | null = null;
    for (let attempt = 0; ; attempt++) {
      const response = new BackendResponse(NOT_RETURNED, to.onBodyFailure);
      let head: BackendHead;
      try {
        (target ? target.dispatcher : dispatcher).dispatch(options, response);
        head = await response.head;
      } catch (err) {
        if (target && backends) backends.report(target, false);
        const failure = backends ? retryFailure(err) : null;
        const delay = failure && backends!.retry.failures.has(failure) ? this.retryDelay(exchange, backends!, attempt, failure, null) : null;
        if (delay === null) throw toBackendError(err);
        (tried ??= new Set()).add(target!);
        target = await this.retarget(exchange, to, backends!, tried, options, delay);
        continue;
      }
      if (target && backends) backends.report(target, head.status < 502 || head.status > 504);
      if (backends && backends.retry.statuses.has(head.status)) {
        const delay = this.retryDelay(exchange, backends, attempt, String(head.status), retryAfterMs(head.headers.get('retry-after')?.[0]));
        if (delay !== null) {
          response.destroy();
          (tried ??= new Set()).add(target!);
          target = await this.retarget(exchange, to, backends, tried, options, delay);
          continue;
        }
      }
      return this.answer(head, response, to);
    }
  }

  /**
   * The wait before trying again after `reason` (a failure, or a status with its Retry-After), or null when the
   * request is not tried again: the count is spent, it cannot be sent again, Retry-After asks for longer than the
   * backoff allows, or the budget is spent.
   */
  private retryDelay(exchange: Exchange, backends: BackendSet, attempt: number, reason: string, retryAfter: number | null): number | null {
    const settings = backends.retry;
    const req = exchange.request;
    if (attempt >= settings.count || !replayable(req.method, req.body, req.stream != null)) return null;
    let delay = backoffMs(settings, attempt + 1);
    if (retryAfter !== null) {
      if (retryAfter > settings.maxBackoffMs) {
        this.metrics?.skipped.inc({ api: backends.options.api ?? '', why: 'retry-after' });
        return null;
      }
      delay = Math.max(delay, retryAfter);
    }
    if (!backends.budget.withdraw()) {
      this.metrics?.skipped.inc({ api: backends.options.api ?? '', why: 'budget' });
      return null;
    }
    this.metrics?.retries.inc({ api: backends.options.api ?? '', reason });
    return delay;
  }

  /** Waits `delay` ms and points `options` at the next backend to try (another than those tried, when there is one). */
  private async retarget(
    exchange: Exchange,
    to: ForwardTarget,
    backends: BackendSet,
    tried: ReadonlySet<BackendTarget>,
    options: Dispatcher.DispatchOptions,
    delay: number,
  ): Promise<BackendTarget> {
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    const next = nextTarget(backends.targets, tried, () => backends.pick());
    const req = exchange.request;
    options.origin = next.origin;
    options.path = backendPath(next.basePath, exchange, to) + (req.query ? `?${req.query}` : '');
    return next;
  }

  /** The response state of a backend's answer: its body streamed, or held whole when a policy reads it. */
  private async answer(head: BackendHead, response: BackendResponse, to: ForwardTarget): Promise<ResponseState> {
    if (!to.bufferResponse) return { status: head.status, headers: head.headers, body: null, stream: response };
    let body: Uint8Array | null;
    try {
      body = await collectBody(response, this.maxBuffered);
    } catch (err) {
      throw toBackendError(err);
    }
    if (body === null) {
      response.destroy();
      throw new BackendError('too-large', 502, `backend response larger than ${this.maxBuffered} bytes`);
    }
    head.headers.delete('content-length');
    const state: ResponseState = { status: head.status, headers: head.headers, body };
    // A 206's body is a range of the encoded representation: it does not decode on its own.
    if (head.status === 206) return state;
    try {
      await decodeForPolicies(state, this.maxBuffered, 'backend response body');
    } catch (err) {
      if (!(err instanceof ContentCodingError)) throw err;
      throw new BackendError(err.kind === 'too-large' ? 'too-large' : 'bad-response', 502, err.message);
    }
    return state;
  }

  /** Closes the connections once their requests are done; with `cut`, at once (the shutdown timeout has passed). */
  async close(cut = false): Promise<void> {
    await Promise.all([this.agent, this.checked].map((a) => (cut ? a.destroy() : a.close())));
  }
}

/**
 * Where an exchange's request goes: the picked backend when the exchange still names it (a policy may have chosen
 * another URL), the origin (never with credentials: URL.origin has none) and the path without the query.
 */
export function backendLocation(exchange: Exchange, to: ForwardTarget): { chosen: BackendTarget | null; origin: string; path: string } {
  const chosen = to.target && exchange.backendUrl === to.target.url ? to.target : null;
  const url = chosen ? null : new URL(exchange.backendUrl);
  const path = backendPath(chosen ? chosen.basePath : basePathOf(url!), exchange, to);
  return { chosen, origin: chosen ? chosen.origin : url!.origin, path };
}

/** The path on a backend whose URL has `basePath`, without the query. */
function backendPath(basePath: string, exchange: Exchange, to: ForwardTarget): string {
  // A backend URL without a path, asked for its API's prefix alone: the target is the root, never an empty path.
  return basePath + pathBelowPrefix(exchange.request.path, to.apiPrefix) || '/';
}

/** `/echo/hello` under prefix `/echo` → `/hello`; a path a policy moved outside the prefix is used as it is. */
export function pathBelowPrefix(path: string, prefix: string): string {
  if (prefix === '' || prefix === '/') return path;
  if (path === prefix) return '';
  if (path.startsWith(prefix) && path.charCodeAt(prefix.length) === 47) return path.slice(prefix.length);
  return path;
}

/**
 * The request's headers as the backend gets them: hop-by-hop ones dropped, X-Forwarded-*, the request id and the trace
 * context added.
 */
export function upstreamHeaders(exchange: Exchange): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const req = exchange.request;
  // Headers named in Connection are hop-by-hop too.
  const connection = req.headers.get('connection');
  const named = connection ? new Set(connection.join(',').split(',').map((s) => s.trim().toLowerCase())) : null;
  for (const [name, values] of req.headers) {
    if (NOT_FORWARDED.has(name) || named?.has(name)) continue;
    out[name] = values.length === 1 ? values[0]! : values;
  }
  const priorFor = req.headers.get('x-forwarded-for');
  out['x-forwarded-for'] = priorFor ? `${priorFor.join(', ')}, ${req.clientAddress}` : req.clientAddress;
  out['x-forwarded-proto'] = req.scheme ?? 'http';
  const host = req.headers.get('host')?.[0];
  if (host) out['x-forwarded-host'] = host;
  out['x-request-id'] = exchange.requestId;
  // The gateway's hop of the trace: the backend's parent is the gateway's span, whatever the client sent.
  const trace = exchange.trace;
  if (trace !== null) {
    out.traceparent = traceparentOf(trace);
    if (trace.state !== null) out.tracestate = trace.state;
    // Rare (a tracestate without a valid traceparent): a delete would move the object to a slower shape.
    else if (out.tracestate !== undefined) delete out.tracestate;
  }
  return out;
}

export function toBackendError(err: unknown): BackendError | RequestError {
  if (err instanceof BackendError || err instanceof RequestError) return err;
  if (err instanceof EgressRefused) return new BackendError('refused', 502, `backend refused: ${err.message}`);
  // A request body that broke its limit while streaming surfaces wrapped by undici.
  const cause = (err as { cause?: unknown }).cause;
  if (cause instanceof RequestError) return cause;
  if (
    err instanceof errors.HeadersTimeoutError ||
    err instanceof errors.BodyTimeoutError ||
    err instanceof errors.ConnectTimeoutError
  ) {
    return new BackendError('timeout', 504, 'backend did not answer in time');
  }
  const code = (err as { code?: string }).code ?? '';
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EHOSTUNREACH' || code === 'EAI_AGAIN') {
    return new BackendError('unreachable', 502, `backend unreachable (${code})`);
  }
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE') {
    return new BackendError('reset', 502, 'backend closed the connection');
  }
  return new BackendError('bad-response', 502, `backend failed: ${(err as Error).message}`);
}
