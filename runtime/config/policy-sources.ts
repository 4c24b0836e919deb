// Where the modules of `policy:` and `source:` entries come from. The gateway run from the repository (or its npm
// install) builds them from AssemblyScript sources with the SDK (repository-policies.ts); the single-file bundle carries
// the built-in policies precompiled and has no compiler (embedded-policies.ts). Binding a document is the same code
// either way (policies.ts); only this interface differs.

import type { Grants } from '../policy-host/index.ts';

export interface BuiltinPolicy {
  name: string;
  /** Names the module's content for sharing one loaded module between entries (`source:<file>`, `builtin:<name>`). */
  key: string;
  /** The compiled module. */
  wasm(): Promise<Uint8Array>;
  /**
   * What the policy is given without asking: `counters` when its policy.json lists it in `needs` (built-ins are
   * shipped with the gateway, and a limit that fails for want of a grant protects nothing).
   */
  grants(): Promise<Grants>;
}

export interface PolicySources {
  /** The built-in policy names, sorted (for messages naming what exists). */
  builtinNames(): readonly string[];
  /** The built-in policy of that name, or null when there is none. */
  builtin(name: string): BuiltinPolicy | null;
  /**
   * Builds a `source:` entry (a policy folder or its policy.ts, an absolute path) into a module. Throws
   * PolicySourceError with one line per problem.
   */
  buildSource(source: string): Promise<Uint8Array>;
}

/** A policy that cannot be had: each problem is one line of the configuration error. */
export class PolicySourceError extends Error {
  readonly problems: string[];

  constructor(problems: string[]) {
    super(problems.join('\n'));
    this.name = 'PolicySourceError';
    this.problems = problems;
  }
}

/** Built-in policy names are folder names: lowercase letters, digits and dashes. */
export const BUILTIN_NAME = /^[a-z0-9][a-z0-9-]*$/;

/** The grants a policy.json's `needs` earns a built-in (only `counters` is given without asking). */
export function grantsFromNeeds(needs: unknown): Grants {
  return Array.isArray(needs) && needs.includes('counters') ? { counters: true } : {};
}
