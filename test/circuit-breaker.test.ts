// A binding that keeps running into its CPU budget or a cap stops being called for a while (circuit-breaker.ts), so
// that it cannot hold the event loop every other API shares.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PolicyConfigError, PolicyFailure, type BreakerSettings } from '../runtime/policy-host/index.ts';
import { hostileModule, layout, SCRATCH } from './support/hostile-modules.ts';
import { makeExchange, newHost } from './support/policies.ts';

/** Loops forever when the request has `x-loop`, traps when it has `x-trap`, else does nothing. */
async function moody() {
  const [loop, trap] = layout(['x-loop', 'x-trap']);
  return hostileModule({
    name: 'moody',
    data: ['x-loop', 'x-trap'],
    inbound: `
      (if (i32.ge_s (call $get (i32.const 5) (i32.const ${loop!.ptr}) (i32.const ${loop!.len}) (i32.const ${SCRATCH}) (i32.const 0)) (i32.const 0))
        (then (loop $forever (br $forever))))
      (if (i32.ge_s (call $get (i32.const 5) (i32.const ${trap!.ptr}) (i32.const ${trap!.len}) (i32.const ${SCRATCH}) (i32.const 0)) (i32.const 0))
        (then unreachable))
      (i32.const 0)`,
  });
}

async function setup(circuitBreaker?: Partial<BreakerSettings>) {
  const t = newHost();
  const module = await t.host.load(await moody());
  const binding = t.host.bind({ id: 'api:noisy/inbound/0', phase: 'inbound', module, limits: { cpuMs: 5 }, circuitBreaker });
  await binding.warm();
  const run = async (headers: Record<string, string> = {}) => {
    const err = await binding.run('inbound', makeExchange({ headers })).then(
      () => null,
      (e: unknown) => e,
    );
    if (err !== null) assert.ok(err instanceof PolicyFailure, String(err));
    return { reason: (err as PolicyFailure | null)?.reason ?? 'ok', err: err as PolicyFailure | null };
  };
  const breakerLines = () => t.logs.filter((r) => /policy circuit/.test(String(r.msg)));
  return { t, binding, run, breakerLines };
}

describe('circuit breaker', () => {
  test('three budget failures open it: later calls fail at once, counted, and the opening is logged once', async () => {
    const { t, binding, run, breakerLines } = await setup();
    for (let i = 0; i < 3; i++) assert.equal((await run({ 'x-loop': '1' })).reason, 'cpu-budget');
    const refused = [];
    for (let i = 0; i < 20; i++) refused.push(await run({ 'x-loop': '1' }));
    assert.ok(refused.every((r) => r.reason === 'circuit-open'), refused.map((r) => r.reason).join(','));
    // Requests that would not loop are refused too while it is open: the policy is not called at all.
    assert.equal((await run()).reason, 'circuit-open');
    assert.match(refused[0]!.err!.message, /not called: it ran into its limits too often; the next trial call is in \d+ ms/);
    // Refused calls do not run the module: only the three that failed were calls (a bound on their time, 5 ms, failed
    // on a loaded machine and proved nothing the count does not).
    assert.equal(binding.stats.calls, 3);
    assert.equal(binding.stats.failures, 24);
    const lines = breakerLines();
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.level, 'error');
    assert.equal(lines[0]!.reason, 'cpu-budget');
    assert.equal(lines[0]!.binding, 'api:noisy/inbound/0');
    const metrics = t.host.metrics.render();
    assert.match(metrics, /gatehouse_policy_circuit_opens_total\{policy="moody"\} 1/);
    assert.match(metrics, /gatehouse_policy_failures_total\{policy="moody",reason="circuit-open"\} 21/);
  });

  test('after the cool-down one trial call runs: a budget failure opens it again, a success closes it', async () => {
    const { run, breakerLines } = await setup({ coolDownMs: 150 });
    for (let i = 0; i < 3; i++) await run({ 'x-loop': '1' });
    assert.equal((await run({ 'x-loop': '1' })).reason, 'circuit-open');
    await new Promise((r) => setTimeout(r, 160));
    assert.equal((await run({ 'x-loop': '1' })).reason, 'cpu-budget', 'the trial ran');
    assert.equal((await run()).reason, 'circuit-open', 'and opened it again at once');
    await new Promise((r) => setTimeout(r, 160));
    assert.equal((await run()).reason, 'ok', 'a trial that succeeds');
    assert.equal((await run()).reason, 'ok', 'closes it');
    assert.deepEqual(
      breakerLines().map((r) => r.msg),
      [
        'policy circuit opened: calls fail at once until a trial call succeeds',
        'policy circuit opened again: its trial call failed',
        'policy circuit closed: its trial call succeeded',
      ],
    );
  });

  test('failures that cost microseconds (traps) do not count; failures outside the window do not add up', async () => {
    const { run } = await setup({ windowMs: 300 });
    for (let i = 0; i < 10; i++) assert.equal((await run({ 'x-trap': '1' })).reason, 'trap');
    assert.equal((await run({ 'x-loop': '1' })).reason, 'cpu-budget');
    assert.equal((await run({ 'x-loop': '1' })).reason, 'cpu-budget');
    await new Promise((r) => setTimeout(r, 320));
    assert.equal((await run({ 'x-loop': '1' })).reason, 'cpu-budget', 'the first two fell out of the window');
    assert.equal((await run()).reason, 'ok');
  });

  test('failures: 0 turns it off', async () => {
    const { run } = await setup({ failures: 0 });
    for (let i = 0; i < 6; i++) assert.equal((await run({ 'x-loop': '1' })).reason, 'cpu-budget');
  });

  test('bad settings are refused when the policy is bound, naming each', async () => {
    const t = newHost();
    const module = await t.host.load(await moody());
    assert.throws(
      () => t.host.bind({ id: 'b', phase: 'inbound', module, circuitBreaker: { failures: -1, windowMs: 1.5, coolDownMs: 0 } }),
      (err: unknown) =>
        err instanceof PolicyConfigError &&
        err.problems.length === 3 &&
        /circuitBreaker\.failures: must be an integer from 0 to 1000 \(got -1\)/.test(err.message) &&
        /circuitBreaker\.windowMs/.test(err.message) &&
        /circuitBreaker\.coolDownMs/.test(err.message),
    );
  });
});
