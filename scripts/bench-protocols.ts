// npm run bench:protocols — WebSocket messages per second through the gateway against a direct connection to the same
// backend, side by side in one run.
//
// The backend (scripts/bench/ws-echo-backend.ts, `ws`) and the gateway (dist/runtime/entry/gateway.js, one API with
// `webSocket`, no policies: policies run on the handshake only) are processes of their own; the load generator is this
// process: BENCH_WS_CONNECTIONS clients, each keeping BENCH_WS_WINDOW messages of BENCH_WS_BYTES bytes in flight and
// sending the next as each echo comes back. A third target, `relay` (scripts/bench/tcp-relay.ts, a bare `socket.pipe`
// TCP relay in Node), is the floor of any Node process passing the bytes on. Each round measures the targets, in
// alternating order, for BENCH_DURATION_S after BENCH_WARMUP_S. Ratios use each target's best round.
//
// Prints a table on stderr, then `websocket-ratio-vs-direct`, `websocket-relay-ratio-vs-direct` and each target's best
// messages/s on stdout.
//
// Environment: BENCH_ROUNDS (3), BENCH_DURATION_S (5), BENCH_WARMUP_S (2), BENCH_WS_CONNECTIONS (32), BENCH_WS_WINDOW
// (8), BENCH_WS_BYTES (128). Node only.

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';
import { startGatewayProcess, tempDir, writeConfig } from '../test/support/gateway-process.ts';
import { positiveFromEnv } from './lib/env.ts';

const ROUNDS = positiveFromEnv('BENCH_ROUNDS', 3);
const DURATION_S = positiveFromEnv('BENCH_DURATION_S', 5);
const WARMUP_S = positiveFromEnv('BENCH_WARMUP_S', 2);
const CONNECTIONS = positiveFromEnv('BENCH_WS_CONNECTIONS', 32);
const WINDOW = positiveFromEnv('BENCH_WS_WINDOW', 8);
const BYTES = positiveFromEnv('BENCH_WS_BYTES', 128);

const log = (line: string) => process.stderr.write(`${line}\n`);

/** Starts one of scripts/bench/ (the echo backend, the relay); resolves with its port and a stop function. */
async function startHelper(name: string, env: Record<string, string>): Promise<{ port: number; stop: () => void }> {
  const script = fileURLToPath(new URL(`./bench/${name}.js`, import.meta.url));
  const child = spawn(process.execPath, [script], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (text: string) => {
      const m = /listening (\d+)/.exec(text);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`${name} exited with ${code}`)));
  });
  return { port, stop: () => child.kill('SIGTERM') };
}

/** Messages echoed per second through `url` by CONNECTIONS clients with WINDOW messages in flight each. */
async function measure(url: string): Promise<number> {
  const payload = Buffer.alloc(BYTES, 0x61);
  let counting = false;
  let count = 0;
  let running = true;
  const clients = await Promise.all(
    Array.from(
      { length: CONNECTIONS },
      () =>
        new Promise<WebSocket>((resolve, reject) => {
          const ws = new WebSocket(url, { perMessageDeflate: false });
          ws.once('open', () => resolve(ws));
          ws.once('error', reject);
        }),
    ),
  );
  for (const ws of clients) {
    ws.on('message', () => {
      if (counting) count++;
      if (running) ws.send(payload);
    });
    for (let i = 0; i < WINDOW; i++) ws.send(payload);
  }
  await sleep(WARMUP_S * 1000);
  counting = true;
  const started = performance.now();
  await sleep(DURATION_S * 1000);
  counting = false;
  const rate = count / ((performance.now() - started) / 1000);
  running = false;
  await Promise.all(
    clients.map(
      (ws) =>
        new Promise<void>((resolve) => {
          ws.once('close', () => resolve());
          ws.close();
          setTimeout(() => {
            ws.terminate();
            resolve();
          }, 2000).unref();
        }),
    ),
  );
  return rate;
}

const backend = await startHelper('ws-echo-backend', { BENCH_PORT: '0' });
const relay = await startHelper('tcp-relay', { BENCH_TARGET_PORT: String(backend.port) });
process.once('exit', () => {
  backend.stop();
  relay.stop();
});
const config = writeConfig(
  tempDir('gatehouse-bench-ws-'),
  'gateway.yaml',
  `version: 1\napis:\n  - id: ws\n    pathPrefix: /ws\n    backend: { url: "http://127.0.0.1:${backend.port}" }\n    webSocket: {}\n`,
);
// Its log (a line a handshake, and at each close) is read by the helper; messages are not logged.
const gateway = await startGatewayProcess({ config });
const targets = {
  direct: `ws://127.0.0.1:${backend.port}/`,
  relay: `ws://127.0.0.1:${relay.port}/`,
  gatehouse: `ws://127.0.0.1:${gateway.httpPort}/ws/`,
} as const;
const results: Record<keyof typeof targets, number[]> = { direct: [], relay: [], gatehouse: [] };
try {
  log(`${CONNECTIONS} connections, ${WINDOW} messages of ${BYTES} bytes in flight each; ${ROUNDS} rounds of ${DURATION_S} s`);
  for (let round = 0; round < ROUNDS; round++) {
    const order = (round % 2 === 0 ? ['direct', 'relay', 'gatehouse'] : ['gatehouse', 'relay', 'direct']) as (keyof typeof targets)[];
    for (const key of order) {
      const rate = await measure(targets[key]);
      results[key].push(rate);
      log(`round ${round + 1} ${key.padEnd(10)} ${Math.round(rate)} messages/s`);
    }
  }
} finally {
  await gateway.stop();
}
const best = (key: keyof typeof targets) => Math.max(...results[key]);
process.stdout.write(
  [
    `websocket-messages-per-second-direct: ${Math.round(best('direct'))}`,
    `websocket-messages-per-second-relay: ${Math.round(best('relay'))}`,
    `websocket-messages-per-second-gatehouse: ${Math.round(best('gatehouse'))}`,
    `websocket-ratio-vs-direct: ${(best('gatehouse') / best('direct')).toFixed(2)}`,
    `websocket-relay-ratio-vs-direct: ${(best('relay') / best('direct')).toFixed(2)}`,
  ].join('\n') + '\n',
);
