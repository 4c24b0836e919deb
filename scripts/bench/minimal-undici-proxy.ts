// Peer (c) of `npm run bench:proxy`: the least a Node reverse proxy can do. A `node:http` server hands each request
// to one undici 7 `Pool` (64 keep-alive connections to the backend) and streams the response body back as it
// arrives. No routing, no policies, no logging: a floor for what any Node gateway, Gatehouse included, can reach.
//
//   BENCH_PORT      port to listen on, 127.0.0.1 (required)
//   BENCH_BACKEND   backend origin, e.g. http://127.0.0.1:3000 (required)

import { createServer, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import { Pool } from 'undici';

const port = Number(process.env.BENCH_PORT);
const backend = process.env.BENCH_BACKEND;
if (!Number.isInteger(port) || port <= 0 || !backend) throw new Error('BENCH_PORT and BENCH_BACKEND are required');

const pool = new Pool(backend, { connections: 64, pipelining: 1 });

// Hop-by-hop headers (RFC 9110 §7.6.1) stay on their own connection; undici also refuses some of them.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'expect']);

function requestHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
  }
  return out;
}

function responseHeaders(headers: Record<string, string | string[] | undefined>): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
  }
  return out;
}

const server = createServer((req, res) => {
  const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
  pool
    .stream(
      { path: req.url ?? '/', method: (req.method ?? 'GET') as 'GET', headers: requestHeaders(req.headers), body: hasBody ? req : null },
      ({ statusCode, headers }) => {
        res.writeHead(statusCode, responseHeaders(headers));
        return res;
      },
    )
    .catch((error: unknown) => {
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`bad gateway: ${(error as Error).message}\n`);
      } else {
        res.destroy(error as Error);
      }
    });
});
server.keepAliveTimeout = 65_000;
server.listen(port, '127.0.0.1', () => process.stdout.write(`listening ${port}\n`));

const stop = () => {
  server.close();
  void pool.close().then(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
