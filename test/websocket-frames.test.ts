// The frame heads the gateway reads while it passes WebSocket bytes on: wherever chunks are cut (one byte at a time,
// a head split over two chunks, several frames in one chunk), it finds the same frame boundaries and the same
// problems, and its own close frames are what a `ws` peer reads.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { closeFrame, FrameScanner } from '../runtime/proxy/websocket-frames.ts';

/** A frame as a client sends it (masked with a fixed key), or as a server does. */
function frame(opcode: number, payload: Buffer, fin = true, masked = true): Buffer {
  const len = payload.length;
  const ext = len < 126 ? Buffer.alloc(0) : len < 65536 ? Buffer.alloc(2) : Buffer.alloc(8);
  if (len >= 126 && len < 65536) ext.writeUInt16BE(len);
  if (len >= 65536) ext.writeBigUInt64BE(BigInt(len));
  const head = Buffer.from([(fin ? 0x80 : 0) | opcode, (masked ? 0x80 : 0) | (len < 126 ? len : len < 65536 ? 126 : 127)]);
  const key = masked ? Buffer.from([1, 2, 3, 4]) : Buffer.alloc(0);
  const body = Buffer.from(payload.map((b, i) => (masked ? b ^ key[i & 3]! : b)));
  return Buffer.concat([head, ext, key, body]);
}

/** Offsets just past each frame boundary the scanner finds when `bytes` come in chunks of `size`. */
function boundaries(scanner: FrameScanner, bytes: Buffer, size: number): number[] {
  const found: number[] = [];
  for (let at = 0; at < bytes.length; at += size) {
    let chunk = bytes.subarray(at, Math.min(at + size, bytes.length));
    let base = at;
    for (;;) {
      const r = scanner.scan(chunk, true);
      assert.equal(typeof r, 'number', `no problem expected, got ${JSON.stringify(r)}`);
      if (r === -1) break;
      found.push(base + (r as number));
      base += r as number;
      chunk = chunk.subarray(r as number);
      if (chunk.length === 0) break;
    }
  }
  return found;
}

describe('frame heads', () => {
  const frames = [
    frame(1, Buffer.from('hi')),
    frame(2, Buffer.alloc(300, 9), false),
    frame(9, Buffer.from('ping')),
    frame(0, Buffer.alloc(70_000, 1)),
    frame(1, Buffer.alloc(0)),
  ];
  const stream = Buffer.concat(frames);
  const expected = frames.reduce<number[]>((ends, f) => [...ends, (ends.at(-1) ?? 0) + f.length], []);

  for (const size of [1, 2, 3, 7, 125, 4096, stream.length]) {
    test(`chunks of ${size} bytes: the same boundaries`, () => {
      const scanner = new FrameScanner(1_000_000, true);
      assert.deepEqual(boundaries(scanner, stream, size), expected);
      assert.equal(scanner.atBoundary, true);
    });
  }

  test('a message is the sum of its fragments: past the limit, 1009 at the head that passes it', () => {
    const scanner = new FrameScanner(1000, true);
    const first = frame(2, Buffer.alloc(600), false);
    assert.equal(scanner.scan(first), first.length);
    const problem = scanner.scan(frame(0, Buffer.alloc(500)));
    assert.deepEqual(problem, { code: 1009, reason: 'message larger than 1000 bytes' });
  });

  test('a control frame between fragments does not count; a new message starts the count again', () => {
    const scanner = new FrameScanner(1000, true);
    for (const f of [frame(2, Buffer.alloc(900), false), frame(9, Buffer.alloc(100)), frame(0, Buffer.alloc(100)), frame(1, Buffer.alloc(1000))]) {
      assert.equal(scanner.scan(f), f.length);
    }
  });

  test('a declared length of 2^63 is refused at its head', () => {
    const head = Buffer.from([0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4]);
    assert.deepEqual(new FrameScanner(16 * 1024 * 1024, true).scan(head), { code: 1009, reason: 'frame too large' });
  });

  test('an unmasked client frame, a masked server frame and a long or fragmented control frame are protocol errors', () => {
    assert.equal((new FrameScanner(1000, true).scan(frame(1, Buffer.from('x'), true, false)) as { code: number }).code, 1002);
    assert.equal((new FrameScanner(1000, false).scan(frame(1, Buffer.from('x'))) as { code: number }).code, 1002);
    assert.equal((new FrameScanner(1000, true).scan(frame(9, Buffer.alloc(126))) as { code: number }).code, 1002);
    assert.equal((new FrameScanner(1000, true).scan(frame(9, Buffer.alloc(1), false)) as { code: number }).code, 1002);
  });
});

describe('the gateway\'s close frames', () => {
  let server: Server;
  let port: number;
  let serverSide: ((frame: Buffer) => void) | null = null;
  /** Upgraded sockets leave the HTTP server's connections: closed here. */
  const upgraded = new Set<Duplex>();

  before(async () => {
    // A bare HTTP server that accepts the upgrade and then writes what the test gives it, as the gateway would.
    server = createServer();
    server.on('upgrade', (req, socket) => {
      socket.write(
        'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          `Sec-WebSocket-Accept: ${acceptKey(String(req.headers['sec-websocket-key']))}\r\n\r\n`,
      );
      upgraded.add(socket);
      serverSide = (f) => socket.write(f);
      socket.on('data', () => undefined);
      socket.on('error', () => undefined);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });

  after(async () => {
    for (const socket of upgraded) socket.destroy();
    await new Promise((r) => server.close(r));
  });

  test('a ws client reads the code and the reason', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    serverSide!(closeFrame(1001, 'gateway shutting down', false));
    assert.deepEqual(await closed, { code: 1001, reason: 'gateway shutting down' });
  });

  test('a masked close frame (to a backend) unmasks to the same code and reason', () => {
    const f = closeFrame(1009, 'too big', true);
    assert.equal(f[0], 0x88);
    assert.equal(f[1]! & 0x80, 0x80);
    const key = f.subarray(2, 6);
    const payload = Buffer.from(f.subarray(6).map((b, i) => b ^ key[i & 3]!));
    assert.equal(payload.readUInt16BE(0), 1009);
    assert.equal(payload.subarray(2).toString(), 'too big');
    assert.equal(new FrameScanner(1000, true).scan(f), f.length, 'a well-formed client frame');
  });
});

function acceptKey(key: string): string {
  // RFC 6455, 4.2.2: SHA-1 of the key and the protocol's GUID, in base64.
  return createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
}
