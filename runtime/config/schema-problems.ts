// The document checked against gateway.schema.json (ajv), and ajv's errors turned into problems in plain words at
// their path in the document: `is required`, `unknown property (allowed here: ...)`, `must be a list (got a map)`.

import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';

import schema from './gateway.schema.json' with { type: 'json' };
import type { PathProblem } from './document-paths.ts';
import { FRAGMENT_NAME_HINT } from './fragments.ts';
import { NAMED_VALUE_NAME_HINT } from './named-values.ts';

let validator: ValidateFunction | null = null;

/** The published JSON Schema of the document (gateway.schema.json). */
export const gatewaySchema: object = schema;

function validate(): ValidateFunction {
  validator ??= new Ajv({ allErrors: true, verbose: true, strict: true, strictTypes: false, strictRequired: false }).compile(schema);
  return validator;
}

/** Plain-language messages for the schema's patterns (keyed by the pattern: ajv may inline `$ref`s, which changes
 *  schema paths). */
const PATTERN_HINTS: Record<string, string> = {
  '^[a-z0-9][a-z0-9-]{0,63}$': 'must be lowercase letters, digits and dashes, starting with a letter or digit, at most 64 characters',
  '^/': 'must start with "/"',
  '^((\\*\\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\\[[0-9A-Fa-f:.]+\\])$':
    'must be a host name (api.example.com), a wildcard (*.example.com) or an IP address, without port',
  '^(https?://.+|builtin:echo)$': 'must be an absolute http:// or https:// URL, or builtin:echo',
  '^https?://': 'must be an absolute http:// or https:// URL',
  '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$': 'must be letters, digits, "_" and "-", starting with a letter or digit, at most 64 characters',
  "^(\\*|[!#$%&'+.^_`|~0-9A-Z-]+)$": 'must be an HTTP method in upper case (GET, POST, ...) or "*"',
  '^[a-z0-9][a-z0-9-]*$': 'must be the name of a built-in policy (lowercase letters, digits and dashes)',
  '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$': FRAGMENT_NAME_HINT,
  '^[A-Za-z0-9._-]{1,128}$': 'must be letters, digits, ".", "_" and "-", at most 128 characters',
  "^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$": 'must be an HTTP header name (letters, digits and !#$%&\'*+.^_`|~-, no spaces), at most 256 characters',
  '^[^\\s/?#@\\\\]+$': 'must be a host and port, like "orders.internal:8443" or "*.svc.example.com:443", without a scheme or path',
};

function shown(value: unknown): string {
  const text = value === undefined ? 'nothing' : JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a map';
  return `${typeof value} ${shown(value)}`;
}

function pointerPath(pointer: string): (string | number)[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^(0|[1-9]\d*)$/.test(s) ? Number(s) : s));
}

/** The problems the schema finds in `data`, each at its path; empty when the schema accepts it. */
export function schemaProblems(data: unknown): PathProblem[] {
  const check = validate();
  if (check(data)) return [];
  const errors = check.errors ?? [];
  // Errors inside the branches of a oneOf or anyOf are noise: its own error says what is wrong.
  const oneOfs = errors
    .filter((e) => e.keyword === 'oneOf' || e.keyword === 'anyOf')
    .map((e) => ({ schema: `${e.schemaPath}/`, instance: e.instancePath }));
  const out: PathProblem[] = [];
  for (const e of errors) {
    const inBranch = oneOfs.some(
      (o) => e.schemaPath.startsWith(o.schema) && (e.instancePath === o.instance || e.instancePath.startsWith(`${o.instance}/`)),
    );
    if (inBranch) continue;
    if (e.keyword === 'propertyNames') continue; // reported by the pattern error of the name itself
    if (e.keyword === 'if') continue; // reported by the error of the branch it chose
    const problem = formatSchemaError(e);
    if (problem) out.push(problem);
  }
  return out;
}

function formatSchemaError(e: ErrorObject): PathProblem | null {
  const path = pointerPath(e.instancePath);
  const params = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required':
      return { path: [...path, String(params.missingProperty)], message: 'is required' };
    case 'additionalProperties': {
      const allowed = Object.keys((e.parentSchema as { properties?: object } | undefined)?.properties ?? {});
      return {
        path: [...path, String(params.additionalProperty)],
        message: `unknown property${allowed.length > 0 ? ` (allowed here: ${allowed.join(', ')})` : ''}`,
      };
    }
    case 'oneOf': {
      const branches = (e.schema as { required?: string[] }[]).map((b) => b.required?.[0]);
      if (branches.every((k): k is string => typeof k === 'string')) {
        const data = e.data as Record<string, unknown>;
        const present = branches.filter((k) => data !== null && typeof data === 'object' && k in data);
        const options = branches.map((k) => `"${k}"`).join(', ').replace(/, ([^,]*)$/, ' or $1');
        return {
          path,
          message:
            present.length === 0
              ? `needs one of ${options}`
              : `has ${present.map((k) => `"${k}"`).join(' and ')}: give exactly one of ${options}`,
        };
      }
      return { path, message: e.message ?? 'must match exactly one schema' };
    }
    case 'anyOf': {
      const described = (e.parentSchema as { description?: unknown } | undefined)?.description;
      return { path, message: `must be ${typeof described === 'string' ? described : 'one of the forms allowed here'} (got ${shown(e.data)})` };
    }
    case 'pattern': {
      const name = (e as ErrorObject & { propertyName?: string }).propertyName;
      if (name !== undefined) {
        // Property names are constrained in three places: named values, fragments, and the guest paths of filesystem grants.
        const message =
          path.length === 1 && path[0] === 'namedValues'
            ? NAMED_VALUE_NAME_HINT
            : path.length === 1 && path[0] === 'fragments'
              ? FRAGMENT_NAME_HINT
              : 'the guest path must be absolute (start with "/")';
        return { path: [...path, name], message };
      }
      const hint = PATTERN_HINTS[String(params.pattern)];
      return { path, message: `${hint ?? e.message ?? 'does not match'} (got ${shown(e.data)})` };
    }
    case 'type': {
      // Named values are not repeated: a secret written as a number (YAML `value: 12345678`) is still a secret.
      const got = path[0] === 'namedValues' ? typeName(e.data).split(' ')[0] : typeName(e.data);
      return { path, message: `must be ${articleType(String(params.type))} (got ${got})` };
    }
    case 'const':
      return { path, message: `must be ${shown(params.allowedValue)} (got ${shown(e.data)})` };
    case 'enum':
      return { path, message: `must be one of ${(params.allowedValues as unknown[]).map(shown).join(', ')} (got ${shown(e.data)})` };
    case 'uniqueItems':
      return {
        path: [...path, Math.max(Number(params.i), Number(params.j))],
        message: `duplicate of item ${Math.min(Number(params.i), Number(params.j))}`,
      };
    case 'minItems':
      return { path, message: Number(params.limit) === 1 ? 'must not be empty' : `${e.message ?? 'too short'}` };
    case 'minLength':
      return { path, message: 'must not be empty' };
    case 'maxLength':
      // Without the value: it may be a secret (namedValues).
      return { path, message: `must be at most ${String(params.limit)} characters (got ${String(e.data).length})` };
    default:
      return { path, message: `${e.message ?? e.keyword} (got ${shown(e.data)})` };
  }
}

function articleType(type: string): string {
  const names: Record<string, string> = {
    object: 'a map',
    array: 'a list',
    string: 'a string',
    integer: 'an integer',
    number: 'a number',
    boolean: 'true or false',
    null: 'null',
  };
  return type
    .split(',')
    .map((t) => names[t] ?? t)
    .join(' or ');
}
