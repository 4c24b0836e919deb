// The policy host: loads modules by content, compiles each once, and binds them into chains.

import type { BudgetClocks } from './call-budget.ts';
import { MAX_MEMORY_BYTES, type Phase } from '../../abi/index.ts';
import { PolicyBinding, type EffectRunner } from './binding.ts';
import { allowedHostsProblems } from './egress.ts';
import { PolicyConfigError } from './errors.ts';
import { DEFAULT_LIMITS, type Grants, type Limits } from './instance.ts';
import { loadPolicyModule, sha256Hex, type InstrumentedModuleStore, type PolicyModule } from './module.ts';
import { discardSink, Logger } from '../telemetry/logger.ts';
import { DEFAULT_BREAKER, type BreakerSettings } from './circuit-breaker.ts';
import { MetricsRegistry } from '../telemetry/metrics.ts';
import { ReplayBudget } from './replay.ts';
import { CustomMetrics } from '../telemetry/custom-metrics.ts';

export interface BindSpec {
  /** Where the binding sits, used in errors, logs, metrics and to namespace counters, e.g. `api:echo/inbound/0`. */
  id: string;
  phase: Phase;
  module: PolicyModule;
  config?: unknown;
  /**
   * Top-level configuration keys whose values are computed for each call (the gateway's `{expr: ...}` values): absent
   * from `config`, so their being required is not held against it; the computed configuration is checked when made.
   */
  computedKeys?: readonly string[];
  grants?: Grants;
  limits?: Partial<Limits>;
  failOpen?: boolean;
  /** When calls stop being made after repeated budget or cap failures (circuit-breaker.ts). */
  circuitBreaker?: Partial<BreakerSettings>;
}

export interface PolicyHostOptions {
  logger?: Logger;
  metrics?: MetricsRegistry;
  effects: EffectRunner;
  /** The clocks every call's CPU budget reads (call-budget.ts): the runtime adapter's. */
  clocks: BudgetClocks;
  /** Metered modules kept between starts; absent: every module is metered by binaryen when loaded. */
  instrumented?: InstrumentedModuleStore;
  /** Whether calls of deterministic modules may be answered from earlier calls (replay.ts); default true. */
  replay?: boolean;
  /** What the replay trees of all its bindings may hold together, in characters; default GATEWAY_REPLAY_CHARS. */
  replayChars?: number;
}

const MAX_CPU_MS = 10_000;
const MAX_LOG_LINES = 100_000;

export class PolicyHost {
  readonly logger: Logger;
  readonly metrics: MetricsRegistry;
  /** Performs the effects of policies, and the HTTP calls of the host's own send-request steps. */
  readonly effects: EffectRunner;
  private readonly clocks: BudgetClocks;
  private readonly instrumented: InstrumentedModuleStore | undefined;
  private readonly replay: boolean;
  private readonly replayBudget: ReplayBudget;
  private readonly modules = new Map<string, Promise<PolicyModule>>();
  private readonly bindingMetrics;
  /** Metrics that policies emit, shared by every binding of this host. */
  readonly customMetrics: CustomMetrics;

  constructor(options: PolicyHostOptions) {
    this.logger = options.logger ?? new Logger(discardSink);
    this.metrics = options.metrics ?? new MetricsRegistry();
    this.effects = options.effects;
    this.clocks = options.clocks;
    this.instrumented = options.instrumented;
    this.replay = options.replay !== false;
    this.replayBudget = new ReplayBudget(options.replayChars);
    this.customMetrics = new CustomMetrics(this.metrics);
    this.bindingMetrics = {
      calls: this.metrics.counter('gatehouse_policy_calls_total', 'Policy handler calls, by policy.'),
      replays: this.metrics.counter(
        'gatehouse_policy_replays_total',
        'Policy handler calls answered with the changes of an earlier call that read the same values, without running the module, by policy.',
      ),
      failures: this.metrics.counter('gatehouse_policy_failures_total', 'Failed policy calls, by policy and reason.'),
      recycles: this.metrics.counter(
        'gatehouse_policy_instance_recycles_total',
        'Policy instances discarded after a trap or a broken limit, by policy.',
      ),
      circuitOpens: this.metrics.counter(
        'gatehouse_policy_circuit_opens_total',
        'Times a binding stopped being called after running into its CPU budget or a cap too often, by policy.',
      ),
    };
  }

  /** Loads a module by content: the same bytes are checked, metered and compiled once. */
  load(bytes: Uint8Array): Promise<PolicyModule> {
    const sha = sha256Hex(bytes);
    let found = this.modules.get(sha);
    if (!found) {
      found = loadPolicyModule(bytes, this.logger, this.clocks, this.instrumented);
      this.modules.set(sha, found);
      // A module that failed to load is not remembered: the next attempt reports the error again.
      found.catch(() => this.modules.delete(sha));
    }
    return found;
  }

  /** Modules loaded so far, by sha256. */
  loadedModules(): string[] {
    return [...this.modules.keys()];
  }

  /** The wall clock calls are timed with, in milliseconds (what the chain times the host's own steps with). */
  wallMs(): number {
    return this.clocks.wallMs();
  }

  /** Checks a binding against its module (phase, configuration schema, grants, limits) and creates it. */
  bind(spec: BindSpec): PolicyBinding {
    const { module } = spec;
    const problems: string[] = [];
    if (!module.phases.has(spec.phase)) {
      problems.push(
        `policy ${module.descriptor.name} has no ${spec.phase} handler (it handles: ${[...module.phases].join(', ')})`,
      );
    }
    const config = spec.config ?? {};
    if (module.validateConfig) {
      const computed = new Set((spec.computedKeys ?? []).map((key) => `(root): must have required property '${key}'`));
      for (const p of module.validateConfig(config)) if (!computed.has(p)) problems.push(`config ${p}`);
    }
    const grants = checkGrants(spec.grants ?? {}, problems);
    if (module.importsWasi && grants.wasi !== true && grants.filesystem === undefined) {
      problems.push(`policy ${module.descriptor.name} imports WASI, which its grants do not include ("wasi": true)`);
    }
    const limits = checkLimits(spec.limits ?? {}, module, problems);
    const breaker = checkBreaker(spec.circuitBreaker ?? {}, problems);
    if (problems.length > 0) throw new PolicyConfigError(spec.id, problems);
    const binding = new PolicyBinding({
      id: spec.id,
      module,
      config,
      computedKeys: spec.computedKeys,
      grants,
      limits,
      failOpen: spec.failOpen === true,
      logger: this.logger.child({ policy: module.descriptor.name, binding: spec.id }),
      metrics: this.bindingMetrics,
      effects: this.effects,
      customMetrics: this.customMetrics,
      breaker,
      clocks: this.clocks,
      replay: this.replay,
      replayBudget: this.replayBudget,
    });
    return binding;
  }
}

function checkGrants(grants: Grants, problems: string[]): Grants {
  const known = new Set(['wasi', 'filesystem', 'http', 'backend', 'counters', 'openidConfig']);
  for (const key of Object.keys(grants)) {
    if (!known.has(key)) problems.push(`grants.${key}: unknown grant (known: ${[...known].join(', ')})`);
  }
  if (grants.wasi !== undefined && typeof grants.wasi !== 'boolean') problems.push('grants.wasi: must be a boolean');
  if (grants.counters !== undefined && typeof grants.counters !== 'boolean') {
    problems.push('grants.counters: must be a boolean');
  }
  if (grants.filesystem !== undefined) {
    const fs = grants.filesystem;
    if (typeof fs !== 'object' || fs === null || Array.isArray(fs)) {
      problems.push('grants.filesystem: must map guest paths to host directories');
    } else {
      for (const [guest, hostDir] of Object.entries(fs)) {
        if (!guest.startsWith('/')) problems.push(`grants.filesystem["${guest}"]: guest path must be absolute`);
        if (typeof hostDir !== 'string' || hostDir === '') {
          problems.push(`grants.filesystem["${guest}"]: host directory must be a non-empty string`);
        }
      }
    }
  }
  if (grants.openidConfig !== undefined) {
    const urls = grants.openidConfig;
    if (!Array.isArray(urls) || urls.length > MAX_OPENID_CONFIGS) {
      problems.push(`grants.openidConfig: must be a list of at most ${MAX_OPENID_CONFIGS} URLs`);
    } else {
      urls.forEach((url, i) => {
        if (!isHttpUrl(url)) problems.push(`grants.openidConfig[${i}]: must be an absolute http:// or https:// URL (got ${JSON.stringify(url)})`);
      });
    }
  }
  // One grammar for both: `host:port`, `*.domain:port`, `*:port`; no port means the scheme's default (80/443).
  for (const grant of ['http', 'backend'] as const) {
    if (grants[grant] !== undefined) problems.push(...allowedHostsProblems(grant, grants[grant]));
  }
  return grants;
}

/** Discovery documents one binding may name: each is a key set the gateway fetches and keeps. */
const MAX_OPENID_CONFIGS = 8;

function isHttpUrl(value: unknown): boolean {
  if (typeof value !== 'string' || value.length > 2048) return false;
  try {
    const url = new URL(value);
    return (url.protocol === 'https:' || url.protocol === 'http:') && url.username === '' && url.password === '';
  } catch {
    return false;
  }
}

function checkLimits(limits: Partial<Limits>, module: PolicyModule, problems: string[]): Limits {
  const out: Limits = { ...DEFAULT_LIMITS, ...limits };
  const positive = (name: keyof Limits, max: number) => {
    const v = out[name];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > max) {
      problems.push(`limits.${name}: must be a number above 0 and at most ${max} (got ${JSON.stringify(v)})`);
    }
  };
  positive('cpuMs', MAX_CPU_MS);
  positive('memoryBytes', MAX_MEMORY_BYTES);
  positive('outputBytes', MAX_MEMORY_BYTES);
  positive('logLines', MAX_LOG_LINES);
  positive('logBytes', MAX_MEMORY_BYTES);
  if (module.initialPages * 65536 > out.memoryBytes) {
    problems.push(
      `limits.memoryBytes: policy ${module.descriptor.name} needs ${module.initialPages * 65536} bytes at start, ` +
        `above the cap of ${out.memoryBytes}`,
    );
  }
  return out;
}

function checkBreaker(given: Partial<BreakerSettings>, problems: string[]): BreakerSettings {
  const out: BreakerSettings = { ...DEFAULT_BREAKER, ...given };
  const check = (name: keyof BreakerSettings, min: number, max: number) => {
    const v = out[name];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      problems.push(`circuitBreaker.${name}: must be an integer from ${min} to ${max} (got ${JSON.stringify(v)})`);
    }
  };
  check('failures', 0, 1000);
  check('windowMs', 1, 3_600_000);
  check('coolDownMs', 1, 3_600_000);
  return out;
}
