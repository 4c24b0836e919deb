// An HTTP/2 backend (`backend.protocol: h2`, gRPC services) reached through node:http2 sessions, driving the same
// dispatch handler undici drives for HTTP/1.1 (BackendResponse), so forwarding, retries and the response's way to the
// client are one code path. undici's own HTTP/2 client is not used: measured against @grpc/grpc-js (undici 7.30), it
// completes a response without its trailers, and a response paused at its head (as the gateway pauses every one while
// outbound policies run) loses its body; gRPC's status travels in the trailers.
//
// Sessions are kept and reused: a stream goes to the open session with the fewest streams; a new session is opened
// while every one carries `streamsPerSession` and fewer than `sessions` are open (past that, node:http2 queues the
// stream until the backend's own concurrency limit lets it go). A session idle for IDLE_SESSION_MS is closed.

import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { errors, type Dispatcher } from 'undici';
import { drainedOrClosed } from './drained.ts';

/** A session with no stream for this long is closed. */
const IDLE_SESSION_MS = 30_000;

/** Request headers HTTP/2 does not carry (RFC 9113, 8.2.2), besides those the forwarder already drops. */
const NOT_SENT = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host']);

export interface Http2BackendOptions {
  /** Sessions (connections) kept at most. */
  sessions: number;
  /** Streams a session takes before another is opened. */
  streamsPerSession: number;
  /** Time to the response head, and between body chunks, unless a request sets its own. */
  timeoutMs: number;
}

interface Session {
  session: ClientHttp2Session;
  streams: number;
  /** Why the connection failed, told to the streams it takes down. */
  failure: Error | null;
}

export class Http2Backend {
  private sessions: Session[] = [];
  private closing = false;

  constructor(
    private readonly origin: string,
    private readonly options: Http2BackendOptions,
  ) {}

  private pick(): Session {
    this.sessions = this.sessions.filter((s) => !s.session.closed && !s.session.destroyed);
    let best: Session | null = null;
    for (const s of this.sessions) if (best === null || s.streams < best.streams) best = s;
    if (best && (best.streams < this.options.streamsPerSession || this.sessions.length >= this.options.sessions)) return best;
    const session = connect(this.origin, { settings: { enablePush: false } });
    const entry: Session = { session, streams: 0, failure: null };
    session.on('error', (err: Error) => (entry.failure = err));
    session.setTimeout(IDLE_SESSION_MS, () => {
      if (entry.streams === 0) session.close();
    });
    this.sessions.push(entry);
    return entry;
  }

  /** Sends one request; `handler` hears of it as undici's dispatch handlers do. */
  dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    let stream: ClientHttp2Stream | null = null;
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      if (stream && !stream.destroyed) stream.close(constants.NGHTTP2_CANCEL);
      handler.onResponseError?.(controller, err);
    };
    const controller: Dispatcher.DispatchController = {
      get aborted() {
        return settled && !completed;
      },
      get paused() {
        return stream?.isPaused() ?? false;
      },
      get reason() {
        return null;
      },
      pause: () => stream?.pause(),
      resume: () => stream?.resume(),
      abort: (reason: Error) => fail(reason),
    };
    let completed = false;
    handler.onRequestStart?.(controller, {});
    if (settled) return true;
    if (this.closing) {
      fail(new errors.ClientClosedError());
      return true;
    }
    const entry = this.pick();
    const headers: OutgoingHttpHeaders = { ':method': options.method, ':path': options.path };
    for (const [name, value] of Object.entries((options.headers ?? {}) as Record<string, string | string[]>)) {
      if (!NOT_SENT.has(name)) headers[name] = value;
    }
    const body = options.body as Uint8Array | AsyncIterable<Uint8Array> | null | undefined;
    try {
      stream = entry.session.request(headers, { endStream: body == null });
    } catch (err) {
      fail(entry.failure ?? (err as Error));
      return true;
    }
    entry.streams++;
    const s = stream;
    let headReceived = false;
    let trailers: IncomingHttpHeaders = {};
    const headersTimeout = options.headersTimeout ?? this.options.timeoutMs;
    const bodyTimeout = options.bodyTimeout ?? this.options.timeoutMs;
    s.setTimeout(headersTimeout, () => fail(headReceived ? new errors.BodyTimeoutError() : new errors.HeadersTimeoutError()));
    // A stream of a session that could not connect fails as "canceled", the connection's error as its cause: that
    // cause (ECONNREFUSED...) is what says the backend is unreachable and the request may go to another member.
    s.on('error', (err: Error) => fail(entry.failure ?? connectionCause(err)));
    s.once('close', () => {
      entry.streams--;
      if (!completed) fail(entry.failure ?? new errors.SocketError(`HTTP/2 stream closed (code ${s.rstCode}) before the response was complete`));
    });
    s.once('response', (head: IncomingHttpHeaders) => {
      headReceived = true;
      s.setTimeout(bodyTimeout);
      const status = Number(head[':status']);
      const fields: Record<string, string | string[] | undefined> = {};
      for (const name in head) if (name.charCodeAt(0) !== 58 /* ':' */) fields[name] = head[name];
      handler.onResponseStart?.(controller, status, fields, '');
    });
    s.on('data', (chunk: Buffer) => {
      if (!settled) handler.onResponseData?.(controller, chunk);
    });
    s.once('trailers', (t: IncomingHttpHeaders) => (trailers = t));
    s.once('end', () => {
      if (settled || !headReceived) return;
      completed = true;
      settled = true;
      handler.onResponseEnd?.(controller, trailers as Record<string, string | string[]>);
    });
    if (body != null) void sendBody(s, body).catch((err: Error) => fail(err));
    return true;
  }

  /** Sends GOAWAY on every session: the streams they carry finish first. */
  async close(): Promise<void> {
    this.closing = true;
    // A session that failed (a backend down: refused, reset) is destroyed already: it would never call back.
    await Promise.all(
      this.sessions.map((s) => new Promise<void>((done) => (s.session.closed || s.session.destroyed ? done() : s.session.close(() => done())))),
    );
  }

  /** Closes every session at once. */
  async destroy(): Promise<void> {
    this.closing = true;
    for (const s of this.sessions) s.session.destroy();
  }
}

/** Writes a request body into the stream with backpressure, and ends it. */
async function sendBody(stream: ClientHttp2Stream, body: Uint8Array | AsyncIterable<Uint8Array>): Promise<void> {
  if (body instanceof Uint8Array) {
    stream.end(body);
    return;
  }
  for await (const chunk of body) {
    if (stream.destroyed) return;
    if (!stream.write(chunk)) await drainedOrClosed(stream);
  }
  if (!stream.destroyed) stream.end();
}

/** The connection's error a stream error carries as its cause, when it has one; else the stream's error. */
function connectionCause(err: Error): Error {
  const cause = (err as { cause?: unknown }).cause;
  return cause instanceof Error && typeof (cause as { code?: unknown }).code === 'string' ? cause : err;
}
