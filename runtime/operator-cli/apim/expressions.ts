// APIM policy expressions (C#, `@(...)`) to CEL (docs/expressions.md): the common forms, read as patterns. Whatever
// is left after the patterns must be literals and operators CEL shares with C#; anything else is not translated, and
// the importer says so with its line.

export type Translated = { cel: string } | { problem: string };

const STRING = String.raw`"(?:[^"\\]|\\.)*"`;
const ARG = String.raw`\s*(${STRING})\s*`;
const DEFAULT = String.raw`(?:,${ARG})?`;
/** A token read from a header and parsed (`.AsJwt()?.`), the scheme split off or not. */
const TOKEN_FROM_HEADER = String.raw`context\.Request\.Headers\.GetValueOrDefault\(${ARG}(?:,${ARG})?\)\s*(?:\.Split\(\s*' '\s*\)\s*(?:\.Last\(\)|\[1\]))?\s*\.AsJwt\(\)\s*\??`;

/** A C# string literal as a CEL one (CEL reads the same escapes in double quotes); lower-cased for header names. */
function literal(csharp: string, lower = false): string {
  return lower ? csharp.toLowerCase() : csharp;
}

function optional(map: string, key: string, fallback: string | undefined, lower = false): string {
  return `${map}[?${literal(key, lower)}].orValue(${fallback ?? '""'})`;
}

/** Patterns, tried in order; each replaced by a placeholder that the final check lets through. */
const RULES: [RegExp, (...groups: string[]) => string][] = [
  // JWT claims of the token in a header (APIM parses it on the spot; Gatehouse reads what validate-jwt verified).
  [
    new RegExp(String.raw`${TOKEN_FROM_HEADER}\.Claims\s*\.GetValueOrDefault\(${ARG}${DEFAULT}\)`, 'g'),
    (_h, _d, claim, fallback) => optional('jwt', claim!, fallback),
  ],
  [new RegExp(String.raw`${TOKEN_FROM_HEADER}\.Subject`, 'g'), () => optional('jwt', '"sub"', undefined)],
  // The response a send-request stored (APIM keeps the IResponse object in the variable; Gatehouse in `responses`).
  [new RegExp(String.raw`\(\s*\(\s*IResponse\s*\)\s*context\.Variables\[${ARG}\]\s*\)\.StatusCode`, 'g'), (name) => `responses[${name}].status`],
  [new RegExp(String.raw`\(\s*\(\s*IResponse\s*\)\s*context\.Variables\[${ARG}\]\s*\)\.Body\.As<string>\(\s*(?:preserveContent\s*:\s*true\s*)?\)`, 'g'), (name) => `responses[${name}].body`],
  [new RegExp(String.raw`context\.Request\.Headers\.GetValueOrDefault\(${ARG}${DEFAULT}\)`, 'g'), (name, fallback) => optional('request.headers', name!, fallback, true)],
  [new RegExp(String.raw`context\.Response\.Headers\.GetValueOrDefault\(${ARG}${DEFAULT}\)`, 'g'), (name, fallback) => optional('response.headers', name!, fallback, true)],
  [new RegExp(String.raw`context\.Request\.Headers\.ContainsKey\(${ARG}\)`, 'g'), (name) => `${literal(name!, true)} in request.headers`],
  [new RegExp(String.raw`context\.Response\.Headers\.ContainsKey\(${ARG}\)`, 'g'), (name) => `${literal(name!, true)} in response.headers`],
  [new RegExp(String.raw`context\.Request\.Url\.Query\.GetValueOrDefault\(${ARG}${DEFAULT}\)`, 'g'), (name, fallback) => optional('request.query', name!, fallback)],
  [new RegExp(String.raw`context\.Request\.Url\.Query\.ContainsKey\(${ARG}\)`, 'g'), (name) => `${literal(name!)} in request.query`],
  [new RegExp(String.raw`context\.Request\.MatchedParameters\.GetValueOrDefault\(${ARG}${DEFAULT}\)`, 'g'), (name, fallback) => optional('route', name!, fallback)],
  [new RegExp(String.raw`context\.Request\.MatchedParameters\[${ARG}\]`, 'g'), (name) => `route[${name}]`],
  [new RegExp(String.raw`context\.Variables\.GetValueOrDefault(?:<string>)?\(${ARG}${DEFAULT}\)`, 'g'), (name, fallback) => optional('variables', name!, fallback)],
  [new RegExp(String.raw`context\.Variables\.ContainsKey\(${ARG}\)`, 'g'), (name) => `${literal(name!)} in variables`],
  [new RegExp(String.raw`context\.Variables\[${ARG}\]`, 'g'), (name) => `variables[${name}]`],
  [/context\.Response\.StatusCode\.ToString\(\)/g, () => 'string(response.status)'],
  [/context\.Response\.StatusCode/g, () => 'response.status'],
  [/context\.Request\.Method/g, () => 'request.method'],
  [/context\.Request\.IpAddress/g, () => 'request.clientAddress'],
  [/context\.Request\.Url\.Path/g, () => 'request.path'],
  [/context\.Api\.Id/g, () => 'api'],
  [/context\.Operation\.Id/g, () => 'operation'],
  [/context\.RequestId(?:\.ToString\(\))?/g, () => 'requestId'],
  // key-auth stores the caller's key id here (its `variable`, by default subscription-id).
  [/context\.Subscription\.Id/g, () => `variables[?"subscription-id"].orValue("")`],
  [new RegExp(String.raw`\.StartsWith\(${ARG}\)`, 'g'), (prefix) => `.startsWith(${prefix})`],
  [new RegExp(String.raw`\.EndsWith\(${ARG}\)`, 'g'), (suffix) => `.endsWith(${suffix})`],
  [new RegExp(String.raw`\.Contains\(${ARG}\)`, 'g'), (part) => `.contains(${part})`],
  [new RegExp(String.raw`\.Equals\(${ARG}\)`, 'g'), (other) => ` == ${other}`],
];

/** What may remain between placeholders: literals, and the operators and punctuation CEL shares with C#. */
const REMAINDER = new RegExp(String.raw`^(?:\s+|${STRING}|\d+(?:\.\d+)?|true|false|==|!=|<=|>=|&&|\|\||[!?:+\-*/%<>()]|\u0001\d+\u0001)*$`);

/**
 * The CEL for an APIM expression, `@(...)` with what is inside, or why it cannot be translated. `@{...}` (statements)
 * never is.
 */
export function translateExpression(source: string): Translated {
  const text = source.trim();
  if (text.startsWith('@{')) return { problem: `multi-statement expression ${shorten(text)} is not translated (rewrite it as one CEL expression)` };
  if (!text.startsWith('@(') || !text.endsWith(')')) return { problem: `${shorten(text)} is not an expression` };
  // Casts to the types CEL's values already have (variables are text).
  let body = text.slice(2, -1).replace(/\(\s*string\s*\)\s*(?=context\.)/g, '');
  const placed: string[] = [];
  for (const [pattern, make] of RULES) {
    body = body.replace(pattern, (...args: unknown[]) => {
      const groups = args.slice(1, -2).map((g) => (typeof g === 'string' ? g : undefined)) as string[];
      placed.push(make(...groups));
      return `\u0001${placed.length - 1}\u0001`;
    });
  }
  if (!REMAINDER.test(body)) {
    const stray = body.replace(new RegExp(STRING, 'g'), '""').match(/[A-Za-z_][\w.]*(?:\([^)]*\))?|[^\s\w"\u0001]+/g)?.find((t) => !/^(true|false)$/.test(t) && !/^(==|!=|<=|>=|&&|\|\||[!?:+\-*/%<>()])+$/.test(t));
    return { problem: `expression ${shorten(text)} is not translated: no CEL mapping for ${stray ? `"${stray}"` : 'part of it'} (docs/expressions.md lists the mapped forms)` };
  }
  // Placeholders may hold placeholders (a claim inside a header rule): replace until none is left.
  let cel = body;
  for (let i = 0; i < 4 && cel.includes('\u0001'); i++) cel = cel.replace(/\u0001(\d+)\u0001/g, (_m, n: string) => placed[Number(n)]!);
  return { cel: cel.trim() };
}

/** Whether an attribute value or text is an expression rather than a literal. */
export function isExpression(value: string): boolean {
  const t = value.trim();
  return t.startsWith('@(') || t.startsWith('@{');
}

function shorten(text: string): string {
  const one = text.replace(/\s+/g, ' ');
  return one.length > 120 ? `${one.slice(0, 117)}...` : one;
}
