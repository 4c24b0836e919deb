// The backend of `npm run bench:protocols`: a `ws` server on 127.0.0.1 echoing every message, as its own process so it
// never shares an event loop with the gateway or the load generator. Prints `listening <port>` once ready.
//
//   BENCH_PORT      port to listen on (0: any)

import { WebSocketServer } from 'ws';

const server = new WebSocketServer({ port: Number(process.env.BENCH_PORT ?? 0), host: '127.0.0.1', perMessageDeflate: false });
server.on('connection', (socket) => socket.on('message', (data, isBinary) => socket.send(data as Buffer, { binary: isBinary })));
server.on('listening', () => process.stdout.write(`listening ${server.address().port}\n`));
