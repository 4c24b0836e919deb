// Peer (d) of `npm run bench:proxy`: `@fastify/http-proxy` 11 on fastify 5, configured as its README shows, with the
// backend pool sized like the other Node proxies (undici, 64 connections, no pipelining). Logging off.
//
//   BENCH_PORT      port to listen on, 127.0.0.1 (required)
//   BENCH_BACKEND   backend origin, e.g. http://127.0.0.1:3000 (required)

import Fastify from 'fastify';
import httpProxy from '@fastify/http-proxy';

const port = Number(process.env.BENCH_PORT);
const backend = process.env.BENCH_BACKEND;
if (!Number.isInteger(port) || port <= 0 || !backend) throw new Error('BENCH_PORT and BENCH_BACKEND are required');

const app = Fastify({ logger: false, keepAliveTimeout: 65_000 });
await app.register(httpProxy, { upstream: backend, prefix: '/', undici: { connections: 64, pipelining: 1 } });
await app.listen({ port, host: '127.0.0.1' });
process.stdout.write(`listening ${port}\n`);

const stop = () => void app.close().then(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
