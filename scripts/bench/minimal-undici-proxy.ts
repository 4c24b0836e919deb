// Peer (c) of `npm run bench:proxy`: the least a Node reverse proxy can do. A `node:http` server hands each request
// to one undici 7 `Pool` (64 keep-alive connections to the backend) and streams the response body back as it
// arrives. No routing, no policies, no logging: a floor for what any Node gateway, Gatehouse included, can reach.
//
// With BENCH_DUTIES=1 it also does what issue 3 asks of every Gatehouse request that is not routing or policy work:
// X-Forwarded-For/Proto/Host and a request id to the backend (the client's x-request-id kept, else a UUID), the request
// id back to the client, and one JSON access log line a request on stdout (batched per event-loop turn). The benchmark
// runs it as a second reference, to separate what those duties cost from what Gatehouse's own machinery costs.
//
//   BENCH_PORT      port to listen on, 127.0.0.1 (required)
//   BENCH_BACKEND   backend origin, e.g. http://127.0.0.1:3000 (required)
//   BENCH_DUTIES    1: forwarding headers, request ids and an access log (default: none)

import { randomUUID } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { Pool } from 'undici';

const port = Number(process.env.BENCH_PORT);
const backend = process.env.BENCH_BACKEND;
if (!Number.isInteger(port) || port <= 0 || !backend) throw new Error('BENCH_PORT and BENCH_BACKEND are required');

const duties = process.env.BENCH_DUTIES === '1';
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

let pendingLog: string[] = [];
function accessLog(req: IncomingMessage, requestId: string, status: number, started: number): void {
  const line = {
    time: new Date().toISOString(),
    msg: 'request',
    requestId,
    method: req.method,
    path: req.url,
    status,
    durationMs: performance.now() - started,
    client: req.socket.remoteAddress,
  };
  if (pendingLog.push(JSON.stringify(line) + '\n') === 1) {
    setImmediate(() => {
      process.stdout.write(pendingLog.join(''));
      pendingLog = [];
    });
  }
}

const server = createServer((req, res) => {
  const started = performance.now();
  const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
  const headers = requestHeaders(req.headers);
  let requestId = '';
  if (duties) {
    requestId = (req.headers['x-request-id'] as string | undefined) ?? randomUUID();
    const priorFor = req.headers['x-forwarded-for'];
    headers['x-forwarded-for'] = priorFor ? `${priorFor}, ${req.socket.remoteAddress}` : (req.socket.remoteAddress ?? '');
    headers['x-forwarded-proto'] = 'http';
    if (req.headers.host) headers['x-forwarded-host'] = req.headers.host;
    headers['x-request-id'] = requestId;
  }
  pool
    .stream(
      { path: req.url ?? '/', method: (req.method ?? 'GET') as 'GET', headers, body: hasBody ? req : null },
      ({ statusCode, headers }) => {
        const out = responseHeaders(headers);
        if (duties) {
          out['x-request-id'] = requestId;
          accessLog(req, requestId, statusCode, started);
        }
        res.writeHead(statusCode, out);
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
