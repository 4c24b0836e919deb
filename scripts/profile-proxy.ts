// npm run profile:proxy — where a gateway's CPU time goes, a request, without and with the five-policy chain of
// bench:proxy (scripts/bench/five-policy-chain.ts): V8's sampling CPU profiler (what `--cpu-prof` writes), started
// over the inspector after a warm-up and stopped when the measured wrk run ends, so that start-up and compilation are
// left out. Issue 17 asks for the profiles' summary before and after each step; this prints it.
//
// For each gateway: wrk -t1 -c32 for PROFILE_WARMUP_S (4), then PROFILE_SECONDS (10) profiled, the access log on as in
// bench:proxy. The main thread's samples are divided by the requests wrk completed, and summed by where they fall: the
// policy modules (wasm functions with names), undici's HTTP parser (wasm without), the calls between JavaScript and
// wasm, each part of the runtime (`runtime/<folder>`), npm packages, Node's own JavaScript, native functions by name
// (`writev` and `writeLatin1String` are socket writes: their time includes the kernel's loopback send and waking the
// receiver), the collector, idle.
// PROFILE_PIN=1 runs each gateway on CPU 1 and wrk, the backend and this process on CPU 0, as BENCH_PIN=1 does bench:proxy
// (scripts/bench-proxy.ts says why both runs are worth having).
//
// PROFILE_TOP (20) is how many functions the report lists.
//
// PROFILE_DENO=1 runs both gateways under Deno from the TypeScript sources, as `deno task start` does (bench:proxy's
// deno and deno-5 targets): Deno's inspector speaks the same protocol. Its Node compatibility layer's JavaScript counts
// as `deno: internals`.
//
// PROFILE_CONDITIONS=1 compares the five policies with the same five each behind its `when:` condition instead (issue
// 18's five-policy-conditions-ratio; bench:proxy's gatehouse-5w).
//
// PROFILE_APPINSIGHTS=1 compares the gateway without policies with the same gateway sending every request to
// Application Insights (bench:proxy's gatehouse-ai: the local ingestion endpoint of scripts/bench/ingestion-endpoint.ts,
// in this process). Telemetry costs on two threads, so besides the main thread's profile it profiles the exporter
// thread (over the inspector's NodeWorker domain), and before the profiled run it measures, without the profiler, the
// CPU of each of the gateway's threads (/proc/<pid>/task/*/stat: the main thread, the exporter thread, the others:
// V8's helpers, mostly the collector's) and of this process (the ingestion endpoint), a request. With
// PROFILE_BASELINE_MAIN (another build's dist/runtime/entry/gateway.js) that build's gateway with Application Insights
// is measured too, in the same run: two builds' telemetry side by side.
//
// Prints the table on stderr, with the functions that take the most self time in the first gateway and those that gain
// the most in the second, and on stdout:
//   profile-busy-us-per-request, five-policy-profile-busy-us-per-request, five-policy-profile-busy-us-added
//   five-policy-profile-wasm-us-added (the policy modules' own code)
// or, with PROFILE_CONDITIONS=1, five-policy-profile-busy-us-per-request, conditions-profile-busy-us-per-request and
// conditions-profile-busy-us-added; or, with PROFILE_APPINSIGHTS=1, appinsights-profile-busy-us-added (main thread),
// appinsights-exporter-profile-busy-us-per-request (the exporter thread), appinsights-threads-cpu-us-added (every
// thread of the gateway, with less without, unprofiled) and appinsights-ingestion-cpu-us-per-request.

import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { freePort } from '../test/support/ports.ts';
import { benchGatewayYaml } from './bench/five-policy-chain.ts';
import { startBenchIngestionEndpoint, type BenchIngestionEndpoint } from './bench/ingestion-endpoint.ts';
import { startBenchBackend } from './lib/bench-backend.ts';
import { positiveFromEnv } from './lib/env.ts';
import { denoGateway, startGatewayProcess, stopGatewayProcess } from './lib/gateway-process.ts';
import { connectInspector, sourceFileOf, type CallFrame, type InspectorSession } from './lib/inspector.ts';
import { printFigures } from './lib/run.ts';
import { runChainWrk } from './lib/wrk.ts';
import { onCpu, pinThisProcess } from './lib/pinning.ts';

const WARMUP_S = positiveFromEnv('PROFILE_WARMUP_S', 4);
const SECONDS = positiveFromEnv('PROFILE_SECONDS', 10);
/**
 * Microseconds between samples, as `--cpu-prof` takes them: each sample stops the thread and walks its stack, so a
 * finer interval disturbs the gateway more (10 s gives some 10,000 samples, enough for functions of a microsecond).
 */
const SAMPLING_INTERVAL_US = 1000;
const PINNED = process.env.PROFILE_PIN === '1';
const CONDITIONS = process.env.PROFILE_CONDITIONS === '1';
const APPINSIGHTS = process.env.PROFILE_APPINSIGHTS === '1';
const UNDER_DENO = process.env.PROFILE_DENO === '1';
/** How many functions the report lists, by self time gained. */
const TOP_FUNCTIONS = positiveFromEnv('PROFILE_TOP', 20);
const PROXY_CPU = 1;
const LOAD_CPU = 0;
// This process serves the ingestion endpoint: with the load, not beside the gateway.
if (PINNED) pinThisProcess(LOAD_CPU);

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Microseconds a request, by part and by function. */
interface Shares {
  requests: number;
  busyUs: number;
  byPart: Map<string, number>;
  byFunction: Map<string, number>;
}

/** Where a sample's function belongs. */
function partOf(frame: CallFrame): string {
  const { functionName: name, url } = frame;
  if (url.startsWith('wasm://')) {
    if (name.startsWith('wasm-to-js') || name.startsWith('js-to-wasm')) return 'calls between JavaScript and wasm';
    // The built policies keep their functions' names (the SDK builds with them); undici's parser has none.
    return name.startsWith('wasm-function[') ? "undici's HTTP parser (wasm)" : 'policy modules (wasm)';
  }
  if (!url) return name.startsWith('(') ? name : `native: ${name || '(anonymous)'}`;
  if (url.startsWith('node:')) return 'node: internals';
  if (url.startsWith('ext:')) return 'deno: internals';
  const file = sourceFileOf(frame) ?? url;
  const folder = /^(runtime\/[^/]+)\//.exec(file);
  if (folder) return folder[1]!;
  const pkg = /^((?:@[^/]+\/)?[^/]+)\//.exec(file);
  return pkg && !file.startsWith('dist/') ? `package ${pkg[1]}` : file;
}

function summarise(profile: CpuProfile, requests: number): Shares {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const byPart = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let busy = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const frame = byId.get(profile.samples[i]!)!.callFrame;
    const us = (profile.timeDeltas[i] ?? 0) / requests;
    const part = partOf(frame);
    byPart.set(part, (byPart.get(part) ?? 0) + us);
    if (part !== '(idle)') busy += us;
    const fn = `${frame.functionName || '(anonymous)'} ${frame.url.startsWith('wasm://') ? '(wasm)' : (sourceFileOf(frame) ?? '')}`.trim();
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + us);
  }
  return { requests, busyUs: busy, byPart, byFunction };
}

/** A gateway's chain, as benchGatewayYaml takes it, and its name in the report; `appInsights`: telemetry sent. */
interface Variant {
  chain: false | true | 'with-conditions';
  name: string;
  appInsights?: true;
  /** The gateway's entry; this build's by default. */
  main?: string;
}
const NO_POLICIES: Variant = { chain: false, name: 'none' };
const FIVE: Variant = { chain: true, name: 'five' };
const FIVE_WITH_CONDITIONS: Variant = { chain: 'with-conditions', name: 'when' };
const WITH_APPINSIGHTS: Variant = { chain: false, name: 'ai', appInsights: true };
const BASELINE_MAIN = process.env.PROFILE_BASELINE_MAIN || null;
const BASELINE_WITH_APPINSIGHTS: Variant | null = BASELINE_MAIN ? { chain: false, name: 'baseline-ai', appInsights: true, main: BASELINE_MAIN } : null;

/** The ingestion endpoint, started in main() when PROFILE_APPINSIGHTS=1. */
let ingestion: BenchIngestionEndpoint | null = null;

/** A gateway's profile: its main thread's, and with Application Insights its exporter thread's and threads' CPU. */
interface GatewayProfile {
  main: Shares;
  exporter: Shares | null;
  /** Microseconds of CPU a request by thread (unprofiled run); `ingestion`: this process, which serves the endpoint. */
  threads: { main: number; exporter: number; others: number; ingestion: number } | null;
}

/** CPU time (user + system) of each of a process's threads, in microseconds, by thread id. */
function threadCpuUs(pid: number): Map<number, number> {
  const ticksUs = 1e6 / 100; // USER_HZ is 100 on Linux
  const out = new Map<number, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      // Fields after the command name (which may hold spaces, inside parentheses): utime and stime are the 12th and 13th.
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(Number(tid), (Number(fields[11]) + Number(fields[12])) * ticksUs);
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return out;
}

const cpuSince = (before: Map<number, number>, after: Map<number, number>, tid: number) => (after.get(tid) ?? 0) - (before.get(tid) ?? 0);

/**
 * The thread id of the worker the `worker` session runs in: the one whose CPU time grows the most while it spins for
 * 300 ms, and clearly more than any other (Node names every thread `node`, and JavaScript cannot read its thread's id).
 */
async function workerThreadId(pid: number, worker: InspectorSession): Promise<number> {
  const before = threadCpuUs(pid);
  await worker.send('Runtime.evaluate', { expression: 'for (const end = Date.now() + 300; Date.now() < end; );' });
  const after = threadCpuUs(pid);
  const [first, second] = [...after.keys()].map((t) => [t, cpuSince(before, after, t)] as const).sort((a, b) => b[1] - a[1]);
  if (first![1] < 50_000 || first![1] < 2 * (second?.[1] ?? 0)) {
    throw new Error(`could not tell the exporter thread: the busiest threads ran ${first![1] / 1000} and ${(second?.[1] ?? 0) / 1000} ms of 300`);
  }
  return first![0];
}

async function profileGateway(variant: Variant, backendUrl: string, dir: string): Promise<GatewayProfile> {
  const config = join(dir, `${variant.name}.yaml`);
  writeFileSync(config, benchGatewayYaml(backendUrl, variant.chain, 'scripts/profile-proxy.ts'));
  const inspectorPort = await freePort();
  const inspect = `--inspect=127.0.0.1:${inspectorPort}`;
  const deno = UNDER_DENO ? denoGateway([inspect]) : null;
  const [command, args] = onCpu(
    PINNED ? PROXY_CPU : undefined,
    deno?.cmd ?? process.execPath,
    deno
      ? [...deno.args, '--config', config]
      : [inspect, '--disable-warning=ExperimentalWarning', variant.main ?? join(repoRoot(), 'dist', 'runtime', 'entry', 'gateway.js'), '--config', config],
  );
  const env: NodeJS.ProcessEnv = { GATEHOUSE_LOG_LEVEL: 'info' };
  if (variant.appInsights) {
    env.GATEHOUSE_APPINSIGHTS_CONNECTION_STRING = ingestion!.connectionString;
    env.NODE_EXTRA_CA_CERTS = ingestion!.certFile;
  }
  const gateway = await startGatewayProcess(variant.name, command, args, { env });
  const pid = gateway.child.pid!;
  try {
    const load = async (seconds: number) => {
      const run = await runChainWrk(`http://127.0.0.1:${gateway.port}/`, { seconds, connections: 32, cpu: PINNED ? LOAD_CPU : undefined });
      if (run.non2xx > 0 || run.socketErrors > 0) throw new Error(`${run.non2xx} answers were not 2xx and ${run.socketErrors} requests failed`);
      return run;
    };
    await load(WARMUP_S);
    const inspector = await connectInspector(inspectorPort);
    try {
      const exporter = variant.appInsights ? (await inspector.workers()).find((w) => w.url.includes('appinsights-exporter')) : undefined;
      if (variant.appInsights && !exporter) throw new Error('the gateway runs no Application Insights exporter thread');
      let threads: GatewayProfile['threads'] = null;
      if (APPINSIGHTS) {
        const exporterTid = exporter ? await workerThreadId(pid, exporter.session) : -1;
        const before = threadCpuUs(pid);
        const ingestionBefore = process.cpuUsage();
        const run = await load(SECONDS);
        const ingestionUs = process.cpuUsage(ingestionBefore);
        const after = threadCpuUs(pid);
        let others = 0;
        for (const tid of after.keys()) if (tid !== pid && tid !== exporterTid) others += cpuSince(before, after, tid);
        threads = {
          main: cpuSince(before, after, pid) / run.requests,
          exporter: exporterTid < 0 ? 0 : cpuSince(before, after, exporterTid) / run.requests,
          others: others / run.requests,
          ingestion: (ingestionUs.user + ingestionUs.system) / run.requests,
        };
      }
      const sessions = exporter ? [inspector, exporter.session] : [inspector];
      for (const session of sessions) {
        await session.send('Profiler.enable');
        await session.send('Profiler.setSamplingInterval', { interval: SAMPLING_INTERVAL_US });
        await session.send('Profiler.start');
      }
      const run = await load(SECONDS);
      const [main, worker] = await Promise.all(sessions.map(async (s) => ((await s.send('Profiler.stop')) as { profile: CpuProfile }).profile));
      return { main: summarise(main!, run.requests), exporter: worker ? summarise(worker, run.requests) : null, threads };
    } finally {
      inspector.close();
    }
  } finally {
    await stopGatewayProcess(gateway.child);
  }
}

const fmt = (us: number) => us.toFixed(2).padStart(8);

function report([first, before]: [Variant, Shares], [second, after]: [Variant, Shares]): void {
  const log = (line: string) => process.stderr.write(`${line}\n`);
  log(`# ${UNDER_DENO ? 'under Deno; ' : ''}${PINNED ? 'pinned: gateway on CPU 1, wrk, the backend and this process on CPU 0' : 'unpinned'}; ${before.requests} requests (${first.name}), ${after.requests} (${second.name}), in ${SECONDS} s each`);
  log(`# us a request       ${first.name.padStart(8)}  ${second.name.padStart(8)}     added  part`);
  const parts = new Set([...before.byPart.keys(), ...after.byPart.keys()]);
  const rows = [...parts].map((p) => [p, before.byPart.get(p) ?? 0, after.byPart.get(p) ?? 0] as const).sort((a, b) => b[2] - b[1] - (a[2] - a[1]));
  log(`#   busy             ${fmt(before.busyUs)}  ${fmt(after.busyUs)}  ${fmt(after.busyUs - before.busyUs)}`);
  for (const [part, a, b] of rows) if (Math.max(a, b) >= 0.5) log(`#                    ${fmt(a)}  ${fmt(b)}  ${fmt(b - a)}  ${part}`);
  log(`# functions with the most self time in ${first.name} (us a request):`);
  const own = [...before.byFunction].filter(([f]) => !f.startsWith('(idle)')).sort((a, b) => b[1] - a[1]);
  for (const [fn, us] of own.slice(0, TOP_FUNCTIONS)) log(`#   ${fmt(us)}  ${fn}`);
  log(`# functions gaining the most self time in ${second.name} (us a request):`);
  const fns = new Set([...before.byFunction.keys(), ...after.byFunction.keys()]);
  const gains = [...fns].map((f) => [f, (after.byFunction.get(f) ?? 0) - (before.byFunction.get(f) ?? 0)] as const).sort((a, b) => b[1] - a[1]);
  for (const [fn, us] of gains.slice(0, TOP_FUNCTIONS)) log(`#   ${fmt(us)}  ${fn}`);
}

/** The exporter thread's profile and the threads' CPU, after the main threads' comparison. */
function reportAppInsights(none: GatewayProfile, withAi: Array<[Variant, GatewayProfile]>): void {
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const t0 = none.threads!;
  log(`# CPU a request by thread, unprofiled (us):  none  ${withAi.map(([v]) => v.name.padStart(11)).join('  ')}`);
  for (const [name, pick] of [
    ['main thread', (t: typeof t0) => t.main],
    ['exporter thread', (t: typeof t0) => t.exporter],
    ["other threads (V8's helpers)", (t: typeof t0) => t.others],
    ['this process (the ingestion endpoint)', (t: typeof t0) => t.ingestion],
  ] as const) {
    log(`#   ${name.padEnd(36)} ${fmt(pick(t0))}  ${withAi.map(([, p]) => `${fmt(pick(p.threads!))}   `).join('')}`);
  }
  for (const [variant, profile] of withAi) {
    const exporter = profile.exporter!;
    log(`# ${variant.name}: exporter thread, us a request: busy ${exporter.busyUs.toFixed(2)}`);
    for (const [part, us] of [...exporter.byPart].sort((a, b) => b[1] - a[1])) if (us >= 0.2 && part !== '(idle)') log(`#   ${fmt(us)}  ${part}`);
    log('# its functions by self time:');
    const fns = [...exporter.byFunction].filter(([f]) => !f.startsWith('(idle)')).sort((a, b) => b[1] - a[1]);
    for (const [fn, us] of fns.slice(0, TOP_FUNCTIONS)) log(`#   ${fmt(us)}  ${fn}`);
  }
}

const threadsTotal = (t: NonNullable<GatewayProfile['threads']>) => t.main + t.exporter + t.others;

async function main(): Promise<string[]> {
  const backend = await startBenchBackend(null, PINNED ? { cpu: LOAD_CPU } : {});
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-profile-proxy-'));
  try {
    if (APPINSIGHTS) ingestion = await startBenchIngestionEndpoint(dir);
    const [first, second] = CONDITIONS ? [FIVE, FIVE_WITH_CONDITIONS] : APPINSIGHTS ? [NO_POLICIES, WITH_APPINSIGHTS] : [NO_POLICIES, FIVE];
    const before = await profileGateway(first, backend.url, dir);
    const after = await profileGateway(second, backend.url, dir);
    const baseline = APPINSIGHTS && BASELINE_WITH_APPINSIGHTS ? await profileGateway(BASELINE_WITH_APPINSIGHTS, backend.url, dir) : null;
    report([first, before.main], [second, after.main]);
    if (APPINSIGHTS) {
      reportAppInsights(before, [[second, after], ...(baseline ? [[BASELINE_WITH_APPINSIGHTS!, baseline] as [Variant, GatewayProfile]] : [])]);
      const baselineFigures = baseline
        ? [
            `baseline-appinsights-exporter-profile-busy-us-per-request: ${baseline.exporter!.busyUs.toFixed(1)}`,
            `baseline-appinsights-threads-cpu-us-added: ${(threadsTotal(baseline.threads!) - threadsTotal(before.threads!)).toFixed(1)}`,
            `baseline-appinsights-ingestion-cpu-us-per-request: ${(baseline.threads!.ingestion - before.threads!.ingestion).toFixed(1)}`,
          ]
        : [];
      return [
        `appinsights-profile-busy-us-added: ${(after.main.busyUs - before.main.busyUs).toFixed(1)}`,
        `appinsights-exporter-profile-busy-us-per-request: ${after.exporter!.busyUs.toFixed(1)}`,
        `appinsights-threads-cpu-us-added: ${(threadsTotal(after.threads!) - threadsTotal(before.threads!)).toFixed(1)}`,
        `appinsights-ingestion-cpu-us-per-request: ${(after.threads!.ingestion - before.threads!.ingestion).toFixed(1)}`,
        ...baselineFigures,
      ];
    }
    if (CONDITIONS) {
      return [
        `five-policy-profile-busy-us-per-request: ${before.main.busyUs.toFixed(1)}`,
        `conditions-profile-busy-us-per-request: ${after.main.busyUs.toFixed(1)}`,
        `conditions-profile-busy-us-added: ${(after.main.busyUs - before.main.busyUs).toFixed(1)}`,
      ];
    }
    const wasm = (s: Shares) => s.byPart.get('policy modules (wasm)') ?? 0;
    return [
      `profile-busy-us-per-request: ${before.main.busyUs.toFixed(1)}`,
      `five-policy-profile-busy-us-per-request: ${after.main.busyUs.toFixed(1)}`,
      `five-policy-profile-busy-us-added: ${(after.main.busyUs - before.main.busyUs).toFixed(1)}`,
      `five-policy-profile-wasm-us-added: ${(wasm(after.main) - wasm(before.main)).toFixed(1)}`,
    ];
  } finally {
    await ingestion?.close();
    await backend.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await printFigures('profile:proxy', main);
