// Latency at a fixed request rate, for `npm run bench:proxy`; run as its own process, prints one JSON object.
//
//   node latency-probe.js <mode> <url> <rate> <seconds> [header: value]...
//
// mode `constant` (what bench:proxy reports as p99-added-ms): a wrk2-style open loop written here. One request is
//   started every 1000/rate ms on an undici Pool (32 connections) whether or not earlier ones have answered; a
//   request's latency runs from the moment it was started (waiting for a free connection included) to the end of its
//   response body, so a target that falls behind shows it as latency instead of being sent fewer requests. A first
//   second at the same rate is not recorded.
// mode `autocannon` (for reference): autocannon 9 with `overallRate`, 10 connections. Two things make it a poor
//   measure here. It paces by bursts: each connection may send rate/connections requests per second and sends them
//   back to back at the start of each second, then waits. And it keeps latencies in a histogram of whole
//   milliseconds, so its own p99 (reported as `autocannonP99`) cannot resolve sub-millisecond differences; the other
//   figures of this mode come from its `response` events, which carry each response time in fractional milliseconds.
//
// BENCH_LATENCY_SLOWEST=<file> (mode constant): appends the slowest 1% of the recorded requests to <file>, one JSON
// line each ({"url", "atMs": when it started, from the first recorded request, "ms": its latency}), in the order they
// started: whether the slow ones come together (a pause), at a period (a timer's work), or scattered.

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
}

const [modeArg, urlArg, rateArg, secondsArg, ...headerArgs] = process.argv.slice(2);
const rate = Number(rateArg);
const seconds = Number(secondsArg);
if (!urlArg || !(rate > 0) || !(seconds > 0) || (modeArg !== 'autocannon' && modeArg !== 'constant')) {
  throw new Error('usage: latency-probe <autocannon|constant> <url> <rate> <seconds> [header: value]...');
}
const mode: string = modeArg;
const url: string = urlArg;
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

function writeSlowest(file: string, samples: number[], startedAt: number[]): void {
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
    const instance = autocannon({ url, connections: 10, overallRate: rate, duration: seconds, headers }, (error, r) =>
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

async function runConstant(): Promise<LatencySummary> {
  const target = new URL(url);
  const pool = new Pool(target.origin, { connections: 32, pipelining: 1 });
  const path = target.pathname + target.search;
  const samples: number[] = [];
  /** When each sample's request started, for BENCH_LATENCY_SLOWEST. */
  const startedAt: number[] = [];
  let non2xx = 0;
  let errors = 0;
  const interval = 1000 / rate;
  // The first second runs at the same rate but is not recorded: it brings the pool (and the target's connections) to
  // their steady state.
  const warmup = Math.round(rate);
  const total = warmup + Math.round(rate * seconds);
  const pending = new Set<Promise<void>>();
  const fire = (recorded: boolean) => {
    const started = performance.now();
    const p = pool
      .request({ path, method: 'GET', headers })
      .then(async ({ statusCode, body }) => {
        await body.dump({ limit: Number.MAX_SAFE_INTEGER });
        if (!recorded) return;
        if (statusCode >= 200 && statusCode < 300) {
          samples.push(performance.now() - started);
          startedAt.push(started);
        } else non2xx++;
      })
      .catch(() => void (recorded && errors++))
      .finally(() => pending.delete(p));
    pending.add(p);
  };
  await new Promise<void>((resolve) => {
    const start = performance.now() + 20;
    let sent = 0;
    const tick = () => {
      const now = performance.now();
      while (sent < total && start + sent * interval <= now) {
        fire(sent >= warmup);
        sent++;
      }
      if (sent >= total) resolve();
      else setTimeout(tick, Math.max(0, start + sent * interval - performance.now()));
    };
    setTimeout(tick, 20);
  });
  await Promise.all(pending);
  await pool.close();
  const slowestFile = process.env.BENCH_LATENCY_SLOWEST;
  if (slowestFile) writeSlowest(slowestFile, samples, startedAt);
  return summarize(samples, non2xx, errors);
}

const summary = mode === 'autocannon' ? await runAutocannon() : await runConstant();
process.stdout.write(JSON.stringify(summary) + '\n');
process.exit(0);
