// `gatehouse-policy test`: runs a policy's cases (policy.test.json) through the real policy host, offline.
// The module is built from source, loaded, metered and sandboxed exactly as a gateway would; only the request is
// synthetic. Counters are real (in memory); HTTP effects answer from the case's canned responses, never the network,
// after the same grant check as in a gateway (a URL outside `grants.http.allowedHosts` fails the call).
//
// A test file is checked against its format (test-case-format.ts) before anything runs: a key the runner does not
// know fails its case, naming the key, where it is and the keys allowed there, so that a misspelt expectation never
// passes by asserting nothing.

import { Buffer } from 'node:buffer';
import { readFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { buildPolicy, defaultCacheDir } from '../build/index.ts';
// The policy host through its public surface only, as any embedding of it.
import {
  checkEgress,
  CounterEffects,
  EffectKind,
  Exchange,
  headerMap,
  Logger,
  MemoryCounterStore,
  memorySink,
  PolicyConfigError,
  PolicyFailure,
  PolicyHost,
  type EffectContext,
  type EffectRunner,
  type Grants,
  type HeaderMap,
  type Limits,
  type LogRecord,
  type Phase,
  type PolicyBinding,
  type PolicyModule,
} from '../../runtime/policy-host/index.ts';
import { MeteredModuleStore } from './metered-store.ts';
import { checkFormat, TEST_FILE, CASE } from './test-case-format.ts';

/** The CPU budgets of offline runs read this process's clocks, as a gateway's do (the command runs on Node). */
const PROCESS_CLOCKS = {
  wallMs: () => performance.now(),
  cpuUs: () => {
    const { user, system } = process.cpuUsage();
    return user + system;
  },
};

export interface CannedHttp {
  method?: string;
  url: string;
  status?: number;
  headers?: Record<string, string>;
  body?: string;
  error?: string;
}

/** A header's exact value, `null` for absent, or `{"matches": "regex"}` for values that vary (times, ids). */
export type ExpectedHeader = string | null | { matches: string };

type Message = { headers?: Record<string, string | string[]>; body?: string; bodyBase64?: string };

/** What one call is made of; a case gives it, and each of its steps overrides it. test-case-format.ts has the docs. */
export interface CallSpec {
  phase?: Phase;
  request?: Message & { method?: string; path?: string; query?: string; clientAddress?: string; backendUrl?: string };
  response?: Message & { status?: number };
  variables?: Record<string, string>;
  routeParams?: Record<string, string>;
  api?: string;
  apiPathPrefix?: string;
  operation?: string;
  requestId?: string;
  error?: { source?: 'policy' | 'backend' | 'gateway'; reason?: string; message?: string; policy?: string };
  http?: CannedHttp[];
  repeat?: number;
  expect?: Expectations;
}

export interface Expectations {
  outcome?: 'continue' | 'respond' | 'fail' | 'invalid-config';
  status?: number;
  error?: string;
  request?: { method?: string; path?: string; query?: string; headers?: Record<string, ExpectedHeader>; body?: string; backendUrl?: string };
  response?: { status?: number; headers?: Record<string, ExpectedHeader>; body?: string; bodyContains?: string };
  variables?: Record<string, string | null>;
  logContains?: string;
  logs?: { level?: string; contains?: string; matches?: string; fields?: unknown }[];
  metrics?: { name: string; value?: number; dimensions?: Record<string, string> }[];
  effects?: { kind: 'counter' | 'http' | 'lease' | 'meter'; request?: unknown; result?: unknown }[];
}

export interface TestCase extends CallSpec {
  name: string;
  config?: unknown;
  namedValues?: Record<string, string | { value: string; secret?: boolean }>;
  grants?: Grants;
  limits?: Partial<Limits>;
  steps?: (CallSpec & { name?: string })[];
}

export interface CaseResult {
  name: string;
  ok: boolean;
  problems: string[];
  ms: number;
}

export interface TestRun {
  policy: string;
  /** The test file the cases came from. */
  file: string;
  passed: number;
  failed: number;
  /** Cases left out by `grep`. */
  skipped: number;
  results: CaseResult[];
}

export interface TestOptions {
  /** The cases file; default `<dir>/policy.test.json`. */
  casesFile?: string;
  /** Only the cases whose name matches. */
  grep?: RegExp;
  /** The build cache (default: the repository's); metered modules are kept in its `metered/` folder. */
  cacheDir?: string;
}

const EFFECT_NAMES: Record<number, string> = {
  [EffectKind.COUNTER]: 'counter',
  [EffectKind.HTTP]: 'http',
  [EffectKind.LEASE]: 'lease',
  [EffectKind.METER]: 'meter',
};

interface EffectRecord {
  kind: string;
  request: unknown;
  result: unknown;
}

function parsedOrText(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * Canned HTTP answers for offline runs; counters are the real in-memory store. Every effect performed is recorded.
 *
 * Each case counts on a store of its own whose clock starts at 0 when the case first counts. The store's windows are
 * multiples of their period, as a gateway's are; on the wall clock a case's calls fell into two windows whenever they
 * straddled the start of one (a 60 s window: the start of a minute), and a case expecting a 429 on its third call
 * passed or failed by the time of day. From 0, every window starts at the case's first count, and `resetSeconds`
 * reads the whole period then.
 */
class OfflineEffects implements EffectRunner {
  canned: CannedHttp[] = [];
  readonly performed: EffectRecord[] = [];
  private real = OfflineEffects.freshCounters();

  /** Counters whose clock reads 0 at the case's first count (binding and instantiating take none of its window). */
  private static freshCounters(): CounterEffects {
    let origin: number | null = null;
    const clock = () => (origin === null ? ((origin = performance.now()), 0) : performance.now() - origin);
    return new CounterEffects({ counters: new MemoryCounterStore(clock) });
  }

  /** A case starts: counters, leases and their windows start again. */
  startCase(): void {
    this.real = OfflineEffects.freshCounters();
  }

  private record(kind: number, request: string, result: string): string {
    this.performed.push({ kind: EFFECT_NAMES[kind] ?? String(kind), request: parsedOrText(request), result: parsedOrText(result) });
    return result;
  }

  performNow(kind: number, request: string, context: EffectContext): string | undefined {
    if (kind === EffectKind.HTTP) return undefined;
    const result = this.real.performNow(kind, request, context);
    return result === undefined ? undefined : this.record(kind, request, result);
  }

  async perform(kind: number, request: string, context: EffectContext): Promise<string> {
    if (kind !== EffectKind.HTTP) return this.record(kind, request, await this.real.perform(kind, request, context));
    const req = JSON.parse(request) as { method?: string; url?: string };
    const url = URL.canParse(String(req.url)) ? new URL(String(req.url)) : null;
    if (url) checkEgress(url, 'http', context.grants.http?.allowedHosts, context.policy);
    const method = (req.method ?? 'GET').toUpperCase();
    const hit = this.canned.find((c) => c.url === req.url && (c.method ?? 'GET').toUpperCase() === method);
    const result = !hit
      ? { error: `no canned response for ${method} ${req.url} in this test case` }
      : hit.error
        ? { error: hit.error }
        : { status: hit.status ?? 200, headers: hit.headers ?? {}, body: hit.body ?? '' };
    return this.record(kind, request, JSON.stringify(result));
  }
}

/** The case's name, or its place when it has none. */
const caseName = (c: unknown, index: number): string =>
  c !== null && typeof c === 'object' && typeof (c as { name?: unknown }).name === 'string' ? (c as { name: string }).name : `case ${index + 1}`;

/** Reads and checks a test file: its cases, each with the problems of its format (a case with problems is not run). */
async function readCases(casesPath: string): Promise<{ testCase: TestCase; problems: string[] }[]> {
  let raw: string;
  try {
    raw = await readFile(casesPath, 'utf8');
  } catch {
    throw new Error(`${shown(casesPath)}: no test file (expected {"cases": [...]})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw new Error(`${shown(casesPath)}: not valid JSON: ${(err as Error).message}`);
  }
  const cases = (parsed as { cases?: unknown } | null)?.cases;
  // The file's own keys; each case is checked on its own below, so that one bad case does not hide the others' results.
  const fileProblems = checkFormat(TEST_FILE, { ...(parsed as object), cases: [] }, '');
  if (fileProblems.length > 0 || !Array.isArray(cases) || cases.length === 0) {
    const detail = fileProblems.map((p) => `${p.path || '(top)'}: ${p.message}`).join('; ');
    throw new Error(`${shown(casesPath)}: ${detail || '"cases" must be a non-empty list'}`);
  }
  return cases.map((c: unknown, index) => {
    const where = `${shown(casesPath)}: case ${JSON.stringify(caseName(c, index))}`;
    const problems = checkFormat(CASE, c, `cases[${index}]`).map((p) => `${where}: ${p.path}: ${p.message}`);
    if (problems.length === 0) problems.push(...callRules(c as TestCase).map((m) => `${where}: cases[${index}]${m}`));
    return { testCase: c as TestCase, problems };
  });
}

/** Rules the format's shapes do not say: which keys go together. */
function callRules(c: TestCase): string[] {
  const problems: string[] = [];
  if (c.steps !== undefined) {
    if (c.steps.length === 0) problems.push('.steps: must list at least one step');
    if (c.expect !== undefined) problems.push('.expect: a case with steps has its expectations in each step, not here');
    c.steps.forEach((s, i) => {
      if (s.expect?.outcome === 'invalid-config') problems.push(`.steps[${i}].expect.outcome: "invalid-config" is a case's outcome (the binding is made once, before the steps)`);
    });
  } else if (c.expect === undefined) {
    problems.push(': "expect" is required (use {} to expect only that the call succeeds), or give "steps"');
  }
  for (const [i, call] of [c, ...(c.steps ?? [])].entries()) {
    const at = i === 0 ? '' : `.steps[${i - 1}]`;
    if (call.repeat !== undefined && call.repeat < 1) problems.push(`${at}.repeat: must be 1 or more`);
  }
  return problems;
}

function shown(file: string): string {
  const rel = relative(process.cwd(), file);
  return rel.startsWith('..') ? file : rel;
}

export async function runPolicyTests(dir: string, options: TestOptions = {}): Promise<TestRun> {
  const folder = resolve(dir);
  const casesPath = options.casesFile ?? join(folder, 'policy.test.json');
  const all = await readCases(casesPath);
  const selected = all.filter(({ testCase }, i) => !options.grep || options.grep.test(caseName(testCase, i)));
  const run: TestRun = { policy: '', file: casesPath, passed: 0, failed: 0, skipped: all.length - selected.length, results: [] };
  if (selected.length === 0) return run;
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const build = await buildPolicy({ source: join(folder, 'policy.ts'), cacheDir });
  const records: LogRecord[] = [];
  const effects = new OfflineEffects();
  const logger = new Logger(memorySink(records), 'trace');
  const host = new PolicyHost({ effects, logger, clocks: PROCESS_CLOCKS, instrumented: new MeteredModuleStore(join(cacheDir, 'metered')) });
  const metrics: Emission[] = [];
  host.customMetrics.upstream = { metric: (e) => metrics.push({ name: e.name, value: e.value, dimensions: Object.fromEntries(e.dimensions) }) };
  const module = await host.load(build.wasm);
  run.policy = module.descriptor.name;
  for (const { testCase, problems: formatProblems } of selected) {
    const index = all.findIndex((c) => c.testCase === testCase);
    const started = performance.now();
    let problems = formatProblems;
    if (problems.length === 0) {
      try {
        effects.startCase();
        problems = await runCase({ host, module, effects, records, metrics, logger }, testCase, index);
      } catch (err) {
        problems = [`the case could not run: ${(err as Error).message}`];
      }
    }
    run.results.push({ name: caseName(testCase, index), ok: problems.length === 0, problems, ms: performance.now() - started });
  }
  run.passed = run.results.filter((r) => r.ok).length;
  run.failed = run.results.length - run.passed;
  return run;
}

interface Emission {
  name: string;
  value: number;
  dimensions: Record<string, string>;
}

interface Harness {
  host: PolicyHost;
  module: PolicyModule;
  effects: OfflineEffects;
  records: LogRecord[];
  metrics: Emission[];
  logger: Logger;
}

const NAMED_VALUE_REFERENCE = /\{\{([^{}]*)\}\}/g;

/** `config` with each `{{name}}` in its strings replaced by the named value (a replaced value is not scanned again). */
function withNamedValues(config: unknown, values: Map<string, string>, at: string, problems: string[]): unknown {
  if (typeof config === 'string') {
    return config.replace(NAMED_VALUE_REFERENCE, (whole, name: string) => {
      const value = values.get(name);
      if (value === undefined) problems.push(`${at}: ${whole} names no value of "namedValues"`);
      return value ?? whole;
    });
  }
  if (Array.isArray(config)) return config.map((v, i) => withNamedValues(v, values, `${at}[${i}]`, problems));
  if (config !== null && typeof config === 'object') {
    return Object.fromEntries(Object.entries(config).map(([k, v]) => [k, withNamedValues(v, values, `${at}.${k}`, problems)]));
  }
  return config;
}

/** One call of a case: the case's call keys with a step's over them (`request` and `response` merged key by key). */
function callOf(c: TestCase, step: (CallSpec & { name?: string }) | null): CallSpec {
  if (!step) return c;
  const merged: CallSpec = { ...c, ...step };
  for (const key of ['request', 'response'] as const) {
    if (c[key] !== undefined || step[key] !== undefined) (merged as Record<string, unknown>)[key] = { ...c[key], ...step[key] };
  }
  return merged;
}

async function runCase(h: Harness, c: TestCase, index: number): Promise<string[]> {
  const configProblems: string[] = [];
  const named = new Map<string, string>();
  const secrets: string[] = [];
  for (const [name, v] of Object.entries(c.namedValues ?? {})) {
    const value = typeof v === 'string' ? v : v.value;
    named.set(name, value);
    if (typeof v !== 'string' && v.secret) secrets.push(value);
  }
  const config = withNamedValues(c.config ?? {}, named, 'config', configProblems);
  if (configProblems.length > 0) return configProblems;
  h.logger.maskSecrets(secrets);
  const bindings = new Map<Phase, PolicyBinding>();
  const bind = (phase: Phase): PolicyBinding => {
    let binding = bindings.get(phase);
    if (!binding) {
      // One id for every phase: counters are namespaced by it, so the case's calls share them whatever their phase.
      binding = h.host.bind({ id: `test/${index}`, phase, module: h.module, config, grants: c.grants, limits: c.limits });
      bindings.set(phase, binding);
    }
    return binding;
  };
  const expect = c.expect ?? {};
  try {
    bind(c.phase ?? c.steps?.[0]?.phase ?? 'inbound');
  } catch (err) {
    if (!(err instanceof PolicyConfigError)) throw err;
    if (expect.outcome !== 'invalid-config') return [`configuration refused: ${err.message}`];
    return expect.error !== undefined && !err.message.includes(expect.error)
      ? [`configuration error ${JSON.stringify(err.message)} does not contain ${JSON.stringify(expect.error)}`]
      : [];
  }
  if (expect.outcome === 'invalid-config') return ['expected the configuration to be refused, but it was accepted'];
  const problems: string[] = [];
  const steps = c.steps ?? [null];
  for (const [i, step] of steps.entries()) {
    const call = callOf(c, step);
    const label = step ? `steps[${i}]${step.name ? ` (${step.name})` : ''}: ` : '';
    const stepProblems = await runCall(h, bind(call.phase ?? 'inbound'), call);
    problems.push(...stepProblems.map((p) => label + p));
  }
  h.logger.maskSecrets([]);
  return problems;
}

/** Makes one call (`repeat` times) and checks its expectations against the last. */
async function runCall(h: Harness, binding: PolicyBinding, call: CallSpec): Promise<string[]> {
  const phase = call.phase ?? 'inbound';
  const expect = call.expect ?? {};
  h.effects.canned = call.http ?? [];
  let exchange!: Exchange;
  let failure: PolicyFailure | null = null;
  for (let i = 0; i < (call.repeat ?? 1); i++) {
    h.records.length = 0;
    h.metrics.length = 0;
    h.effects.performed.length = 0;
    exchange = makeExchange(call, phase);
    failure = null;
    try {
      await binding.run(phase, exchange);
    } catch (err) {
      if (!(err instanceof PolicyFailure)) throw err;
      failure = err;
    }
  }
  const problems: string[] = [];
  const outcome = failure ? 'fail' : exchange.responded ? 'respond' : 'continue';
  if (expect.outcome && expect.outcome !== outcome) {
    problems.push(`outcome: expected ${expect.outcome}, got ${outcome}${failure ? ` (${failure.message})` : ''}`);
  } else if (!expect.outcome && failure) {
    problems.push(`the policy failed: ${failure.message}`);
  }
  if (expect.error !== undefined && !(failure?.message ?? '').includes(expect.error)) {
    problems.push(`error: expected a failure containing ${JSON.stringify(expect.error)}, got ${failure ? JSON.stringify(failure.message) : 'no failure'}`);
  }
  const res = expect.response ?? {};
  for (const [label, want] of [['status', expect.status], ['response.status', res.status]] as const) {
    if (want !== undefined && exchange.response.status !== want) problems.push(`${label}: expected ${want}, got ${exchange.response.status}`);
  }
  const req = expect.request ?? {};
  const requestNow = {
    method: exchange.request.method,
    path: exchange.request.path,
    query: exchange.request.query,
    body: textOf(exchange.request.body),
    backendUrl: exchange.backendUrl,
  };
  for (const key of ['method', 'path', 'query', 'body', 'backendUrl'] as const) {
    if (req[key] !== undefined && requestNow[key] !== req[key]) {
      problems.push(`request.${key}: expected ${JSON.stringify(req[key])}, got ${JSON.stringify(requestNow[key])}`);
    }
  }
  compareHeaders('request.headers', req.headers, exchange.request.headers, problems);
  compareHeaders('response.headers', res.headers, exchange.response.headers, problems);
  const body = textOf(exchange.response.body);
  if (res.body !== undefined && body !== res.body) {
    problems.push(`response.body: expected ${JSON.stringify(res.body)}, got ${JSON.stringify(body)}`);
  }
  if (res.bodyContains !== undefined && !body.includes(res.bodyContains)) {
    problems.push(`response.body: ${JSON.stringify(body)} does not contain ${JSON.stringify(res.bodyContains)}`);
  }
  for (const [name, want] of Object.entries(expect.variables ?? {})) {
    const got = exchange.variables.get(name) ?? null;
    if (got !== want) problems.push(`variables.${name}: expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
  }
  if (expect.logContains !== undefined && !h.records.some((r) => r.msg.includes(expect.logContains!))) {
    problems.push(`no log line contains ${JSON.stringify(expect.logContains)}${loggedSoFar(h.records)}`);
  }
  compareLogs(expect.logs, h.records, problems);
  compareList('metrics', expect.metrics, h.metrics, (want, got) => {
    if (want.name !== got.name) return `name ${JSON.stringify(got.name)}, not ${JSON.stringify(want.name)}`;
    if (want.value !== undefined && want.value !== got.value) return `value ${got.value}, not ${want.value}`;
    if (want.dimensions !== undefined && JSON.stringify(sorted(want.dimensions)) !== JSON.stringify(sorted(got.dimensions))) {
      return `dimensions ${JSON.stringify(got.dimensions)}, not ${JSON.stringify(want.dimensions)}`;
    }
    return null;
  }, problems);
  compareList('effects', expect.effects, h.effects.performed, (want, got) => {
    if (want.kind !== got.kind) return `a ${got.kind} effect, not ${want.kind}`;
    return (want.request === undefined ? null : subsetMismatch(want.request, got.request, 'request')) ??
      (want.result === undefined ? null : subsetMismatch(want.result, got.result, 'result'));
  }, problems);
  if (binding.module.descriptor.deterministic && failure === null) problems.push(...(await replayProblems(binding, call, phase)));
  return problems;
}

/**
 * For a policy that declares itself deterministic: the call made again is answered with the first call's changes when
 * the host kept it (runtime/policy-host/replay.ts), as a gateway would answer it. The same call then runs the module
 * again; what it changes must be what the replay changed. When it is not, the declaration is wrong (a value kept between
 * calls, say), and a gateway would answer this request with what the policy did the first time.
 */
async function replayProblems(binding: PolicyBinding, call: CallSpec, phase: Phase): Promise<string[]> {
  const replays = binding.stats.replays;
  // The case's call may have been the instance's first, which is not recorded: then the first of these is, and the
  // second is replayed.
  let replayed!: Exchange;
  for (let attempt = 0; attempt < 2 && binding.stats.replays === replays; attempt++) {
    replayed = makeExchange(call, phase);
    try {
      await binding.run(phase, replayed);
    } catch {
      return [];
    }
  }
  if (binding.stats.replays === replays) return [];
  const called = makeExchange(call, phase);
  const declared = '"deterministic": true in policy.json, but';
  try {
    await binding.run(phase, called, false);
  } catch (err) {
    return [`${declared} the same call failed when made again (${(err as Error).message}), where a gateway would replay the first call's changes`];
  }
  const first = changesOf(replayed);
  const again = changesOf(called);
  for (const [part, value] of Object.entries(first)) {
    if (again[part] !== value) {
      return [
        `${declared} the same call made again changed ${part} to ${again[part]}, where the first call changed it to ${value} ` +
          "(what a gateway would answer it with): does the policy keep a value between calls, or read one the host does not give it?",
      ];
    }
  }
  return [];
}

/** What a call left in an exchange, part by part, as text. */
function changesOf(exchange: Exchange): Record<string, string> {
  const { request, response } = exchange;
  const entries = (map: Map<string, unknown>) => JSON.stringify([...map].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return {
    outcome: exchange.responded ? 'respond' : 'continue',
    'response.status': String(response.status),
    'request.method': request.method,
    'request.path': request.path,
    'request.query': JSON.stringify(request.query),
    'request.headers': entries(request.headers),
    'request.body': JSON.stringify(textOf(request.body)),
    'response.headers': entries(response.headers),
    'response.body': JSON.stringify(textOf(response.body)),
    backendUrl: exchange.backendUrl,
    variables: entries(exchange.variables),
  };
}

function textOf(body: Uint8Array | null): string {
  return new TextDecoder().decode(body ?? new Uint8Array(0));
}

function sorted(o: Record<string, string>): [string, string][] {
  return Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function loggedSoFar(records: LogRecord[]): string {
  if (records.length === 0) return ' (nothing was logged)';
  return ` (logged: ${records.slice(0, 5).map((r) => JSON.stringify(`${r.level}: ${r.msg}`)).join(', ')}${records.length > 5 ? ', ...' : ''})`;
}

/** Each expected line matches a record of its own, in order. */
function compareLogs(want: Expectations['logs'], records: LogRecord[], problems: string[]): void {
  if (want === undefined) return;
  let from = 0;
  for (const [i, line] of want.entries()) {
    const pattern = line.matches === undefined ? null : new RegExp(line.matches);
    const at = records.findIndex(
      (r, j) =>
        j >= from &&
        (line.level === undefined || r.level === line.level) &&
        (line.contains === undefined || r.msg.includes(line.contains)) &&
        (pattern === null || pattern.test(r.msg)) &&
        (line.fields === undefined || subsetMismatch(line.fields, r, 'fields') === null),
    );
    if (at < 0) {
      problems.push(`logs[${i}]: no line ${from > 0 ? 'after the one before ' : ''}matches ${JSON.stringify(line)}${loggedSoFar(records)}`);
      return;
    }
    from = at + 1;
  }
}

/** `got` is exactly as long as `want` and each item matches (`mismatch` says how one does not, or null). */
function compareList<W, G>(label: string, want: W[] | undefined, got: G[], mismatch: (w: W, g: G) => string | null, problems: string[]): void {
  if (want === undefined) return;
  for (let i = 0; i < Math.max(want.length, got.length); i++) {
    if (i >= want.length) problems.push(`${label}[${i}]: not expected, got ${JSON.stringify(got[i])}`);
    else if (i >= got.length) problems.push(`${label}[${i}]: expected ${JSON.stringify(want[i])}, got none (${got.length} in all)`);
    else {
      const why = mismatch(want[i]!, got[i]!);
      if (why !== null) problems.push(`${label}[${i}]: ${why} (got ${JSON.stringify(got[i])})`);
    }
  }
}

/** Null when every key of `want` is in `got` with the same value (objects compared the same way, recursively). */
function subsetMismatch(want: unknown, got: unknown, at: string): string | null {
  if (want !== null && typeof want === 'object' && !Array.isArray(want)) {
    if (got === null || typeof got !== 'object' || Array.isArray(got)) return `${at}: expected an object, got ${JSON.stringify(got)}`;
    for (const [k, v] of Object.entries(want)) {
      const why = subsetMismatch(v, (got as Record<string, unknown>)[k], `${at}.${k}`);
      if (why !== null) return why;
    }
    return null;
  }
  return JSON.stringify(want) === JSON.stringify(got) ? null : `${at}: expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`;
}

/** A case's request or response body: `body` as UTF-8, or the bytes of `bodyBase64`; null when neither is given. */
function bodyBytes(message: { body?: string; bodyBase64?: string }, where: 'request' | 'response'): Uint8Array | null {
  if (message.body !== undefined && message.bodyBase64 !== undefined) {
    throw new Error(`${where}: give "body" or "bodyBase64", not both`);
  }
  if (message.bodyBase64 !== undefined) {
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(message.bodyBase64) || message.bodyBase64.length % 4 !== 0) {
      throw new Error(`${where}.bodyBase64 is not base64`);
    }
    return new Uint8Array(Buffer.from(message.bodyBase64, 'base64'));
  }
  return message.body === undefined ? null : new TextEncoder().encode(message.body);
}

/**
 * The exchange a case describes (its request, response, variables, route parameters, and the error in on-error), as
 * the runner hands it to the policy. Exported for scripts that run the cases many times (bench-policy-budgets).
 */
export function makeExchange(c: CallSpec, phase: Phase): Exchange {
  const r = c.request ?? {};
  const exchange = new Exchange({
    requestId: c.requestId ?? 'test-request',
    api: c.api ?? 'test-api',
    apiPathPrefix: c.apiPathPrefix ?? '',
    operation: c.operation ?? 'test-operation',
    request: {
      method: (r.method ?? 'GET').toUpperCase(),
      path: r.path ?? '/',
      query: r.query ?? '',
      headers: headerMap(r.headers),
      body: bodyBytes(r, 'request'),
      clientAddress: r.clientAddress ?? '127.0.0.1',
    },
    backendUrl: r.backendUrl ?? 'http://backend.test',
    routeParams: new Map(Object.entries(c.routeParams ?? {})),
    variables: new Map(Object.entries(c.variables ?? {})),
  });
  exchange.phase = phase;
  if (phase === 'outbound' || phase === 'on-error' || c.response) {
    exchange.response = {
      status: c.response?.status ?? 200,
      headers: headerMap(c.response?.headers),
      body: bodyBytes(c.response ?? {}, 'response'),
    };
  }
  if (phase === 'on-error') {
    exchange.error = {
      source: c.error?.source ?? 'policy',
      reason: c.error?.reason ?? 'trap',
      message: c.error?.message ?? 'test failure',
      policy: c.error?.policy ?? '',
      status: exchange.response.status,
    };
  }
  return exchange;
}

function compareHeaders(
  label: string,
  want: Record<string, ExpectedHeader> | undefined,
  got: HeaderMap,
  problems: string[],
): void {
  for (const [name, value] of Object.entries(want ?? {})) {
    const actual = got.get(name.toLowerCase())?.join(', ') ?? null;
    const ok =
      value !== null && typeof value === 'object'
        ? actual !== null && new RegExp(value.matches).test(actual)
        : actual === value;
    if (!ok) problems.push(`${label}.${name}: expected ${JSON.stringify(value)}, got ${JSON.stringify(actual)}`);
  }
}
