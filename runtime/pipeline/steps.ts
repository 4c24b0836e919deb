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
