// npm run bench:policy — host overhead of policy calls, measured on real compiled policies.
//
// Prints `name: value` lines (medians in microseconds) so a script can read them:
//   policy-call-median-us           one call of check-header (a present, valid key), through PolicyBinding.run
//   policy-60-header-ops-median-us  one call doing 20 header reads, 20 sets and 20 removes
// Each figure is PolicyBinding.run: journal, instance lock, metering, the Extism call and every host function.

import { buildFixture, makeExchange, newHost } from '../test/support/policies.ts';

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

const { host } = newHost();
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

console.log(`policy-call-median-us: ${single.median.toFixed(2)}`);
console.log(`policy-60-header-ops-median-us: ${sixty.median.toFixed(2)}`);
