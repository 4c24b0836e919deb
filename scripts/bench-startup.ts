// npm run bench:startup — how soon a gateway serves after its process starts, and how much memory it holds idle.
//
// A gateway with the five-policy chain of bench:proxy (scripts/bench/five-policy-chain.ts) in front of the benchmark
// backend, started from a configuration file whose policies are already built (a first, unmeasured start fills the
// build cache): `cold-start-ms` is the time from spawning the process to the first 200 on the probe path, the median of
// BENCH_STARTUP_RUNS starts (5). After the last start, 1,000 requests go through the chain, the gateway idles 2 s, and
// `idle-rss-mib` is its resident memory then (/proc/<pid>/status; no collection is forced in the gateway).
// Both under Node (dist/runtime/entry/gateway.js) and under Deno (runtime/entry/gateway.ts): `cold-start-ms-deno`,
// `idle-rss-mib-deno`. BENCH_BASELINE_MAIN (another build's gateway entry, run under Node) adds `baseline-cold-start-ms`
// and `baseline-idle-rss-mib`, measured in the same run, start for start in turn with this build's.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { benchGatewayYaml } from './bench/five-policy-chain.ts';
import { positiveFromEnv } from './lib/env.ts';
import { median } from './lib/median.ts';
import { startBenchBackend } from './lib/bench-backend.ts';
import { printFigures } from './lib/run.ts';
import { denoGateway, sendChainRequests, startGatewayProcess, stopGatewayProcess, type GatewayProcess } from './lib/gateway-process.ts';

const RUNS = positiveFromEnv('BENCH_STARTUP_RUNS', 5);
const REQUESTS = 1000;
const READY_TIMEOUT_MS = 120_000;

interface Build {
  name: string;
  /** The printed name of a figure for this build: `cold-start-ms`, `cold-start-ms-deno`, `baseline-cold-start-ms`. */
  figure: (base: string) => string;
  command: (config: string) => { cmd: string; args: string[] };
}

const root = repoRoot();
const builds: Build[] = [
  {
    name: 'node',
    figure: (base) => base,
    command: (config) => ({ cmd: process.execPath, args: ['--disable-warning=ExperimentalWarning', join(root, 'dist', 'runtime', 'entry', 'gateway.js'), '--config', config] }),
  },
  {
    name: 'deno',
    figure: (base) => `${base}-deno`,
    command: (config) => {
      const { cmd, args } = denoGateway();
      return { cmd, args: [...args, '--config', config] };
    },
  },
];
const baselineMain = process.env.BENCH_BASELINE_MAIN || null;
if (baselineMain) {
  builds.push({
    name: 'baseline',
    figure: (base) => `baseline-${base}`,
    command: (config) => ({ cmd: process.execPath, args: ['--disable-warning=ExperimentalWarning', baselineMain, '--config', config] }),
  });
}

function rssMiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
  if (!line) throw new Error(`no VmRSS for process ${pid}`);
  return Number(line.split(/\s+/)[1]) / 1024;
}

function start(build: Build, config: string): Promise<GatewayProcess> {
  const { cmd, args } = build.command(config);
  return startGatewayProcess(build.name, cmd, args, { readyTimeoutMs: READY_TIMEOUT_MS });
}

async function main(): Promise<string[]> {
  const backend = await startBenchBackend();
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-bench-startup-'));
  try {
    const config = join(dir, 'gateway.yaml');
    writeFileSync(config, benchGatewayYaml(backend.url, true, 'scripts/bench-startup.ts'));
    // One start each, unmeasured: the policies are built into the cache (and Deno's module graph is compiled).
    for (const build of builds) await stopGatewayProcess((await start(build, config)).child);
    const readyMs = new Map<string, number[]>(builds.map((b) => [b.name, []]));
    const idle = new Map<string, number>();
    for (let run = 0; run < RUNS; run++) {
      for (const build of run % 2 === 0 ? builds : [...builds].reverse()) {
        const started = await start(build, config);
        readyMs.get(build.name)!.push(started.readyMs);
        if (run === RUNS - 1) {
          await sendChainRequests(started.port, REQUESTS);
          await sleep(2000);
          idle.set(build.name, rssMiB(started.child.pid!));
        }
        await stopGatewayProcess(started.child);
      }
    }
    const lines: string[] = [];
    for (const build of builds) {
      const times = readyMs.get(build.name)!;
      process.stderr.write(`${build.name}: ready after ${times.map((t) => t.toFixed(0)).join(', ')} ms; idle ${idle.get(build.name)!.toFixed(1)} MiB\n`);
      lines.push(`${build.figure('cold-start-ms')}: ${median(times).toFixed(0)}`);
      lines.push(`${build.figure('idle-rss-mib')}: ${idle.get(build.name)!.toFixed(1)}`);
    }
    return lines;
  } finally {
    await backend.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await printFigures('bench:startup', main);
