// The descriptor of a policy folder: policy.json and schema.json, read and checked with the author's positions, and the
// JSON text the generated `gatehouse_policy_v1` export outputs.

import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import { parseDescriptor, POLICY_NAME, type PolicyDescriptor } from '../../abi/index.ts';
import { buildError, displayPath, lineColumn, type BuildDiagnostic } from './diagnostics.ts';

function parseJsonAt(file: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    const message = (err as Error).message;
    const at = /position (\d+)/.exec(message);
    const lc = /line (\d+) column (\d+)/.exec(message);
    const pos = lc
      ? { line: Number(lc[1]), column: Number(lc[2]) }
      : at
        ? lineColumn(text, Number(at[1]))
        : { line: 1, column: 1 };
    throw buildError(`${displayPath(file)} is not valid JSON`, [
      { file, line: pos.line, column: pos.column, message: `not valid JSON: ${message}` },
    ]);
  }
}

/** The position of `"key"` in a JSON text, for messages (1:1 when not found). */
function keyPosition(text: string, key: string): { line: number; column: number } {
  const i = text.indexOf(JSON.stringify(key));
  return i >= 0 ? lineColumn(text, i) : { line: 1, column: 1 };
}

const POLICY_KEYS = new Set(['name', 'version', 'description', 'requestBody', 'responseBody', 'deterministic', 'needs']);
/**
 * Capabilities a policy may say it needs (`needs` in policy.json), `backend:<config key>`: the backend grant for
 * the host and port of the URL in that configuration key, and `openid-config:<config key>`: the KEYS effect for the
 * discovery URLs that configuration key lists.
 */
export const POLICY_NEEDS = ['counters', 'http', 'backend', 'wasi', 'filesystem'] as const;
const BACKEND_FROM_CONFIG_NEED = /^(backend|openid-config):[A-Za-z_][A-Za-z0-9_-]*$/;

function isPolicyNeed(need: unknown): boolean {
  return (POLICY_NEEDS as readonly unknown[]).includes(need) || (typeof need === 'string' && BACKEND_FROM_CONFIG_NEED.test(need));
}

/** A default policy name from a folder name: lowercase, other characters as dashes. */
export function policyNameFromFolder(folder: string): string {
  return path
    .basename(path.resolve(folder))
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 64);
}

/**
 * Reads the descriptor of the policy in `dir`: `policy.json` (`name`, `version`, `requestBody`, `responseBody`,
 * `description`) and `schema.json` (the configuration's JSON Schema). Both are optional: the name defaults to the
 * folder's name and the version to "0.0.0".
 */
export async function readDescriptor(dir: string): Promise<{ descriptor: PolicyDescriptor }> {
  const policyFile = path.join(dir, 'policy.json');
  const schemaFile = path.join(dir, 'schema.json');
  const problems: BuildDiagnostic[] = [];
  let policy: Record<string, unknown> = {};
  let policyText = '';
  if (existsSync(policyFile)) {
    policyText = await readFile(policyFile, 'utf8');
    const raw = parseJsonAt(policyFile, policyText);
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      throw buildError(`${displayPath(policyFile)} must hold a JSON object`, [
        { file: policyFile, line: 1, column: 1, message: 'must be a JSON object like {"name": "my-policy", "version": "1.0.0"}' },
      ]);
    }
    policy = raw as Record<string, unknown>;
  }
  const problem = (key: string, message: string) => {
    const { line, column } = keyPosition(policyText, key);
    problems.push({ file: policyFile, line, column, message });
  };
  for (const key of Object.keys(policy)) {
    if (!POLICY_KEYS.has(key)) {
      problem(key, `unknown key "${key}" (known: ${[...POLICY_KEYS].join(', ')})`);
    }
  }
  let name: string;
  if (policy.name === undefined) {
    name = policyNameFromFolder(dir);
    if (!POLICY_NAME.test(name)) {
      problems.push({
        file: policyFile,
        line: 1,
        column: 1,
        message: `no "name", and the folder name does not give a valid one: add "name" (lowercase letters, digits and dashes)`,
      });
    }
  } else if (typeof policy.name !== 'string' || !POLICY_NAME.test(policy.name)) {
    problem('name', `"name" must be lowercase letters, digits and dashes, starting with a letter or digit, at most 64 characters (got ${JSON.stringify(policy.name)})`);
    name = '';
  } else {
    name = policy.name;
  }
  let version = '0.0.0';
  if (policy.version !== undefined) {
    if (typeof policy.version !== 'string' || policy.version.length === 0 || policy.version.length > 64) {
      problem('version', `"version" must be a non-empty string of at most 64 characters (got ${JSON.stringify(policy.version)})`);
    } else {
      version = policy.version;
    }
  }
  for (const key of ['requestBody', 'responseBody', 'deterministic'] as const) {
    if (policy[key] !== undefined && typeof policy[key] !== 'boolean') {
      problem(key, `"${key}" must be true or false (got ${JSON.stringify(policy[key])})`);
    }
  }
  if (policy.description !== undefined && typeof policy.description !== 'string') {
    problem('description', '"description" must be a string');
  }
  // `needs` documents the grants the policy cannot work without; a built-in policy's `counters`, and the backend grant
  // of `backend:<key>`, are granted by the gateway (runtime/config/policy-sources.ts). It is not part of the module: a
  // module cannot grant itself anything.
  if (policy.needs !== undefined && (!Array.isArray(policy.needs) || !policy.needs.every(isPolicyNeed))) {
    problem(
      'needs',
      `"needs" must be a list of capabilities among ${POLICY_NEEDS.join(', ')}, backend:<configuration key> or openid-config:<configuration key> ` +
        `(got ${JSON.stringify(policy.needs)})`,
    );
  }
  let configSchema: object | null = null;
  if (existsSync(schemaFile)) {
    const schemaText = await readFile(schemaFile, 'utf8');
    const schema = parseJsonAt(schemaFile, schemaText);
    if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) {
      problems.push({ file: schemaFile, line: 1, column: 1, message: 'must be a JSON Schema object, e.g. {"type": "object", "properties": {...}}' });
    } else {
      configSchema = schema;
    }
  }
  if (problems.length > 0) throw buildError(`the descriptor of ${displayPath(dir)} is not valid`, problems);
  const descriptor: PolicyDescriptor = {
    name,
    version,
    requestBody: policy.requestBody === true,
    responseBody: policy.responseBody === true,
    deterministic: policy.deterministic === true,
    configSchema,
  };
  // The gateway reads the module's descriptor with the ABI's parser: what it would refuse (a schema.json that is not a
  // JSON Schema, say), the build refuses, naming the file the field comes from.
  const parsed = parseDescriptor(descriptorJson(descriptor));
  if ('problems' in parsed) {
    throw buildError(
      `the descriptor of ${displayPath(dir)} is not valid`,
      parsed.problems.map((message) => ({
        file: message.startsWith('descriptor.configSchema') ? schemaFile : policyFile,
        line: 1,
        column: 1,
        message,
      })),
    );
  }
  return { descriptor };
}

/** The descriptor as the module outputs it (fixed key order; `configSchema` left out when there is none). */
export function descriptorJson(d: PolicyDescriptor): string {
  const out: Record<string, unknown> = {
    name: d.name,
    version: d.version,
    requestBody: d.requestBody,
    responseBody: d.responseBody,
  };
  // Written only when true: a module that does not declare it loads in hosts older than ABI 1.3 as before.
  if (d.deterministic) out.deterministic = true;
  if (d.configSchema !== null) out.configSchema = d.configSchema;
  return JSON.stringify(out);
}
