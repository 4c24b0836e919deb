// @gatehouse/policy-sdk: write Gatehouse policies in AssemblyScript.
//
// A policy exports one function per phase it handles (`on_inbound`, `on_backend`, `on_outbound`, `on_error`), each
// `(): i32` returning CONTINUE, RESPOND (after `respond(...)`) or PENDING (an effect is pending). Everything else goes
// through the functions below, which bind ABI v1 (abi/policy-abi.md): `gatehouse:host/v1` imports with i32
// pointer/length arguments. Any unexpected status from the host fails the call with a message naming the function.

import { Field, host_fail, host_log, host_metric, host_now, host_respond, host_verify, LogLevel, Status } from "./host";
import { check, encodeInto, encodeName, failStatus, addressSlot, nameBuf, readField, takeString, valueBuf } from "./io";
import {
  getBodyText,
  getBytes,
  getDecimal,
  getNamed,
  getNamedOrEmpty,
  getText,
  listNames,
  removeNamed,
  setBytes,
  setDecimal,
  setNamedDecimal,
  setText,
  trySetText,
} from "./fields";
import { JsonKind, JsonReader, jsonString, parseJson } from "./json";
import { CounterResult, counter, countInto, meter } from "./effects";

export { CounterResult, HttpResult, LeaseResult, counter, httpCall, lease, meter, openidKeys } from "./effects";
export { base64Decode, base64DecodeText, base64Encode, base64EncodeText, concatBytes, isUtf8, utf8Decode, utf8Encode } from "./encoding";
export { formatNumber, isValidHeaderName, isValidHeaderValue } from "./text";
import { base64DecodeText } from "./encoding";
export { JsonDuplicates, JsonKind, JsonReader, JsonValue, jsonString, parseJson } from "./json";
export { gatehouseAbort } from "./abort";
export { constantTimeEqual, HmacSha256, hmacSha256, Sha256, sha256, sha256Hex, toHex } from "./crypto";
import { sha256Hex } from "./crypto";

// ---------------------------------------------------------------------------------------------------------------
// Outcomes

/** Headers the host keeps for itself (4.3 of the ABI: READ_ONLY to policies). */
const FRAMING_HEADERS = ["content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer"];

/** Return from a handler to let the chain go on. */
export const CONTINUE: i32 = 0;
/** Return from a handler after `respond(...)`. */
export const RESPOND: i32 = 1;
/** Return from a handler when an effect returned null (pending): the host runs the handler again with the result. */
export const PENDING: i32 = 2;

/**
 * Ends the chain with `status` (200-599). A non-empty `body` replaces the response body (and its Content-Encoding) and
 * a non-empty `contentType` sets the `content-type` header; otherwise what was set so far is kept (in `on_outbound` and
 * `on_error` that is the backend's or the error response). Returns RESPOND: `return respond(401, "no key")`.
 */
export function respond(status: i32, body: string = "", contentType: string = ""): i32 {
  if (body.length > 0) setText(Field.RESPONSE_BODY, null, body, false, "respond");
  if (contentType.length > 0) setText(Field.RESPONSE_HEADER, "content-type", contentType, false, "respond");
  check(host_respond(status), "respond", null);
  return RESPOND;
}

/**
 * Ends the chain with an RFC 9457 problem (`application/problem+json`), shaped like the gateway's own error answers:
 * `{"type":"about:blank","title":...,"status":...,"detail":...,"requestId":...}`. Returns RESPOND.
 */
export function respondProblem(status: i32, title: string, detail: string): i32 {
  const body =
    '{"type":"about:blank","title":' + jsonString(title) + ',"status":' + status.toString() + ',"detail":' +
    jsonString(detail) + ',"requestId":' + jsonString(context.requestId()) + "}";
  return respond(status, body, "application/problem+json");
}

/** Headers a problem in place of the backend's response keeps: those policies set for the exchange (CORS, `Vary`), the trace's and the request id. */
const KEPT_BY_PROBLEM = [
  "access-control-allow-credentials", "access-control-allow-headers", "access-control-allow-methods",
  "access-control-allow-origin", "access-control-expose-headers", "access-control-max-age", "vary", "traceparent",
  "tracestate", "x-request-id",
];

/**
 * In `on_outbound` or `on_error`: answers with a problem (as `respondProblem`) in place of the backend's response,
 * which the client must not see: the response's headers are removed but for CORS, `Vary`, the trace's and the request
 * id (`Set-Cookie`, `Content-Encoding`, `ETag`, and whatever header made a policy refuse the response, go). Returns
 * RESPOND: `return replaceResponseWithProblem(502, "Bad Gateway", "...")`.
 */
export function replaceResponseWithProblem(status: i32, title: string, detail: string): i32 {
  response.removeHeadersExcept(KEPT_BY_PROBLEM);
  return respondProblem(status, title, detail);
}

/** Marks the call as failed with `message` (the host fails it when the handler returns). Returns 0. */
export function fail(message: string): i32 {
  let len = encodeInto(valueBuf, message);
  host_fail(valueBuf.ptr, len);
  return 0;
}

/**
 * Checks a public-key signature with the host's crypto: `alg` is a JWS algorithm (RS256-RS512, PS256-PS512 (1.2), ES256, ES384),
 * `jwk` a public key as JWK JSON text, `signature` as JWS encodes it (ECDSA: r‖s). Returns 1 (valid), 0 (not valid) or
 * -1 (the algorithm is not supported, or `jwk` is not a public key of its type). HMAC (HS256) needs no host:
 * `hmacSha256` and `constantTimeEqual`.
 */
export function verifySignature(alg: string, jwk: string, data: Uint8Array, signature: Uint8Array): i32 {
  let algLen = encodeInto(nameBuf, alg);
  let jwkLen = encodeInto(valueBuf, jwk);
  let r = host_verify(nameBuf.ptr, algLen, valueBuf.ptr, jwkLen, data.dataStart, data.length, signature.dataStart, signature.length);
  return r < 0 ? -1 : r;
}

/**
 * Adds `value` (finite, not negative) to the gateway's metric `name` for these dimensions (at most 10; names and
 * metric name `[A-Za-z_][A-Za-z0-9_]*`, values up to 256 characters). Recorded only if the call succeeds; a call run
 * again after an effect records it once. Exposed as `gatehouse_policy_metric_total{metric="name", ...}`. Bad input
 * fails the call with a message naming it.
 */
export function emitMetric(name: string, value: f64 = 1, dimensions: Map<string, string> | null = null): void {
  let dims = "";
  if (dimensions !== null) {
    let names = dimensions.keys();
    for (let i = 0; i < names.length; i++) dims += names[i] + "\0" + dimensions.get(names[i]) + "\0";
  }
  let nameLen = encodeInto(nameBuf, name);
  let dimsLen = encodeInto(valueBuf, dims);
  check(host_metric(nameBuf.ptr, nameLen, value, valueBuf.ptr, dimsLen), "emitMetric", name);
}

/** Wall-clock time, milliseconds since the Unix epoch. */
export function now(): f64 {
  return host_now();
}

// ---------------------------------------------------------------------------------------------------------------
// Request

export namespace request {
  export function method(): string {
    return getText(Field.REQUEST_METHOD, "request.method");
  }
  export function setMethod(m: string): void {
    setText(Field.REQUEST_METHOD, null, m, false, "request.setMethod");
  }

  /** The path, without the query. */
  export function path(): string {
    return getText(Field.REQUEST_PATH, "request.path");
  }
  export function setPath(p: string): void {
    setText(Field.REQUEST_PATH, null, p, false, "request.setPath");
  }

  /** The raw query, without `?`. */
  export function query(): string {
    return getText(Field.REQUEST_QUERY, "request.query");
  }
  export function setQuery(q: string): void {
    setText(Field.REQUEST_QUERY, null, q, false, "request.setQuery");
  }

  /** A decoded query parameter (several values joined by ", "), or null. */
  export function queryParam(n: string): string | null {
    return getNamed(Field.REQUEST_QUERY_PARAM, n, "request.queryParam");
  }
  export function setQueryParam(n: string, v: string): void {
    setText(Field.REQUEST_QUERY_PARAM, n, v, false, "request.setQueryParam");
  }
  export function addQueryParam(n: string, v: string): void {
    setText(Field.REQUEST_QUERY_PARAM, n, v, true, "request.addQueryParam");
  }
  export function removeQueryParam(n: string): void {
    removeNamed(Field.REQUEST_QUERY_PARAM, n, "request.removeQueryParam");
  }

  /** A header (case-insensitive name; several values joined by ", "), or null. */
  export function header(n: string): string | null {
    return getNamed(Field.REQUEST_HEADER, n, "request.header");
  }
  export function setHeader(n: string, v: string): void {
    setText(Field.REQUEST_HEADER, n, v, false, "request.setHeader");
  }
  export function addHeader(n: string, v: string): void {
    setText(Field.REQUEST_HEADER, n, v, true, "request.addHeader");
  }
  export function removeHeader(n: string): void {
    removeNamed(Field.REQUEST_HEADER, n, "request.removeHeader");
  }
  /**
   * `setHeader` that returns instead of failing the call: null when set, else why not (a name or value the host
   * refuses, see `isValidHeaderValue`; a header this phase may not write). For values from the client or a token.
   */
  export function trySetHeader(n: string, v: string): string | null {
    return trySetText(Field.REQUEST_HEADER, n, v, false);
  }
  /** `addHeader` that returns instead of failing the call, like `trySetHeader`. */
  export function tryAddHeader(n: string, v: string): string | null {
    return trySetText(Field.REQUEST_HEADER, n, v, true);
  }
  /** Header names present (lowercase). */
  export function headerNames(): string[] {
    return listNames(Field.REQUEST_HEADER, "request.headerNames");
  }

  /**
   * The body (needs `"requestBody": true` in policy.json), or null; decoded from a gzip, deflate or br Content-Encoding,
   * which the request then no longer has (abi/policy-abi.md, "Compressed bodies").
   */
  export function body(): Uint8Array | null {
    return getBytes(Field.REQUEST_BODY, "request.body");
  }
  /** The body as UTF-8 text (needs `"requestBody": true`), or null. */
  export function bodyText(): string | null {
    return getBodyText(Field.REQUEST_BODY, "request.bodyText");
  }
  /** Replaces the body, as plain bytes: the request's Content-Encoding goes (set one after the body to keep it). */
  export function setBody(b: Uint8Array): void {
    setBytes(Field.REQUEST_BODY, b, "request.setBody");
  }
  export function setBodyText(s: string): void {
    setText(Field.REQUEST_BODY, null, s, false, "request.setBodyText");
  }

  export function clientAddress(): string {
    return getText(Field.CLIENT_ADDRESS, "request.clientAddress");
  }

  /** The URL the request will be forwarded to. */
  export function backendUrl(): string {
    return getText(Field.BACKEND_URL, "request.backendUrl");
  }
  export function setBackendUrl(u: string): void {
    setText(Field.BACKEND_URL, null, u, false, "request.setBackendUrl");
  }

  /**
   * The path the backend will receive, without the query: the backend URL's path (without its trailing slashes)
   * followed by the request's path below the API's prefix, as the gateway forwards it (runtime/proxy/forward.ts).
   * `/shop/items/1` under the API prefix `/shop`, with the backend `http://b:8080/v2/`, gives `/v2/items/1`. It reads
   * the fields as they are now: call it after the policies that change them (or in `on_backend`, the last phase).
   */
  export function forwardedPath(): string {
    return forwardPath(backendUrl(), path(), context.apiPathPrefix());
  }

  /** The URL the backend will receive: the backend's origin, `forwardedPath()`, and the query when there is one. */
  export function forwardedUrl(): string {
    const url = backendUrl();
    const q = query();
    return urlOrigin(url) + forwardPath(url, path(), context.apiPathPrefix()) + (q.length > 0 ? "?" + q : "");
  }
}

/** Where the path of an absolute URL starts (after `scheme://authority`), or its length when it has none. */
function pathStart(url: string): i32 {
  let i = url.indexOf("://");
  i = i < 0 ? 0 : i + 3;
  for (; i < url.length; i++) {
    const c = url.charCodeAt(i);
    if (c == 0x2f || c == 0x3f || c == 0x23) break; // / ? #
  }
  return i;
}

/** `scheme://authority` of an absolute URL. */
function urlOrigin(url: string): string {
  return url.substring(0, pathStart(url));
}

/** The forwarded path of `path` under the API prefix `prefix`, for a backend at `url`. */
function forwardPath(url: string, path: string, prefix: string): string {
  let start = pathStart(url);
  let end = start;
  while (end < url.length && url.charCodeAt(end) != 0x3f && url.charCodeAt(end) != 0x23) end++;
  while (end > start && url.charCodeAt(end - 1) == 0x2f) end--;
  const base = url.substring(start, end);
  let below = path;
  if (prefix.length > 0 && prefix != "/") {
    if (path == prefix) below = "";
    else if (path.startsWith(prefix) && path.charCodeAt(prefix.length) == 0x2f) below = path.substring(prefix.length);
  }
  const out = base + below;
  return out.length > 0 ? out : "/";
}

// ---------------------------------------------------------------------------------------------------------------
// Response

export namespace response {
  /** The response status (200 before the backend answers, as the ABI says). */
  export function status(): i32 {
    return getDecimal(Field.RESPONSE_STATUS, "response.status");
  }
  export function setStatus(s: i32): void {
    setDecimal(Field.RESPONSE_STATUS, s, "response.setStatus");
  }

  export function header(n: string): string | null {
    return getNamed(Field.RESPONSE_HEADER, n, "response.header");
  }
  export function setHeader(n: string, v: string): void {
    setText(Field.RESPONSE_HEADER, n, v, false, "response.setHeader");
  }
  export function addHeader(n: string, v: string): void {
    setText(Field.RESPONSE_HEADER, n, v, true, "response.addHeader");
  }
  export function removeHeader(n: string): void {
    removeNamed(Field.RESPONSE_HEADER, n, "response.removeHeader");
  }
  /** `setHeader` that returns instead of failing the call: null when set, else why not (see `request.trySetHeader`). */
  export function trySetHeader(n: string, v: string): string | null {
    return trySetText(Field.RESPONSE_HEADER, n, v, false);
  }
  /** `addHeader` that returns instead of failing the call. */
  export function tryAddHeader(n: string, v: string): string | null {
    return trySetText(Field.RESPONSE_HEADER, n, v, true);
  }
  export function headerNames(): string[] {
    return listNames(Field.RESPONSE_HEADER, "response.headerNames");
  }
  /**
   * Removes every header of the response but those named in `kept` (lower case) and the framing headers, which are the
   * gateway's (it writes them for the body that is sent): to answer in place of a response, not on top of it.
   */
  export function removeHeadersExcept(kept: string[]): void {
    const names = headerNames();
    for (let i = 0; i < names.length; i++) {
      const name = names[i].toLowerCase();
      if (!kept.includes(name) && !FRAMING_HEADERS.includes(name)) removeHeader(name);
    }
  }

  /** The body (in `on_outbound`/`on_error` needs `"responseBody": true`), or null; decoded as `request.body()` is. */
  export function body(): Uint8Array | null {
    return getBytes(Field.RESPONSE_BODY, "response.body");
  }
  export function bodyText(): string | null {
    return getBodyText(Field.RESPONSE_BODY, "response.bodyText");
  }
  /** Replaces the body, as plain bytes: the response's Content-Encoding goes (set one after the body to keep it). */
  export function setBody(b: Uint8Array): void {
    setBytes(Field.RESPONSE_BODY, b, "response.setBody");
  }
  export function setBodyText(s: string): void {
    setText(Field.RESPONSE_BODY, null, s, false, "response.setBodyText");
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Variables: per request, shared along the chain of policies

export namespace vars {
  export function get(n: string): string | null {
    return getNamed(Field.VARIABLE, n, "vars.get");
  }
  export function set(n: string, v: string): void {
    setText(Field.VARIABLE, n, v, false, "vars.set");
  }
  export function remove(n: string): void {
    removeNamed(Field.VARIABLE, n, "vars.remove");
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Configuration: the top-level keys of this policy binding's configuration (checked against schema.json)

// A binding's configuration never changes for the life of an instance (an instance serves one binding), so values
// are read from the host once and remembered: a policy may read its configuration on every call at no cost. The
// exception: keys the gateway computes for each call (`{expr: ...}` where the policy's schema.json says
// "x-computed"), which the host lists under the CONFIG name "$computed" (COMPUTED_CONFIG_KEYS in abi/constants.ts).
const configValues = new Map<string, string>();
const configAbsent = new Set<string>();
const configArrays = new Map<string, string[]>();
/** The keys computed for each call, read once; null until then. */
let computedKeys: string[] | null = null;

// Most policies name their keys with literals (`config.getString("name")`). A literal is static data, below
// __heap_base: never freed, never changed, so its address stands for its text, and a key read that way is found again
// by address alone, without hashing the name (in a policy that reads one key on each call, hashing and comparing the
// name in the maps was a sixth of the call). Slots are by address; a collision just takes the maps' path.
const LITERAL_SLOTS = 16;
const literalNames = new StaticArray<usize>(LITERAL_SLOTS);
const literalValues = new StaticArray<string | null>(LITERAL_SLOTS);
const literalArrayNames = new StaticArray<usize>(LITERAL_SLOTS);
const literalArrays = new StaticArray<string[] | null>(LITERAL_SLOTS);

function configValue(n: string, what: string): string | null {
  const p = changetype<usize>(n);
  const literal = p < __heap_base;
  if (literal && unchecked(literalNames[addressSlot(p, LITERAL_SLOTS)]) == p) return unchecked(literalValues[addressSlot(p, LITERAL_SLOTS)]);
  let v: string | null = null;
  if (configValues.has(n)) v = configValues.get(n);
  else if (!configAbsent.has(n)) {
    v = getNamed(Field.CONFIG, n, what);
    if (computedKeys === null) {
      const listed = getNamed(Field.CONFIG, "$computed", what);
      computedKeys = listed === null ? new Array<string>() : listed.split(",");
    }
    // A computed key's value is the call's own: read again on every call, never kept.
    if (computedKeys!.includes(n)) return v;
    if (v === null) configAbsent.add(n);
    else configValues.set(n, v);
  }
  if (literal) {
    unchecked((literalNames[addressSlot(p, LITERAL_SLOTS)] = p));
    unchecked((literalValues[addressSlot(p, LITERAL_SLOTS)] = v));
  }
  return v;
}

export namespace config {
  /** Whether the configuration has the top-level key `n`. */
  export function has(n: string): bool {
    return configValue(n, "config.has") !== null;
  }

  /** A string value as it is (other values as JSON text), or `fallback` when absent. */
  export function getString(n: string, fallback: string | null = null): string | null {
    let v = configValue(n, "config.getString");
    return v !== null ? v : fallback;
  }

  /** An integer value, or `fallback` when absent or not an integer. */
  export function getInt(n: string, fallback: i64 = 0): i64 {
    let v = configValue(n, "config.getInt");
    if (v === null) return fallback;
    let r = new JsonReader(v);
    if (r.peekKind() != JsonKind.NUMBER) return fallback;
    let x = r.readInt(fallback);
    return r.done() ? x : fallback;
  }

  /** A number, or `fallback` when absent or not a number. */
  export function getFloat(n: string, fallback: f64 = 0): f64 {
    let v = configValue(n, "config.getFloat");
    if (v === null) return fallback;
    let r = new JsonReader(v);
    if (r.peekKind() != JsonKind.NUMBER) return fallback;
    let x = r.readNumber();
    return r.done() ? x : fallback;
  }

  /** A boolean, or `fallback` when absent or not a boolean. */
  export function getBool(n: string, fallback: bool = false): bool {
    let v = configValue(n, "config.getBool");
    if (v === null) return fallback;
    if (v == "true") return true;
    if (v == "false") return false;
    return fallback;
  }

  /**
   * The JSON text of the value of `n` (exact: a string value comes back quoted), or null when absent.
   * `getJson("")` returns the whole configuration. Parse it with `parseJson`.
   */
  export function getJson(n: string): string | null {
    let len = readField(Field.CONFIG, 0, "config.getJson");
    if (len == Status.NOT_FOUND) return null;
    if (len < 0) failStatus("config.getJson", n, len);
    let whole = takeString(len);
    if (n.length == 0) return whole;
    let r = new JsonReader(whole);
    let found: string | null = null;
    if (r.beginObject()) {
      let key = r.nextKey();
      while (key !== null) {
        if (key == n) found = r.readRaw();
        else r.skipValue();
        key = r.nextKey();
      }
    }
    return found;
  }

  /** A top-level key holding a JSON array of strings (other items are skipped); [] when absent or not an array. */
  export function getStringArray(n: string): string[] {
    // The caller gets its own copy: it may change it without changing what the next call reads.
    const p = changetype<usize>(n);
    const literal = p < __heap_base;
    if (literal && unchecked(literalArrayNames[addressSlot(p, LITERAL_SLOTS)]) == p) return unchecked(literalArrays[addressSlot(p, LITERAL_SLOTS)])!.slice();
    let kept: string[];
    if (configArrays.has(n)) kept = configArrays.get(n);
    else {
      let out = parseStringArray(configValue(n, "config.getStringArray"));
      if (computedKeys!.includes(n)) return out;
      configArrays.set(n, out);
      kept = out;
    }
    if (literal) {
      unchecked((literalArrayNames[addressSlot(p, LITERAL_SLOTS)] = p));
      unchecked((literalArrays[addressSlot(p, LITERAL_SLOTS)] = kept));
    }
    return kept.slice();
  }
}

/** A JSON array of strings (other items skipped); [] when absent or not an array. */
function parseStringArray(v: string | null): string[] {
  let out = new Array<string>();
  if (v === null) return out;
  let r = new JsonReader(v);
  if (r.peekKind() != JsonKind.ARRAY || !r.beginArray()) return out;
  while (r.nextItem()) {
    if (r.peekKind() == JsonKind.STRING) {
      let s = r.readString();
      if (s !== null) out.push(s);
    } else {
      r.skipValue();
    }
  }
  return r.error ? new Array<string>() : out;
}

// ---------------------------------------------------------------------------------------------------------------
// Route, context, error

export namespace route {
  /** A parameter of the matched URL template (`/users/{id}` -> `param("id")`), "" when absent. */
  export function param(n: string): string {
    return getNamedOrEmpty(Field.ROUTE_PARAM, n, "route.param");
  }
}

export namespace context {
  export function api(): string {
    return getNamedOrEmpty(Field.CONTEXT, "api", "context.api");
  }
  /** The API's path prefix as routed (`/shop`; empty for an API at `/`): REQUEST_PATH starts with it. */
  export function apiPathPrefix(): string {
    return getNamedOrEmpty(Field.CONTEXT, "api-path-prefix", "context.apiPathPrefix");
  }
  export function operation(): string {
    return getNamedOrEmpty(Field.CONTEXT, "operation", "context.operation");
  }
  export function requestId(): string {
    return getNamedOrEmpty(Field.CONTEXT, "request-id", "context.requestId");
  }
  /** `inbound`, `backend`, `outbound` or `on-error`. */
  export function phase(): string {
    return getNamedOrEmpty(Field.CONTEXT, "phase", "context.phase");
  }
}

// The ERROR field is readable in on_error only; elsewhere these return "" (NOT_FOUND and READ_ONLY are both taken
// as "no error").
function errorField(name: string, fn: string): string {
  let n = readField(Field.ERROR, encodeName(name), fn);
  if (n == Status.NOT_FOUND || n == Status.READ_ONLY) return "";
  if (n < 0) failStatus(fn, name, n);
  return takeString(n);
}

export namespace error {
  /** `policy` or `backend`. */
  export function source(): string {
    return errorField("source", "error.source");
  }
  export function reason(): string {
    return errorField("reason", "error.reason");
  }
  export function message(): string {
    return errorField("message", "error.message");
  }
  /** The name of the policy that failed, when `source()` is `policy`. */
  export function policy(): string {
    return errorField("policy", "error.policy");
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Logging: lines go to the gateway's structured log with the policy's name

function logAt(level: i32, msg: string): void {
  let len = encodeInto(valueBuf, msg);
  host_log(level, valueBuf.ptr, len);
}

export namespace log {
  export function trace(msg: string): void {
    logAt(LogLevel.TRACE, msg);
  }
  export function debug(msg: string): void {
    logAt(LogLevel.DEBUG, msg);
  }
  export function info(msg: string): void {
    logAt(LogLevel.INFO, msg);
  }
  export function warn(msg: string): void {
    logAt(LogLevel.WARN, msg);
  }
  export function error(msg: string): void {
    logAt(LogLevel.ERROR, msg);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Limits

/** rateLimit's counter result, read before it returns: one object for every call, not one each. */
const limitResult = new CounterResult();
let limitCalls: i64 = -1;
let limitPeriod: i64 = -1;
let limitText = "";
let policyText = "";

/**
 * A fixed-window rate limit: at most `calls` requests per window of `periodSeconds` for `key` (a window starts at a
 * multiple of the period, Unix time). Over the limit it answers 429 with `Retry-After` and a problem body; with
 * `headers`, every answer carries `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (seconds) and
 * `RateLimit-Policy` (`calls;w=period`), as IETF draft-ietf-httpapi-ratelimit-headers (06) describes. For `on_inbound`
 * and `on_backend`; needs the `counters` grant. Returns CONTINUE, RESPOND or PENDING: `return rateLimit(...)`.
 */
export function rateLimit(key: string, calls: i64, periodSeconds: i64, headers: bool = true): i32 {
  const r = limitResult;
  if (!countInto(r, key, calls, periodSeconds)) return PENDING;
  const reset = r.resetSeconds;
  if (headers || !r.allowed) {
    // A policy passes the same limit on every call: its texts are made once.
    if (calls != limitCalls || periodSeconds != limitPeriod) {
      limitCalls = calls;
      limitPeriod = periodSeconds;
      limitText = calls.toString();
      policyText = limitText + ";w=" + periodSeconds.toString();
    }
    response.setHeader("ratelimit-limit", limitText);
    // The changing figures are written as digits straight into the value buffer, without a string each.
    setNamedDecimal(Field.RESPONSE_HEADER, "ratelimit-remaining", r.remaining, "response.setHeader");
    setNamedDecimal(Field.RESPONSE_HEADER, "ratelimit-reset", reset, "response.setHeader");
    response.setHeader("ratelimit-policy", policyText);
  }
  if (r.allowed) return CONTINUE;
  const retry = reset > 0 ? reset : 1;
  response.setHeader("retry-after", retry.toString());
  return respondProblem(
    429,
    "Too Many Requests",
    "rate limit of " + calls.toString() + " calls per " + periodSeconds.toString() + " s exceeded; retry in " +
      retry.toString() + " s",
  );
}

/**
 * The caller, as APIM's per-subscription policies count it: the identity key-auth (or another policy) left in the
 * variable `identityVariable`, else the client address, so an anonymous flood is counted too. "id:" and "ip:" keep an
 * identity that looks like an address from sharing that address's counter.
 */
export function callerKey(identityVariable: string): string {
  const identity = vars.get(identityVariable);
  return identity !== null && identity.length > 0 ? "id:" + identity : "ip:" + request.clientAddress();
}

/**
 * Enforces a quota of `calls` calls and `bandwidth` kilobytes (0: no such quota) per `periodSeconds` for `key`. Calls
 * are counted as they come; bandwidth (request and response bodies) is counted when each exchange ends, so the request
 * that crosses the quota completes and the next ones are refused. Over either quota it answers 403 with Retry-After
 * and a problem body. Needs the `counters` grant. Returns CONTINUE, RESPOND or PENDING: `return quota(...)`.
 */
export function quota(key: string, calls: i64, bandwidth: i64, periodSeconds: i64): i32 {
  // Both counters are asked for before waiting, so that with Redis they take one round together.
  const used = calls > 0 ? counter(key + ":calls", calls, periodSeconds) : null;
  const kilobytes = bandwidth > 0 ? counter(key + ":kb", bandwidth, periodSeconds, 0) : null;
  if ((calls > 0 && used === null) || (bandwidth > 0 && kilobytes === null)) return PENDING;
  if (used !== null && !used.allowed) {
    return refuseQuota("call quota of " + calls.toString() + " calls", periodSeconds, used.resetSeconds);
  }
  if (kilobytes !== null && kilobytes.remaining <= 0) {
    return refuseQuota("bandwidth quota of " + bandwidth.toString() + " KB", periodSeconds, kilobytes.resetSeconds);
  }
  if (bandwidth > 0 && !meter(key + ":kb", periodSeconds, true)) return PENDING;
  return CONTINUE;
}

function refuseQuota(what: string, periodSeconds: i64, resetSeconds: i64): i32 {
  const retry = resetSeconds > 0 ? resetSeconds : 1;
  response.setHeader("retry-after", retry.toString());
  return respondProblem(
    403,
    "Forbidden",
    what + " per " + periodSeconds.toString() + " s used up; replenished in " + retry.toString() + " s",
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Values by source: what policy configurations name as `{ from: header, name: x-tenant }`

/**
 * A claim of the bearer token in `Authorization`, read WITHOUT checking the token: put validate-jwt before a policy
 * that relies on it. Strings as they are, other values as JSON text; null when absent or unreadable.
 */
export function bearerClaim(claim: string): string | null {
  const auth = request.header("authorization");
  if (auth === null || auth.length < 8 || auth.substring(0, 7).toLowerCase() != "bearer ") return null;
  const token = auth.substring(7).trim();
  const first = token.indexOf(".");
  const second = first < 0 ? -1 : token.indexOf(".", first + 1);
  if (second < 0) return null;
  const payload = base64DecodeText(token.substring(first + 1, second));
  if (payload === null) return null;
  const claims = parseJson(payload);
  if (claims === null) return null;
  const v = claims.get(claim);
  if (v === null || v.kind == JsonKind.NULL) return null;
  return v.kind == JsonKind.STRING ? v.stringValue : v.toString();
}

/**
 * A value of the exchange by source: `header`, `variable`, `query` and `claim` (with `name`; a claim as
 * `bearerClaim` reads it), `client-address`, `api`, `operation`, `method`, `status` (the response's). Null when absent
 * or the source is unknown.
 */
export function valueFrom(from: string, name: string): string | null {
  if (from == "header") return request.header(name);
  if (from == "variable") return vars.get(name);
  if (from == "query") return request.queryParam(name);
  if (from == "claim") return bearerClaim(name);
  if (from == "client-address") return request.clientAddress();
  if (from == "api") return context.api();
  if (from == "operation") return context.operation();
  if (from == "method") return request.method();
  if (from == "status") return response.status().toString();
  return null;
}

/** Key values longer than this are counted by their SHA-256: counters keep bounded keys whatever a client sends. */
const MAX_KEY_LENGTH = 200;

/** Where a policy takes its counter key from: `{ "from": "header", "name": "x-tenant" }` in its configuration. */
export class KeySource {
  constructor(
    public from: string,
    public name: string,
  ) {}

  /** `header x-tenant`, `client-address`: for messages. */
  describe(): string {
    return this.name.length > 0 ? this.from + " " + this.name : this.from;
  }

  /**
   * This request's counter key: `=` and the value, or `#` and its SHA-256 when the value is longer than 200
   * characters; null when the request has no (or an empty) value.
   */
  keyOf(): string | null {
    const value = valueFrom(this.from, this.name);
    if (value === null || value.length == 0) return null;
    return value.length > MAX_KEY_LENGTH ? "#" + sha256Hex(value) : "=" + value;
  }
}

/** The key source under the configuration key `configName`, or null when absent. */
export function keySource(configName: string): KeySource | null {
  const text = config.getJson(configName);
  if (text === null) return null;
  const spec = parseJson(text);
  if (spec === null) return null;
  const from = spec.get("from");
  const name = spec.get("name");
  return new KeySource(from !== null ? from.asString("")! : "", name !== null ? name.asString("")! : "");
}

// ---------------------------------------------------------------------------------------------------------------
// Media types

/** `type/subtype` of a Content-Type or a media range, lowercased, without parameters. */
export function mediaType(value: string): string {
  const semi = value.indexOf(";");
  return (semi < 0 ? value : value.substring(0, semi)).trim().toLowerCase();
}

/**
 * Whether a media type (as `mediaType` returns it) has the subtype `subtype` or a structured suffix `+subtype`
 * (`application/problem+json` for "json"), and, when `type` is given, that type.
 */
export function isMediaType(value: string, subtype: string, type: string = ""): bool {
  const slash = value.indexOf("/");
  if (slash <= 0) return false;
  if (type.length > 0 && value.substring(0, slash) != type) return false;
  const sub = value.substring(slash + 1);
  return sub == subtype || sub.endsWith("+" + subtype);
}

/**
 * Whether an Accept header asks for such a media type (see `isMediaType`) with a quality above 0. Wildcard ranges
 * alone (any type) do not count: a client that accepts anything has not asked for a conversion.
 */
export function accepts(accept: string | null, subtype: string, type: string = ""): bool {
  if (accept === null) return false;
  const ranges = accept.split(",");
  for (let i = 0; i < ranges.length; i++) {
    const range = ranges[i];
    if (isMediaType(mediaType(range), subtype, type) && !qualityZero(range)) return true;
  }
  return false;
}

/** Whether a media range carries `q=0` (0, 0.0, 0.00, 0.000): "not acceptable". */
function qualityZero(range: string): bool {
  const params = range.split(";");
  for (let i = 1; i < params.length; i++) {
    const p = params[i].trim().toLowerCase();
    if (!p.startsWith("q=")) continue;
    const q = p.substring(2).trim();
    if (q.length == 0 || q.charCodeAt(0) != 0x30) return false;
    for (let k = 1; k < q.length; k++) {
      const c = q.charCodeAt(k);
      if (c != 0x2e && c != 0x30) return false;
    }
    return true;
  }
  return false;
}
