// Runs a policy chain over an exchange in the phases of Azure API Management:
// inbound → backend → (forward) → outbound, and on-error when a policy or the backend fails.
//
// The gateway runs the phases of requests that reach the same point together (PhaseBatches): each step of a phase for
// every one of them, then the next step, instead of one request's whole phase, then the next request's. Under load a
// turn of the event loop brings several requests (bench:proxy's 32 connections), and a request's policies run
// cold when it runs alone: between two calls of a module, the rest of the gateway (parsing, the backend's request and
// response, the log) has pushed the module's code, its memory and the host's tables out of the caches. bench:proxy's
// five policies added 20-27 us of CPU a request run one request at a time, 3 us (median of six pinned rounds) run step
// by step, in the same run; the gateway's system time fell too, its writes to the backend and the clients coming
// together (BENCHMARKS.md, issue 17, fifteenth session). What it costs: a request's phase starts at the end of the turn
// it arrived in (setImmediate), not at once, and waits for the calls of the requests beside it, MAX_BATCH at most.
//
// A request with no policies before its backend call, and a response with no outbound policies, wait for the end of
// the turn too (PhaseBatches.turnEnd), so that the gateway's writes to the backend and to its clients go out together
// after the turn's reads instead of one between each two. The five policies had made the gateway cheaper a request
// than no policies in some runs, by this alone: a peer woken once for a burst of writes costs the writer less kernel
// time than one woken for each, and the same code run back to back stays warm. Without policies it gave 1.18-1.20
// times the throughput of the gateway that wrote at once, 64-73 us of CPU a request against 75-83, in the same runs
// (BENCHMARKS.md, issue 17, sixteenth session); the probe's p99 at 1,000 requests/s did not move. Under Deno it gained
// nothing measurable in two runs alternating with the build before.

import type { Phase } from '../../abi/index.ts';
import type { PolicyBinding } from '../policy-host/binding.ts';
import { PolicyFailure } from '../policy-host/errors.ts';
import { roundMs, type Exchange, type PolicyTiming, type ResponseState } from '../policy-host/exchange.ts';

/**
 * What a phase runs, one entry of the configuration each: a policy binding, or a step the host runs itself around or
 * instead of one (steps.ts: a `when:` condition, choose, include-fragment, set-variable).
 */
export interface ChainStep {
  /** Names it in timings, logs and failures: the binding id of its entry. */
  readonly id: string;
  readonly failOpen: boolean;
  /**
   * Runs it: undefined when it completed synchronously, a promise when it waits, false when it did not run (its
   * condition was false). Throws, or rejects with, PolicyFailure.
   */
  runNow(phase: Phase, exchange: Exchange, nowMs: number | undefined, hooks: ChainHooks): Promise<void> | undefined | false;
  /** The clock its timing is read from, in milliseconds. */
  wallMs(): number;
  /** The steps it may run in turn (host steps); absent for a binding. */
  readonly nested?: readonly ChainStep[];
  /** A host step that reads the body of its phase (set-body): the gateway buffers it, as for a module that declares it. */
  readonly readsBody?: boolean;
}

export interface PolicyChain {
  inbound: readonly ChainStep[];
  backend: readonly ChainStep[];
  outbound: readonly ChainStep[];
  'on-error': readonly ChainStep[];
}

/** Every policy binding `steps` may run, nested ones included: what the gateway asks of a chain before it runs it. */
export function bindingsIn(steps: readonly ChainStep[]): PolicyBinding[] {
  return steps.flatMap((step) => (step.nested ? bindingsIn(step.nested) : [step as unknown as PolicyBinding]));
}

/**
 * Whether any of `steps`, nested ones included, reads the body `key` names: a binding whose module declares it, or a
 * host step that says so.
 */
export function readsBody(steps: readonly ChainStep[], key: 'requestBody' | 'responseBody'): boolean {
  return steps.some((step) =>
    step.nested ? step.readsBody === true || readsBody(step.nested, key) : (step as unknown as PolicyBinding).module.descriptor[key],
  );
}

export const EMPTY_CHAIN: PolicyChain = { inbound: [], backend: [], outbound: [], 'on-error': [] };

/** Stacks scopes: global, then API, then operation, in every phase. */
export function stackScopes(...scopes: Partial<PolicyChain>[]): PolicyChain {
  const merged = (phase: Phase) => scopes.flatMap((s) => s[phase] ?? []);
  return {
    inbound: merged('inbound'),
    backend: merged('backend'),
    outbound: merged('outbound'),
    'on-error': merged('on-error'),
  };
}

/** Why the backend could not answer. The data plane's forwarder throws it; the chain sends it to on-error. */
export class BackendError extends Error {
  constructor(
    // refused: the address a policy's wildcard grant led to is not one it may reach (abi/policy-abi.md, section 5).
    readonly reason: 'timeout' | 'unreachable' | 'reset' | 'too-large' | 'bad-response' | 'refused',
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'BackendError';
  }
}

/** A request the gateway refuses on the client's account (a body over the limit): on-error, with a 4xx status. */
export class RequestError extends Error {
  constructor(
    readonly reason: 'too-large' | 'bad-request',
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'RequestError';
  }
}

/** Sends the (possibly rewritten) request to the backend and returns its response. */
export type Forward = (exchange: Exchange) => Promise<ResponseState>;

export interface ChainHooks {
  /** Called when a fail-open policy failed and was skipped. */
  onFailOpen?: (step: ChainStep, failure: PolicyFailure) => void;
}

/**
 * `batches`: where the phases wait to run beside other exchanges' (the gateway's); without it, each phase runs at once,
 * alone.
 */
export async function runChain(
  chain: PolicyChain,
  exchange: Exchange,
  forward: Forward,
  hooks: ChainHooks = {},
  batches: PhaseBatches | null = null,
): Promise<void> {
  try {
    // A phase whose calls all completed synchronously answers without a promise: awaiting it anyway would cost a
    // microtask turn a phase.
    const inbound = runPhase('inbound', chain.inbound, exchange, hooks, batches);
    if (inbound === true || (inbound !== false && (await inbound))) return;
    const backend = runPhase('backend', chain.backend, exchange, hooks, batches);
    if (backend === true || (backend !== false && (await backend))) return;
    // Straight from the request's read: its backend call goes out with the turn's others. After a batch, it already does.
    if (batches !== null && chain.inbound.length === 0 && chain.backend.length === 0) await batches.turnEnd();
    const draft = exchange.response;
    const response = await forward(exchange);
    // Response headers that inbound/backend policies set are applied to the backend's response: they replace the
    // backend's, except Vary, a list of what the response depends on, which both add to (CORS adds Origin to it).
    for (const name of draft.headers.keys()) {
      // By name, not by entry: an entry is a new [name, values] array (cors and rate-limit leave seven of them).
      const values = draft.headers.get(name)!;
      const backend = name === 'vary' ? response.headers.get('vary') : undefined;
      response.headers.set(name, backend ? mergeVary(backend, values) : values);
    }
    exchange.response = response;
    const outbound = runPhase('outbound', chain.outbound, exchange, hooks, batches);
    if (outbound !== false && outbound !== true) await outbound;
  } catch (err) {
    exchange.error = describeError(err);
    await runOnError(chain['on-error'], exchange, hooks);
  }
}

/** One Vary value with the fields of both, each once (field names compare without case). */
function mergeVary(backend: readonly string[], added: readonly string[]): string[] {
  const fields: string[] = [];
  const seen = new Set<string>();
  for (const value of [...backend, ...added]) {
    for (const raw of value.split(',')) {
      const field = raw.trim();
      if (field !== '' && !seen.has(field.toLowerCase())) {
        seen.add(field.toLowerCase());
        fields.push(field);
      }
    }
  }
  return [fields.join(', ')];
}

/**
 * Runs one phase: true when a policy answered (the rest of the chain is skipped). Synchronous as long as every call
 * completes synchronously (no effects); from the first call that waits, the rest of the phase is a promise. With
 * `batches`, a phase with steps is a promise: it runs beside the other exchanges' that join it in this turn; so is an
 * empty outbound phase, which waits for the end of the turn (PhaseBatches.turnEnd).
 */
function runPhase(
  phase: Phase,
  steps: readonly ChainStep[],
  exchange: Exchange,
  hooks: ChainHooks,
  batches: PhaseBatches | null = null,
): boolean | Promise<boolean> {
  exchange.phase = phase;
  if (batches !== null) {
    if (steps.length > 0) return batches.join(phase, steps, exchange, hooks);
    // Straight from the backend response's read: the answer is written with the turn's others.
    if (phase === 'outbound') return batches.turnEnd();
  }
  return runSteps(phase, steps, exchange, hooks);
}

/**
 * The most exchanges a batch runs together; one that fills up runs at once, and the next joiners start another. Under
 * a steady load a turn brings fewer (bench:proxy's 32 connections); a burst larger than this is split, so that the
 * first requests of the burst go to the backend while the rest are still read. In bench:proxy's latency phase, where
 * the probe sends a burst when its timer was late, the five policies' p99 at 1,000 requests/s was 2.05 and 2.13 ms
 * above the backend's with 16, against 3.77 and 2.40 for a build with 64 in the same two runs (BENCHMARKS.md).
 */
export const MAX_BATCH = 16;

/** An exchange waiting in a batch, and what its phase's promise is settled with. */
interface Waiting {
  exchange: Exchange;
  hooks: ChainHooks;
  /** true: a policy answered; false: the phase ran to its end; a promise: the rest of the phase, after an effect. */
  settle: (answered: boolean | Promise<boolean>) => void;
  fail: (err: unknown) => void;
}

/** The exchanges that joined one phase's steps in this turn. */
interface Batch {
  phase: Phase;
  steps: readonly ChainStep[];
  waiting: Waiting[];
}

/**
 * The phases waiting to run, each batch a phase and its steps (one scope's chain: the same steps array for each of its
 * exchanges). They run at the end of the turn they joined in, each batch step by step over its exchanges, in the
 * order they joined; what each exchange sees and gets is what running its phase alone would give it (every call is
 * its own, on its own exchange, with its own budget and timing).
 */
export class PhaseBatches {
  /** In the order they were opened; a turn has a few (one a phase of each operation its requests reach). */
  private batches: Batch[] = [];
  /** The exchanges waiting for the end of the turn without a batch (turnEnd), each settled with false. */
  private atTurnEnd: Array<(answered: false) => void> = [];
  private scheduled = false;

  constructor(private readonly maxBatch = MAX_BATCH) {}

  /** Runs `steps` over `exchange` with the other exchanges that join them in this turn: what runSteps answers. */
  join(phase: Phase, steps: readonly ChainStep[], exchange: Exchange, hooks: ChainHooks): Promise<boolean> {
    return new Promise<boolean>((settle, fail) => {
      const batches = this.batches;
      let at = 0;
      while (at < batches.length && (batches[at]!.steps !== steps || batches[at]!.phase !== phase)) at++;
      if (at === batches.length) batches.push({ phase, steps, waiting: [] });
      const batch = batches[at]!;
      batch.waiting.push({ exchange, hooks, settle, fail });
      if (batch.waiting.length >= this.maxBatch) {
        batches.splice(at, 1);
        runBatch(batch);
      } else this.schedule();
    });
  }

  /**
   * Settles with false (nothing answered) at the end of this turn, with the batches, or at once for all that wait when
   * MAX_BATCH do: the header says why an exchange with no step to run waits all the same.
   */
  turnEnd(): Promise<false> {
    return new Promise<false>((settle) => {
      this.atTurnEnd.push(settle);
      if (this.atTurnEnd.length >= this.maxBatch) this.releaseTurnEnd();
      else this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.runWaiting);
  }

  private releaseTurnEnd(): void {
    const due = this.atTurnEnd;
    this.atTurnEnd = [];
    for (const settle of due) settle(false);
  }

  private readonly runWaiting = (): void => {
    this.scheduled = false;
    const due = this.batches;
    this.batches = [];
    for (const batch of due) runBatch(batch);
    this.releaseTurnEnd();
  };
}

/**
 * Runs a batch's steps one at a time over its exchanges, as runFrom does one exchange's: an exchange leaves the batch
 * when a policy answered (true), when a call waits (the rest of its phase goes on alone once it settles, as in
 * runFrom) and when a call failed and is not fail-open; the clock reading between two calls ends one's timing and
 * starts the next's, whichever exchanges they are for.
 */
function runBatch({ phase, steps, waiting }: Batch): void {
  let active = waiting.length;
  try {
    const clock: CallClock = { started: steps[0]!.wallMs(), rest: null };
    for (let i = 0; i < steps.length && active > 0; i++) {
      const step = steps[i]!;
      let kept = 0;
      for (let k = 0; k < active; k++) {
        const w = waiting[k]!;
        let called: Called;
        try {
          called = callStep(i, phase, steps, w.exchange, w.hooks, clock);
        } catch (failure) {
          w.fail(failure);
          clock.started = step.wallMs();
          continue;
        }
        if (called === Called.GoOn) waiting[kept++] = w;
        else if (called === Called.Answered) w.settle(true);
        else {
          w.settle(clock.rest!);
          // The call that waits is timed from `started` to when it settles; the next call starts from a new reading.
          clock.started = step.wallMs();
        }
      }
      active = kept;
    }
    for (let k = 0; k < active; k++) waiting[k]!.settle(false);
  } catch (err) {
    // Not a policy's failure (those are handled above) but the gateway's: no exchange of the batch is left waiting.
    // Those already settled keep what they were given.
    for (const w of waiting) w.fail(err);
  }
}

/** Runs `steps` in `phase` as runPhase does: the phase itself, or a branch of it (choose, include-fragment). */
export function runSteps(phase: Phase, steps: readonly ChainStep[], exchange: Exchange, hooks: ChainHooks): boolean | Promise<boolean> {
  if (steps.length === 0) return false;
  // Calls are timed with the clock of their CPU budgets, and one reading between two calls ends one's timing and
  // starts the next's, budget included: a reading costs 0.1 us under Node, 0.2 us under Deno.
  return runFrom(0, phase, steps, exchange, hooks, steps[0]!.wallMs());
}

/** Runs the phase's steps from `index` on; `started`: the clock reading that starts the first of them. */
function runFrom(
  index: number,
  phase: Phase,
  steps: readonly ChainStep[],
  exchange: Exchange,
  hooks: ChainHooks,
  started: number,
): boolean | Promise<boolean> {
  const clock: CallClock = { started, rest: null };
  for (let i = index; i < steps.length; i++) {
    const called = callStep(i, phase, steps, exchange, hooks, clock);
    if (called === Called.Answered) return true;
    if (called === Called.Waits) return clock.rest!;
  }
  return false;
}

/** What one call of a step came to for its exchange. */
const enum Called {
  /** It completed, failed open or did not run: the exchange goes on to the next step. */
  GoOn,
  /** A policy answered: the rest of the chain is skipped. */
  Answered,
  /** It waits for effects: the rest of the phase is `CallClock.rest`. */
  Waits,
}

/** The clock reading the next call starts from, and the rest of the phase of a call that waits. */
interface CallClock {
  started: number;
  rest: Promise<boolean> | null;
}

/**
 * Runs step `index` of `steps` for `exchange`, timed from `clock.started`; for a call that completed, `clock.started`
 * becomes the reading that ended it. Throws the failure of a call that failed and is not fail-open.
 */
function callStep(index: number, phase: Phase, steps: readonly ChainStep[], exchange: Exchange, hooks: ChainHooks, clock: CallClock): Called {
  const step = steps[index]!;
  let pending: Promise<void> | undefined | false;
  try {
    pending = step.runNow(phase, exchange, clock.started, hooks);
  } catch (err) {
    clock.started = afterFailure(step, phase, exchange, hooks, clock.started, err);
    return Called.GoOn;
  }
  if (pending === false) {
    clock.started = record(step, phase, exchange, clock.started, 'skipped');
    return Called.GoOn;
  }
  if (pending) {
    clock.rest = awaitCall(pending, index, phase, steps, exchange, hooks, clock.started);
    return Called.Waits;
  }
  clock.started = afterCall(step, phase, exchange, clock.started);
  return exchange.responded ? Called.Answered : Called.GoOn;
}

/** A call that waits for effects: the phase goes on once it settles. */
async function awaitCall(
  pending: Promise<void>,
  index: number,
  phase: Phase,
  steps: readonly ChainStep[],
  exchange: Exchange,
  hooks: ChainHooks,
  started: number,
): Promise<boolean> {
  const step = steps[index]!;
  try {
    await pending;
  } catch (err) {
    return runFrom(index + 1, phase, steps, exchange, hooks, afterFailure(step, phase, exchange, hooks, started, err));
  }
  const ended = afterCall(step, phase, exchange, started);
  if (exchange.responded) return true;
  return runFrom(index + 1, phase, steps, exchange, hooks, ended);
}

/** Records a call that completed; returns the clock reading that ended it. */
function afterCall(step: ChainStep, phase: Phase, exchange: Exchange, started: number): number {
  return record(step, phase, exchange, started, exchange.responded ? 'respond' : 'continue');
}

function record(step: ChainStep, phase: Phase, exchange: Exchange, started: number, outcome: PolicyTiming['outcome']): number {
  const ended = step.wallMs();
  exchange.timings.push({ binding: step.id, phase, ms: roundMs(ended - started), outcome });
  return ended;
}

/** A call that failed: a fail-open policy is recorded and skipped (returns the clock reading to go on from), else throws. */
function afterFailure(step: ChainStep, phase: Phase, exchange: Exchange, hooks: ChainHooks, started: number, err: unknown): number {
  const ms = roundMs(step.wallMs() - started);
  if (err instanceof PolicyFailure && step.failOpen) {
    exchange.timings.push({ binding: step.id, phase, ms, outcome: 'failed-open' });
    hooks.onFailOpen?.(step, err);
    return step.wallMs();
  }
  exchange.timings.push({ binding: step.id, phase, ms, outcome: 'failed' });
  throw err;
}

async function runOnError(bindings: readonly ChainStep[], exchange: Exchange, hooks: ChainHooks): Promise<void> {
  const error = exchange.error!;
  exchange.responded = false;
  // The backend's unread body (an outbound policy failed) would otherwise hold its connection.
  exchange.response.stream?.destroy();
  exchange.response = defaultErrorResponse(exchange);
  try {
    await runPhase('on-error', bindings, exchange, hooks);
  } catch {
    // An on-error policy that fails leaves the default error response; its failure is already logged and counted.
    exchange.response = defaultErrorResponse(exchange);
  }
  exchange.error = error;
}

function describeError(err: unknown): NonNullable<Exchange['error']> {
  if (err instanceof PolicyFailure) {
    return { source: 'policy', reason: err.reason, message: err.message, policy: err.policy, status: 500 };
  }
  if (err instanceof BackendError) {
    return { source: 'backend', reason: err.reason, message: err.message, policy: '', status: err.status };
  }
  if (err instanceof RequestError) {
    return { source: 'gateway', reason: err.reason, message: err.message, policy: '', status: err.status };
  }
  return { source: 'gateway', reason: 'internal', message: (err as Error)?.message ?? String(err), policy: '', status: 500 };
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  413: 'Content Too Large',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  504: 'Gateway Timeout',
};

/** An RFC 9457 problem body. It names what failed, never a policy's or backend's internal message. */
export function defaultErrorResponse(exchange: Exchange): ResponseState {
  const error = exchange.error!;
  const detail =
    error.source === 'policy'
      ? `policy ${error.policy} failed (${error.reason})`
      : error.source === 'backend'
        ? `backend failed (${error.reason})`
        : error.status < 500
          ? error.message
          : 'internal gateway error';
  const body = JSON.stringify({
    type: 'about:blank',
    title: TITLES[error.status] ?? 'Error',
    status: error.status,
    detail,
    requestId: exchange.requestId,
  });
  return {
    status: error.status,
    headers: new Map([['content-type', ['application/problem+json']]]),
    body: new TextEncoder().encode(body),
  };
}
