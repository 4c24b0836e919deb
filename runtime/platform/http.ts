// The one place where Node and Deno differ for serving HTTP.
//
// Both run the same Hono app. On Node (@hono/node-server) the gateway's hot path reads the raw IncomingMessage and
// writes the ServerResponse itself, piping undici's body straight through (no web-stream conversions); on Deno
// (Deno.serve) it works from the fetch Request and answers with a fetch Response.

import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Hono } from 'hono';
import type { BodyStream, HeaderMap } from '../pipeline/exchange.ts';
import type { GatewayRequest, GatewayResponse } from '../server/gateway.ts';

export const isDeno = typeof (globalThis as { Deno?: unknown }).Deno !== 'undefined';

export interface NodeBindings {
  incoming: IncomingMessage;
  outgoing: ServerResponse;
}

export interface DenoBindings {
  remoteAddress: string;
}

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
  const hasBody = headers.has('content-length') ? headers.get('content-length')![0] !== '0' : headers.has('transfer-encoding');
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

function headerObject(headers: HeaderMap): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, values] of headers) out[name] = values.length === 1 ? values[0]! : values;
  return out;
}

async function writeNode(incoming: IncomingMessage, outgoing: ServerResponse, res: GatewayResponse): Promise<void> {
  // A body the client is still sending but nobody will read (a policy answered first, or it was over the limit):
  // discard it while answering, and close the connection afterwards rather than wait for the rest.
  const unread = !incoming.readableEnded && !incoming.destroyed;
  if (unread) {
    res.headers.set('connection', ['close']);
    incoming.resume();
  }
  outgoing.writeHead(res.status, headerObject(res.headers));
  if (res.stream) {
    try {
      await pipeline(res.stream as unknown as Readable, outgoing);
    } catch {
      // The backend or the client went away mid-body: the client sees a truncated response; nothing else to do.
      outgoing.destroy();
    }
  } else {
    outgoing.end(res.body ?? undefined);
  }
}

function webResponse(res: GatewayResponse): Response {
  const headers = new Headers();
  for (const [name, values] of res.headers) for (const v of values) headers.append(name, v);
  let body: BodyInit | null = null;
  if (res.stream) body = Readable.toWeb(Readable.from(res.stream)) as unknown as ReadableStream<Uint8Array>;
  else if (res.body) body = res.body as Uint8Array<ArrayBuffer>;
  return new Response(body, { status: res.status, headers });
}

/**
 * Adapts a gateway handler to the runtime's request objects. On Node the response is written directly and Hono is
 * told so; on Deno a Response is returned.
 */
export async function serveGatewayRequest(
  env: unknown,
  request: Request,
  scheme: 'http' | 'https',
  handle: (req: GatewayRequest) => Promise<GatewayResponse>,
): Promise<Response> {
  const node = env as Partial<NodeBindings>;
  if (node.incoming && node.outgoing) {
    const res = await handle(nodeRequest(node.incoming, scheme));
    await writeNode(node.incoming, node.outgoing, res);
    return alreadySent!;
  }
  const res = await handle(webRequest(request, (env as DenoBindings).remoteAddress ?? '', scheme));
  return webResponse(res);
}

// --- listening -----------------------------------------------------------------------------------------------------

interface DenoServe {
  serve(
    options: { port: number; hostname: string; cert?: string; key?: string; onListen?: (a: { port: number }) => void },
    handler: (req: Request, info: { remoteAddr: { hostname: string } }) => Response | Promise<Response>,
  ): { finished: Promise<void>; shutdown(): Promise<void>; addr: { port: number } };
}

/** @hono/node-server's marker for "the handler wrote the response itself"; loaded with the Node server. */
let alreadySent: Response | undefined;

export async function listen(app: Hono, options: ListenOptions): Promise<Listener> {
  if (isDeno) {
    const deno = (globalThis as unknown as { Deno: DenoServe }).Deno;
    const server = deno.serve(
      { port: options.port, hostname: options.hostname, ...options.tls, onListen: () => undefined },
      (req, info) => app.fetch(req, { remoteAddress: info.remoteAddr.hostname } satisfies DenoBindings),
    );
    return { port: server.addr.port, close: () => server.shutdown() };
  }
  const { serve } = await import('@hono/node-server');
  alreadySent ??= (await import('@hono/node-server/utils/response')).RESPONSE_ALREADY_SENT;
  const https = options.tls ? await import('node:https') : null;
  return new Promise((resolve, reject) => {
    const server = serve(
      {
        fetch: app.fetch,
        port: options.port,
        hostname: options.hostname,
        ...(https && options.tls
          ? { createServer: https.createServer, serverOptions: { cert: options.tls.cert, key: options.tls.key } }
          : {}),
      },
      (info) =>
        resolve({
          port: info.port,
          close: () =>
            new Promise<void>((done) => {
              server.close(() => done());
              // Idle keep-alive connections would hold close() open; busy ones finish their request first.
              (server as unknown as { closeIdleConnections?: () => void }).closeIdleConnections?.();
            }),
        }),
    );
    server.once('error', reject);
  });
}
