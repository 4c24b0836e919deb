// The one place where Node and Deno differ for serving HTTP.
//
// Fixed routes (the probe path, the admin listener) are Hono apps on both runtimes: @hono/node-server on Node,
// Deno.serve on Deno. Proxied traffic takes a direct path: on Node the gateway reads the IncomingMessage and writes the
// ServerResponse itself, undici's body chunks written straight into it; on Deno it works from the fetch Request and returns a
// fetch Response. (Measured: Hono's request wrapping cost about 12% of proxy throughput on Node; see BENCHMARKS.md.)

import type { IncomingMessage, ServerResponse } from 'node:http';
import { finished, Readable } from 'node:stream';
import type { Hono } from 'hono';
import { headerRecord, type BodyStream, type HeaderMap, type ResponseBody } from '../pipeline/exchange.ts';
import type { GatewayRequest, GatewayResponse } from '../server/gateway.ts';

export const isDeno = typeof (globalThis as { Deno?: unknown }).Deno !== 'undefined';

export interface ListenOptions {
  port: number;
  hostname: string;
  tls?: { cert: string; key: string };
}

export interface Listener {
  port: number;
  /** Stops accepting connections and resolves when the open ones have closed. */
  close(): Promise<void>;
}

export type GatewayHandler = (req: GatewayRequest) => Promise<GatewayResponse>;

export interface DataPlaneOptions extends ListenOptions {
  /** Paths served by `app` (exact match); every other request goes to `handle`. */
  fixedPaths: ReadonlySet<string>;
  app: Hono;
  handle: GatewayHandler;
}

// --- reading a request ---------------------------------------------------------------------------------------------

function splitTarget(target: string): { path: string; query: string } {
  const q = target.indexOf('?');
  return q < 0 ? { path: target, query: '' } : { path: target.slice(0, q), query: target.slice(q + 1) };
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
  const { path, query } = splitTarget(incoming.url ?? '/');
  const length = headers.get('content-length');
  const hasBody = length ? length[0] !== '0' : headers.has('transfer-encoding');
  return {
    method: incoming.method ?? 'GET',
    path,
    query,
    headers,
    remoteAddress: incoming.socket.remoteAddress ?? '',
    scheme,
    body: hasBody ? incoming : null,
  };
}

function webRequest(request: Request, remoteAddress: string, scheme: 'http' | 'https'): GatewayRequest {
  const headers: HeaderMap = new Map();
  request.headers.forEach((value, name) => {
    // fetch Headers join repeated fields with ", " (set-cookie aside, which requests do not carry).
    headers.set(name, [value]);
  });
  const url = new URL(request.url);
  return {
    method: request.method,
    path: url.pathname,
    query: url.search.slice(1),
    headers,
    remoteAddress,
    scheme,
    body: request.body ? (request.body as unknown as BodyStream) : null,
  };
}

// --- writing a response --------------------------------------------------------------------------------------------

async function serveNode(
  incoming: IncomingMessage,
  outgoing: ServerResponse,
  scheme: 'http' | 'https',
  handle: GatewayHandler,
): Promise<void> {
  let res: GatewayResponse;
  try {
    res = await handle(nodeRequest(incoming, scheme));
  } catch {
    // The handler turns every failure into a response; reaching here is a gateway bug: answer rather than hang.
    if (!outgoing.headersSent) outgoing.writeHead(500, { 'content-type': 'text/plain' });
    outgoing.end();
    return;
  }
  // A body the client is still sending but nobody will read (a policy answered first, or it was over the limit) is
  // read and discarded: closing on unread data makes the kernel reset the connection, and the client may lose the
  // very response that explains why. Past DRAIN_LIMIT_BYTES or DRAIN_LIMIT_MS the connection is cut all the same.
  // (`complete` is true once the whole message arrived, read or not; a bodiless GET is complete at once, and Node
  // discards what is left of a complete message itself.)
  if (!incoming.complete && !incoming.destroyed) drain(incoming);
  if (res.finished) {
    const { stream, body, finished: report } = res;
    // finished() also reports a response whose connection was already gone.
    finished(outgoing, () => report(stream ? stream.bytesReceived : (body?.byteLength ?? 0)));
  }
  try {
    outgoing.writeHead(res.status, headerRecord(res.headers));
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

function drain(incoming: IncomingMessage): void {
  let drained = 0;
  const cut = () => incoming.socket.destroy();
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

/**
 * `clientCloses`: the request asked to close the connection (`Connection: close`). Deno then closes it and says so
 * itself, so the gateway's own `Connection: close` (while shutting down) is left out rather than sent twice. Unasked,
 * Deno sends the gateway's header but keeps the connection open: the client, told to close, closes it.
 */
function webResponse(res: GatewayResponse, clientCloses: boolean): Response {
  const headers = new Headers();
  for (const [name, values] of res.headers) {
    if (clientCloses && name === 'connection') continue;
    for (const v of values) headers.append(name, v);
  }
  let body: BodyInit | null = null;
  const { stream, finished: report } = res;
  if (NULL_BODY_STATUSES.has(res.status)) {
    // fetch's Response refuses a body with these statuses (Node's ServerResponse drops it): the backend's is discarded.
    stream?.destroy();
    report?.(0);
  } else if (stream) {
    body = Readable.toWeb(Readable.from(report ? reportingEnd(stream, report) : stream)) as unknown as ReadableStream<Uint8Array>;
  } else {
    if (res.body) body = res.body as Uint8Array<ArrayBuffer>;
    // Deno sends a body it holds whole without telling when: the exchange ends as the response is handed over.
    report?.(res.body?.byteLength ?? 0);
  }
  return new Response(body, { status: res.status, headers });
}

const NULL_BODY_STATUSES = new Set([204, 205, 304]);

/** The stream's chunks, then `report` once it has ended, failed or been abandoned. */
async function* reportingEnd(stream: ResponseBody, report: (bytes: number) => void): AsyncGenerator<Uint8Array> {
  try {
    yield* stream;
  } finally {
    report(stream.bytesReceived);
  }
}

function pathOf(target: string): string {
  const q = target.indexOf('?');
  return q < 0 ? target : target.slice(0, q);
}

// --- listening -----------------------------------------------------------------------------------------------------

interface DenoServe {
  serve(
    options: { port: number; hostname: string; cert?: string; key?: string; onListen?: (a: { port: number }) => void },
    handler: (req: Request, info: { remoteAddr: { hostname: string } }) => Response | Promise<Response>,
  ): { finished: Promise<void>; shutdown(): Promise<void>; addr: { port: number } };
}

type NodeListener = (req: IncomingMessage, res: ServerResponse) => void;

async function listenNode(listener: NodeListener, options: ListenOptions): Promise<Listener> {
  const server = options.tls
    ? (await import('node:https')).createServer({ cert: options.tls.cert, key: options.tls.key }, listener)
    : (await import('node:http')).createServer(listener);
  server.keepAliveTimeout = 65_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.hostname, () => {
      const address = server.address();
      resolve({
        port: typeof address === 'object' && address ? address.port : options.port,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            // Idle keep-alive connections would hold close() open; busy ones finish their request first.
            server.closeIdleConnections();
          }),
      });
    });
  });
}

function listenDeno(
  handler: (req: Request, info: { remoteAddr: { hostname: string } }) => Response | Promise<Response>,
  options: ListenOptions,
): Listener {
  const deno = (globalThis as unknown as { Deno: DenoServe }).Deno;
  const server = deno.serve({ port: options.port, hostname: options.hostname, ...options.tls, onListen: () => undefined }, handler);
  return { port: server.addr.port, close: () => server.shutdown() };
}

/** A plain Hono app (the admin listener). */
export async function listen(app: Hono, options: ListenOptions): Promise<Listener> {
  if (isDeno) return listenDeno((req) => app.fetch(req), options);
  const { getRequestListener } = await import('@hono/node-server');
  return listenNode(getRequestListener(app.fetch), options);
}

/** The data plane: fixed paths through Hono, everything else straight to the gateway. */
export async function listenDataPlane(options: DataPlaneOptions): Promise<Listener> {
  const scheme = options.tls ? 'https' : 'http';
  const { fixedPaths, app, handle } = options;
  if (isDeno) {
    return listenDeno((req, info) => {
      if (fixedPaths.has(new URL(req.url).pathname)) return app.fetch(req);
      const clientCloses = /\bclose\b/i.test(req.headers.get('connection') ?? '');
      return handle(webRequest(req, info.remoteAddr.hostname, scheme)).then((res) => webResponse(res, clientCloses));
    }, options);
  }
  const { getRequestListener } = await import('@hono/node-server');
  const honoListener = getRequestListener(app.fetch);
  return listenNode((req, res) => {
    if (fixedPaths.has(pathOf(req.url ?? '/'))) void honoListener(req, res);
    else void serveNode(req, res, scheme, handle);
  }, options);
}
