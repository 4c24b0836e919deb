// Errors are values a user can act on: each names what failed, where, and why.

/** Why a policy call failed; used as a metrics label, so the set is closed. */
export const FAILURE_REASONS = [
  'trap', // the module trapped (unreachable, out-of-bounds access, a division by zero…)
  'stack-overflow', // the module recursed past the engine's stack
  'abort', // the module aborted: an assertion, a throw, a standard-library check (a missing Map key, an index out of range)
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

/** The longest function name taken from a module's name section into a message: a module writes what it likes there. */
const MAX_FRAME_NAME = 160;

/**
 * Where in the policy's own code a trap happened: the innermost frame of the WebAssembly stack that is not in
 * AssemblyScript's standard library or the SDK (`~lib/...`), as `policy.ts: lookup()`. AssemblyScript names a function
 * `<file without .ts>/<name>` in the module's name section, which the build keeps; a module without names gives null.
 * Read when a failure is reported, never on a call that succeeds.
 */
export function authorFrame(err: unknown): string | null {
  const stack = err instanceof Error ? err.stack : undefined;
  if (typeof stack !== 'string') return null;
  for (const m of stack.matchAll(/^\s*at (.+?) \(wasm:\/\/wasm\//gm)) {
    const name = m[1]!;
    if (name.startsWith('~lib/') || /^(wasm-function\[\d+\]|\$?\d+)$/.test(name)) continue;
    // Printable ASCII only, and short: the name section is the module's to write.
    const clean = name.replace(/[^\x21-\x7e]/g, '?').slice(0, MAX_FRAME_NAME);
    const slash = clean.lastIndexOf('/', clean.includes('#') ? clean.indexOf('#') : clean.length);
    return slash > 0 ? `${clean.slice(0, slash)}.ts: ${clean.slice(slash + 1)}()` : `${clean}()`;
  }
  return null;
}

/** The setting of a binding's `limits` a call ran into, and its value. */
export interface LimitHit {
  setting: 'limits.cpuMs' | 'limits.memoryBytes' | 'limits.outputBytes' | 'limits.logLines' | 'limits.logBytes';
  value: number;
}

/** Raised inside a host function to abort the running call; the instance is recycled afterwards. */
export class CallAbort extends Error {
  constructor(
    readonly reason: FailureReason,
    message: string,
    /** The limit the call ran into, when a limit stopped it. */
    readonly limit: LimitHit | null = null,
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
