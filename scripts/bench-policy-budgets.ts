// npm run bench:policy-budgets — what each built-in policy costs per call, in typical and in worst plausible
// conditions, so that the default CPU budget (DEFAULT_LIMITS.cpuMs) can be chosen from measurement.
//
//   npm run bench:policy-budgets [-- --calls 2000 --only cors,key-auth --no-typical --no-worst --headroom 4]
//
// Every built-in policy is found as the gateway finds it (RepositoryPolicySources over policies/), built with the SDK,
// loaded, metered and capped by a PolicyHost, and bound as runtime/config/policies.ts binds it: its configuration, the
// grants its policy.json `needs` earns a built-in (`counters`, a backend grant from its configuration), the gateway's
// effects with in-memory counters, and a logger at the gateway's default level (info) writing nowhere. A call is PolicyBinding.run, timed with
// performance.now() around it (wall time: the event loop is held that long), and with process.cpuUsage() (CPU time,
// which is what the budget is charged once a call has run for half of it).
//
// Typical: each case of each policy's policy.test.json (the `gatehouse-policy test` format; invalid-config cases are
// configurations the host refuses, and are not run), its exchange made by the runner's own makeExchange. The first
// call of FRESH_INSTANCES new instances is timed apart (`first`: the built-ins read and parse their configuration in
// it), then WARMUP calls, then `--calls` measured calls on the last instance, each on a fresh exchange that is ended
// after the call (so leases are given back) unless the case is about state that builds up over calls (`repeat`).
// Limits keep counting over the batch, so a rate-limit case mostly measures its 429 path: the outcomes column says
// what the calls did. CPU per call: process.cpuUsage() over the batch ÷ calls.
//
// Worst plausible: for each policy whose cost grows with its input, inputs at sizes the gateway lets through (16 KiB
// of request line and headers, 10 MiB request bodies, 16 MiB response bodies, 2 MiB configuration documents), bodies
// grown until a cap (16 MiB of memory, 1 MiB of output) stops the call. Bound with a CPU budget of 10 s (the most a
// binding may have) so that a call's whole cost is measured rather than cut at the budget, and with the circuit
// breaker off. Each runs for up to WORST_CALLS calls or WORST_MS of calls, whichever ends first, each call's CPU time
// read on its own. Each input says where it comes from (request, config, body) and whether the default should
// cover it (`common`); the summary turns the worst of those into the budget they imply (× HEADROOM), and lists what
// each candidate budget would refuse.
//
// Prints the tables and `name: value` summary lines on stdout, progress on stderr. No test asserts any of these
// times: they depend on the machine and its load (the load average is printed beside them).

import { Buffer } from 'node:buffer';
import { createHash, createHmac, generateKeyPairSync, sign } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import process from 'node:process';

import { grantsFromNeeds } from '../runtime/config/policy-sources.ts';
import { RepositoryPolicySources } from '../runtime/config/repository-policies.ts';
import { GatewayEffects } from '../runtime/pipeline/effects.ts';
import type { Exchange } from '../runtime/policy-host/exchange.ts';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import {
  DEFAULT_LIMITS,
  PolicyFailure,
  PolicyHost,
  type Grants,
  type Limits,
  type Phase,
  type PolicyBinding,
  type PolicyModule,
} from '../runtime/policy-host/index.ts';
import { MemoryCounterStore } from '../runtime/state/counter-store.ts';
import { Logger } from '../runtime/telemetry/logger.ts';
import { makeExchange, type TestCase } from '../sdk/cli/policy-test.ts';
import { processClocks } from '../runtime/adapters/process-clocks.ts';

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const value = i === -1 ? fallback : Number(process.argv[i + 1]);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number`);
  return value;
}
const listFlag = (name: string): Set<string> | null => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? null : new Set((process.argv[i + 1] ?? '').split(',').filter(Boolean));
};

const CALLS = flag('calls', 2_000);
const WARMUP = 300;
/** New instances whose first call is timed, for each case and input (the median is reported). */
const FRESH_INSTANCES = 3;
const WORST_CALLS = flag('worst-calls', 40);
const WORST_MS = flag('worst-ms', 1_000);
const ONLY = listFlag('only');
const RUN_TYPICAL = !process.argv.includes('--no-typical');
const RUN_WORST = !process.argv.includes('--no-worst');
/** The most a binding may be given (runtime/policy-host/host.ts, MAX_CPU_MS): the worst cases run to their end. */
const UNCUT_CPU_MS = 10_000;
/**
 * What the implied default multiplies the worst covered call's CPU time by. 2, because the host charges a call that
 * passes half its budget in wall-clock time as if it had run all that while (instance.ts, checkBudget): a call
 * descheduled in its first half (a busy machine, a container at its CPU quota) is safe only if it needs less than half
 * its budget. And 2, because gateways run on vCPUs that can be twice as slow per core as the one measured. The maxima
 * measured already include this process's garbage collection (the budget counts every thread's CPU time).
 */
const HEADROOM = flag('headroom', 4);

const KiB = 1024;
const MiB = 1024 * 1024;
/** Bodies the default budget should convert or rewrite: an API's JSON or XML document is usually far smaller. */
const COMMON_BODY_BYTES = 64 * KiB;
const ENDED = { requestBytes: 0, responseBytes: 0 };

// --- the host, as the gateway makes it ---------------------------------------------------------------------------

const root = repoRoot();
const sources = new RepositoryPolicySources(join(root, 'policies'));
const host = new PolicyHost({
  clocks: processClocks,
  logger: new Logger(() => undefined, 'info'),
  effects: new GatewayEffects({ counters: new MemoryCounterStore() }),
});
const names = sources.builtinNames().filter((n) => ONLY === null || ONLY.has(n));
const modules = new Map<string, { module: PolicyModule; needs: readonly string[] }>();
const buildStarted = performance.now();
for (const name of names) {
  const builtin = sources.builtin(name)!;
  modules.set(name, { module: await host.load(await builtin.wasm()), needs: await builtin.needs() });
}
process.stderr.write(`# ${names.length} built-in policies built and loaded in ${((performance.now() - buildStarted) / 1000).toFixed(1)} s\n`);

let bindings = 0;
function bind(policy: string, phase: Phase, config: unknown, extra: { grants?: Grants; limits?: Partial<Limits>; uncut?: boolean } = {}): PolicyBinding {
  const { module, needs } = modules.get(policy)!;
  const grants = grantsFromNeeds(needs, config);
  return host.bind({
    id: `bench/${policy}/${++bindings}`,
    phase,
    module,
    // A copy: the host fills in the schema's defaults.
    config: structuredClone(config ?? {}),
    grants: { ...grants, ...extra.grants },
    limits: extra.uncut ? { ...extra.limits, cpuMs: UNCUT_CPU_MS } : extra.limits,
    circuitBreaker: extra.uncut ? { failures: 0 } : undefined,
  });
}

// --- one call ----------------------------------------------------------------------------------------------------

interface CallResult {
  /** Wall-clock time of PolicyBinding.run. */
  us: number;
  /**
   * When asked for (`withCpu`): the process's CPU time over the call, as the budget counts it, but at most the call's
   * wall time: other threads (a concurrent collection) would otherwise be charged to a call of microseconds, which the
   * host never does (it reads CPU time only once a call has run for half its budget).
   */
  cpuUs: number;
  /** continue, respond:<status>, or fail:<reason>. */
  outcome: string;
  message?: string;
}

/** One call of PolicyBinding.run: how long it took, and what it did. */
async function call(binding: PolicyBinding, phase: Phase, exchange: Exchange, withCpu = false): Promise<CallResult> {
  const cpuBefore = withCpu ? process.cpuUsage() : null;
  const started = performance.now();
  let failure: PolicyFailure | null = null;
  try {
    await binding.run(phase, exchange);
  } catch (err) {
    if (!(err instanceof PolicyFailure)) throw err;
    failure = err;
  }
  const us = (performance.now() - started) * 1000;
  let cpuUs = 0;
  if (cpuBefore) {
    const cpu = process.cpuUsage(cpuBefore);
    cpuUs = Math.min(cpu.user + cpu.system, us);
  }
  if (failure) return { us, cpuUs, outcome: `fail:${failure.reason}`, message: failure.message };
  return { us, cpuUs, outcome: exchange.responded ? `respond:${exchange.response.status}` : 'continue' };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

const median = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 0.5);

/** Collects the garbage of what ran before (with --expose-gc), so that it is not charged to what runs next. */
const collect = (globalThis as { gc?: () => void }).gc ?? (() => undefined);

/**
 * The first call of FRESH_INSTANCES new bindings (each on a new instance: the built-ins read and parse their
 * configuration in it): their median, the very first one (for the first case of a policy, the first call of its module
 * in the process), and the last binding, for the calls that follow.
 */
async function firstCalls(make: () => PolicyBinding, phase: Phase, exchange: () => Exchange, keepState: boolean) {
  const results: CallResult[] = [];
  let binding!: PolicyBinding;
  for (let i = 0; i < FRESH_INSTANCES; i++) {
    binding = make();
    await binding.warm();
    const ex = exchange();
    results.push(await call(binding, phase, ex, true));
    if (!keepState) ex.end(ENDED);
  }
  return {
    binding,
    first: results[0]!,
    us: median(results.map((r) => r.us)),
    cpuUs: median(results.map((r) => r.cpuUs)),
    results,
  };
}

interface Row {
  policy: string;
  what: string;
  phase: Phase;
  calls: number;
  /** The first call of a new instance (the built-ins parse their configuration in it), wall and CPU: a median. */
  firstUs: number;
  firstCpuUs: number;
  /** Typical, first case of a policy: the first call of its module in the process (its code compiled on first use). */
  coldModule?: { us: number; cpuUs: number };
  medianUs: number;
  p99Us: number;
  maxUs: number;
  /** Typical: CPU over the batch ÷ calls. Worst: the median of each call's CPU time. */
  cpuUsPerCall: number;
  /** Worst: the largest CPU time of one call after the first. */
  cpuMaxUs?: number;
  outcomes: Map<string, number>;
  /** The first failure's message, for inputs that run into a cap. */
  failure?: string;
  /** Worst: each call's outcome in order on the last instance, `.` for a success and `x` for a failure. */
  sequence?: string;
}

const count = (outcomes: Map<string, number>, outcome: string) => outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
const describeOutcomes = (outcomes: Map<string, number>) =>
  [...outcomes].sort((a, b) => b[1] - a[1]).map(([o, n]) => `${o}×${n}`).join(' ');

// --- typical: the policies' own test cases -----------------------------------------------------------------------

const typical: Row[] = [];
let skippedInvalid = 0;
const mismatches: string[] = [];

async function runCase(policy: string, c: TestCase, coldModule: boolean): Promise<void> {
  const phase = c.phase ?? 'inbound';
  const keepState = (c.repeat ?? 1) > 1;
  const outcomes = new Map<string, number>();
  collect();
  const fresh = await firstCalls(() => bind(policy, phase, c.config, { grants: c.grants, limits: c.limits }), phase, () => makeExchange(c, phase), keepState);
  const { binding, first } = fresh;
  const expected = c.expect?.outcome;
  if (!keepState && expected && first.outcome.split(':')[0] !== expected) {
    mismatches.push(`${policy} / ${c.name}: the case expects ${expected}, the first call gave ${first.outcome} (bound with the grants the gateway gives built-ins)`);
  }
  for (let i = 0; i < WARMUP; i++) {
    const ex = makeExchange(c, phase);
    await call(binding, phase, ex);
    if (!keepState) ex.end(ENDED);
  }
  const exchanges = Array.from({ length: CALLS }, () => makeExchange(c, phase));
  const samples = new Array<number>(CALLS);
  const cpuBefore = process.cpuUsage();
  for (let i = 0; i < CALLS; i++) {
    const ex = exchanges[i]!;
    const r = await call(binding, phase, ex);
    samples[i] = r.us;
    count(outcomes, r.outcome);
    if (!keepState) ex.end(ENDED);
  }
  const cpu = process.cpuUsage(cpuBefore);
  samples.sort((a, b) => a - b);
  typical.push({
    policy,
    what: c.name,
    phase,
    calls: CALLS,
    firstUs: fresh.us,
    firstCpuUs: fresh.cpuUs,
    coldModule: coldModule ? { us: first.us, cpuUs: first.cpuUs } : undefined,
    medianUs: percentile(samples, 0.5),
    p99Us: percentile(samples, 0.99),
    maxUs: samples[samples.length - 1]!,
    cpuUsPerCall: (cpu.user + cpu.system) / CALLS,
    outcomes,
  });
}

// --- worst plausible inputs --------------------------------------------------------------------------------------

interface Scenario {
  policy: string;
  /** The input, said so that it can be rebuilt. */
  what: string;
  /**
   * Where the input comes from: `request` (the client's request line and headers, at most 16 KiB, and token or query
   * contents within them), `config` (the binding's configuration: lists, canned answers), `body` (a buffered body).
   */
  kind: 'request' | 'config' | 'body';
  /**
   * Whether the default budget should cover it: every request-side input a client can send, and configurations and
   * bodies of common sizes (lists of up to 1,000 entries, JWKS of up to 4 keys, bodies up to COMMON_BODY_BYTES).
   * Larger ones are what `limits.cpuMs` on the binding is for.
   */
  common: boolean;
  phase: Phase;
  config: unknown;
  /** A case in the runner's format: its request, response, variables, route parameters. */
  input: Omit<TestCase, 'name' | 'expect'>;
  /** Bytes of the body, for the body-size summary. */
  bodyBytes?: number;
}

const worst: (Row & { kind: Scenario['kind']; common: boolean; bodyBytes?: number })[] = [];

async function runScenario(s: Scenario): Promise<void> {
  const c = { name: s.what, expect: {}, ...s.input } as TestCase;
  const outcomes = new Map<string, number>();
  collect();
  const fresh = await firstCalls(() => bind(s.policy, s.phase, s.config, { uncut: true }), s.phase, () => makeExchange(c, s.phase), false);
  const { binding } = fresh;
  for (const r of fresh.results) count(outcomes, r.outcome);
  let failure = fresh.results.find((r) => r.message)?.message;
  const samples: number[] = [];
  const cpuSamples: number[] = [];
  let sequence = fresh.results[fresh.results.length - 1]!.outcome.startsWith('fail:') ? 'x' : '.';
  const started = performance.now();
  while (samples.length < WORST_CALLS && (samples.length < 3 || performance.now() - started < WORST_MS)) {
    const ex = makeExchange(c, s.phase);
    const r = await call(binding, s.phase, ex, true);
    ex.end(ENDED);
    samples.push(r.us);
    cpuSamples.push(r.cpuUs);
    count(outcomes, r.outcome);
    sequence += r.outcome.startsWith('fail:') ? 'x' : '.';
    failure ??= r.message;
  }
  samples.sort((a, b) => a - b);
  cpuSamples.sort((a, b) => a - b);
  worst.push({
    policy: s.policy,
    what: s.what,
    phase: s.phase,
    kind: s.kind,
    common: s.common,
    bodyBytes: s.bodyBytes,
    calls: samples.length,
    firstUs: fresh.us,
    firstCpuUs: fresh.cpuUs,
    medianUs: percentile(samples, 0.5),
    p99Us: percentile(samples, 0.99),
    maxUs: samples[samples.length - 1]!,
    cpuUsPerCall: percentile(cpuSamples, 0.5),
    cpuMaxUs: cpuSamples[cpuSamples.length - 1]!,
    outcomes,
    failure,
    sequence,
  });
}

const size = (bytes: number) => (bytes >= MiB && bytes % MiB === 0 ? `${bytes / MiB} MiB` : bytes >= MiB ? `${(bytes / MiB).toFixed(2)} MiB` : `${Math.round(bytes / KiB)} KiB`);

/** A JSON document like an API's answer: orders with customers, lines and links, about `bytes` long. */
function ordersJson(bytes: number, host = 'http://orders.internal:8080'): string {
  const parts: string[] = [];
  let length = 13;
  for (let i = 0; length < bytes; i++) {
    const order = JSON.stringify({
      id: `ord-${i}`,
      href: `${host}/orders/ord-${i}`,
      customer: { id: i * 7, name: `Customer ${i}`, email: `customer${i}@example.com` },
      status: i % 3 === 0 ? 'open' : 'shipped',
      total: (i * 13.37).toFixed(2),
      lines: [
        { sku: `SKU-${i % 97}`, qty: 1 + (i % 5), price: 9.99 },
        { sku: `SKU-${(i * 3) % 89}`, qty: 1, price: 24.5 },
      ],
      gift: i % 4 === 0,
      note: i % 5 === 0 ? null : 'Leave at the door',
    });
    parts.push(order);
    length += order.length + 1;
  }
  return `{"orders":[${parts.join(',')}]}`;
}

/** The same kind of document in XML. */
function ordersXml(bytes: number): string {
  const parts: string[] = [];
  let length = 60;
  for (let i = 0; length < bytes; i++) {
    const order =
      `<order id="ord-${i}" status="${i % 3 === 0 ? 'open' : 'shipped'}">` +
      `<customer id="${i * 7}"><name>Customer ${i}</name><email>customer${i}@example.com</email></customer>` +
      `<total currency="EUR">${(i * 13.37).toFixed(2)}</total>` +
      `<line sku="SKU-${i % 97}" qty="${1 + (i % 5)}">9.99</line><line sku="SKU-${(i * 3) % 89}" qty="1">24.50</line>` +
      `<note>${i % 5 === 0 ? '' : 'Leave at the door &amp; ring'}</note></order>\n`;
    parts.push(order);
    length += order.length;
  }
  return `<?xml version="1.0" encoding="utf-8"?>\n<orders>\n${parts.join('')}</orders>`;
}

const b64url = (data: Buffer | string) => Buffer.from(data).toString('base64url');

function jwt(alg: string, header: Record<string, unknown>, claims: Record<string, unknown>, signer: (input: string) => Buffer): string {
  const input = `${b64url(JSON.stringify({ alg, typ: 'JWT', ...header }))}.${b64url(JSON.stringify(claims))}`;
  return `${input}.${b64url(signer(input))}`;
}

/** An RSA public JWK with a random odd modulus of `bits`: verifying against it costs what a real key's does. */
function rsaPublicOfSize(bits: number, kid: string): Record<string, unknown> {
  const n = Buffer.from(createHash('sha512').update(`modulus-${bits}-${kid}`).digest());
  const bytes = Buffer.alloc(bits / 8);
  for (let i = 0; i < bytes.length; i++) bytes[i] = n[i % n.length]! ^ (i * 31);
  bytes[0] = bytes[0]! | 0x80;
  bytes[bytes.length - 1] = bytes[bytes.length - 1]! | 1;
  return { kty: 'RSA', kid, n: b64url(bytes), e: 'AQAB' };
}

function scenarios(): Scenario[] {
  const out: Scenario[] = [];
  const add = (s: Omit<Scenario, 'common'> & { common?: boolean }) => {
    if (ONLY !== null && !ONLY.has(s.policy)) return;
    // What the default must cover: every request-side input, and configurations and bodies of common sizes.
    out.push({ ...s, common: s.common ?? s.kind === 'request' });
  };
  const json = 'application/json';
  const xml = 'application/xml';

  // --- bodies ---

  // find-and-replace rewrites internal links in a JSON answer (outbound: backends may send 16 MiB).
  const far = { from: 'http://orders.internal:8080', to: 'https://api.example.com/shop' };
  for (const bytes of [64 * KiB, 256 * KiB, 1 * MiB, 2 * MiB, 3 * MiB, 4 * MiB, 8 * MiB]) {
    const body = ordersJson(bytes, 'http://catalog.internal:9090');
    add({ policy: 'find-and-replace', kind: 'body', common: bytes <= COMMON_BODY_BYTES, bodyBytes: body.length, what: `outbound JSON ${size(bytes)}, text absent`, phase: 'outbound', config: far, input: { response: { headers: { 'content-type': json }, body } } });
  }
  for (const bytes of [64 * KiB, 256 * KiB, 960 * KiB, 1 * MiB]) {
    const body = ordersJson(bytes);
    add({ policy: 'find-and-replace', kind: 'body', common: bytes <= COMMON_BODY_BYTES, bodyBytes: body.length, what: `outbound JSON ${size(bytes)}, a link per ~250 B replaced`, phase: 'outbound', config: far, input: { response: { headers: { 'content-type': json }, body } } });
  }
  {
    // A client's body made of near misses: at each occurrence of the text's first byte, 26 bytes are compared.
    const body = 'http://orders.internal:808#'.repeat(Math.ceil((2 * MiB) / 27));
    add({ policy: 'find-and-replace', kind: 'body', common: false, bodyBytes: body.length, what: 'inbound 2 MiB of near misses (the text minus its last byte, repeated)', phase: 'inbound', config: far, input: { request: { method: 'POST', body } } });
  }

  // json-to-xml: the client's body converted for an XML backend (inbound), or malformed at its very end (answered 400
  // after a whole parse, with no output: only memory and the budget stop it).
  for (const bytes of [16 * KiB, 64 * KiB, 128 * KiB, 256 * KiB, 384 * KiB, 512 * KiB]) {
    const body = ordersJson(bytes);
    add({ policy: 'json-to-xml', kind: 'body', common: bytes <= COMMON_BODY_BYTES, bodyBytes: body.length, what: `inbound JSON ${size(bytes)} converted`, phase: 'inbound', config: {}, input: { request: { method: 'POST', headers: { 'content-type': json }, body } } });
  }
  for (const bytes of [256 * KiB, 1 * MiB, 4 * MiB]) {
    const body = `${ordersJson(bytes).slice(0, -1)}!`;
    add({ policy: 'json-to-xml', kind: 'body', common: bytes <= COMMON_BODY_BYTES, bodyBytes: body.length, what: `inbound JSON ${size(bytes)}, malformed at its last byte`, phase: 'inbound', config: {}, input: { request: { method: 'POST', headers: { 'content-type': json }, body } } });
  }
  {
    const body = ordersJson(64 * KiB);
    add({ policy: 'json-to-xml', kind: 'body', common: true, bodyBytes: body.length, what: 'outbound JSON 64 KiB, the client accepts XML', phase: 'outbound', config: {}, input: { request: { headers: { accept: 'application/xml' } }, response: { headers: { 'content-type': json }, body } } });
  }

  // xml-to-json, likewise.
  for (const bytes of [16 * KiB, 64 * KiB, 128 * KiB, 256 * KiB, 512 * KiB, 1 * MiB]) {
    const body = ordersXml(bytes);
    add({ policy: 'xml-to-json', kind: 'body', common: bytes <= COMMON_BODY_BYTES, bodyBytes: body.length, what: `inbound XML ${size(bytes)} converted`, phase: 'inbound', config: {}, input: { request: { method: 'POST', headers: { 'content-type': xml }, body } } });
  }
  for (const bytes of [256 * KiB, 1 * MiB, 4 * MiB]) {
    const body = ordersXml(bytes).replace(/<\/orders>$/, '</orderz>');
    add({ policy: 'xml-to-json', kind: 'body', common: bytes <= COMMON_BODY_BYTES, bodyBytes: body.length, what: `inbound XML ${size(bytes)}, a bad end tag at its end`, phase: 'inbound', config: {}, input: { request: { method: 'POST', headers: { 'content-type': xml }, body } } });
  }
  {
    const body = ordersXml(64 * KiB);
    add({ policy: 'xml-to-json', kind: 'body', common: true, bodyBytes: body.length, what: 'outbound XML 64 KiB, the client accepts JSON', phase: 'outbound', config: {}, input: { request: { headers: { accept: json } }, response: { headers: { 'content-type': xml }, body } } });
  }

  // Canned answers from the configuration (a 2 MiB document can hold them; the output cap is 1 MiB).
  for (const bytes of [64 * KiB, 256 * KiB, 1000 * KiB, 1 * MiB]) {
    const body = ordersJson(bytes).slice(0, bytes);
    add({ policy: 'mock-response', kind: 'body', common: bytes <= COMMON_BODY_BYTES, bodyBytes: body.length, what: `configured body ${size(bytes)}`, phase: 'inbound', config: { body, contentType: 'text/plain' }, input: {} });
  }
  for (const bytes of [64 * KiB, 1000 * KiB]) {
    const body = ordersJson(bytes).slice(0, bytes);
    const headers: Record<string, string> = {};
    for (let i = 0; i < 32; i++) headers[`x-canned-${i}`] = `value-${i}-${'v'.repeat(100)}`;
    add({ policy: 'return-response', kind: 'body', common: bytes <= COMMON_BODY_BYTES, bodyBytes: body.length, what: `configured body ${size(bytes)}, 32 headers`, phase: 'inbound', config: { status: 503, headers, body, contentType: 'text/plain' }, input: {} });
  }

  // --- validate-jwt: public-key checks in the host; a token without kid is tried with every key that fits its alg ---

  const now = Math.floor(Date.now() / 1000);
  const claims = { iss: 'https://login.example.com/', aud: 'api://orders', sub: 'alice', exp: now + 86_400, iat: now, scope: 'orders.read orders.write' };
  const validation = { issuers: ['https://login.example.com/'], audiences: ['api://orders'] };
  const auth = (token: string) => ({ request: { headers: { authorization: `Bearer ${token}` } } });
  const rsa4096 = generateKeyPairSync('rsa', { modulusLength: 4096 });
  const rsaJwk = { ...(rsa4096.publicKey.export({ format: 'jwk' }) as Record<string, unknown>), kid: 'rsa-4096' };
  const rs512 = jwt('RS512', { kid: 'rsa-4096' }, claims, (input) => sign('sha512', Buffer.from(input), rsa4096.privateKey));
  add({ policy: 'validate-jwt', kind: 'request', what: 'RS512, 4096-bit key (JWKS, by kid), valid', phase: 'inbound', config: { ...validation, jwks: { keys: [rsaJwk] } }, input: auth(rs512) });
  const ecJwks = Array.from({ length: 16 }, (_, i) => {
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    return { pair, jwk: { ...(pair.publicKey.export({ format: 'jwk' }) as Record<string, unknown>), kid: `ec-${i}` } };
  });
  const es384 = jwt('ES384', { kid: 'ec-0' }, claims, (input) => sign('sha384', Buffer.from(input), { key: ecJwks[0]!.pair.privateKey, dsaEncoding: 'ieee-p1363' }));
  add({ policy: 'validate-jwt', kind: 'request', what: 'ES384 (P-384, JWKS by kid), valid', phase: 'inbound', config: { ...validation, jwks: { keys: [ecJwks[0]!.jwk] } }, input: auth(es384) });
  // A client's token without kid and with a forged signature, against a JWKS whose keys name no alg: each is tried.
  // (Each key's modulus is random: verifying costs what a real key's does.)
  for (const n of [4, 16]) {
    const keys = Array.from({ length: n }, (_, i) => rsaPublicOfSize(4096, `rsa-${i}`));
    const forged = jwt('RS512', {}, claims, () => Buffer.alloc(512, 7));
    add({ policy: 'validate-jwt', kind: 'request', common: n <= 4, what: `RS512 without kid, forged, JWKS of ${n} 4096-bit keys (all tried)`, phase: 'inbound', config: { ...validation, jwks: { keys } }, input: auth(forged) });
  }
  for (const n of [4, 16]) {
    const forged = jwt('ES384', {}, claims, () => Buffer.alloc(96, 7));
    add({ policy: 'validate-jwt', kind: 'request', common: n <= 4, what: `ES384 without kid, forged, JWKS of ${n} P-384 keys (all tried)`, phase: 'inbound', config: { ...validation, jwks: { keys: ecJwks.slice(0, n).map((k) => k.jwk) } }, input: auth(forged) });
  }
  {
    // Keys are accepted up to 8192 bits.
    const forged = jwt('RS512', { kid: 'rsa-8192' }, claims, () => Buffer.alloc(1024, 7));
    add({ policy: 'validate-jwt', kind: 'request', common: false, what: 'RS512, 8192-bit key (the most the host accepts), forged', phase: 'inbound', config: { ...validation, jwks: { keys: [rsaPublicOfSize(8192, 'rsa-8192')] } }, input: auth(forged) });
  }
  const groups = Array.from({ length: 330 }, (_, i) => `group-${String(i).padStart(5, '0')}-of-the-tenant`);
  {
    // The largest token 16 KiB of request line and headers leave room for: 12 KiB, HS256 (the HMAC runs in the module).
    const secret = Buffer.alloc(32, 7);
    const token = jwt('HS256', {}, { ...claims, groups }, (input) => createHmac('sha256', secret).update(input).digest());
    add({ policy: 'validate-jwt', kind: 'request', what: `HS256, ${size(token.length)} token (330 group claims), a required claim`, phase: 'inbound', config: { ...validation, keys: [{ secret: b64url(secret) }], requiredClaims: [{ name: 'groups', values: ['group-00329-of-the-tenant'] }] }, input: auth(token) });
  }

  // --- configurations that hold lists: parsed on the first call of each instance, some compared on every call ---

  const ipv4 = (i: number) => `${10 + ((i >> 16) & 0x3f)}.${(i >> 8) & 0xff}.${i & 0xff}.0/24`;
  const ipv6 = (i: number) => `2001:db8:${(i >> 16).toString(16)}:${(i & 0xffff).toString(16)}::/64`;
  for (const n of [1_000, 10_000]) {
    const addresses = Array.from({ length: n }, (_, i) => (i % 2 ? ipv6(i) : ipv4(i)));
    add({ policy: 'ip-filter', kind: 'config', common: n <= 1_000, what: `allow list of ${n.toLocaleString('en')} v4/v6 ranges, a client not listed (403)`, phase: 'inbound', config: { action: 'allow', addresses }, input: { request: { clientAddress: '203.0.113.9' } } });
  }
  {
    const addresses = Array.from({ length: 60_000 }, (_, i) => `${100 + (i >> 16)}.${(i >> 8) & 0xff}.${i & 0xff}.${(i * 7) & 0xff}`);
    add({ policy: 'ip-filter', kind: 'config', common: false, what: 'forbid list of 60,000 addresses (~1 MiB of configuration), a client not listed', phase: 'inbound', config: { action: 'forbid', addresses }, input: { request: { clientAddress: '2001:db8::9' } } });
  }

  // key-auth: keys given as keys are hashed (SHA-256, in the module) on the first call; the presented key on each.
  const key = (i: number) => `key-${String(i).padStart(6, '0')}-${createHash('sha256').update(String(i)).digest('hex').slice(0, 24)}`;
  for (const n of [100, 1_000, 10_000]) {
    const keys = Array.from({ length: n }, (_, i) => ({ id: `tenant-${i}`, key: key(i) }));
    add({ policy: 'key-auth', kind: 'config', common: n <= 1_000, what: `${n.toLocaleString('en')} keys (plain), the last one presented`, phase: 'inbound', config: { keys, identityHeader: 'x-tenant' }, input: { request: { headers: { 'x-api-key': key(n - 1) } } } });
  }
  {
    const keys = Array.from({ length: 10_000 }, (_, i) => ({ id: `tenant-${i}`, sha256: createHash('sha256').update(key(i)).digest('hex') }));
    add({ policy: 'key-auth', kind: 'config', common: false, what: '10,000 keys as SHA-256 digests, a wrong key presented', phase: 'inbound', config: { keys }, input: { request: { headers: { 'x-api-key': 'not-a-key-0123456789' } } } });
    add({ policy: 'key-auth', kind: 'request', what: 'a wrong 8 KiB key presented (hashed), 2 keys', phase: 'inbound', config: { keys: keys.slice(0, 2) }, input: { request: { headers: { 'x-api-key': 'k'.repeat(8 * KiB) } } } });
  }

  // cors: subdomain origins are compared one by one.
  {
    const allowedOrigins = Array.from({ length: 1_000 }, (_, i) => `https://*.tenant-${i}.example.com`);
    add({ policy: 'cors', kind: 'config', common: true, what: '1,000 subdomain origins, an origin matching none', phase: 'inbound', config: { allowedOrigins }, input: { request: { headers: { origin: 'https://app.other.example.org' } } } });
    const allowedHeaders = Array.from({ length: 600 }, (_, i) => `x-custom-header-${i}`);
    add({ policy: 'cors', kind: 'request', what: 'a preflight asking for 600 headers (13 KiB), 600 allowed', phase: 'inbound', config: { allowedOrigins: ['https://app.example.com'], allowedHeaders, maxAge: 600 }, input: { request: { method: 'OPTIONS', headers: { origin: 'https://app.example.com', 'access-control-request-method': 'PUT', 'access-control-request-headers': allowedHeaders.join(', ') } } } });
  }

  // check-header: the accepted values are copied and compared on every call.
  for (const n of [1_000, 10_000]) {
    const values = Array.from({ length: n }, (_, i) => key(i));
    add({ policy: 'check-header', kind: 'config', common: n <= 1_000, what: `${n.toLocaleString('en')} accepted values, ignoreCase, a value matching none`, phase: 'inbound', config: { name: 'x-api-key', values, ignoreCase: true }, input: { request: { headers: { 'x-api-key': 'NOT-A-KEY-0123456789' } } } });
  }

  // --- request-side inputs within 16 KiB of request line and headers ---

  // rewrite-uri: route parameters are decoded by the router and percent-encoded again by the policy.
  {
    const value = 'é'.repeat(2_600); // 5,200 bytes of UTF-8: 15,600 bytes in the request line, encoded
    add({ policy: 'rewrite-uri', kind: 'request', what: 'a route parameter of 2,600 é (a 15.2 KiB encoded path segment)', phase: 'inbound', config: { template: '/v2/orders/{orderId}' }, input: { routeParams: { orderId: value } } });
    add({ policy: 'rewrite-uri', kind: 'request', what: 'a route parameter of 15,000 ASCII letters', phase: 'inbound', config: { template: '/v2/orders/{orderId}' }, input: { routeParams: { orderId: 'a'.repeat(15_000) } } });
    add({ policy: 'rewrite-uri', kind: 'request', what: 'a route parameter of 1,000 ASCII letters', phase: 'inbound', config: { template: '/v2/orders/{orderId}' }, input: { routeParams: { orderId: 'a'.repeat(1_000) } } });
    const query = Array.from({ length: 1_200 }, (_, i) => `p${i}=${i}`).join('&');
    add({ policy: 'rewrite-uri', kind: 'request', what: `a query of 1,200 parameters (${size(query.length)}), the unmatched ones copied`, phase: 'inbound', config: { template: '/v2/orders/{orderId}?view={p7}&sort={p900}' }, input: { routeParams: { orderId: '42' }, request: { query } } });
  }

  // set-query-parameter: each value is one host call on the query.
  {
    const query = Array.from({ length: 1_200 }, (_, i) => `p${i % 600}=${i}`).join('&');
    add({ policy: 'set-query-parameter', kind: 'request', what: `override a name sent twice in a query of 1,200 pairs (${size(query.length)})`, phase: 'inbound', config: { name: 'p7', values: ['x'] }, input: { request: { query } } });
    add({ policy: 'set-query-parameter', kind: 'request', what: `delete a name from a query of 1,200 pairs (${size(query.length)})`, phase: 'inbound', config: { name: 'p7', existsAction: 'delete' }, input: { request: { query } } });
    for (const n of [10, 200]) {
      const values = Array.from({ length: n }, (_, i) => `value-${i}-${'v'.repeat(64)}`);
      add({ policy: 'set-query-parameter', kind: 'config', common: n <= 10, what: `append ${n} configured values (${size(values.join('').length)}) to a query of 1,200 pairs`, phase: 'inbound', config: { name: 'tag', existsAction: 'append', values }, input: { request: { query } } });
    }
  }

  // emit-metric: ten dimensions, each from a long header (cut to 256 characters).
  {
    const headers: Record<string, string> = {};
    const dimensions = Array.from({ length: 10 }, (_, i) => {
      headers[`x-dim-${i}`] = `d${i}-`.repeat(400).slice(0, 1_400);
      return { name: `dim${i}`, from: 'header', key: `x-dim-${i}` };
    });
    add({ policy: 'emit-metric', kind: 'request', what: '10 dimensions from 1.4 KiB headers', phase: 'inbound', config: { name: 'orders', dimensions }, input: { request: { headers } } });
  }

  // Limits keyed by a token claim (the bearer token decoded and parsed, unverified) or a long value (hashed).
  {
    const token = jwt('HS256', {}, { ...claims, tenant: 'contoso', groups }, () => Buffer.alloc(32, 1));
    const longKey = 'k'.repeat(8 * KiB);
    const plenty = { calls: 1_000_000_000, renewalPeriod: 60 };
    add({ policy: 'rate-limit-by-key', kind: 'request', what: `the key from a claim of a ${size(token.length)} bearer token`, phase: 'inbound', config: { ...plenty, counterKey: { from: 'claim', name: 'tenant' } }, input: auth(token) });
    add({ policy: 'rate-limit-by-key', kind: 'request', what: 'the key from an 8 KiB header (hashed)', phase: 'inbound', config: { ...plenty, counterKey: { from: 'header', name: 'x-tenant' } }, input: { request: { headers: { 'x-tenant': longKey } } } });
    add({ policy: 'quota-by-key', kind: 'request', what: `calls and bandwidth, the key from a claim of a ${size(token.length)} token`, phase: 'inbound', config: { calls: 1_000_000_000, bandwidth: 1_000_000_000, renewalPeriod: 86_400, counterKey: { from: 'claim', name: 'tenant' } }, input: auth(token) });
    add({ policy: 'limit-concurrency', kind: 'request', what: 'the key from an 8 KiB header (hashed)', phase: 'inbound', config: { maxCount: 1_000_000, counterKey: { from: 'header', name: 'x-tenant' } }, input: { request: { headers: { 'x-tenant': longKey } } } });
    add({ policy: 'rate-limit', kind: 'request', what: 'an identity variable of 8 KiB', phase: 'inbound', config: plenty, input: { variables: { 'subscription-id': longKey } } });
  }

  // set-header: a long configured value appended to a response header that has many values.
  add({ policy: 'set-header', kind: 'config', common: true, what: 'append an 8 KiB value to a response header of 100 values', phase: 'outbound', config: { name: 'x-trace', value: 'v'.repeat(8 * KiB), existsAction: 'append' }, input: { response: { headers: { 'x-trace': Array.from({ length: 100 }, (_, i) => `hop-${i}`) } } } });
  return out;
}

// --- run -----------------------------------------------------------------------------------------------------------

const load = () => loadavg().map((l) => l.toFixed(2)).join(' ');
const startedAt = performance.now();
const loadAtStart = load();

if (RUN_TYPICAL) {
  for (const policy of names) {
    const file = join(root, 'policies', policy, 'policy.test.json');
    const { cases } = JSON.parse(await readFile(file, 'utf8')) as { cases: TestCase[] };
    let ran = 0;
    const t0 = performance.now();
    for (const c of cases) {
      if (c.expect?.outcome === 'invalid-config') {
        skippedInvalid++;
        continue;
      }
      await runCase(policy, c, ran === 0);
      ran++;
    }
    process.stderr.write(`# typical ${policy}: ${ran} cases in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  }
}

if (RUN_WORST) {
  const t0 = performance.now();
  const list = scenarios();
  process.stderr.write(`# ${list.length} worst-plausible inputs made in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  for (const s of list) {
    await runScenario(s);
    const r = worst[worst.length - 1]!;
    const calls = r.sequence!.includes('x') ? `, calls in order on one instance: ${r.sequence}` : '';
    process.stderr.write(`# worst ${s.policy} / ${s.what}: max ${(r.maxUs / 1000).toFixed(2)} ms (${describeOutcomes(r.outcomes)}${calls})\n`);
  }
}

// --- report --------------------------------------------------------------------------------------------------------

const us = (v: number) => (v >= 100 ? v.toFixed(0) : v.toFixed(1));
const ms = (v: number) => (v / 1000).toFixed(2);
const named = (r: Row) => `${r.policy} / ${r.what}`;
const top = <T,>(rows: T[], key: (r: T) => number): T | undefined =>
  rows.reduce<T | undefined>((a, r) => (a === undefined || key(r) > key(a) ? r : a), undefined);
const cell = (text: string) => text.replaceAll('|', '\\|');

console.log(`node ${process.version}; ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}); load average (1, 5, 15 min) at start ${loadAtStart}, at end ${load()}`);
console.log(`default limits: cpuMs ${DEFAULT_LIMITS.cpuMs}, memoryBytes ${DEFAULT_LIMITS.memoryBytes}, outputBytes ${DEFAULT_LIMITS.outputBytes}`);

if (RUN_TYPICAL) {
  console.log(`\n## Typical: the ${typical.length} runnable cases of the built-ins' policy.test.json (${skippedInvalid} invalid-config cases not run)\n`);
  console.log(`first: the first call of a new instance, wall / CPU µs (median of ${FRESH_INSTANCES} instances). Then ${WARMUP} warm-up calls and ${CALLS} measured calls: wall-clock median, p99, max; CPU µs/call is process.cpuUsage() over the batch ÷ ${CALLS}.\n`);
  console.log('| policy | case | phase | first µs (wall / CPU) | median µs | p99 µs | max µs | CPU µs/call | outcomes |');
  console.log('| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |');
  for (const r of typical) {
    console.log(`| ${r.policy} | ${cell(r.what)} | ${r.phase} | ${us(r.firstUs)} / ${us(r.firstCpuUs)} | ${us(r.medianUs)} | ${us(r.p99Us)} | ${us(r.maxUs)} | ${us(r.cpuUsPerCall)} | ${describeOutcomes(r.outcomes)} |`);
  }
}
if (RUN_WORST) {
  console.log(`\n## Worst plausible inputs\n`);
  console.log(`Bound with a CPU budget of ${UNCUT_CPU_MS} ms (nothing is cut) and no circuit breaker. first: the first call of a new instance, wall / CPU µs (median of ${FRESH_INSTANCES} instances). Then up to ${WORST_CALLS} calls or ${WORST_MS} ms of calls (3 at least) on the last: wall-clock median, p99, max, and each call's CPU time (at most its wall time), median and max. kind: where the input comes from; common: the default should cover it.\n`);
  console.log('| policy | input | kind | common | first µs (wall / CPU) | median µs | p99 µs | max µs | CPU median µs | CPU max µs | calls | outcomes |');
  console.log('| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
  for (const r of worst) {
    const what = r.failure ? `${r.what} — ${r.failure.replace(/^policy \S+ failed /, '').slice(0, 100)}` : r.what;
    console.log(`| ${r.policy} | ${cell(what)} | ${r.kind} | ${r.common ? 'yes' : 'no'} | ${us(r.firstUs)} / ${us(r.firstCpuUs)} | ${us(r.medianUs)} | ${us(r.p99Us)} | ${us(r.maxUs)} | ${us(r.cpuUsPerCall)} | ${us(r.cpuMaxUs ?? 0)} | ${r.calls} | ${describeOutcomes(r.outcomes)} |`);
  }
}
for (const m of mismatches) console.log(`note: ${m}`);

console.log('');
if (typical.length > 0) {
  const medians = typical.map((r) => r.medianUs).sort((a, b) => a - b);
  const med = top(typical, (r) => r.medianUs)!;
  const p99 = top(typical, (r) => r.p99Us)!;
  const max = top(typical, (r) => r.maxUs)!;
  const cpu = top(typical, (r) => r.cpuUsPerCall)!;
  const colds = typical.filter((r) => r.coldModule);
  const coldModule = top(colds, (r) => r.coldModule!.cpuUs);
  const newInstance = top(typical, (r) => r.firstCpuUs);
  const p99s = typical.map((r) => r.p99Us).sort((a, b) => a - b);
  console.log(`builtin-typical-median-of-medians-us: ${us(percentile(medians, 0.5))}`);
  console.log(`builtin-typical-p99-of-cases-us: median ${us(percentile(p99s, 0.5))}, 90th percentile ${us(percentile(p99s, 0.9))}`);
  console.log(`builtin-typical-median-worst-us: ${us(med.medianUs)} (${named(med)})`);
  console.log(`builtin-typical-p99-worst-us: ${us(p99.p99Us)} (${named(p99)})`);
  console.log(`builtin-typical-max-worst-us: ${us(max.maxUs)} (${named(max)})`);
  console.log(`builtin-typical-cpu-per-call-worst-us: ${us(cpu.cpuUsPerCall)} (${named(cpu)})`);
  if (coldModule) {
    console.log(`builtin-typical-first-call-new-module-us: median ${us(median(colds.map((r) => r.coldModule!.cpuUs)))} CPU; worst ${us(coldModule.coldModule!.us)} wall, ${us(coldModule.coldModule!.cpuUs)} CPU (${named(coldModule)})`);
  }
  if (newInstance) console.log(`builtin-typical-first-call-new-instance-worst-us: ${us(newInstance.firstUs)} wall, ${us(newInstance.firstCpuUs)} CPU (${named(newInstance)})`);
}

/** A call's worst: the first call of an instance or the worst after it (single samples: the machine's noise included). */
const worstWall = (r: Row) => Math.max(r.firstUs, r.maxUs);
const worstCpu = (r: Row) => Math.max(r.firstCpuUs, r.cpuMaxUs ?? r.cpuUsPerCall);
/**
 * What a policy costs with an input, for choosing the budget: the CPU time of its first call on a new instance or of
 * its calls after that, whichever is more, each a median. Maxima on a shared 2-core machine mostly measure the other
 * processes on it (preemption, and their CPU time charged to a long call); the headroom is there for that.
 */
const cost = (r: Row) => Math.max(r.firstCpuUs, r.cpuUsPerCall);
if (worst.length > 0) {
  const capped = worst.filter((r) => [...r.outcomes.keys()].some((o) => o === 'fail:memory-cap' || o === 'fail:output-cap'));
  const completed = worst.filter((r) => !capped.includes(r));
  const line = (label: string, rows: Row[]) => {
    const w = top(rows, worstWall);
    const c = top(rows, worstCpu);
    const m = top(rows, cost);
    if (w) console.log(`${label}: ${ms(worstWall(w))} wall (${named(w)}); CPU ${ms(worstCpu(c!))} (${named(c!)}); median cost ${ms(cost(m!))} (${named(m!)})`);
  };
  line('builtin-worst-case-max-ms', completed);
  line('builtin-worst-case-max-ms-request-side', completed.filter((r) => r.kind === 'request'));
  line('builtin-worst-case-max-ms-common', completed.filter((r) => r.common));
  for (const r of capped) {
    const reasons = [...r.outcomes.keys()].filter((o) => o.startsWith('fail:')).join(', ');
    console.log(`builtin-worst-case-cap: ${named(r)}: ${describeOutcomes(r.outcomes)} (${reasons}; in order: ${r.sequence}); median call ${ms(r.medianUs)} ms`);
  }

  // The budget these imply: the largest cost of an input the default should cover, times the headroom.
  const basis = top(completed.filter((r) => r.common), cost);
  if (basis) {
    const implied = Math.ceil(((cost(basis) / 1000) * HEADROOM) / 5) * 5;
    console.log(`implied-default-budget-ms: ${implied} (the largest median CPU cost of an input the default should cover, ${ms(cost(basis))} ms for ${named(basis)}, × ${HEADROOM}, rounded up to 5 ms)`);
    // What each candidate default would refuse: inputs that cost more than it here, or more than it within the headroom.
    const listed = (rows: Row[]) => (rows.length === 0 ? 'none' : rows.map((r) => `${named(r)} (${ms(cost(r))})`).join('; '));
    for (const budget of [...new Set([10, 20, 30, DEFAULT_LIMITS.cpuMs, implied])].sort((x, y) => x - y)) {
      const over = (factor: number) => completed.filter((r) => cost(r) * factor > budget * 1000);
      const typicalOver = typical.filter((r) => cost(r) * HEADROOM > budget * 1000);
      console.log(`budget-${budget}ms-over-here: ${listed(over(1))}`);
      console.log(`budget-${budget}ms-over-with-headroom: ${listed([...over(HEADROOM), ...typicalOver])}`);
    }
    // The largest body each body policy handled within a budget, with the headroom.
    const bodyPolicies = [...new Set(worst.filter((r) => r.kind === 'body').map((r) => r.policy))];
    for (const budget of bodyPolicies.length > 0 ? [...new Set([10, 20, 30, DEFAULT_LIMITS.cpuMs, implied])].sort((x, y) => x - y) : []) {
      const fits = bodyPolicies.map((p) => {
        const ok = completed.filter((r) => r.policy === p && r.bodyBytes !== undefined && cost(r) * HEADROOM <= budget * 1000);
        const largest = top(ok, (r) => r.bodyBytes!);
        return `${p} ${largest ? size(largest.bodyBytes!) : 'none of those tried'}`;
      });
      console.log(`body-within-${budget}ms-with-headroom: ${fits.join(', ')}`);
    }
  }
}
console.log(`run-seconds: ${((performance.now() - startedAt) / 1000).toFixed(0)}`);
