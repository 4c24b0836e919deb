// The HTTP server: the data plane's and the admin listeners.
//
// The data plane listens with node:http on both runtimes (Deno's node:http is a server of its own, not Deno.serve): the
// gateway reads the IncomingMessage and writes the ServerResponse itself, undici's body chunks written straight into
// it. Fixed routes (the probe path) go through a Hono app. (Measured: Hono's request wrapping cost about 12% of proxy
// throughput on Node; see BENCHMARKS.md.) Deno.serve is not used on Deno: measured against hostile clients, it
// has no header, request or idle timeout (a client sending one header byte at a time kept its connection for as long as
// it liked), no connection limit, and parses differently from Node (dot segments resolved before the gateway sees the
// path, bare LF line ends and requests without Host accepted, heads over 64 KiB answered 400). Deno's node:http answers
// every one of those as Node does, at the same throughput through the gateway (docs/operations.md, "Hostile input").
// WebSocket upgrades use node:http's 'upgrade' event on both runtimes too: Deno's node:http emits it with the
// connection's socket and the bytes after the head, as Node does (checked with a raw client and with `ws`, on Deno
// 2.9), so no adapter is needed for them. The admin listener is a Hono app on node:http too (@hono/node-server
// replaces the global Request and Response, which Deno.serve in the same process then fails to answer with).

import { ServerResponse, type IncomingMessage } from 'node:http';
import { constants, type IncomingHttpHeaders } from 'node:http2';
import type { Server as NetServer, Socket } from 'node:net';
import type { Duplex, Readable } from 'node:stream';
import { finished } from 'node:stream';
import type { Hono } from 'hono';
import { headerList, type HeaderMap } from '../policy-host/exchange.ts';
import { problem, type GatewayHandler, type GatewayRequest, type GatewayResponse, type UpgradeSocket } from '../gateway/messages.ts';
import { DEFAULT_HTTP2, DEFAULT_HTTP_LIMITS, type Http2Protocols, type HttpLimits } from './http-limits.ts';
import { answerStream, http2Sessions, streamRequest, type Http2Sessions } from './http2-server.ts';

export interface ListenOptions {
  port: number;
  hostname: string;
  tls?: { cert: string; key: string };
  /** Timeouts and sizes allowed to clients (node:http listeners); DEFAULT_HTTP_LIMITS when absent. */
  limits?: HttpLimits;
}

export interface Listener {
  port: number;
  /** Stops accepting connections and resolves when the open ones have closed. */
  close(): Promise<void>;
}

export interface DataPlaneOptions extends ListenOptions {
  /** Paths served by `app` (exact match); every other request goes to `handle`. */
  fixedPaths: ReadonlySet<string>;
  app: Hono;
  handle: GatewayHandler;
  /** WebSocket handshakes; absent: answered as plain requests. */
  upgrade?: UpgradeHandler;
  /** Where HTTP/2 is spoken besides HTTP/1.1 (DEFAULT_HTTP2 when absent): on HTTPS through ALPN, on HTTP with prior knowledge. */
  http2?: Http2Protocols;
  /** Told when an HTTP/2 connection is closed for abuse (rapid reset), with why and the client's address. */
  onHttp2Cut?: (reason: string, client: string) => void;
}

/** Takes an upgrade's socket (answers null: it wrote the 101) or answers the response to write instead. */
export type UpgradeHandler = (req: GatewayRequest, client: UpgradeSocket) => Promise<GatewayResponse | null>;

// --- reading a request ---------------------------------------------------------------------------------------------

/**
 * The path and query of a request target, and the authority of an absolute-form one (`GET http://host/path`), which
 * takes the place of the Host header (RFC 9112, 3.2.2). A fragment is not part of a request target: it is dropped
 * rather than sent to a backend.
 */
export function readTarget(target: string): { path: string; query: string; authority: string | null } {
  let rest = target;
  let authority: string | null = null;
  const absolute = /^https?:\/\/([^/?#]*)/i.exec(rest);
  if (absolute) {
    authority = absolute[1]!;
    rest = rest.slice(absolute[0].length);
    if (!rest.startsWith('/')) rest = `/${rest}`;
  }
  const hash = rest.indexOf('#');
  if (hash >= 0) rest = rest.slice(0, hash);
  const q = rest.indexOf('?');
  return q < 0 ? { path: rest, query: '', authority } : { path: rest.slice(0, q), query: rest.slice(q + 1), authority };
}

function nodeRequest(incoming: IncomingMessage, scheme: 'http' | 'https'): GatewayRequest {
  const headers: HeaderMap = new Map();
  const raw = incoming.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const existing = headers.get(name);
    if (existing) existing.push(raw[i + 1]!);
    else headers.set(name, [raw[i + 1]!]);
  }
  const { path, query, authority } = readTarget(incoming.url ?? '/');
  if (authority !== null) headers.set('host', [authority]);
  const length = headers.get('content-length');
  const hasBody = length ? length[0] !== '0' : headers.has('transfer-encoding');
  return {
    method: incoming.method ?? 'GET',
    path,
    query,
    headers,
    remoteAddress: incoming.socket.remoteAddress ?? '',
    scheme,
    protocol: incoming.httpVersion === '1.0' ? 'HTTP/1.0' : 'HTTP/1.1',
    body: hasBody ? incoming : null,
  };
}

// --- writing a response --------------------------------------------------------------------------------------------

function serveNode(incoming: IncomingMessage, outgoing: ServerResponse, scheme: 'http' | 'https', handle: GatewayHandler): Promise<void> {
  return answer(incoming, outgoing, handle(nodeRequest(incoming, scheme)));
}

/**
 * An upgrade to WebSocket: the gateway takes the socket (null: it wrote the 101 and pipes bytes) or gives the response
 * to write on it instead (a refusal), after which the connection closes.
 */
function serveUpgrade(
  incoming: IncomingMessage,
  outgoing: ServerResponse,
  client: UpgradeSocket,
  scheme: 'http' | 'https',
  upgrade: UpgradeHandler,
): Promise<void> {
  const answered = upgrade(nodeRequest(incoming, scheme), client).then((res) => {
    if (res === null) outgoing.detachSocket(client.socket as Socket);
    return res;
  });
  return answer(incoming, outgoing, answered);
}

/** Writes the response `pending` resolves with to `outgoing` (nothing for null: the socket was taken). */
async function answer(incoming: IncomingMessage, outgoing: ServerResponse, pending: Promise<GatewayResponse | null>): Promise<void> {
  let res: GatewayResponse | null;
  try {
    res = await pending;
  } catch {
    // The handler turns every failure into a response; reaching here is a gateway bug: answer rather than hang.
    if (!outgoing.headersSent) outgoing.writeHead(500, { 'content-type': 'text/plain' });
    outgoing.end();
    return;
  }
  if (res === null) return;
  // A body the client is still sending but nobody will read (a policy answered first, or it was over the limit) is
  // read and discarded: closing on unread data makes the kernel reset the connection, and the client may lose the
  // very response that explains why. Past DRAIN_LIMIT_BYTES or DRAIN_LIMIT_MS the connection is cut all the same.
  // (`complete` is true once the whole message arrived, read or not; a bodiless GET is complete at once, and Node
  // discards what is left of a complete message itself.)
  if (!incoming.complete && !incoming.destroyed) drain(incoming, () => incoming.socket.destroy());
  if (res.finished) {
    const { stream, body, finished: report } = res;
    // finished() also reports a response whose connection was already gone.
    finished(outgoing, () => report(stream ? stream.bytesReceived : (body?.byteLength ?? 0)));
  }
  try {
    outgoing.writeHead(res.status, headerList(res.headers));
  } catch (err) {
    // A head Node will not write (policies' and backends' headers are checked before, so this is not expected): the
    // connection is cut rather than the process brought down by an unhandled rejection.
    res.stream?.destroy();
    outgoing.destroy(err as Error);
    return;
  }
  if (res.stream) res.stream.sendTo(outgoing);
  else outgoing.end(res.body ?? undefined);
}

const DRAIN_LIMIT_BYTES = 16 * 1024 * 1024;
const DRAIN_LIMIT_MS = 10_000;

/** Reads and discards what is left of a request body; `cut` ends the exchange past the limits. */
function drain(incoming: Readable, cut: () => void): void {
  let drained = 0;
  const timer = setTimeout(cut, DRAIN_LIMIT_MS);
  timer.unref?.();
  incoming.on('data', (chunk: Buffer) => {
    drained += chunk.length;
    if (drained > DRAIN_LIMIT_BYTES) cut();
  });
  incoming.once('end', () => clearTimeout(timer));
  incoming.once('close', () => clearTimeout(timer));
  incoming.resume();
}

function pathOf(target: string): string {
  const q = target.indexOf('?');
  return q < 0 ? target : target.slice(0, q);
}

// --- listening -----------------------------------------------------------------------------------------------------

type NodeListener = (req: IncomingMessage, res: ServerResponse) => void;
type UpgradeListener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

/** The client preface an HTTP/2 connection with prior knowledge opens with (RFC 9113, 3.4). */
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

async function listenNode(listener: NodeListener, options: ListenOptions, onUpgrade?: UpgradeListener, h2?: Http2Sessions): Promise<Listener> {
  const limits = options.limits ?? DEFAULT_HTTP_LIMITS;
  const serverOptions = {
    maxHeaderSize: limits.maxHeaderBytes,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    // How often the two timeouts above are checked (Node's default, 30 s, would let a slow client keep its connection
    // up to 30 s past its timeout).
    connectionsCheckingInterval: Math.min(5000, Math.max(100, Math.floor(limits.headersTimeoutMs / 4))),
  };
  const http1 =
    options.tls && !h2
      ? (await import('node:https')).createServer({ cert: options.tls.cert, key: options.tls.key, ...serverOptions }, listener)
      : (await import('node:http')).createServer(serverOptions, listener);
  http1.keepAliveTimeout = limits.keepAliveTimeoutMs;
  if (onUpgrade) http1.on('upgrade', onUpgrade);
  // With HTTP/2, a front server takes the connections and hands each to the protocol it speaks; node:http serves those
  // that speak HTTP/1.1 with every limit above, as it does when it listens itself.
  const server = h2 ? await frontServer(options, limits, http1, h2) : http1;
  // Connections past the limit are closed as they arrive.
  if (limits.maxConnections > 0) server.maxConnections = limits.maxConnections;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.hostname, () => {
      // node:http starts checking its timeouts when it listens; fed by the front server, it is told it does.
      if (server !== http1) http1.emit('listening');
      const address = server.address();
      resolve({
        port: typeof address === 'object' && address ? address.port : options.port,
        close: async () => {
          await Promise.all([
            new Promise<void>((done) => {
              server.close(() => done());
              // Idle keep-alive connections would hold close() open; busy ones finish their request first.
              if (server === http1) http1.closeIdleConnections();
              else http1.close(() => undefined);
            }),
            h2?.close(),
          ]);
        },
      });
    });
  });
}

/**
 * The server a listener with HTTP/2 listens with: on TLS, ALPN chooses (`h2`, else HTTP/1.1); on cleartext, a
 * connection that opens with the HTTP/2 preface goes to HTTP/2 and any other to node:http.
 */
async function frontServer(options: ListenOptions, limits: HttpLimits, http1: NetServer, h2: Http2Sessions): Promise<NetServer> {
  if (options.tls) {
    const { createServer } = await import('node:tls');
    const server = createServer({ cert: options.tls.cert, key: options.tls.key, ALPNProtocols: ['h2', 'http/1.1'], handshakeTimeout: limits.headersTimeoutMs }, (socket) => {
      if (socket.alpnProtocol === 'h2') h2.accept(socket);
      else http1.emit('connection', socket);
    });
    // A failed handshake is the client's problem; the socket is closed by node:tls.
    server.on('tlsClientError', () => undefined);
    return server;
  }
  const { createServer } = await import('node:net');
  return createServer((socket) => {
    socket.on('error', () => socket.destroy());
    let seen = Buffer.alloc(0);
    // A client that sends too little to tell is held no longer than one slow to send its request head.
    const timer = setTimeout(() => socket.destroy(), limits.headersTimeoutMs);
    socket.once('close', () => clearTimeout(timer));
    const sniff = () => {
      for (let chunk = socket.read() as Buffer | null; chunk; chunk = socket.read() as Buffer | null) seen = Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, H2_PREFACE.length);
      const h2Sofar = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      // Undecided until the bytes so far could begin either (an HTTP/1.1 request line never begins with "PRI *").
      if (h2Sofar && n < H2_PREFACE.length) return;
      socket.off('readable', sniff);
      clearTimeout(timer);
      socket.unshift(seen);
      if (h2Sofar) h2.accept(socket);
      else http1.emit('connection', socket);
    };
    socket.on('readable', sniff);
  });
}
/** A plain Hono app (the admin listener), on node:http under both runtimes as well. */
export async function listen(app: Hono, options: ListenOptions): Promise<Listener> {
  const { getRequestListener } = await import('@hono/node-server');
  return listenNode(getRequestListener(app.fetch), options);
}

/** The data plane, on node:http under both runtimes: fixed paths through Hono, everything else straight to the gateway. */
export async function listenDataPlane(options: DataPlaneOptions): Promise<Listener> {
  const scheme = options.tls ? 'https' : 'http';
  const { fixedPaths, app, handle } = options;
  const { getRequestListener } = await import('@hono/node-server');
  const honoListener = getRequestListener(app.fetch);
  const serve = (req: IncomingMessage, res: ServerResponse) => {
    if (fixedPaths.has(pathOf(req.url ?? '/'))) void honoListener(req, res);
    else void serveNode(req, res, scheme, handle);
  };
  // With an 'upgrade' listener, node:http hands over every request with an Upgrade header, its socket taken from the
  // parser. A WebSocket handshake goes to the gateway; any other (h2c, which clients offer and servers may ignore) is
  // answered as the plain request it also is. Either way a response written on that socket closes it afterwards.
  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const res = new ServerResponse(req);
    res.shouldKeepAlive = false;
    res.assignSocket(socket as Socket);
    res.once('finish', () => socket.end());
    if (options.upgrade && /^websocket$/i.test(req.headers.upgrade ?? '')) {
      void serveUpgrade(req, res, { socket, head }, scheme, options.upgrade);
    } else if (req.headers['content-length'] && req.headers['content-length'] !== '0' || req.headers['transfer-encoding']) {
      // Its body, if any, came with the socket rather than through the request: not read here.
      const detail = `a request with a body asking to upgrade to ${req.headers.upgrade} is not served: send it without Upgrade`;
      void answer(req, res, Promise.resolve(problem(400, 'Bad Request', detail, req.headers['x-request-id']?.toString() ?? '')));
    } else serve(req, res);
  };
  const http2 = options.http2 ?? DEFAULT_HTTP2;
  const h2 = (options.tls ? http2.tls : http2.cleartext)
    ? http2Sessions(options.limits ?? DEFAULT_HTTP_LIMITS, (stream, headers) => {
        const target = readTarget(headers[':path'] ?? '');
        if (fixedPaths.has(target.path)) {
          void answerStream(stream, fixedPathResponse(app, headers, scheme), false, () => stream.resume());
          return;
        }
        const unread = () => drain(stream, () => stream.close(constants.NGHTTP2_CANCEL));
        void answerStream(stream, handle(streamRequest(stream, headers, scheme, target)), headers.te === 'trailers', unread);
      }, options.onHttp2Cut)
    : undefined;
  return listenNode(serve, options, onUpgrade, h2);
}

/** A fixed path's answer from the Hono app, for an HTTP/2 stream (probes: small bodies). */
async function fixedPathResponse(app: Hono, headers: IncomingHttpHeaders, scheme: 'http' | 'https'): Promise<GatewayResponse> {
  const res = await app.fetch(new Request(`${scheme}://${headers[':authority'] ?? 'localhost'}${headers[':path']}`, { method: headers[':method'] }));
  const map: HeaderMap = new Map();
  res.headers.forEach((value, name) => map.set(name, [value]));
  return { status: res.status, headers: map, body: new Uint8Array(await res.arrayBuffer()), stream: null };
}
