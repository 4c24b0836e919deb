// The oracle: runs one generated case against a real policy host in this process and measures what the sandbox
// promises. Per call: the call ends with success or a PolicyFailure of a known reason; each round (one synchronous
// run of the handler, between the exchange's begin and its commit or rollback) stays within its CPU budget plus a
// margin and within its wall-clock ceiling; the call's log output, the bytes it hands the host, its HTTP effects and
// its peak memory stay within bounds; a failed call leaves the exchange as it was; a module without the http grant
// does not change where the request goes. Whether the process stays alive and calls end at all is the supervisor's
// business (supervisor.ts): this code runs in the process that may die or hang.

import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import process from 'node:process';
import { FAILURE_REASONS, PolicyFailure, PolicyHost, PolicyLoadError, type EffectContext, type EffectRunner, type PolicyBinding } from '../../../runtime/policy-host/index.ts';
import { GatewayEffects } from '../../../runtime/pipeline/effects.ts';
import { Exchange, headerMap } from '../../../runtime/policy-host/exchange.ts';
import type { ExchangeUsage } from '../../../runtime/policy-host/binding.ts';
import { EffectKind, type Phase } from '../../../abi/index.ts';
import type { WriteOp } from '../../../runtime/policy-host/instance.ts';
import { MemoryCounterStore } from '../../../runtime/state/counter-store.ts';
import { Logger } from '../../../runtime/telemetry/logger.ts';
import { wat, watDescriptor } from '../policies.ts';
import { limitsOf, type Bounds } from './bounds.ts';
import { compileC } from './c-templates.ts';
import type { ExchangeShape, FuzzCase } from './generate.ts';
import { processClocks } from '../../../runtime/adapters/process-clocks.ts';

export interface Break {
  /** Which promise: exception, failure-reason, cpu, wall, call-wall, log, output, memory-peak, memory-steady, fds,
   * atomicity, backend-url, http-effects, must-fail, load-time, unhandled, hang, process. */
  check: string;
  detail: string;
  /** The call (0-based) it happened in, when it is one call's. */
  call?: number;
}

export interface CallStats {
  outcome: string;
  wallMs: number;
  maxRoundMs: number;
  maxRoundCpuMs: number;
  rounds: number;
  logBytes: number;
  logLines: number;
  handedBytes: number;
  httpEffects: number;
  peakBytes: number;
}

export interface CaseVerdict {
  index: number;
  family: string;
  variant: string;
  lang: 'wat' | 'c';
  detail: string;
  loaded: boolean;
  /** Why the module was refused at load (an expected outcome for some families), or why the case was skipped. */
  refused?: string;
  skipped?: string;
  calls: CallStats[];
  breaks: Break[];
  /** Time breaks of a first run that a second run of the case did not repeat (shown, not counted). */
  unconfirmed?: string[];
}

const MiB = 1 << 20;
const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;

/** Process-wide measures the oracle reads: resident memory (with its peak, resettable on Linux), external memory. */
export const probe = {
  gc(): void {
    const gc = (globalThis as { gc?: () => void }).gc;
    if (!gc) throw new Error('the ABI fuzzer needs a gc() to measure memory: run with --expose-gc (Deno: --v8-flags=--expose-gc)');
    gc();
  },
  hasGc(): boolean {
    return typeof (globalThis as { gc?: unknown }).gc === 'function';
  },
  /** VmRSS and VmHWM in bytes (null off Linux). */
  status(): { rss: number; hwm: number } | null {
    try {
      const text = readFileSync('/proc/self/status', 'utf8');
      const kib = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(text)?.[1] ?? NaN) * 1024;
      return { rss: kib('VmRSS'), hwm: kib('VmHWM') };
    } catch {
      return null;
    }
  },
  /** Resets VmHWM to the current RSS (Linux clear_refs 5), so a call's peak can be read; false when not possible. */
  resetPeak(): boolean {
    try {
      writeFileSync('/proc/self/clear_refs', '5');
      return true;
    } catch {
      return false;
    }
  },
  /** Memory outside V8's heap: ArrayBuffers (kernel blocks), wasm memories on Node. Deno reports it as external. */
  external(): number {
    const m = process.memoryUsage();
    return Math.max(m.arrayBuffers ?? 0, m.external ?? 0);
  },
  fds(): number {
    try {
      return readdirSync('/proc/self/fd').length;
    } catch {
      return 0;
    }
  },
};

/** Counts what passes through the gateway's log: the sink is called inside the host function, so it must be cheap. */
export class CountingSink {
  bytes = 0;
  lines = 0;
  /** The last line seen, cut short, to show in a report. */
  last = '';
  readonly sink = (line: string): void => {
    this.bytes += line.length;
    this.lines++;
    if (this.lines % 64 === 1) this.last = line.length > 300 ? `${line.slice(0, 300)}…` : line;
  };
}

/** The exchange, instrumented: begin → commit/rollback brackets each round, and writes count the bytes handed over. */
class MeteredExchange extends Exchange {
  rounds = 0;
  maxRoundMs = 0;
  maxRoundCpuMs = 0;
  handedBytes = 0;
  private roundStart = 0;
  private roundCpu: NodeJS.CpuUsage | null = null;

  override begin(binding: PolicyBinding): void {
    this.rounds++;
    this.roundCpu = process.cpuUsage();
    this.roundStart = performance.now();
    super.begin(binding);
  }

  private endRound(): void {
    const ms = performance.now() - this.roundStart;
    const cpu = process.cpuUsage(this.roundCpu ?? undefined);
    this.maxRoundMs = Math.max(this.maxRoundMs, ms);
    this.maxRoundCpuMs = Math.max(this.maxRoundCpuMs, (cpu.user + cpu.system) / 1000);
  }

  override commit(): void {
    super.commit();
    this.endRound();
  }

  override rollback(): void {
    super.rollback();
    this.endRound();
  }

  override write(op: WriteOp, field: number, name: string, value: string | Uint8Array | null): number {
    this.handedBytes += name.length + (value === null ? 0 : typeof value === 'string' ? value.length : value.byteLength);
    return super.write(op, field, name, value);
  }
}

/** What a failed call must leave as it found: everything a policy can change. */
function snapshot(e: Exchange): unknown[] {
  const headers = (h: Map<string, string[]>) => JSON.stringify([...h]);
  return [
    e.request.method,
    e.request.path,
    e.request.query,
    headers(e.request.headers),
    e.request.body,
    e.response.status,
    headers(e.response.headers),
    e.response.body,
    e.backendUrl,
    JSON.stringify([...e.variables]),
    e.responded,
  ];
}

const SNAPSHOT_FIELDS = ['method', 'path', 'query', 'request headers', 'request body', 'status', 'response headers', 'response body', 'backend URL', 'variables', 'responded'];

let exchanges = 0;

/** The exchange a case's handler is given: small, or big (many headers and query parameters, MiB bodies). */
export function fuzzExchange(shape: ExchangeShape, phase: Phase): MeteredExchange {
  const big = shape === 'big';
  const headers: Record<string, string> = { 'x-fuzz': 'one', host: 'fuzz.test' };
  let query = 'q=1&a=2';
  if (big) {
    for (let i = 0; i < 100; i++) headers[`x-h${i}`] = 'v'.repeat(100);
    query = Array.from({ length: 2000 }, (_, i) => `p${i}=${'w'.repeat(24)}`).join('&') + '&q=last';
  }
  const e = new MeteredExchange({
    requestId: `fuzz-${++exchanges}`,
    api: 'fuzz-api',
    apiPathPrefix: '/fuzz',
    operation: 'fuzz-op',
    backendUrl: 'http://127.0.0.1:1/backend',
    routeParams: new Map([['id', '7']]),
    variables: new Map([['seen', 'yes']]),
    request: {
      method: 'POST',
      path: '/fuzz/orders/7',
      query,
      headers: headerMap(headers),
      body: big ? new Uint8Array(MiB).fill(0x61) : new TextEncoder().encode('{"a":1}'),
      clientAddress: '127.0.0.1',
    },
  });
  e.phase = phase;
  if (phase === 'outbound' || phase === 'on-error') {
    e.response = { status: phase === 'on-error' ? 502 : 200, headers: headerMap({ 'content-type': 'application/json' }), body: big ? new Uint8Array(MiB / 4).fill(0x62) : null };
  }
  if (phase === 'on-error') {
    e.error = { source: 'backend', reason: 'unreachable', message: 'connect ECONNREFUSED 127.0.0.1:1', policy: '', status: 502 };
  }
  return e;
}

/** Counts HTTP effects and what effects hand over, around the gateway's own effect runner. */
class CountingEffects implements EffectRunner {
  http = 0;
  requestBytes = 0;
  constructor(private readonly inner: GatewayEffects) {}

  perform(kind: number, request: string, context: EffectContext): Promise<string> {
    if (kind === EffectKind.HTTP) this.http++;
    this.requestBytes += request.length;
    return this.inner.perform(kind, request, context);
  }

  performNow(kind: number, request: string, context: EffectContext): string | undefined {
    this.requestBytes += request.length;
    return this.inner.performNow(kind, request, context);
  }

  atEnd(kind: number, request: string, result: string, context: EffectContext): ((usage: ExchangeUsage) => void) | null {
    return this.inner.atEnd(kind, request, result, context);
  }

  undo(kind: number, request: string, result: string, context: EffectContext): void {
    this.inner.undo(kind, request, result, context);
  }
}

/** What the oracle keeps across cases, as a gateway would: one counter store, one log, one effect runner. */
export class OracleContext {
  readonly sink = new CountingSink();
  readonly logger = new Logger(this.sink.sink, 'debug');
  readonly effects = new CountingEffects(new GatewayEffects({ counters: new MemoryCounterStore() }));
  /** A local server the modules' HTTP effects go to (the only host they are granted: 127.0.0.1). */
  private server: Server | null = null;
  url = '';
  httpReceived = 0;

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      this.httpReceived++;
      req.resume();
      req.on('end', () => res.end('{"ok":true}'));
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/fx`;
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
    this.server?.closeAllConnections?.();
  }
}

/**
 * Loads and calls a harmless module once, so that the first case is not charged for loading binaryen and compiling
 * it (seconds on a busy machine; the supervisor would take that for a hang) or for V8 tiering up the host's code.
 */
export async function warmUp(ctx: OracleContext): Promise<void> {
  const d = watDescriptor('{"name":"warm-up","version":"1"}');
  const bytes = await wat(`(module ${d.imports} (memory (export "memory") 1) ${d.data} ${d.func}
    (func (export "on_inbound") (result i32) (i32.const 0)))`, 'host');
  const host = new PolicyHost({ logger: ctx.logger, effects: ctx.effects, clocks: processClocks });
  const binding = host.bind({ id: 'fuzz/warm-up', phase: 'inbound', module: await host.load(bytes) });
  for (let i = 0; i < 3; i++) await binding.run('inbound', fuzzExchange('small', 'inbound'));
}

/** Compiles a case's source to module bytes. */
export async function caseBytes(c: FuzzCase): Promise<Uint8Array> {
  return c.lang === 'wat' ? wat(c.source, 'host') : compileC(c.source);
}

function describeError(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`.slice(0, 500);
  return String(err).slice(0, 500);
}

/** Runs one case and returns its verdict. Never throws for what the module does; throws only for fuzzer bugs. */
export async function runCase(
  c: FuzzCase,
  ctx: OracleContext,
  bounds: Bounds,
  /** Told after each call, with the breaks so far (the supervisor keeps them should a later call never end). */
  afterCall?: (call: number, stats: CallStats, breaks: Break[]) => void,
): Promise<CaseVerdict> {
  const verdict: CaseVerdict = { index: c.index, family: c.family, variant: c.variant, lang: c.lang, detail: c.detail, loaded: false, calls: [], breaks: [] };
  const bytes = await caseBytes(c);
  const limits = limitsOf(c.limits);
  // A host per case, so compiled modules do not pile up in its cache; the log, counters and effects are shared.
  const host = new PolicyHost({ logger: ctx.logger, effects: ctx.effects, clocks: processClocks });

  const loadStarted = performance.now();
  let module;
  try {
    module = await host.load(bytes);
  } catch (err) {
    if (err instanceof PolicyLoadError) verdict.refused = err.problems.join('; ').slice(0, 300);
    else verdict.breaks.push({ check: 'exception', detail: `loading threw ${describeError(err)} instead of a PolicyLoadError` });
  }
  const loadMs = performance.now() - loadStarted;
  if (loadMs > bounds.loadMs) verdict.breaks.push({ check: 'load-time', detail: `loading took ${loadMs.toFixed(0)} ms (bound ${bounds.loadMs} ms)` });
  if (!module) return verdict;
  verdict.loaded = true;

  let binding: PolicyBinding;
  try {
    binding = host.bind({ id: `fuzz/${c.index}`, phase: c.phase, module, config: { url: ctx.url }, grants: c.grants, limits: c.limits });
  } catch (err) {
    verdict.breaks.push({ check: 'exception', detail: `binding a module that loaded threw ${describeError(err)}` });
    return verdict;
  }

  for (let call = 0; call < c.calls; call++) {
    // The instance is made before the measured call (its start function has the same budget, checked by loadMs).
    const warmStarted = performance.now();
    await binding.warm().catch(() => undefined);
    const warmMs = performance.now() - warmStarted;
    if (warmMs > bounds.loadMs) verdict.breaks.push({ check: 'load-time', call, detail: `creating an instance took ${warmMs.toFixed(0)} ms` });

    const exchange = fuzzExchange(c.exchange, c.phase);
    const before = snapshot(exchange);
    probe.gc();
    const log0 = { bytes: ctx.sink.bytes, lines: ctx.sink.lines };
    const http0 = ctx.effects.http;
    const req0 = ctx.effects.requestBytes;
    const ext0 = probe.external();
    const peakReset = probe.resetPeak();
    const rss0 = probe.status()?.rss ?? 0;
    const started = performance.now();

    let outcome: string;
    let failure: PolicyFailure | null = null;
    try {
      await binding.run(c.phase, exchange);
      outcome = exchange.responded ? 'responded' : 'ok';
    } catch (err) {
      if (err instanceof PolicyFailure) {
        failure = err;
        outcome = `failed:${err.reason}`;
        if (!(FAILURE_REASONS as readonly string[]).includes(err.reason)) verdict.breaks.push({ check: 'failure-reason', call, detail: `a PolicyFailure with reason ${JSON.stringify(err.reason)}, not one of FailureReason` });
      } else {
        outcome = 'exception';
        verdict.breaks.push({ check: 'exception', call, detail: `the call threw ${describeError(err)} instead of a PolicyFailure` });
      }
    }
    const wallMs = performance.now() - started;
    // Read before any collection: blocks the call allocated are still counted, though the host dropped them.
    const extGrowth = probe.external() - ext0;
    const status = probe.status();
    const rssPeakGrowth = peakReset && status ? status.hwm - rss0 : 0;
    const stats: CallStats = {
      outcome,
      wallMs,
      maxRoundMs: exchange.maxRoundMs,
      maxRoundCpuMs: exchange.maxRoundCpuMs,
      rounds: exchange.rounds,
      logBytes: ctx.sink.bytes - log0.bytes,
      logLines: ctx.sink.lines - log0.lines,
      handedBytes: exchange.handedBytes + (ctx.effects.requestBytes - req0),
      httpEffects: ctx.effects.http - http0,
      peakBytes: Math.max(extGrowth, rssPeakGrowth),
    };
    verdict.calls.push(stats);
    check(verdict, call, c, stats, limits, bounds, { failure, before, exchange, extGrowth, rssPeakGrowth });
    afterCall?.(call, stats, verdict.breaks);
    // The exchange ends: leases are given back and meters settle, as the gateway does when the response is sent.
    exchange.end({ requestBytes: 0, responseBytes: 0 });
  }
  return verdict;
}

function check(
  verdict: CaseVerdict,
  call: number,
  c: FuzzCase,
  s: CallStats,
  limits: { cpuMs: number; memoryBytes: number; outputBytes: number },
  b: Bounds,
  x: { failure: PolicyFailure | null; before: unknown[]; exchange: Exchange; extGrowth: number; rssPeakGrowth: number },
): void {
  const add = (check: string, detail: string) => verdict.breaks.push({ check, call, detail });
  const cpuBound = limits.cpuMs + b.cpuMarginMs;
  // CPU counts only when the round also took that long in wall-clock time: process CPU includes other threads
  // (collector threads), which can add up to a core's worth during a short round on a two-core machine.
  if (s.maxRoundCpuMs > cpuBound && s.maxRoundMs > cpuBound) {
    add('cpu', `a round used ${s.maxRoundCpuMs.toFixed(0)} ms of CPU (${s.maxRoundMs.toFixed(0)} ms wall) under a ${limits.cpuMs} ms budget (bound ${cpuBound} ms)`);
  }
  const wallBound = limits.cpuMs * b.wallCeilingBudgets + b.wallMarginMs;
  // Past the ceiling with little CPU used is this process waiting for a core (the host cannot stop a call while it
  // is not running, and on a shared two-core machine that wait reached tens of milliseconds): the host's fault only
  // when the round also used more CPU than its budget allows.
  if (s.maxRoundMs > wallBound && s.maxRoundCpuMs > cpuBound) {
    add('wall', `a round held the event loop ${s.maxRoundMs.toFixed(0)} ms (bound ${wallBound} ms: ${b.wallCeilingBudgets} budgets + ${b.wallMarginMs} ms)`);
  }
  // Rounds plus the effects between them (performed against a local server that answers at once).
  const callBound = Math.max(s.rounds, 1) * wallBound + 1000;
  if (s.wallMs > callBound) add('call-wall', `the call took ${s.wallMs.toFixed(0)} ms over ${s.rounds} rounds (bound ${callBound.toFixed(0)} ms)`);
  const logBound = limits.outputBytes + b.logMarginBytes;
  if (s.logBytes > logBound) add('log', `the call wrote ${s.logBytes} bytes in ${s.logLines} log lines (bound ${logBound}: the output cap + ${b.logMarginBytes})`);
  const outBound = limits.outputBytes + b.outputSlackBytes;
  if (s.handedBytes > outBound) add('output', `the call handed the host ${s.handedBytes} bytes of values and effect requests (output cap ${limits.outputBytes}, bound ${outBound})`);
  const peakBound = limits.memoryBytes + b.peakMarginBytes;
  if (s.peakBytes > peakBound) {
    add('memory-peak', `the call grew memory by ${mib(s.peakBytes)} at its peak (external ${mib(x.extGrowth)}, resident ${mib(x.rssPeakGrowth)}; cap ${mib(limits.memoryBytes)}, bound ${mib(peakBound)})`);
  }
  if (s.httpEffects > b.maxHttpEffectsPerCall) add('http-effects', `the call made the gateway send ${s.httpEffects} HTTP requests (bound ${b.maxHttpEffectsPerCall})`);
  const after = snapshot(x.exchange);
  if (x.failure) {
    const changed = SNAPSHOT_FIELDS.filter((_, i) => after[i] !== x.before[i]);
    if (changed.length > 0) add('atomicity', `the call failed (${x.failure.reason}) but left changes in: ${changed.join(', ')}`);
  } else if (c.mustFail) {
    add('must-fail', `the handler reported a failure (fail/error_set) on every path, yet the call ended ${s.outcome}`);
  }
  // The request may go somewhere else only with a network grant: BACKEND_URL is network access.
  if (!x.failure && c.grants.http === undefined && after[8] !== x.before[8]) {
    add('backend-url', `a module without the http grant changed the backend URL to ${JSON.stringify(after[8])}`);
  }
}
