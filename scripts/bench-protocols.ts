// npm run bench:protocols — WebSocket messages per second through the gateway against a direct connection to the same
// backend, and HTTP/2 requests per second through the gateway's HTTPS h2 listener against nginx's HTTP/2 in front of the
// same backend, each side by side in one run.
//
// HTTP/2: h2load (Debian nghttp2-client) with BENCH_H2_CLIENTS connections of BENCH_H2_STREAMS streams each, for
// BENCH_DURATION_S after BENCH_WARMUP_S, against the gateway (HTTPS, ALPN h2, one API, no policies) and nginx (1 worker,
// `http2 on`-style `listen ... ssl http2`, upstream keepalive 64), both proxying to scripts/bench/backend.ts over
// HTTP/1.1; rounds alternate the order. Prints `h2-throughput-ratio-vs-nginx` and each side's best requests/s.
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
// (8), BENCH_WS_BYTES (128), BENCH_H2_CLIENTS (16), BENCH_H2_STREAMS (10), BENCH_SKIP (`ws` or `h2`: leave that part
// out). Node only.

import { execFile, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { selfSignedCertificate } from './lib/certificate.ts';
import { nginxProxyConfig } from './lib/nginx-config.ts';
import { startBenchBackend } from './lib/bench-backend.ts';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';
import { startGatewayProcess, tempDir, writeConfig } from '../test/support/gateway-process.ts';
import { positiveFromEnv } from './lib/env.ts';
import { freePort } from '../test/support/ports.ts';

const ROUNDS = positiveFromEnv('BENCH_ROUNDS', 3);
const DURATION_S = positiveFromEnv('BENCH_DURATION_S', 5);
const WARMUP_S = positiveFromEnv('BENCH_WARMUP_S', 2);
const CONNECTIONS = positiveFromEnv('BENCH_WS_CONNECTIONS', 32);
const WINDOW = positiveFromEnv('BENCH_WS_WINDOW', 8);
const BYTES = positiveFromEnv('BENCH_WS_BYTES', 128);
const H2_CLIENTS = positiveFromEnv('BENCH_H2_CLIENTS', 16);
const H2_STREAMS = positiveFromEnv('BENCH_H2_STREAMS', 10);
const SKIP = process.env.BENCH_SKIP ?? '';

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

async function benchWebSocket(): Promise<string[]> {
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
    backend.stop();
    relay.stop();
  }
  const best = (key: keyof typeof targets) => Math.max(...results[key]);
  return [
      `websocket-messages-per-second-direct: ${Math.round(best('direct'))}`,
      `websocket-messages-per-second-relay: ${Math.round(best('relay'))}`,
      `websocket-messages-per-second-gatehouse: ${Math.round(best('gatehouse'))}`,
      `websocket-ratio-vs-direct: ${(best('gatehouse') / best('direct')).toFixed(2)}`,
      `websocket-relay-ratio-vs-direct: ${(best('relay') / best('direct')).toFixed(2)}`,
  ];
}

const run = promisify(execFile);

/** Requests per second h2load reaches against `url`. */
async function h2load(url: string): Promise<number> {
  const args = ['-c', String(H2_CLIENTS), '-m', String(H2_STREAMS), '-t', '1', '-D', String(DURATION_S), `--warm-up-time=${WARMUP_S}`, url];
  const { stdout } = await run('h2load', args, { timeout: (DURATION_S + WARMUP_S + 30) * 1000 });
  const m = /finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(stdout);
  // Requests still in flight when the duration ends are counted as failed: at most one per stream.
  const failed = /requests: .* (\d+) failed/.exec(stdout);
  if (!m) throw new Error(`h2load gave no rate: ${stdout}`);
  if (failed && Number(failed[1]) > H2_CLIENTS * H2_STREAMS) throw new Error(`h2load saw failed requests against ${url}: ${failed[0]}`);
  if (!/Application protocol: h2/.test(stdout)) throw new Error(`h2load did not negotiate h2 with ${url}`);
  return Number(m[1]);
}

/** nginx (1 worker) with HTTP/2 on TLS in front of the backend on `backendPort`; resolves with its port and a stop. */
async function startNginx(dir: string, backendPort: number, cert: { certFile: string; keyFile: string }): Promise<{ port: number; stop: () => void }> {
  const port = await freePort();
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o755);
  const conf = join(dir, 'nginx.conf');
  const tls = [`ssl_certificate ${cert.certFile};`, `ssl_certificate_key ${cert.keyFile};`];
  writeFileSync(conf, nginxProxyConfig(dir, backendPort, `127.0.0.1:${port} ssl http2`, tls));
  const child = spawn('nginx', ['-p', `${dir}/`, '-e', join(dir, 'error.log'), '-c', conf, '-g', 'daemon off;'], { stdio: 'inherit', detached: true });
  const stop = () => {
    if (child.exitCode === null) process.kill(-child.pid!, 'SIGTERM');
  };
  for (let i = 0; i < 100; i++) {
    try {
      await run('curl', ['-sk', '--http2', '-o', '/dev/null', `https://127.0.0.1:${port}/`], { timeout: 2000 });
      return { port, stop };
    } catch {
      await sleep(100);
    }
  }
  stop();
  throw new Error('nginx did not start');
}

async function benchHttp2(): Promise<string[]> {
  const dir = tempDir('gatehouse-bench-h2-');
  const cert = selfSignedCertificate(dir);
  const backend = await startBenchBackend();
  const backendPort = Number(new URL(backend.url).port);
  const nginx = await startNginx(join(dir, 'nginx'), backendPort, cert);
  const config = writeConfig(dir, 'gateway.yaml', `version: 1\napis:\n  - { id: h2, pathPrefix: /, backend: { url: "${backend.url}" } }\n`);
  // Its access log (a line a request) is read by this process, as nginx writes its own to a file.
  const gateway = await startGatewayProcess({ config, env: { GATEHOUSE_TLS_CERT_FILE: cert.certFile, GATEHOUSE_TLS_KEY_FILE: cert.keyFile } });
  const targets = { nginx: `https://127.0.0.1:${nginx.port}/`, gatehouse: `https://127.0.0.1:${gateway.httpsPort}/` } as const;
  const results: Record<keyof typeof targets, number[]> = { nginx: [], gatehouse: [] };
  try {
    log(`HTTP/2: h2load, ${H2_CLIENTS} connections x ${H2_STREAMS} streams; ${ROUNDS} rounds of ${DURATION_S} s`);
    for (let round = 0; round < ROUNDS; round++) {
      const order = (round % 2 === 0 ? ['nginx', 'gatehouse'] : ['gatehouse', 'nginx']) as (keyof typeof targets)[];
      for (const key of order) {
        const rate = await h2load(targets[key]);
        results[key].push(rate);
        log(`round ${round + 1} ${key.padEnd(10)} ${Math.round(rate)} requests/s`);
      }
    }
  } finally {
    await gateway.stop();
    nginx.stop();
    await backend.stop();
  }
  const best = (key: keyof typeof targets) => Math.max(...results[key]);
  return [
    `h2-requests-per-second-nginx: ${Math.round(best('nginx'))}`,
    `h2-requests-per-second-gatehouse: ${Math.round(best('gatehouse'))}`,
    `h2-throughput-ratio-vs-nginx: ${(best('gatehouse') / best('nginx')).toFixed(2)}`,
  ];
}

const lines = [...(SKIP === 'ws' ? [] : await benchWebSocket()), ...(SKIP === 'h2' ? [] : await benchHttp2())];
process.stdout.write(`${lines.join('\n')}\n`);
