// The fuzzer's end-to-end check: a real gateway process (test/support/gateway-process.ts) serves a healthy API beside
// fuzzed ones whose operations each run one generated module, and a probe keeps asking the healthy API while the
// fuzzed operations are called one after another. The promise is the sandbox's reason to exist: a module costs the
// request that runs it an error, never the gateway. So: the process stays alive, the healthy API answers 200 within
// HEALTHY_LATENCY_MS every time, each fuzzed request is answered (any status) within FUZZED_ANSWER_MS, and the log a
// fuzzed request causes stays within the same bound as in-process.

import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { request } from 'undici';
import { DEFAULT_BOUNDS, limitsOf } from './bounds.ts';
import { generateCase, type FuzzCase } from './generate.ts';
import { caseBytes, type CaseVerdict } from './oracle.ts';
import { wat, watDescriptor } from '../policies.ts';
import { reproduceCommand, type ReportedBreak, type RunReport } from './supervisor.ts';
import { startGatewayProcess, type GatewayProcess } from '../gateway-process.ts';

/**
 * The healthy API's answer time while a fuzzed request runs, over the slowest answer of a control phase (the same
 * requests to an operation whose module does nothing: what the machine's load costs right now): a policy call may
 * hold the event loop for its wall-clock ceiling (3 budgets, 150 ms) plus the margin (20 ms), and a probe that
 * arrives just then waits for it; 100 ms more is the gateway's own work for the fuzzed request around the call (its
 * error path, the access log).
 */
export const HEALTHY_LATENCY_MS = DEFAULT_BOUNDS.wallCeilingBudgets * 50 + DEFAULT_BOUNDS.wallMarginMs + 100;
/** A fuzzed request: up to 4 rounds each within its ceiling, effects against a local server, and the error path. */
export const FUZZED_ANSWER_MS = 5_000;
/** Requests to the control operation before the fuzzed ones (about a second of probing). */
const CONTROL_REQUESTS = 40;
/** How often the probe asks the healthy API. */
const PROBE_EVERY_MS = 25;
/** Requests sent to each fuzzed operation (the second meets a recycled instance, or one a failure left behind). */
const REQUESTS_PER_MODULE = 2;
/** After a module, how long the gateway may take to answer the healthy API within its bound again. */
const SETTLE_MS = 20_000;
/** Gateway processes started again after one died (each death is reported with the module that caused it). */
const MAX_GATEWAY_RESTARTS = 3;
/** How the healthy probe's access log lines are told apart (they are not the fuzzed requests' cost). */
const PROBE_LINE_MARK = '"path":"/healthy/ping"';
/** A module's log is complete once nothing more arrived for this long (a flooded gateway pauses between bursts). */
const LOG_QUIET_MS = 500;
/** The access log line and the gateway's own lines about a failed request, on top of the in-process log bound. */
const GATEWAY_LOG_SLACK = 16 * 1024;

export interface GatewayCheckOptions {
  seed: number;
  /** The modules to serve: cases that loaded in a supervised run (a module refused at load would make the gateway
   * refuse the whole configuration; see gatewayCases). */
  cases: FuzzCase[];
  families?: string[];
  outDir: string;
  progress?: (line: string) => void;
}

export interface GatewayCheckResult {
  breaks: ReportedBreak[];
  modules: number;
  requests: number;
  probes: number;
  worstProbeMs: number;
  controlWorstMs: number;
  durationMs: number;
}

/**
 * Which cases of a run go to the gateway: at most `max` modules that loaded in the supervised run (loading is where a
 * hostile start function acts, and it did so there, in a process that may die), those that broke something first,
 * one per family before a second of any, then one per family and variant.
 */
export function gatewayCases(report: RunReport, max: number, families?: string[]): FuzzCase[] {
  const loaded = report.verdicts.filter((v) => v.loaded && !v.skipped);
  const broke = new Set(report.breaks.map((b) => b.index));
  const ordered = [...loaded.filter((v) => broke.has(v.index)), ...loaded.filter((v) => !broke.has(v.index))];
  const chosen: number[] = [];
  for (const key of [(v: CaseVerdict) => v.family, (v: CaseVerdict) => `${v.family}/${v.variant}`, (v: CaseVerdict) => String(v.index)]) {
    const seen = new Set(ordered.filter((v) => chosen.includes(v.index)).map(key));
    for (const v of ordered) {
      if (chosen.includes(v.index) || seen.has(key(v))) continue;
      seen.add(key(v));
      chosen.push(v.index);
    }
  }
  const options = families ? { families } : {};
  return chosen.slice(0, max).map((i) => generateCase(report.seed, i, options));
}

/** A module that does nothing: the control operation the probe's latency is first measured against. */
async function controlModule(): Promise<Uint8Array> {
  const d = watDescriptor('{"name":"control","version":"1"}');
  return wat(`(module ${d.imports} (memory (export "memory") 1) ${d.data} ${d.func} (func (export "on_inbound") (result i32) (i32.const 0)))`);
}

function yamlFor(cases: FuzzCase[], effectsUrl: string): string {
  const entry = (c: FuzzCase) => {
    const phase = c.phase;
    const lines = [
      `      - id: m${c.index}`,
      `        method: "*"`,
      `        urlTemplate: /m${c.index}`,
      `        policies:`,
      `          ${phase}:`,
      `            - module: ./m${c.index}.wasm`,
      `              config: { url: ${JSON.stringify(effectsUrl)} }`,
    ];
    if (Object.keys(c.grants).length) lines.push(`              grants: ${JSON.stringify(c.grants)}`);
    if (Object.keys(c.limits).length) lines.push(`              limits: ${JSON.stringify(c.limits)}`);
    return lines.join('\n');
  };
  // on-error handlers run only when something failed: their operations live in an API whose backend refuses.
  const up = cases.filter((c) => c.phase !== 'on-error');
  const down = cases.filter((c) => c.phase === 'on-error');
  const api = (id: string, backend: string, list: FuzzCase[]) =>
    list.length === 0 ? '' : `  - id: ${id}\n    pathPrefix: /${id}\n    backend: { url: ${JSON.stringify(backend)}, timeoutMs: 2000 }\n    operations:\n${list.map(entry).join('\n')}\n`;
  return `version: 1
apis:
  - id: healthy
    pathPrefix: /healthy
    backend: { url: builtin:echo }
    policies:
      outbound:
        - policy: set-header
          config: { name: x-healthy, value: "yes" }
  - id: control
    pathPrefix: /control
    backend: { url: builtin:echo }
    policies:
      inbound:
        - module: ./control.wasm
${api('fuzzed', 'builtin:echo', up)}${api('fuzzed-down', 'http://127.0.0.1:1', down)}`;
}

/** One gateway process under observation: its log counted, its stderr's tail kept, the healthy API probed. */
class Session {
  logBytes = 0;
  /** The last stderr, for the report when the process dies (a fatal V8 error says why). */
  stderrTail = '';
  alive = true;
  /** The module being exercised, or settling; the probe blames it for a slow or failed answer. */
  current: FuzzCase | null = null;
  probes = 0;
  worstProbeMs = 0;
  controlWorstMs = 0;
  control = true;
  /** When the probe last got a 200 within its bound (ms on performance.now()). */
  lastGoodProbe = 0;
  private probing = true;
  private probeLoop: Promise<void> = Promise.resolve();
  private partial = '';

  constructor(
    readonly gateway: GatewayProcess,
    private readonly report: (c: FuzzCase, check: string, detail: string) => void,
  ) {
    // The helper keeps every log line parsed in memory; a module that floods the log would make this process hold it
    // all. From here on the log is only counted.
    gateway.child.stdout!.removeAllListeners('data');
    gateway.child.stdout!.on('data', (chunk: Buffer | string) => {
      // Whole lines only, and not the probe's own access log lines: what is counted is what the fuzzed requests cost.
      const text = this.partial + chunk.toString();
      let start = 0;
      for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
        if (!text.slice(start, nl).includes(PROBE_LINE_MARK)) this.logBytes += nl + 1 - start;
        start = nl + 1;
      }
      this.partial = text.slice(start);
    });
    gateway.child.stderr!.on('data', (chunk: Buffer | string) => {
      this.stderrTail = (this.stderrTail + chunk.toString()).slice(-2000);
    });
    void gateway.exited.then(() => (this.alive = false));
  }

  get bound(): number {
    return HEALTHY_LATENCY_MS + this.controlWorstMs;
  }

  startProbing(): void {
    this.probeLoop = (async () => {
      while (this.probing && this.alive) {
        const t0 = performance.now();
        const during = this.current;
        let status = 0;
        let error = '';
        try {
          const res = await request(`${this.gateway.url}/healthy/ping`, { headersTimeout: 10_000, bodyTimeout: 10_000 });
          status = res.statusCode;
          await res.body.text();
        } catch (err) {
          error = (err as Error).message;
        }
        const ms = performance.now() - t0;
        this.probes++;
        if (this.control) this.controlWorstMs = Math.max(this.controlWorstMs, ms);
        else this.worstProbeMs = Math.max(this.worstProbeMs, ms);
        if (status === 200 && ms <= this.bound) this.lastGoodProbe = performance.now();
        const culprit = during ?? this.current;
        if (culprit && this.alive) {
          if (status !== 200) this.report(culprit, 'gateway-healthy', `the healthy API answered ${status || error} while this module ran`);
          else if (ms > this.bound) {
            this.report(culprit, 'gateway-healthy', `the healthy API took ${ms.toFixed(0)} ms to answer while this module ran (bound ${this.bound.toFixed(0)} ms: ${HEALTHY_LATENCY_MS} + the control phase's ${this.controlWorstMs.toFixed(0)})`);
          }
        }
        await new Promise((r) => setTimeout(r, PROBE_EVERY_MS));
      }
    })();
  }

  async stop(): Promise<void> {
    this.probing = false;
    await this.probeLoop;
    await this.gateway.stop('SIGKILL');
  }
}

export async function runGatewayCheck(o: GatewayCheckOptions): Promise<GatewayCheckResult> {
  const started = Date.now();
  const breaks: ReportedBreak[] = [];
  const cases = o.cases;
  const dir = join(o.outDir, 'gateway');
  mkdirSync(dir, { recursive: true });
  for (const c of cases) writeFileSync(join(dir, `m${c.index}.wasm`), await caseBytes(c));
  writeFileSync(join(dir, 'control.wasm'), await controlModule());
  // The effects' target: a server in this process that answers at once (the modules are granted 127.0.0.1 only).
  const effects: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end('{"ok":true}'));
  });
  await new Promise<void>((r) => effects.listen(0, '127.0.0.1', r));
  const effectsUrl = `http://127.0.0.1:${(effects.address() as AddressInfo).port}/fx`;
  const config = join(dir, 'gateway.yaml');
  writeFileSync(config, yamlFor(cases, effectsUrl));

  const report = (c: FuzzCase, check: string, detail: string) => {
    const sourceFile = join(o.outDir, `case-${c.index}.${c.lang}`);
    writeFileSync(sourceFile, c.source);
    const b: ReportedBreak = { check, detail, index: c.index, family: c.family, variant: c.variant, lang: c.lang, caseDetail: c.detail, sourceFile, reproduce: `${reproduceCommand(o.seed, c.index, o.families)} (in-process), or start a gateway with ${config}` };
    breaks.push(b);
    o.progress?.(`BROKEN (gateway) seed=${o.seed} case=${c.index} family=${c.family}: ${check}: ${detail}\n  source: ${sourceFile}\n  gateway configuration: ${config}`);
  };

  /** Starts a gateway and measures its control phase: the same requests to a module that does nothing. */
  const startSession = async (): Promise<Session> => {
    o.progress?.(`# gateway: starting a gateway process with ${cases.length} fuzzed operations (${config})`);
    let gateway: GatewayProcess;
    try {
      gateway = await startGatewayProcess({ config });
    } catch (err) {
      throw new Error(`the gateway did not start with the fuzzed configuration: ${(err as Error).message}`);
    }
    const session = new Session(gateway, report);
    session.startProbing();
    for (let k = 0; k < CONTROL_REQUESTS && session.alive; k++) {
      const res = await request(`${gateway.url}/control/x?q=1`, { method: 'POST', body: '{"a":1}' });
      await res.body.text();
      await new Promise((r) => setTimeout(r, PROBE_EVERY_MS));
    }
    session.control = false;
    o.progress?.(`# gateway: the healthy API's slowest answer in the control phase: ${session.controlWorstMs.toFixed(0)} ms`);
    return session;
  };

  let requests = 0;
  let probes = 0;
  let worstProbeMs = 0;
  let controlWorstMs = 0;
  let restarts = 0;
  let session: Session | null = null;
  try {
    for (const c of cases) {
      if (session === null || !session.alive) {
        if (restarts++ > MAX_GATEWAY_RESTARTS) {
          o.progress?.(`# gateway: it died ${MAX_GATEWAY_RESTARTS} times; the remaining modules are not run`);
          break;
        }
        session = await startSession();
      }
      const s = session;
      s.current = c;
      const limits = limitsOf(c.limits);
      const log0 = s.logBytes;
      let sent = 0;
      for (let k = 0; k < REQUESTS_PER_MODULE && s.alive; k++) {
        const t0 = performance.now();
        const path = `/${c.phase === 'on-error' ? 'fuzzed-down' : 'fuzzed'}/m${c.index}?q=1`;
        try {
          const res = await request(`${s.gateway.url}${path}`, { method: 'POST', body: '{"a":1}', headersTimeout: FUZZED_ANSWER_MS * 2, bodyTimeout: FUZZED_ANSWER_MS * 2 });
          await res.body.text();
        } catch (err) {
          if (s.alive) report(c, 'gateway-answer', `the fuzzed request got no answer: ${(err as Error).message}`);
        }
        requests++;
        sent++;
        const ms = performance.now() - t0;
        if (ms > 1000) o.progress?.(`# gateway: case ${c.index} (${c.family}/${c.variant}) took ${ms.toFixed(0)} ms`);
        if (ms > FUZZED_ANSWER_MS) report(c, 'gateway-answer', `the fuzzed request took ${ms.toFixed(0)} ms (bound ${FUZZED_ANSWER_MS} ms)`);
      }
      // The module is blamed for what follows its requests until the gateway answers the healthy API well again and
      // its log has stopped growing: a module whose damage outlasts its requests (a log still being written, a heap
      // being collected) is not let off, and the next module is not blamed for it.
      const settleStarted = performance.now();
      const quiet = { bytes: s.logBytes, at: performance.now() };
      while (s.alive && performance.now() - settleStarted < SETTLE_MS) {
        await new Promise((r) => setTimeout(r, PROBE_EVERY_MS));
        if (s.logBytes !== quiet.bytes) Object.assign(quiet, { bytes: s.logBytes, at: performance.now() });
        if (s.lastGoodProbe >= settleStarted && performance.now() - quiet.at >= LOG_QUIET_MS) break;
      }
      if (s.alive && (s.lastGoodProbe < settleStarted || performance.now() - quiet.at < LOG_QUIET_MS)) {
        report(c, 'gateway-recovery', `${SETTLE_MS} ms after this module's requests, the gateway still ${s.lastGoodProbe < settleStarted ? 'did not answer the healthy API within its bound' : 'was writing its log'}`);
      }
      const logBound = sent * (limits.outputBytes + DEFAULT_BOUNDS.logMarginBytes + GATEWAY_LOG_SLACK);
      const bytes = s.logBytes - log0;
      if (bytes > logBound) report(c, 'gateway-log', `its ${sent} requests wrote ${bytes} bytes to the gateway's log (bound ${logBound}: ${sent} × (output cap + ${DEFAULT_BOUNDS.logMarginBytes + GATEWAY_LOG_SLACK}))`);
      if (!s.alive) {
        const code = await s.gateway.exited;
        const why = s.stderrTail.trim().split('\n').slice(-4).join(' | ');
        report(c, 'gateway-process', `the gateway process exited (code ${code}) during or after this module's requests${why ? `: ${why}` : ''}`);
      }
      s.current = null;
      if (!s.alive || c === cases[cases.length - 1]) {
        probes += s.probes;
        worstProbeMs = Math.max(worstProbeMs, s.worstProbeMs);
        controlWorstMs = Math.max(controlWorstMs, s.controlWorstMs);
      }
    }
  } finally {
    await session?.stop();
    effects.close();
  }
  const result = { breaks, modules: cases.length, requests, probes, worstProbeMs, controlWorstMs, durationMs: Date.now() - started };
  o.progress?.(
    `# gateway: ${result.modules} modules, ${requests} fuzzed requests, ${probes} probes of the healthy API (slowest ${worstProbeMs.toFixed(0)} ms), ${breaks.length} broken bounds, ${restarts} gateway process(es), ${(result.durationMs / 1000).toFixed(1)} s`,
  );
  return result;
}
