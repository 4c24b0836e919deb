// Policy configurations are checked against the JSON Schema a policy ships in its descriptor.
// ajv is the well-kept validator of the JS ecosystem; writing our own would be a worse copy of it.

import AjvModule from 'ajv';
import type { ErrorObject, ValidateFunction } from 'ajv';

// ajv is CommonJS; under Node's ESM interop the class is on `.default`, under Deno it may be the module itself.
const Ajv = ((AjvModule as unknown as { default?: unknown }).default ?? AjvModule) as typeof AjvModule.default;
// verbose: errors carry their schema node, whose `description` explains a failed `not` or `oneOf` better than ajv can.
const ajv = new Ajv({ allErrors: true, strict: false, useDefaults: true, verbose: true });

export type ConfigValidator = (config: unknown) => string[];

/** Compiles a schema; throws with a readable message when the schema itself is invalid. */
export function compileConfigSchema(schema: unknown): ConfigValidator {
  let validate: ValidateFunction;
  try {
    validate = ajv.compile(schema as object);
  } catch (err) {
    throw new Error(`configSchema is not a valid JSON Schema: ${(err as Error).message}`);
  }
  // A failed `if` always comes with the failures of its `then` or `else`, which say what is wrong.
  return (config) => (validate(config) ? [] : readable(validate.errors ?? []).map(formatError));
}

/**
 * The errors worth showing: a failed `if` always comes with the failures of its `then` or `else`, which say what is
 * wrong; and when a `oneOf`/`anyOf`/`not` has a description, that description replaces its branches' errors (each
 * branch's pattern, hundreds of characters for an IPv6 address, says less than "not an IP address or CIDR range").
 */
function readable(errors: ErrorObject[]): ErrorObject[] {
  const described = errors.filter((e) => SUMMARISED.has(e.keyword) && hasDescription(e)).map((e) => e.schemaPath + '/');
  return errors.filter((e) => e.keyword !== 'if' && !described.some((prefix) => e.schemaPath.startsWith(prefix)));
}

const SUMMARISED = new Set(['oneOf', 'anyOf', 'not']);

function hasDescription(e: ErrorObject): boolean {
  return typeof (e.parentSchema as { description?: unknown } | undefined)?.description === 'string';
}

function formatError(e: ErrorObject): string {
  const at = e.instancePath === '' ? '(root)' : e.instancePath;
  if (e.keyword === 'additionalProperties') {
    return `${at}: unknown property "${(e.params as { additionalProperty: string }).additionalProperty}"`;
  }
  if (e.keyword === 'enum') {
    return `${at}: ${e.message}: ${JSON.stringify((e.params as { allowedValues: unknown[] }).allowedValues)}`;
  }
  if (SUMMARISED.has(e.keyword) && hasDescription(e)) return `${at}: ${(e.parentSchema as { description: string }).description}`;
  return `${at}: ${e.message ?? e.keyword}`;
}
