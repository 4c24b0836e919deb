// npm run bench:proxy — Gatehouse's throughput and added latency as a reverse proxy, side by side with peer proxies.
//
// One backend (scripts/bench/backend.ts: `node:http`, a small JSON body) runs for the whole benchmark; the targets run
// one at a time, each as its own process, and take the same wrk load:
//   direct       the backend itself
//   nginx        nginx, 1 worker, upstream keepalive 64 (config written to a temp dir)
//   undici       scripts/bench/minimal-undici-proxy.ts: `node:http` + undici 7 Pool (64 connections), streamed body
//   undici-duties  the same with BENCH_DUTIES=1: X-Forwarded-*, request ids and a JSON access log line, as Gatehouse
//                does (a reference: what those duties cost a minimal proxy)
//   fastify      scripts/bench/fastify-proxy.ts: @fastify/http-proxy 11 on fastify 5
//   gatehouse    dist/runtime/entry/gateway.js --config <file>: one API, no policies
//   gatehouse-5  the same with the five-policy chain (FIVE_POLICY_CHAIN, scripts/bench/five-policy-chain.ts)
//   gatehouse-5n the same with GATEHOUSE_POLICY_REPLAY=off: every policy call runs its module, where gatehouse-5's
//                deterministic built-ins (four of the five) are answered from an earlier call's changes, since every
//                request of the load is the same (runtime/policy-host/replay.ts); `five-policy-no-replay-ratio` and
//                `five-policy-no-replay-cpu-us-added` are gatehouse-5's figures for it, `replay-ratio` gatehouse-5 over it
//   gatehouse-5w the same chain with a `when:` condition on each entry, each true (issue 18):
//                `five-policy-conditions-ratio` is its throughput over gatehouse-5's
//   gatehouse-5f the same five built-ins' handlers compiled into one module (test/fixtures/policies/five-in-one), called
//                once inbound and once outbound: only when BENCH_TARGETS names it; then `five-in-one-ratio` (its
//                throughput over gatehouse-5's) and `five-in-one-cpu-us-added` (its CPU a request less gatehouse's):
//                what the number of modules and calls costs beside the policies' own work
//   gatehouse-burn Gatehouse with one policy that only spends CPU (test/fixtures/policies/cpu-burn: no host call, no
//                header, the same system calls a request as without policies), about what the five add in user time:
//                only when BENCH_TARGETS names it; then `burn-cpu-us-added` and `burn-system-us-added`. What it adds to
//                the gateway's system time is what being slower costs in the kernel on this machine (a peer waiting idle
//                is woken at a higher price), to read `five-policy-system-us-added` against
//   gatehouse-gzip, gatehouse-read, gatehouse-gzip-read  compressed bodies, only when BENCH_TARGETS names them:
//                Gatehouse without policies in front of the backend answering gzip (the body streams through as it
//                came), and with one outbound policy that reads the response body and changes nothing (find-and-replace
//                without a match) in front of the plain and the gzip backend (the gateway holds the body, decodes the
//                gzip for the policy and sends the bytes as they came); then `gzip-streamed-ratio` (over gatehouse),
//                `read-body-ratio` (over gatehouse), `gzip-read-body-ratio` (over gatehouse-read) and
//                `gzip-read-body-cpu-us-added` (the gateway's CPU a request, gzip less plain)
//   gatehouse-cache  Gatehouse with cache-lookup and cache-store (in memory): every measured request is a cache hit;
//                only when BENCH_TARGETS names it; then `cache-hit-ratio-vs-direct` (over the backend itself) and
//                `cache-hit-ratio-vs-gatehouse` (over Gatehouse forwarding every request)
//   gatehouse-ai Gatehouse without policies, sending its telemetry to Application Insights (a local HTTPS ingestion
//                endpoint in this process, scripts/bench/ingestion-endpoint.ts): only when BENCH_TARGETS names it, e.g.
//                BENCH_TARGETS=gatehouse,gatehouse-ai; then also `appinsights-ratio` and the gateway's CPU a request
//                (BENCH_APPINSIGHTS_SAMPLING_PERCENTAGE sets that gateway's GATEHOUSE_APPINSIGHTS_SAMPLING_PERCENTAGE)
//   gatehouse-otlp Gatehouse without policies, exporting spans and metrics over OTLP (a local receiver in this process,
//                scripts/bench/otlp-receiver.ts): only when BENCH_TARGETS names it; then also `otlp-ratio`, the CPU
//                it adds a request and the p99 it adds
//   deno, deno-5 Gatehouse from its TypeScript sources under Deno (runtime/entry/gateway.ts, as `deno task start`
//                runs it), without and with the five policies; `deno-throughput-ratio` and
//                `deno-five-policy-throughput-ratio` are Deno over Node, same rounds
//   baseline, baseline-5  another build of Gatehouse (its entry in BENCH_BASELINE_MAIN), without and with the five
//                policies: only when BENCH_BASELINE_MAIN is set; then also `baseline-ratio` and
//                `baseline-five-policy-ratio` (this build over the other, measured in the same rounds), and its
//                `baseline-p99-added-ms` and `baseline-p99-added-ms-five-policies` (the latency phase probes it after
//                this build's targets)
//   baseline-ai  that build with Application Insights on, as gatehouse-ai: only when BENCH_BASELINE_MAIN is set and
//                BENCH_TARGETS names it; then also `baseline-appinsights-ratio` (its baseline-ai over its baseline), so
//                that two builds' appinsights-ratio are measured in the same rounds
// Each round starts, checks, warms up and measures every target in turn; rounds alternate the order. Then, at a fixed
// rate of 1,000 requests/s, the backend directly, the minimal undici proxy and Gatehouse without policies:
// `p99-added-ms` is the difference of Gatehouse's p99 and the backend's under a constant-rate open loop (wrk2's method;
// scripts/bench/latency-probe.ts), each proxy's run sending the backend as many requests of its own beside the proxy's,
// in turn, so that the two p99s come from the same seconds (latency-probe.ts, mode paired, says why); autocannon
// `--overallRate` is measured beside it for reference (latency-probe.ts says why it is not the headline);
// `p99-added-ms-five-policies` the same for Gatehouse with the five policies.
//
// Prints a table on stderr, then on stdout:
//   throughput-ratio-vs-fastify, throughput-ratio-vs-undici, five-policy-ratio, p99-added-ms, throughput-ratio-vs-nginx,
//   p99-added-ms-minimal-undici (the same latency figure for the minimal undici proxy: the floor of one Node hop here),
//   throughput-ratio-vs-undici-with-duties (against the minimal proxy doing the forwarding headers, ids and log),
//   p99-added-ms-five-policies, five-policy-cpu-us-added (the gateway's CPU time a request, user + system from /proc,
//   with the five policies less without, round by round, median), five-policy-system-us-added (the system part of that
//   difference; the target lines print each's system time a request), deno-throughput-ratio, deno-five-policy-throughput-ratio,
//   five-policy-conditions-ratio
// Ratios use each target's best round (requests/s); `n/a` when a target could not be measured (exit code 1), or was
// left out by BENCH_TARGETS (a headline figure then stays n/a without failing the run).
//
// Environment: BENCH_ROUNDS (2), BENCH_DURATION_S (5), BENCH_WARMUP_S (2), BENCH_LATENCY_S (10),
// BENCH_GATEHOUSE_MAIN (the gateway's entry, default dist/runtime/entry/gateway.js), BENCH_TARGETS (keys to run, comma-separated,
// e.g. `direct,gatehouse`; default all), BENCH_TRACEPARENT=1 (every request carries a W3C traceparent),
// BENCH_PIN=1 (proxies on CPU 1, wrk, the backend and this process, with its telemetry endpoints, on CPU 0: see PINNED),
// BENCH_LATENCY_SLOWEST=<file> (the latency probe appends each target's slowest 1% there: scripts/bench/latency-probe.ts). GATEHOUSE_* variables pass through to the gateway (e.g. GATEHOUSE_LOG_LEVEL);
// its stdout (one JSON log line per request) goes to a file in the temp dir, as nginx's access log does.
// Needs `wrk` and `nginx` on PATH; as root, installs them with apt-get when missing.

import type { LatencySummary } from './bench/latency-probe.ts';
import { nginxProxyConfig } from './lib/nginx-config.ts';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, chmodSync, closeSync, constants, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { gunzipSync } from 'node:zlib';
import { freePort } from '../test/support/ports.ts';
import { availableParallelism, tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { positiveFromEnv } from './lib/env.ts';
import { startBenchIngestionEndpoint, type BenchIngestionEndpoint } from './bench/ingestion-endpoint.ts';
import { startBenchOtlpReceiver, type BenchOtlpReceiver } from './bench/otlp-receiver.ts';
import { API_KEY, ORIGIN, benchGatewayYaml, type BenchPolicies } from './bench/five-policy-chain.ts';
import { parseWrkOutput, type WrkRun } from './lib/wrk.ts';
import { onCpu, pinThisProcess } from './lib/pinning.ts';
import { denoGateway } from './lib/gateway-process.ts';
import { STATUS_PATH } from '../runtime/gateway/gateway.ts';

// ---------------------------------------------------------------------------------------------------------------
// Settings

const ROUNDS = positiveFromEnv('BENCH_ROUNDS', 2);
const DURATION_S = positiveFromEnv('BENCH_DURATION_S', 5);
const WARMUP_S = positiveFromEnv('BENCH_WARMUP_S', 2);
const LATENCY_S = positiveFromEnv('BENCH_LATENCY_S', 10);
const LATENCY_RATE = 1000;
const WRK_THREADS = 1;
const WRK_CONNECTIONS = 32;
const GATEWAY_READY_MS = 60_000;
/**
 * BENCH_PIN=1: each proxy under test runs on CPU 1 alone, and the load generators and the backend on CPU 0 (taskset).
 * Unpinned, the three share both cores as the scheduler places them. Pinned, the load side (one core for wrk and the
 * backend) may bound the throughput before the proxy does, and a proxy that waits for it takes fewer requests a
 * wake-up: its CPU a request rises. BENCHMARKS.md compares the two.
 */
const PINNED = process.env.BENCH_PIN === '1';
if (PINNED && availableParallelism() < 2) throw new Error(`BENCH_PIN=1 needs two CPUs; this process may use ${availableParallelism()}`);
type CpuRole = 'proxy' | 'load';
const CPU_OF: Record<CpuRole, number> = { proxy: 1, load: 0 };
// This process serves the telemetry targets' endpoints: with the load, not beside the proxy.
if (PINNED) pinThisProcess(CPU_OF.load);

const here = fileURLToPath(new URL('.', import.meta.url));
const benchScript = (name: string) => join(here, 'bench', `${name}.js`);
const thisBuildMain = process.env.BENCH_GATEHOUSE_MAIN ?? fileURLToPath(new URL('../runtime/entry/gateway.js', import.meta.url));
/** Another build's gateway entry, measured beside this one (the targets baseline and baseline-5). */
const baselineMain = process.env.BENCH_BASELINE_MAIN || null;
const nodeArgs = ['--disable-warning=ExperimentalWarning'];
/** How a gateway is started: Node runs a build's entry; Deno runs the TypeScript sources, as `deno task start` does. */
type GatewayLauncher = (config: string) => { command: string; args: string[] };
const underNode = (main: string): GatewayLauncher => (config) => ({ command: process.execPath, args: [...nodeArgs, main, '--config', config] });
const underDeno: GatewayLauncher = (config) => {
  const { cmd, args } = denoGateway();
  return { command: cmd, args: [...args, '--config', config] };
};

const log = (line: string) => process.stderr.write(`${line}\n`);

// ---------------------------------------------------------------------------------------------------------------
// Processes: every child runs in its own process group, so stopping it also stops what it forked (nginx's worker).

interface Child {
  name: string;
  proc: ChildProcess;
  exited: Promise<void>;
  exitCode: number | null | undefined; // undefined while running
  stderr: string; // last few KB
}

const children = new Set<Child>();
let tmpRoot: string | null = null;

/** `role`: which CPU the child runs on when BENCH_PIN=1 (taskset replaces itself with the command: the pid is the command's). */
function startChild(name: string, role: CpuRole, command: string, args: string[], options: { env?: NodeJS.ProcessEnv; stdoutFile?: string } = {}): Child {
  const stdoutFd = options.stdoutFile ? openSync(options.stdoutFile, 'a') : null;
  [command, args] = onCpu(PINNED ? CPU_OF[role] : undefined, command, args);
  const proc = spawn(command, args, {
    env: { ...process.env, ...options.env },
    stdio: ['ignore', stdoutFd ?? 'pipe', 'pipe'],
    detached: true,
  });
  if (stdoutFd !== null) closeSync(stdoutFd);
  const child: Child = { name, proc, exited: Promise.resolve(), exitCode: undefined, stderr: '' };
  const keep = (chunk: Buffer) => {
    child.stderr = (child.stderr + chunk.toString('utf8')).slice(-4096);
  };
  proc.stderr?.on('data', keep);
  proc.stdout?.on('data', keep);
  child.exited = new Promise<void>((resolve) => {
    proc.once('error', (error) => {
      child.stderr += `\n${error.message}`;
      child.exitCode = null;
      children.delete(child);
      resolve();
    });
    proc.once('exit', (code, signal) => {
      child.exitCode = code ?? null;
      if (signal) child.stderr += `\n(killed by ${signal})`;
      children.delete(child);
      resolve();
    });
  });
  children.add(child);
  return child;
}

function signalGroup(child: Child, signal: NodeJS.Signals): void {
  if (child.exitCode !== undefined || child.proc.pid === undefined) return;
  try {
    process.kill(-child.proc.pid, signal);
  } catch {
    // already gone
  }
}

async function stopChild(child: Child): Promise<void> {
  if (child.exitCode !== undefined) return;
  signalGroup(child, 'SIGTERM');
  const stopped = await Promise.race([child.exited.then(() => true), sleep(3000).then(() => false)]);
  if (!stopped) {
    signalGroup(child, 'SIGKILL');
    await child.exited;
  }
}

/** Last resort, synchronous: on exit, on a signal, on a crash. */
function cleanupNow(): void {
  for (const child of children) signalGroup(child, 'SIGKILL');
  children.clear();
  if (tmpRoot) rmSync(tmpRoot, { recursive: true, force: true });
  tmpRoot = null;
}

process.on('exit', cleanupNow);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    log(`\n# ${signal}: stopping every child process and removing temporary files`);
    cleanupNow();
    process.exit(130);
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Small helpers

function findOnPath(command: string): string | null {
  const dirs = (process.env.PATH ?? '').split(delimiter).concat(['/usr/sbin', '/usr/local/sbin', '/sbin']);
  for (const dir of dirs) {
    if (!dir) continue;
    try {
      accessSync(join(dir, command), constants.X_OK);
      return join(dir, command);
    } catch {
      // not here
    }
  }
  return null;
}


interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  /** The body's bytes as they came (a gzip body is not text). */
  raw: Buffer;
}

function get(port: number, path: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method: 'GET', headers, agent: false, timeout: 5000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const raw = Buffer.concat(chunks);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: raw.toString('utf8'), raw });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 5 s')));
    req.on('error', reject);
    req.end();
  });
}

const withKey = { 'x-api-key': API_KEY, origin: ORIGIN };
/**
 * BENCH_TRACEPARENT=1: every measured request carries this W3C traceparent, so that the gateway continues a trace
 * instead of starting one (both are on every request's path).
 */
const TRACEPARENT = process.env.BENCH_TRACEPARENT === '1' ? '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' : null;
/** The headers wrk and the latency probe send, as `name: value`. */
const loadHeaders = [`x-api-key: ${API_KEY}`, `origin: ${ORIGIN}`, ...(TRACEPARENT ? [`traceparent: ${TRACEPARENT}`] : [])];

/** Polls until `path` answers 200; fails when the child exits, after `timeoutMs`, or when `failFast` says so. */
async function waitReady(child: Child, port: number, path: string, timeoutMs: number, failFast?: (r: Reply, sinceMs: number) => string | null): Promise<void> {
  const started = Date.now();
  let last = 'no answer yet';
  while (Date.now() - started < timeoutMs) {
    if (child.exitCode !== undefined) throw new Error(`${child.name} exited (code ${child.exitCode}) before it was ready${tail(child)}`);
    let reply: Reply | null = null;
    try {
      reply = await get(port, path, withKey);
    } catch (error) {
      last = (error as Error).message; // not listening yet
    }
    if (reply) {
      if (reply.status === 200) return;
      last = `HTTP ${reply.status}`;
      const reason = failFast?.(reply, Date.now() - started);
      if (reason) throw new Error(reason);
    }
    await sleep(100);
  }
  throw new Error(`${child.name} did not answer 200 on ${path} within ${timeoutMs / 1000} s (last: ${last})${tail(child)}`);
}

function indent(text: string, lines = 12): string {
  const t = text.trim();
  return t ? `\n    | ${t.split('\n').slice(-lines).join('\n    | ')}` : '';
}

/** The end of what a child wrote on stderr (and stdout when piped). */
const tail = (child: Child) => indent(child.stderr);

/** The end of a log file the child wrote, if any. */
function fileTail(file: string, lines = 8): string {
  try {
    return indent(readFileSync(file, 'utf8').slice(-4096), lines);
  } catch {
    return '';
  }
}

// ---------------------------------------------------------------------------------------------------------------
// wrk

interface WrkResult extends WrkRun {
  /** CPU time (user + system) the target's process used a request during the run, when it is measured. */
  cpuUsPerRequest?: number;
  /** Of that, the time in the kernel (system calls, and what the machine charges to them). */
  systemUsPerRequest?: number;
}

const CLOCK_TICKS_PER_S = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim()) || 100;

/** CPU time a process has used so far, in ms, from /proc (Linux); null when it cannot be read. */
function cpuMs(pid: number): { userMs: number; systemMs: number } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // After the command name (in parentheses, which may hold spaces): state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { userMs: (Number(fields[11]) * 1000) / CLOCK_TICKS_PER_S, systemMs: (Number(fields[12]) * 1000) / CLOCK_TICKS_PER_S };
  } catch {
    return null;
  }
}

async function runWrk(port: number, seconds: number): Promise<WrkResult> {
  const args = [`-t${WRK_THREADS}`, `-c${WRK_CONNECTIONS}`, `-d${seconds}s`, '--latency', ...loadHeaders.flatMap((h) => ['-H', h]), `http://127.0.0.1:${port}/`];
  const child = startChild('wrk', 'load', tools.wrk, args);
  let out = '';
  child.proc.stdout?.on('data', (c: Buffer) => (out += c.toString('utf8')));
  const finished = await Promise.race([child.exited.then(() => true), sleep((seconds + 20) * 1000).then(() => false)]);
  if (!finished) {
    await stopChild(child);
    throw new Error(`wrk did not finish within ${seconds + 20} s`);
  }
  if (child.exitCode !== 0) throw new Error(`wrk failed (code ${child.exitCode})${tail(child)}`);
  return parseWrkOutput(out);
}

// ---------------------------------------------------------------------------------------------------------------
// Targets

interface Running {
  port: number;
  /** The process serving, when its CPU time is measured (the Gatehouse targets). */
  pid?: number;
  stop(): Promise<void>;
}

interface Target {
  key: string;
  label: string;
  start(): Promise<Running>;
  /** Checks one request through the target before it is measured; throws when the answer is wrong. */
  verify(port: number): Promise<void>;
  /** Why the target could not run, once it failed: later rounds skip it. */
  unavailable?: string;
  /** Measured only when BENCH_TARGETS names it. */
  optIn?: boolean;
  /** After a measured run and the target's stop: a line about it for the log (`sent`: requests wrk sent it). */
  afterStop?(sent: number): Promise<string>;
}

let backendPort = 0;
let backendBody = '';

/** What the backend received for a request with `x-bench-echo: 1`. */
interface Echo {
  url: string;
  headers: Record<string, string>;
}

/** Checks that `GET /` is forwarded with its body, and returns the reply and what the backend received. */
async function verifyForwarding(port: number): Promise<{ reply: Reply; echo: Echo }> {
  const reply = await get(port, '/', withKey);
  if (reply.status !== 200) throw new Error(`GET / answered ${reply.status}, not 200: ${reply.body.slice(0, 200)}`);
  if (reply.body !== backendBody) throw new Error(`GET / answered a body other than the backend's: ${reply.body.slice(0, 200)}`);
  const seen = await get(port, '/', { ...withKey, 'x-bench-echo': '1' });
  if (seen.status !== 200) throw new Error(`GET / with x-bench-echo answered ${seen.status}`);
  return { reply, echo: JSON.parse(seen.body) as Echo };
}

/** The backend's gzip answer reaches the client as the backend sent it: labelled gzip, decoding to the plain body. */
async function verifyGzipForwarding(port: number): Promise<void> {
  const reply = await get(port, '/', withKey);
  if (reply.status !== 200) throw new Error(`GET / answered ${reply.status}, not 200: ${reply.body.slice(0, 200)}`);
  if (reply.headers['content-encoding'] !== 'gzip') throw new Error(`GET / answered Content-Encoding ${reply.headers['content-encoding']}, not gzip`);
  if (gunzipSync(reply.raw).toString('utf8') !== backendBody) throw new Error('GET / answered a gzip body other than the backend\'s');
}

/** A proxy without policies forwards the client's headers and path as they are. */
async function verifyPlainForwarding(port: number): Promise<void> {
  const { echo } = await verifyForwarding(port);
  if (echo.headers['x-api-key'] !== API_KEY) throw new Error(`the backend did not receive x-api-key (got ${Object.keys(echo.headers).join(', ')})`);
  if (echo.url !== '/') throw new Error(`the backend received path ${echo.url}, not /`);
}

/** Waits up to 5 s for the log file to hold `text` (its lines are written in batches); throws `problem` if it never does. */
async function verifyLogged(file: string, text: string, problem: string): Promise<void> {
  for (const deadline = Date.now() + 5000; Date.now() < deadline; await sleep(50)) {
    if (existsSync(file) && readFileSync(file, 'utf8').includes(text)) return;
  }
  throw new Error(problem);
}

function nodeTarget(key: string, label: string, script: string, extra: { env?: NodeJS.ProcessEnv; stdoutFile?: string } = {}): Target {
  return {
    key,
    label,
    async start() {
      const port = await freePort();
      const child = startChild(key, 'proxy', process.execPath, [...nodeArgs, benchScript(script)], {
        env: { BENCH_PORT: String(port), BENCH_BACKEND: `http://127.0.0.1:${backendPort}`, ...extra.env },
        stdoutFile: extra.stdoutFile,
      });
      await waitReady(child, port, '/', 15_000).catch(async (e: unknown) => {
        await stopChild(child);
        throw e;
      });
      return { port, stop: () => stopChild(child) };
    },
    verify: verifyPlainForwarding,
  };
}

function nginxTarget(dir: string): Target {
  return {
    key: 'nginx',
    label: 'nginx (1 worker, upstream keepalive 64)',
    async start() {
      const port = await freePort();
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
      // Workers may run as an unprivileged user: let them reach their temp paths.
      chmodSync(dir, 0o755);
      const conf = join(dir, 'nginx.conf');
      writeFileSync(conf, nginxProxyConfig(dir, backendPort, `127.0.0.1:${port}`));
      const child = startChild('nginx', 'proxy', tools.nginx, ['-p', `${dir}/`, '-e', join(dir, 'error.log'), '-c', conf, '-g', 'daemon off;']);
      await waitReady(child, port, '/', 15_000).catch(async (e: unknown) => {
        await stopChild(child);
        throw new Error(`${(e as Error).message}${fileTail(join(dir, 'error.log'))}`);
      });
      return { port, stop: () => stopChild(child) };
    },
    verify: verifyPlainForwarding,
  };
}

/** The ingestion endpoint of target `gatehouse-ai`, started in main() when that target is measured. */
let ingestion: BenchIngestionEndpoint | null = null;

/** Gatehouse without policies, sending requests and backend calls to Application Insights (the local endpoint). */
function appInsightsTarget(dir: string, key = 'gatehouse-ai', label = 'Gatehouse, no policies, Application Insights on', gatewayMain = thisBuildMain): Target {
  const env = () => ({
    GATEHOUSE_APPINSIGHTS_CONNECTION_STRING: ingestion!.connectionString,
    GATEHOUSE_APPINSIGHTS_SAMPLING_PERCENTAGE: process.env.BENCH_APPINSIGHTS_SAMPLING_PERCENTAGE ?? '100',
    NODE_EXTRA_CA_CERTS: ingestion!.certFile,
  });
  return telemetryTarget(key, label, dir, env, () => ingestion!.requests(), 'Request envelopes', gatewayMain);
}

/** The OTLP receiver of target `gatehouse-otlp`, started in main() when that target is measured. */
let otlpReceiver: BenchOtlpReceiver | null = null;

/** Gatehouse without policies, exporting request spans and metrics over OTLP (the local receiver). */
function otlpTarget(dir: string): Target {
  const env = () => ({ GATEHOUSE_OTLP_ENDPOINT: otlpReceiver!.url });
  return telemetryTarget('gatehouse-otlp', 'Gatehouse, no policies, OTLP export on', dir, env, () => otlpReceiver!.serverSpans(), 'server spans');
}

/**
 * Gatehouse without policies sending its telemetry to a local receiver, measured only when BENCH_TARGETS names it;
 * after each run, how much of it arrived (`delivered`: what the receiver counted so far, one a request).
 */
function telemetryTarget(key: string, label: string, dir: string, env: () => NodeJS.ProcessEnv, delivered: () => number, what: string, gatewayMain = thisBuildMain): Target {
  const target = gatehouseTarget(key, label, dir, false, env, gatewayMain);
  let before = 0;
  const start = target.start.bind(target);
  target.start = () => {
    before = delivered();
    return start();
  };
  // The gateway flushes its telemetry when it stops: what arrived then is all it delivered (or dropped).
  target.afterStop = async (sent) => {
    const received = delivered() - before;
    // wrk leaves out the requests in flight when it stops (up to its 32 connections, twice): a few more arrive.
    return `${key}: ${fmtInt(received)} ${what} delivered; wrk counted ${fmtInt(sent)} requests (${((100 * received) / sent).toFixed(1)}%)`;
  };
  target.optIn = true;
  return target;
}

function gatehouseTarget(
  key: string,
  label: string,
  dir: string,
  withPolicies: BenchPolicies,
  env: () => NodeJS.ProcessEnv = () => ({}),
  gatewayMain = thisBuildMain,
  launch: GatewayLauncher = underNode(gatewayMain),
  /** Appended to the backend's URL: `/gzip` for its gzip answers. */
  backendPath = '',
): Target {
  return {
    key,
    label,
    async start() {
      if (!existsSync(gatewayMain)) throw new Error(`${gatewayMain} does not exist (did \`node scripts/build.mjs\` succeed?)`);
      mkdirSync(dir, { recursive: true });
      const config = join(dir, `${key}.yaml`);
      writeFileSync(config, benchGatewayYaml(`http://127.0.0.1:${backendPort}${backendPath}`, withPolicies, 'scripts/bench-proxy.ts'));
      const logFile = join(dir, `${key}.log`);
      const [port, adminPort] = [await freePort(), await freePort()];
      const { command, args } = launch(config);
      const child = startChild(key, 'proxy', command, args, {
        env: { GATEHOUSE_HTTP_PORT: String(port), GATEHOUSE_ADMIN_PORT: String(adminPort), GATEHOUSE_SHUTDOWN_TIMEOUT_MS: '1000', GATEHOUSE_SHUTDOWN_DELAY_MS: '0', ...env() },
        stdoutFile: logFile,
      });
      // The data plane answers 503 on the status path until its configuration is loaded. A 404 that lasts means the
      // process serves something else (a build from before the data plane), so there is no point waiting 60 s.
      const notADataPlane = (r: Reply, sinceMs: number) =>
        r.status === 404 && sinceMs > 5000 ? `${gatewayMain} answers 404 on ${STATUS_PATH}: this build does not serve --config` : null;
      await waitReady(child, port, STATUS_PATH, GATEWAY_READY_MS, notADataPlane).catch(async (e: unknown) => {
        await stopChild(child);
        throw new Error(`${(e as Error).message}${fileTail(logFile)}`);
      });
      return { port, pid: child.proc.pid, stop: () => stopChild(child) };
    },
    async verify(port) {
      if (backendPath === '/gzip') {
        await verifyGzipForwarding(port);
        return;
      }
      if (!withPolicies || withPolicies === 'cache' || withPolicies === 'read-body') {
        await verifyPlainForwarding(port);
        return;
      }
      if (withPolicies === 'cpu-burn') {
        await verifyPlainForwarding(port);
        // The policy changes nothing a client sees: its call is checked in the access log.
        await verifyLogged(join(dir, `${key}.log`), '"outcome":"continue"', 'cpu-burn: the access log records no call of the policy');
        return;
      }
      const { reply, echo } = await verifyForwarding(port);
      const problems: string[] = [];
      if (echo.headers['x-consumer-id'] !== 'bench-client') problems.push('key-auth: the backend did not receive x-consumer-id');
      if (echo.headers['x-api-key'] !== undefined) problems.push('key-auth: the key reached the backend');
      if (echo.url !== '/v2/items') problems.push(`rewrite-uri: the backend received ${echo.url}, not /v2/items`);
      if (reply.headers['ratelimit-limit'] !== '1000000000') problems.push('rate-limit: no RateLimit-Limit header');
      if (reply.headers['access-control-allow-origin'] !== ORIGIN) problems.push('cors: no Access-Control-Allow-Origin');
      if (reply.headers['x-gatehouse'] !== 'bench') problems.push('set-header: no x-gatehouse header');
      const refused = await get(port, '/');
      if (refused.status !== 401) problems.push(`key-auth: a request without the key answered ${refused.status}, not 401`);
      if (problems.length > 0) throw new Error(`the five-policy chain did not act as configured: ${problems.join('; ')}`);
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Latency at a fixed rate


/** `besidePort`: with mode paired, the backend, probed in the same run. */
async function runLatency(mode: 'autocannon' | 'constant' | 'paired', port: number, besidePort?: number): Promise<LatencySummary> {
  const child = startChild(`latency-probe (${mode})`, 'load', process.execPath, [
    ...nodeArgs,
    benchScript('latency-probe'),
    mode,
    `http://127.0.0.1:${port}/`,
    ...(mode === 'paired' ? [`http://127.0.0.1:${besidePort}/`] : []),
    String(LATENCY_RATE),
    String(LATENCY_S),
    ...loadHeaders,
  ]);
  let out = '';
  child.proc.stdout?.on('data', (c: Buffer) => (out += c.toString('utf8')));
  const finished = await Promise.race([child.exited.then(() => true), sleep((LATENCY_S + 30) * 1000).then(() => false)]);
  if (!finished) {
    await stopChild(child);
    throw new Error(`the latency probe did not finish within ${LATENCY_S + 30} s`);
  }
  if (child.exitCode !== 0) throw new Error(`the latency probe failed (code ${child.exitCode})${tail(child)}`);
  const summary = JSON.parse(out.trim().split('\n').pop() ?? '{}') as LatencySummary;
  if (summary.non2xx > 0 || summary.errors > 0) log(`#   warning: ${summary.non2xx} non-2xx answers, ${summary.errors} errors`);
  const achieved = summary.requests / LATENCY_S;
  if (achieved < LATENCY_RATE * 0.95) {
    log(`#   warning: ${mode} reached ${fmtInt(achieved)} requests/s, not ${fmtInt(LATENCY_RATE)}: the target is saturated at this rate`);
  }
  return summary;
}

// ---------------------------------------------------------------------------------------------------------------
// Main

const LEFT_OUT = 'left out by BENCH_TARGETS';
const skipped = (t: Target) => t.unavailable === LEFT_OUT;

interface Measured {
  rounds: Array<WrkResult | null>; // by round
}

/** Full paths of the external tools, set once they are found (nginx may live in an sbin directory not on PATH). */
const tools = { wrk: 'wrk', nginx: 'nginx' };

async function ensureTools(): Promise<void> {
  const missing = ['wrk', 'nginx'].filter((c) => findOnPath(c) === null);
  if (missing.length === 0) return;
  const install = 'apt-get update && apt-get install -y wrk nginx';
  if (process.getuid?.() !== 0) {
    throw new Error(`${missing.join(' and ')} not found on PATH; install them (Debian: sudo ${install.replace('&& ', '&& sudo ')})`);
  }
  log(`# ${missing.join(' and ')} not found on PATH: running as root, installing with \`${install}\``);
  const result = spawnSync('sh', ['-c', install], { stdio: ['ignore', 2, 2], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  const still = ['wrk', 'nginx'].filter((c) => findOnPath(c) === null);
  if (result.status !== 0 || still.length > 0) {
    throw new Error(`installing wrk and nginx failed (apt-get exit code ${result.status}); ${still.join(' and ') || 'nothing'} still missing`);
  }
  // Debian's nginx package may try to start a system nginx on port 80 (in a container policy-rc.d usually forbids it);
  // that one is not used here.
  log('# installed wrk and nginx');
}

const fmtInt = (n: number) => Math.round(n).toLocaleString('en-US');
const fmt2 = (n: number) => n.toFixed(2);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function main(): Promise<number> {
  await ensureTools();
  tools.wrk = findOnPath('wrk')!;
  tools.nginx = findOnPath('nginx')!;
  const nginxVersion = spawnSync(tools.nginx, ['-v'], { encoding: 'utf8' }).stderr.trim().replace(/^nginx version: /, '');
  tmpRoot = mkdtempSync(join(tmpdir(), 'gatehouse-bench-'));
  chmodSync(tmpRoot, 0o755);

  log(`# node ${process.version}, ${nginxVersion}; wrk -t${WRK_THREADS} -c${WRK_CONNECTIONS} -d${DURATION_S}s (warm-up ${WARMUP_S}s) ${loadHeaders.map((h) => `-H '${h}'`).join(' ')}, ${ROUNDS} round${ROUNDS === 1 ? '' : 's'}, alternating order${PINNED ? '; pinned: proxies on CPU 1, wrk, the backend and the telemetry endpoints on CPU 0' : ''}`);

  backendPort = await freePort();
  const backend = startChild('backend', 'load', process.execPath, [...nodeArgs, benchScript('backend')], { env: { BENCH_PORT: String(backendPort) } });
  await waitReady(backend, backendPort, '/', 15_000);
  backendBody = (await get(backendPort, '/')).body;

  const targets: Target[] = [
    { key: 'direct', label: 'backend directly', start: async () => ({ port: backendPort, stop: async () => undefined }), verify: async () => undefined },
    nginxTarget(join(tmpRoot, 'nginx')),
    nodeTarget('undici', 'minimal node:http + undici Pool', 'minimal-undici-proxy'),
    nodeTarget('undici-duties', 'the same + X-Forwarded-*, request id, JSON log', 'minimal-undici-proxy', {
      env: { BENCH_DUTIES: '1' },
      stdoutFile: join(tmpRoot, 'undici-duties.log'),
    }),
    nodeTarget('fastify', '@fastify/http-proxy 11 (fastify 5)', 'fastify-proxy'),
    gatehouseTarget('gatehouse', 'Gatehouse, no policies', join(tmpRoot, 'gatehouse'), false),
    gatehouseTarget('gatehouse-5', 'Gatehouse, five policies', join(tmpRoot, 'gatehouse'), true),
    gatehouseTarget('gatehouse-5n', 'Gatehouse, five policies, replay off', join(tmpRoot, 'gatehouse'), true, () => ({ GATEHOUSE_POLICY_REPLAY: 'off' })),
    gatehouseTarget('gatehouse-5w', 'Gatehouse, five policies, a when: on each', join(tmpRoot, 'gatehouse'), 'with-conditions'),
    { ...gatehouseTarget('gatehouse-5f', "Gatehouse, the five policies' handlers in one module", join(tmpRoot, 'gatehouse'), 'in-one-module'), optIn: true },
    { ...gatehouseTarget('gatehouse-burn', 'Gatehouse, one policy that only spends CPU', join(tmpRoot, 'gatehouse'), 'cpu-burn'), optIn: true },
    { ...gatehouseTarget('gatehouse-cache', 'Gatehouse, response cache (hits)', join(tmpRoot, 'gatehouse'), 'cache'), optIn: true },
    { ...gatehouseTarget('gatehouse-gzip', 'Gatehouse, no policies, gzip backend', join(tmpRoot, 'gatehouse'), false, undefined, undefined, undefined, '/gzip'), optIn: true },
    { ...gatehouseTarget('gatehouse-read', 'Gatehouse, a policy reading the body', join(tmpRoot, 'gatehouse'), 'read-body'), optIn: true },
    {
      ...gatehouseTarget('gatehouse-gzip-read', 'Gatehouse, a policy reading the body, gzip backend', join(tmpRoot, 'gatehouse'), 'read-body', undefined, undefined, undefined, '/gzip'),
      optIn: true,
    },
    appInsightsTarget(join(tmpRoot, 'gatehouse')),
    otlpTarget(join(tmpRoot, 'gatehouse')),
    gatehouseTarget('deno', 'Gatehouse under Deno, no policies', join(tmpRoot, 'deno'), false, undefined, undefined, underDeno),
    gatehouseTarget('deno-5', 'Gatehouse under Deno, five policies', join(tmpRoot, 'deno'), true, undefined, undefined, underDeno),
    ...(baselineMain
      ? [
          gatehouseTarget('baseline', 'Gatehouse (baseline build), no policies', join(tmpRoot, 'baseline'), false, undefined, baselineMain),
          gatehouseTarget('baseline-5', 'Gatehouse (baseline build), five policies', join(tmpRoot, 'baseline'), true, undefined, baselineMain),
          appInsightsTarget(join(tmpRoot, 'baseline'), 'baseline-ai', 'Gatehouse (baseline build), no policies, Application Insights on', baselineMain),
        ]
      : []),
  ];
  const only = (process.env.BENCH_TARGETS ?? '').split(',').map((k) => k.trim()).filter(Boolean);
  for (const t of targets) if (only.length > 0 ? !only.includes(t.key) : t.optIn) t.unavailable = LEFT_OUT;
  const aiTarget = targets.find((t) => t.key === 'gatehouse-ai')!;
  const baselineAi = targets.find((t) => t.key === 'baseline-ai');
  const baselineAiMeasured = baselineAi !== undefined && !skipped(baselineAi);
  if (!skipped(aiTarget) || baselineAiMeasured) ingestion = await startBenchIngestionEndpoint(tmpRoot);
  const otlp = targets.find((t) => t.key === 'gatehouse-otlp')!;
  if (!skipped(otlp)) otlpReceiver = await startBenchOtlpReceiver();
  const results = new Map<string, Measured>(targets.map((t) => [t.key, { rounds: [] }]));

  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? targets : [...targets].reverse();
    log(`# round ${round + 1}: ${order.filter((t) => !skipped(t)).map((t) => t.key).join(', ')}`);
    for (const target of order) {
      const measured = results.get(target.key)!;
      if (target.unavailable) {
        measured.rounds[round] = null;
        continue;
      }
      let running: Running | null = null;
      let sent = 0;
      try {
        const t0 = Date.now();
        running = await target.start();
        const startMs = Date.now() - t0;
        await target.verify(running.port);
        const warm = await runWrk(running.port, WARMUP_S);
        const cpuBefore = running.pid !== undefined ? cpuMs(running.pid) : null;
        const r = await runWrk(running.port, DURATION_S);
        const cpuAfter = running.pid !== undefined ? cpuMs(running.pid) : null;
        if (cpuBefore !== null && cpuAfter !== null) {
          const systemMs = cpuAfter.systemMs - cpuBefore.systemMs;
          r.cpuUsPerRequest = ((cpuAfter.userMs - cpuBefore.userMs + systemMs) * 1000) / r.requests;
          r.systemUsPerRequest = (systemMs * 1000) / r.requests;
        }
        sent = warm.requests + r.requests;
        if (r.non2xx > 0) throw new Error(`${r.non2xx} of ${r.requests} answers were not 2xx`);
        measured.rounds[round] = r;
        log(
          `#   ${target.key.padEnd(12)} ${fmtInt(r.rps).padStart(7)} req/s  p50 ${fmt2(r.p50ms)} ms  p99 ${fmt2(r.p99ms)} ms` +
            (r.cpuUsPerRequest !== undefined ? `  cpu ${r.cpuUsPerRequest.toFixed(0)} us/request (system ${r.systemUsPerRequest!.toFixed(0)})` : '') +
            (r.socketErrors ? `  (${r.socketErrors} socket errors)` : '') +
            (startMs > 2000 ? `  (ready after ${(startMs / 1000).toFixed(1)} s)` : ''),
        );
      } catch (error) {
        target.unavailable = (error as Error).message;
        measured.rounds[round] = null;
        log(`#   ${target.key}: FAILED, not measured: ${target.unavailable}`);
      } finally {
        await running?.stop();
      }
      if (measured.rounds[round] && target.afterStop) log(`#   ${await target.afterStop(sent)}`);
    }
  }

  // p99 added at a fixed rate: the backend directly, the minimal undici proxy (what one hop through Node costs here,
  // for reference), then Gatehouse without policies and with the five (one proxy at a time).
  const latency = new Map<string, LatencySummary>();
  const gatehouse = targets.find((t) => t.key === 'gatehouse')!;
  const undici = targets.find((t) => t.key === 'undici')!;
  const gatehouse5 = targets.find((t) => t.key === 'gatehouse-5')!;
  if (!gatehouse.unavailable) {
    log(`# latency at ${fmtInt(LATENCY_RATE)} requests/s, ${LATENCY_S} s per run: constant-rate open loop, then autocannon --overallRate`);
    const probed: Array<[string, Target]> = [
      ['direct', targets[0]!],
      ['undici', undici],
      ['gatehouse', gatehouse],
      ['gatehouse-5', gatehouse5],
      ['gatehouse-ai', aiTarget],
      ['gatehouse-otlp', otlp],
      // The other build, when there is one: its latency beside this build's, in the same run.
      ...(['baseline', 'baseline-5'] as const).flatMap((key): Array<[string, Target]> => {
        const target = targets.find((t) => t.key === key);
        return target ? [[key, target]] : [];
      }),
    ];
    for (const [key, target] of probed.filter(([, t]) => !t.unavailable)) {
      let running: Running | null = null;
      try {
        running = await target.start();
        await runWrk(running.port, WARMUP_S);
        // Let the target recover from the saturating warm-up (closing connections, collecting garbage) before
        // measuring it at a rate it can sustain.
        await sleep(2000);
        const show = (name: string, mode: string, s: LatencySummary) =>
          log(
            `#   ${name.padEnd(10)} ${mode.padEnd(10)} p50 ${fmt2(s.p50)} ms  p99 ${fmt2(s.p99)} ms  p99.9 ${fmt2(s.p999)} ms  max ${fmt2(s.max)} ms` +
              (s.autocannonP99 !== undefined ? `  (autocannon's own p99: ${s.autocannonP99} ms)` : '') +
              `  ${fmtInt(s.requests)} requests`,
          );
        // A proxy's constant-rate run is paired with the backend's; the backend's own is not.
        for (const mode of [key === 'direct' ? 'constant' : 'paired', 'autocannon'] as const) {
          const s = await runLatency(mode, running.port, backendPort);
          latency.set(`${key}/${mode === 'paired' ? 'constant' : mode}`, s);
          show(key, mode, s);
          if (s.beside) show('  beside', 'direct', s.beside);
        }
      } catch (error) {
        log(`#   latency of ${key}: FAILED: ${(error as Error).message}`);
      } finally {
        await running?.stop();
      }
    }
  }
  await stopChild(backend);

  // Table
  const best = (key: string): number | null => {
    const rs = results.get(key)!.rounds.filter((r): r is WrkResult => r !== null);
    return rs.length === ROUNDS ? Math.max(...rs.map((r) => r.rps)) : null;
  };
  const rows: string[][] = [['target', ...Array.from({ length: ROUNDS }, (_, i) => `round ${i + 1}`), 'best', 'median', 'p99 ms (best)']];
  for (const t of targets) {
    const rs = results.get(t.key)!.rounds;
    const ok = rs.filter((r): r is WrkResult => r !== null);
    const bestRun = ok.length ? ok.reduce((a, b) => (b.rps > a.rps ? b : a)) : null;
    rows.push([
      t.label,
      ...Array.from({ length: ROUNDS }, (_, i) => (rs[i] ? fmtInt(rs[i]!.rps) : skipped(t) ? '-' : 'failed')),
      ok.length === ROUNDS ? fmtInt(bestRun!.rps) : 'n/a',
      ok.length === ROUNDS ? fmtInt(median(ok.map((r) => r.rps))) : 'n/a',
      bestRun ? fmt2(bestRun.p99ms) : 'n/a',
    ]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  log('');
  log(`requests/s, wrk -t${WRK_THREADS} -c${WRK_CONNECTIONS} -d${DURATION_S}s on 127.0.0.1 (one target at a time)`);
  for (const [i, row] of rows.entries()) {
    log(row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  '));
    if (i === 0) log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
  for (const t of targets) if (t.unavailable && !skipped(t)) log(`\n${t.key} not measured: ${t.unavailable}`);

  const ratio = (a: number | null, b: number | null) => (a !== null && b !== null && b > 0 ? fmt2(a / b) : 'n/a');
  /** Whether BENCH_TARGETS kept every one of these targets. */
  const measuredAll = (...keys: string[]) => keys.every((k) => !skipped(targets.find((t) => t.key === k)!));
  /**
   * The CPU a request of target `key` costs beyond one of `than`, round by round (the median over rounds); `part`
   * 'system': only the time in the kernel.
   */
  const cpuAdded = (key: string, than: string, part: 'cpuUsPerRequest' | 'systemUsPerRequest' = 'cpuUsPerRequest'): string => {
    const differences = results.get(key)!.rounds.flatMap((r, i) => {
      const other = results.get(than)!.rounds[i]?.[part];
      const own = r?.[part];
      return own !== undefined && other !== undefined ? [own - other] : [];
    });
    return differences.length > 0 ? median(differences).toFixed(1) : 'n/a';
  };
  const gh = best('gatehouse');
  // Per-round ratios: each pairs two measurements taken minutes apart at most, in the same round.
  if (gh !== null) {
    log('');
    for (let round = 0; round < ROUNDS; round++) {
      const at = (key: string) => results.get(key)!.rounds[round]?.rps ?? null;
      const pairs: Array<[string, string, string]> = [
        ['gatehouse/fastify', 'gatehouse', 'fastify'],
        ['gatehouse/undici', 'gatehouse', 'undici'],
        ['gatehouse/undici-with-duties', 'gatehouse', 'undici-duties'],
        ['gatehouse/nginx', 'gatehouse', 'nginx'],
        ['five-policy/no-policy', 'gatehouse-5', 'gatehouse'],
        ['five-no-replay/no-policy', 'gatehouse-5n', 'gatehouse'],
        ['conditions/five-policy', 'gatehouse-5w', 'gatehouse-5'],
        ['appinsights/no-appinsights', 'gatehouse-ai', 'gatehouse'],
        ['cache-hit/direct', 'gatehouse-cache', 'direct'],
        ['cache-hit/gatehouse', 'gatehouse-cache', 'gatehouse'],
        ['gzip/plain', 'gatehouse-gzip', 'gatehouse'],
        ['read-body/no-policy', 'gatehouse-read', 'gatehouse'],
        ['gzip-read/read', 'gatehouse-gzip-read', 'gatehouse-read'],
        ['otlp/no-otlp', 'gatehouse-otlp', 'gatehouse'],
        ['deno/node', 'deno', 'gatehouse'],
        ['deno-5/node-5', 'deno-5', 'gatehouse-5'],
        ...(baselineMain ? ([['this/baseline', 'gatehouse', 'baseline'], ['this-5/baseline-5', 'gatehouse-5', 'baseline-5']] as Array<[string, string, string]>) : []),
        ...(baselineAiMeasured ? ([['baseline appinsights/no-appinsights', 'baseline-ai', 'baseline']] as Array<[string, string, string]>) : []),
      ];
      // Pairs with a target left out by BENCH_TARGETS are not shown; a pair that failed shows n/a.
      const shown = pairs.filter(([, a, b]) => measuredAll(a, b));
      log(`round ${round + 1}: ${shown.map(([name, a, b]) => `${name} ${ratio(at(a), at(b))}`).join(', ')}`);
    }
  }
  // p99-added-ms comes from the constant-rate open loop (wrk2's method; no wrk2 package here). autocannon, the fallback
  // the brief named, is shown beside it: it paces by bursts and its own percentiles are whole milliseconds.
  const lat = (key: string, mode: string) => latency.get(`${key}/${mode}`);
  const minus = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined ? fmt2(a - b) : 'n/a');
  // Each proxy's p99 less the backend's in the same run (mode paired).
  const addedMs = (key: string) => {
    const s = lat(key, 'constant');
    return s?.beside ? s.p99 - s.beside.p99 : undefined;
  };
  const added = (key: string) => minus(addedMs(key), 0);
  if (latency.size > 0) {
    const cell = (v: number | undefined) => (v === undefined ? 'n/a' : fmt2(v));
    // Each row: a p99 by target, and what each proxy's is taken from (the backend's p99 in the same run, or in its own).
    type Of = (key: string) => number | undefined;
    const besideOf: Of = (k) => lat(k, 'constant')?.beside?.p99;
    const sources: Array<[string, Of, Of]> = [
      ['constant-rate open loop (p99-added-ms)', (k) => lat(k, 'constant')?.p99, besideOf],
      ['  the backend, beside each proxy', besideOf, besideOf],
      ['autocannon --overallRate, exact times', (k) => lat(k, 'autocannon')?.p99, () => lat('direct', 'autocannon')?.p99],
      ["autocannon's own JSON p99 (whole ms)", (k) => lat(k, 'autocannon')?.autocannonP99, () => lat('direct', 'autocannon')?.autocannonP99],
    ];
    const lrows = [
      [`p99 ms at ${fmtInt(LATENCY_RATE)} req/s, ${LATENCY_S} s`, 'direct', 'undici', 'Gatehouse', 'five policies', 'undici added', 'Gatehouse added', 'five added'],
      ...sources.map(([label, of, reference]) => {
        const [d, u, g, g5] = [of('direct'), of('undici'), of('gatehouse'), of('gatehouse-5')];
        const added = (key: string) => (of === besideOf ? '' : minus(of(key), reference(key)));
        return [label, cell(d), cell(u), cell(g), cell(g5), added('undici'), added('gatehouse'), added('gatehouse-5')];
      }),
    ];
    const w = lrows[0]!.map((_, c) => Math.max(...lrows.map((r) => r[c]!.length)));
    log('');
    for (const [i, row] of lrows.entries()) {
      log(row.map((c, j) => (j === 0 ? c.padEnd(w[j]!) : c.padStart(w[j]!))).join('  '));
      if (i === 0) log(w.map((x) => '-'.repeat(x)).join('  '));
    }
  }
  log('');

  // A figure whose targets BENCH_TARGETS left out is n/a without failing the run (the headline ones are always printed).
  const lines: string[] = [];
  const leftOut = new Set<string>();
  const figure = (name: string, value: string, ...keys: string[]) => {
    lines.push(`${name}: ${value}`);
    if (!measuredAll(...keys)) leftOut.add(name);
  };
  figure('throughput-ratio-vs-fastify', ratio(gh, best('fastify')), 'gatehouse', 'fastify');
  figure('throughput-ratio-vs-undici', ratio(gh, best('undici')), 'gatehouse', 'undici');
  figure('five-policy-ratio', ratio(best('gatehouse-5'), gh), 'gatehouse', 'gatehouse-5');
  figure('p99-added-ms', added('gatehouse'), 'gatehouse');
  figure('throughput-ratio-vs-nginx', ratio(gh, best('nginx')), 'gatehouse', 'nginx');
  figure('p99-added-ms-minimal-undici', added('undici'), 'undici');
  figure('throughput-ratio-vs-undici-with-duties', ratio(gh, best('undici-duties')), 'gatehouse', 'undici-duties');
  if (!skipped(gatehouse5)) {
    figure('p99-added-ms-five-policies', added('gatehouse-5'), 'gatehouse-5');
    figure('five-policy-cpu-us-added', cpuAdded('gatehouse-5', 'gatehouse'), 'gatehouse', 'gatehouse-5');
    figure('five-policy-system-us-added', cpuAdded('gatehouse-5', 'gatehouse', 'systemUsPerRequest'), 'gatehouse', 'gatehouse-5');
  }
  if (measuredAll('gatehouse-burn', 'gatehouse')) {
    lines.push(`burn-cpu-us-added: ${cpuAdded('gatehouse-burn', 'gatehouse')}`);
    lines.push(`burn-system-us-added: ${cpuAdded('gatehouse-burn', 'gatehouse', 'systemUsPerRequest')}`);
  }
  if (measuredAll('gatehouse-5n', 'gatehouse')) {
    lines.push(`five-policy-no-replay-ratio: ${ratio(best('gatehouse-5n'), gh)}`);
    lines.push(`five-policy-no-replay-cpu-us-added: ${cpuAdded('gatehouse-5n', 'gatehouse')}`);
  }
  if (measuredAll('gatehouse-5', 'gatehouse-5n')) lines.push(`replay-ratio: ${ratio(best('gatehouse-5'), best('gatehouse-5n'))}`);
  if (!skipped(targets.find((t) => t.key === 'gatehouse-5w')!)) {
    lines.push(`five-policy-conditions-ratio: ${ratio(best('gatehouse-5w'), best('gatehouse-5'))}`);
  }
  if (measuredAll('gatehouse-5f', 'gatehouse-5')) lines.push(`five-in-one-ratio: ${ratio(best('gatehouse-5f'), best('gatehouse-5'))}`);
  if (measuredAll('gatehouse-5f', 'gatehouse')) lines.push(`five-in-one-cpu-us-added: ${cpuAdded('gatehouse-5f', 'gatehouse')}`);
  if (!skipped(targets.find((t) => t.key === 'gatehouse-cache')!)) {
    lines.push(`cache-hit-ratio-vs-direct: ${ratio(best('gatehouse-cache'), best('direct'))}`);
    lines.push(`cache-hit-ratio-vs-gatehouse: ${ratio(best('gatehouse-cache'), gh)}`);
  }
  if (measuredAll('gatehouse-gzip')) lines.push(`gzip-streamed-ratio: ${ratio(best('gatehouse-gzip'), gh)}`);
  if (measuredAll('gatehouse-read')) lines.push(`read-body-ratio: ${ratio(best('gatehouse-read'), gh)}`);
  if (measuredAll('gatehouse-read', 'gatehouse-gzip-read')) {
    lines.push(`gzip-read-body-ratio: ${ratio(best('gatehouse-gzip-read'), best('gatehouse-read'))}`);
    lines.push(`gzip-read-body-cpu-us-added: ${cpuAdded('gatehouse-gzip-read', 'gatehouse-read')}`);
  }
  const deno = targets.find((t) => t.key === 'deno')!;
  const deno5 = targets.find((t) => t.key === 'deno-5')!;
  if (!skipped(deno)) lines.push(`deno-throughput-ratio: ${ratio(best('deno'), gh)}`);
  if (!skipped(deno5)) lines.push(`deno-five-policy-throughput-ratio: ${ratio(best('deno-5'), best('gatehouse-5'))}`);
  if (baselineMain) {
    lines.push(`baseline-ratio: ${ratio(gh, best('baseline'))}`);
    lines.push(`baseline-five-policy-ratio: ${ratio(best('gatehouse-5'), best('baseline-5'))}`);
    lines.push(`baseline-p99-added-ms: ${added('baseline')}`);
    lines.push(`baseline-p99-added-ms-five-policies: ${added('baseline-5')}`);
  }
  if (!skipped(aiTarget)) {
    lines.push(`appinsights-ratio: ${ratio(best('gatehouse-ai'), gh)}`);
    lines.push(`appinsights-cpu-us-added-per-request: ${cpuAdded('gatehouse-ai', 'gatehouse')}`);
    lines.push(`appinsights-p99-added-ms: ${minus(addedMs('gatehouse-ai'), addedMs('gatehouse'))}`);
  }
  if (baselineAiMeasured) {
    lines.push(`baseline-appinsights-ratio: ${ratio(best('baseline-ai'), best('baseline'))}`);
    lines.push(`baseline-appinsights-cpu-us-added-per-request: ${cpuAdded('baseline-ai', 'baseline')}`);
  }
  await ingestion?.close();
  if (!skipped(otlp)) {
    lines.push(`otlp-ratio: ${ratio(best('gatehouse-otlp'), gh)}`);
    lines.push(`otlp-cpu-us-added-per-request: ${cpuAdded('gatehouse-otlp', 'gatehouse')}`);
    lines.push(`otlp-p99-added-ms: ${minus(addedMs('gatehouse-otlp'), addedMs('gatehouse'))}`);
    await otlpReceiver?.close();
  }
  process.stdout.write(lines.join('\n') + '\n');
  return lines.some((l) => l.endsWith('n/a') && !leftOut.has(l.slice(0, l.indexOf(':')))) ? 1 : 0;
}

let code = 1;
try {
  code = await main();
} catch (error) {
  log(`bench:proxy: ${(error as Error).message}`);
  code = 1;
} finally {
  for (const child of [...children]) await stopChild(child);
  cleanupNow();
}
process.exit(code);
