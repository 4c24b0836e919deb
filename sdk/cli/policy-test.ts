// `gatehouse-policy test`: runs a policy's cases (policy.test.json) through the real policy host, offline.
// The module is built from source, loaded, metered and sandboxed exactly as a gateway would; only the request is
// synthetic. Counters are real (in memory); HTTP effects answer from the case's canned responses, never the network,
// after the same grant check as in a gateway (a URL outside `grants.http.allowedHosts` fails the call).

import { Buffer } from 'node:buffer';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { buildPolicy } from '../build/index.ts';
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
  PHASES,
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
  type PolicyModule,
} from '../../runtime/policy-host/index.ts';

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

export interface TestCase {
  name: string;
  phase?: Phase;
  config?: unknown;
  grants?: Grants;
  limits?: Partial<Limits>;
  request?: {
    method?: string;
    path?: string;
    query?: string;
    headers?: Record<string, string | string[]>;
    body?: string;
    /** The body as base64, for bytes that are not text (not UTF-8, say); instead of `body`. */
    bodyBase64?: string;
    clientAddress?: string;
  };
  response?: { status?: number; headers?: Record<string, string | string[]>; body?: string; bodyBase64?: string };
  variables?: Record<string, string>;
  routeParams?: Record<string, string>;
  /** The API's path prefix (CONTEXT `api-path-prefix`), e.g. `/shop`; default empty. */
  apiPathPrefix?: string;
  error?: { source?: 'policy' | 'backend' | 'gateway'; reason?: string; message?: string; policy?: string };
  http?: CannedHttp[];
  /** Run the case this many times in a row with the same counters (for limits); expectations apply to the last. */
  repeat?: number;
  expect: {
    outcome?: 'continue' | 'respond' | 'fail' | 'invalid-config';
    status?: number;
    error?: string;
    request?: { method?: string; path?: string; query?: string; headers?: Record<string, ExpectedHeader> };
    response?: { headers?: Record<string, ExpectedHeader>; body?: string; bodyContains?: string };
    variables?: Record<string, string | null>;
    logContains?: string;
  };
}

/** A header's exact value, `null` for absent, or `{"matches": "regex"}` for values that vary (times, ids). */
export type ExpectedHeader = string | null | { matches: string };

export interface CaseResult {
  name: string;
  ok: boolean;
  problems: string[];
  ms: number;
}

export interface TestRun {
  policy: string;
  passed: number;
  failed: number;
  results: CaseResult[];
}

/** Canned HTTP answers for offline runs; counters are the real in-memory store. */
class OfflineEffects implements EffectRunner {
  canned: CannedHttp[] = [];
  private readonly real = new CounterEffects({ counters: new MemoryCounterStore() });

  performNow(kind: number, request: string, context: EffectContext): string | undefined {
    return kind === EffectKind.HTTP ? undefined : this.real.performNow(kind, request, context);
  }

  async perform(kind: number, request: string, context: EffectContext): Promise<string> {
    if (kind !== EffectKind.HTTP) return this.real.perform(kind, request, context);
    const req = JSON.parse(request) as { method?: string; url?: string };
    const url = URL.canParse(String(req.url)) ? new URL(String(req.url)) : null;
    if (url) checkEgress(url, 'http', context.grants.http?.allowedHosts, context.policy);
    const method = (req.method ?? 'GET').toUpperCase();
    const hit = this.canned.find((c) => c.url === req.url && (c.method ?? 'GET').toUpperCase() === method);
    if (!hit) return JSON.stringify({ error: `no canned response for ${method} ${req.url} in this test case` });
    if (hit.error) return JSON.stringify({ error: hit.error });
    return JSON.stringify({ status: hit.status ?? 200, headers: hit.headers ?? {}, body: hit.body ?? '' });
  }
}

export async function runPolicyTests(dir: string, options: { casesFile?: string } = {}): Promise<TestRun> {
  const folder = resolve(dir);
  const casesPath = options.casesFile ?? join(folder, 'policy.test.json');
  let raw: string;
  try {
    raw = await readFile(casesPath, 'utf8');
  } catch {
    throw new Error(`${casesPath}: no test file (expected {"cases": [...]})`);
  }
  let parsed: { cases?: TestCase[] };
  try {
    parsed = JSON.parse(raw) as { cases?: TestCase[] };
  } catch (err) {
    throw new Error(`${casesPath}: not valid JSON: ${(err as Error).message}`);
  }
  if (!Array.isArray(parsed.cases) || parsed.cases.length === 0) {
    throw new Error(`${casesPath}: "cases" must be a non-empty list`);
  }
  const build = await buildPolicy({ source: join(folder, 'policy.ts') });
  const records: LogRecord[] = [];
  const effects = new OfflineEffects();
  const host = new PolicyHost({ effects, logger: new Logger(memorySink(records), 'trace'), clocks: PROCESS_CLOCKS });
  const module = await host.load(build.wasm);
  const results: CaseResult[] = [];
  for (const [index, testCase] of parsed.cases.entries()) {
    const started = performance.now();
    const name = testCase.name ?? `case ${index + 1}`;
    let problems: string[];
    try {
      records.length = 0;
      effects.canned = testCase.http ?? [];
      problems = await runCase(host, module, testCase, index, records);
    } catch (err) {
      problems = [`the case could not run: ${(err as Error).message}`];
    }
    results.push({ name, ok: problems.length === 0, problems, ms: performance.now() - started });
  }
  const passed = results.filter((r) => r.ok).length;
  return { policy: module.descriptor.name, passed, failed: results.length - passed, results };
}

async function runCase(
  host: PolicyHost,
  module: PolicyModule,
  c: TestCase,
  index: number,
  records: LogRecord[],
): Promise<string[]> {
  const phase = c.phase ?? 'inbound';
  if (!PHASES.includes(phase)) return [`phase must be one of ${PHASES.join(', ')}`];
  const expect = c.expect ?? {};
  let binding;
  try {
    binding = host.bind({ id: `test/${index}`, phase, module, config: c.config ?? {}, grants: c.grants, limits: c.limits });
  } catch (err) {
    if (err instanceof PolicyConfigError) {
      if (expect.outcome !== 'invalid-config') return [`configuration refused: ${err.message}`];
      return expect.error && !err.message.includes(expect.error)
        ? [`configuration error ${JSON.stringify(err.message)} does not contain ${JSON.stringify(expect.error)}`]
        : [];
    }
    throw err;
  }
  if (expect.outcome === 'invalid-config') return ['expected the configuration to be refused, but it was accepted'];
  let exchange!: Exchange;
  let failure: PolicyFailure | null = null;
  for (let i = 0; i < Math.max(1, c.repeat ?? 1); i++) {
    exchange = makeExchange(c, phase);
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
  if (expect.status !== undefined && exchange.response.status !== expect.status) {
    problems.push(`status: expected ${expect.status}, got ${exchange.response.status}`);
  }
  const req = expect.request ?? {};
  for (const key of ['method', 'path', 'query'] as const) {
    if (req[key] !== undefined && exchange.request[key] !== req[key]) {
      problems.push(`request.${key}: expected ${JSON.stringify(req[key])}, got ${JSON.stringify(exchange.request[key])}`);
    }
  }
  compareHeaders('request.headers', req.headers, exchange.request.headers, problems);
  const res = expect.response ?? {};
  compareHeaders('response.headers', res.headers, exchange.response.headers, problems);
  const body = new TextDecoder().decode(exchange.response.body ?? new Uint8Array(0));
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
  if (expect.logContains !== undefined && !records.some((r) => r.msg.includes(expect.logContains!))) {
    problems.push(`no log line contains ${JSON.stringify(expect.logContains)}`);
  }
  return problems;
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
export function makeExchange(c: TestCase, phase: Phase): Exchange {
  const r = c.request ?? {};
  const exchange = new Exchange({
    requestId: 'test-request',
    api: 'test-api',
    apiPathPrefix: c.apiPathPrefix ?? '',
    operation: 'test-operation',
    request: {
      method: (r.method ?? 'GET').toUpperCase(),
      path: r.path ?? '/',
      query: r.query ?? '',
      headers: headerMap(r.headers),
      body: bodyBytes(r, 'request'),
      clientAddress: r.clientAddress ?? '127.0.0.1',
    },
    backendUrl: 'http://backend.test',
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
