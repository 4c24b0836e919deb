// The records the gateway hands to upstream telemetry (runtime/telemetry/request-telemetry.ts), built from what it
// knows about a request. Built only when upstream telemetry is configured.

import { BackendError, RequestError } from '../pipeline/chain.ts';
import type { Exchange, ExchangeError } from '../policy-host/exchange.ts';
import type { PolicyFailure } from '../policy-host/errors.ts';
import { backendLocation, type ForwardTarget } from '../proxy/forward.ts';
import type { BackendCallRecord, FailureRecord } from '../telemetry/request-telemetry.ts';
import type { OperationRuntime } from './live-config.ts';

/** Where a backend call went and when it started; `finish` completes it with the outcome. */
export class BackendCallStart {
  private readonly method: string;
  private readonly origin: string;
  private readonly path: string;
  private readonly pathTemplate: string;

  constructor(
    exchange: Exchange,
    to: ForwardTarget,
    operation: OperationRuntime,
    /** The path the client asked for: a different one in the exchange means a policy rewrote it. */
    requestedPath: string,
    private readonly startedAt: number,
  ) {
    const location = backendLocation(exchange, to);
    this.method = exchange.request.method;
    this.origin = location.origin;
    this.path = location.path;
    // The operation's template stands for the path unless a policy changed the backend or the path.
    this.pathTemplate =
      location.chosen !== null && exchange.request.path === requestedPath ? location.chosen.basePath + operation.pathTemplate : location.path;
  }

  /** `outcome`: the backend's status, or what the forwarder threw. */
  finish(durationMs: number, outcome: { status: number } | { error: unknown }): BackendCallRecord {
    return {
      method: this.method,
      origin: this.origin,
      path: this.path,
      pathTemplate: this.pathTemplate,
      startTime: performance.timeOrigin + this.startedAt,
      durationMs,
      status: 'status' in outcome ? outcome.status : null,
      failure: 'error' in outcome ? thrownFailure(outcome.error) : null,
    };
  }
}

/** What the forwarder threw: a BackendError (timeout, unreachable…), or a RequestError (the client's body too large). */
function thrownFailure(err: unknown): FailureRecord {
  if (err instanceof BackendError) return { source: 'backend', reason: err.reason, message: err.message, policy: null, failedOpen: false };
  if (err instanceof RequestError) return { source: 'gateway', reason: err.reason, message: err.message, policy: null, failedOpen: false };
  return { source: 'gateway', reason: 'internal', message: (err as Error)?.message ?? String(err), policy: null, failedOpen: false };
}

/**
 * The failures to report for a request: the error that made its answer, unless it is the client's (a body over the
 * limit: 413), and the fail-open policies that failed and were skipped.
 */
export function requestFailures(error: ExchangeError | null, failedOpen: readonly FailureRecord[] | null): FailureRecord[] {
  const failures: FailureRecord[] = [];
  if (error && (error.source !== 'gateway' || error.status >= 500)) {
    failures.push({ source: error.source, reason: error.reason, message: error.message, policy: error.policy || null, failedOpen: false });
  }
  if (failedOpen) failures.push(...failedOpen);
  return failures;
}

/** The gateway's own failure: `internal` (a bug), `not-ready` (no configuration loaded yet). */
export function gatewayFailure(reason: string, message: string): FailureRecord {
  return { source: 'gateway', reason, message, policy: null, failedOpen: false };
}

/** A fail-open policy that failed and was skipped. */
export function failedOpenRecord(failure: PolicyFailure): FailureRecord {
  return { source: 'policy', reason: failure.reason, message: failure.message, policy: failure.policy, failedOpen: true };
}
