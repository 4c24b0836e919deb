// Forwards an exchange's request to its backend with undici: keep-alive pools per backend, bodies streamed both ways
// unless a policy declared it reads them, hop-by-hop headers dropped, X-Forwarded-* and the request id added.

import type { Writable } from 'node:stream';
import { Agent, errors, type Dispatcher } from 'undici';
import { BackendError, RequestError } from '../pipeline/chain.ts';
import type { Exchange, HeaderMap, ResponseState } from '../pipeline/exchange.ts';
import { basePathOf, type BackendSet, type BackendTarget } from './backends.ts';
import { collectBody } from './body.ts';

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
const NOT_RETURNED = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);

export interface ForwarderOptions {
  timeoutMs: number;
  /** The most a buffered backend response may hold (a policy declared it reads the response body). */
  maxBufferedResponseBytes?: number;
}

/** Where one request goes: the backend picked for it (if any) and how the path maps. */
export interface ForwardTarget {
  backends: BackendSet | null;
  target: BackendTarget | null;
  /** The API's path prefix, stripped from the request path before it is appended to the backend URL. */
  apiPrefix: string;
  /** A policy reads the response body: buffer it instead of streaming. */
  bufferResponse: boolean;
}

export class Forwarder {
  /** For backend URLs that policies chose (set-backend-service): undici keeps a pool per origin. */
  private readonly agent: Agent;
  private readonly maxBuffered: number;

  constructor(private readonly options: ForwarderOptions) {
    this.agent = new Agent({
      connections: 64,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
    });
    this.maxBuffered = options.maxBufferedResponseBytes ?? 16 * 1024 * 1024;
  }

  /** Where the request goes: the picked backend's pool, or the shared agent for a URL a policy chose. */
  private route(exchange: Exchange, to: ForwardTarget) {
    const chosen = to.target && exchange.backendUrl === to.target.url ? to.target : null;
    const url = chosen ? null : new URL(exchange.backendUrl);
    const basePath = chosen ? chosen.basePath : basePathOf(url!);
    const req = exchange.request;
    const options: Dispatcher.RequestOptions = {
      origin: chosen ? chosen.origin : url!.origin,
      path: basePath + pathBelowPrefix(req.path, to.apiPrefix) + (req.query ? `?${req.query}` : ''),
      method: req.method as Dispatcher.HttpMethod,
      headers: upstreamHeaders(exchange),
      body: req.body ?? (req.stream as Dispatcher.DispatchOptions['body']) ?? null,
    };
    return { chosen, dispatcher: (chosen ? chosen.pool : this.agent) as Dispatcher, options };
  }

  /**
   * Streams the backend's answer straight into the client's response (undici's `stream`, which skips the
   * intermediate body stream). `open` writes the response head and returns where the body goes. Resolves with the
   * status once the body is written; a failure before the head is a BackendError (the chain's on-error can answer),
   * a failure after it cuts the client's response.
   */
  async streamTo(
    exchange: Exchange,
    to: ForwardTarget,
    open: (status: number, headers: Record<string, string | string[]>) => Writable,
  ): Promise<number> {
    const { chosen, dispatcher, options } = this.route(exchange, to);
    let status = 0;
    let destination: Writable | null = null;
    try {
      await dispatcher.stream(options, ({ statusCode, headers }) => {
        status = statusCode;
        if (chosen && to.backends) to.backends.report(chosen, statusCode < 502 || statusCode > 504);
        const head: Record<string, string | string[]> = {};
        for (const name in headers) {
          const value = headers[name];
          if (value !== undefined && !NOT_RETURNED.has(name)) head[name] = value;
        }
        destination = open(statusCode, head);
        return destination;
      });
    } catch (err) {
      if (destination === null) {
        if (chosen && to.backends) to.backends.report(chosen, false);
        throw toBackendError(err);
      }
      (destination as Writable).destroy();
    }
    return status;
  }

  async forward(exchange: Exchange, to: ForwardTarget): Promise<ResponseState> {
    const { chosen, dispatcher, options } = this.route(exchange, to);
    let res: Dispatcher.ResponseData;
    try {
      res = await dispatcher.request(options);
    } catch (err) {
      if (chosen && to.backends) to.backends.report(chosen, false);
      throw toBackendError(err);
    }
    if (chosen && to.backends) to.backends.report(chosen, res.statusCode < 502 || res.statusCode > 504);
    const headers: HeaderMap = new Map();
    for (const [name, value] of Object.entries(res.headers)) {
      if (value === undefined || NOT_RETURNED.has(name)) continue;
      headers.set(name, Array.isArray(value) ? value : [value]);
    }
    if (!to.bufferResponse) return { status: res.statusCode, headers, body: null, stream: res.body };
    let body: Uint8Array | null;
    try {
      body = await collectBody(res.body, this.maxBuffered);
    } catch (err) {
      throw toBackendError(err);
    }
    if (body === null) {
      res.body.destroy();
      throw new BackendError('too-large', 502, `backend response larger than ${this.maxBuffered} bytes`);
    }
    headers.delete('content-length');
    return { status: res.statusCode, headers, body };
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

/** `/echo/hello` under prefix `/echo` → `/hello`; a path a policy moved outside the prefix is used as it is. */
export function pathBelowPrefix(path: string, prefix: string): string {
  if (prefix === '' || prefix === '/') return path;
  if (path === prefix) return '';
  if (path.startsWith(prefix) && path.charCodeAt(prefix.length) === 47) return path.slice(prefix.length);
  return path;
}

function upstreamHeaders(exchange: Exchange): Record<string, string | string[]> {
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
  return out;
}

export function toBackendError(err: unknown): BackendError | RequestError {
  if (err instanceof BackendError || err instanceof RequestError) return err;
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
