// TypeScript that AssemblyScript refuses, and what to write instead. One table serves the build's messages (a
// compiler error on such an idiom is reported with the replacement, at the author's line) and the page
// docs/assemblyscript-for-typescript-authors.md (written from `idiomsPage()`; a test checks the page is up to date and
// compiles every snippet on both sides).

export interface Idiom {
  /** Stable name, used by the tests. */
  id: string;
  /** What the author wrote, in words. */
  title: string;
  /** A line of TypeScript the compiler refuses with this idiom's error (inside a handler of a policy). */
  typescript: string;
  /** The same in AssemblyScript: compiles inside a handler. */
  assemblyscript: string;
  /** Module-level TypeScript the example needs; with `errorAt: 'declarations'` the error is there. */
  declarations?: string;
  /** Module-level AssemblyScript the replacement needs. */
  asDeclarations?: string;
  errorAt?: 'declarations';
  /** What to do, as the build says it. */
  hint: string;
  /** The compiler's diagnostic code (TS or AS number) this idiom is recognised by. */
  code: number;
  /** The compiler's message, when the code alone does not tell the idiom. */
  message?: RegExp;
  /** The author's source from the error's position to the end of its line, when the code and message do not tell it. */
  source?: RegExp;
  /** The whole line of the error (a parse error is reported at a token next to the construct). */
  line?: RegExp;
  /**
   * The author's source of the error's line and the lines above it in the same function (up to 12), for idioms whose
   * error is reported away from the construct (a `typeof` test above the use that it did not narrow).
   */
  context?: RegExp;
}

/** In order: the first idiom that matches a diagnostic gives its message. */
export const IDIOMS: readonly Idiom[] = [
  {
    id: 'nullish-coalescing',
    title: '`??` (nullish coalescing)',
    typescript: 'const h = request.header("x-tenant") ?? "default";',
    assemblyscript: 'const t = request.header("x-tenant"); const h = t !== null ? t : "default";',
    hint: '`??` is not supported: test for null, `const v = x !== null ? x : fallback` (config readers take the fallback as an argument: `config.getString("k", "default")`)',
    code: 1109,
    line: /\?\?/,
  },
  {
    id: 'optional-chaining',
    title: '`?.` (optional chaining)',
    typescript: 'const n = request.header("x-tenant")?.length;',
    assemblyscript: 'const t = request.header("x-tenant"); const n = t !== null ? t.length : 0;',
    hint: '`?.` is not supported: test for null first, `const v = x !== null ? x.field : fallback`',
    code: 1109,
    line: /\?\./,
  },
  {
    id: 'object-destructuring',
    title: 'object destructuring',
    typescript: 'const { length } = request.path();',
    assemblyscript: 'const length = request.path().length;',
    hint: 'destructuring is not supported: read each field into its own variable (`const a = o.a; const b = o.b;`)',
    code: 1003,
    source: /^(const|let|var)\s*\{/,
  },
  {
    id: 'array-destructuring',
    title: 'array destructuring',
    typescript: 'const [scheme, token] = request.header("authorization")!.split(" ");',
    assemblyscript: 'const parts = request.path().split("/"); const first = parts.length > 0 ? parts[0] : "";',
    hint: 'destructuring is not supported: index the array (`const parts = s.split(" "); const a = parts[0];`), checking its length first',
    code: 1003,
    source: /^(const|let|var)\s*\[/,
  },
  {
    id: 'untyped-object-literal',
    title: 'an object literal without a declared class',
    typescript: 'const body = { error: "denied", status: 403 };',
    assemblyscript: 'const body = \'{"error":\' + jsonString("denied") + \',"status":\' + formatNumber(403) + "}";',
    hint: 'an object literal needs a declared class type (`class Problem { error: string = ""; status: i32 = 0 }` then `const p: Problem = { error: "denied", status: 403 }`); to write JSON, build the text with `jsonString()` and `formatNumber()`, or use `respondProblem()`',
    code: 2322,
    message: /'<object>' is not assignable to type 'auto'/,
  },
  {
    id: 'interface-object-literal',
    title: 'an object literal typed by an interface',
    typescript: 'const p: Point = { x: 1, y: 2 };',
    declarations: 'interface Point { x: i32; y: i32 }',
    assemblyscript: 'const p: PointClass = { x: 1, y: 2 };',
    asDeclarations: 'class PointClass { x: i32 = 0; y: i32 = 0 }',
    hint: 'an object literal needs a class, not an interface: declare `class Point { x: i32 = 0; y: i32 = 0 }`',
    code: 100,
    message: /Interface hidden classes/,
  },
  {
    id: 'json-parse',
    title: '`JSON.parse`',
    typescript: 'const doc = JSON.parse(request.bodyText()!);',
    assemblyscript: 'const doc = parseJson(\'{"a":1}\'); const a = doc !== null ? doc.get("a") : null;',
    hint: 'there is no `JSON` object: use `parseJson(text)` from @gatehouse/policy-sdk (a `JsonValue`, or null when the text is not JSON; `doc.get("key")`, `asString()`, `asInt()`...)',
    code: 2304,
    message: /'JSON'/,
    source: /^JSON\s*\.\s*parse\b/,
  },
  {
    id: 'json-stringify',
    title: '`JSON.stringify`',
    typescript: 'const text = JSON.stringify(request.path());',
    assemblyscript: 'const text = jsonString(request.path());',
    hint: 'there is no `JSON` object: `jsonString(s)` writes a string as a JSON literal, `formatNumber(n)` a number, `JsonValue.toString()` a parsed value; build objects as text (`\'{"a":\' + jsonString(a) + "}"`)',
    code: 2304,
    message: /'JSON'/,
  },
  {
    id: 'atob',
    title: '`atob`',
    typescript: 'const text = atob("aGVsbG8=");',
    assemblyscript: 'const text = base64DecodeText("aGVsbG8=");',
    hint: '`atob` is not available: use `base64DecodeText(text)` (or `base64Decode(text)` for bytes) from @gatehouse/policy-sdk; both take base64 and base64url and return null when the text is not base64',
    code: 2304,
    message: /'atob'/,
  },
  {
    id: 'btoa',
    title: '`btoa`',
    typescript: 'const text = btoa("user:secret");',
    assemblyscript: 'const text = base64EncodeText("user:secret");',
    hint: '`btoa` is not available: use `base64EncodeText(text)` (or `base64Encode(bytes)`; pass `true` for base64url) from @gatehouse/policy-sdk',
    code: 2304,
    message: /'btoa'/,
  },
  {
    id: 'text-encoder',
    title: '`TextEncoder`',
    typescript: 'const bytes = new TextEncoder().encode("text");',
    assemblyscript: 'const bytes = utf8Encode("text");',
    hint: '`TextEncoder` is not available: use `utf8Encode(text)` from @gatehouse/policy-sdk',
    code: 2304,
    message: /'TextEncoder'/,
  },
  {
    id: 'text-decoder',
    title: '`TextDecoder`',
    typescript: 'const text = new TextDecoder().decode(request.body()!);',
    assemblyscript: 'const text = utf8Decode(utf8Encode("text"));',
    hint: '`TextDecoder` is not available: use `utf8Decode(bytes)` from @gatehouse/policy-sdk (null when the bytes are not UTF-8), or `request.bodyText()`',
    code: 2304,
    message: /'TextDecoder'/,
  },
  {
    id: 'fetch',
    title: '`fetch`',
    typescript: 'const answer = fetch("https://api.example.com/check");',
    assemblyscript: 'const answer = httpCall("GET", "https://api.example.com/check"); if (answer === null) return PENDING;',
    hint: '`fetch` is not available: use `httpCall(method, url)` from @gatehouse/policy-sdk (null the first time: return PENDING; needs the `http` grant)',
    code: 2304,
    message: /'fetch'/,
  },
  {
    id: 'any',
    title: '`any`',
    typescript: 'const value: any = request.path();',
    assemblyscript: 'const value: string = request.path();',
    hint: 'there is no `any`: declare the type (`string`, `i32`, `f64`, `bool`, a class), or keep JSON data as a `JsonValue` (`parseJson`)',
    code: 2304,
    message: /'any'/,
  },
  {
    id: 'undefined',
    title: '`undefined`',
    typescript: 'if (request.header("x-tenant") === undefined) return CONTINUE;',
    assemblyscript: 'if (request.header("x-tenant") === null) return CONTINUE;',
    hint: 'there is no `undefined`: an absent value is `null` (`request.header(n) === null`); a variable must be given a value where it is declared',
    code: 2304,
    message: /'undefined'/,
  },
  {
    id: 'undefined-union',
    title: '`T | undefined`',
    typescript: 'const h: string | undefined = request.header("x-tenant");',
    assemblyscript: 'const h: string | null = request.header("x-tenant");',
    hint: 'there is no `undefined`: write `T | null` (for strings, arrays and classes; a number cannot be null, give it a default)',
    code: 100,
    message: /union types/,
    line: /\|\s*undefined\b/,
  },
  {
    id: 'optional-parameter-union',
    title: 'an optional parameter of a union type',
    typescript: 'const n = limitOf("1");',
    declarations: 'function limitOf(x?: string | i32): i32 { return 0; }',
    errorAt: 'declarations',
    assemblyscript: 'const n = limitOf(null);',
    asDeclarations: 'function limitOf(x: string | null = null): i32 { return x !== null ? x.length : 0; }',
    hint: 'a parameter has one type, and `T | null` is the only union: make it `string | null = null` (or give a default, `x: i32 = 0`), or declare two functions',
    code: 100,
    message: /union types/,
    context: /\w+\s*\?\s*:\s*[^,)]*\|/,
  },
  {
    id: 'union-type',
    title: 'a union type (`string | number`)',
    typescript: 'let id: string | i32 = 1;',
    assemblyscript: 'let id: string = "1";',
    hint: 'the only union is `T | null` (for strings, arrays and classes): pick one type (convert with `toString()` / `I32.parseInt()`), or use a class with a kind field, or a `JsonValue`',
    code: 100,
    message: /union types/,
  },
  {
    id: 'optional-parameter',
    title: 'an optional parameter `x?: T`',
    typescript: 'const s = greet();',
    declarations: 'function greet(name?: string): string { return "hi"; }',
    errorAt: 'declarations',
    assemblyscript: 'const s = greet();',
    asDeclarations: 'function greet(name: string = ""): string { return "hi " + name; }',
    hint: 'an optional parameter needs a default value: `x: string = ""`, `x: i32 = 0`, or `x: string | null = null`',
    code: 215,
  },
  {
    id: 'typeof-narrowing',
    title: '`typeof x === "string"` to narrow a nullable value',
    typescript: 'const v = request.header("x-tenant"); if (typeof v === "string") request.setHeader("x-t", v);',
    assemblyscript: 'const v = request.header("x-tenant"); if (v !== null) request.setHeader("x-t", v);',
    hint: '`typeof` does not narrow in AssemblyScript (types are known when compiling): test `v !== null`, then `v` is not null inside the branch (or write `v!`, which traps when it is null)',
    code: 2322,
    message: /\| null' is not assignable to type/,
    context: /typeof\s+[\w.]+\s*[!=]==?\s*["'](string|object)["']/,
  },
  {
    id: 'nullable-value',
    title: 'a value that may be null used as if it were not',
    typescript: 'const body = request.body(); const copy = new Uint8Array(4); copy.set(body);',
    assemblyscript: 'const body = request.body(); const n = body !== null ? body.length : 0;',
    hint: 'this value may be null (a header that is absent, a body not sent or not declared in policy.json): test `if (v === null) return ...;` first, or write `v!` to assert it (a null then traps)',
    code: 2322,
    message: /\| null' is not assignable to type/,
  },
  {
    id: 'spread',
    title: 'spread (`...`)',
    typescript: 'const all = [...request.headerNames(), "x-extra"];',
    assemblyscript: 'const all = request.headerNames().concat(["x-extra"]);',
    hint: 'spread is not supported: `a.concat(b)` joins arrays, `a.slice()` copies one, `concatBytes(a, b)` joins bytes; call a function with its arguments one by one',
    code: 100,
    message: /Spread operator/,
  },
  {
    id: 'closure',
    title: 'a callback (`map`, `filter`, `forEach`...) that uses a local variable',
    typescript: 'const prefix = request.path(); const names = request.headerNames().map((n: string) => prefix + n);',
    assemblyscript:
      'const prefix = request.path(); const src = request.headerNames(); const names = new Array<string>(); for (let i = 0; i < src.length; i++) names.push(prefix + src[i]);',
    hint: 'a function inside a function cannot use the outer function\'s local variables (no closures): write a `for (let i = 0; i < a.length; i++)` loop, or keep the value in a module-level variable',
    code: 100,
    message: /Closures/,
  },
  {
    id: 'for-of',
    title: '`for (const x of ...)`',
    typescript: 'for (const name of request.headerNames()) log.info(name);',
    assemblyscript: 'const names = request.headerNames(); for (let i = 0; i < names.length; i++) log.info(names[i]);',
    hint: '`for...of` is not supported: loop over the index (`for (let i = 0; i < a.length; i++)`); for a Map, loop over `m.keys()`',
    code: 100,
    message: /Iterators/,
  },
  {
    id: 'try-catch',
    title: '`try`/`catch`',
    typescript: 'try { request.setHeader("x-a", "1"); } catch (e) { }',
    assemblyscript: 'const err = request.trySetHeader("x-a", "1"); if (err !== null) log.warn(err);',
    hint: 'there are no exceptions: check inputs before using them (`parseJson` and `base64Decode` return null instead of throwing, `request.trySetHeader` returns the error); `return fail("...")` fails the call',
    code: 100,
    message: /Exceptions/,
  },
  {
    id: 'regexp',
    title: 'a regular expression',
    typescript: 'const ok = /^Bearer /.test(request.header("authorization")!);',
    assemblyscript: 'const a = request.header("authorization"); const ok = a !== null && a.startsWith("Bearer ");',
    hint: 'there are no regular expressions: use `startsWith`, `endsWith`, `includes`, `indexOf`, `split` and character codes (`s.charCodeAt(i)`)',
    code: 100,
    message: /Regular expressions/,
  },
  {
    id: 'object-keys',
    title: '`Object.keys`, `Object.entries`, `Object.assign`',
    typescript: 'const keys = Object.keys(new Map<string, string>());',
    assemblyscript: 'const doc = parseJson(\'{"a":1}\'); const keys = doc !== null ? doc.keys : new Array<string>();',
    hint: 'there is no `Object.keys`/`entries`/`assign`: objects are classes with fixed fields; for key-value data use a `Map` (`m.keys()`, `m.values()`) or a parsed `JsonValue` (`doc.keys`, `doc.items`)',
    code: 2339,
    message: /on type '~lib\/object\/Object'/,
  },
  {
    id: 'number-function',
    title: '`Number(x)` / `String(x)`',
    typescript: 'const limit = Number(request.header("x-limit")!);',
    assemblyscript: 'const limit = I32.parseInt("12"); const f = F64.parseFloat("1.5");',
    hint: '`Number(s)` and `String(x)` are not functions here: `I32.parseInt(s)` / `I64.parseInt(s)` / `F64.parseFloat(s)` read numbers, `x.toString()` or `formatNumber(x)` write them',
    code: 234,
    source: /^(Number|String|Boolean)\s*\(/,
  },
  {
    id: 'number-to-string',
    title: 'a number added to a string',
    typescript: 'request.setHeader("x-count", "n=" + 1.5);',
    assemblyscript: 'request.setHeader("x-count", "n=" + formatNumber(1.5));',
    hint: 'numbers are not converted to text by `+`: write `formatNumber(n)` (integers print without `.0`) or `n.toString()`',
    code: 2365,
    message: /'(f64|f32|i32|i64|u32|u64|u8|u16|i8|i16)' and '~lib\/string\/String'|'~lib\/string\/String' and '(f64|f32|i32|i64|u32|u64|u8|u16|i8|i16)'/,
  },
  {
    id: 'string-plus-number',
    title: 'a string plus a number',
    typescript: 'request.setHeader("x-count", "n=" + <i32>2);',
    assemblyscript: 'request.setHeader("x-count", "n=" + (<i32>2).toString());',
    hint: 'numbers are not converted to text by `+`: write `formatNumber(n)` (integers print without `.0`) or `n.toString()`',
    code: 2322,
    message: /Type '(f64|f32|i32|i64|u32|u64|u8|u16|i8|i16|bool)' is not assignable to type '~lib\/string\/String'/,
  },
  {
    id: 'float-to-int',
    title: 'a float where an integer is expected (`parseInt`, `Math.floor`)',
    typescript: 'const n: i32 = parseInt("12");',
    assemblyscript: 'const n: i32 = I32.parseInt("12");',
    hint: 'numbers have explicit types: `parseInt` and `Math.*` give an f64; convert with `<i32>x`, or read an integer directly with `I32.parseInt(s)`',
    code: 200,
    message: /from type 'f64' to '(i32|i64|u32|u64)'/,
  },
  {
    id: 'untyped-let',
    title: '`let x;` without a type',
    typescript: 'let total; total = 1;',
    assemblyscript: 'let total: i32 = 0; total = 1;',
    hint: 'a variable needs a type or an initial value: `let total: i32 = 0`',
    code: 1110,
    source: /^;/,
    context: /\b(let|var)\s+\w+\s*;/,
  },
  {
    id: 'template-literal-type',
    title: 'a template literal type',
    typescript: 'type Route = `/${string}`;',
    assemblyscript: 'const route: string = "/x";',
    hint: 'template literal types (and `keyof`, mapped and conditional types) are not supported: use `string`, and check the format at run time',
    code: 1110,
    source: /^(`|keyof\b)/,
  },
  {
    id: 'async',
    title: '`async` / `await` / `Promise`',
    typescript: 'const n = 1;',
    declarations: 'async function check(): void {}',
    errorAt: 'declarations',
    assemblyscript: 'const r = counter("k", 10, 60); if (r === null) return PENDING;',
    hint: 'handlers are synchronous: an effect (`counter`, `httpCall`) returns null the first time, and the handler returns PENDING; it runs again with the result',
    code: 1109,
    context: /\b(async|await)\b/,
  },
];

/** A compiler diagnostic as the idioms see it: its code, message and the author's text around it. */
export interface IdiomInput {
  code: number;
  message: string;
  /** The author's source from the error's position to the end of its line. */
  rest: string;
  /** The error's line. */
  line: string;
  /** The error's line and the lines above it (up to 12), nearest last. */
  context: string;
}

/** The idiom a diagnostic is about, or null. */
export function findIdiom(d: IdiomInput): Idiom | null {
  for (const idiom of IDIOMS) {
    if (idiom.code !== d.code) continue;
    if (idiom.message && !idiom.message.test(d.message)) continue;
    if (idiom.source && !idiom.source.test(d.rest)) continue;
    if (idiom.line && !idiom.line.test(d.line)) continue;
    if (idiom.context && !idiom.context.test(d.context)) continue;
    return idiom;
  }
  return null;
}

/** The lines of `text` around a character offset, as `findIdiom` reads them. */
export function idiomInput(code: number, message: string, text: string, offset: number): IdiomInput {
  const lineEnd = text.indexOf('\n', offset);
  const end = lineEnd === -1 ? text.length : lineEnd;
  const rest = text.slice(offset, end);
  const line = text.slice(text.lastIndexOf('\n', offset - 1) + 1, end);
  let start = offset;
  for (let lines = 0; lines < 12 && start > 0; lines++) {
    start = text.lastIndexOf('\n', start - 2) + 1;
    // Stops at the function's start: the lines of another function say nothing of this one.
    if (/^(export\s+)?function\b/.test(text.slice(start, start + 20))) break;
  }
  return { code, message, rest, line, context: text.slice(start, end) };
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|');
}

/** The page docs/assemblyscript-for-typescript-authors.md: the idioms and their replacements, from IDIOMS. */
export function idiomsPage(): string {
  const lines = [
    '# AssemblyScript for TypeScript authors',
    '',
    '<!-- Written by `node dist/scripts/idioms-page.js` from sdk/build/idioms.ts: edit the table there. -->',
    '',
    'Policies are written in [AssemblyScript](https://www.assemblyscript.org), which looks like TypeScript but is',
    'compiled ahead of time with static types. When the compiler refuses one of the everyday TypeScript idioms below,',
    '`gatehouse-policy build` says what to write instead, at the line of your file (the compiler\'s own message follows',
    'in parentheses). An error the compiler finds inside its standard library (`~lib/...`) is reported at the call in',
    'your file that led there. The functions named are exported by `@gatehouse/policy-sdk` ([sdk/README.md](../sdk/README.md)).',
    '',
    'Each row is checked by a test (test/sdk-idioms.test.ts) that compiles the TypeScript column and expects the message,',
    'and compiles the AssemblyScript column.',
    '',
  ];
  for (const idiom of IDIOMS) {
    lines.push(`## ${idiom.title}`, '', idiom.hint.charAt(0).toUpperCase() + idiom.hint.slice(1) + '.', '');
    const ts = [idiom.declarations, idiom.typescript].filter((t) => t !== undefined && t !== 'const n = 1;');
    const as = [idiom.asDeclarations, idiom.assemblyscript].filter((t) => t !== undefined);
    const code = (parts: (string | undefined)[]) => parts.map((t) => `\`${cell(t!)}\``).join('<br>');
    lines.push('| TypeScript | AssemblyScript |', '| --- | --- |', `| ${code(ts)} | ${code(as)} |`, '');
  }
  return lines.join('\n');
}
