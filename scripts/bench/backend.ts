// The backend of `npm run bench:proxy`: a plain `node:http` server on 127.0.0.1 answering every request with the
// same small JSON body, run as its own process so it never shares an event loop with a proxy or the load generator.
//
//   BENCH_PORT      port to listen on (required)
//   BENCH_NAME      when set, every answer carries `x-backend: <name>` (scripts/scenario-fleet.ts tells its two apart)
//
// A request with `x-bench-echo: 1` is answered with the path and headers it arrived with (JSON); the harness sends one
// per target to check what a proxy forwards (headers set by inbound policies, a rewritten path). It is never part of a
// measured run. A path under `/gzip/` is answered with the same body gzipped (compressed once, at start), with
// `Content-Encoding: gzip`: the bench:proxy targets that measure compressed bodies.

import { createServer } from 'node:http';
import { gzipSync } from 'node:zlib';

const port = Number(process.env.BENCH_PORT);
if (!Number.isInteger(port) || port <= 0) throw new Error('BENCH_PORT must name a port');

const name = process.env.BENCH_NAME;
const body = Buffer.from(JSON.stringify({ id: 42, name: 'gatehouse bench', ok: true, tags: ['a', 'b', 'c'] }));
const gzipped = gzipSync(body);

const server = createServer((req, res) => {
  if (req.headers['x-bench-echo'] === '1') {
    const echo = Buffer.from(JSON.stringify({ url: req.url, headers: req.headers }));
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': echo.length });
    res.end(echo);
    return;
  }
  // Drain any request body before answering, so keep-alive connections stay usable.
  req.resume();
  req.on('end', () => {
    const gzip = req.url!.startsWith('/gzip/');
    const sent = gzip ? gzipped : body;
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': sent.length,
      ...(gzip ? { 'content-encoding': 'gzip' } : {}),
      ...(name ? { 'x-backend': name } : {}),
    });
    res.end(sent);
  });
});
// Longer than any proxy's idle timeout, so the proxies close idle connections, not the backend.
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;
server.listen(port, '127.0.0.1', () => process.stdout.write(`listening ${port}\n`));

const stop = () => server.close(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
