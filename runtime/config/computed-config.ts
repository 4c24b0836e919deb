// Computed configuration values: `{expr: "<CEL>"}` in place of a value of a policy's `config`, evaluated for each
// call. A policy takes them only where its schema says so (`"x-computed": true` on a top-level property): such a
// policy reads that property on every call instead of once (abi/policy-abi.md), which a module written for a fixed
// configuration may not do. An expression may stand for the whole property or for one value inside it (a header of
// return-response's `headers`).
//
// Why an object and not a prefix on a string (APIM's `@(...)`): a prefix makes every literal that happens to start
// with it an expression (a body, a header value), and needs an escape; `{expr: ...}` cannot be mistaken for text, the
// gateway's schema says what it is, and a YAML editor shows it for what it is.

import type { PolicyModule } from '../policy-host/index.ts';
import type { Exchange } from '../policy-host/exchange.ts';
import { ExpressionError, type Expression, type ExpressionKind } from '../expressions/cel.ts';
import type { ComputedConfig } from '../pipeline/steps.ts';
import type { DocPath } from './document-paths.ts';

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `{expr: "..."}` and nothing else. */
export function isExpressionValue(v: unknown): v is { expr: unknown } {
  return isObject(v) && Object.keys(v).length === 1 && 'expr' in v;
}

interface Computed {
  /** The top-level key, and the key inside it when the expression is one value of an object. */
  key: string;
  inner: string | null;
  expression: Expression;
}

export interface ComputedConfigPlan {
  /** The configuration with the computed values left out: what the binding is bound (and checked) with. */
  fixed: Record<string, unknown>;
  /** The top-level keys that hold a computed value. */
  keys: string[];
  computed: ComputedConfig;
}

/** Compiles an expression of the entry's phase (policies.ts keeps each compiled once). */
export type CompileIn = (source: unknown, kind: ExpressionKind) => Expression | string[];

/**
 * Finds the computed values of an entry's `config` for `module`: null when there are none; otherwise the plan, or
 * the problems (each with its path below `at`, the path of `config`).
 */
export function planComputedConfig(
  config: Record<string, unknown> | undefined,
  module: PolicyModule,
  compile: CompileIn,
  at: DocPath,
): ComputedConfigPlan | { path: DocPath; message: string }[] | null {
  if (!config) return null;
  const properties = (module.descriptor.configSchema as { properties?: Record<string, Record<string, unknown>> } | null)?.properties ?? {};
  const takes = Object.keys(properties).filter((k) => properties[k]?.['x-computed'] === true);
  const problems: { path: DocPath; message: string }[] = [];
  const found: Computed[] = [];
  const fixed: Record<string, unknown> = { ...config };
  for (const [key, value] of Object.entries(config)) {
    const inside = isObject(value) && !isExpressionValue(value) ? Object.entries(value).filter(([, v]) => isExpressionValue(v)) : [];
    if (!isExpressionValue(value) && inside.length === 0) continue;
    if (!takes.includes(key)) {
      problems.push({
        path: [...at, key],
        message: `policy ${module.descriptor.name} does not take an expression here (${takes.length > 0 ? `it does in: ${takes.join(', ')}` : 'it takes none'})`,
      });
      continue;
    }
    const schema = properties[key]!;
    const add = (source: unknown, type: unknown, path: DocPath, inner: string | null) => {
      const compiled = compile(source, type === 'integer' ? 'int' : 'text');
      if (Array.isArray(compiled)) for (const message of compiled) problems.push({ path, message });
      else found.push({ key, inner, expression: compiled });
    };
    if (isExpressionValue(value)) {
      add(value.expr, schema.type, [...at, key, 'expr'], null);
      delete fixed[key];
    } else {
      const valueSchema = (schema.additionalProperties ?? {}) as { type?: unknown };
      const kept = { ...(value as Record<string, unknown>) };
      for (const [inner, v] of inside) {
        add((v as { expr: unknown }).expr, valueSchema.type, [...at, key, inner, 'expr'], inner);
        delete kept[inner];
      }
      fixed[key] = kept;
    }
  }
  if (problems.length > 0) return problems;
  if (found.length === 0) return null;
  const keys = [...new Set(found.map((c) => c.key))];
  return { fixed, keys, computed: new ComputedValues(fixed, keys, found, module) };
}

class ComputedValues implements ComputedConfig {
  constructor(
    /** The fixed part, with the defaults of the policy's schema (the binding filled them in). */
    private readonly fixed: Record<string, unknown>,
    private readonly keys: readonly string[],
    private readonly computed: readonly Computed[],
    private readonly module: PolicyModule,
  ) {}

  values(exchange: Exchange): ReadonlyMap<string, string> {
    const config: Record<string, unknown> = { ...this.fixed };
    for (const key of this.keys) if (isObject(config[key])) config[key] = { ...(config[key] as object) };
    for (const { key, inner, expression } of this.computed) {
      const value = expression.kind === 'int' ? expression.int(exchange) : expression.text(exchange);
      if (inner === null) config[key] = value;
      else (config[key] as Record<string, unknown>)[inner] = value;
    }
    // The module reads what its schema allows, as it does with its fixed configuration.
    const problems = this.module.validateConfig?.(config) ?? [];
    if (problems.length > 0) throw new ExpressionError(`the computed configuration is not valid: ${problems.join('; ')}`);
    const out = new Map<string, string>([['', JSON.stringify(config)]]);
    for (const key of this.keys) {
      const value = config[key];
      out.set(key, typeof value === 'string' ? value : JSON.stringify(value));
    }
    return out;
  }
}
