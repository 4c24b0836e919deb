// HTTP/2 on the data plane's listeners: the sessions a listener hands over (ALPN `h2` on HTTPS, the connection preface
// on cleartext with prior knowledge: http-server.ts decides), each stream turned into the same `GatewayRequest` an
// HTTP/1.1 request becomes, so routing, policies, limits, logs and metrics are one code path whatever the protocol.
//
// node:http2's core API (streams, not its HTTP/1-like compatibility layer): the stream is the request's body and the
// response's sink, with backpressure, and its trailers are what gRPC needs. Deno's node:http2 serves it the same way
// (checked on Deno 2.9 with curl, node:http2 clients and @grpc/grpc-js).
//
// What a hostile client could do, and what bounds it (docs/operations.md, "HTTP/2"):
//   - rapid reset (CVE-2023-44487): streams opened and reset at once make the gateway start work it then throws away;
//     resets are counted per session in a window, and a session past the limit is closed with GOAWAY
//     ENHANCE_YOUR_CALM;
//   - a large header list: SETTINGS_MAX_HEADER_LIST_SIZE is the HTTP/1.1 head limit (GATEHOUSE_MAX_HEADER_BYTES),
//     past which nghttp2 refuses the stream;
//   - many streams: SETTINGS_MAX_CONCURRENT_STREAMS; streams past it are refused by nghttp2 (and a session that keeps
//     opening them is closed by node:http2's maxSessionRejectedStreams);
//   - a window never opened: a response stream holds at most its highWaterMark before the backend is paused (the
//     body is written with backpressure), and a session with no frames for the keep-alive timeout is closed;
//   - a request body trickled slowly: the request timeout (GATEHOUSE_REQUEST_TIMEOUT_MS) applies to a stream as to an
//     HTTP/1.1 request (gRPC streams excepted).

import { constants, createServer, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
import type { BodyStream, HeaderMap } from '../policy-host/exchange.ts';
import { problem, type GatewayRequest, type GatewayResponse } from '../gateway/messages.ts';
import type { HttpLimits } from './http-limits.ts';
import { isGrpcContentType } from '../proxy/grpc.ts';

/** How long a window of counted resets lasts. */
export const RESET_WINDOW_MS = 10_000;

/** Response headers HTTP/2 does not carry (RFC 9113, 8.2.2): node:http2 refuses a head with one. */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

/** One stream's request, and how to answer it. */
export type StreamHandler = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void;

export interface Http2Sessions {
  /** Takes a connection that speaks HTTP/2 (TLS with ALPN h2, or cleartext that began with the preface). */
  accept(socket: Duplex): void;
  /** Sends GOAWAY on every session and resolves when they have closed (their open streams finish first). */
  close(): Promise<void>;
}

/** An HTTP/2 server for a listener: its sessions bounded by `limits`, each stream handed to `onStream`. */
export function http2Sessions(limits: HttpLimits, onStream: StreamHandler, onCut?: (reason: string, client: string) => void): Http2Sessions {
  const server: Http2Server = createServer({
    settings: {
      maxConcurrentStreams: limits.http2MaxConcurrentStreams,
      maxHeaderListSize: limits.maxHeaderBytes,
    },
    maxHeaderListPairs: 256,
  });
  const sessions = new Set<ServerHttp2Session>();
  let closing: Promise<void> | null = null;
  server.on('session', (session: ServerHttp2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    session.on('error', () => undefined);
    // No frame either way for this long (an idle session, or a client that never opens its window): closed.
    session.setTimeout(limits.keepAliveTimeoutMs, () => session.destroy());
    if (closing) session.close();
    const resets = { count: 0, windowStart: performance.now() };
    session.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
      stream.on('error', () => undefined);
      // A stream the client reset before the gateway answered it (`aborted` is read at close rather than listened
      // for: Deno's node:http2 sets it without always emitting the event).
      stream.once('close', () => {
        if (!stream.aborted && stream.rstCode !== constants.NGHTTP2_CANCEL) return;
        const now = performance.now();
        if (now - resets.windowStart > RESET_WINDOW_MS) {
          resets.windowStart = now;
          resets.count = 0;
        }
        if (++resets.count > limits.http2MaxResets && !session.destroyed) {
          onCut?.(`more than ${limits.http2MaxResets} streams reset in ${RESET_WINDOW_MS / 1000} s`, session.socket?.remoteAddress ?? '');
          session.destroy(new Error('too many streams reset by the client'), constants.NGHTTP2_ENHANCE_YOUR_CALM);
        }
      });
      if (!stream.endAfterHeaders && !isGrpcContentType(headers['content-type'])) {
        limitRequestTime(stream, limits.requestTimeoutMs, String(headers['x-request-id'] ?? ''));
      }
      onStream(stream, headers);
    });
  });
  return {
    accept: (socket) => server.emit('connection', socket),
    close: () =>
      (closing ??= Promise.all(
        [...sessions].map((session) => new Promise<void>((done) => (session.closed ? done() : (session.once('close', () => done()), session.close())))),
      ).then(() => undefined)),
  };
}

/**
 * GATEHOUSE_REQUEST_TIMEOUT_MS for a stream, as node:http applies it to an HTTP/1.1 request: a client that has not
 * sent its whole request (END_STREAM) by then gets 408 when nothing was answered yet, and the stream is reset either
 * way, so a body trickled byte by byte does not hold a backend request open. gRPC streams are left to `grpc-timeout`
 * and the idle timeout: a streaming call is long-lived by design.
 */
function limitRequestTime(stream: ServerHttp2Stream, timeoutMs: number, requestId: string): void {
  const timer = setTimeout(() => {
    // `state.remoteClose`: the client's END_STREAM arrived, read or not (Deno's node:http2 may lack `state`).
    if (stream.destroyed || stream.state?.remoteClose === 1 || stream.readableEnded) return;
    if (!stream.headersSent) {
      const res = problem(408, 'Request Timeout', `the request was not received whole within ${timeoutMs} ms`, requestId);
      try {
        stream.respond(responseHead(res.status, res.headers));
        stream.end(res.body);
      } catch {
        // The stream closed meanwhile: the reset below is all there is to do.
      }
    }
    cut.add(stream);
    stream.close(constants.NGHTTP2_NO_ERROR);
  }, timeoutMs);
  stream.once('close', () => clearTimeout(timer));
}

/** Streams the request timeout reset: their body, read or not, is not whole. */
const cut = new WeakSet<ServerHttp2Stream>();

/**
 * The request body a stream carries, failing rather than ending when the stream was reset before the client's
 * END_STREAM: Deno's node:http2 ends the readable side of a reset stream as if the body were whole, which would send a
 * backend a truncated request as a complete one.
 */
function requestBody(stream: ServerHttp2Stream): BodyStream {
  return {
    async *[Symbol.asyncIterator]() {
      for await (const chunk of stream) yield chunk as Uint8Array;
      if (cut.has(stream) || stream.aborted || (stream.rstCode !== undefined && stream.rstCode !== constants.NGHTTP2_NO_ERROR)) {
        throw new Error('the request stream was reset before its body ended');
      }
    },
    destroy: (error) => stream.destroy(error),
  };
}

/** The request a stream carries, as the gateway takes it. */
export function streamRequest(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, scheme: 'http' | 'https', target: { path: string; query: string }): GatewayRequest {
  const map: HeaderMap = new Map();
  for (const name in headers) {
    if (name.charCodeAt(0) === 58 /* ':' */) continue;
    const value = headers[name];
    if (value === undefined) continue;
    map.set(name, typeof value === 'string' ? [value] : value);
  }
  // What HTTP/1.1 carries in Host, HTTP/2 carries in :authority (RFC 9113, 8.3.1).
  const authority = headers[':authority'];
  if (!map.has('host') && authority) map.set('host', [authority]);
  return {
    method: headers[':method'] ?? 'GET',
    path: target.path,
    query: target.query,
    headers: map,
    remoteAddress: stream.session?.socket?.remoteAddress ?? '',
    scheme,
    protocol: 'HTTP/2',
    body: stream.endAfterHeaders ? null : requestBody(stream),
  };
}

/** The response head in node:http2's form: connection-specific fields left out. */
function responseHead(status: number, headers: HeaderMap): Record<string, string | string[] | number> {
  const head: Record<string, string | string[] | number> = { ':status': status };
  for (const [name, values] of headers) {
    if (CONNECTION_SPECIFIC.has(name)) continue;
    head[name] = values.length === 1 ? values[0]! : values;
  }
  return head;
}

/**
 * Writes the response `pending` resolves with on `stream`: the buffered body, or the backend's body as it arrives with
 * its trailers when the client asked for them (`te: trailers`, as gRPC clients do).
 */
export async function answerStream(stream: ServerHttp2Stream, pending: Promise<GatewayResponse>, wantsTrailers: boolean, drain: () => void): Promise<void> {
  let res: GatewayResponse;
  try {
    res = await pending;
  } catch {
    // The handler turns every failure into a response; reaching here is a gateway bug: answer rather than hang.
    if (!stream.destroyed && !stream.headersSent) stream.respond({ ':status': 500 }, { endStream: true });
    return;
  }
  const { finished: report } = res;
  // A gRPC answer in one HEADERS frame (trailers-only: grpc-status in the head) stays one: its body is empty.
  const body = res.stream && res.headers.has('grpc-status') ? (res.stream.destroy(), null) : res.stream;
  if (report) stream.once('close', () => report(body ? body.bytesReceived : (res.body?.byteLength ?? 0)));
  if (stream.destroyed) {
    body?.destroy();
    return;
  }
  // A body the client is still sending that nobody will read.
  if (!stream.readableEnded) drain();
  const empty = !body && !res.body?.byteLength;
  const trailers = body !== null && wantsTrailers;
  try {
    stream.respond(responseHead(res.status, res.headers), { endStream: empty, waitForTrailers: trailers });
  } catch {
    // A head node:http2 will not write: the stream is reset rather than the process brought down.
    body?.destroy();
    stream.close(constants.NGHTTP2_INTERNAL_ERROR);
    return;
  }
  if (body) {
    if (trailers) stream.once('wantTrailers', () => stream.sendTrailers(trailerHead(body.trailers)));
    body.sendTo(stream);
  } else if (!empty) stream.end(res.body);
}

function trailerHead(trailers: HeaderMap | null): Record<string, string | string[]> {
  const head: Record<string, string | string[]> = {};
  if (trailers) for (const [name, values] of trailers) if (!CONNECTION_SPECIFIC.has(name)) head[name] = values.length === 1 ? values[0]! : values;
  return head;
}
