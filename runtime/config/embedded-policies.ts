// Policies as the single-file bundle has them: the built-ins precompiled when the bundle was made (scripts/bundle.ts),
// and no AssemblyScript compiler, so `source:` entries cannot be built.

import { BUILTIN_NAME, PolicySourceError, type BuiltinPolicy, type PolicySources } from './policy-sources.ts';

export interface EmbeddedPolicy {
  name: string;
  wasm: Uint8Array;
  /** policy.json's `needs`. */
  needs: readonly string[];
}

export class EmbeddedPolicySources implements PolicySources {
  private readonly policies: Map<string, EmbeddedPolicy>;

  /** @param description names the program for messages, e.g. `the single-file bundle gatehouse.mjs` */
  constructor(
    policies: readonly EmbeddedPolicy[],
    private readonly description: string,
  ) {
    this.policies = new Map(policies.map((p) => [p.name, p]));
  }

  builtinNames(): readonly string[] {
    return [...this.policies.keys()].sort();
  }

  builtin(name: string): BuiltinPolicy | null {
    const policy = BUILTIN_NAME.test(name) ? this.policies.get(name) : undefined;
    if (!policy) return null;
    return {
      name,
      key: `builtin:${name}`,
      wasm: () => Promise.resolve(policy.wasm),
      needs: () => Promise.resolve(policy.needs),
    };
  }

  buildSource(source: string): Promise<Uint8Array> {
    return Promise.reject(
      new PolicySourceError([
        `cannot build ${source}: ${this.description} has no AssemblyScript compiler, so "source:" policies are not ` +
          'supported here. Build the policy into a module (npx gatehouse-policy build <folder>/policy.ts -o policy.wasm) ' +
          'and name it with "module:", or run the gateway from the npm install (npm start)',
      ]),
    );
  }
}
