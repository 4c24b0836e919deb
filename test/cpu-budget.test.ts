// The CPU budget counts time a call runs, not time the process is stopped: a call paused by the machine (descheduled,
// a container throttled at its CPU limit) must not fail for it. Found by npm run soak: one request in a million failed
// with `cpu-budget` on a shared machine, in a rate-limit call that takes microseconds.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PolicyFailure, PolicyHost } from '../runtime/policy-host/index.ts';
import { GatewayEffects } from '../runtime/pipeline/effects.ts';
import { MemoryCounterStore } from '../runtime/state/counter-store.ts';
import { Logger, type LogRecord } from '../runtime/telemetry/logger.ts';
import { oneWithin, timed } from './support/in-time.ts';
import { buildFixture, makeExchange, newHost, wat, watDescriptor } from './support/policies.ts';
import { processClocks } from '../runtime/adapters/process-clocks.ts';

const BUDGET_MS = 200;
const PAUSE_MS = 250;

/**
 * A module that runs (by the clock: `now`) until `before` ms into the call, then counts down from a million (past
 * several budget checks, each at most 65,536 instructions apart, however long the process waited for a core before),
 * logs "pause", then runs `after` ms more. The test's log sink holds the call still when the line comes, so the pause
 * lands inside the call, at a known point.
 */
async function runLogPauseRun(before: number, after: number): Promise<Uint8Array> {
  const d = watDescriptor('{"name":"raw-run-pause-run","version":"1"}');
  return wat(`(module
    ${d.imports}
    (import "gatehouse:host/v1" "now" (func $now (result f64)))
    (import "gatehouse:host/v1" "log" (func $log (param i32 i32 i32)))
    (memory (export "memory") 1)
    ${d.data}
    (data (i32.const 2048) "pause")
    ${d.func}
    (func $run (param $ms f64)
      (local $until f64)
      (local.set $until (f64.add (call $now) (local.get $ms)))
      (loop $spin (br_if $spin (f64.lt (call $now) (local.get $until)))))
    (func $count (param $n i32)
      (loop $next
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br_if $next (i32.gt_s (local.get $n) (i32.const 0)))))
    (func (export "on_inbound") (result i32)
      (call $run (f64.const ${before}))
      (call $count (i32.const 1000000))
      (call $log (i32.const 2) (i32.const 2048) (i32.const 5))
      (call $run (f64.const ${after}))
      (i32.const 0))
  )`);
}


/** One inbound call: how it ended (null, or what it threw), and how long it took by the clock and in CPU time. */
async function measuredRun(binding: { run: (phase: 'inbound', exchange: ReturnType<typeof makeExchange>) => Promise<unknown> }) {
  const { value: err, tookMs, cpuMs } = await timed(() =>
    binding.run('inbound', makeExchange()).then(
      () => null,
      (e: unknown) => e,
    ),
  );
  return { err, tookMs, cpuMs };
}
test('a call paused for longer than its budget is not stopped for the time it did not run', async () => {
  // The pause comes after the call ran past half its budget (by the clock) and a check found it, where the host starts
  // reading CPU time, and lasts longer than the whole budget: a budget counted in wall-clock time from there fails this
  // call. Counted in CPU time, the call used about 120 ms (running until 110 ms, the countdown, and 10 ms after the
  // pause) of its 200 ms. All of it, pause included (about 370 ms, more when the machine is busy), is well within the
  // ceiling of three budgets (600 ms) of wall-clock time a paused call may take. The pause blocks the thread (Atomics.wait) rather than stopping the
  // process with a signal from another one: it uses no CPU time, as a stop does, and it cannot miss the call.
  let pauses = 0;
  const logs: LogRecord[] = [];
  const host = new PolicyHost({
    clocks: processClocks,
    logger: new Logger((line) => {
      const record = JSON.parse(line) as LogRecord;
      logs.push(record);
      if (record.msg !== 'pause') return;
      const unchanged = Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, PAUSE_MS);
      if (unchanged === 'timed-out') pauses++;
    }, 'debug'),
    effects: new GatewayEffects({ counters: new MemoryCounterStore() }),
  });
  const module = await host.load(await runLogPauseRun(BUDGET_MS / 2 + 10, 10));
  // The first calls of a module make its code hot, and the engine compiles it again on other threads of this process,
  // which the budget counts (the process's CPU time: about 130 ms of it during the first call, under Deno). A binding
  // with room for that runs the module first; the compiled code is the module's, shared by the binding measured.
  const warming = host.bind({ id: 'paused/warming', phase: 'inbound', module, config: {}, limits: { cpuMs: 10 * BUDGET_MS } });
  await warming.run('inbound', makeExchange());
  const binding = host.bind({ id: 'paused/run', phase: 'inbound', module, config: {}, limits: { cpuMs: BUDGET_MS } });
  await binding.warm();
  pauses = 0;

  const { err, tookMs, cpuMs } = await measuredRun(binding);
  assert.equal(pauses, 1, `the pause came inside the call (log lines: ${JSON.stringify(logs)})`);
  assert.ok(tookMs > BUDGET_MS + 50, `the call took longer than its budget by the clock: ${tookMs.toFixed(1)} ms`);
  assert.equal(err, null, `a call that used ${cpuMs.toFixed(1)} ms of CPU in ${tookMs.toFixed(1)} ms is not stopped: ${String(err)}`);
  assert.ok(cpuMs < BUDGET_MS, `and less than its budget in CPU time: ${cpuMs.toFixed(1)} ms`);
});

test('a call that runs on past its budget is still stopped soon after it', async () => {
  const { host } = newHost();
  const module = await host.load(await buildFixture('adversarial'));
  const binding = host.bind({ id: 'runaway/loop', phase: 'inbound', module, config: { mode: 'loop' }, limits: { cpuMs: 20 } });
  await binding.warm();
  const runaway = async () => {
    const { err, tookMs, cpuMs } = await measuredRun(binding);
    assert.ok(err instanceof PolicyFailure && err.reason === 'cpu-budget', `stopped for its budget: ${String(err)}`);
    return { tookMs, cpuMs };
  };
  // The first runaway call makes the loop hot: the engine compiles it again, optimised, on other threads of this
  // process meanwhile, and the budget (the process's CPU time, every thread) counts that too. The second is measured.
  await runaway();
  await oneWithin(
    async () => {
      const measured = await runaway();
      // Not before its budget: once it ran half its budget of CPU after its halfway point by the clock, or after three
      // budgets of wall-clock time.
      const { tookMs, cpuMs } = measured;
      assert.ok(cpuMs >= 10 || tookMs >= 60, `a 20 ms budget stopped a loop early: ${cpuMs.toFixed(1)} ms of CPU in ${tookMs.toFixed(1)} ms`);
      return measured;
    },
    // Soon after its budget in CPU time: about 20 ms, and 25 ms for the process's other threads (collection), which the
    // budget counts as well (41.6 ms in all was seen under Deno on a loaded machine). Not by the clock: a loaded machine
    // can keep a runnable process waiting for a core for tens of milliseconds, inside the call or not (110 ms for this
    // call was seen), and no check runs while it waits. Measured again when it ended late (support/in-time.ts).
    ({ tookMs, cpuMs }) => (cpuMs < 45 || tookMs < 45 ? undefined : `a 20 ms budget stopped a loop after ${cpuMs.toFixed(1)} ms of CPU, ${tookMs.toFixed(1)} ms`),
  );
});

/**
 * A module whose handler counts down from `iterations` (a loop of 8 instructions a turn: the fuel it spends), after
 * growing its memory by one page on its first call when `growOnce`.
 */
async function countingModule(iterations: number, growOnce: boolean): Promise<Uint8Array> {
  const d = watDescriptor(`{"name":"raw-count-${growOnce ? 'grow' : 'plain'}","version":"1"}`);
  return wat(`(module
    ${d.imports}
    (memory (export "memory") 2)
    (global $grown (mut i32) (i32.const 0))
    ${d.data}
    ${d.func}
    (func (export "on_inbound") (result i32)
      (local $n i32)
      ${growOnce ? '(if (i32.eqz (global.get $grown)) (then (drop (memory.grow (i32.const 1))) (global.set $grown (i32.const 1))))' : ''}
      (local.set $n (i32.const ${iterations}))
      (loop $next
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br_if $next (i32.gt_s (local.get $n) (i32.const 0))))
      (i32.const 0))
  )`);
}

/** A host whose clock counts its readings: a call reads it once to start its budget, and once at every fuel check. */
function countingHost() {
  const clock = { readings: 0 };
  const { host } = newHost(undefined, { wallMs: () => (++clock.readings, performance.now()), cpuUs: () => processClocks.cpuUs() });
  return { host, clock };
}

test('a call whose memory the host has faulted in runs 40,000 instructions without a fuel check (each reads the clock)', async () => {
  const { host, clock } = countingHost();
  const module = await host.load(await countingModule(5_000, false));
  const binding = host.bind({ id: 'faulted/plain', phase: 'inbound', module, config: {} });
  await binding.warm();
  for (let call = 0; call < 3; call++) {
    clock.readings = 0;
    await binding.run('inbound', makeExchange());
    // With the short first interval a fresh memory needs (4,096), this call made three checks.
    assert.equal(clock.readings, 1, `call ${call}: the budget's start, and no check`);
  }
});

test('after its memory grows, a call reaches a check within the short interval; the host faults the new page in before the next call', async () => {
  const { host, clock } = countingHost();
  const module = await host.load(await countingModule(5_000, true));
  const binding = host.bind({ id: 'faulted/grown', phase: 'inbound', module, config: {} });
  await binding.warm();
  clock.readings = 0;
  await binding.run('inbound', makeExchange());
  assert.ok(clock.readings >= 2, `the call that grew the memory reached a check before its end: ${clock.readings} readings`);
  // The next call faults the new page in first (reading the clock to bound the time it takes) and then runs unchecked.
  clock.readings = 0;
  await binding.run('inbound', makeExchange());
  assert.ok(clock.readings > 1 && clock.readings <= 3, `the call after the growth faults the page in: ${clock.readings} readings`);
  clock.readings = 0;
  await binding.run('inbound', makeExchange());
  assert.equal(clock.readings, 1, 'and the one after it finds nothing fresh: the budget start only');
});
