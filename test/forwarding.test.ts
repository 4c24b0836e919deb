// What the gateway passes between a client and a backend, seen from both ends with raw sockets: the backend's
// hop-by-hop headers stop at the gateway, and a body declared too large is refused before the backend is contacted.

import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startGatewayProcess, tempDir, writeConfig, type GatewayProcess } from './support/gateway-process.ts';
import { HOP_BY_HOP_RESPONSE, startRawBackend, type RawBackend } from './support/raw-backend.ts';

const LIMIT = 65536;

/** Sends `text` on a new connection to the gateway and resolves with the response head (status line and headers). */
function rawRequest(port: number, text: string): Promise<{ status: number; headers: [string, string][]; raw: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(text));
    let buffered = '';
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('latin1');
      const end = buffered.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.destroy();
      const [statusLine, ...lines] = buffered.slice(0, end).split('\r\n');
      const headers = lines.map((l) => {
        const colon = l.indexOf(':');
        return [l.slice(0, colon).toLowerCase(), l.slice(colon + 1).trim()] as [string, string];
      });
      resolve({ status: Number(statusLine!.split(' ')[1]), headers, raw: buffered });
    });
    socket.on('error', reject);
    socket.on('close', () => reject(new Error(`connection closed before a response head: ${JSON.stringify(buffered)}`)));
  });
}


const CHUNKED_RESPONSE =
  'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n';

/** Headers a backend sends more than once: each line must reach the client, in order. */
const REPEATED_RESPONSE =
  'HTTP/1.1 200 OK\r\nSet-Cookie: a=1; Path=/\r\nX-Listed: first\r\nSet-Cookie: b=2; Path=/\r\nX-Listed: second\r\nContent-Length: 2\r\n\r\nok';

let backend: RawBackend;
let gw: GatewayProcess;

before(async () => {
  backend = await startRawBackend((head) => {
    if (head.startsWith('GET /chunked')) return CHUNKED_RESPONSE;
    if (head.startsWith('GET /hops')) return HOP_BY_HOP_RESPONSE;
    if (head.startsWith('GET /repeated')) return REPEATED_RESPONSE;
    return 'HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nreceived';
  });
  const config = writeConfig(
    tempDir(),
    'gateway.yaml',
    `
version: 1
settings:
  maxRequestBodyBytes: ${LIMIT}
apis:
  - id: raw
    pathPrefix: /
    backend: { url: "http://127.0.0.1:${backend.port}" }
`,
  );
  gw = await startGatewayProcess({ config });
});

after(async () => {
  await gw?.stop();
  backend?.server.close();
});

describe('forwarding', () => {
  test("the backend's hop-by-hop headers, and those its Connection names, do not reach the client; the rest do", async () => {
    const res = await rawRequest(gw.httpPort, 'GET /hops HTTP/1.1\r\nHost: gw.test\r\n\r\n');
    assert.equal(res.status, 200, res.raw);
    const names = res.headers.map(([name]) => name);
    for (const name of ['x-backend-hop', 'proxy-connection', 'proxy-authenticate', 'te', 'trailer', 'upgrade']) {
      assert.ok(!names.includes(name), `${name} reached the client: ${res.raw}`);
    }
    // The gateway's own server writes Connection and Keep-Alive for its hop to the client: never the backend's values.
    for (const [name, value] of res.headers) {
      if (name === 'connection') assert.doesNotMatch(value, /x-backend-hop/i, res.raw);
      if (name === 'keep-alive') assert.doesNotMatch(value, /timeout=77|max=7/, res.raw);
    }
    assert.ok(res.headers.some(([name, value]) => name === 'x-end-to-end' && value === 'kept'), res.raw);
  });

  test('a header the backend sends several times reaches the client on as many lines, in order', async () => {
    const { status, headers } = await rawRequest(gw.httpPort, 'GET /repeated HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.equal(status, 200);
    assert.deepEqual(headers.filter(([n]) => n === 'set-cookie').map(([, v]) => v), ['a=1; Path=/', 'b=2; Path=/']);
    const listed = headers.filter(([n]) => n === 'x-listed').map(([, v]) => v);
    // One line a value, or one line with the values joined: both say the same (RFC 9110, 5.3); set-cookie may not join.
    assert.ok(
      JSON.stringify(listed) === JSON.stringify(['first', 'second']) || JSON.stringify(listed) === JSON.stringify(['first, second']),
      `x-listed: ${JSON.stringify(listed)}`,
    );
  });

  test("the backend's Transfer-Encoding is not passed on: the gateway frames the body itself, once", async () => {
    const res = await rawRequest(gw.httpPort, 'GET /chunked HTTP/1.1\r\nHost: gw.test\r\n\r\n');
    assert.equal(res.status, 200, res.raw);
    const framing = res.headers.filter(([name]) => name === 'transfer-encoding' || name === 'content-length');
    assert.equal(framing.length, 1, `one framing header: ${res.raw}`);
  });

  test('a declared Content-Length over the limit is answered 413 before the body is sent, and the backend is never contacted', async () => {
    const connectionsBefore = backend.connections;
    const headsBefore = backend.requestHeads.length;
    // Only the head is sent: the answer has to come from the declared length alone. Were the request forwarded, the
    // backend would see a connection or a head first (the gateway waits on a body that never comes).
    const contacted = backend.nextConnection().then(() => 'the backend was contacted');
    const answer = rawRequest(gw.httpPort, `POST /upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: ${LIMIT + 1}\r\n\r\n`);
    const first = await Promise.race([answer, contacted]);
    assert.notEqual(first, 'the backend was contacted');
    const res = await answer;
    assert.equal(res.status, 413, res.raw);
    assert.equal(backend.connections, connectionsBefore, 'no connection reached the backend');
    assert.equal(backend.requestHeads.length, headsBefore, 'no request reached the backend');
  });

  test('a declared Content-Length at the limit is forwarded', async () => {
    const body = 'x'.repeat(LIMIT);
    const res = await rawRequest(gw.httpPort, `POST /upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: ${LIMIT}\r\n\r\n${body}`);
    assert.equal(res.status, 200, res.raw);
    assert.match(backend.requestHeads.at(-1)!, /^POST \/upload /);
  });
});
