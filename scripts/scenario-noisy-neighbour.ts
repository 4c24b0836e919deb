// npm run scenario:noisy-neighbour — how much one API whose policy loops costs another API on the same gateway.
//
// Starts a backend (scripts/bench/backend.ts) and a gateway process on 127.0.0.1 serving two APIs on it:
//   steady  a light chain (set-header inbound);
//   noisy   an inbound policy that loops forever (test/fixtures/policies/adversarial, mode "loop", built from source
//           when the configuration loads): each call runs until its CPU budget (50 ms by default) stops it.
// Then puts the steady API under a constant request rate (scripts/bench/latency-probe.ts, `constant`: an open loop of
// SCENARIO_RATE requests a second on one undici Pool of 32 connections, in its own process; each latency from the
// moment the request was due) in two phases of SCENARIO_SECONDS each, after a warm-up:
//   warm-up      SCENARIO_WARMUP_SECONDS of steady load alone (both chains are compiled and their instances made when
//                the configuration loads): the backend's connections open; not measured. The noisy API is not hit
//                before the measured phase, so that its circuit breaker opens inside it and what that costs counts;
//   without      the steady load alone;
//   with-noisy   the same load while the noisy API is hit SCENARIO_NOISY_RATE times a second (each request sent on
//                time whether or not the previous one was answered).
// Each phase's probe first runs a second at the same rate that is not recorded, so both measured windows start in the
// same state. The order is fixed (without, then with): the noisy phase leaves recycled instances behind, never the
// other way round.
//
// Prints, on stdout:
//   steady-p50-ms-without, steady-p99-ms-without, steady-p50-ms-with-noisy, steady-p99-ms-with-noisy
//   noisy-neighbour-p99-added-ms: with-noisy p99 minus without p99 (target: at most 2)
//   steady-requests-without, steady-requests-with-noisy, steady-failed (non-2xx answers and errors, both phases)
//   noisy-requests-sent, noisy-statuses (e.g. `500×150`), noisy-policy-failures (the gateway's
//   gatehouse_policy_failures_total for the looping binding, by reason)
// and exits 1 when the target is missed or a steady request failed.
//
// Environment: SCENARIO_RATE (steady requests a second, default 200), SCENARIO_SECONDS (each measured phase, default
// 30), SCENARIO_WARMUP_SECONDS (default 5), SCENARIO_NOISY_RATE (default 5), SCENARIO_GATEWAY=deno to run the gateway
// under Deno (./node_modules/.bin/deno, from the TypeScript sources) instead of Node, SCENARIO_BREAKER=off to turn the
// looping policy's circuit breaker off (circuitBreaker: { failures: 0 }), to see what it saves.

import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { startGatewayProcess, tempDir, writeConfig, type GatewayCommand, type GatewayProcess } from '../test/support/gateway-process.ts';
import type { LatencySummary } from './bench/latency-probe.ts';
import { startBenchBackend, type BenchBackend } from './lib/bench-backend.ts';
import { positiveFromEnv } from './lib/env.ts';
import { denoGateway } from './lib/gateway-process.ts';
import { runScenario } from './lib/run.ts';

const RATE = positiveFromEnv('SCENARIO_RATE', 200);
const SECONDS = positiveFromEnv('SCENARIO_SECONDS', 30);
const WARMUP_SECONDS = positiveFromEnv('SCENARIO_WARMUP_SECONDS', 5);
const NOISY_RATE = positiveFromEnv('SCENARIO_NOISY_RATE', 5);
const TARGET_ADDED_MS = 2;
const breaker = process.env.SCENARIO_BREAKER ?? 'on';
if (breaker !== 'on' && breaker !== 'off') throw new Error(`SCENARIO_BREAKER must be on or off, not ${breaker}`);
const runtime = process.env.SCENARIO_GATEWAY ?? 'node';
if (runtime !== 'node' && runtime !== 'deno') throw new Error(`SCENARIO_GATEWAY must be node or deno, not ${runtime}`);
const log = (line: string) => process.stderr.write(`${line}\n`);
const started = performance.now();
const elapsed = () => `${((performance.now() - started) / 1000).toFixed(1).padStart(5)} s`;

function config(backend: string): string {
  const adversarial = join(repoRoot(), 'test', 'fixtures', 'policies', 'adversarial');
  return `
version: 1
apis:
  - id: steady
    pathPrefix: /steady
    backend: { url: "${backend}" }
    policies:
      inbound:
        - policy: set-header
          config: { name: x-steady, value: "1" }
  - id: noisy
    pathPrefix: /noisy
    backend: { url: "${backend}" }
    policies:
      inbound:
        - source: "${adversarial}"
          config: { mode: loop }${breaker === 'off' ? '\n          circuitBreaker: { failures: 0 }' : ''}
`;
}

function gatewayCommand(): GatewayCommand | undefined {
  if (runtime === 'node') return undefined;
  return denoGateway();
}

const children: ChildProcess[] = [];

/** Runs the latency probe against `url` for `seconds` (after its unrecorded second) and returns its summary. */
async function steadyLoad(url: string, seconds: number): Promise<LatencySummary> {
  const probe = join(repoRoot(), 'dist', 'scripts', 'bench', 'latency-probe.js');
  const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', probe, 'constant', url, String(RATE), String(seconds)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stderr!.on('data', (c: Buffer) => (err = (err + c.toString('utf8')).slice(-2000)));
  const code = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), (seconds + 30) * 1000);
    child.once('close', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  children.splice(children.indexOf(child), 1);
  if (code !== 0) throw new Error(`the latency probe exited with ${code}: ${err}`);
  return JSON.parse(out.trim().split('\n').pop() ?? '{}') as LatencySummary;
}

/** Hits the noisy API NOISY_RATE times a second, on schedule, until stopped; counts the answers by status. */
class NoisyClient {
  sent = 0;
  readonly statuses = new Map<string, number>();
  private timer: ReturnType<typeof setTimeout> | null = null;
  private readonly pending = new Set<Promise<void>>();

  constructor(
    private readonly url: string,
    private readonly agent: Agent,
  ) {}

  start(): void {
    const interval = 1000 / NOISY_RATE;
    const begin = performance.now();
    const tick = () => {
      this.fire();
      this.timer = setTimeout(tick, Math.max(0, begin + this.sent * interval - performance.now()));
    };
    tick();
  }

  private fire(): void {
    this.sent++;
    const p = request(this.url, { dispatcher: this.agent, headersTimeout: 30_000, bodyTimeout: 30_000 })
      .then(async (res) => {
        await res.body.dump();
        return String(res.statusCode);
      })
      .catch((err: Error & { code?: string }) => err.code ?? err.name)
      .then((what) => void this.statuses.set(what, (this.statuses.get(what) ?? 0) + 1))
      .finally(() => this.pending.delete(p));
    this.pending.add(p);
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await Promise.all(this.pending);
  }

  summary(): string {
    return [...this.statuses].sort().map(([what, n]) => `${what}×${n}`).join(' ') || 'none';
  }
}

/** gatehouse_policy_failures_total of the noisy API's binding, by reason (`cpu-budget=150`). */
async function noisyFailures(g: GatewayProcess, agent: Agent): Promise<string> {
  const res = await request(`http://127.0.0.1:${g.adminPort}/metrics`, { dispatcher: agent });
  const text = await res.body.text();
  const found: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^gatehouse_policy_failures_total\{policy="([^"]*)",reason="([^"]*)"\} (\d+)/.exec(line);
    if (m && m[1]!.includes('adversarial')) found.push(`${m[2]}=${m[3]}`);
  }
  return found.join(' ') || 'none';
}

const round = (ms: number) => Math.round(ms * 100) / 100;

let backend: BenchBackend | null = null;
let gateway: GatewayProcess | null = null;
const agent = new Agent({ connections: 16 });

async function main(): Promise<number> {
  backend = await startBenchBackend();
  const file = writeConfig(tempDir('gatehouse-noisy-'), 'gateway.yaml', config(backend.url));
  gateway = await startGatewayProcess({ config: file, command: gatewayCommand(), startTimeoutMs: 120_000 });
  log(`# ${elapsed()}  gateway (${runtime}) on ${gateway.httpPort}, backend ${backend.url}; steady load ${RATE} requests/s, noisy ${NOISY_RATE}/s, circuit breaker ${breaker}`);
  const steadyUrl = `${gateway.url}/steady/items`;
  const noisyUrl = `${gateway.url}/noisy/items`;

  const warm = await steadyLoad(steadyUrl, WARMUP_SECONDS);
  log(`# ${elapsed()}  warm-up: ${warm.requests} steady requests (p99 ${round(warm.p99)} ms)`);

  const without = await steadyLoad(steadyUrl, SECONDS);
  log(`# ${elapsed()}  without: ${without.requests} requests, p50 ${round(without.p50)} ms, p99 ${round(without.p99)} ms, max ${round(without.max)} ms`);

  const failuresBefore = await noisyFailures(gateway, agent);
  const noisy = new NoisyClient(noisyUrl, agent);
  noisy.start();
  const withNoisy = await steadyLoad(steadyUrl, SECONDS);
  await noisy.stop();
  const failures = await noisyFailures(gateway, agent);
  log(`# ${elapsed()}  with noisy: ${withNoisy.requests} requests, p50 ${round(withNoisy.p50)} ms, p99 ${round(withNoisy.p99)} ms, max ${round(withNoisy.max)} ms`);
  log(`# ${elapsed()}  noisy: ${noisy.sent} sent, answers ${noisy.summary()}; the looping binding's failures ${failuresBefore} before the phase, ${failures} after`);

  const added = round(withNoisy.p99 - without.p99);
  const steadyFailed = without.non2xx + without.errors + withNoisy.non2xx + withNoisy.errors;
  const out = [
    `steady-p50-ms-without: ${round(without.p50)}`,
    `steady-p99-ms-without: ${round(without.p99)}`,
    `steady-p50-ms-with-noisy: ${round(withNoisy.p50)}`,
    `steady-p99-ms-with-noisy: ${round(withNoisy.p99)}`,
    `noisy-neighbour-p99-added-ms: ${added}`,
    `steady-requests-without: ${without.requests}`,
    `steady-requests-with-noisy: ${withNoisy.requests}`,
    `steady-failed: ${steadyFailed}`,
    `noisy-requests-sent: ${noisy.sent}`,
    `noisy-statuses: ${noisy.summary()}`,
    `noisy-policy-failures: ${failures}`,
  ];
  process.stdout.write(out.join('\n') + '\n');
  if (added > TARGET_ADDED_MS) log(`# target missed: the noisy API added ${added} ms to the steady API's p99 (target: at most ${TARGET_ADDED_MS})`);
  if (steadyFailed > 0) log(`# ${steadyFailed} steady requests failed`);
  return added > TARGET_ADDED_MS || steadyFailed > 0 ? 1 : 0;
}

async function cleanup(): Promise<void> {
  for (const child of children) child.kill('SIGKILL');
  await gateway?.stop().catch(() => null);
  await backend?.stop().catch(() => null);
  await agent.close().catch(() => null);
}

runScenario(main, cleanup);
