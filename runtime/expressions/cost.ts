// What an expression may cost, bounded before it is accepted. CEL has no loops, but its macros (all, exists,
// exists_one, map, filter) iterate over lists, strings and lists grow with `+`, split and join, cel.bind reuses a value,
// and `matches` runs a regular expression: an operator's careless expression (or one written to hurt) could otherwise
// take the event loop for seconds, or allocate until the process dies.
//
// Three bounds, all checked when the configuration loads:
//   - the text and the parse tree (PARSE_LIMITS, MAX_EXPRESSION_LENGTH): the parser refuses deeper or larger trees;
//   - an estimate of the work and of the largest value, in the spirit of cel-go's cost estimator: each value an
//     expression reads from a request is taken to be at most INPUT_BOUND long (the request head limit by default),
//     and each node's cost and size follow from its children's (a macro's body counts once per element of its range,
//     the elements together no larger than the range; macros nest at most MAX_MACRO_NESTING deep);
//     an expression whose estimate passes MAX_COST or MAX_SIZE is refused, with both figures;
//   - regular expressions: `matches` takes a literal pattern, without nested quantifiers or back-references, the
//     constructs that make a backtracking engine (JavaScript's) take exponential time.

/** The longest expression text accepted. */
export const MAX_EXPRESSION_LENGTH = 4096;

/** The parser's structural limits (@marcbachmann/cel-js checks them while it parses). */
export const PARSE_LIMITS = { maxAstNodes: 512, maxDepth: 32, maxListElements: 256, maxMapEntries: 256, maxCallArguments: 8 };

/**
 * The length assumed for any value read from the request (a header, the path, a variable): the gateway's request
 * head limit by default (GATEHOUSE_MAX_HEADER_BYTES, 16 KiB), which bounds what a client can send in it.
 */
export const INPUT_BOUND = 16 * 1024;

/** Estimated work units (about one character or element visited each): roughly a millisecond at worst. */
export const MAX_COST = 1_000_000;

/** Estimated largest value (characters or elements). */
export const MAX_SIZE = 1024 * 1024;

/**
 * Macros inside macros: each level is estimated twice (below), and three levels already iterate a request value's
 * length cubed.
 */
export const MAX_MACRO_NESTING = 3;

const BOOL_MACROS = new Set(['all', 'exists', 'exists_one']);
const LIST_MACROS = new Set(['map', 'filter']);

interface Node {
  op: string;
  args: unknown;
}

interface Bound {
  /** Largest length of the value (characters of a string, elements of a list or map; 1 for a scalar). */
  size: number;
  /** Work to compute it. */
  cost: number;
}

const isNode = (v: unknown): v is Node => typeof v === 'object' && v !== null && typeof (v as Node).op === 'string';

/** The problems of an expression's cost, or none. */
export function costProblems(ast: unknown): string[] {
  const t: Tally = { problems: [], largest: 0, macroDepth: 0 };
  const { cost } = estimate(ast, new Map(), t);
  if (cost > MAX_COST || t.largest > MAX_SIZE) {
    t.problems.push(
      `may cost too much: estimated ${fmt(cost)} steps and values of ${fmt(t.largest)} characters or elements at worst ` +
        `(at most ${fmt(MAX_COST)} and ${fmt(MAX_SIZE)}, taking each request value as ${INPUT_BOUND} characters); ` +
        'nest fewer macros, or split and join less',
    );
  }
  return t.problems;
}

/** What the estimate found on its way: pattern problems, and the largest value of any node. */
interface Tally {
  problems: string[];
  largest: number;
  /** Macros around the node being estimated. */
  macroDepth: number;
}

/** `scope`: the bound of each name a macro or cel.bind introduced. */
function estimate(node: unknown, scope: ReadonlyMap<string, number>, t: Tally): Bound {
  const bound = estimateNode(node, scope, t);
  if (bound.size > t.largest) t.largest = bound.size;
  return bound;
}

const fmt = (n: number) => (n >= 1e15 ? n.toExponential(1) : String(Math.ceil(n)));

function estimateNode(node: unknown, scope: ReadonlyMap<string, number>, t: Tally): Bound {
  if (!isNode(node)) return { size: 1, cost: 0 };
  const { op, args } = node;
  switch (op) {
    case 'value':
      return { size: typeof args === 'string' ? args.length : 1, cost: 1 };
    case 'id':
      return { size: scope.get(args as string) ?? INPUT_BOUND, cost: 1 };
    case 'rcall':
      return call(args as [string, unknown, unknown[]], scope, t);
  }
  const children = childNodes(args).map((c) => estimate(c, scope, t));
  const cost = sum(children.map((c) => c.cost)) + 1;
  const sizes = children.map((c) => c.size);
  switch (op) {
    case 'list':
    case 'map':
    case '+':
      // A concatenation or a literal holds what its parts hold.
      return { size: sum(sizes) + 1, cost: cost + sum(sizes) };
    case 'in':
      return { size: 1, cost: cost + (sizes[1] ?? 1) };
    case '==':
    case '!=':
    case '<':
    case '<=':
    case '>':
    case '>=':
      return { size: 1, cost: cost + Math.min(...sizes) };
    default:
      // Selections, indexing, logic, arithmetic, the conditional: no larger than the largest part.
      return { size: Math.max(1, ...sizes), cost };
  }
}

/** A receiver call (`x.f(...)`), a macro, or a global function (`cel.bind`, `size(x)`: the receiver is absent then). */
function call([name, receiver, callArgs]: [string, unknown, unknown[]], scope: ReadonlyMap<string, number>, t: Tally): Bound {
  const list = Array.isArray(callArgs) ? callArgs : [];
  const variable = isNode(list[0]) && list[0].op === 'id' ? (list[0].args as string) : null;
  if (name === 'bind' && isNode(receiver) && receiver.op === 'id' && receiver.args === 'cel' && variable !== null && list.length === 3) {
    const init = estimate(list[1], scope, t);
    const body = estimate(list[2], new Map(scope).set(variable, init.size), t);
    return { size: body.size, cost: init.cost + body.cost };
  }
  if ((BOOL_MACROS.has(name) || LIST_MACROS.has(name)) && variable !== null && list.length >= 2) {
    if (t.macroDepth >= MAX_MACRO_NESTING) {
      t.problems.push(`nests macros more than ${MAX_MACRO_NESTING} deep`);
      return { size: 1, cost: 0 };
    }
    t.macroDepth++;
    const range = estimate(receiver, scope, t);
    // The range's elements (or keys) together are no larger than the range: a body whose cost grows with its element
    // costs, over all elements, at most its cost for one element as large as the range, plus its cost for an element
    // of size 1 once per element.
    const bodies = (elementSize: number) => list.slice(1).map((b) => estimate(b, new Map(scope).set(variable, elementSize), t));
    const whole = bodies(range.size);
    const unit = bodies(1);
    t.macroDepth--;
    const cost = range.cost + sum(whole.map((b) => b.cost)) + range.size * (sum(unit.map((b) => b.cost)) + 1);
    if (BOOL_MACROS.has(name)) return { size: 1, cost };
    const size = name === 'filter' ? range.size : Math.max(1, ...whole.map((b) => b.size)) + range.size * Math.max(1, ...unit.map((b) => b.size));
    return { size, cost: cost + size };
  }
  const recv = receiver === undefined || receiver === null ? null : estimate(receiver, scope, t);
  const argBounds = list.map((a) => estimate(a, scope, t));
  const parts = recv ? [recv, ...argBounds] : argBounds;
  const cost = sum(parts.map((p) => p.cost)) + 1;
  const largest = Math.max(1, ...parts.map((p) => p.size));
  const own = recv?.size ?? largest;
  switch (name) {
    case 'split':
      return { size: 2 * own + 1, cost: cost + own };
    case 'join': {
      const size = own * (1 + (argBounds[0]?.size ?? 0)) + own;
      return { size, cost: cost + size };
    }
    case 'matches':
      t.problems.push(...patternProblems(list[0]));
      return { size: 1, cost: cost + own * Math.max(1, argBounds[0]?.size ?? 1) };
    case 'base64':
    case 'hex':
      return { size: 2 * own + 4, cost: cost + 2 * own };
    default:
      return { size: largest, cost: cost + largest };
  }
}

function childNodes(args: unknown): Node[] {
  const out: Node[] = [];
  const walk = (v: unknown) => {
    if (isNode(v)) out.push(v);
    else if (Array.isArray(v)) for (const x of v) walk(x);
  };
  walk(args);
  return out;
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

/**
 * A `matches` pattern must be a literal (so it is checked here) without the constructs that backtrack exponentially:
 * a quantified group that holds a quantifier (`(a+)+`, `(a|b*)*`) and back-references (`\1`).
 */
function patternProblems(pattern: unknown): string[] {
  if (!isNode(pattern) || pattern.op !== 'value' || typeof pattern.args !== 'string') {
    return ['matches() takes a literal pattern (a string written in the expression), so that it is checked when the configuration loads'];
  }
  const source = pattern.args;
  try {
    new RegExp(source, 'u');
  } catch (err) {
    return [`matches() pattern ${JSON.stringify(source)} is not a valid regular expression: ${(err as Error).message}`];
  }
  if (/\\[1-9]|\\k</.test(source)) return [`matches() pattern ${JSON.stringify(source)} uses a back-reference, which CEL's RE2 syntax does not have`];
  if (nestedQuantifier(source)) {
    return [
      `matches() pattern ${JSON.stringify(source)} repeats a group that itself repeats (like (a+)+): such a pattern can take exponential time on a crafted input`,
    ];
  }
  return [];
}

/** Whether a quantified group contains a quantifier: the star height above one that makes backtracking explode. */
function nestedQuantifier(source: string): boolean {
  // For each open group: whether a quantifier (or an alternation, which repeats as badly) was seen inside it.
  const stack: boolean[] = [];
  let lastGroupHadQuantifier = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i]!;
    if (c === '\\') {
      i++;
      continue;
    }
    if (c === '[') {
      // A character class: skip to its end.
      for (i++; i < source.length && source[i] !== ']'; i++) if (source[i] === '\\') i++;
      continue;
    }
    if (c === '(') {
      stack.push(false);
      continue;
    }
    if (c === ')') {
      lastGroupHadQuantifier = stack.pop() ?? false;
      const next = source[i + 1];
      // `?` repeats nothing: `(foo|bar)?` is safe.
      const quantified = next === '*' || next === '+' || next === '{';
      if (quantified && lastGroupHadQuantifier) return true;
      if (stack.length > 0 && (quantified || lastGroupHadQuantifier)) stack[stack.length - 1] = true;
      continue;
    }
    if ((c === '*' || c === '+' || c === '{' || c === '|') && stack.length > 0) stack[stack.length - 1] = true;
  }
  return false;
}
