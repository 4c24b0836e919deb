// rewrite-uri: the path (and query) the backend receives, from a template (Azure API Management's rewrite-uri).
// `/v2/orders/{orderId}?view={view}`: each {name} is the route parameter of that name, else the request's query
// parameter. The template is relative to the backend URL, as the request path below the API prefix is.
//
// Values are percent-encoded, so a parameter can never add a path segment. A value that would still make a `.` or
// `..` segment, as it is or once a backend decodes it (`..`, `..%2F..`, `%2e%2e`), is answered 400: encoding the dots
// is not enough, since `%2E%2E` is `..` to the WHATWG URL parser and to servers that decode before they resolve. The
// gateway refuses such paths itself as well (runtime/routing/request-path.ts).
import { request, route, context, config, log, respondProblem, CONTINUE } from "@gatehouse/policy-sdk";

let parsed = false;
let pathTemplate = "";
let queryTemplate = "";
/** Names in the template's query, which the request's own parameters of the same name do not add to. */
let templateQueryNames = new Set<string>();
/** The rendered path when the template's path has no placeholder: the same on every call, so rendered once. */
let fixedPath: string | null = null;
let fixedPathDotSegment: string | null = null;

function parse(): void {
  const template = config.getString("template", "/")!;
  const q = template.indexOf("?");
  pathTemplate = q < 0 ? template : template.substring(0, q);
  queryTemplate = q < 0 ? "" : template.substring(q + 1);
  const pairs = queryTemplate.split("&");
  for (let i = 0; i < pairs.length; i++) {
    const eq = pairs[i].indexOf("=");
    const name = eq < 0 ? pairs[i] : pairs[i].substring(0, eq);
    if (name.length > 0) templateQueryNames.add(name);
  }
  if (!pathTemplate.includes("{")) {
    dotSegment = null;
    fixedPath = renderPath(pathTemplate);
    fixedPathDotSegment = dotSegment;
  }
  parsed = true;
}

/** Set by `render` when a placeholder had no value. */
let missing: string | null = null;
/** Set by `renderPath` to the first rendered segment that is, or decodes to, a dot segment. */
let dotSegment: string | null = null;
/** Query parameters of the request that placeholders used (not copied again as unmatched). */
let usedQueryNames = new Set<string>();

export function on_inbound(): i32 {
  return rewrite();
}

export function on_backend(): i32 {
  return rewrite();
}

function rewrite(): i32 {
  if (!parsed) parse();
  missing = null;
  dotSegment = null;
  // Clearing a set allocates its tables anew: only one that holds something is cleared.
  if (usedQueryNames.size > 0) usedQueryNames.clear();
  let path: string;
  if (fixedPath !== null) {
    path = fixedPath!;
    dotSegment = fixedPathDotSegment;
  } else {
    path = renderPath(pathTemplate);
  }
  if (missing !== null) {
    log.warn("rewrite-uri: no route or query parameter " + missing! + " for template " + pathTemplate);
    return respondProblem(400, "Bad Request", "the request has no value for the parameter " + missing!);
  }
  if (dotSegment !== null) {
    return respondProblem(400, "Bad Request", "a parameter value makes the path segment " + dotSegment! + ", which is or decodes to \".\" or \"..\"");
  }
  request.setPath(context.apiPathPrefix() + path);
  const copy = config.getBool("copyUnmatchedParams", true);
  if (queryTemplate.length > 0 || !copy) {
    let query = renderQuery(queryTemplate);
    if (copy) query = join(query, unmatchedParams(request.query()));
    request.setQuery(query);
  }
  return CONTINUE;
}

/** Each segment rendered on its own, so that a value's dots are judged by the segment they end up in. */
function renderPath(template: string): string {
  const segments = template.split("/");
  let out = "";
  for (let i = 1; i < segments.length; i++) {
    const segment = render(segments[i], true);
    if (dotSegment === null && isDotSegment(segment)) dotSegment = segment;
    out += "/" + segment;
  }
  return out;
}

/** Pairs of the template's query; a pair whose placeholder has no value is left out. */
function renderQuery(template: string): string {
  if (template.length == 0) return "";
  const pairs = template.split("&");
  let out = "";
  for (let i = 0; i < pairs.length; i++) {
    missing = null;
    const pair = render(pairs[i], false);
    if (missing === null && pair.length > 0) out = join(out, pair);
  }
  missing = null;
  return out;
}

/** The request's query pairs that the template neither names in its query nor used as a value, as they were sent. */
function unmatchedParams(query: string): string {
  if (query.length == 0) return "";
  const pairs = query.split("&");
  let out = "";
  for (let i = 0; i < pairs.length; i++) {
    const eq = pairs[i].indexOf("=");
    const name = eq < 0 ? pairs[i] : pairs[i].substring(0, eq);
    if (name.length > 0 && !templateQueryNames.has(name) && !usedQueryNames.has(name)) out = join(out, pairs[i]);
  }
  return out;
}

function join(a: string, b: string): string {
  if (a.length == 0) return b;
  if (b.length == 0) return a;
  return a + "&" + b;
}

/** Replaces each {name} in `text` by its value, percent-encoded (`inPath`: a path segment, else a query component). */
function render(text: string, inPath: bool): string {
  let out = "";
  let i = 0;
  while (i < text.length) {
    const open = text.indexOf("{", i);
    if (open < 0) break;
    const close = text.indexOf("}", open + 1);
    if (close < 0) break;
    out += text.substring(i, open);
    const name = text.substring(open + 1, close);
    const value = valueOf(name);
    if (value === null) missing = name;
    else out += percentEncode(value);
    i = close + 1;
  }
  return out + text.substring(i);
}

function valueOf(name: string): string | null {
  const fromRoute = route.param(name);
  if (fromRoute.length > 0) return fromRoute;
  const fromQuery = request.queryParam(name);
  if (fromQuery !== null) usedQueryNames.add(name);
  return fromQuery;
}

/** Every byte of the UTF-8 encoding except RFC 3986's unreserved characters (A-Z a-z 0-9 - . _ ~) as %XX. */
function percentEncode(value: string): string {
  const bytes = Uint8Array.wrap(String.UTF8.encode(value));
  const out = new Uint8Array(bytes.length * 3);
  let n = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    const unreserved =
      (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b == 0x2d || b == 0x2e || b == 0x5f || b == 0x7e;
    if (unreserved) {
      out[n++] = b;
    } else {
      out[n++] = 0x25;
      out[n++] = hexUpper(b >> 4);
      out[n++] = hexUpper(b & 15);
    }
  }
  return String.UTF8.decodeUnsafe(out.dataStart, <usize>n);
}

/** Rounds of percent-decoding looked through: `%252e` is `.` after two (the gateway looks as far: request-path.ts). */
const DECODING_ROUNDS = 3;

/** Whether `segment` is `.` or `..`, or holds one between slashes or backslashes once `%2e`, `%2f`, `%5c` and `%25` are decoded. */
function isDotSegment(segment: string): bool {
  let text = segment;
  for (let round = 0; round <= DECODING_ROUNDS; round++) {
    const pieces = text.replaceAll("\\", "/").split("/");
    for (let i = 0; i < pieces.length; i++) {
      if (pieces[i] == "." || pieces[i] == "..") return true;
    }
    const decoded = decodeDotsAndSlashes(text);
    if (decoded == text) break;
    text = decoded;
  }
  return false;
}

/** `%2e`, `%2f`, `%5c` and `%25` decoded (either case); everything else as it is. */
function decodeDotsAndSlashes(s: string): string {
  let out = "";
  let i = 0;
  while (i < s.length) {
    if (s.charCodeAt(i) == 0x25 && i + 2 < s.length) {
      const pair = s.substring(i + 1, i + 3).toLowerCase();
      if (pair == "2e") { out += "."; i += 3; continue; }
      if (pair == "2f") { out += "/"; i += 3; continue; }
      if (pair == "5c") { out += "\\"; i += 3; continue; }
      if (pair == "25") { out += "%"; i += 3; continue; }
    }
    out += s.charAt(i);
    i++;
  }
  return out;
}

function hexUpper(d: u8): u8 {
  return d < 10 ? 0x30 + d : 0x37 + d;
}
