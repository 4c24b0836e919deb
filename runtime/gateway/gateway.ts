// The data plane's request handler, independent of the HTTP server underneath: route, run the chain, forward.

import type { RequestAggregates } from '../telemetry/aggregates.ts';
import { randomUUID } from 'node:crypto';
import { PhaseBatches, RequestError, runChain, type ChainHooks } from '../pipeline/chain.ts';
import { Exchange, type BodyStream, type EncodedBody, type ResponseState } from '../policy-host/exchange.ts';
import { grpcTrailersOnly, problem, type GatewayRequest, type GatewayResponse, type UpgradeSocket } from './messages.ts';
import { isGrpcRequest } from '../proxy/grpc.ts';
import { chunksOf, collectBody } from '../pipeline/body.ts';
import { ContentCodingError, DECODED_CODINGS, decodeForPolicies, restoreEncoding } from '../pipeline/content-coding.ts';
import type { ForwardTarget, Forwarder } from '../proxy/forward.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { MetricsRegistry } from '../telemetry/metrics.ts';
import { accessLogMembers } from './access-log.ts';
import { labelKey } from '../telemetry/labels.ts';
import type { BackendCallRecord, FailureRecord, RequestTelemetry } from '../telemetry/request-telemetry.ts';
import type { ConfigStore } from './config-store.ts';
import type { ApiRuntime, LiveConfig, OperationRuntime } from './live-config.ts';
import { BackendCallStart, failedOpenRecord, gatewayFailure, requestFailures } from './telemetry-records.ts';
import { refusalReason } from './request-checks.ts';
import { switchingProtocolsHead, WebSocketForwarder, type BackendHandshake } from '../proxy/websocket.ts';
import { WebSocketConnections, type UpgradeResult } from './websockets.ts';
import { traceContextOf, type TraceContext } from '../telemetry/trace-context.ts';


export const STATUS_PATH = '/status-0123456789abcdef';

export class Gateway {
  private inFlight = 0;
  private draining = false;
  private shuttingDown = false;
  private idle: (() => void) | null = null;
  private readonly requests;
  private readonly latency;
  private readonly backendLatency;
  private readonly upstreamErrors;
  private readonly webSockets: WebSocketConnections;
  private readonly webSocketForwarder: WebSocketForwarder;

  /** Per-minute aggregates for the control plane, when the gateway has one. */
  aggregates: RequestAggregates | null = null;

  /** Upstream telemetry (Application Insights), when configured: told about every request answered. */
  telemetry: RequestTelemetry | null = null;

  constructor(
    /** The configuration in force, read as each request starts. */
    private readonly configs: ConfigStore,
    private readonly forwarder: Forwarder,
    private readonly logger: Logger,
    metrics: MetricsRegistry,
  ) {
    this.requests = metrics.counter('gatehouse_requests_total', 'Requests, by API, operation and status.');
    this.latency = metrics.histogram('gatehouse_request_duration_ms', 'Time to the response head, in ms, by API and operation.');
    this.backendLatency = metrics.histogram('gatehouse_backend_duration_ms', 'Backend time to the response head, in ms, by API and operation.');
    this.upstreamErrors = metrics.counter('gatehouse_upstream_errors_total', 'Backend failures, by API and reason.');
    metrics.gauge('gatehouse_requests_in_flight', 'Requests being handled.', () => this.inFlight);
    this.webSockets = new WebSocketConnections(logger, metrics);
    this.webSocketForwarder = new WebSocketForwarder(forwarder.egress);
  }

  get config(): LiveConfig | null {
    return this.configs.current;
  }

  get ready(): boolean {
    return this.notReadyReason === null;
  }

  /**
   * Why no configuration is loaded yet, when whoever loads it knows (config sync: what kept the control plane's from
   * being used, and why no backup was); it follows `no configuration loaded: ` on the probes.
   */
  notLoadedDetail: (() => string | null) | null = null;

  /** Why the probes answer 503, or null while the gateway should be sent traffic. */
  get notReadyReason(): string | null {
    if (this.shuttingDown) return 'shutting down';
    if (this.configs.current !== null) return null;
    const detail = this.notLoadedDetail?.() ?? null;
    return detail === null ? 'no configuration loaded' : `no configuration loaded: ${detail}`;
  }

  inFlightCount(): number {
    return this.inFlight;
  }

  /**
   * Shutdown has begun: the probes answer 503 from now on, so that load balancers stop sending new requests, while
   * requests are still served; and every response closes its connection, so that keep-alive clients open a new one
   * (which a load balancer sends to a gateway still ready) instead of being cut when the listener closes.
   */
  beginShutdown(): void {
    this.shuttingDown = true;
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
    let res = await this.tracked(req, (started, live, trace) => this.route(req, started, live, trace));
    // A gRPC client reads grpc-status, not the HTTP status: the gateway's own answers are told its way.
    if (res.stream === null && res.status !== 200 && isGrpcRequest(req.headers)) res = grpcTrailersOnly(res);
    if (this.draining) res.headers.set('connection', ['close']);
    return res;
  }

  /**
   * A request to upgrade to WebSocket, its client's socket taken from the HTTP server: the handshake goes through the
   * operation's chain like any request; when the backend answers 101 and the chain lets that through, the gateway
   * writes the 101 to the client's socket, pipes bytes both ways, and answers null. Otherwise, the response to write.
   */
  handleUpgrade(req: GatewayRequest, client: UpgradeSocket): Promise<GatewayResponse | null> {
    return this.tracked(req, (started, live, trace) => this.upgrade(req, client, started, live, trace));
  }

  /** Shutdown: each WebSocket connection gets close 1001; resolves when they are closed. */
  closeWebSockets(): Promise<void> {
    return this.webSockets.closeAll();
  }

  /** Counts a request in flight while `serve` runs it under the configuration in force as it starts. */
  private async tracked<T>(req: GatewayRequest, serve: (started: number, live: LiveConfig | null, trace: TraceContext) => Promise<T>): Promise<T> {
    this.inFlight++;
    const started = performance.now();
    // The request's hop of its W3C trace, continued from the caller's traceparent or new.
    const trace = traceContextOf(req.headers.get('traceparent'), req.headers.get('tracestate'));
    // The configuration this request is served by, whatever is applied while it runs.
    const live = this.configs.current;
    live?.enter();
    try {
      return await serve(started, live, trace);
    } catch (err) {
      // The platform answers 500 for what the handler could not answer (a gateway bug); upstream telemetry hears of it.
      this.reportGatewayFailure(500, 'internal', (err as Error)?.message ?? String(err), started, req.headers.get('x-request-id')?.[0] ?? '', trace, req);
      throw err;
    } finally {
      live?.leave();
      if (--this.inFlight === 0 && this.idle) {
        this.idle();
        this.idle = null;
      }
    }
  }

  private async route(req: GatewayRequest, started: number, live: LiveConfig | null, trace: TraceContext): Promise<GatewayResponse> {
    const requestId = req.headers.get('x-request-id')?.[0] ?? randomUUID();
    const routed = this.routeIn(req, live, started, requestId, trace);
    if (!isRouted(routed)) return routed;
    const { api, operation } = routed;
    // Routed: a configuration is loaded.
    const limit = live!.settings.maxRequestBodyBytes;
    const declared = Number(req.headers.get('content-length')?.[0] ?? NaN);
    const requestBytes = { n: 0 };
    // The body whole when a policy reads it (null past the limit), else streamed through limitBody.
    const declaredTooLarge = declared > limit;
    let body: RequestBody | null = null;
    if (!declaredTooLarge) {
      if (req.body && operation.needsRequestBody) {
        const whole = await collectBody(req.body, limit);
        body = whole && { whole, stream: null };
      } else body = { whole: null, stream: req.body ? limitBody(req.body, limit, requestBytes) : null };
    }
    if (body === null) {
      this.record({ api, operation, status: 413, started, requestId, trace, req });
      const size = declaredTooLarge ? `request body of ${declared} bytes exceeds ${limit}` : `request body exceeds ${limit} bytes`;
      return problem(413, 'Content Too Large', size, requestId);
    }
    if (body.whole) {
      const refused = await decodeRequestBody(body, req, limit, requestId);
      if (refused !== null) {
        this.record({ api, operation, status: refused.status, started, requestId, trace, req });
        return refused;
      }
    }
    const { exchange, to } = this.exchangeFor(req, routed, requestId, trace, body);
    const outcome = await this.runChain(req, routed, exchange, to);
    try {
      if (exchange.error?.source === 'backend') this.upstreamErrors.inc({ api: api.id, reason: exchange.error.reason });
      const response = finish(exchange.response, requestId);
      if (exchange.hasEndActions) {
        if (body.whole) requestBytes.n = (body.encoded?.bytes ?? body.whole).byteLength;
        response.finished = (responseBytes) => exchange.end({ requestBytes: requestBytes.n, responseBytes });
      }
      this.record({ api, operation, status: response.status, started, requestId, trace, req, exchange, ...outcome });
      return response;
    } catch (err) {
      // No response will carry the exchange to its end: what its policies hold (leases) is given back now.
      exchange.end({ requestBytes: requestBytes.n, responseBytes: 0 });
      throw err;
    }
  }

  /** The request's API and operation in the configuration `live`, or the answer when there is none (recorded). */
  private routeIn(req: GatewayRequest, live: LiveConfig | null, started: number, requestId: string, trace: TraceContext): Routed | GatewayResponse {
    if (live) return this.match(req, live, started, requestId, trace);
    this.reportGatewayFailure(503, 'not-ready', 'no configuration loaded yet', started, requestId, trace, req);
    return problem(503, 'Service Unavailable', 'no configuration loaded yet', requestId);
  }

  private async upgrade(
    req: GatewayRequest,
    client: UpgradeSocket,
    started: number,
    live: LiveConfig | null,
    trace: TraceContext,
  ): Promise<GatewayResponse | null> {
    const requestId = req.headers.get('x-request-id')?.[0] ?? randomUUID();
    const routed = this.routeIn(req, live, started, requestId, trace);
    if (!isRouted(routed)) return routed;
    const { api, operation } = routed;
    const refuse = (status: number, title: string, detail: string, result: UpgradeResult) => {
      this.webSockets.counted(api.id, result);
      this.record({ api, operation, status, started, requestId, trace, req });
      return problem(status, title, detail, requestId);
    };
    const ws = operation.webSocket;
    if (!ws) {
      const detail = `WebSocket is not allowed on ${req.path} (API ${api.id}, operation ${operation.id}): its configuration does not set webSocket`;
      return refuse(400, 'Bad Request', detail, 'not-allowed');
    }
    const wrong = handshakeProblem(req);
    if (wrong !== null) {
      const res = refuse(wrong.status, wrong.status === 426 ? 'Upgrade Required' : 'Bad Request', wrong.detail, 'refused');
      if (wrong.status === 426) res.headers.set('sec-websocket-version', ['13']);
      return res;
    }
    if (this.draining) return refuse(503, 'Service Unavailable', 'the gateway is shutting down', 'limit');
    const reservation = this.webSockets.reserve(api.id, live!.settings.webSocketMaxConnections, ws.apiMaxConnections);
    if (typeof reservation === 'string') return refuse(503, 'Service Unavailable', `too many WebSocket connections: ${reservation}`, 'limit');
    let upgraded = null as BackendHandshake['upgraded'];
    let backendAnswered = false;
    try {
      const { exchange, to } = this.exchangeFor(req, routed, requestId, trace, { whole: null, stream: null });
      const outcome = await this.runChain(req, routed, exchange, to, async (ex, t) => {
        const answer = await this.webSocketForwarder.handshake(ex, t, api.backends.options.timeoutMs);
        backendAnswered = true;
        upgraded = answer.upgraded;
        return { status: answer.status, headers: answer.headers, body: answer.body };
      });
      const response = exchange.response;
      // Set inside the chain's call: the compiler cannot know it ran.
      const backend = upgraded as BackendHandshake['upgraded'];
      if (backend !== null && response.status === 101 && exchange.error === null) {
        upgraded = null;
        this.webSockets.counted(api.id, 'upgraded');
        response.headers.set('x-request-id', [requestId]);
        this.record({ api, operation, status: 101, started, requestId, trace, req, exchange, ...outcome });
        const start = { head101: switchingProtocolsHead(response.headers), clientHead: client.head, backendEarly: backend.early, requestId };
        this.webSockets.open(reservation, client.socket, backend.socket, ws, start, (toBackend, toClient) => {
          if (exchange.hasEndActions) exchange.end({ requestBytes: toBackend, responseBytes: toClient });
        });
        return null;
      }
      reservation.release();
      if (exchange.error?.source === 'backend') this.upstreamErrors.inc({ api: api.id, reason: exchange.error.reason });
      const result: UpgradeResult =
        exchange.error?.source === 'backend' ? 'backend-failed' : backendAnswered && exchange.error === null ? 'backend-refused' : 'refused';
      this.webSockets.counted(api.id, result);
      // A 1xx the chain made without a backend connection to switch to (a policy's answer) cannot be sent as a response.
      const res = response.status < 200 ? problem(502, 'Bad Gateway', `status ${response.status} without a WebSocket connection to the backend`, requestId) : finish(response, requestId);
      if (exchange.hasEndActions) exchange.end({ requestBytes: 0, responseBytes: res.body?.byteLength ?? 0 });
      this.record({ api, operation, status: res.status, started, requestId, trace, req, exchange, ...outcome });
      return res;
    } catch (err) {
      reservation.release();
      throw err;
    } finally {
      // The backend's socket when the client did not get the 101 (a policy answered after the backend's).
      upgraded?.socket.destroy();
    }
  }

  /** The exchange a routed request starts, its backend picked, and where the forwarder sends it. */
  private exchangeFor(
    req: GatewayRequest,
    routed: Routed,
    requestId: string,
    trace: TraceContext,
    body: RequestBody,
  ): { exchange: Exchange; to: ForwardTarget } {
    const { api, operation } = routed;
    const target = api.backends.pick();
    const exchange = new Exchange({
      requestId,
      api: api.id,
      apiPathPrefix: api.prefix,
      operation: operation.id,
      backendUrl: target.url,
      routeParams: routed.params,
      trace,
      request: {
        method: req.method,
        path: req.path,
        query: req.query,
        headers: req.headers,
        body: body.whole,
        stream: body.stream,
        encoded: body.encoded ?? null,
        clientAddress: req.remoteAddress,
        scheme: req.scheme,
      },
    });
    const to: ForwardTarget = {
      backends: api.backends,
      target,
      apiPrefix: api.prefix,
      bufferResponse: operation.needsResponseBody,
      onBodyFailure: (error) => {
        this.upstreamErrors.inc({ api: api.id, reason: 'truncated' });
        this.logger.warn('backend response cut short', { requestId, api: api.id, operation: operation.id, error: error.message });
        this.telemetry?.lateFailure(
          { source: 'backend', reason: 'truncated', message: error.message, policy: null, failedOpen: false },
          { requestId, api: api.id, operation: operation.id, traceId: trace.traceId, parentSpanId: trace.spanId },
        );
      },
    };
    return { exchange, to };
  }

  /** The API and operation a request goes to, or the answer when it goes to none (recorded). */
  private match(req: GatewayRequest, live: LiveConfig, started: number, requestId: string, trace: TraceContext): Routed | GatewayResponse {
    const refused = refusalReason(req);
    if (refused !== null) {
      this.record({ api: null, operation: null, status: 400, started, requestId, trace, req });
      return problem(400, 'Bad Request', refused, requestId);
    }
    const host = req.headers.get('host')?.[0] ?? '';
    const match = live.router.match(host, req.path, req.method);
    if (match.kind === 'not-found') {
      this.record({ api: null, operation: null, status: 404, started, requestId, trace, req });
      return problem(404, 'Not Found', `no API serves ${req.method} ${req.path}`, requestId);
    }
    if (match.kind === 'undecodable') {
      this.record({ api: match.api.value, operation: null, status: 400, started, requestId, trace, req });
      return problem(400, 'Bad Request', match.message, requestId);
    }
    const api = match.api.value;
    if (match.kind === 'method-not-allowed') {
      const notAllowed = () => {
        const res = problem(405, 'Method Not Allowed', `${req.method} is not allowed on ${req.path}`, requestId);
        res.headers.set('allow', [match.allowed.join(', ')]);
        return res;
      };
      // A CORS preflight (OPTIONS with Access-Control-Request-Method) to an operation without OPTIONS goes through the
      // policies of the global and API scopes, as Azure API Management does, so that an API-wide cors policy answers
      // it; when none does, the answer is the 405 instead of the backend.
      if (req.method === 'OPTIONS' && req.headers.has('access-control-request-method')) {
        return { api, operation: api.defaultOperation, params: new Map(), preflightAnswer: notAllowed };
      }
      this.record({ api, operation: null, status: 405, started, requestId, trace, req });
      return notAllowed();
    }
    return { api, operation: match.operation?.value ?? api.defaultOperation, params: match.params, preflightAnswer: null };
  }

  /**
   * Runs the operation's chain, the backend call at its heart (`send`: the forwarder's, or a WebSocket handshake);
   * what it tells of the backend, for the record.
   */
  private async runChain(
    req: GatewayRequest,
    routed: Routed,
    exchange: Exchange,
    to: ForwardTarget,
    send: (ex: Exchange, to: ForwardTarget) => Promise<ResponseState> = (ex, t) => this.forwarder.forward(ex, t),
  ): Promise<ChainOutcome> {
    const telemetry = this.telemetry;
    const outcome: ChainOutcome = { backendMs: null, backendCall: null, failedOpen: null };
    // Fail-open policies that failed are skipped silently unless upstream telemetry wants to hear of them.
    const hooks: ChainHooks | undefined = telemetry
      ? { onFailOpen: (_binding, failure) => (outcome.failedOpen ??= []).push(failedOpenRecord(failure)) }
      : undefined;
    const { operation, preflightAnswer } = routed;
    await runChain(
      operation.chain,
      exchange,
      async (ex) => {
        if (preflightAnswer) return preflightAnswer();
        const t = performance.now();
        const call = telemetry ? new BackendCallStart(ex, to, operation, req.path, t) : null;
        try {
          const response = await send(ex, to);
          outcome.backendMs = performance.now() - t;
          if (call) outcome.backendCall = call.finish(outcome.backendMs, { status: response.status });
          return response;
        } catch (error) {
          outcome.backendMs = performance.now() - t;
          if (call) outcome.backendCall = call.finish(outcome.backendMs, { error });
          throw error;
        }
      },
      hooks,
      this.phaseBatches,
    );
    return outcome;
  }

  /** Where the phases of requests that arrive together wait to run together (pipeline/chain.ts says why). */
  private readonly phaseBatches = new PhaseBatches();

  /** Rendered metric label sets by operation (rendering sorts and escapes; requests repeat them). */
  private readonly keysByOperation = new WeakMap<OperationRuntime, LabelKeys>();
  /** The same for requests that matched no operation (404, 405), by API id. */
  private readonly keysWithoutOperation = new Map<string, LabelKeys>();

  private labelKeys(api: ApiRuntime | null, operation: OperationRuntime | null): LabelKeys {
    let keys = operation ? this.keysByOperation.get(operation) : this.keysWithoutOperation.get(api?.id ?? '');
    if (!keys) {
      keys = new LabelKeys(api?.id ?? '', operation?.id ?? '');
      if (operation) this.keysByOperation.set(operation, keys);
      else this.keysWithoutOperation.set(api?.id ?? '', keys);
    }
    return keys;
  }

  private record(r: RequestRecord): void {
    const { api, operation, status, started, requestId, trace, req, exchange = null, backendMs = null } = r;
    const ms = performance.now() - started;
    if (api) this.aggregates?.observe(api.id, status, ms);
    if (this.telemetry) {
      this.report(api, operation, status, started, ms, requestId, trace, req, r.backendCall ?? null, requestFailures(exchange?.error ?? null, r.failedOpen ?? null));
    }
    const keys = this.labelKeys(api, operation);
    this.requests.incKey(keys.withStatus(status));
    this.latency.observeKey(keys.route, ms);
    if (backendMs !== null) this.backendLatency.observeKey(keys.route, backendMs);
    if (!this.logger.enabled('info')) return;
    this.logger.logMembers(
      'info',
      'request',
      accessLogMembers({
        requestId,
        traceId: trace.traceId,
        method: req.method,
        path: req.path,
        api: keys.api,
        operation: keys.operation,
        status,
        durationMs: ms,
        backendMs,
        policies: exchange?.timings ?? [],
        error: exchange?.error ?? null,
        client: req.remoteAddress,
        traces: exchange?.traces,
        protocol: req.protocol,
      }),
    );
  }

  /** Tells upstream telemetry, if any, of a request the gateway failed itself, outside any API (not ready, a bug). */
  private reportGatewayFailure(
    status: number,
    reason: string,
    message: string,
    started: number,
    requestId: string,
    trace: TraceContext,
    req: GatewayRequest,
  ): void {
    if (!this.telemetry) return;
    this.report(null, null, status, started, performance.now() - started, requestId, trace, req, null, [gatewayFailure(reason, message)]);
  }

  /** Hands a request to upstream telemetry. */
  private report(
    api: ApiRuntime | null,
    operation: OperationRuntime | null,
    status: number,
    started: number,
    durationMs: number,
    requestId: string,
    trace: TraceContext,
    req: GatewayRequest,
    backend: BackendCallRecord | null,
    failures: FailureRecord[],
  ): void {
    this.telemetry!.request({
      requestId,
      traceId: trace.traceId,
      spanId: trace.spanId,
      parentSpanId: trace.parentId,
      method: req.method,
      // Requests that matched an API but no operation (405) take the API's catch-all name.
      route: api ? api.prefix + (operation ?? api.defaultOperation).pathTemplate : null,
      url: `${req.scheme}://${req.headers.get('host')?.[0] ?? ''}${req.path}`,
      api: api?.id ?? '',
      operation: operation?.id ?? '',
      status,
      startTime: performance.timeOrigin + started,
      durationMs,
      backend,
      failures,
    });
  }
}

/** An API and operation's metric label sets, rendered once. */
class LabelKeys {
  readonly route: string;
  private readonly byStatus = new Map<number, string>();

  constructor(
    readonly api: string,
    readonly operation: string,
  ) {
    this.route = labelKey({ api, operation });
  }

  withStatus(status: number): string {
    let key = this.byStatus.get(status);
    if (key === undefined) {
      key = labelKey({ api: this.api, operation: this.operation, status: String(status) });
      this.byStatus.set(status, key);
    }
    return key;
  }
}

/**
 * The response to send: a body a policy set replaces the backend's stream; a body the policies read decoded and left as
 * it was goes back as the backend encoded it; the request id goes back.
 */
function finish(response: ResponseState, requestId: string): GatewayResponse {
  let stream = response.stream ?? null;
  if (response.body !== null && stream) {
    stream.destroy();
    stream = null;
  }
  if (response.encoded) restoreEncoding(response);
  // A body the gateway holds whole goes out with its length (not chunked); statuses without a body get none.
  if (stream === null) {
    const s = response.status;
    if (s < 200 || s === 204 || s === 304) response.headers.delete('content-length');
    else response.headers.set('content-length', [String(response.body?.byteLength ?? 0)]);
  }
  response.headers.set('x-request-id', [requestId]);
  return { status: response.status, headers: response.headers, body: response.body, stream };
}

/** A request's body: whole when a policy reads it (and then decoded, `encoded` keeping it as it came), else streamed. */
interface RequestBody {
  whole: Uint8Array | null;
  stream: BodyStream | null;
  encoded?: EncodedBody | null;
}

/**
 * Decodes a whole request body for the policies that read it (pipeline/content-coding.ts), within the request body
 * limit; the answer when it cannot be: 415 for a coding the gateway does not decode (with the codings it does, RFC 9110
 * 12.5.3), 413 for a body that inflates past the limit, 400 for one that does not decode. Null when it is ready.
 */
async function decodeRequestBody(body: RequestBody, req: GatewayRequest, limit: number, requestId: string): Promise<GatewayResponse | null> {
  const message = { body: body.whole, headers: req.headers, encoded: null as EncodedBody | null };
  try {
    await decodeForPolicies(message, limit, 'request body');
  } catch (err) {
    if (!(err instanceof ContentCodingError)) throw err;
    if (err.kind === 'unsupported') {
      const res = problem(415, 'Unsupported Media Type', err.message, requestId);
      res.headers.set('accept-encoding', [DECODED_CODINGS.join(', ')]);
      return res;
    }
    return err.kind === 'too-large' ? problem(413, 'Content Too Large', err.message, requestId) : problem(400, 'Bad Request', err.message, requestId);
  }
  body.whole = message.body;
  body.encoded = message.encoded;
  return null;
}

/** Passes a streamed request body through, failing it with 413 once it goes past the limit. */
async function* limitBody(source: BodyStream, limit: number, counted: { n: number }): AsyncGenerator<Uint8Array> {
  let seen = 0;
  for await (const chunk of chunksOf(source)) {
    seen += chunk.byteLength;
    counted.n = seen;
    if (seen > limit) {
      // The client is still sending: the response goes out with Connection: close instead of a reset.
      throw new RequestError('too-large', 413, `request body exceeds ${limit} bytes`);
    }
    yield chunk;
  }
}

/** What makes an upgrade request not a WebSocket handshake the gateway passes on (RFC 6455, 4.2.1), or null. */
function handshakeProblem(req: GatewayRequest): { status: 400 | 426; detail: string } | null {
  if (req.method !== 'GET') return { status: 400, detail: `a WebSocket handshake is a GET, not ${req.method}` };
  if (!req.headers.get('sec-websocket-key')?.[0]) return { status: 400, detail: 'a WebSocket handshake needs Sec-WebSocket-Key' };
  const version = req.headers.get('sec-websocket-version')?.[0];
  if (version !== '13') return { status: 426, detail: `WebSocket version ${version ?? '(none)'} is not supported: 13 is` };
  if (req.body !== null) return { status: 400, detail: 'a WebSocket handshake has no body' };
  return null;
}

/** Where a request goes: its API and operation, and for a CORS preflight no operation takes, the 405 it gets unless a policy answers. */
interface Routed {
  api: ApiRuntime;
  operation: OperationRuntime;
  params: Map<string, string>;
  preflightAnswer: (() => GatewayResponse) | null;
}

function isRouted(r: Routed | GatewayResponse): r is Routed {
  return 'operation' in r;
}

/** What the chain's run tells of the backend call, for the record. */
interface ChainOutcome {
  backendMs: number | null;
  backendCall: BackendCallRecord | null;
  failedOpen: FailureRecord[] | null;
}

/** One request, as metrics, the access log, aggregates and upstream telemetry record it. */
interface RequestRecord {
  api: ApiRuntime | null;
  operation: OperationRuntime | null;
  status: number;
  started: number;
  requestId: string;
  trace: TraceContext;
  req: GatewayRequest;
  exchange?: Exchange | null;
  backendMs?: number | null;
  backendCall?: BackendCallRecord | null;
  failedOpen?: FailureRecord[] | null;
}
