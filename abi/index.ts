// @gatehouse/policy-abi: policy ABI v1 (abi/policy-abi.md), the contract the policy host (runtime/policy-host/) and the
// SDK's build (sdk/build/) both hold modules to. Import this file by relative path, never by package name (see
// package.json). It imports nothing from runtime/ or sdk/.
export * from './constants.ts';
export { parseDescriptor, POLICY_NAME, type PolicyDescriptor } from './descriptor.ts';
export { compileConfigSchema, type ConfigValidator } from './config-schema.ts';
export {
  functionSignatures,
  readMemoryLimits,
  writeMemoryLimits,
  type FunctionSignatures,
  type ImportedItem,
  type MemoryLimits,
  type Signature,
} from './wasm-binary.ts';
export { signatureProblems, type SignatureProblem } from './signature-checks.ts';
export { checkPolicyModule, type ModuleCheck, type ModuleCheckOptions, type ModuleProblem, type ModuleRule } from './module-check.ts';
