// The descriptor a module returns from `gatehouse_policy_v1` (abi/policy-abi.md, section 2).

import { compileConfigSchema, type ConfigValidator } from './config-schema.ts';

export interface PolicyDescriptor {
  name: string;
  version: string;
  requestBody: boolean;
  responseBody: boolean;
  /**
   * What the handlers change depends only on what they read through `get` (1.3): the host may answer a call with the
   * changes of an earlier call that read the same values, without running it.
   */
  deterministic: boolean;
  configSchema: object | null;
}

/** A policy's name: lowercase letters, digits and dashes, starting with a letter or digit, at most 64 characters. */
export const POLICY_NAME = /^[a-z0-9][a-z0-9-]{0,63}$/;

/** The descriptor's fields. Others are refused: a misspelt `requestbody` would otherwise leave the body unread. */
const FIELDS = ['name', 'version', 'requestBody', 'responseBody', 'deterministic', 'configSchema'];

/** Parses and checks a descriptor; returns the problems found, or the descriptor and its config validator. */
export function parseDescriptor(
  text: string,
): { descriptor: PolicyDescriptor; validateConfig: ConfigValidator | null } | { problems: string[] } {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return { problems: [`${'gatehouse_policy_v1'} output is not JSON: ${(err as Error).message}`] };
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return { problems: ['descriptor: must be a JSON object'] };
  }
  const d = raw as Record<string, unknown>;
  const problems: string[] = [];
  for (const key of Object.keys(d)) {
    if (!FIELDS.includes(key)) problems.push(`descriptor.${key}: unknown field (a descriptor has ${FIELDS.join(', ')})`);
  }
  if (typeof d.name !== 'string' || !POLICY_NAME.test(d.name)) {
    problems.push(`descriptor.name: must match ${POLICY_NAME.source} (got ${JSON.stringify(d.name)})`);
  }
  if (typeof d.version !== 'string' || d.version.length === 0 || d.version.length > 64) {
    problems.push('descriptor.version: must be a non-empty string of at most 64 characters');
  }
  for (const key of ['requestBody', 'responseBody', 'deterministic'] as const) {
    if (d[key] !== undefined && typeof d[key] !== 'boolean') problems.push(`descriptor.${key}: must be a boolean`);
  }
  let validateConfig: ConfigValidator | null = null;
  if (d.configSchema !== undefined && d.configSchema !== null) {
    if (typeof d.configSchema !== 'object' || Array.isArray(d.configSchema)) {
      problems.push('descriptor.configSchema: must be a JSON Schema object');
    } else {
      try {
        validateConfig = compileConfigSchema(d.configSchema);
      } catch (err) {
        problems.push(`descriptor.${(err as Error).message}`);
      }
    }
  }
  if (problems.length > 0) return { problems };
  return {
    descriptor: {
      name: d.name as string,
      version: d.version as string,
      requestBody: d.requestBody === true,
      responseBody: d.responseBody === true,
      deterministic: d.deterministic === true,
      configSchema: (d.configSchema as object | undefined) ?? null,
    },
    validateConfig,
  };
}
