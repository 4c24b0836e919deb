// Public surface of the policy host.
// The ABI's constants and the descriptor (abi/), which whoever drives a host speaks.
export {
  DESCRIBE_EXPORT,
  EFFECT_PENDING,
  EXPORT_SIGNATURE,
  EffectKind,
  Field,
  HOST_FUNCTIONS,
  HOST_MODULE,
  INTERNAL_MODULE,
  KERNEL_FUNCTIONS,
  KERNEL_MODULE,
  LOG_LEVELS,
  MAX_EFFECTS_PER_CALL,
  MAX_EFFECTS_PER_REQUEST,
  MAX_EFFECT_ROUNDS,
  PHASES,
  PHASE_EXPORTS,
  Status,
  WASI_MODULE,
  type LogLevel,
  type Phase,
  type PolicyDescriptor,
} from '../../abi/index.ts';
export * from './errors.ts';
export { PolicyHost, type BindSpec, type PolicyHostOptions } from './host.ts';
export { PolicyBinding, type EffectRunner, type EffectContext, type BindingStats } from './binding.ts';
export { DEFAULT_LIMITS, type Grants, type Limits } from './instance.ts';
export type { BudgetClocks } from './call-budget.ts';
export type { InstrumentedModuleStore, PolicyModule } from './module.ts';
/** The version of the CPU meter's rewriting, which a store of metered modules keys its entries by. */
export { instrumenterVersion } from './instrument.ts';
export { DEFAULT_BREAKER, type BreakerSettings } from './circuit-breaker.ts';

// Embedding: what a program that runs policies outside the gateway's request path needs (the SDK's offline test runner
// is one). Files of the host import each other directly, never this index, so these re-exports make no import
// cycle; keep it so.
/** The exchange policies read and change (request, response, variables), with the undo journal a failed call rolls back. */
export { Exchange, headerMap, type ExchangeInit, type HeaderMap, type RequestState, type ResponseState } from './exchange.ts';
/** An effect runner for counters, leases and meters, without the network; wrap or extend it to answer HTTP effects. */
export { CounterEffects, type CounterEffectsOptions } from './counter-effects.ts';
/** Counters kept in the process's memory, the store CounterEffects counts in. */
export { MemoryCounterStore, type CounterStore } from '../state/counter-store.ts';
/** The grant check of the HTTP and backend effects: throws a CallAbort (capability) for a URL outside the grant. */
export { checkEgress } from './egress.ts';
/** The structured logger a host writes policies' log lines to, and a sink that keeps the records in an array. */
export { Logger, memorySink, type LogRecord } from '../telemetry/logger.ts';
