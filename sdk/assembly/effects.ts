// Effects (ABI section 5): I/O the host performs between two calls of the same handler.
//
// The first call of a handler gets `null` (pending) from an effect that needs I/O; the handler should return
// `PENDING` as soon as it can (ask for every effect it needs first, so the host runs them concurrently). The host then
// runs the handler again from the start, and the same request (same kind, same bytes) returns its result. Requests are built
// deterministically: the same arguments always produce the same bytes (HTTP headers are sorted by name).
// An effect the host completes without I/O (a counter kept in the gateway's memory) returns its result in the first
// call; the same counter kept in Redis is pending. Write every handler for both.

import { EFFECT_PENDING, EffectKind } from "./host";
import { ByteBuffer, failStatus, fatal, lastRead, readEffect, releaseRead, takeString } from "./io";
import { JsonKind, JsonReader, JsonWriter } from "./json";

/** Result of `counter`. */
export class CounterResult {
  /** Whether `amount` was added without going over `limit` (refused calls are not counted). */
  allowed: bool = false;
  /** The counter's value in the current window, after this call. */
  count: i64 = 0;
  limit: i64 = 0;
  /** `limit - count`, never below 0. */
  remaining: i64 = 0;
  /** Seconds until the current window ends. */
  resetSeconds: i64 = 0;
}

/** Result of `lease`. */
export class LeaseResult {
  /** Whether a slot was taken (it is given back when the exchange ends). */
  acquired: bool = false;
  /** Slots held now for the key, this one included when acquired. */
  count: i64 = 0;
  limit: i64 = 0;
}

/** Result of `httpCall`. */
export class HttpResult {
  /** HTTP status, 0 when the call failed (see `error`). */
  status: i32 = 0;
  /** Response headers (names lowercased by the host). */
  headers: Map<string, string> = new Map<string, string>();
  body: string = "";
  /** Why the call failed (not allowed, timeout, connection error), or null. */
  error: string | null = null;
}

const requestWriter = new JsonWriter(new ByteBuffer(memory.data(512, 16), 512));

function shorten(text: string): string {
  return text.length > 200 ? text.substring(0, 200) + "..." : text;
}

/**
 * Runs the effect whose request is in `w`: the length of its result (the bytes at `lastRead()`), or EFFECT_PENDING. Any
 * other status fails the call.
 */
function runEffect(kind: i32, fn: string, subject: string, w: JsonWriter = requestWriter): i32 {
  let n = readEffect(kind, w.ptr, w.len, fn);
  if (n != EFFECT_PENDING && n < 0) failStatus(fn, subject, n);
  return n;
}

/** Runs the effect whose request is in `requestWriter`: its result text, or null while pending. */
function effectResult(kind: i32, fn: string, subject: string): string | null {
  let n = runEffect(kind, fn, subject);
  return n == EFFECT_PENDING ? null : takeString(n);
}

/** Fails the call when the host's result was not read to its end as the expected JSON object. */
function checkRead(r: JsonReader, fn: string, subject: string, text: string): void {
  if (!r.done()) fatal(fn + '("' + subject + '"): malformed result from the host: ' + shorten(text));
}

/**
 * A fixed-window counter kept by the gateway (needs the `counters` grant): adds `amount` to `key` when the result
 * stays within `limit` for the current window of `periodSeconds`; with `always`, adds it whatever the result (to account
 * for what was already used, such as bytes sent), `allowed` then saying whether the count is still within the limit.
 * An amount of 0 reads the counter. Returns null while pending (return `PENDING`). Keys are namespaced per policy
 * binding by the host.
 */
export function counter(key: string, limit: i64, periodSeconds: i64, amount: i64 = 1, always: bool = false): CounterResult | null {
  let result = new CounterResult();
  return countInto(result, key, limit, periodSeconds, amount, always) ? result : null;
}

// A rate limit asks for the same counter on every call from one caller: the request last written is kept, with what
// it was written from, and sent again as it is when they are the same.
const counterWriter = new JsonWriter(new ByteBuffer(memory.data(256, 16), 256));
let counterKey: string | null = null;
let counterLimit: i64 = 0;
let counterPeriod: i64 = 0;
let counterAmount: i64 = 0;
let counterAlways = false;

/** `counter` into `out` (every field set): false while pending. For a caller that reads the result at once. */
export function countInto(out: CounterResult, key: string, limit: i64, periodSeconds: i64, amount: i64 = 1, always: bool = false): bool {
  let w = counterWriter;
  let kept = counterKey;
  if (kept === null || limit != counterLimit || periodSeconds != counterPeriod || amount != counterAmount || always != counterAlways || key != kept) {
    w.reset();
    w.raw('{"key":');
    w.string(key);
    w.raw(',"limit":');
    w.int(limit);
    w.raw(',"periodSeconds":');
    w.int(periodSeconds);
    w.raw(',"amount":');
    w.int(amount);
    if (always) w.raw(',"always":true');
    w.char(0x7d);
    counterKey = key;
    counterLimit = limit;
    counterPeriod = periodSeconds;
    counterAmount = amount;
    counterAlways = always;
  }
  let n = runEffect(EffectKind.COUNTER, "counter", key, w);
  if (n == EFFECT_PENDING) return false;
  // `out` may hold an earlier call's result (rateLimit's does): a key the host left out reads as its default.
  clearCounterResult(out);
  if (scanCounterResult(lastRead(), n, out)) {
    releaseRead();
    return true;
  }
  // Not as the gateway writes it: read by the JSON reader, from defaults again.
  clearCounterResult(out);
  let text = takeString(n);
  let r = new JsonReader(text);
  if (r.beginObject()) {
    let k = r.nextKey();
    while (k !== null) {
      if (k == "allowed") out.allowed = r.readBool();
      else if (k == "count") out.count = r.readInt();
      else if (k == "limit") out.limit = r.readInt();
      else if (k == "remaining") out.remaining = r.readInt();
      else if (k == "resetSeconds") out.resetSeconds = r.readInt();
      else r.skipValue();
      k = r.nextKey();
    }
  }
  checkRead(r, "counter", key, text);
  return true;
}

function clearCounterResult(out: CounterResult): void {
  out.allowed = false;
  out.count = 0;
  out.limit = 0;
  out.remaining = 0;
  out.resetSeconds = 0;
}

/** Whether the `len` bytes at `p` are the ASCII text `s`. */
function bytesAre(p: usize, len: i32, s: string): bool {
  if (len != s.length) return false;
  let units = changetype<usize>(s);
  for (let i = 0; i < len; i++) {
    // `i` is below the string's length: its UTF-16 units read without charCodeAt's range check.
    if (<u32>load<u8>(p + <usize>i) != <u32>load<u16>(units + (<usize>i << 1))) return false;
  }
  return true;
}

/**
 * Reads a counter result straight from the host's bytes when it is written as the gateway writes it: one flat object,
 * no spaces, keys without escapes, `allowed` a boolean and the other known keys integers. Anything else returns false
 * (what was read so far is then discarded) and the result is parsed by the JSON reader. A counter runs on every
 * rate-limited request: this reads it without making a string of the result or of each key.
 */
function scanCounterResult(p: usize, n: i32, out: CounterResult): bool {
  if (n < 2 || load<u8>(p) != 0x7b) return false;
  let i: i32 = 1;
  while (true) {
    if (i >= n || load<u8>(p + <usize>i) != 0x22) return false;
    let keyStart = i + 1;
    let j = keyStart;
    while (j < n && load<u8>(p + <usize>j) != 0x22) {
      if (load<u8>(p + <usize>j) == 0x5c) return false;
      j++;
    }
    if (j + 2 >= n || load<u8>(p + <usize>(j + 1)) != 0x3a) return false;
    let key = p + <usize>keyStart;
    let keyLen = j - keyStart;
    i = j + 2;
    let c = load<u8>(p + <usize>i);
    if (c == 0x74 || c == 0x66) {
      let isTrue = c == 0x74;
      let len = isTrue ? 4 : 5;
      if (i + len > n || !bytesAre(p + <usize>i, len, isTrue ? "true" : "false")) return false;
      if (!bytesAre(key, keyLen, "allowed")) return false;
      out.allowed = isTrue;
      i += len;
    } else {
      let negative = c == 0x2d;
      if (negative) i++;
      let start = i;
      let v: i64 = 0;
      while (i < n) {
        let d = <i32>load<u8>(p + <usize>i) - 0x30;
        if (d < 0 || d > 9) break;
        // 18 digits always fit an i64; longer figures go to the JSON reader.
        if (i - start >= 18) return false;
        v = v * 10 + <i64>d;
        i++;
      }
      if (i == start) return false;
      if (negative) v = -v;
      if (bytesAre(key, keyLen, "count")) out.count = v;
      else if (bytesAre(key, keyLen, "limit")) out.limit = v;
      else if (bytesAre(key, keyLen, "remaining")) out.remaining = v;
      else if (bytesAre(key, keyLen, "resetSeconds")) out.resetSeconds = v;
      else return false;
    }
    if (i >= n) return false;
    let separator = load<u8>(p + <usize>i);
    i++;
    if (separator == 0x7d) return i == n;
    if (separator != 0x2c) return false;
  }
  return false;
}

/**
 * Takes one of `limit` concurrent slots of `key` for this exchange (needs the `counters` grant); the gateway gives it
 * back when the exchange ends (its response sent or abandoned), or at once if the call fails. In a shared store (Redis)
 * a slot is also given back after `ttlSeconds`, in case the gateway holding it dies. Returns null while pending.
 */
export function lease(key: string, limit: i64, ttlSeconds: i64 = 300): LeaseResult | null {
  let w = requestWriter;
  w.reset();
  w.raw('{"key":');
  w.string(key);
  w.raw(',"limit":');
  w.int(limit);
  w.raw(',"ttlSeconds":');
  w.int(ttlSeconds);
  w.char(0x7d);
  let text = effectResult(EffectKind.LEASE, "lease", key);
  if (text === null) return null;
  let result = new LeaseResult();
  let r = new JsonReader(text);
  if (r.beginObject()) {
    let k = r.nextKey();
    while (k !== null) {
      if (k == "acquired") result.acquired = r.readBool();
      else if (k == "count") result.count = r.readInt();
      else if (k == "limit") result.limit = r.readInt();
      else r.skipValue();
      k = r.nextKey();
    }
  }
  checkRead(r, "lease", key, text!);
  return result;
}

/**
 * Adds what this exchange carries (request and response body bytes, or kilobytes rounded up) to the counter `key` of
 * `periodSeconds`, when the exchange ends (needs the `counters` grant). Read the counter with `counter(key, limit,
 * periodSeconds, 0)`. Returns false while pending (return PENDING), true once registered.
 */
export function meter(key: string, periodSeconds: i64, kilobytes: bool = true): bool {
  let w = requestWriter;
  w.reset();
  w.raw('{"key":');
  w.string(key);
  w.raw(',"periodSeconds":');
  w.int(periodSeconds);
  w.raw(kilobytes ? ',"unit":"kilobytes"}' : ',"unit":"bytes"}');
  let n = readEffect(EffectKind.METER, w.ptr, w.len, "meter");
  if (n == EFFECT_PENDING) return false;
  if (n < 0) failStatus("meter", key, n);
  releaseRead();
  return true;
}

/**
 * An HTTP request made by the gateway (needs the `http` grant; the host must be on the policy's allow-list).
 * Returns null while pending (return `PENDING`); a failed call (refused host, timeout, connection error) returns a
 * result with `error` set and `status` 0.
 */
export function httpCall(
  method: string,
  url: string,
  headers: Map<string, string> | null = null,
  body: string | null = null,
  timeoutMs: i32 = 5000,
): HttpResult | null {
  let w = requestWriter;
  w.reset();
  w.raw('{"method":');
  w.string(method);
  w.raw(',"url":');
  w.string(url);
  w.raw(',"headers":{');
  if (headers !== null) {
    let names = headers.keys();
    names.sort();
    for (let i = 0; i < names.length; i++) {
      let name = unchecked(names[i]);
      w.key(name, i == 0);
      w.string(headers.get(name));
    }
  }
  w.char(0x7d);
  if (body !== null) {
    w.raw(',"body":');
    w.string(body);
  }
  w.raw(',"timeoutMs":');
  w.int(timeoutMs);
  w.char(0x7d);
  let text = effectResult(EffectKind.HTTP, "httpCall", url);
  if (text === null) return null;
  let result = new HttpResult();
  let r = new JsonReader(text);
  if (r.beginObject()) {
    let k = r.nextKey();
    while (k !== null) {
      if (k == "status") {
        result.status = <i32>r.readInt();
      } else if (k == "headers") {
        if (r.beginObject()) {
          let h = r.nextKey();
          while (h !== null) {
            let v = r.readString();
            if (v !== null) result.headers.set(h, v);
            h = r.nextKey();
          }
        }
      } else if (k == "body") {
        let b = r.readString();
        if (b !== null) result.body = b;
      } else if (k == "error") {
        if (r.peekKind() == JsonKind.NULL) r.readNull();
        else result.error = r.readString();
      } else {
        r.skipValue();
      }
      k = r.nextKey();
    }
  }
  checkRead(r, "httpCall", url, text!);
  return result;
}

/**
 * The signing keys of the OpenID Connect issuer whose discovery document is `url` (needs the `openidConfig` grant
 * naming it): the gateway fetches the document and its JWKS, keeps the keys, and fetches them again when `kid` is not
 * among them (rate-limited) or when they expire. Returns the result's JSON text, `{"keys":[<JWK>...]}` or
 * `{"error":"..."}`, or null while pending (return `PENDING`).
 */
export function openidKeys(url: string, kid: string): string | null {
  let w = requestWriter;
  w.reset();
  w.raw('{"url":');
  w.string(url);
  w.raw(',"kid":');
  w.string(kid);
  w.char(0x7d);
  return effectResult(EffectKind.KEYS, "openidKeys", url);
}
