// npm run bench:policy — host overhead of policy calls, measured on real compiled policies.
//
// Prints `name: value` lines (medians in microseconds) so a script can read them:
//   policy-call-median-us           one call of check-header (a present, valid key), through PolicyBinding.run
//   policy-60-header-ops-median-us  one call doing 20 header reads, 20 sets and 20 removes
// Each figure is PolicyBinding.run: journal, instance lock, metering, the Extism call and every host function. The
// host is made with replay off (runtime/policy-host/replay.ts), so that every call runs its module, as in the figures
// of earlier builds; one figure has it on:
//   five-policy-chain-replayed-median-us  the five-policy chain with replay on: the calls of the four built-ins that
//                                   declare themselves deterministic are answered from the first call's changes (the
//                                   same request every time), the rate limit runs its module
//   key-auth-many-keys-median-us    key-auth alone with 1,000 keys, each request carrying the next one (more than a
//                                   replay tree keeps: what replay costs traffic whose values do not come back), replay
//                                   off; key-auth-many-keys-replay-median-us the same with replay on
//   metering-overhead-ratio         a CPU-bound policy (test/fixtures/policies/compute), metered / unmetered time
//   five-policy-chain-median-us     one request through the five built-in policies of bench:proxy (runChain, the
//                                   backend's answer given at once); stderr also shows each policy's share
//   five-policy-conditions-median-us  the same with each entry's `when:` condition of bench:proxy's gatehouse-5w
//   five-noop-chain-median-us       the same chain of five bindings whose modules (hand-written) return at once: what
//                                   the chain and the policy host cost around the calls, apart from the policies' work
//   wasm-import-call-ns             one call from wasm to a JavaScript function that does nothing (three i32 in, one
//                                   out, as the ABI's host functions take them), the mean of a loop inside the module;
//                                   wasm-export-call-ns one call of an export from JavaScript: the floor under a host
//                                   function or a handler call, against which batching host calls is weighed
//   condition-eval-us               one evaluation of a CEL condition on the method (`request.method != 'OPTIONS'`),
//                                   the mean of a hot loop; condition-header-eval-us one that reads a header

import { buildFixture, makeExchange, newHost, rawModule } from '../test/support/policies.ts';
import { DEFAULT_LIMITS, type CallState } from '../runtime/policy-host/instance.ts';
import { PolicyInstance } from '../runtime/policy-host/instance.ts';
import { Logger } from '../runtime/telemetry/logger.ts';
import { processClocks } from '../runtime/adapters/process-clocks.ts';
import { EMPTY_CHAIN, runChain, type PolicyChain } from '../runtime/pipeline/chain.ts';
import type { ResponseState } from '../runtime/policy-host/exchange.ts';
import { API_KEY, FIVE_POLICY_CHAIN, ORIGIN } from './bench/five-policy-chain.ts';
import { compileExpression, Expression } from '../runtime/expressions/cel.ts';
import { Guarded } from '../runtime/pipeline/steps.ts';

const WARMUP = 5_000;
const RUNS = Number(process.env.BENCH_RUNS ?? 50_000);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

async function measure(
  name: string,
  prepare: () => unknown,
  call: (state: unknown) => Promise<unknown>,
): Promise<{ median: number; p99: number }> {
  for (let i = 0; i < WARMUP; i++) await call(prepare());
  const samples = new Array<number>(RUNS);
  for (let i = 0; i < RUNS; i++) {
    const state = prepare();
    const start = process.hrtime.bigint();
    await call(state);
    samples[i] = Number(process.hrtime.bigint() - start) / 1000;
  }
  samples.sort((a, b) => a - b);
  const result = { median: percentile(samples, 0.5), p99: percentile(samples, 0.99) };
  console.error(`# ${name}: median ${result.median.toFixed(2)} us, p99 ${result.p99.toFixed(2)} us over ${RUNS} calls`);
  return result;
}

const { host } = newHost(undefined, undefined, false);
const checkHeader = await host.load(await buildFixture('check-header'));
const headerOps = await host.load(await buildFixture('header-ops'));

const check = host.bind({ id: 'bench/check', phase: 'inbound', module: checkHeader, config: { name: 'x-api-key', values: ['demo-key'] } });
await check.warm();
const headers: Record<string, string> = { 'x-api-key': 'demo-key', host: 'api.example.com', 'user-agent': 'bench', accept: '*/*' };
const single = await measure('check-header via PolicyBinding.run', () => makeExchange({ headers }), (ex) =>
  check.run('inbound', ex as ReturnType<typeof makeExchange>),
);

const ops = host.bind({ id: 'bench/ops', phase: 'inbound', module: headerOps });
await ops.warm();
const many: Record<string, string> = { ...headers };
for (let i = 0; i < 20; i++) {
  many[`x-read-${i}`] = `read-value-${i}`;
  many[`x-remove-${i}`] = `remove-value-${i}`;
}
const sixty = await measure('60 header operations via PolicyBinding.run', () => makeExchange({ headers: many }), (ex) =>
  ops.run('inbound', ex as ReturnType<typeof makeExchange>),
);

// Metering cost: the same CPU-bound policy, compiled as the host runs it (metered) and as the SDK built it (not).
const computeWasm = await buildFixture('compute');
const computeModule = await host.load(computeWasm);
const instance = async (compiled: WebAssembly.Module) =>
  PolicyInstance.create({ compiled, policy: 'compute', grants: {}, limits: { ...DEFAULT_LIMITS, cpuMs: 5000 }, initialPages: computeModule.initialPages, extismConfig: {}, logger: new Logger(() => undefined), clocks: processClocks });
const metered = await instance(await computeModule.compiled(DEFAULT_LIMITS.memoryBytes));
const unmetered = await instance(await WebAssembly.compile(computeWasm as Uint8Array<ArrayBuffer>));
const state = (): CallState => ({ view: makeExchange(), effects: null, completeNow: null, failMessage: null, grants: {}, metrics: null, recording: null });
const cpuRuns = 2_000;
const timeCompute = async (label: string, target: PolicyInstance) => {
  const samples: number[] = [];
  for (let i = 0; i < 200; i++) target.callHandler('on_inbound', state());
  for (let i = 0; i < cpuRuns; i++) {
    const s = state();
    const start = process.hrtime.bigint();
    target.callHandler('on_inbound', s);
    samples.push(Number(process.hrtime.bigint() - start) / 1000);
  }
  samples.sort((a, b) => a - b);
  console.error(`# compute policy, ${label}: median ${percentile(samples, 0.5).toFixed(1)} us over ${cpuRuns} calls`);
  return percentile(samples, 0.5);
};
// Alternate the two so that machine noise hits both alike.
let meteredUs = 0;
let unmeteredUs = 0;
for (let round = 0; round < 3; round++) {
  meteredUs += await timeCompute('metered', metered);
  unmeteredUs += await timeCompute('unmetered', unmetered);
}

// The five-policy chain of bench:proxy in a hot loop: what the policies cost without the HTTP around them; and the same
// bindings each behind its `when:` condition, as the gateway runs an entry that has one.
const condition = (source: string, phase: 'inbound' | 'outbound') => {
  const compiled = compileExpression(source, 'condition', { phase, namedValues: new Map(), secretNames: new Set() });
  if (!(compiled instanceof Expression)) throw new Error(`${source}: ${compiled.join('; ')}`);
  return compiled;
};
/** The five bound on `on`, plain and each behind its condition. */
async function fivePolicyChains(on: typeof host): Promise<{ chain: PolicyChain; guarded: PolicyChain }> {
  const chain: PolicyChain = { ...EMPTY_CHAIN, inbound: [], outbound: [] };
  const guarded: PolicyChain = { ...EMPTY_CHAIN, inbound: [], outbound: [] };
  for (const [i, entry] of FIVE_POLICY_CHAIN.entries()) {
    const module = await on.load(await buildFixture(entry.policy));
    const binding = on.bind({
      id: `api:bench/${entry.phase}/${i}`,
      phase: entry.phase,
      module,
      config: entry.config,
      // What the gateway grants a built-in from its policy.json `needs`: the rate limit's counters.
      grants: entry.policy === 'rate-limit' ? { counters: true } : {},
    });
    await binding.warm();
    (chain[entry.phase] as typeof binding[]).push(binding);
    (guarded[entry.phase] as Guarded[]).push(new Guarded(binding, condition(entry.when, entry.phase), null));
  }
  return { chain, guarded };
}
const { chain, guarded } = await fivePolicyChains(host);
const chainHeaders = { host: '127.0.0.1', 'user-agent': 'bench', accept: '*/*', 'x-api-key': API_KEY, origin: ORIGIN };
const backendAnswer = async (): Promise<ResponseState> => ({
  status: 200,
  headers: new Map([['content-type', ['application/json']], ['content-length', ['65']]]),
  body: null,
});
/** The five-policy chain `five` in the hot loop, each policy's milliseconds summed into `policyMs` by binding. */
const timeFive = (label: string, five: PolicyChain, policyMs: Map<string, number>) =>
  measure(label, () => makeExchange({ headers: chainHeaders }), async (ex) => {
    const exchange = ex as ReturnType<typeof makeExchange>;
    await runChain(five, exchange, backendAnswer);
    if (exchange.request.path !== '/v2/items' || !exchange.response.headers.has('x-gatehouse')) throw new Error('the five-policy chain did not act');
    for (const t of exchange.timings) policyMs.set(t.binding, (policyMs.get(t.binding) ?? 0) + t.ms);
  });
const policyMs = new Map<string, number>();
const five = await timeFive('five-policy chain via runChain', chain, policyMs);
const replayedMs = new Map<string, number>();
const fiveReplayed = await timeFive('five-policy chain via runChain, replay on', (await fivePolicyChains(newHost().host)).chain, replayedMs);
// Traffic whose values do not come back in time to be replayed: key-auth, 1,000 keys taken in turn.
const MANY_KEYS = 1000;
const manyKeys = Array.from({ length: MANY_KEYS }, (_, i) => ({ id: `client-${i}`, key: `bench-key-${String(i).padStart(6, '0')}` }));
const keyAuthWith = async (on: typeof host) => {
  const binding = on.bind({ id: 'api:keys/inbound/0', phase: 'inbound', module: await on.load(await buildFixture('key-auth')), config: { keys: manyKeys } });
  await binding.warm();
  return binding;
};
const manyKeysTime = async (label: string, binding: Awaited<ReturnType<typeof keyAuthWith>>) => {
  let next = 0;
  return measure(label, () => makeExchange({ headers: { ...headers, 'x-api-key': manyKeys[next++ % MANY_KEYS]!.key } }), async (ex) => {
    const exchange = ex as ReturnType<typeof makeExchange>;
    await binding.run('inbound', exchange);
    if (exchange.responded || !exchange.variables.has('subscription-id')) throw new Error('key-auth refused a configured key');
  });
};
const manyKeysOff = await manyKeysTime('key-auth, 1,000 keys in turn, replay off', await keyAuthWith(host));
const manyKeysOn = await manyKeysTime('key-auth, 1,000 keys in turn, replay on', await keyAuthWith(newHost().host));
// The floor under the five: the same bindings' places in a chain, each a module that returns CONTINUE at once.
const noopModule = await host.load(
  await rawModule({
    descriptor: '{"name":"noop","version":"1"}',
    exports: '(func (export "on_inbound") (result i32) (i32.const 0)) (func (export "on_outbound") (result i32) (i32.const 0))',
  }),
);
const noopChain: PolicyChain = { ...EMPTY_CHAIN, inbound: [], outbound: [] };
for (const [i, entry] of FIVE_POLICY_CHAIN.entries()) {
  const binding = host.bind({ id: `api:noop/${entry.phase}/${i}`, phase: entry.phase, module: noopModule });
  await binding.warm();
  (noopChain[entry.phase] as typeof binding[]).push(binding);
}
const fiveNoop = await measure('five no-op modules via runChain', () => makeExchange({ headers: chainHeaders }), async (ex) => {
  const exchange = ex as ReturnType<typeof makeExchange>;
  await runChain(noopChain, exchange, backendAnswer);
  if (exchange.timings.length !== FIVE_POLICY_CHAIN.length) throw new Error('the no-op chain did not run its five calls');
});
const fiveWhen = await measure('five-policy chain, a when: on each, via runChain', () => makeExchange({ headers: chainHeaders }), async (ex) => {
  const exchange = ex as ReturnType<typeof makeExchange>;
  await runChain(guarded, exchange, backendAnswer);
  if (exchange.request.path !== '/v2/items' || !exchange.response.headers.has('x-gatehouse')) throw new Error('the five-policy chain did not act');
});

// One condition in a hot loop: a sample a call would be mostly the clock's own cost, so the mean of a batch.
const evalUs = (source: string) => {
  const expression = condition(source, 'inbound');
  const exchange = makeExchange({ headers: chainHeaders });
  const batch = 200_000;
  let best = Infinity;
  for (let round = 0; round < 5; round++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < batch; i++) if (!expression.holds(exchange)) throw new Error(`${source} does not hold`);
    best = Math.min(best, Number(process.hrtime.bigint() - start) / 1000 / batch);
  }
  console.error(`# condition ${source}: ${best.toFixed(3)} us an evaluation (best of 5 batches of ${batch})`);
  return best;
};
// The boundary alone, with a module of two functions (bytes below): `calls(n)` calls import h.f(i, 5, 7) n times and
// sums the results; `nothing()` returns 0.
//   (func (export "calls") (param $n i32) (result i32) (local $i i32) (local $s i32)
//     (loop $l (local.set $s (i32.add (local.get $s) (call $f (local.get $i) (i32.const 5) (i32.const 7))))
//       (local.set $i (i32.add (local.get $i) (i32.const 1))) (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
//     (local.get $s))
const BOUNDARY_MODULE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x11, 0x03, 0x60, 0x03, 0x7f, 0x7f, 0x7f, 0x01, 0x7f, 0x60, 0x01, 0x7f, 0x01,
  0x7f, 0x60, 0x00, 0x01, 0x7f, 0x02, 0x07, 0x01, 0x01, 0x68, 0x01, 0x66, 0x00, 0x00, 0x03, 0x03, 0x02, 0x01, 0x02, 0x07, 0x13, 0x02,
  0x05, 0x63, 0x61, 0x6c, 0x6c, 0x73, 0x00, 0x01, 0x07, 0x6e, 0x6f, 0x74, 0x68, 0x69, 0x6e, 0x67, 0x00, 0x02, 0x0a, 0x2b, 0x02, 0x24,
  0x01, 0x02, 0x7f, 0x03, 0x40, 0x20, 0x02, 0x20, 0x01, 0x41, 0x05, 0x41, 0x07, 0x10, 0x00, 0x6a, 0x21, 0x02, 0x20, 0x01, 0x41, 0x01,
  0x6a, 0x21, 0x01, 0x20, 0x01, 0x20, 0x00, 0x49, 0x0d, 0x00, 0x0b, 0x20, 0x02, 0x0b, 0x04, 0x00, 0x41, 0x00, 0x0b,
]);
let importCalls = 0;
const boundary = new WebAssembly.Instance(new WebAssembly.Module(BOUNDARY_MODULE), {
  h: { f: (_i: number, b: number) => (importCalls++, b) },
}).exports as { calls: (n: number) => number; nothing: () => number };
const boundaryNs = (label: string, batch: (n: number) => void) => {
  const n = 2_000_000;
  let best = Infinity;
  for (let round = 0; round < 5; round++) {
    const start = process.hrtime.bigint();
    batch(n);
    best = Math.min(best, Number(process.hrtime.bigint() - start) / n);
  }
  console.error(`# ${label}: ${best.toFixed(1)} ns a call (best of 5 loops of ${n})`);
  return best;
};
const importNs = boundaryNs('wasm to a JavaScript import', (n) => {
  if (boundary.calls(n) !== 5 * n) throw new Error('the boundary module did not call its import');
});
const exportNs = boundaryNs('JavaScript to a wasm export', (n) => {
  for (let i = 0; i < n; i++) boundary.nothing();
});
if (importCalls !== 5 * 2_000_000) throw new Error(`the import was called ${importCalls} times`);

const methodUs = evalUs("request.method != 'OPTIONS'");
const headerUs = evalUs("request.headers[?'origin'].orValue('') != ''");
const calls = WARMUP + RUNS;
const perPolicy = (ms: Map<string, number>) =>
  FIVE_POLICY_CHAIN.map((e, i) => `${e.policy} ${((ms.get(`api:bench/${e.phase}/${i}`)! * 1000) / calls).toFixed(2)} us`).join(', ');
console.error(`# five-policy chain, mean per policy: ${perPolicy(policyMs)}`);
console.error(`# the same, replay on: ${perPolicy(replayedMs)}`);

console.log(`policy-call-median-us: ${single.median.toFixed(2)}`);
console.log(`policy-60-header-ops-median-us: ${sixty.median.toFixed(2)}`);
console.log(`metering-overhead-ratio: ${(meteredUs / unmeteredUs).toFixed(2)}`);
console.log(`five-policy-chain-median-us: ${five.median.toFixed(2)}`);
console.log(`five-policy-chain-replayed-median-us: ${fiveReplayed.median.toFixed(2)}`);
console.log(`key-auth-many-keys-median-us: ${manyKeysOff.median.toFixed(2)}`);
console.log(`key-auth-many-keys-replay-median-us: ${manyKeysOn.median.toFixed(2)}`);
console.log(`five-policy-conditions-median-us: ${fiveWhen.median.toFixed(2)}`);
console.log(`five-noop-chain-median-us: ${fiveNoop.median.toFixed(2)}`);
console.log(`condition-eval-us: ${methodUs.toFixed(3)}`);
console.log(`condition-header-eval-us: ${headerUs.toFixed(3)}`);
console.log(`wasm-import-call-ns: ${importNs.toFixed(1)}`);
console.log(`wasm-export-call-ns: ${exportNs.toFixed(1)}`);
