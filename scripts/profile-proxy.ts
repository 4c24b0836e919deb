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
// PROFILE_PIN=1 runs each gateway on CPU 1 and wrk and the backend on CPU 0, as BENCH_PIN=1 does bench:proxy
// (scripts/bench-proxy.ts says why both runs are worth having).
//
// Prints the table on stderr, with the functions that gain the most self time with the five policies, and on stdout:
//   profile-busy-us-per-request, five-policy-profile-busy-us-per-request, five-policy-profile-busy-us-added
//   five-policy-profile-wasm-us-added (the policy modules' own code)

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { freePort } from '../test/support/ports.ts';
import { API_KEY, ORIGIN, benchGatewayYaml } from './bench/five-policy-chain.ts';
import { startBenchBackend } from './lib/bench-backend.ts';
import { positiveFromEnv } from './lib/env.ts';
import { startGatewayProcess, stopGatewayProcess } from './lib/gateway-process.ts';
import { connectInspector, sourceFileOf, type CallFrame } from './lib/inspector.ts';
import { printFigures } from './lib/run.ts';
import { parseWrkOutput } from './lib/wrk.ts';

const WARMUP_S = positiveFromEnv('PROFILE_WARMUP_S', 4);
const SECONDS = positiveFromEnv('PROFILE_SECONDS', 10);
/**
 * Microseconds between samples, as `--cpu-prof` takes them: each sample stops the thread and walks its stack, so a
 * finer interval disturbs the gateway more (10 s gives some 10,000 samples, enough for functions of a microsecond).
 */
const SAMPLING_INTERVAL_US = 1000;
const PINNED = process.env.PROFILE_PIN === '1';
const PROXY_CPU = 1;
const LOAD_CPU = 0;

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

const pinnedTo = (cpu: number, command: string, args: string[]): [string, string[]] =>
  PINNED ? ['taskset', ['-c', String(cpu), command, ...args]] : [command, args];

async function wrk(port: number, seconds: number): Promise<string> {
  const [command, args] = pinnedTo(LOAD_CPU, 'wrk', ['-t1', '-c32', `-d${seconds}s`, '--latency', '-H', `x-api-key: ${API_KEY}`, '-H', `origin: ${ORIGIN}`, `http://127.0.0.1:${port}/`]);
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`wrk exited with ${code}`);
  return out;
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

async function profileGateway(withPolicies: boolean, backendUrl: string, dir: string): Promise<Shares> {
  const config = join(dir, `${withPolicies ? 'five' : 'none'}.yaml`);
  writeFileSync(config, benchGatewayYaml(backendUrl, withPolicies, 'scripts/profile-proxy.ts'));
  const inspectorPort = await freePort();
  const [command, args] = pinnedTo(PROXY_CPU, process.execPath, [
    `--inspect=127.0.0.1:${inspectorPort}`,
    '--disable-warning=ExperimentalWarning',
    join(repoRoot(), 'dist', 'runtime', 'entry', 'gateway.js'),
    '--config',
    config,
  ]);
  const gateway = await startGatewayProcess(withPolicies ? 'five policies' : 'no policies', command, args, { env: { GATEHOUSE_LOG_LEVEL: 'info' } });
  try {
    await wrk(gateway.port, WARMUP_S);
    const inspector = await connectInspector(inspectorPort);
    try {
      await inspector.send('Profiler.enable');
      await inspector.send('Profiler.setSamplingInterval', { interval: SAMPLING_INTERVAL_US });
      await inspector.send('Profiler.start');
      const run = parseWrkOutput(await wrk(gateway.port, SECONDS));
      const { profile } = (await inspector.send('Profiler.stop')) as { profile: CpuProfile };
      if (run.non2xx > 0 || run.socketErrors > 0) throw new Error(`${run.non2xx} answers were not 2xx and ${run.socketErrors} requests failed`);
      return summarise(profile, run.requests);
    } finally {
      inspector.close();
    }
  } finally {
    await stopGatewayProcess(gateway.child);
  }
}

const fmt = (us: number) => us.toFixed(2).padStart(8);

function report(none: Shares, five: Shares): void {
  const log = (line: string) => process.stderr.write(`${line}\n`);
  log(`# ${PINNED ? 'pinned: gateway on CPU 1, wrk and the backend on CPU 0' : 'unpinned'}; ${none.requests} requests without policies, ${five.requests} with the five, in ${SECONDS} s each`);
  log(`# us a request           none      five     added  part`);
  const parts = new Set([...none.byPart.keys(), ...five.byPart.keys()]);
  const rows = [...parts].map((p) => [p, none.byPart.get(p) ?? 0, five.byPart.get(p) ?? 0] as const).sort((a, b) => b[2] - b[1] - (a[2] - a[1]));
  log(`#   busy             ${fmt(none.busyUs)}  ${fmt(five.busyUs)}  ${fmt(five.busyUs - none.busyUs)}`);
  for (const [part, a, b] of rows) if (Math.max(a, b) >= 0.5) log(`#                    ${fmt(a)}  ${fmt(b)}  ${fmt(b - a)}  ${part}`);
  log('# functions gaining the most self time with the five policies (us a request):');
  const fns = new Set([...none.byFunction.keys(), ...five.byFunction.keys()]);
  const gains = [...fns].map((f) => [f, (five.byFunction.get(f) ?? 0) - (none.byFunction.get(f) ?? 0)] as const).sort((a, b) => b[1] - a[1]);
  for (const [fn, us] of gains.slice(0, 20)) log(`#   ${fmt(us)}  ${fn}`);
}

async function main(): Promise<string[]> {
  const backend = await startBenchBackend(null, PINNED ? { cpu: LOAD_CPU } : {});
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-profile-proxy-'));
  try {
    const none = await profileGateway(false, backend.url, dir);
    const five = await profileGateway(true, backend.url, dir);
    report(none, five);
    const wasm = (s: Shares) => s.byPart.get('policy modules (wasm)') ?? 0;
    return [
      `profile-busy-us-per-request: ${none.busyUs.toFixed(1)}`,
      `five-policy-profile-busy-us-per-request: ${five.busyUs.toFixed(1)}`,
      `five-policy-profile-busy-us-added: ${(five.busyUs - none.busyUs).toFixed(1)}`,
      `five-policy-profile-wasm-us-added: ${(wasm(five) - wasm(none)).toFixed(1)}`,
    ];
  } finally {
    await backend.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await printFigures('profile:proxy', main);
