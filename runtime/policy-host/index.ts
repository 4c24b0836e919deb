// Public surface of the policy host.
export * from './abi.ts';
export * from './errors.ts';
export { PolicyHost, type BindSpec, type PolicyHostOptions } from './host.ts';
export { PolicyBinding, type EffectRunner, type EffectContext, type BindingStats } from './binding.ts';
export { DEFAULT_LIMITS, type Grants, type Limits } from './instance.ts';
export type { BudgetClocks } from './call-budget.ts';
export type { PolicyModule } from './module.ts';
export { DEFAULT_BREAKER, type BreakerSettings } from './circuit-breaker.ts';
export type { PolicyDescriptor } from './descriptor.ts';
