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
export type { PolicyModule } from './module.ts';
export { DEFAULT_BREAKER, type BreakerSettings } from './circuit-breaker.ts';
