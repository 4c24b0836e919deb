// npm run soak: a million requests through one gateway process with the five-policy chain of the proxy benchmark
// (scripts/bench/five-policy-chain.ts: cors, key-auth, rate-limit far above the load, rewrite-uri, set-header), in
// front of the benchmark backend (its own process). The load is wrk with keep-alive (SOAK_CONNECTIONS connections, one
// thread), run in segments of up to SOAK_SEGMENT_S seconds until the total is reached; wrk counts what completed.
//
// Memory, without forcing a collection (the gateway runs as in production). The gateway's resident set (VmRSS in
// /proc/<pid>/status) and JavaScript heap (gatehouse_js_heap_used_bytes on its /metrics) are read every 250 ms under
// load. Much of both is garbage V8 has not collected yet: the old generation grows for a minute or more between full
// collections (from 318 to 366 MiB of RSS in one run), and an idle gateway collects nothing (read over 40 s idle), so
// one reading at the end against one after the warm-up says where each fell in that cycle more than whether memory
// grew. What survives collections is what a leak makes grow, and the lowest readings show it: `soak-rss-growth-pct`
// compares the lowest RSS over the first quarter of the soak after the warm-up (SOAK_WARMUP_REQUESTS) with the lowest
// over the last quarter (each about 225,000 requests, a minute or more, which held a full collection in every run
// here: the lowest readings of its segments drop), and the
// heap's lowest readings the same way (the method of test/sustained.test.ts). The idle readings after the warm-up and
// at the end (after SETTLE_S seconds, the median of SAMPLES readings a second apart) are printed beside them.
//
// Prints on stdout `soak-requests`, `soak-errors` (non-2xx answers and socket errors wrk counted, plus any answer
// other than 200 the gateway counted besides the check's one 401), `soak-rss-growth-pct`, and the memory, duration
// and rate figures; exits 1 when there were errors, fewer requests than asked, or growth above 10%.
// The gateway's access log (one JSON line a request, as in production) goes to a temporary file; its warnings and
// errors are shown, then the file is removed.
//
// Environment: SOAK_REQUESTS (1000000), SOAK_WARMUP_REQUESTS (100000), SOAK_CONNECTIONS (32), SOAK_SEGMENT_S (15).
// Needs wrk on PATH (Debian: apt-get install wrk).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { freePort } from '../test/support/ports.ts';
import { API_KEY, ORIGIN, benchGatewayYaml } from './bench/five-policy-chain.ts';
import { startBenchBackend, type BenchBackend } from './lib/bench-backend.ts';
import { positiveFromEnv } from './lib/env.ts';
import { runScenario } from './lib/run.ts';
import { runChainWrk } from './lib/wrk.ts';
import { STATUS_PATH } from '../runtime/gateway/gateway.ts';

const TOTAL = positiveFromEnv('SOAK_REQUESTS', 1_000_000);
const WARMUP = positiveFromEnv('SOAK_WARMUP_REQUESTS', 100_000);
const CONNECTIONS = positiveFromEnv('SOAK_CONNECTIONS', 32);
const SEGMENT_S = positiveFromEnv('SOAK_SEGMENT_S', 15);
const SETTLE_S = 5;
const SAMPLES = 5;
const MAX_GROWTH_PCT = 10;

const t0 = Date.now();
const log = (line: string) => process.stderr.write(`# ${((Date.now() - t0) / 1000).toFixed(0).padStart(4)} s  ${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mib = (bytes: number) => (bytes / (1 << 20)).toFixed(1);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

let dir: string | null = null;
let backend: BenchBackend | null = null;
let gateway: ChildProcess | null = null;

// ---------------------------------------------------------------------------------------------------------------
// The gateway

interface Gateway {
  pid: number;
  url: string;
  adminUrl: string;
  logFile: string;
}

async function startSoakGateway(backendUrl: string): Promise<Gateway> {
  const config = join(dir!, 'soak.yaml');
  writeFileSync(config, benchGatewayYaml(backendUrl, true, 'scripts/soak.ts'));
  const [port, adminPort] = [await freePort(), await freePort()];
  const logFile = join(dir!, 'gateway.log');
  const out = openSync(logFile, 'a');
  const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', join(repoRoot(), 'dist', 'runtime', 'entry', 'gateway.js'), '--config', config], {
    env: { ...process.env, GATEHOUSE_HTTP_PORT: String(port), GATEHOUSE_ADMIN_PORT: String(adminPort), GATEHOUSE_SHUTDOWN_DELAY_MS: '0' },
    stdio: ['ignore', out, 'inherit'],
  });
  closeSync(out);
  gateway = child;
  const url = `http://127.0.0.1:${port}`;
  const since = Date.now();
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the gateway exited with ${child.exitCode}: ${readFileSync(logFile, 'utf8').slice(-2000)}`);
    const status = await request(`${url}${STATUS_PATH}`).then(
      async (r) => (await r.body.dump(), r.statusCode),
      () => 0,
    );
    if (status === 200) break;
    if (Date.now() - since > 60_000) throw new Error('the gateway was not ready within 60 s');
    await sleep(100);
  }
  return { pid: child.pid!, url, adminUrl: `http://127.0.0.1:${adminPort}`, logFile };
}

/** One request with the key and one without: each policy of the chain must have acted. */
async function checkChain(g: Gateway): Promise<void> {
  const res = await request(`${g.url}/items`, { headers: { 'x-api-key': API_KEY, origin: ORIGIN } });
  await res.body.dump();
  const problems: string[] = [];
  if (res.statusCode !== 200) problems.push(`answered ${res.statusCode} with the key`);
  if (res.headers['x-gatehouse'] !== 'bench') problems.push('set-header: no x-gatehouse');
  if (res.headers['access-control-allow-origin'] !== ORIGIN) problems.push('cors: no Access-Control-Allow-Origin');
  if (res.headers['ratelimit-limit'] !== '1000000000') problems.push('rate-limit: no RateLimit-Limit');
  const refused = await request(`${g.url}/items`, { headers: { origin: ORIGIN } });
  await refused.body.dump();
  if (refused.statusCode !== 401) problems.push(`key-auth: ${refused.statusCode} without the key, not 401`);
  if (problems.length > 0) throw new Error(`the five-policy chain did not act: ${problems.join('; ')}`);
}

interface Memory {
  rss: number;
  /** Garbage included, until it is collected. */
  heapUsed: number;
}

async function memory(g: Gateway): Promise<Memory> {
  const status = readFileSync(`/proc/${g.pid}/status`, 'utf8');
  const rssKiB = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]);
  const metrics = await (await request(`${g.adminUrl}/metrics`)).body.text();
  const heapUsed = Number(/^gatehouse_js_heap_used_bytes (\d+)/m.exec(metrics)?.[1] ?? NaN);
  return { rss: rssKiB * 1024, heapUsed };
}

/** Idle for SETTLE_S, then the median of SAMPLES readings a second apart. */
async function settledMemory(g: Gateway): Promise<{ rss: number }> {
  await sleep(SETTLE_S * 1000);
  const readings: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    if (i > 0) await sleep(1000);
    readings.push((await memory(g)).rss);
  }
  return { rss: median(readings) };
}

/** The gateway's own count of answers by status (gatehouse_requests_total). */
async function answersByStatus(g: Gateway): Promise<Map<string, number>> {
  const metrics = await (await request(`${g.adminUrl}/metrics`)).body.text();
  const byStatus = new Map<string, number>();
  for (const m of metrics.matchAll(/^gatehouse_requests_total\{[^}]*status="(\d+)"[^}]*\} (\d+)/gm)) {
    byStatus.set(m[1]!, (byStatus.get(m[1]!) ?? 0) + Number(m[2]));
  }
  return byStatus;
}

// ---------------------------------------------------------------------------------------------------------------
// Load

function wrkAvailable(): boolean {
  return spawnSync('sh', ['-c', 'command -v wrk'], { stdio: 'ignore' }).status === 0;
}

interface Segment {
  /** Requests completed in all by the end of the segment. */
  requestsAfter: number;
  /** The lowest readings of the segment. */
  lowest: Memory;
}

interface Totals {
  requests: number;
  errors: number;
  seconds: number;
  p99s: number[];
  segments: Segment[];
}

/** Reads the gateway's memory every 250 ms until `until` settles; resolves with the lowest readings. */
async function lowestMemory(g: Gateway, until: Promise<unknown>): Promise<Memory> {
  let done = false;
  void until.finally(() => (done = true)).catch(() => undefined);
  const lowest = { rss: Infinity, heapUsed: Infinity };
  while (!done) {
    const now = await memory(g);
    lowest.rss = Math.min(lowest.rss, now.rss);
    lowest.heapUsed = Math.min(lowest.heapUsed, now.heapUsed);
    await sleep(250);
  }
  return lowest;
}

/** The lowest readings over the segments that end in (from, to] requests. */
function lowestBetween(segments: Segment[], from: number, to: number): Memory {
  const within = segments.filter((s) => s.requestsAfter > from && s.requestsAfter <= to);
  return { rss: Math.min(...within.map((s) => s.lowest.rss)), heapUsed: Math.min(...within.map((s) => s.lowest.heapUsed)) };
}

/** Runs wrk in segments until `target` requests have completed in all (counting `totals`). */
async function drive(g: Gateway, target: number, totals: Totals, label: string): Promise<void> {
  let rate = 0;
  while (totals.requests < target) {
    const left = target - totals.requests;
    // The first segment is short, to learn the rate; the last is cut to what is left (2 s at least: wrk takes a moment
    // to open its connections, so shorter runs fall short of the rate and end in a run of tiny segments).
    const seconds = rate === 0 ? 5 : Math.max(2, Math.min(SEGMENT_S, Math.ceil(left / rate)));
    const running = runChainWrk(`${g.url}/items`, { seconds, connections: CONNECTIONS });
    const [run, lowest] = await Promise.all([running, lowestMemory(g, running)]);
    rate = run.rps;
    totals.requests += run.requests;
    totals.errors += run.non2xx + run.socketErrors;
    totals.seconds += seconds;
    totals.p99s.push(run.p99ms);
    totals.segments.push({ requestsAfter: totals.requests, lowest });
    log(
      `${label}: ${totals.requests.toLocaleString('en-US')} requests, ${Math.round(run.rps)} req/s, p99 ${run.p99ms.toFixed(1)} ms, ` +
        `errors ${totals.errors}; lowest RSS ${mib(lowest.rss)} MiB, lowest heap ${mib(lowest.heapUsed)} MiB`,
    );
  }
}

// ---------------------------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  if (!wrkAvailable()) throw new Error('wrk is not on PATH: install it (Debian: apt-get install wrk)');
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-soak-'));
  backend = await startBenchBackend();
  const g = await startSoakGateway(backend.url);
  await checkChain(g);
  log(`gateway (pid ${g.pid}) on ${g.url} with the five-policy chain, backend ${backend.url}; wrk -t1 -c${CONNECTIONS}, keep-alive`);

  const totals: Totals = { requests: 0, errors: 0, seconds: 0, p99s: [], segments: [] };
  await drive(g, WARMUP, totals, 'warm-up');
  const warmIdle = await settledMemory(g);
  log(`after warm-up, idle: RSS ${mib(warmIdle.rss)} MiB`);
  const soakFrom = totals.requests;
  await drive(g, TOTAL, totals, 'soak');
  const endIdle = await settledMemory(g);
  log(`at the end, idle: RSS ${mib(endIdle.rss)} MiB`);
  const quarter = (totals.requests - soakFrom) / 4;
  const early = lowestBetween(totals.segments, soakFrom, soakFrom + quarter);
  const late = lowestBetween(totals.segments, totals.requests - quarter, totals.requests);

  const byStatus = await answersByStatus(g);
  const otherThan200 = [...byStatus].filter(([s]) => s !== '200').reduce((n, [, c]) => n + c, 0);
  log(`the gateway counted ${[...byStatus].map(([s, c]) => `${c.toLocaleString('en-US')} × ${s}`).join(', ')} (the 401 is the check's)`);
  const gatewayErrors = Math.max(0, otherThan200 - 1);
  const logSize = statSync(g.logFile).size;
  const warnings = spawnSync('grep', ['-E', '-m', '10', '"level":"(warn|error)"', g.logFile], { encoding: 'utf8' }).stdout.trim();
  log(`access log: ${mib(logSize)} MiB; warnings and errors: ${warnings ? `\n${warnings}` : 'none'}`);

  const errors = totals.errors + gatewayErrors;
  const pct = (from: number, to: number) => (((to - from) / from) * 100).toFixed(1);
  const growthPct = ((late.rss - early.rss) / early.rss) * 100;
  const lines = [
    `soak-requests: ${totals.requests}`,
    `soak-errors: ${errors}`,
    `soak-rss-growth-pct: ${growthPct.toFixed(1)}`,
    `soak-rss-after-warmup-mib: ${mib(early.rss)} (lowest over the first quarter)`,
    `soak-rss-end-mib: ${mib(late.rss)} (lowest over the last quarter)`,
    `soak-heap-growth-pct: ${pct(early.heapUsed, late.heapUsed)}`,
    `soak-heap-after-warmup-mib: ${mib(early.heapUsed)}`,
    `soak-heap-end-mib: ${mib(late.heapUsed)}`,
    `soak-rss-idle-growth-pct: ${pct(warmIdle.rss, endIdle.rss)} (idle ${mib(warmIdle.rss)} MiB after the warm-up, ${mib(endIdle.rss)} MiB at the end)`,
    `soak-duration-s: ${totals.seconds}`,
    `soak-requests-per-s: ${Math.round(totals.requests / totals.seconds)}`,
    `soak-p99-ms-median-of-segments: ${median(totals.p99s).toFixed(1)}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
  return errors === 0 && totals.requests >= TOTAL && growthPct <= MAX_GROWTH_PCT ? 0 : 1;
}

async function cleanup(): Promise<void> {
  if (gateway && gateway.exitCode === null) {
    const exited = new Promise((r) => gateway!.once('exit', r));
    gateway.kill('SIGTERM');
    await exited;
  }
  await backend?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}

runScenario(main, cleanup);
