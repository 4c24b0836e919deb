// The data plane's request handler, independent of the HTTP server underneath: route, run the chain, forward.

import { randomUUID } from 'node:crypto';
import type { Writable } from 'node:stream';
import { RequestError, runChain } from '../pipeline/chain.ts';
import { Exchange, headerRecord, type BodyStream, type HeaderMap, type ResponseState } from '../pipeline/exchange.ts';
import { chunksOf, collectBody } from '../proxy/body.ts';
import type { Forwarder } from '../proxy/forward.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { MetricsRegistry } from '../telemetry/metrics.ts';
import { labelKey } from '../telemetry/labels.ts';
import type { ApiRuntime, LiveConfig, OperationRuntime } from './live-config.ts';

/** Lets the gateway write the response head itself and get the body's destination (Node's ServerResponse). */
export interface DirectResponder {
  open(status: number, headers: Record<string, string | string[]>): Writable;
}

/** A request as the platform adapter hands it over. */
export interface GatewayRequest {
  method: string;
  /** Path as received, without the query. */
  path: string;
  query: string;
  headers: HeaderMap;
  remoteAddress: string;
  scheme: 'http' | 'https';
  body: BodyStream | null;
  /** Present where the runtime allows streaming a backend response straight to the client (Node). */
  direct: DirectResponder | null;
}

/** What the adapter writes back: a buffered body or a stream, unless the gateway already sent it (`sent`). */
export interface GatewayResponse {
  status: number;
  headers: HeaderMap;
  body: Uint8Array | null;
  stream: BodyStream | null;
  sent?: boolean;
}

export const STATUS_PATH = '/status-0123456789abcdef';

export class Gateway {
  private live: LiveConfig | null = null;
  private inFlight = 0;
  private draining = false;
  private idle: (() => void) | null = null;
  private readonly requests;
  private readonly latency;
  private readonly backendLatency;
  private readonly upstreamErrors;

  constructor(
    private readonly forwarder: Forwarder,
    private readonly logger: Logger,
    metrics: MetricsRegistry,
  ) {
    this.requests = metrics.counter('gatehouse_requests_total', 'Requests, by API, operation and status.');
    this.latency = metrics.histogram('gatehouse_request_duration_ms', 'Time to the response head, in ms, by API and operation.');
    this.backendLatency = metrics.histogram('gatehouse_backend_duration_ms', 'Backend time to the response head, in ms, by API and operation.');
    this.upstreamErrors = metrics.counter('gatehouse_upstream_errors_total', 'Backend failures, by API and reason.');
    metrics.gauge('gatehouse_requests_in_flight', 'Requests being handled.', () => this.inFlight);
  }

  get config(): LiveConfig | null {
    return this.live;
  }

  get ready(): boolean {
    return this.live !== null;
  }

  /** Swaps in a configuration at once; the one it replaces closes its pools after its requests finish. */
  apply(next: LiveConfig): void {
    const previous = this.live;
    this.live = next;
    if (previous) void previous.close().catch((err: unknown) => this.logger.warn('closing old backends failed', { error: String(err) }));
  }

  inFlightCount(): number {
    return this.inFlight;
  }

  /** From now on responses close their connection, so that keep-alive clients let the server stop. */
  beginDrain(): void {
    this.draining = true;
  }

  /** Resolves when no request is in flight (graceful shutdown). */
  drained(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.idle = resolve;
    });
  }

  async handle(req: GatewayRequest): Promise<GatewayResponse> {
    this.inFlight++;
    try {
      const res = await this.route(req);
      if (this.draining) res.headers.set('connection', ['close']);
      return res;
    } finally {
      if (--this.inFlight === 0 && this.idle) {
        this.idle();
        this.idle = null;
      }
    }
  }

  private async route(req: GatewayRequest): Promise<GatewayResponse> {
    const started = performance.now();
    const requestId = req.headers.get('x-request-id')?.[0] ?? randomUUID();
    const live = this.live;
    if (!live) return problem(503, 'Service Unavailable', 'no configuration loaded yet', requestId);
    const host = req.headers.get('host')?.[0] ?? '';
    const match = live.router.match(host, req.path, req.method);
    if (match.kind === 'not-found') {
      this.record(null, null, 404, started, requestId, req, null);
      return problem(404, 'Not Found', `no API serves ${req.method} ${req.path}`, requestId);
    }
    if (match.kind === 'method-not-allowed') {
      this.record(match.api.value, null, 405, started, requestId, req, null);
      const res = problem(405, 'Method Not Allowed', `${req.method} is not allowed on ${req.path}`, requestId);
      res.headers.set('allow', [match.allowed.join(', ')]);
      return res;
    }
    const api = match.api.value;
    const operation = match.operation?.value ?? api.defaultOperation;
    const limit = live.settings.maxRequestBodyBytes;
    const declared = Number(req.headers.get('content-length')?.[0] ?? NaN);
    if (declared > limit) {
      this.record(api, operation, 413, started, requestId, req, null);
      return problem(413, 'Content Too Large', `request body of ${declared} bytes exceeds ${limit}`, requestId);
    }
    let body: Uint8Array | null = null;
    let stream: BodyStream | null = null;
    if (req.body) {
      if (operation.needsRequestBody) {
        body = await collectBody(req.body, limit);
        if (body === null) {
          this.record(api, operation, 413, started, requestId, req, null);
          return problem(413, 'Content Too Large', `request body exceeds ${limit} bytes`, requestId);
        }
      } else {
        stream = limitBody(req.body, limit);
      }
    }
    const target = api.backends.pick();
    const exchange = new Exchange({
      requestId,
      api: api.id,
      operation: operation.id,
      backendUrl: target.url,
      routeParams: match.params,
      request: {
        method: req.method,
        path: req.path,
        query: req.query,
        headers: req.headers,
        body,
        stream,
        clientAddress: req.remoteAddress,
        scheme: req.scheme,
      },
    });
    let backendMs: number | null = null;
    // With nothing to run after the backend, its answer goes straight to the client (the fastest path, on Node).
    const direct = operation.chain.outbound.length === 0 && !operation.needsResponseBody ? req.direct : null;
    await runChain(operation.chain, exchange, async (ex) => {
      const t = performance.now();
      const to = { backends: api.backends, target, apiPrefix: api.prefix, bufferResponse: operation.needsResponseBody };
      try {
        if (!direct) return await this.forwarder.forward(ex, to);
        const status = await this.forwarder.streamTo(ex, to, (code, head) => {
          // What finish() does for other responses: headers policies set before the backend, the request id.
          headerRecord(ex.response.headers, head);
          head['x-request-id'] = requestId;
          if (this.draining) head.connection = 'close';
          return direct.open(code, head);
        });
        return { status, headers: new Map(), body: null, sent: true };
      } finally {
        backendMs = performance.now() - t;
      }
    });
    if (exchange.error?.source === 'backend') this.upstreamErrors.inc({ api: api.id, reason: exchange.error.reason });
    const response = finish(exchange.response, requestId);
    this.record(api, operation, response.status, started, requestId, req, exchange, backendMs);
    return response;
  }

  /** Rendered metric label sets by API and operation (rendering sorts and escapes; requests repeat them). */
  private readonly keys = new Map<string, { route: string; byStatus: Map<number, string> }>();

  private labelKeys(api: string, operation: string): { route: string; byStatus: Map<number, string> } {
    const id = `${api}\u0000${operation}`;
    let keys = this.keys.get(id);
    if (!keys) {
      keys = { route: labelKey({ api, operation }), byStatus: new Map() };
      this.keys.set(id, keys);
    }
    return keys;
  }

  private record(
    api: ApiRuntime | null,
    operation: OperationRuntime | null,
    status: number,
    started: number,
    requestId: string,
    req: GatewayRequest,
    exchange: Exchange | null,
    backendMs: number | null = null,
  ): void {
    const ms = performance.now() - started;
    const labels = { api: api?.id ?? '', operation: operation?.id ?? '' };
    const keys = this.labelKeys(labels.api, labels.operation);
    let statusKey = keys.byStatus.get(status);
    if (statusKey === undefined) {
      statusKey = labelKey({ ...labels, status: String(status) });
      keys.byStatus.set(status, statusKey);
    }
    this.requests.incKey(statusKey);
    this.latency.observeKey(keys.route, ms);
    if (backendMs !== null) this.backendLatency.observeKey(keys.route, backendMs);
    if (!this.logger.enabled('info')) return;
    this.logger.info('request', {
      requestId,
      method: req.method,
      path: req.path,
      api: labels.api,
      operation: labels.operation,
      status,
      durationMs: round(ms),
      backendMs: backendMs === null ? null : round(backendMs),
      policies: exchange?.timings ?? [],
      error: exchange?.error
        ? { source: exchange.error.source, reason: exchange.error.reason, message: exchange.error.message }
        : undefined,
      client: req.remoteAddress,
    });
  }
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/** The response to send: a body a policy set replaces the backend's stream; the request id goes back. */
function finish(response: ResponseState, requestId: string): GatewayResponse {
  if (response.sent) return { status: response.status, headers: response.headers, body: null, stream: null, sent: true };
  let stream = response.stream ?? null;
  if (response.body !== null && stream) {
    stream.destroy?.();
    stream = null;
  }
  if (stream === null) response.headers.delete('content-length');
  response.headers.set('x-request-id', [requestId]);
  return { status: response.status, headers: response.headers, body: response.body, stream };
}

function problem(status: number, title: string, detail: string, requestId: string): GatewayResponse {
  return {
    status,
    headers: new Map([
      ['content-type', ['application/problem+json']],
      ['x-request-id', [requestId]],
    ]),
    body: new TextEncoder().encode(JSON.stringify({ type: 'about:blank', title, status, detail, requestId })),
    stream: null,
  };
}

/** Passes a streamed request body through, failing it with 413 once it goes past the limit. */
async function* limitBody(source: BodyStream, limit: number): AsyncGenerator<Uint8Array> {
  let seen = 0;
  for await (const chunk of chunksOf(source)) {
    seen += chunk.byteLength;
    if (seen > limit) {
      // The client is still sending: the response goes out with Connection: close instead of a reset.
      throw new RequestError('too-large', 413, `request body exceeds ${limit} bytes`);
    }
    yield chunk;
  }
}
