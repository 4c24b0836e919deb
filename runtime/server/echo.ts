// The built-in echo backend (`builtin:echo` in a configuration): answers with what it received, as JSON.
// A real HTTP server on 127.0.0.1, so the gateway proxies to it exactly as to any backend.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

const MAX_ECHOED_BODY = 64 * 1024;

export interface EchoBackend {
  url: string;
  close(): Promise<void>;
}

export function startEchoBackend(port = 0): Promise<EchoBackend> {
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_ECHOED_BODY) chunks.push(chunk);
    });
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://echo');
      const body = JSON.stringify({
        method: req.method,
        path: url.pathname,
        query: url.search.slice(1),
        headers: req.headers,
        bodyBytes: size,
        body: size > 0 ? Buffer.concat(chunks).toString('utf8') : undefined,
      });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const { port: bound } = server.address() as AddressInfo;
      resolve({
        url: `http://127.0.0.1:${bound}`,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeIdleConnections();
          }),
      });
    });
  });
}
