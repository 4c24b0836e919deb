// Errors are values a user can act on: each names what failed, where, and why.

/** Why a policy call failed; used as a metrics label, so the set is closed. */
export const FAILURE_REASONS = [
  'trap', // the module trapped (unreachable, out-of-bounds access, stack overflow…)
  'cpu-budget', // the call ran past its CPU budget
  'memory-cap', // the module hit its memory cap
  'output-cap', // the module handed the host more bytes than allowed
  'log-budget', // the module wrote more log lines or bytes in one call than allowed
  'capability', // the module used a capability its configuration does not grant
  'bad-argument', // a host function got a pointer outside memory or malformed input
  'error', // the module reported a failure itself (fail / error_set)
  'effects', // too many effects or effect rounds, or an effect the host could not run
  'instantiate', // a new instance could not be created
  'circuit-open', // not called: the binding failed its budget or a cap too often (circuit-breaker.ts)
  'expression', // an expression of the entry (its condition, a computed value) failed when it was evaluated
  'outbound', // a send-request got no usable answer (the network, its timeout, a response over its size)
] as const;

export type FailureReason = (typeof FAILURE_REASONS)[number];

/** A policy call that failed. The chain turns it into the on-error path (or skips the policy when fail-open). */
export class PolicyFailure extends Error {
  constructor(
    readonly policy: string,
    readonly reason: FailureReason,
    message: string,
  ) {
    super(`policy ${policy} failed (${reason}): ${message}`);
    this.name = 'PolicyFailure';
  }
}

/** Raised inside a host function to abort the running call; the instance is recycled afterwards. */
export class CallAbort extends Error {
  constructor(
    readonly reason: FailureReason,
    message: string,
  ) {
    super(message);
    this.name = 'CallAbort';
  }
}

/** A module that cannot be used: bad bytes, a forbidden import, a missing export, a bad descriptor. */
export class PolicyLoadError extends Error {
  constructor(
    readonly module: string,
    readonly problems: string[],
  ) {
    super(`policy module ${module} cannot be loaded:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'PolicyLoadError';
  }
}

/** A binding (module + configuration + grants) that is not acceptable. */
export class PolicyConfigError extends Error {
  constructor(
    readonly where: string,
    readonly problems: string[],
  ) {
    super(`${where}: invalid policy configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'PolicyConfigError';
  }
}
