// The SDK's build as a library (`gatehouse-policy build` is its command-line face, sdk/cli/): AssemblyScript policies
// compiled into policy modules, checked against the ABI (abi/) as the gateway checks them, cached by content.
// The gateway builds `source:` policies through this file; nothing here imports the runtime.
export { buildPolicy, type BuildOptions, type BuildResult } from './build.ts';
export { BUILDER_VERSION } from './cache.ts';
export { ASC_FLAGS } from './toolchain.ts';
export { descriptorJson, policyNameFromFolder, POLICY_NEEDS, readDescriptor } from './descriptor.ts';
export { displayPath, PolicyBuildError, type BuildDiagnostic } from './diagnostics.ts';
export { defaultCacheDir, sdkAssemblyDir, SDK_PACKAGE } from './locations.ts';
export { checkModule } from './module-check.ts';
export type { PolicyDescriptor } from '../../abi/index.ts';
