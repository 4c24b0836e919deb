// The CPU budget's arithmetic (runtime/policy-host/call-budget.ts), read against clocks the test sets: when the CPU
// time is read, when a call is stopped, by how much a pause is forgiven, and the fuel given between checks. Exact
// boundaries are tested here because no real clock can land on them; test/cpu-budget.test.ts tests the same budget
// with the process's own clocks and a real module, paused and running away.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  CallBudget,
  FUEL_CHECK_INTERVAL_MS,
  MIN_FUEL_REFILL,
  PAUSED_CEILING_BUDGETS,
} from '../runtime/policy-host/call-budget.ts';
import { CallAbort } from '../runtime/policy-host/errors.ts';
import { FIRST_FUEL, FUEL_PER_CHECK } from '../runtime/policy-host/instrument.ts';
import { processClocks } from '../runtime/adapters/process-clocks.ts';

/** Clocks the test moves by hand; counts the CPU time's reads (each costs a system call on the real clock). */
class TestClocks {
  wall = 1000;
  cpu = 5_000_000;
  cpuReads = 0;
  wallMs = () => this.wall;
  cpuUs = () => {
    this.cpuReads++;
    return this.cpu;
  };
}

const BUDGET = 40;

function started(budgetMs = BUDGET) {
  const clocks = new TestClocks();
  const budget = new CallBudget(clocks);
  budget.start(budgetMs);
  return { clocks, budget };
}

/** The call is stopped for its budget: CallAbort with reason cpu-budget, naming the budget. */
function assertStopped(check: () => void, what: string) {
  assert.throws(check, (err: unknown) => {
    assert.ok(err instanceof CallAbort, `${what}: ${String(err)}`);
    assert.equal(err.reason, 'cpu-budget');
    assert.equal(err.message, `call ran past its CPU budget of ${BUDGET} ms`);
    return true;
  }, what);
}

describe('the budget', () => {
  test('up to half the budget by the clock, a check reads no CPU time and never stops the call', () => {
    const { clocks, budget } = started();
    for (const at of [0, 1, BUDGET / 4, BUDGET / 2]) {
      clocks.wall = 1000 + at;
      clocks.cpu += 1_000_000; // whatever the CPU clock says
      budget.check();
    }
    assert.equal(clocks.cpuReads, 0);
  });

  test('past half, the CPU time is read once, and the next check is due half a budget later', () => {
    const { clocks, budget } = started();
    clocks.wall = 1000 + BUDGET / 2 + 1;
    budget.check();
    assert.equal(clocks.cpuReads, 1);
    clocks.wall += BUDGET / 2;
    budget.check();
    assert.equal(clocks.cpuReads, 1, 'no read until half a budget after the halfway read');
    clocks.wall += 0.5;
    budget.check();
    assert.equal(clocks.cpuReads, 2);
  });

  test('a check found late (after a pause at half) gives the call half a budget from then', () => {
    const { clocks, budget } = started();
    clocks.wall = 1000 + 2 * BUDGET; // first check long after half: paused
    budget.check();
    clocks.wall += BUDGET / 2;
    budget.check();
    assert.equal(clocks.cpuReads, 1, 'no CPU read until half a budget after the late check');
    clocks.wall += 0.5;
    budget.check();
    assert.equal(clocks.cpuReads, 2);
  });

  test('the call is stopped when half the budget by the clock and the rest in CPU time are used, not before', () => {
    const { clocks, budget } = started();
    clocks.wall = 1000 + BUDGET / 2 + 1;
    budget.check();
    // 19.999 ms of CPU since: 39.999 ms used, and the next check is due in what is left (0.001 ms).
    clocks.wall += BUDGET / 2 + 0.5;
    clocks.cpu += (BUDGET / 2) * 1000 - 1;
    budget.check();
    const reads = clocks.cpuReads;
    clocks.wall += 0.0005;
    budget.check();
    assert.equal(clocks.cpuReads, reads, 'not yet due');
    clocks.wall += 0.001;
    clocks.cpu += 1; // exactly the budget
    assertStopped(() => budget.check(), 'at exactly its budget');
  });

  test('a paused call is not stopped for time it did not run, up to the ceiling of wall-clock budgets and not past it', () => {
    const { clocks, budget } = started();
    const ceiling = 1000 + BUDGET * PAUSED_CEILING_BUDGETS;
    clocks.wall = 1000 + BUDGET / 2 + 1;
    budget.check();
    // A tenth of a millisecond of CPU every 5 ms: never near the budget.
    for (let at = clocks.wall + 5; at < ceiling; at += 5) {
      clocks.wall = at;
      clocks.cpu += 100;
      budget.check();
    }
    clocks.wall = ceiling;
    budget.check();
    // However much of its CPU budget is left, the next check is due at the ceiling, where the call is stopped.
    clocks.wall = ceiling + 0.5;
    assertStopped(() => budget.check(), 'just past the ceiling');

    // A check that lands exactly on the ceiling, past its deadline, stops the call there.
    const late = started();
    late.clocks.wall = 1000 + BUDGET / 2 + 1;
    late.budget.check();
    late.clocks.wall = ceiling - 1;
    late.clocks.cpu += 19_000; // 39 ms used: due 1 ms later, at the ceiling
    late.budget.check();
    late.clocks.wall = ceiling - 0.5;
    late.budget.check();
    assert.equal(late.clocks.cpuReads, 2, 'not due before the ceiling');
    late.clocks.wall = ceiling;
    late.budget.check();
    late.clocks.wall = ceiling + 0.001;
    assertStopped(() => late.budget.check(), 'past the ceiling');
  });

  test('each call starts afresh: its own start, its own halfway read', () => {
    const { clocks, budget } = started();
    clocks.wall = 1000 + BUDGET / 2 + 1;
    budget.check();
    clocks.wall += BUDGET;
    clocks.cpu += BUDGET * 1000;
    assertStopped(() => budget.check(), 'the first call');
    clocks.wall += 1000;
    budget.start(BUDGET);
    clocks.wall += BUDGET / 2;
    budget.check();
    assert.equal(clocks.cpuReads, 2, 'no read in the new call before its halfway point');
    clocks.wall += 1;
    clocks.cpu += 1_000_000;
    budget.check();
    clocks.wall += BUDGET / 2 - 1;
    budget.check();
    assert.equal(clocks.cpuReads, 3);
  });
});

describe('fuel between checks', () => {
  test('starts at FIRST_FUEL; doubles after short intervals up to FUEL_PER_CHECK; quarters after long ones down to MIN_FUEL_REFILL', () => {
    const { clocks, budget } = started(10_000);
    const refills: number[] = [];
    for (let i = 0; i < 6; i++) {
      clocks.wall += FUEL_CHECK_INTERVAL_MS / 16; // binary fractions: the clock stays exact for the edges below
      refills.push(budget.fuelCheck());
    }
    assert.deepEqual(refills, [2 * FIRST_FUEL, 4 * FIRST_FUEL, 8 * FIRST_FUEL, FUEL_PER_CHECK, FUEL_PER_CHECK, FUEL_PER_CHECK]);
    // Between an eighth of the interval and the interval, inclusive: unchanged.
    for (const took of [FUEL_CHECK_INTERVAL_MS / 8, FUEL_CHECK_INTERVAL_MS / 2, FUEL_CHECK_INTERVAL_MS]) {
      clocks.wall += took;
      assert.equal(budget.fuelCheck(), FUEL_PER_CHECK, `after ${took} ms`);
    }
    const down: number[] = [];
    for (let i = 0; i < 6; i++) {
      clocks.wall += FUEL_CHECK_INTERVAL_MS + 0.001;
      down.push(budget.fuelCheck());
    }
    assert.deepEqual(down, [FUEL_PER_CHECK / 4, FUEL_PER_CHECK / 16, FUEL_PER_CHECK / 64, MIN_FUEL_REFILL, MIN_FUEL_REFILL, MIN_FUEL_REFILL]);
    budget.start(10_000);
    clocks.wall += FUEL_CHECK_INTERVAL_MS / 2;
    assert.equal(budget.fuelCheck(), FIRST_FUEL, 'a new call starts again from FIRST_FUEL');
    // The edges, below the largest refill: exactly an eighth of the interval, and exactly the interval, change nothing.
    clocks.wall += FUEL_CHECK_INTERVAL_MS / 8;
    assert.equal(budget.fuelCheck(), FIRST_FUEL, 'an eighth of the interval');
    clocks.wall += FUEL_CHECK_INTERVAL_MS;
    assert.equal(budget.fuelCheck(), FIRST_FUEL, 'the interval');
  });

  test('a call whose memory is faulted in starts at FUEL_PER_CHECK; a growth brings the refills back to FIRST_FUEL at most', () => {
    const { clocks, budget } = started(10_000);
    assert.equal(budget.lengthenIntervals(), FUEL_PER_CHECK);
    clocks.wall += FUEL_CHECK_INTERVAL_MS / 2;
    assert.equal(budget.fuelCheck(), FUEL_PER_CHECK, 'kept after an interval of normal length');
    assert.equal(budget.shortenIntervals(), FIRST_FUEL);
    clocks.wall += FUEL_CHECK_INTERVAL_MS / 2;
    assert.equal(budget.fuelCheck(), FIRST_FUEL, 'the refill after the growth');
    clocks.wall += FUEL_CHECK_INTERVAL_MS / 16;
    assert.equal(budget.fuelCheck(), 2 * FIRST_FUEL, 'and it doubles again from there after a short interval');
    assert.equal(budget.shortenIntervals(), FIRST_FUEL);
    clocks.wall += FUEL_CHECK_INTERVAL_MS + 1;
    assert.equal(budget.fuelCheck(), FIRST_FUEL / 4, 'or quarters after a long one');
    assert.equal(budget.shortenIntervals(), FIRST_FUEL / 4, 'shortening never lengthens');
  });

  test('a fuel check checks the budget', () => {
    const { clocks, budget } = started();
    clocks.wall = 1000 + BUDGET / 2 + 1;
    budget.fuelCheck();
    assert.equal(clocks.cpuReads, 1);
    clocks.wall = 1000 + BUDGET * PAUSED_CEILING_BUDGETS;
    assertStopped(() => budget.fuelCheck(), 'at the ceiling, through a fuel check');
  });
});

test("the process's clocks: wall-clock milliseconds, and the process's user and system CPU time, which a sleep does not spend", async () => {
  const wall = processClocks.wallMs();
  assert.ok(Math.abs(wall - performance.now()) < 50, `${wall} against performance.now()`);
  // Read between two reads of the clock, cpuUsage's user + system lies between them.
  const before = processClocks.cpuUs();
  const { user, system } = process.cpuUsage();
  const after = processClocks.cpuUs();
  assert.ok(system > 0, 'the process has spent system time by now');
  assert.ok(before <= user + system && user + system <= after, `${before} <= ${user + system} <= ${after}`);
  // The process's helper threads (the compiler, the collector) may work on while this one sleeps: a clean-clone CI
  // run on a slow machine counted 126 ms of CPU in 200 ms asleep. A clock of wall time would count all of it.
  const asleepFrom = performance.now();
  await new Promise((resolve) => setTimeout(resolve, 400));
  const asleepUs = (performance.now() - asleepFrom) * 1000;
  const slept = processClocks.cpuUs() - after;
  assert.ok(slept < 0.75 * asleepUs, `${(asleepUs / 1000).toFixed(0)} ms asleep counted ${slept} us of CPU`);
});
