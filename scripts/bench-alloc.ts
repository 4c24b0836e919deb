// npm run bench:alloc — how many bytes of JavaScript heap a gateway allocates a request, without policies and with the
// five-policy chain of bench:proxy (scripts/bench/five-policy-chain.ts).
//
// Allocation is what the young generation's collections and the page faults of fresh heap pages cost (issue 17 found
// them a few microseconds of a request's CPU), and unlike time it can be measured on a busy machine: each gateway runs
// with its inspector on, takes BENCH_ALLOC_WARMUP requests (2,000), then BENCH_ALLOC_REQUESTS (10,000) with V8's
// sampling heap profiler on (scripts/lib/heap-sampling.ts), 8 connections, from this process. The access log is on, as
// in bench:proxy (its lines go to /dev/null here).
//
// Prints on stdout:
//   alloc-bytes-per-request             the gateway without policies
//   five-policy-alloc-bytes-per-request with the five policies
//   five-policy-alloc-bytes-added       the difference
// and on stderr each gateway's allocation sites (function and source file) above 1% of its total.
// BENCH_BASELINE_MAIN (another build's gateway entry) adds the same figures prefixed `baseline-`, measured in this run.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { freePort } from '../test/support/ports.ts';
import { benchGatewayYaml } from './bench/five-policy-chain.ts';
import { startBenchBackend } from './lib/bench-backend.ts';
import { printFigures } from './lib/run.ts';
import { positiveFromEnv } from './lib/env.ts';
import { sendChainRequests, startGatewayProcess, stopGatewayProcess } from './lib/gateway-process.ts';
import { sampleAllocations, type AllocationProfile } from './lib/heap-sampling.ts';

const WARMUP = positiveFromEnv('BENCH_ALLOC_WARMUP', 2_000);
const REQUESTS = positiveFromEnv('BENCH_ALLOC_REQUESTS', 10_000);

interface Target {
  figure: string;
  main: string;
  withPolicies: boolean;
}

const thisMain = join(repoRoot(), 'dist', 'runtime', 'entry', 'gateway.js');
const targets: Target[] = [
  { figure: 'alloc-bytes-per-request', main: thisMain, withPolicies: false },
  { figure: 'five-policy-alloc-bytes-per-request', main: thisMain, withPolicies: true },
];
const baselineMain = process.env.BENCH_BASELINE_MAIN || null;
if (baselineMain) {
  targets.push(
    { figure: 'baseline-alloc-bytes-per-request', main: baselineMain, withPolicies: false },
    { figure: 'baseline-five-policy-alloc-bytes-per-request', main: baselineMain, withPolicies: true },
  );
}

async function measure(target: Target, backendUrl: string, dir: string): Promise<AllocationProfile> {
  const config = join(dir, `${target.withPolicies ? 'five' : 'none'}.yaml`);
  writeFileSync(config, benchGatewayYaml(backendUrl, target.withPolicies, 'scripts/bench-alloc.ts'));
  const inspectorPort = await freePort();
  const gateway = await startGatewayProcess(target.figure, process.execPath, [
    `--inspect=127.0.0.1:${inspectorPort}`,
    '--disable-warning=ExperimentalWarning',
    target.main,
    '--config',
    config,
  ], { env: { GATEHOUSE_LOG_LEVEL: 'info' } });
  try {
    await sendChainRequests(gateway.port, WARMUP);
    return await sampleAllocations(inspectorPort, () => sendChainRequests(gateway.port, REQUESTS));
  } finally {
    await stopGatewayProcess(gateway.child);
  }
}

function report(figure: string, profile: AllocationProfile): number {
  const perRequest = profile.totalBytes / REQUESTS;
  const sites = [...profile.sites].filter(([, bytes]) => bytes >= profile.totalBytes / 100).sort((a, b) => b[1] - a[1]);
  process.stderr.write(`# ${figure}: ${perRequest.toFixed(0)} bytes a request over ${REQUESTS} requests\n`);
  for (const [site, bytes] of sites) process.stderr.write(`#   ${(bytes / REQUESTS).toFixed(0).padStart(6)}  ${site}\n`);
  return perRequest;
}

async function main(): Promise<string[]> {
  const backend = await startBenchBackend();
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-bench-alloc-'));
  try {
    const figures = new Map<string, number>();
    for (const target of targets) figures.set(target.figure, report(target.figure, await measure(target, backend.url, dir)));
    const lines: string[] = [];
    for (const prefix of baselineMain ? ['', 'baseline-'] : ['']) {
      const none = figures.get(`${prefix}alloc-bytes-per-request`)!;
      const five = figures.get(`${prefix}five-policy-alloc-bytes-per-request`)!;
      lines.push(`${prefix}alloc-bytes-per-request: ${none.toFixed(0)}`);
      lines.push(`${prefix}five-policy-alloc-bytes-per-request: ${five.toFixed(0)}`);
      lines.push(`${prefix}five-policy-alloc-bytes-added: ${(five - none).toFixed(0)}`);
    }
    return lines;
  } finally {
    await backend.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await printFigures('bench:alloc', main);
