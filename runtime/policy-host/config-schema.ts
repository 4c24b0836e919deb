// Policy configurations are checked against the JSON Schema a policy ships in its descriptor.
// ajv is the well-kept validator of the JS ecosystem; writing our own would be a worse copy of it.

import AjvModule from 'ajv';
import type { ErrorObject, ValidateFunction } from 'ajv';

// ajv is CommonJS; under Node's ESM interop the class is on `.default`, under Deno it may be the module itself.
const Ajv = ((AjvModule as unknown as { default?: unknown }).default ?? AjvModule) as typeof AjvModule.default;
const ajv = new Ajv({ allErrors: true, strict: false, useDefaults: true });

export type ConfigValidator = (config: unknown) => string[];

/** Compiles a schema; throws with a readable message when the schema itself is invalid. */
export function compileConfigSchema(schema: unknown): ConfigValidator {
  let validate: ValidateFunction;
  try {
    validate = ajv.compile(schema as object);
  } catch (err) {
    throw new Error(`configSchema is not a valid JSON Schema: ${(err as Error).message}`);
  }
  return (config) => (validate(config) ? [] : (validate.errors ?? []).map(formatError));
}

function formatError(e: ErrorObject): string {
  const at = e.instancePath === '' ? '(root)' : e.instancePath;
  if (e.keyword === 'additionalProperties') {
    return `${at}: unknown property "${(e.params as { additionalProperty: string }).additionalProperty}"`;
  }
  if (e.keyword === 'enum') {
    return `${at}: ${e.message}: ${JSON.stringify((e.params as { allowedValues: unknown[] }).allowedValues)}`;
  }
  return `${at}: ${e.message ?? e.keyword}`;
}
