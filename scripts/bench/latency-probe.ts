// Latency at a fixed request rate, for `npm run bench:proxy`; run as its own process, prints one JSON object.
//
//   node latency-probe.js <mode> <url> <rate> <seconds> [header: value]...
//   node latency-probe.js paired <url> <reference-url> <rate> <seconds> [header: value]...
//
// mode `constant`: a wrk2-style open loop written here. One request is started every 1000/rate ms on an undici Pool
//   (32 connections) whether or not earlier ones have answered; a request's latency runs from the moment it was
//   started (waiting for a free connection included) to the end of its response body, so a target that falls behind
//   shows it as latency instead of being sent fewer requests. A first second at the same rate is not recorded.
// mode `paired` (what bench:proxy reports as p99-added-ms): the same loop over two URLs at once, each at the rate, their
//   requests taking turns: a proxy and, beside it, the backend it forwards to. Node's timers fire about once a
//   millisecond, so a pair usually leaves together, and the proxy's request may wait at the backend behind the
//   reference's (some 25 us: a bias against the proxy). Printed: the proxy's summary, with the reference's as `beside`. A proxy's p99 and the backend's measured one after the other
//   differ by what the machine did in each run: this machine's host pauses it for about 100 ms at times and changes
//   speed by the minute (BENCHMARKS.md), and the same build's p99 added was 0.76 ms in one run and 2.19 in another. Run
//   together, the two see the same pauses, and their difference is the proxy's.
// mode `autocannon` (for reference): autocannon 9 with `overallRate`, 10 connections. Two things make it a poor
//   measure here. It paces by bursts: each connection may send rate/connections requests per second and sends them
//   back to back at the start of each second, then waits. And it keeps latencies in a histogram of whole
//   milliseconds, so its own p99 (reported as `autocannonP99`) cannot resolve sub-millisecond differences; the other
//   figures of this mode come from its `response` events, which carry each response time in fractional milliseconds.
//
// BENCH_LATENCY_SLOWEST=<file> (modes constant and paired): appends the slowest 1% of each URL's recorded requests to
// <file>, one JSON line each ({"url", "atMs": when it started, from the first recorded request, "ms": its latency}), in
// the order they started: whether the slow ones come together (a pause), at a period (a timer's work), or scattered.

import autocannon from 'autocannon';
import { appendFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';

export interface LatencySummary {
  mode: string;
  requests: number;
  non2xx: number;
  errors: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  autocannonP99?: number;
  /** Mode paired: the reference URL's, measured in the same run. */
  beside?: LatencySummary;
}

const args = process.argv.slice(2);
const modeArg = args.shift();
const urlArgs = [args.shift(), ...(modeArg === 'paired' ? [args.shift()] : [])];
const [rateArg, secondsArg, ...headerArgs] = args;
const rate = Number(rateArg);
const seconds = Number(secondsArg);
if (urlArgs.some((u) => !u) || !(rate > 0) || !(seconds > 0) || (modeArg !== 'autocannon' && modeArg !== 'constant' && modeArg !== 'paired')) {
  throw new Error('usage: latency-probe <autocannon|constant> <url> <rate> <seconds> [header: value]... | paired <url> <reference-url> <rate> <seconds> [header: value]...');
}
const mode: string = modeArg;
const urls = urlArgs as string[];
const headers: Record<string, string> = {};
for (const h of headerArgs) {
  const at = h.indexOf(':');
  if (at > 0) headers[h.slice(0, at).trim().toLowerCase()] = h.slice(at + 1).trim();
}

function summarize(samples: number[], non2xx: number, errors: number): LatencySummary {
  samples.sort((a, b) => a - b);
  const at = (p: number) => (samples.length === 0 ? NaN : samples[Math.min(samples.length - 1, Math.ceil(samples.length * p) - 1)]!);
  return { mode, requests: samples.length + non2xx, non2xx, errors, p50: at(0.5), p90: at(0.9), p99: at(0.99), p999: at(0.999), max: at(1) };
}

function writeSlowest(file: string, url: string, samples: number[], startedAt: number[]): void {
  const first = Math.min(...startedAt);
  const order = samples.map((_, i) => i).sort((a, b) => samples[b]! - samples[a]!);
  const slowest = order.slice(0, Math.max(1, Math.ceil(samples.length / 100))).sort((a, b) => startedAt[a]! - startedAt[b]!);
  const lines = slowest.map((i) => JSON.stringify({ url, atMs: Math.round(startedAt[i]! - first), ms: Math.round(samples[i]! * 100) / 100 }));
  appendFileSync(file, lines.join('\n') + '\n');
}

async function runAutocannon(): Promise<LatencySummary> {
  const samples: number[] = [];
  let non2xx = 0;
  let errors = 0;
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon({ url: urls[0]!, connections: 10, overallRate: rate, duration: seconds, headers }, (error, r) =>
      error ? reject(error) : resolve(r),
    );
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      if (statusCode >= 200 && statusCode < 300) samples.push(responseTime);
      else non2xx++;
    });
    instance.on('reqError', () => errors++);
  });
  return { ...summarize(samples, non2xx, errors), autocannonP99: result.latency.p99 };
}

/** The open loop over `urls` (one for constant, two for paired): each at `rate`, their requests in turn. */
async function runConstant(): Promise<LatencySummary[]> {
  const probes = urls.map((url) => {
    const target = new URL(url);
    return {
      url,
      pool: new Pool(target.origin, { connections: 32, pipelining: 1 }),
      path: target.pathname + target.search,
      samples: [] as number[],
      /** When each sample's request started, for BENCH_LATENCY_SLOWEST. */
      startedAt: [] as number[],
      non2xx: 0,
      errors: 0,
    };
  });
  // Requests of all the URLs, in turn: each URL's start 1000/rate ms apart, the URLs' spread evenly between them.
  const interval = 1000 / rate / probes.length;
  // The first second runs at the same rate but is not recorded: it brings the pools (and the targets' connections) to
  // their steady state.
  const warmup = Math.round(rate) * probes.length;
  const total = warmup + Math.round(rate * seconds) * probes.length;
  const pending = new Set<Promise<void>>();
  const fire = (n: number) => {
    const probe = probes[n % probes.length]!;
    const recorded = n >= warmup;
    const started = performance.now();
    const p = probe.pool
      .request({ path: probe.path, method: 'GET', headers })
      .then(async ({ statusCode, body }) => {
        await body.dump({ limit: Number.MAX_SAFE_INTEGER });
        if (!recorded) return;
        if (statusCode >= 200 && statusCode < 300) {
          probe.samples.push(performance.now() - started);
          probe.startedAt.push(started);
        } else probe.non2xx++;
      })
      .catch(() => void (recorded && probe.errors++))
      .finally(() => pending.delete(p));
    pending.add(p);
  };
  await new Promise<void>((resolve) => {
    const start = performance.now() + 20;
    let sent = 0;
    const tick = () => {
      const now = performance.now();
      while (sent < total && start + sent * interval <= now) fire(sent++);
      if (sent >= total) resolve();
      else setTimeout(tick, Math.max(0, start + sent * interval - performance.now()));
    };
    setTimeout(tick, 20);
  });
  await Promise.all(pending);
  await Promise.all(probes.map((probe) => probe.pool.close()));
  const slowestFile = process.env.BENCH_LATENCY_SLOWEST;
  if (slowestFile) for (const probe of probes) writeSlowest(slowestFile, probe.url, probe.samples, probe.startedAt);
  return probes.map((probe) => summarize(probe.samples, probe.non2xx, probe.errors));
}

async function measure(): Promise<LatencySummary> {
  if (mode === 'autocannon') return runAutocannon();
  const [summary, beside] = await runConstant();
  return beside ? { ...summary!, beside } : summary!;
}

process.stdout.write(JSON.stringify(await measure()) + '\n');
process.exit(0);
