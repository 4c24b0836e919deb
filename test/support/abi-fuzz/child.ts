// The process the fuzzer's cases run in (started by supervisor.ts as `fuzz-abi --child`). It reports each case as a
// line of JSON appended to a results file with a synchronous write, before and after the case: if a module takes the
// process down or hangs it, the supervisor knows which case did. It also watches its own memory after full
// collections (the steady-state check) and its open file descriptors.

import { appendFileSync } from 'node:fs';
import process from 'node:process';
import { DEFAULT_BOUNDS, limitsOf, type Bounds } from './bounds.ts';
import { cToolchainProblem } from './c-templates.ts';
import { generateCase } from './generate.ts';
import { OracleContext, probe, runCase, warmUp, type Break, type CallStats } from './oracle.ts';

export interface ChildOptions {
  seed: number;
  from: number;
  /** Exclusive; Infinity with a deadline. */
  to: number;
  only: number[] | null;
  families: string[] | null;
  results: string;
  /** Epoch ms after which no new case starts. */
  deadline: number | null;
  bounds: Partial<Bounds>;
  /** Self-tests of the supervisor: die or hang at this case (never set by a real run). */
  selftest: { crashAt?: number; hangAt?: number } | null;
}

/** Checks of time, which a busy machine can break without the host's fault. */
const TIMING_CHECKS = new Set(['cpu', 'wall', 'call-wall']);

/** Cases run before memory is first measured: binaryen, Extism and the compilers' own caches settle by then. */
export const STEADY_WARMUP_CASES = 5;
/** Memory is measured again after every this many cases. */
export const STEADY_EVERY_CASES = 10;

export type ChildRecord =
  | { t: 'ready'; pid: number; runtime: string; cProblem: string | null }
  | { t: 'begin'; i: number }
  /** After each call of a case: its measures and the case's breaks so far. */
  | { t: 'call'; i: number; call: number; stats: CallStats; breaks: Break[] }
  | { t: 'case'; verdict: import('./oracle.ts').CaseVerdict }
  | { t: 'steady'; from: number; to: number; rss: number; live: number; fds: number; detail: string | null; check: string | null }
  | { t: 'unhandled'; i: number | null; detail: string }
  | { t: 'done'; next: number };

export async function childMain(o: ChildOptions): Promise<void> {
  const bounds = { ...DEFAULT_BOUNDS, ...o.bounds };
  const write = (r: ChildRecord) => appendFileSync(o.results, JSON.stringify(r) + '\n');
  let current: number | null = null;
  // A gateway process dies of an unhandled rejection; here it is recorded against the case that caused it.
  process.on('unhandledRejection', (err: unknown) => {
    write({ t: 'unhandled', i: current, detail: `unhandled rejection: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}` });
  });
  process.on('uncaughtException', (err: unknown) => {
    write({ t: 'unhandled', i: current, detail: `uncaught exception: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}` });
  });
  const isDeno = typeof (globalThis as { Deno?: unknown }).Deno !== 'undefined';
  const cProblem = cToolchainProblem();
  write({ t: 'ready', pid: process.pid, runtime: isDeno ? 'deno' : 'node', cProblem });
  probe.gc();

  const ctx = new OracleContext();
  await ctx.start();
  await warmUp(ctx);
  const options = o.families ? { families: o.families } : {};
  const indices = o.only ?? null;
  let baseline: { rss: number; live: number; fds: number } | null = null;
  let windowStart = o.from;
  let windowPeaks: number[] = [];
  let ran = 0;
  let next = indices ? 0 : o.from;
  for (;;) {
    if (o.deadline !== null && Date.now() >= o.deadline) break;
    const i = indices ? indices[next] : next;
    if (i === undefined || i >= o.to) break;
    next++;
    current = i;
    write({ t: 'begin', i });
    // As the kernel's OOM killer would end it.
    if (o.selftest?.crashAt === i) process.kill(process.pid, 'SIGKILL');
    if (o.selftest?.hangAt === i) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
    const c = generateCase(o.seed, i, options);
    if (c.lang === 'c' && cProblem) {
      write({ t: 'case', verdict: { index: i, family: c.family, variant: c.variant, lang: c.lang, detail: c.detail, loaded: false, skipped: cProblem, calls: [], breaks: [] } });
      continue;
    }
    const afterCall = (call: number, stats: CallStats, breaks: Break[]) => write({ t: 'call', i, call, stats, breaks });
    const verdict = await runCase(c, ctx, bounds, afterCall);
    // A time bound broken once, by less than twice, may be the machine (other processes on two cores): such a case
    // runs again, and its time breaks stand only if they happen again. So may one broken by more, when a round counted
    // more CPU than wall-clock time: one call runs on one thread, so the rest was the process's other threads (the
    // collector's), beside a host pause or a wait for a core (CI on 33f17a1: a round of 121 ms wall, 186 ms of CPU,
    // under a 50 ms budget; the same case passed when run again). A module that escapes its budget breaks it again.
    // Breaks of other bounds are never second-guessed.
    const cpuBound = limitsOf(c.limits).cpuMs + bounds.cpuMarginMs;
    const marginal = verdict.calls.every((s) => s.maxRoundCpuMs <= 2 * cpuBound || s.maxRoundCpuMs > s.maxRoundMs + bounds.cpuMarginMs);
    if (marginal && verdict.breaks.length > 0 && verdict.breaks.every((b) => TIMING_CHECKS.has(b.check))) {
      const again = await runCase(c, ctx, bounds, afterCall);
      if (!again.breaks.some((b) => TIMING_CHECKS.has(b.check))) {
        verdict.unconfirmed = verdict.breaks.map((b) => `${b.check}: ${b.detail}`);
        verdict.breaks = [];
      }
    }
    write({ t: 'case', verdict });
    if (verdict.breaks.some((b) => b.check === 'memory-peak')) windowPeaks.push(i);
    current = null;
    ran++;
    if (ran === STEADY_WARMUP_CASES || (ran > STEADY_WARMUP_CASES && (ran - STEADY_WARMUP_CASES) % STEADY_EVERY_CASES === 0)) {
      const now = steady();
      if (baseline === null) baseline = now;
      else {
        const problems: string[] = [];
        const checks: string[] = [];
        if (now.live - baseline.live > bounds.steadyGrowthBytes) {
          problems.push(`live memory (V8 heap in use + external: ArrayBuffers, wasm memories) grew ${mib(now.live - baseline.live)} after a full collection (bound ${mib(bounds.steadyGrowthBytes)})`);
          checks.push('memory-steady');
        }
        if (now.rss - baseline.rss > bounds.steadyRssGrowthBytes) {
          problems.push(`resident memory grew ${mib(now.rss - baseline.rss)} after a full collection (bound ${mib(bounds.steadyRssGrowthBytes)})`);
          checks.push('memory-steady');
        }
        if (now.fds - baseline.fds > bounds.fdGrowth) {
          problems.push(`${now.fds - baseline.fds} more open file descriptors (bound ${bounds.fdGrowth})`);
          checks.push('fds');
        }
        // A case that broke its peak bound leaves the process holding that memory's pages for a while: say so.
        const peaks = windowPeaks.length ? ` (cases of this window that broke their memory peak bound: ${windowPeaks.join(', ')})` : '';
        const detail = problems.length ? problems.join('; ') + peaks : null;
        write({ t: 'steady', from: windowStart, to: i, ...now, detail, check: checks[0] ?? null });
        // Reported growth becomes the new level: a window is blamed for what it added, not for what came before.
        if (detail) baseline = now;
      }
      windowStart = i + 1;
      windowPeaks = [];
    }
  }
  await ctx.stop();
  write({ t: 'done', next: indices ? (indices[next] ?? o.to) : next });
}

const mib = (n: number) => `${(n / (1 << 20)).toFixed(1)} MiB`;

/** Memory after full collections (two: the first can leave what finalizers free for the second). */
function steady(): { rss: number; live: number; fds: number } {
  probe.gc();
  probe.gc();
  const m = process.memoryUsage();
  return { rss: probe.status()?.rss ?? m.rss, live: m.heapUsed + probe.external(), fds: probe.fds() };
}
