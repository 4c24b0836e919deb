// WebSocket pass-through, with a real gateway process (the suite's runtime), a `ws` echo server as the backend and
// `ws` clients: the handshake goes through the policies (key-auth refuses without a key, set-header adds to what the
// backend receives), then bytes go both ways; the limits (per API, idle timeout, message size) each meet a client
// that breaks them; a configuration change leaves open connections alone; SIGTERM closes them with 1001 after the delay.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import WebSocket, { WebSocketServer } from 'ws';
import { isDeno } from '../runtime/adapters/index.ts';
import { startGatewayProcess, tempDir, writeConfig, type GatewayProcess } from './support/gateway-process.ts';
import { send } from './support/requests.ts';
import { waitForAsync } from './support/wait.ts';

const KEY = 'ws-test-key-1';
const MIB = 1024 * 1024;

let backend: WebSocketServer;
let backendPort: number;
/** The upgrade requests the backend received, newest last. */
const handshakes: IncomingMessage[] = [];

before(async () => {
  backend = new WebSocketServer({ port: 0, host: '127.0.0.1', maxPayload: 256 * MIB, perMessageDeflate: false });
  await new Promise<void>((resolve) => backend.on('listening', () => resolve()));
  backendPort = backend.address().port;
  backend.on('connection', (socket, req) => {
    handshakes.push(req);
    // Echoes every message; `count` answers how many connections the backend holds.
    socket.on('message', (data, isBinary) => {
      if (!isBinary && data.toString() === 'count') socket.send(String(backend.clients.size));
      else socket.send(data as Buffer);
    });
  });
});

after(async () => {
  for (const c of backend.clients) c.terminate();
  await new Promise<void>((resolve) => backend.close(() => resolve()));
});

/** The test's configuration; `chatWebSocket` false: the chat API without its webSocket key. */
function configText(chatWebSocket = true): string {
  return `
version: 1
apis:
  - id: chat
    pathPrefix: /chat
    backend: { url: "http://127.0.0.1:${backendPort}" }
${chatWebSocket ? `    webSocket: { maxConnections: 600, maxMessageBytes: ${4 * MIB} }` : ''}
    policies:
      inbound:
        - policy: key-auth
          config: { keys: [{ id: tester, key: "${KEY}" }] }
        - policy: set-header
          config: { name: x-through, value: gatehouse }
    operations:
      - { id: any, method: GET, urlTemplate: "/{room}" }
      - { id: closed, method: GET, urlTemplate: "/closed/{room}", webSocket: false }
  - id: small
    pathPrefix: /small
    backend: { url: "http://127.0.0.1:${backendPort}" }
    webSocket: { maxConnections: 2, idleTimeoutMs: 1000, maxMessageBytes: 1024 }
  - id: plain
    pathPrefix: /plain
    backend: { url: "http://127.0.0.1:${backendPort}" }
`;
}

/** Opens a client through the gateway; resolves once open, or rejects with the refusal's status and body. */
function connectWs(g: GatewayProcess, path: string, headers: Record<string, string> = { 'x-api-key': KEY }, protocolVersion = 13): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${g.httpPort}${path}`, { headers, perMessageDeflate: false, maxPayload: 256 * MIB, protocolVersion });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => reject(Object.assign(new Error(`refused ${res.statusCode}`), { status: res.statusCode, body, headers: res.headers })));
    });
    ws.once('error', reject);
  });
}

function nextMessage(ws: WebSocket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    ws.once('message', (data) => resolve(data as Buffer));
    ws.once('close', (code) => reject(new Error(`closed with ${code} before a message`)));
  });
}

function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
}

async function refusal(promise: Promise<WebSocket>): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  try {
    const ws = await promise;
    ws.terminate();
  } catch (err) {
    return err as { status: number; body: string; headers: Record<string, unknown> };
  }
  assert.fail('the upgrade was accepted');
}

/** Waits until the gateway holds no WebSocket connection (a closed one is counted out once both its sides are closed). */
function noneOpen(g: GatewayProcess): Promise<void> {
  return waitForAsync('no WebSocket connection open in the gateway', async () => (await metric(g, 'gatehouse_websocket_connections')) === 0, 10_000);
}

async function metric(g: GatewayProcess, line: string): Promise<number> {
  const text = (await send(`http://127.0.0.1:${g.adminPort}`, '/metrics')).body;
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found ? Number(found.slice(line.length + 1)) : 0;
}

describe('WebSocket through the gateway', () => {
  let g: GatewayProcess;
  let configFile: string;

  before(async () => {
    configFile = writeConfig(tempDir(), 'gateway.yaml', configText());
    g = await startGatewayProcess({ config: configFile, env: { GATEHOUSE_SHUTDOWN_DELAY_MS: '0' } });
  });

  after(async () => {
    await g.stop();
  });

  test('echo through the chain: key-auth and set-header apply to the handshake', async () => {
    const ws = await connectWs(g, '/chat/lobby?x=1');
    ws.send('hello');
    assert.equal((await nextMessage(ws)).toString(), 'hello');
    const seen = handshakes.at(-1)!;
    assert.equal(seen.url, '/lobby?x=1');
    assert.equal(seen.headers['x-through'], 'gatehouse');
    assert.equal(seen.headers['x-api-key'], undefined, 'key-auth hides the key');
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
    const gone = closed(ws);
    ws.close(1000, 'bye');
    assert.deepEqual(await gone, { code: 1000, reason: 'bye' });
    assert.ok((await metric(g, 'gatehouse_websocket_upgrades_total{api="chat",result="upgraded"}')) >= 1);
  });

  test('a refusal by a policy answers before any upgrade, with its status', async () => {
    const before = handshakes.length;
    const refused = await refusal(connectWs(g, '/chat/lobby', {}));
    assert.equal(refused.status, 401);
    assert.match(refused.body, /missing API key/);
    assert.equal(handshakes.length, before, 'the backend never saw it');
    assert.ok((await metric(g, 'gatehouse_websocket_upgrades_total{api="chat",result="refused"}')) >= 1);
  });

  test('an API or operation that does not allow WebSocket answers 400 naming why; its plain requests still pass', async () => {
    const plain = await refusal(connectWs(g, '/plain/x'));
    assert.equal(plain.status, 400);
    assert.equal(JSON.parse(plain.body).detail, 'WebSocket is not allowed on /plain/x (API plain, operation default): its configuration does not set webSocket');
    const op = await refusal(connectWs(g, '/chat/closed/x'));
    assert.equal(op.status, 400);
    assert.match(JSON.parse(op.body).detail, /operation closed/);
    assert.equal((await send(g.url, '/plain/anything')).status, 426, 'a plain GET reaches the backend (ws answers 426)');
  });

  test('an upgrade to anything else (h2c) is answered as the plain request it also is', async () => {
    const head = await new Promise<string>((resolve, reject) => {
      const socket = connect(g.httpPort, '127.0.0.1', () =>
        socket.write('GET /plain/h2c HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n'),
      );
      let text = '';
      socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
    });
    // The backend (a ws server) answers a plain GET with 426; the gateway passes it on and closes the connection.
    assert.match(head, /^HTTP\/1\.1 426 /);
    assert.match(head, /\r\nconnection: close\r\n/i);
    assert.equal(handshakes.at(-1)?.url === '/h2c', false, 'not upgraded');
  });

  test('a handshake of another WebSocket version gets 426 naming the one supported', async () => {
    const refused = await refusal(connectWs(g, '/chat/x', { 'x-api-key': KEY }, 8));
    assert.equal(refused.status, 426);
    assert.equal(refused.headers['sec-websocket-version'], '13');
  });

  test('100 MB each way, in 1 MiB messages', async () => {
    const ws = await connectWs(g, '/chat/bulk');
    const chunk = Buffer.alloc(MIB, 7);
    const total = 100;
    let received = 0;
    let bytes = 0;
    const done = new Promise<void>((resolve, reject) => {
      ws.on('message', (data) => {
        const b = data as Buffer;
        bytes += b.length;
        if (b[0] !== 7 || b[b.length - 1] !== 7) reject(new Error('corrupted message'));
        if (++received === total) resolve();
      });
      ws.once('close', (code) => reject(new Error(`closed with ${code}`)));
    });
    for (let i = 0; i < total; i++) {
      ws.send(chunk);
      // Bounded buffering on the client's side.
      while (ws.bufferedAmount > 8 * MIB) await new Promise((r) => setTimeout(r, 5));
    }
    await done;
    assert.equal(bytes, total * MIB);
    ws.close();
    // Frame heads count too: at least the payloads went each way.
    assert.ok((await metric(g, 'gatehouse_websocket_bytes_total{api="chat",direction="to-backend"}')) >= total * MIB);
    assert.ok((await metric(g, 'gatehouse_websocket_bytes_total{api="chat",direction="to-client"}')) >= total * MIB);
  });

  test('500 sockets at once, each echoing', async () => {
    const sockets = await Promise.all(Array.from({ length: 500 }, (_, i) => connectWs(g, `/chat/room-${i}`)));
    try {
      assert.ok((await metric(g, 'gatehouse_websocket_connections')) >= 500);
      const echoes = await Promise.all(
        sockets.map((ws, i) => {
          const answer = nextMessage(ws);
          ws.send(`m${i}`);
          return answer;
        }),
      );
      echoes.forEach((b, i) => assert.equal(b.toString(), `m${i}`));
    } finally {
      await Promise.all(
        sockets.map((ws) => {
          const c = closed(ws);
          ws.close();
          return c;
        }),
      );
    }
    await noneOpen(g);
  });

  test('per-API connection limit: past it an upgrade gets 503', async () => {
    await noneOpen(g);
    const a = await connectWs(g, '/small/a', {});
    const b = await connectWs(g, '/small/b', {});
    const refused = await refusal(connectWs(g, '/small/c', {}));
    assert.equal(refused.status, 503);
    assert.match(JSON.parse(refused.body).detail, /API small holds 2 WebSocket connections/);
    a.terminate();
    // Once one is closed, its place is free again.
    await waitForAsync('the closed one to be counted out', async () => (await metric(g, 'gatehouse_websocket_connections')) === 1);
    const d = await connectWs(g, '/small/d', {});
    b.terminate();
    d.terminate();
    await noneOpen(g);
  });

  test('a message over maxMessageBytes closes the connection with 1009', async () => {
    const ws = await connectWs(g, '/small/big', {});
    ws.send(Buffer.alloc(512));
    assert.equal((await nextMessage(ws)).length, 512);
    const c = closed(ws);
    ws.send(Buffer.alloc(2048));
    const { code, reason } = await c;
    assert.equal(code, 1009);
    assert.match(reason, /larger than 1024 bytes/);
  });

  test('idle timeout: a silent connection gets 1001', async () => {
    const ws = await connectWs(g, '/small/idle', {});
    const started = Date.now();
    const { code, reason } = await closed(ws);
    assert.equal(code, 1001);
    assert.equal(reason, 'idle timeout');
    const after = Date.now() - started;
    assert.ok(after >= 900 && after < 5000, `closed after ${after} ms`);
  });

  test('a configuration change leaves open connections alone and applies to new upgrades', async () => {
    const ws = await connectWs(g, '/chat/stay');
    writeFileSync(configFile, configText(false));
    await g.waitForLog((l) => l.msg === 'configuration applied' && g.logs.filter((x) => x.msg === 'configuration applied').length >= 2, 10_000);
    ws.send('still here');
    assert.equal((await nextMessage(ws)).toString(), 'still here');
    const refused = await refusal(connectWs(g, '/chat/new'));
    assert.equal(refused.status, 400);
    ws.close();
    writeFileSync(configFile, configText());
  });
});

describe('WebSocket at shutdown', () => {
  test('SIGTERM: served through the delay, then close 1001, then the process exits 0', async () => {
    const config = writeConfig(tempDir(), 'gateway.yaml', configText());
    const g = await startGatewayProcess({ config, env: { GATEHOUSE_SHUTDOWN_DELAY_MS: '1500' } });
    try {
      const ws = await connectWs(g, '/chat/late');
      const gone = closed(ws);
      const signalled = Date.now();
      g.child.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 500));
      ws.send('during the delay');
      assert.equal((await nextMessage(ws)).toString(), 'during the delay');
      const { code } = await gone;
      assert.equal(code, 1001);
      assert.ok(Date.now() - signalled >= 1400, 'not before the delay');
      const exitCode = await g.exited;
      assert.ok(g.logs.some((l) => l.msg === 'stopped'), 'the graceful shutdown ran to its end');
      // Deno's node:child_process reports a child ended after a signal as killed by it, whatever its exit code
      // (test/graceful-shutdown.test.ts): the exit code is asserted under Node.
      if (!isDeno) assert.equal(exitCode, 0);
    } finally {
      await g.stop('SIGKILL');
    }
  });
});
