// The bounds the ABI fuzzer holds the policy host to, with why each margin is what it is. They are the sandbox's
// promises (abi/policy-abi.md, section 6) turned into numbers that can be measured from outside the host.

import { DEFAULT_LIMITS, MAX_EFFECTS_PER_CALL } from '../../../runtime/policy-host/index.ts';

const MiB = 1 << 20;

export interface Bounds {
  /** CPU a call may use past its budget. */
  cpuMarginMs: number;
  /** A call is stopped after this many budgets of wall-clock time however little CPU it got (docs: limits.cpuMs). */
  wallCeilingBudgets: number;
  /** Wall-clock time past that ceiling. */
  wallMarginMs: number;
  /** Log bytes a call may cause beyond its output cap (which log lines count against). */
  logMarginBytes: number;
  /** Bytes handed to the host beyond the output cap (the host counts the call that crosses it, then stops). */
  outputSlackBytes: number;
  /** Memory a call may cause beyond its memory cap, at its peak. */
  peakMarginBytes: number;
  /** Growth of the fuzzing process's live memory (V8 heap in use plus external memory) after a full collection, over
   * its level after the first cases: what a leak makes grow. */
  steadyGrowthBytes: number;
  /** The same for its resident memory, which also holds pages V8 and malloc keep after collecting (not a leak). */
  steadyRssGrowthBytes: number;
  /** Open file descriptors the fuzzing process may gain over the run. */
  fdGrowth: number;
  /** HTTP requests one handler call may make the gateway send, over all its rounds. */
  maxHttpEffectsPerCall: number;
  /** Loading a module (checks, metering, compiling, the descriptor call) and creating an instance. */
  loadMs: number;
  /** A call that has not ended after this long is a hang: the supervisor kills the process running it. */
  hangMs: number;
}

export const DEFAULT_BOUNDS: Bounds = {
  // The host checks the clock every 65,536 instructions and every 256 units of host work, tens of microseconds
  // apart; what one check interval can hold beyond that is one host operation (a signature check, a copy of a body)
  // and a collection V8 starts inside the call (a scavenge takes 1-5 ms, finishing a mark-compact of the fuzzer's
  // heap up to about 10 ms). 20 ms covers those with room, and is far below the hundreds of milliseconds to seconds
  // that an unaccounted host function cost. The CPU is the whole process's (process.cpuUsage), as the
  // host measures it, so collector threads count too.
  cpuMarginMs: 20,
  wallCeilingBudgets: 3,
  // The same margin on top of the wall-clock ceiling (three budgets: 150 ms at the default 50 ms).
  wallMarginMs: 20,
  // The host's own lines about a failed call (a warning carrying the failure message, at most 4 KiB of it) and JSON
  // framing of the lines a policy may log within its output cap: 64 KiB is about 300 framed lines. A log line that
  // costs the policy nothing (an empty message, a kernel error line) must be charged or refused for this to hold.
  logMarginBytes: 64 * 1024,
  // The host counts a host call's bytes, then refuses it once past the cap: the crossing call can add at most the
  // largest single value the fuzzer's modules hand over (a body of up to 1 MiB), so the cap plus 1 MiB.
  outputSlackBytes: 1 * MiB,
  // Host-side copies a call may cause that are not the module's memory or kernel blocks: the request's own fields
  // (the fuzzer's big exchange is about 1.5 MiB), a value up to the output cap, strings decoded from the module's
  // memory (at most its size, 16 MiB by default) and V8's young generation filling before the next scavenge (16 MiB
  // semi-spaces). 32 MiB over the cap, twice what any of those needs alone.
  peakMarginBytes: 32 * MiB,
  // Over the level after the first cases, after full collections: two fuzzed memories at the largest cap the
  // generator gives (32 MiB); a memory whose instance was just dropped may still be waiting for the engine to free it.
  steadyGrowthBytes: 64 * MiB,
  // Resident memory keeps what the collector freed for a while (V8 returns pages to the system lazily, malloc keeps
  // its arenas): a case that made 30 MiB of garbage left RSS 38 MiB higher after two full collections here, with
  // the live memory flat. Twice the live bound tells a leak from that slack; the live bound is the precise one.
  steadyRssGrowthBytes: 128 * MiB,
  // WASI instances open /dev/null for stdin and stdout and close them when recycled; a few may be in flight.
  fdGrowth: 16,
  // The ABI's own limit: distinct effects per handler call, over all its rounds.
  maxHttpEffectsPerCall: MAX_EFFECTS_PER_CALL,
  // binaryen metering and compiling a module of a few KiB takes tens of milliseconds; a start function is stopped by
  // its budget. 5 s is far above both on a loaded two-core machine, and far below a hang.
  loadMs: 5_000,
  // A call is at most 4 rounds, each stopped within its wall-clock ceiling (620 ms at the largest budget the fuzzer
  // gives, 200 ms), plus loading the module before the first: under 4 s on a loaded machine. 10 s is a hang.
  hangMs: 10_000,
};

/** The limits a case's binding runs with (defaults overridden by the case). */
export function limitsOf(partial: { cpuMs?: number; memoryBytes?: number; outputBytes?: number }) {
  return { ...DEFAULT_LIMITS, ...partial };
}
