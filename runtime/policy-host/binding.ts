// A binding is one use of a policy module in a chain: the module, its configuration, its grants and limits.
// It owns the live instance, runs effect rounds, keeps every call atomic, and recycles the instance after a trap.

import type { BudgetClocks } from './call-budget.ts';
import { COMPUTED_CONFIG_KEYS, MAX_EFFECT_ROUNDS, MAX_EFFECTS_PER_REQUEST, PHASE_EXPORTS, type Phase } from '../../abi/index.ts';
import { authorFrame, CallAbort, PolicyFailure, type FailureReason, type LimitHit } from './errors.ts';
import { PolicyInstance, type CallState, type CallView, type EffectCall, type Grants, type Limits } from './instance.ts';
import type { PolicyModule } from './module.ts';
import { CircuitBreaker, DEFAULT_BREAKER, type BreakerSettings } from './circuit-breaker.ts';
import { ReplayTable, type CallRecording, type ReplayBudget } from './replay.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { Counter } from '../telemetry/metrics.ts';
import type { CustomMetrics } from '../telemetry/custom-metrics.ts';
import type { TraceContext } from '../telemetry/trace-context.ts';

/** A call view that can undo what a call did (the pipeline's exchange implements it). */
export interface TransactionalView extends CallView {
  /** Starts a call of `binding` (whose configuration and body declarations apply until commit or rollback). */
  begin(binding: PolicyBinding): void;
  commit(): void;
  rollback(): void;
  /** Runs `action` when the exchange ends (its response sent or abandoned), with what it carried. */
  atEnd(action: (usage: ExchangeUsage) => void): void;
  /** Effects performed with I/O for this request so far, by every binding (MAX_EFFECTS_PER_REQUEST). */
  effectsPerformed: number;
  /** The request's trace, which the HTTP effect's calls continue; none outside the gateway. */
  readonly trace?: TraceContext | null;
}

/** What an exchange carried, known when it ends. */
export interface ExchangeUsage {
  requestBytes: number;
  responseBytes: number;
}

export interface EffectContext {
  /** Namespaces counters: two bindings never share one by accident. */
  binding: string;
  policy: string;
  grants: Grants;
  /** The trace of the request whose call asked for the effect, when it has one. */
  trace?: TraceContext | null;
}

/** Performs effects between two calls of a handler (abi/policy-abi.md, section 5). */
export interface EffectRunner {
  perform(kind: number, request: string, context: EffectContext): Promise<string>;
  /**
   * The result now, when the runner has it without I/O (the in-memory counter), else undefined. Called inside the
   * host function, so the handler reads the result in the same call instead of a second round. May throw CallAbort.
   */
  performNow?(kind: number, request: string, context: EffectContext): string | undefined;
  /**
   * For an effect whose result holds something until the exchange ends (a lease) or is settled then (a meter): what to
   * do at the end, when the call that used it succeeded. Null: nothing.
   */
  atEnd?(kind: number, request: string, result: string, context: EffectContext): ((usage: ExchangeUsage) => void) | null;
  /** Gives back what a result holds when the call that got it failed (a lease is released at once). */
  undo?(kind: number, request: string, result: string, context: EffectContext): void;
}

export interface BindingMetrics {
  calls: Counter;
  /** Calls answered from an earlier call's changes, without running the handler (replay.ts). */
  replays: Counter;
  failures: Counter;
  recycles: Counter;
  circuitOpens: Counter;
}

export interface BindingStats {
  calls: number;
  /** Of the calls, those answered from an earlier call's changes (replay.ts). */
  replays: number;
  failures: number;
  recycles: number;
  /** Failures since the last success. */
  consecutiveFailures: number;
  lastFailure: { reason: FailureReason; message: string } | null;
}

/** What run() hands back for a call that completed synchronously. */
const SETTLED: Promise<void> = Promise.resolve();

/** What a round that asked for effects waits for: its effects, some with results, the others waiting (one at least). */
interface Waiting {
  effects: EffectCall[];
  /** How many have no result. */
  pending: number;
}

export interface BindingOptions {
  id: string;
  module: PolicyModule;
  config: unknown;
  /** Top-level configuration keys computed for each call (the exchange's computedConfig holds their values). */
  computedKeys?: readonly string[];
  grants: Grants;
  limits: Limits;
  failOpen: boolean;
  logger: Logger;
  metrics: BindingMetrics;
  effects: EffectRunner;
  /** Where metrics the policy emits go (absent: dropped). */
  customMetrics?: CustomMetrics;
  breaker?: BreakerSettings;
  /** The clocks its calls' CPU budgets read (the runtime adapter's). */
  clocks: BudgetClocks;
  /**
   * Whether calls of a module that declares itself deterministic may be answered from earlier calls (replay.ts);
   * default true. Off for one gateway with GATEHOUSE_POLICY_REPLAY=off.
   */
  replay?: boolean;
  /** What its replay trees share with the other bindings of the host. */
  replayBudget: ReplayBudget;
}

export class PolicyBinding {
  readonly id: string;
  readonly module: PolicyModule;
  readonly failOpen: boolean;
  /** What the policy may reach: effects check it, and so does the exchange for BACKEND_URL writes. */
  readonly grants: Grants;
  readonly stats: BindingStats = { calls: 0, replays: 0, failures: 0, recycles: 0, consecutiveFailures: 0, lastFailure: null };
  private instance: Promise<PolicyInstance> | null = null;
  private readonly extismConfig: Record<string, string>;
  private readonly labels: { policy: string };
  /** The `calls` counter's rendered label set: counted on every call, rendered once. */
  private readonly callsKey: string;
  /** The live instance once created, so that a call does not await a settled promise. */
  private ready: PolicyInstance | null = null;
  private readonly effectContext: EffectContext;
  /** Bound once: every call's state carries it. */
  private readonly completeNow: CallState['completeNow'];
  private readonly breaker: CircuitBreaker;
  /** The `replays` counter's rendered label set. */
  private readonly replaysKey: string;
  /** By handler export, the calls that can be answered again; null when the module's calls are not replayed. */
  private readonly replays: Record<string, ReplayTable> | null;

  constructor(private readonly options: BindingOptions) {
    this.breaker = new CircuitBreaker(options.breaker ?? DEFAULT_BREAKER);
    this.id = options.id;
    this.module = options.module;
    this.failOpen = options.failOpen;
    this.grants = options.grants;
    this.extismConfig = flattenConfig(options.config);
    this.labels = { policy: options.module.descriptor.name };
    this.callsKey = options.metrics.calls.key(this.labels);
    this.replaysKey = options.metrics.replays.key(this.labels);
    this.replays = options.module.descriptor.deterministic && options.replay !== false ? {} : null;
    this.effectContext = { binding: this.id, policy: this.name, grants: options.grants };
    const { effects } = options;
    this.completeNow = effects.performNow
      ? (kind, request) => effects.performNow!(kind, request, this.effectContext)
      : null;
  }

  get name(): string {
    return this.module.descriptor.name;
  }

  /** The configuration value a handler reads through the CONFIG field. */
  configValue(name: string): string | null {
    if (name === '') return JSON.stringify(this.options.config ?? {});
    if (name === COMPUTED_CONFIG_KEYS) return this.options.computedKeys?.length ? this.options.computedKeys.join(',') : null;
    return this.extismConfig[name] ?? null;
  }

  /** Creates the instance ahead of the first request, so that the first call does not pay for it. */
  async warm(): Promise<void> {
    await this.live();
  }

  private live(): Promise<PolicyInstance> {
    if (this.instance) return this.instance;
    const { grants, limits, logger } = this.options;
    const creating: Promise<PolicyInstance> = this.module
      .compiled(limits.memoryBytes)
      .then((compiled) =>
        PolicyInstance.create({
          compiled,
          policy: this.id,
          grants,
          limits,
          initialPages: this.module.initialPages,
          extismConfig: this.extismConfig,
          logger,
          clocks: this.options.clocks,
        }),
      )
      .then(
        (instance) => {
          // Only if it was not recycled meanwhile.
          if (this.instance === creating) this.ready = instance;
          return instance;
        },
        (err: unknown) => {
          if (this.instance === creating) this.instance = null;
          throw err;
        },
      );
    this.instance = creating;
    return creating;
  }

  /**
   * Runs the handler of `phase`. Resolves when the call succeeded (its changes are committed to the view);
   * rejects with PolicyFailure otherwise (its changes are rolled back). Not an async function: a call that completed
   * synchronously hands back a settled promise without an async frame and its await (0.1 us of a 1 us call).
   * `replay` false: the module is called even when an earlier call could answer (what the offline test runner checks
   * a deterministic policy's replays against).
   */
  run(phase: Phase, view: TransactionalView, replay = true): Promise<void> {
    try {
      return this.callNow(phase, view, undefined, replay) ?? SETTLED;
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** The wall clock its calls' CPU budgets read, in milliseconds (the chain times calls with it too). */
  wallMs(): number {
    return this.options.clocks.wallMs();
  }

  /**
   * run() for the request path: when the instance is live and the handler asks for no effect, the call completes
   * synchronously and this returns undefined (no promise, no microtask); a failure is then thrown at once. Otherwise
   * it returns a promise that settles as run()'s would. `nowMs`, when given, is wallMs() as the caller read it just
   * before: the call's budget starts from it instead of reading the clock again (a reading costs 0.1 to 0.2 us).
   */
  runNow(phase: Phase, view: TransactionalView, nowMs?: number): Promise<void> | undefined {
    return this.callNow(phase, view, nowMs, true);
  }

  /** runNow, and `replay` false calls the module even when an earlier call could answer. */
  private callNow(phase: Phase, view: TransactionalView, nowMs: number | undefined, replay: boolean): Promise<void> | undefined {
    if (!this.breaker.allows()) throw this.refusedByBreaker();
    this.stats.calls++;
    this.options.metrics.calls.incKey(this.callsKey);
    const exportName = PHASE_EXPORTS[phase];
    const instance = this.ready;
    if (!instance) return this.runRounds(exportName, view, null, 1);
    let recording: CallRecording | null = null;
    // A breaker that is not closed waits for a trial call of the module itself.
    if (replay && this.replays !== null && this.breaker.current === 'closed') {
      const table = (this.replays[exportName] ??= new ReplayTable(this.options.computedKeys?.length ? new Set(this.options.computedKeys) : null, this.options.replayBudget));
      if (this.replayed(table, view)) return undefined;
      recording = table.recording();
    }
    const waiting = this.round(instance, exportName, view, null, nowMs, recording);
    if (waiting === null) return undefined;
    return this.runRounds(exportName, view, waiting, 2);
  }

  /**
   * Makes the changes of an earlier call that read what `view` holds now, if one was kept, as one transaction: true
   * when it did (the call is answered), false when there was none or a change's status differed (nothing is changed).
   */
  private replayed(table: ReplayTable, view: TransactionalView): boolean {
    view.begin(this);
    let done = false;
    try {
      const outcome = table.lookup(view);
      done = outcome !== null && ReplayTable.apply(outcome, view);
    } catch {
      // A change the exchange refused by throwing (a backend no longer granted): the module is called, and decides.
      done = false;
    }
    if (!done) {
      view.rollback();
      return false;
    }
    view.commit();
    this.stats.replays++;
    this.options.metrics.replays.incKey(this.replaysKey);
    this.stats.consecutiveFailures = 0;
    return true;
  }

  /**
   * Drops the calls kept for replay, giving their share of the host's budget back: for a binding whose configuration
   * was replaced, which no request will run again.
   */
  dropReplays(): void {
    if (this.replays !== null) for (const table of Object.values(this.replays)) table.empty();
  }

  /** Rounds from `round` on, waiting for the instance and performing effects between them (`waiting`: the last round). */
  private async runRounds(exportName: string, view: TransactionalView, waiting: Waiting | null, round: number): Promise<void> {
    let effects: EffectCall[] | null = null;
    for (; ; round++) {
      if (waiting) {
        effects = waiting.effects;
        if (round > MAX_EFFECT_ROUNDS) {
          this.undo(waiting.effects);
          throw this.failed('effects', `still asking for effects after ${MAX_EFFECT_ROUNDS} rounds`, false);
        }
        if (view.effectsPerformed + waiting.pending > MAX_EFFECTS_PER_REQUEST) {
          this.undo(waiting.effects);
          throw this.failed('effects', `the request's policies asked for more than ${MAX_EFFECTS_PER_REQUEST} effects`, false);
        }
        view.effectsPerformed += waiting.pending;
        await this.performEffects(waiting.effects, view.trace ?? null);
      }
      let instance: PolicyInstance;
      try {
        instance = this.ready ?? (await this.live());
      } catch (err) {
        this.undo(effects);
        throw this.failed('instantiate', `could not create an instance: ${(err as Error).message}`, false);
      }
      waiting = this.round(instance, exportName, view, effects);
      if (waiting === null) return;
    }
  }

  /**
   * One call of the handler, atomic: null when it succeeded without waiting for effects (committed), else what it waits
   * for (its changes rolled back; it runs again once the effects are performed). Throws PolicyFailure.
   */
  private round(
    instance: PolicyInstance,
    exportName: string,
    view: TransactionalView,
    effects: EffectCall[] | null,
    startedMs?: number,
    recording: CallRecording | null = null,
  ): Waiting | null {
    const state: CallState = {
      view,
      effects,
      completeNow: this.completeNow,
      failMessage: null,
      grants: this.options.grants,
      metrics: null,
      recording,
    };
    view.begin(this);
    try {
      instance.callHandler(exportName, state, startedMs);
    } catch (err) {
      view.rollback();
      this.undo(state.effects);
      const { reason, message, limit, at } = classify(err, state, instance);
      // Whatever stopped it, the module was unwound mid-run: its stack or heap may be mid-update, so the instance is
      // no longer trusted.
      throw this.failed(reason, message, true, limit, at);
    }
    if (state.failMessage !== null) {
      view.rollback();
      this.undo(state.effects);
      throw this.failed('error', state.failMessage, false);
    }
    const pending = state.effects === null ? 0 : waitingIn(state.effects);
    if (pending === 0) {
      view.commit();
      if (recording !== null && recording.open && state.effects === null) this.replays![exportName]!.keep(recording);
      if (state.metrics !== null) for (const m of state.metrics) this.options.customMetrics?.record(m);
      if (state.effects !== null) this.settle(state.effects, view);
      this.stats.consecutiveFailures = 0;
      if (this.breaker.current !== 'closed' && this.breaker.succeeded() === 'closed') {
        this.options.logger.info('policy circuit closed: its trial call succeeded', {});
      }
      return null;
    }
    view.rollback();
    // Results completed synchronously in this round are kept: the next round must read them, not repeat the effect.
    return { effects: state.effects!, pending };
  }

  /** Performs the effects a round waits for, concurrently, filling in their results. */
  private async performEffects(effects: EffectCall[], trace: TraceContext | null): Promise<void> {
    const context = trace === null ? this.effectContext : { ...this.effectContext, trace };
    const outcomes = await Promise.allSettled(
      effects
        .filter((call) => call.result === undefined)
        .map(async (call) => {
          call.result = await this.options.effects.perform(call.kind, call.request, context);
        }),
    );
    const failure = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (failure) {
      // Every effect has settled, so what the others hold (leases) can be given back.
      this.undo(effects);
      const err = failure.reason as Error;
      if (err instanceof CallAbort) throw this.failed(err.reason, err.message, false, err.limit);
      throw this.failed('effects', `effect failed: ${err?.message ?? String(err)}`, false);
    }
  }

  /** The end-of-exchange actions of a successful call's effect results (leases to release, bytes to meter). */
  private settle(effects: readonly EffectCall[], view: TransactionalView): void {
    const { atEnd } = this.options.effects;
    if (!atEnd) return;
    for (const { kind, request, result } of effects) {
      const action = atEnd.call(this.options.effects, kind, request, result!, this.effectContext);
      if (action) view.atEnd(action);
    }
  }

  /** Gives back what the results of a failed call hold. */
  private undo(effects: readonly EffectCall[] | null): void {
    const { undo } = this.options.effects;
    if (!undo || effects === null) return;
    for (const { kind, request, result } of effects) {
      if (result !== undefined) undo.call(this.options.effects, kind, request, result, this.effectContext);
    }
  }

  /**
   * Counts, logs and returns a failure. `limit`: the setting the call ran into (its name and value go into the message
   * and the log); `at`: where in the policy's code it stopped, when the module tells.
   */
  private failed(reason: FailureReason, bare: string, recycle: boolean, limit: LimitHit | null = null, at: string | null = null): PolicyFailure {
    const message = limit ? `${bare} (setting ${limit.setting}: ${limit.value})` : bare;
    this.stats.failures++;
    this.stats.consecutiveFailures++;
    this.stats.lastFailure = { reason, message };
    this.options.metrics.failures.inc({ ...this.labels, reason });
    if (recycle) {
      this.stats.recycles++;
      this.options.metrics.recycles.inc(this.labels);
      const old = this.instance;
      this.instance = null;
      this.ready = null;
      void old?.then((i) => i.close()).catch(() => undefined);
    }
    // The binding's logger names the binding and its policy on every line already.
    this.options.logger.warn('policy call failed', {
      reason,
      error: message,
      ...(limit ? { limit: limit.setting, limitValue: limit.value } : {}),
      ...(at ? { at } : {}),
      recycled: recycle,
      consecutiveFailures: this.stats.consecutiveFailures,
    });
    const change = this.breaker.failed(reason);
    if (change === 'opened' || change === 'reopened') {
      const { failures, windowMs, coolDownMs } = this.options.breaker ?? DEFAULT_BREAKER;
      this.options.metrics.circuitOpens.inc(this.labels);
      this.options.logger.error(
        change === 'opened' ? 'policy circuit opened: calls fail at once until a trial call succeeds' : 'policy circuit opened again: its trial call failed',
        { reason, failures, windowMs, coolDownMs },
      );
    } else if (change === 'closed') {
      this.options.logger.info('policy circuit closed: its trial call did not run into a limit', {});
    }
    return new PolicyFailure(this.id, reason, message);
  }

  /** A call the open breaker refuses: counted, not logged (the opening was). */
  private refusedByBreaker(): PolicyFailure {
    this.stats.failures++;
    this.stats.consecutiveFailures++;
    this.options.metrics.failures.inc({ ...this.labels, reason: 'circuit-open' });
    return new PolicyFailure(
      this.id,
      'circuit-open',
      `not called: it ran into its limits too often; the next trial call is in ${this.breaker.retryInMs()} ms`,
    );
  }
}

/** How many of `effects` have no result yet. */
function waitingIn(effects: readonly EffectCall[]): number {
  let n = 0;
  for (let i = 0; i < effects.length; i++) if (effects[i]!.result === undefined) n++;
  return n;
}

interface Classified {
  reason: FailureReason;
  message: string;
  limit: LimitHit | null;
  /** Where in the policy's own code the call stopped (its file and function, or line), when it can be told. */
  at: string | null;
}

/** `abort: <message> at <file>:<line>:<column>`, as the SDK's abort handler reports it (sdk/assembly/abort.ts). */
const ABORT = /^abort: [\s\S]* at (\S+:\d+:\d+)$/;

/** Why a call that threw failed. Runs when a call fails only: reading the stack costs nothing to calls that succeed. */
function classify(err: unknown, state: CallState, instance: PolicyInstance): Classified {
  if (err instanceof CallAbort) return { reason: err.reason, message: err.message, limit: err.limit, at: null };
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof RangeError && /call stack/i.test(message)) {
    const at = authorFrame(err);
    return { reason: 'stack-overflow', message: `the call overflowed the stack (recursion too deep?)${at ? ` in ${at}` : ''}`, limit: null, at };
  }
  if (err instanceof WebAssembly.RuntimeError) {
    if (instance.memoryNearCap()) {
      const cap = instance.memoryCap;
      return {
        reason: 'memory-cap',
        message: `trapped with its memory at the cap of ${cap} bytes (${message})`,
        limit: { setting: 'limits.memoryBytes', value: cap },
        at: authorFrame(err),
      };
    }
    const reported = state.failMessage;
    const abort = reported !== null ? ABORT.exec(reported) : null;
    if (abort) {
      // An abort in the policy's own file names its line; one in a library (a missing Map key at ~lib/map.ts) names
      // the library's line, and the stack the policy's function that called it.
      const site = abort[1]!;
      const frame = site.startsWith('~lib/') ? authorFrame(err) : null;
      return { reason: 'abort', message: frame ? `${reported}, called from ${frame}` : reported!, limit: null, at: frame ?? site };
    }
    const at = authorFrame(err);
    return { reason: 'trap', message: reported ?? (at ? `${message} in ${at}` : message), limit: null, at };
  }
  if (message.startsWith('Plugin-originated error: ')) return { reason: 'error', message: message.slice(25), limit: null, at: null };
  return { reason: 'trap', message, limit: null, at: null };
}

/** Top-level configuration keys as Extism config strings: strings as they are, other values as JSON. */
function flattenConfig(config: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (config && typeof config === 'object' && !Array.isArray(config)) {
    for (const [k, v] of Object.entries(config)) out[k] = typeof v === 'string' ? v : JSON.stringify(v);
  }
  return out;
}
