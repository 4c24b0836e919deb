// The steps of a chain the host runs itself, without a WebAssembly module: a `when:` condition (and computed
// configuration values) around an entry, choose and include-fragment (branches of steps), and set-variable. They fail
// as a policy fails, with a PolicyFailure naming the entry, so that fail-open, on-error and the logs treat them alike.

import type { Phase } from '../../abi/index.ts';
import { ExpressionError, type Expression } from '../expressions/cel.ts';
import { PolicyFailure } from '../policy-host/errors.ts';
import type { Exchange } from '../policy-host/exchange.ts';
import { runSteps, type ChainHooks, type ChainStep } from './chain.ts';

/** The longest value set-variable stores: what the cost bound of expressions takes a request value to be. */
export const MAX_VARIABLE_LENGTH = 16 * 1024;

/** Evaluates `run`; an expression's failure becomes the entry's PolicyFailure. */
export function evaluated<T>(id: string, run: () => T): T {
  try {
    return run();
  } catch (err) {
    if (err instanceof ExpressionError) throw new PolicyFailure(id, 'expression', err.message);
    throw err;
  }
}

/** Configuration values computed from expressions for each call (`{expr: "..."}` in an entry's `config`). */
export interface ComputedConfig {
  /** The values for this request, as the CONFIG field gives them; throws ExpressionError or PolicyFailure. */
  values(exchange: Exchange): ReadonlyMap<string, string>;
}

/** An entry with a `when:` condition, computed configuration values, or both, around the step that runs it. */
export class Guarded implements ChainStep {
  readonly id: string;
  readonly failOpen: boolean;
  readonly nested: readonly ChainStep[];

  constructor(
    private readonly inner: ChainStep,
    private readonly when: Expression | null,
    private readonly computed: ComputedConfig | null,
  ) {
    this.id = inner.id;
    this.failOpen = inner.failOpen;
    this.nested = [inner];
  }

  wallMs(): number {
    return this.inner.wallMs();
  }

  runNow(phase: Phase, exchange: Exchange, nowMs: number | undefined, hooks: ChainHooks): Promise<void> | undefined | false {
    if (this.when !== null && !evaluated(this.id, () => this.when!.holds(exchange))) return false;
    // The call's CPU budget starts after the host's own evaluation (undefined: the binding reads the clock itself).
    if (this.computed === null) return this.inner.runNow(phase, exchange, this.when === null ? nowMs : undefined, hooks);
    const computed = this.computed;
    exchange.computedConfig = evaluated(this.id, () => computed.values(exchange));
    let pending: Promise<void> | undefined | false;
    try {
      pending = this.inner.runNow(phase, exchange, undefined, hooks);
    } catch (err) {
      exchange.computedConfig = null;
      throw err;
    }
    if (!pending) {
      exchange.computedConfig = null;
      return pending;
    }
    return pending.finally(() => {
      exchange.computedConfig = null;
    });
  }
}

/** One branch: its condition (null: always, as `otherwise` and an included fragment are) and its steps. */
export interface Branch {
  when: Expression | null;
  steps: readonly ChainStep[];
}

/**
 * choose (the first branch whose condition holds, else `otherwise`) and include-fragment (one branch, always): runs
 * the branch's steps as part of the phase. A policy in it that answers ends the phase as it would outside.
 */
export class Branches implements ChainStep {
  readonly nested: readonly ChainStep[];

  constructor(
    readonly id: string,
    private readonly branches: readonly Branch[],
    readonly wallMs: () => number,
    readonly failOpen = false,
  ) {
    this.nested = branches.flatMap((b) => b.steps);
  }

  runNow(phase: Phase, exchange: Exchange, _nowMs: number | undefined, hooks: ChainHooks): Promise<void> | undefined {
    for (const branch of this.branches) {
      if (branch.when !== null && !evaluated(this.id, () => branch.when!.holds(exchange))) continue;
      const ran = runSteps(phase, branch.steps, exchange, hooks);
      return ran === true || ran === false ? undefined : ran.then(() => undefined);
    }
    return undefined;
  }
}

/** set-variable: stores an expression's value (as text) in the request's variables, for expressions and modules. */
export class SetVariable implements ChainStep {
  readonly nested: readonly ChainStep[] = [];

  constructor(
    readonly id: string,
    private readonly name: string,
    private readonly value: Expression | string,
    readonly wallMs: () => number,
    readonly failOpen = false,
  ) {}

  runNow(_phase: Phase, exchange: Exchange): undefined {
    setVariable(this.id, exchange, this.name, textOf(this.id, this.value, exchange));
    return undefined;
  }
}

/** The most retries one retry entry makes (APIM's own limit on `count`). */
export const MAX_RETRY_COUNT = 50;
/** The longest a retry entry may go on, its waits and its policies' runs together: past it, it stops retrying. */
export const MAX_RETRY_TOTAL_MS = 60_000;

/** How long to wait between tries: APIM's fixed, linear and exponential intervals, in milliseconds. */
export interface RetryTiming {
  intervalMs: number;
  /** null: no `delta` (a fixed interval). */
  deltaMs: number | null;
  /** null: no `maxInterval` (with a delta: linear; with both: exponential, capped by it). */
  maxIntervalMs: number | null;
  /** The first retry comes at once. */
  firstFastRetry: boolean;
}

/** The wait before retry `n` (1 for the first). */
export function retryDelayMs(timing: RetryTiming, n: number): number {
  if (n === 1 && timing.firstFastRetry) return 0;
  // With first-fast-retry the intervals start counting from the second retry, as in APIM.
  const k = timing.firstFastRetry ? n - 1 : n;
  const { intervalMs, deltaMs, maxIntervalMs } = timing;
  if (deltaMs === null) return intervalMs;
  if (maxIntervalMs === null) return intervalMs + (k - 1) * deltaMs;
  return Math.min(intervalMs + (2 ** (k - 1) - 1) * deltaMs, maxIntervalMs);
}

/**
 * retry (APIM's): runs its policies, then, while its condition holds and tries remain, waits and runs them again. A
 * failure of one of its policies is not retried: it goes to on-error like anywhere else (a send-request with
 * `ignoreError` lets the condition decide on a call that got no answer). Bounded by `count` (at most 50) and by
 * MAX_RETRY_TOTAL_MS: a retry that would start later than that after the first try is not made.
 */
export class Retry implements ChainStep {
  readonly nested: readonly ChainStep[];

  constructor(
    readonly id: string,
    private readonly condition: Expression,
    private readonly count: number,
    private readonly timing: RetryTiming,
    private readonly steps: readonly ChainStep[],
    readonly wallMs: () => number,
    readonly failOpen = false,
    /** The longest it goes on (MAX_RETRY_TOTAL_MS; shorter in tests). */
    private readonly maxTotalMs = MAX_RETRY_TOTAL_MS,
  ) {
    this.nested = steps;
  }

  runNow(phase: Phase, exchange: Exchange, _nowMs: number | undefined, hooks: ChainHooks): Promise<void> | undefined {
    const started = this.wallMs();
    const again = () => this.count > 0 && evaluated(this.id, () => this.condition.holds(exchange));
    const first = runSteps(phase, this.steps, exchange, hooks);
    if (first === true || (first === false && !again())) return undefined;
    if (first === false) return this.retries(phase, exchange, hooks, started, again);
    return first.then((answered) => (answered || !again() ? undefined : this.retries(phase, exchange, hooks, started, again)));
  }

  /** The retries, once the first try ran and the condition held. */
  private async retries(phase: Phase, exchange: Exchange, hooks: ChainHooks, started: number, again: () => boolean): Promise<void> {
    for (let n = 1; ; n++) {
      const delay = retryDelayMs(this.timing, n);
      if (this.wallMs() - started + delay > this.maxTotalMs) return;
      if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
      if (await runSteps(phase, this.steps, exchange, hooks)) return;
      if (n >= this.count || !again()) return;
    }
  }
}

/**
 * wait (APIM's): runs its send-requests at once, side by side, and goes on when all of them (`for: all`) or the first
 * of them (`for: any`) completed. With `any`, the others complete in the background and store their responses when
 * they come. A failure: with `all`, the first is the entry's once every call settled; with `any`, only when every call
 * failed.
 */
export class Wait implements ChainStep {
  readonly nested: readonly ChainStep[];

  constructor(
    readonly id: string,
    private readonly forAll: boolean,
    private readonly steps: readonly ChainStep[],
    readonly wallMs: () => number,
    readonly failOpen = false,
  ) {
    this.nested = steps;
  }

  runNow(phase: Phase, exchange: Exchange, _nowMs: number | undefined, hooks: ChainHooks): Promise<void> {
    // Each call on its own (a synchronous failure becomes a rejection), so that one's failure does not stop the others.
    const calls = this.steps.map((step) => new Promise<boolean>((resolve) => resolve(runSteps(phase, [step], exchange, hooks))));
    if (this.forAll) {
      return Promise.allSettled(calls).then((outcomes) => {
        const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
        if (failed) throw failed.reason;
      });
    }
    return Promise.any(calls).then(
      () => undefined,
      (err: AggregateError) => {
        throw err.errors[0];
      },
    );
  }
}

const TRACE_LEVELS = { verbose: 'debug', information: 'info', error: 'error' } as const;
/** The longest message or metadata value a trace keeps (longer ones are cut, with a mark). */
export const MAX_TRACE_TEXT = 8 * 1024;

/**
 * trace (APIM's): a record in the request's access log line (`traces`) and a log line of its own (`msg: "trace"`, at
 * the severity's level, with the request id), its message and metadata computed for the request.
 */
export class Trace implements ChainStep {
  readonly nested: readonly ChainStep[] = [];

  constructor(
    readonly id: string,
    private readonly source: string,
    private readonly severity: 'verbose' | 'information' | 'error',
    private readonly message: Expression | string,
    private readonly metadata: readonly [string, Expression | string][],
    private readonly log: (level: 'debug' | 'info' | 'error', fields: Record<string, unknown>) => void,
    readonly wallMs: () => number,
    readonly failOpen = false,
  ) {}

  runNow(_phase: Phase, exchange: Exchange): undefined {
    const text = (value: Expression | string) => {
      const full = typeof value === 'string' ? value : evaluated(this.id, () => value.text(exchange));
      return full.length > MAX_TRACE_TEXT ? `${full.slice(0, MAX_TRACE_TEXT)}…(cut)` : full;
    };
    const metadata: Record<string, string> = {};
    for (const [name, value] of this.metadata) metadata[name] = text(value);
    const record = { binding: this.id, source: this.source, severity: this.severity, message: text(this.message), metadata };
    (exchange.traces ??= []).push(record);
    this.log(TRACE_LEVELS[this.severity], { requestId: exchange.requestId, ...record });
    return undefined;
  }
}

/** A configuration value for this request: text as written, or an expression's value as text. */
export function textOf(id: string, value: Expression | string, exchange: Exchange): string {
  return typeof value === 'string' ? value : evaluated(id, () => value.text(exchange));
}

/** Stores `value` in the request's variables, within the length a variable may have. */
export function setVariable(id: string, exchange: Exchange, name: string, value: string): void {
  if (value.length > MAX_VARIABLE_LENGTH) {
    throw new PolicyFailure(id, 'expression', `the value of variable "${name}" is ${value.length} characters long; a variable may hold at most ${MAX_VARIABLE_LENGTH}`);
  }
  exchange.variables.set(name, value);
}
