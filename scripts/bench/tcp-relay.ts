// A floor for `npm run bench:protocols`: a bare TCP relay in Node (one process, `socket.pipe` both ways, nothing read),
// what any Node proxy of WebSocket bytes costs at least. Prints `listening <port>` once ready.
//
//   BENCH_TARGET_PORT   the backend's port on 127.0.0.1 (required)

import { connect, createServer } from 'node:net';

const target = Number(process.env.BENCH_TARGET_PORT);
const server = createServer((client) => {
  client.setNoDelay(true);
  const backend = connect(target, '127.0.0.1');
  backend.setNoDelay(true);
  client.pipe(backend).pipe(client);
  client.on('error', () => backend.destroy());
  backend.on('error', () => client.destroy());
});
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`listening ${typeof address === 'object' && address ? address.port : 0}\n`);
});
