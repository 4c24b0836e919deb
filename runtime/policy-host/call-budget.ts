// The CPU budget of one policy call: when it is checked, what it counts, and how much fuel the metered module is given
// between two checks (instrument.ts spends the fuel; instance.ts answers its checks and host functions' with this).
//
// Deadlines are wall-clock time, cheap to read on every check (a check comes every few tens of microseconds while a
// call runs); but wall time also passes while the process is not running the call: descheduled on a busy machine,
// throttled at a container's CPU limit (CFS periods of 100 ms). A call that takes microseconds would then fail (a 500)
// for time it never used. So the CPU time is read once a call passes half its budget in wall-clock time (about a
// microsecond, paid only by such calls): up to there it ran for half the budget at most (the check that found the
// halfway point passed came right after it, or right after a pause). From then on the deadline moves by what is left
// of the budget in CPU time, and the call is stopped once that is used up; or after PAUSED_CEILING_BUDGETS of
// wall-clock time, however little it ran. The CPU time is the process's (every thread, garbage collection included),
// which errs towards stopping.
//
// A virtual machine paused by its host shows the pause to the guest as CPU time of the thread that was running, when the
// host reports no steal time (the development machine's host pauses it for about 100 ms when its CPU quota runs out).
// A call already past its halfway point is then charged the pause and stopped at its first check after it; one that
// had not reached it reads its baseline after the pause and is not charged.

import { CallAbort } from './errors.ts';
import { FIRST_FUEL, FUEL_PER_CHECK } from './instrument.ts';

/**
 * However little CPU it got, a call is stopped after this many budgets of wall-clock time: pauses of up to about two
 * budgets are forgiven (a container throttled at half a core waits up to 50 ms in each 100 ms period), and a runaway
 * call holds the event loop of a starved process for three budgets at most.
 */
export const PAUSED_CEILING_BUDGETS = 3;

/**
 * How often the module's own code should reach a check. A call starts with FIRST_FUEL, or FUEL_PER_CHECK when its
 * memory is all faulted in; when an interval took longer than this (page faults of fresh memory, 14 us each on the
 * development machine, are invisible to an instruction count), the next refill is a quarter of the last, down to
 * MIN_FUEL_REFILL; when it took far less (under an eighth), it doubles, up to FUEL_PER_CHECK.
 */
export const FUEL_CHECK_INTERVAL_MS = 0.25;
export const MIN_FUEL_REFILL = 256;

/** The clocks a budget reads: wall-clock milliseconds, and the process's CPU time (every thread) in microseconds. */
export interface BudgetClocks {
  wallMs(): number;
  cpuUs(): number;
}

export class CallBudget {
  private budgetMs = 0;
  private started = 0;
  private deadline = 0;
  /** The process's CPU time when the call passed half its budget by the clock; null before. */
  private cpuAtHalfwayUs: number | null = null;
  private lastFuelCheck = 0;
  private refill = FIRST_FUEL;

  constructor(private readonly clocks: BudgetClocks) {}

  /**
   * A call (or an instantiation) starts with `budgetMs` of CPU; its module starts with FIRST_FUEL (see
   * lengthenIntervals). `nowMs` is the wall clock read by the caller just before (a reading taken earlier only moves
   * the deadline earlier).
   */
  start(budgetMs: number, nowMs = this.clocks.wallMs()): void {
    this.budgetMs = budgetMs;
    this.started = nowMs;
    this.lastFuelCheck = this.started;
    // What the last call's intervals took says nothing of this one's.
    this.refill = FIRST_FUEL;
    // The first deadline is halfway through the budget: see the header.
    this.deadline = this.started + budgetMs / 2;
    this.cpuAtHalfwayUs = null;
  }

  /** Throws CallAbort('cpu-budget') when the call has used its budget, or has taken its ceiling of wall-clock time. */
  check(now = this.clocks.wallMs()): void {
    if (now <= this.deadline) return;
    const budgetMs = this.budgetMs;
    const ceiling = this.started + budgetMs * PAUSED_CEILING_BUDGETS;
    if (this.cpuAtHalfwayUs === null) {
      // Half the budget at most was used: the other half is the least that is left.
      this.cpuAtHalfwayUs = this.clocks.cpuUs();
      this.deadline = Math.min(now + budgetMs / 2, ceiling);
      return;
    }
    const usedMs = budgetMs / 2 + (this.clocks.cpuUs() - this.cpuAtHalfwayUs) / 1000;
    if (usedMs >= budgetMs || now >= ceiling) {
      throw new CallAbort('cpu-budget', `call ran past its CPU budget of ${budgetMs} ms`, { setting: 'limits.cpuMs', value: budgetMs });
    }
    // The next check is due when what is left of the budget could be used up, or at the ceiling, whichever is first.
    this.deadline = Math.min(now + (budgetMs - usedMs), ceiling);
  }

  /**
   * The module ran out of fuel: checks the budget and gives the fuel for the next interval, fitted to how long the
   * last one took (see FUEL_CHECK_INTERVAL_MS).
   */
  fuelCheck(): number {
    const now = this.clocks.wallMs();
    const took = now - this.lastFuelCheck;
    if (took > FUEL_CHECK_INTERVAL_MS) this.refill = Math.max(MIN_FUEL_REFILL, this.refill >>> 2);
    else if (took < FUEL_CHECK_INTERVAL_MS / 8) this.refill = Math.min(FUEL_PER_CHECK, this.refill * 2);
    this.lastFuelCheck = now;
    this.check(now);
    return this.refill;
  }

  /**
   * No instruction of the module can fault a fresh page in (the host faulted its whole memory in): nothing the
   * instruction count cannot see makes an interval long, so the intervals start at their longest. Returns the fuel.
   */
  lengthenIntervals(): number {
    this.refill = FUEL_PER_CHECK;
    return this.refill;
  }

  /** The module has fresh memory again (it grew): the intervals go back to FIRST_FUEL at most. Returns the fuel. */
  shortenIntervals(): number {
    this.refill = Math.min(this.refill, FIRST_FUEL);
    return this.refill;
  }
}
