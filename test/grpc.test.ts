// gRPC through the real gateway process: a @grpc/grpc-js server as the backend (backend.protocol h2, cleartext), a
// @grpc/grpc-js client on the gateway's cleartext HTTP/2 port. Unary, server-streaming, client-streaming and
// bidirectional calls, each message passed on as it comes (the bidirectional call waits for each answer before it
// sends the next); the backend's grpc-status and grpc-message reach the client; the gateway's own answers become
// gRPC statuses (key-auth refusal: UNAUTHENTICATED, a backend down: UNAVAILABLE, past the deadline or the API's
// timeout: DEADLINE_EXCEEDED), and grpc-timeout bounds the backend call. Runs under Node and Deno.

import assert from 'node:assert/strict';
import { connect } from 'node:http2';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { freePort } from './support/ports.ts';
import { startGatewayProcess, tempDir, writeConfig, type GatewayProcess } from './support/gateway-process.ts';

const KEY = 'grpc-test-key';
/** The Echo API's timeout: grpc-timeout asks for more, the gateway waits no longer than this. */
const API_TIMEOUT_MS = 1500;

interface Note {
  text: string;
  count: number;
}

type Client = grpc.Client & Record<string, (...args: unknown[]) => unknown>;
type ClientConstructor = new (address: string, credentials: grpc.ChannelCredentials) => Client;

const definition = protoLoader.loadSync(join(repoRoot(), 'test', 'fixtures', 'grpc', 'echo.proto'), { defaults: true });
const proto = grpc.loadPackageDefinition(definition) as unknown as {
  gatehouse: { test: Record<'Echo' | 'Locked' | 'Down', ClientConstructor & { service: grpc.ServiceDefinition }> };
};
const services = proto.gatehouse.test;

let server: grpc.Server;
let gw: GatewayProcess;
/** What the backend saw of each call's metadata, by method. */
const metadataSeen = new Map<string, grpc.Metadata>();

/** SIGTERM's drain has nothing to wait for here (no delay, no request in flight). */
const STOP_WITHIN_MS = 10_000;

function unary(name: string, answer: (note: Note, metadata: grpc.Metadata) => Note): grpc.handleUnaryCall<Note, Note> {
  return (call, callback) => {
    metadataSeen.set(name, call.metadata);
    callback(null, answer(call.request, call.metadata));
  };
}

before(async () => {
  server = new grpc.Server();
  server.addService(services.Echo.service, {
    Unary: unary('Unary', (n) => ({ text: `echo ${n.text}`, count: n.count + 1 })),
    ServerStream: (call: grpc.ServerWritableStream<Note, Note>) => {
      for (let i = 0; i < call.request.count; i++) call.write({ text: `${call.request.text} ${i}`, count: i });
      call.end();
    },
    ClientStream: (call: grpc.ServerReadableStream<Note, Note>, callback: grpc.sendUnaryData<Note>) => {
      const texts: string[] = [];
      call.on('data', (n: Note) => texts.push(n.text));
      call.on('end', () => callback(null, { text: texts.join('+'), count: texts.length }));
    },
    Bidi: (call: grpc.ServerDuplexStream<Note, Note>) => {
      call.on('data', (n: Note) => call.write({ text: `re: ${n.text}`, count: n.count }));
      call.on('end', () => call.end());
    },
    Slow: (call: grpc.ServerUnaryCall<Note, Note>, callback: grpc.sendUnaryData<Note>) => {
      const timer = setTimeout(() => callback(null, { text: 'late', count: 0 }), call.request.count);
      call.on('cancelled', () => clearTimeout(timer));
    },
    Fail: (call: grpc.ServerUnaryCall<Note, Note>, callback: grpc.sendUnaryData<Note>) => {
      callback({ code: call.request.count, details: call.request.text });
    },
  });
  server.addService(services.Locked.service, { Unary: unary('Locked', (n) => ({ text: `locked ${n.text}`, count: 0 })) });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const down = await freePort();
  const dir = tempDir();
  const backend = (service: string, extra = '') => `{ url: "http://127.0.0.1:${port}/gatehouse.test.${service}", protocol: h2${extra} }`;
  const config = writeConfig(
    dir,
    'gw.yaml',
    `
version: 1
apis:
  - { id: echo, pathPrefix: /gatehouse.test.Echo, backend: ${backend('Echo', `, timeoutMs: ${API_TIMEOUT_MS}`)} }
  - id: locked
    pathPrefix: /gatehouse.test.Locked
    backend: ${backend('Locked')}
    policies:
      inbound:
        - policy: key-auth
          config: { keys: [{ id: tester, key: "${KEY}" }] }
        - policy: set-header
          config: { name: x-through, value: gatehouse }
  - { id: down, pathPrefix: /gatehouse.test.Down, backend: { url: "http://127.0.0.1:${down}/gatehouse.test.Down", protocol: h2 } }
`,
  );
  gw = await startGatewayProcess({ config, env: { GATEHOUSE_HTTP2_CLEARTEXT: 'on' } });
});

after(async () => {
  // Bounded: a gateway that does not stop is killed, so a failure here does not hold the test process.
  if (gw && (await Promise.race([gw.stop(), sleep(STOP_WITHIN_MS).then(() => 'still running' as const)])) === 'still running') await gw.stop('SIGKILL');
  await new Promise<void>((done) => (server ? server.tryShutdown(() => done()) : done()));
});

function client(service: 'Echo' | 'Locked' | 'Down'): Client {
  return new services[service](`127.0.0.1:${gw.httpPort}`, grpc.credentials.createInsecure());
}

function callUnary(c: Client, method: string, note: Partial<Note>, options: { metadata?: grpc.Metadata; deadline?: number } = {}): Promise<Note> {
  return new Promise((resolve, reject) => {
    const deadline = options.deadline === undefined ? {} : { deadline: Date.now() + options.deadline };
    c[method]!(note, options.metadata ?? new grpc.Metadata(), deadline, (err: grpc.ServiceError | null, res: Note) => (err ? reject(err) : resolve(res)));
  });
}

async function rejectsWith(call: Promise<unknown>, code: grpc.status): Promise<grpc.ServiceError> {
  const err = await call.then(
    () => assert.fail(`expected status ${grpc.status[code]}`),
    (e: grpc.ServiceError) => e,
  );
  assert.equal(err.code, code, `${grpc.status[err.code]} (${err.details})`);
  return err;
}

describe('gRPC through the gateway', () => {
  test('unary', async () => {
    const c = client('Echo');
    try {
      assert.deepEqual(await callUnary(c, 'Unary', { text: 'hi', count: 41 }), { text: 'echo hi', count: 42 });
      const line = await gw.waitForLog((l) => l.msg === 'request' && l.path === '/gatehouse.test.Echo/Unary');
      assert.equal(line.protocol, 'HTTP/2');
      assert.equal(line.status, 200);
    } finally {
      c.close();
    }
  });

  test('server-streaming: every message arrives, in order', async () => {
    const c = client('Echo');
    try {
      const notes: Note[] = [];
      await new Promise<void>((resolve, reject) => {
        const call = c.ServerStream!({ text: 'tick', count: 50 }) as grpc.ClientReadableStream<Note>;
        call.on('data', (n: Note) => notes.push(n));
        call.on('error', reject);
        call.on('end', () => resolve());
      });
      assert.equal(notes.length, 50);
      assert.deepEqual(notes[49], { text: 'tick 49', count: 49 });
    } finally {
      c.close();
    }
  });

  test('client-streaming', async () => {
    const c = client('Echo');
    try {
      const res = await new Promise<Note>((resolve, reject) => {
        const call = c.ClientStream!((err: grpc.ServiceError | null, n: Note) => (err ? reject(err) : resolve(n))) as grpc.ClientWritableStream<Note>;
        for (const text of ['a', 'b', 'c']) call.write({ text, count: 0 });
        call.end();
      });
      assert.deepEqual(res, { text: 'a+b+c', count: 3 });
    } finally {
      c.close();
    }
  });

  test('bidirectional: each answer comes back before the next message is sent (nothing buffered whole)', async () => {
    const c = client('Echo');
    try {
      const call = c.Bidi!() as grpc.ClientDuplexStream<Note, Note>;
      const received: string[] = [];
      const next = () => new Promise<Note>((resolve, reject) => {
        call.once('data', resolve);
        call.once('error', reject);
      });
      for (let i = 0; i < 5; i++) {
        const answer = next();
        call.write({ text: `m${i}`, count: i });
        received.push((await answer).text);
      }
      const ended = new Promise<void>((resolve) => call.on('end', () => resolve()));
      call.resume();
      call.end();
      await ended;
      assert.deepEqual(received, ['re: m0', 're: m1', 're: m2', 're: m3', 're: m4']);
    } finally {
      c.close();
    }
  });

  test("the backend's status and message reach the client through the trailers", async () => {
    const c = client('Echo');
    try {
      const err = await rejectsWith(callUnary(c, 'Fail', { text: 'no such order: 42 ✗', count: grpc.status.NOT_FOUND }), grpc.status.NOT_FOUND);
      assert.equal(err.details, 'no such order: 42 ✗');
    } finally {
      c.close();
    }
  });

  test('a deadline the call sets: DEADLINE_EXCEEDED', async () => {
    const c = client('Echo');
    try {
      await rejectsWith(callUnary(c, 'Slow', { count: 5000 }, { deadline: 300 }), grpc.status.DEADLINE_EXCEEDED);
    } finally {
      c.close();
    }
  });

  test("grpc-timeout is honoured by the gateway, bounded by the API's timeout: a trailers-only DEADLINE_EXCEEDED", async () => {
    const raw = (timeout: string) =>
      new Promise<{ head: Record<string, unknown>; ms: number }>((resolve, reject) => {
        const session = connect(`http://127.0.0.1:${gw.httpPort}`);
        session.on('error', reject);
        const started = performance.now();
        // A length-prefixed Note { count: 5000 } (field 2, varint): the backend would answer after 5 s.
        const message = Buffer.from([0, 0, 0, 0, 3, 0x10, 0x88, 0x27]);
        const stream = session.request({ ':method': 'POST', ':path': '/gatehouse.test.Echo/Slow', 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': timeout });
        stream.on('response', (head) => {
          resolve({ head, ms: performance.now() - started });
          session.close();
        });
        stream.on('error', reject);
        stream.end(message);
      });
    const short = await raw('200m');
    assert.equal(short.head[':status'], 200);
    assert.equal(short.head['grpc-status'], String(grpc.status.DEADLINE_EXCEEDED), JSON.stringify(short.head));
    assert.ok(short.ms < API_TIMEOUT_MS, `answered at the call's deadline (${short.ms.toFixed(0)} ms)`);
    const long = await raw('10S');
    assert.equal(long.head['grpc-status'], String(grpc.status.DEADLINE_EXCEEDED));
    assert.ok(long.ms >= API_TIMEOUT_MS - 50 && long.ms < 5000, `answered at the API's timeout (${long.ms.toFixed(0)} ms)`);
  });

  test('key-auth refusal: UNAUTHENTICATED; with the key the call goes through and the policy header arrives', async () => {
    const c = client('Locked');
    try {
      const err = await rejectsWith(callUnary(c, 'Unary', { text: 'x' }), grpc.status.UNAUTHENTICATED);
      assert.match(err.details, /key/i);
      const metadata = new grpc.Metadata();
      metadata.set('x-api-key', KEY);
      assert.deepEqual(await callUnary(c, 'Unary', { text: 'x' }, { metadata }), { text: 'locked x', count: 0 });
      assert.deepEqual(metadataSeen.get('Locked')!.get('x-through'), ['gatehouse']);
      assert.deepEqual(metadataSeen.get('Locked')!.get('x-api-key'), [], 'key-auth hides the key');
    } finally {
      c.close();
    }
  });

  test('a backend that is down: UNAVAILABLE', async () => {
    const c = client('Down');
    try {
      await rejectsWith(callUnary(c, 'Unary', { text: 'x' }), grpc.status.UNAVAILABLE);
      // Refused, not a bad response: the reason that lets a pool retry another member.
      const line = await gw.waitForLog((l) => l.msg === 'request' && l.api === 'down', 5000);
      assert.equal((line.error as { reason: string }).reason, 'unreachable', JSON.stringify(line.error));
    } finally {
      c.close();
    }
  });

  // Last: it stops the gateway. A session to a backend that refused the connection once kept SIGTERM's drain waiting
  // for its close, which never came: the gateway never exited.
  test('SIGTERM stops the gateway after its HTTP/2 backends were used, one of them down', async () => {
    const exited = await Promise.race([gw.stop(), sleep(STOP_WITHIN_MS).then(() => 'still running' as const)]);
    assert.notEqual(exited, 'still running', `the gateway did not exit within ${STOP_WITHIN_MS} ms of SIGTERM: ${gw.logs.slice(-3).map((l) => JSON.stringify(l)).join(' ')}`);
  });
});
