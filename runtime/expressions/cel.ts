// Expressions in the configuration: conditions (`when:`) and computed values, in CEL, the Common Expression Language
// that Envoy, Kubernetes and Kuadrant use. CEL has no loops, no side effects and no I/O; what an expression may cost is
// bounded here before it is accepted (cost.ts), and it is compiled (parsed and type-checked against what it may see,
// activation.ts) once, when the configuration loads.
//
// The evaluator is @marcbachmann/cel-js: measured against @bufbuild/cel on this machine, it evaluates gateway-like
// expressions 3 to 10 times faster (0.1-0.6 us against 1.1-2.5 us), which a condition on every policy entry needs;
// @bufbuild/cel passes more of the CEL conformance suite (7 failures in the core suites against 75, mostly byte-string
// ordering, protobuf wrapper types and lossless int/double comparisons at 2^63, none of which a gateway's strings,
// headers and statuses meet). See docs/expressions.md.

import { Environment } from '@marcbachmann/cel-js';

import type { Phase } from '../../abi/index.ts';
import type { Exchange } from '../policy-host/exchange.ts';
import { Activation, EXPRESSION_TYPES, EXPRESSION_VARIABLES } from './activation.ts';
import { costProblems, MAX_EXPRESSION_LENGTH, PARSE_LIMITS } from './cost.ts';

/** What an expression computes, and so what its result must be. */
export type ExpressionKind =
  /** A `when:` condition: a bool. */
  | 'condition'
  /** A value stored or sent as text (a variable, a header, a body): a string, or a number or bool written as text. */
  | 'text'
  /** A number a policy's configuration takes as an integer (a status): an int. */
  | 'int';

const RESULT_TYPES: Record<ExpressionKind, readonly string[]> = {
  condition: ['bool'],
  text: ['string', 'int', 'uint', 'double', 'bool'],
  int: ['int'],
};

/** Where an expression is used: what it may see. */
export interface ExpressionScope {
  phase: Phase;
  /** The non-secret named values of the document, by name (`namedValues` in expressions). */
  namedValues: ReadonlyMap<string, string>;
  /** The names of the secret ones: an expression that names one is refused with a clear reason. */
  secretNames: ReadonlySet<string>;
}

/** An expression that failed while it was evaluated (a missing key, a division by zero, a result of the wrong type). */
export class ExpressionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ExpressionError';
  }
}

const environment = (() => {
  const env = new Environment({
    enableOptionalTypes: true,
    // [1, 'a'] is a list CEL allows; homogeneity is a stricter option of the package, not of the language.
    homogeneousAggregateLiterals: false,
    limits: PARSE_LIMITS,
  });
  for (const [name, type] of EXPRESSION_TYPES) env.registerType(name, type);
  for (const [name, type] of EXPRESSION_VARIABLES) env.registerVariable(name, type);
  return env;
})();

type Evaluate = (context: unknown) => unknown;

/** A compiled expression. */
export class Expression {
  constructor(
    /** The text as written, for messages. */
    readonly source: string,
    readonly kind: ExpressionKind,
    private readonly evaluate: Evaluate,
    private readonly namedValues: ReadonlyMap<string, string>,
  ) {}

  /** The condition's value. Throws ExpressionError. */
  holds(exchange: Exchange): boolean {
    const value = this.run(exchange);
    if (typeof value !== 'boolean') throw new ExpressionError(`the condition gave ${describe(value)}, not a bool`);
    return value;
  }

  /** The value as text (numbers and bools written as CEL writes them). Throws ExpressionError. */
  text(exchange: Exchange): string {
    const value = this.run(exchange);
    if (typeof value === 'string') return value;
    if (typeof value === 'bigint' || typeof value === 'boolean') return String(value);
    if (typeof value === 'number' && Number.isFinite(value)) return String(value);
    // A uint is a wrapper object in the package.
    if (typeof value === 'object' && value !== null && typeof (value as { value?: unknown }).value === 'bigint') {
      return String((value as { value: bigint }).value);
    }
    throw new ExpressionError(`the expression gave ${describe(value)}, not a string, number or bool`);
  }

  /** The value as an integer (the policy's schema checks its range). Throws ExpressionError. */
  int(exchange: Exchange): number {
    const value = this.run(exchange);
    const n = typeof value === 'bigint' ? Number(value) : NaN;
    if (!Number.isSafeInteger(n)) throw new ExpressionError(`the expression gave ${describe(value)}, not an int`);
    return n;
  }

  private run(exchange: Exchange): unknown {
    try {
      return this.evaluate(new Activation(exchange, this.namedValues));
    } catch (err) {
      throw new ExpressionError(firstLine(err));
    }
  }
}

/**
 * Compiles `source` for use as `kind` in `scope`: the expression, or the problems that refuse it (syntax, types, a
 * variable it may not see there, its cost bound), each a sentence.
 */
export function compileExpression(source: unknown, kind: ExpressionKind, scope: ExpressionScope): Expression | string[] {
  if (typeof source !== 'string' || source.trim() === '') return ['must be a CEL expression (a non-empty string)'];
  if (source.length > MAX_EXPRESSION_LENGTH) {
    return [`is ${source.length} characters long; an expression may be at most ${MAX_EXPRESSION_LENGTH}`];
  }
  let parsed: ReturnType<typeof environment.parse>;
  try {
    parsed = environment.parse(source);
  } catch (err) {
    return [`CEL syntax error: ${located(err)}`];
  }
  const checked = parsed.check();
  if (!checked.valid) return [`CEL type error: ${located(checked.error)}`];
  const problems = [...scopeProblems(parsed.ast, scope), ...costProblems(parsed.ast)];
  const type = checked.type ?? 'dyn';
  // dyn (a field of JWT claims): checked when evaluated.
  if (type !== 'dyn' && !RESULT_TYPES[kind].includes(type)) {
    problems.push(`gives ${type}; ${kind === 'condition' ? 'a condition' : 'a value here'} must give ${RESULT_TYPES[kind].join(' or ')}`);
  }
  if (problems.length > 0) return problems;
  return new Expression(source, kind, parsed as unknown as Evaluate, scope.namedValues);
}

interface AstNode {
  op: string;
  args: unknown;
  pos?: number;
}

/** Variables an expression may not see where it is used, and secret named values. */
function scopeProblems(ast: unknown, scope: ExpressionScope): string[] {
  const problems: string[] = [];
  const afterBackend = scope.phase === 'outbound' || scope.phase === 'on-error';
  visit(ast, (node) => {
    if (node.op === 'id' && node.args === 'response' && !afterBackend) {
      problems.push(`reads response, which exists in outbound and on-error only (this is ${scope.phase})`);
    }
    if (node.op === 'id' && node.args === 'lastError' && scope.phase !== 'on-error') {
      problems.push(`reads lastError, which exists in on-error only (this is ${scope.phase})`);
    }
    // namedValues.name or namedValues['name']: the name is in the text.
    if ((node.op === '.' || node.op === '[]') && Array.isArray(node.args) && isId(node.args[0], 'namedValues')) {
      const key = node.op === '.' ? node.args[1] : (node.args[1] as AstNode | undefined)?.op === 'value' ? (node.args[1] as AstNode).args : undefined;
      if (typeof key === 'string' && scope.secretNames.has(key)) {
        problems.push(`reads named value "${key}", a secret: expressions see only named values that are not secret (a secret goes into a policy's config as {{${key}}})`);
      } else if (typeof key === 'string' && !scope.namedValues.has(key)) {
        problems.push(`reads named value "${key}", which is not defined`);
      }
    }
  });
  return [...new Set(problems)];
}

const isId = (node: unknown, name: string) => (node as AstNode | undefined)?.op === 'id' && (node as AstNode).args === name;

/** Calls `fn` on every node of a parsed expression. */
export function visit(node: unknown, fn: (node: AstNode) => void): void {
  if (Array.isArray(node)) {
    for (const child of node) visit(child, fn);
    return;
  }
  if (typeof node !== 'object' || node === null || typeof (node as AstNode).op !== 'string') return;
  fn(node as AstNode);
  visit((node as AstNode).args, fn);
}

/** The package's message without the excerpt it draws under it, with the column it points at. */
function located(err: unknown): string {
  const pos = (err as { node?: { pos?: unknown } } | undefined)?.node?.pos;
  const line = firstLine(err);
  return typeof pos === 'number' ? `${line} (at column ${pos + 1})` : line;
}

function firstLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String((err as { message?: unknown })?.message ?? err);
  return message.split('\n')[0]!.trim();
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (value instanceof Map || (typeof value === 'object' && value !== undefined)) return 'a map or an object';
  if (typeof value === 'bigint') return `the int ${value}`;
  if (typeof value === 'number') return `the double ${value}`;
  if (typeof value === 'string') return 'a string';
  return typeof value;
}
