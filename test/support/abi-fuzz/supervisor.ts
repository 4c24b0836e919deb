// The supervisor: runs the fuzzer's cases in a child process (child.ts) and watches it from outside, because the
// promises that matter most are the ones a broken host breaks by taking the process with it: the process stays alive
// (a module that crashes it is reported with the case that did, and the run goes on in a new process from the next
// case), and a call never hangs (no record for FuzzBounds.hangMs: the process is killed, the case reported). It also
// keeps the process from eating the machine (CHILD_RSS_LIMIT). Every broken bound is written out with the case's
// source and the command that reproduces it.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import process from 'node:process';
import { repoRoot } from '../../../runtime/assets/repo-root.ts';
import { DEFAULT_BOUNDS, type Bounds } from './bounds.ts';
import type { ChildRecord } from './child.ts';
import { generateCase, type FuzzCase } from './generate.ts';
import type { Break, CaseVerdict } from './oracle.ts';

/** A child whose resident memory passes this is killed and the case reported: the machine is shared. */
export const CHILD_RSS_LIMIT = 3 * 1024 * 1024 * 1024;
/** How often the supervisor reads the results file and the child's memory. */
const POLL_MS = 50;
/** Crashes in a row after which a run stops (something is wrong with the runner, not one module). */
const MAX_CONSECUTIVE_DEATHS = 5;

export interface RunOptions {
  seed: number;
  /** Cases [from, from + count); or, with `minutes`, from `from` on until the time is up. */
  from?: number;
  count?: number;
  minutes?: number;
  /** Exactly these cases. */
  only?: number[];
  families?: string[];
  outDir: string;
  bounds?: Partial<Bounds>;
  /** Supervisor self-tests only. */
  selftest?: { crashAt?: number; hangAt?: number };
  /** Progress lines (the script prints them; the test keeps quiet). */
  progress?: (line: string) => void;
}

export interface ReportedBreak extends Break {
  index: number;
  family: string;
  variant: string;
  lang: 'wat' | 'c';
  caseDetail: string;
  /** The module's source, saved to a file. */
  sourceFile: string;
  reproduce: string;
}

export interface RunReport {
  seed: number;
  runtime: string;
  verdicts: CaseVerdict[];
  breaks: ReportedBreak[];
  /** Why C cases were skipped, when they were. */
  cSkipped: string | null;
  durationMs: number;
  /** Processes the run needed (1 + deaths and hangs). */
  processes: number;
}

const isDeno = typeof (globalThis as { Deno?: unknown }).Deno !== 'undefined';

/** The command that runs the fuzzer script in this runtime, with its memory measures enabled (gc exposed). */
export function fuzzCommand(): { cmd: string; args: string[] } {
  if (isDeno) {
    const deno = (globalThis as unknown as { Deno: { execPath(): string } }).Deno;
    return { cmd: deno.execPath(), args: ['run', '-A', '--no-check', '--v8-flags=--expose-gc', join(repoRoot(), 'scripts', 'fuzz-abi.ts')] };
  }
  return { cmd: process.execPath, args: ['--expose-gc', '--disable-warning=ExperimentalWarning', join(repoRoot(), 'dist', 'scripts', 'fuzz-abi.js')] };
}

/** How a user reruns one case, in the runtime that found it. */
export function reproduceCommand(seed: number, index: number, families?: string[]): string {
  const fam = families ? ` --families ${families.join(',')}` : '';
  return isDeno
    ? `./node_modules/.bin/deno run -A --no-check --v8-flags=--expose-gc scripts/fuzz-abi.ts --seed ${seed} --only ${index}${fam}`
    : `npm run fuzz:abi -- --seed ${seed} --only ${index}${fam}`;
}

function childRss(pid: number): number {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
}

export async function runFuzz(o: RunOptions): Promise<RunReport> {
  const started = Date.now();
  const bounds = { ...DEFAULT_BOUNDS, ...o.bounds };
  mkdirSync(o.outDir, { recursive: true });
  const verdicts = new Map<number, CaseVerdict>();
  const breaks: ReportedBreak[] = [];
  const genOptions = o.families ? { families: o.families } : {};
  const deadline = o.minutes !== undefined ? started + o.minutes * 60_000 : null;
  const from = o.from ?? 0;
  const to = o.only ? Infinity : o.count !== undefined ? from + o.count : deadline !== null ? Infinity : from + 100;
  let runtime = isDeno ? 'deno' : 'node';
  let cSkipped: string | null = null;
  let processes = 0;
  let deaths = 0;

  const report = (index: number, b: Break, c?: FuzzCase) => {
    const fc = c ?? generateCase(o.seed, index, genOptions);
    const sourceFile = join(o.outDir, `case-${index}.${fc.lang}`);
    if (!existsSync(sourceFile)) writeFileSync(sourceFile, fc.source);
    const r: ReportedBreak = {
      ...b,
      index,
      family: fc.family,
      variant: fc.variant,
      lang: fc.lang,
      caseDetail: fc.detail,
      sourceFile,
      reproduce: reproduceCommand(o.seed, index, o.families),
    };
    breaks.push(r);
    o.progress?.(formatBreak(o.seed, r));
  };

  let nextFrom = from;
  let remaining = o.only ? [...o.only] : null;
  for (;;) {
    if (remaining !== null && remaining.length === 0) break;
    if (remaining === null && nextFrom >= to) break;
    if (deadline !== null && Date.now() >= deadline) break;
    processes++;
    const results = join(o.outDir, `results-${processes}.jsonl`);
    writeFileSync(results, '');
    const { cmd, args } = fuzzCommand();
    const childArgs = [
      '--child',
      '--seed', String(o.seed),
      '--from', String(nextFrom),
      '--to', String(to),
      '--results', results,
      ...(remaining ? ['--only', remaining.join(',')] : []),
      ...(o.families ? ['--families', o.families.join(',')] : []),
      ...(deadline !== null ? ['--deadline', String(deadline)] : []),
      ...(o.bounds ? ['--bounds', JSON.stringify(o.bounds)] : []),
      ...(o.selftest ? ['--selftest', JSON.stringify(o.selftest)] : []),
    ];
    const child: ChildProcess = spawn(cmd, [...args, ...childArgs], { cwd: repoRoot(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    // Drained so the child never blocks on a full pipe; its log goes to the oracle's counting sink, not here.
    child.stdout!.resume();
    child.stderr!.on('data', (b: Buffer) => {
      stderr = (stderr + b.toString()).slice(-4000);
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('close', (code, signal) => resolve({ code, signal })),
    );
    let read = 0;
    let current: number | null = null;
    let currentSince = Date.now();
    /** Breaks of the current case's calls so far: reported if the case never finishes. */
    let partial: Break[] = [];
    let done = false;
    let lastBegun = nextFrom - 1;
    let killedFor: string | null = null;
    const state = { exited: false };
    void exited.then(() => (state.exited = true));

    const consume = () => {
      const text = readFileSync(results, 'utf8');
      const end = text.lastIndexOf('\n') + 1;
      const fresh = text.slice(read, end);
      read = end;
      for (const line of fresh.split('\n')) {
        if (!line) continue;
        const r = JSON.parse(line) as ChildRecord;
        if (r.t === 'ready') {
          runtime = r.runtime;
          cSkipped = r.cProblem;
        } else if (r.t === 'begin') {
          current = r.i;
          currentSince = Date.now();
          lastBegun = r.i;
          partial = [];
        } else if (r.t === 'call') {
          // A call ended: the case is not hung, whatever it does next. The hang bound is per call.
          currentSince = Date.now();
          partial = r.breaks;
        } else if (r.t === 'case') {
          const v = r.verdict;
          verdicts.set(v.index, v);
          current = null;
          deaths = 0;
          if (remaining) remaining = remaining.filter((i) => i !== v.index);
          for (const b of v.breaks) report(v.index, b);
          if (verdicts.size % 10 === 0) {
            o.progress?.(`# ${verdicts.size} cases done (last ${v.index}, ${v.family}), ${breaks.length} broken bounds so far, ${((Date.now() - started) / 1000).toFixed(0)} s`);
          }
        } else if (r.t === 'steady') {
          if (r.detail) report(r.to, { check: r.check ?? 'memory-steady', detail: `over cases ${r.from}-${r.to}: ${r.detail}` });
        } else if (r.t === 'unhandled') {
          if (r.i !== null) report(r.i, { check: 'unhandled', detail: `${r.detail} (a gateway process would exit)` });
          else o.progress?.(`# unhandled outside a case: ${r.detail}`);
        } else if (r.t === 'done') {
          done = true;
        }
      }
    };

    while (!state.exited) {
      await new Promise((r) => setTimeout(r, POLL_MS));
      consume();
      if (state.exited) break;
      if (current !== null && Date.now() - currentSince > bounds.hangMs) {
        killedFor = `case ${current} reported nothing for ${bounds.hangMs} ms`;
        child.kill('SIGKILL');
        await exited;
        break;
      }
      const rss = child.pid ? childRss(child.pid) : 0;
      if (rss > CHILD_RSS_LIMIT) {
        killedFor = `the process reached ${(rss / 2 ** 30).toFixed(1)} GiB resident during case ${current}`;
        child.kill('SIGKILL');
        await exited;
        break;
      }
    }
    const { code, signal } = await exited;
    consume();
    if (done && killedFor === null && code === 0) break;
    // The process ended without finishing: the case it was running is to blame.
    const culprit = current ?? (lastBegun >= nextFrom ? lastBegun : null);
    if (culprit !== null) for (const b of partial) report(culprit, b);
    if (killedFor !== null && culprit !== null) {
      report(culprit, { check: killedFor.includes('reported nothing') ? 'hang' : 'process', detail: killedFor });
    } else if (culprit !== null) {
      const last = stderr.trim().split('\n').slice(-3).join(' | ');
      report(culprit, { check: 'process', detail: `the process running it died (exit code ${code}, signal ${signal}): ${last}` });
    } else {
      throw new Error(`the fuzzer's child process failed before its first case (exit ${code}, signal ${signal}): ${stderr}`);
    }
    if (remaining) remaining = remaining.filter((i) => i !== culprit);
    nextFrom = (culprit ?? nextFrom) + 1;
    if (culprit !== null && !verdicts.has(culprit)) {
      const c = generateCase(o.seed, culprit, genOptions);
      verdicts.set(culprit, { index: culprit, family: c.family, variant: c.variant, lang: c.lang, detail: c.detail, loaded: false, calls: [], breaks: [] });
    }
    if (++deaths >= MAX_CONSECUTIVE_DEATHS) {
      o.progress?.(`# ${deaths} processes in a row died; stopping the run`);
      break;
    }
  }
  return {
    seed: o.seed,
    runtime,
    verdicts: [...verdicts.values()].sort((a, b) => a.index - b.index),
    breaks,
    cSkipped,
    durationMs: Date.now() - started,
    processes,
  };
}

export function formatBreak(seed: number, b: ReportedBreak): string {
  return [
    `BROKEN seed=${seed} case=${b.index} family=${b.family}${b.variant ? `/${b.variant}` : ''} (${b.lang})${b.call !== undefined ? ` call=${b.call}` : ''}: ${b.check}: ${b.detail}`,
    `  module: ${b.caseDetail}`,
    `  source: ${b.sourceFile}`,
    `  reproduce: ${b.reproduce}`,
  ].join('\n');
}
