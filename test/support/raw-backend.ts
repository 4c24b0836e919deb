// A backend speaking raw HTTP/1.1 on 127.0.0.1, so that it can send any header (hop-by-hop ones included) and the test
// sees each request head exactly as it arrived.

import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';

/** A backend's answer carrying every hop-by-hop header, and one end-to-end header that must reach the client. */
export const HOP_BY_HOP_RESPONSE =
  'HTTP/1.1 200 OK\r\n' +
  'Content-Type: text/plain\r\n' +
  'Content-Length: 5\r\n' +
  // Values the gateway's own server never writes, so that one passed through cannot be mistaken for the gateway's.
  'Connection: keep-alive, X-Backend-Hop\r\n' +
  'Keep-Alive: timeout=77, max=7\r\n' +
  'X-Backend-Hop: named in Connection\r\n' +
  'Proxy-Connection: keep-alive\r\n' +
  'Proxy-Authenticate: Basic realm="backend"\r\n' +
  'TE: trailers\r\n' +
  'Trailer: X-Checksum\r\n' +
  'Upgrade: h2c\r\n' +
  'X-End-To-End: kept\r\n' +
  '\r\n' +
  'hello';

/** A backend speaking raw HTTP/1.1, so that it can send any header; it counts connections and request heads. */
export interface RawBackend {
  server: Server;
  port: number;
  connections: number;
  requestHeads: string[];
  /** Each request's body as it arrived (chunked framing included). */
  requestBodies: string[];
  /** Resolves at the next connection. */
  nextConnection(): Promise<void>;
}

/**
 * `answer` returns what to write back for a request head, or null when it deals with the socket itself (answers
 * later, hangs, cuts the connection).
 */
export async function startRawBackend(answer: (head: string, socket: Socket) => string | null): Promise<RawBackend> {
  const waiting: (() => void)[] = [];
  const backend: RawBackend = {
    server: createServer((socket: Socket) => {
      backend.connections++;
      waiting.splice(0).forEach((resolve) => resolve());
      let buffered = '';
      socket.on('data', (chunk: Buffer) => {
        buffered += chunk.toString('latin1');
        // Each complete request (head and body, as long or as chunked as it says) is answered in turn.
        for (;;) {
          const end = buffered.indexOf('\r\n\r\n');
          if (end < 0) return;
          const head = buffered.slice(0, end);
          const length = /\r\ncontent-length: *(\d+)/i.exec(head);
          const bodyStart = end + 4;
          let bodyEnd = bodyStart;
          if (length) bodyEnd = bodyStart + Number(length[1]);
          else if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
            const last = buffered.indexOf('0\r\n\r\n', bodyStart);
            bodyEnd = last < 0 ? Infinity : last + 5;
          }
          if (buffered.length < bodyEnd) return;
          backend.requestHeads.push(head);
          backend.requestBodies.push(buffered.slice(bodyStart, bodyEnd));
          buffered = buffered.slice(bodyEnd);
          const text = answer(head, socket);
          if (text !== null) socket.write(text);
        }
      });
      socket.on('error', () => {});
    }),
    port: 0,
    connections: 0,
    requestHeads: [],
    requestBodies: [],
    nextConnection: () => new Promise((resolve) => waiting.push(resolve)),
  };
  await new Promise<void>((r) => backend.server.listen(0, '127.0.0.1', r));
  backend.port = (backend.server.address() as AddressInfo).port;
  return backend;
}
