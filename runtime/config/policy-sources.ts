// Where the modules of `policy:` and `source:` entries come from. The gateway run from the repository (or its npm
// install) builds them from AssemblyScript sources with the SDK (repository-policies.ts); the single-file bundle carries
// the built-in policies precompiled and has no compiler (embedded-policies.ts). Binding a document is the same code
// either way (policies.ts); only this interface differs.

import { parseHostPattern, portOf } from '../policy-host/egress.ts';
import type { Grants } from '../policy-host/index.ts';

export interface BuiltinPolicy {
  name: string;
  /** Names the module's content for sharing one loaded module between entries (`source:<file>`, `builtin:<name>`). */
  key: string;
  /** The compiled module. */
  wasm(): Promise<Uint8Array>;
  /** Its policy.json's `needs`, from which grantsFromNeeds derives what it is given without asking. */
  needs(): Promise<readonly string[]>;
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

/** The `needs` prefix that derives a backend grant from a configuration key: `backend:baseUrl`. */
export const BACKEND_FROM_CONFIG = 'backend:';
/** A need that grants the KEYS effect for the discovery URLs a configuration key lists. */
export const OPENID_CONFIG_FROM_CONFIG = 'openid-config:';

/**
 * What a built-in policy is given without asking, for one binding's configuration, from its policy.json's `needs`
 * (built-ins are shipped with the gateway, and a limit that fails for want of a grant protects nothing):
 * - `counters`: the counters grant;
 * - `backend:<key>`: the backend grant for exactly the host and port of the http(s) URL in configuration key `<key>`
 *   (set-backend-service's `baseUrl`): the operator who wrote that URL named the host and port, so the grant says no
 *   more than the configuration does. A value that is not such a URL earns nothing (the policy's write then fails).
 * Other needs (`http`, `wasi`, `filesystem`) are for the operator to grant.
 */
export function grantsFromNeeds(needs: unknown, config: unknown): Grants {
  const grants: Grants = {};
  if (!Array.isArray(needs)) return grants;
  if (needs.includes('counters')) grants.counters = true;
  // `openid-config:<key>`: the discovery URLs listed in the configuration's `<key>` (validate-jwt's openidConfig).
  for (const need of needs) {
    if (typeof need !== 'string' || !need.startsWith(OPENID_CONFIG_FROM_CONFIG)) continue;
    const urls = (config as Record<string, unknown> | null | undefined)?.[need.slice(OPENID_CONFIG_FROM_CONFIG.length)];
    if (Array.isArray(urls)) grants.openidConfig = [...(grants.openidConfig ?? []), ...urls.filter((u): u is string => typeof u === 'string')];
  }
  for (const need of needs) {
    if (typeof need !== 'string' || !need.startsWith(BACKEND_FROM_CONFIG)) continue;
    const entry = exactEntryOf((config as Record<string, unknown> | null | undefined)?.[need.slice(BACKEND_FROM_CONFIG.length)]);
    if (entry !== null) grants.backend = { allowedHosts: [...(grants.backend?.allowedHosts ?? []), entry] };
  }
  return grants;
}

/** `host:port` of an http(s) URL, as an exact allowedHosts entry; null when the value is no such URL. */
export function exactEntryOf(value: unknown): string | null {
  if (typeof value !== 'string') return null;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  const entry = `${url.hostname}:${portOf(url)}`;
  const parsed = parseHostPattern(entry);
  return 'problem' in parsed || parsed.kind !== 'exact' ? null : entry;
}
