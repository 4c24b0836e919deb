// The one place where Node and Deno differ for serving HTTP. Everything above it speaks fetch-style
// Request/Response (Hono's `app.fetch`), so the rest of the runtime runs unchanged on both.

export type FetchHandler = (request: Request, info: { remoteAddress: string }) => Response | Promise<Response>;

export interface RunningServer {
  port: number;
  close(): Promise<void>;
}

interface DenoLike {
  serve(
    options: { port: number; hostname: string; onListen?: (addr: { port: number }) => void },
    handler: (req: Request, info: { remoteAddr: { hostname: string } }) => Response | Promise<Response>,
  ): { finished: Promise<void>; shutdown(): Promise<void>; addr: { port: number } };
}

export const isDeno = typeof (globalThis as { Deno?: unknown }).Deno !== 'undefined';

export async function serve(handler: FetchHandler, port: number, hostname = '0.0.0.0'): Promise<RunningServer> {
  if (isDeno) {
    const deno = (globalThis as unknown as { Deno: DenoLike }).Deno;
    const server = deno.serve({ port, hostname, onListen: () => undefined }, (req, info) =>
      handler(req, { remoteAddress: info.remoteAddr.hostname }),
    );
    return { port: server.addr.port, close: () => server.shutdown() };
  }
  const { serve: nodeServe } = await import('@hono/node-server');
  return new Promise((resolve) => {
    const server = nodeServe(
      {
        port,
        hostname,
        fetch: (req: Request, env: { incoming?: { socket?: { remoteAddress?: string } } }) =>
          handler(req, { remoteAddress: env.incoming?.socket?.remoteAddress ?? '' }),
      },
      (info) =>
        resolve({
          port: info.port,
          close: () => new Promise<void>((done) => server.close(() => done())),
        }),
    );
  });
}
