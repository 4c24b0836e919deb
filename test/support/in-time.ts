// Tests that a call ended in time, on a machine whose host may pause it.
//
// The virtual machine these tests run on is paused by its host for about 100 ms at a time when it is busy (its CPU
// quota is used up): `npm run bench:pauses` counts the pauses (BENCHMARKS.md, issue 17, fourteenth session: none idle
// or with one core busy, some of about 100 ms with both busy). The guest kernel reports no steal time, so a pause is
// counted as CPU time of whichever thread was running. No check inside the process runs while the machine is paused;
// a call past its halfway point is charged the pause and stopped at its first check after it, about 100 ms late by
// the clock and by the process's CPU time alike. A call that overruns because a check is missing overruns every
// time; a pause of the host does not come twice running within a call of a few tens of milliseconds. So a bound on
// how late a call ended is asserted on up to ATTEMPTS measurements, each of a call like the first (of a binding made
// afresh, or of one warmed the same way), and holds when one of them is within it.

import assert from 'node:assert/strict';
import process from 'node:process';

/** What `run` resolved to, its wall-clock time and the process's CPU time (every thread) while it ran, in ms. */
export async function timed<T>(run: () => Promise<T>): Promise<{ value: T; tookMs: number; cpuMs: number }> {
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  const value = await run();
  const cpu = process.cpuUsage(cpuBefore);
  return { value, tookMs: performance.now() - started, cpuMs: (cpu.user + cpu.system) / 1000 };
}

export const ATTEMPTS = 3;

/**
 * Runs `measure` until `overrun` finds a measurement within its bound (returns undefined), ATTEMPTS times at most, and
 * returns that measurement. Fails naming every overrun when none was within. `measure` asserts the bounds a pause
 * cannot break (the call was stopped, and not before its budget) itself.
 */
export async function oneWithin<T>(measure: () => Promise<T>, overrun: (measured: T) => string | undefined): Promise<T> {
  const overruns: string[] = [];
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const measured = await measure();
    const late = overrun(measured);
    if (late === undefined) return measured;
    overruns.push(late);
    // Said, not hidden: how often a call is measured again shows in the suite's output.
    if (attempt + 1 < ATTEMPTS) console.log(`# measured again (attempt ${attempt + 1} of ${ATTEMPTS} was late): ${late}`);
  }
  assert.fail(`${ATTEMPTS} measurements, each past its bound: ${overruns.join('; ')}`);
}
