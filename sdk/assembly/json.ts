// A small JSON reader and writer, enough for configuration values and effect requests/results.
//
// AssemblyScript has no closures, no union types and no exceptions, so the reader is a cursor with an `error` flag
// rather than a callback or throwing parser, and parsed values are a tagged class (`JsonValue`).

import { ByteBuffer } from "./io";

// ---------------------------------------------------------------------------------------------------------------
// Writing

/** Writes compact JSON as UTF-8 into a `ByteBuffer`. The same calls always produce the same bytes. */
@final
export class JsonWriter {
  len: i32 = 0;

  constructor(public buf: ByteBuffer) {}

  /** Starts over (keeps the buffer). */
  reset(): void {
    this.len = 0;
  }

  /** Address of the bytes written so far. */
  get ptr(): usize {
    return this.buf.ptr;
  }

  /** Reserves room for `extra` more bytes; returns the address to write at. */
  private room(extra: i32): usize {
    return this.buf.grow(this.len + extra, this.len) + <usize>this.len;
  }

  private advance(start: usize, p: usize): void {
    this.len += <i32>(p - start);
  }

  /** Appends one ASCII character. */
  char(c: i32): void {
    store<u8>(this.room(1), <u8>c);
    this.len++;
  }

  /** Appends text as it is (for punctuation and keys that need no escaping). */
  raw(s: string): void {
    let n = s.length;
    let p = this.room(n * 3);
    this.len += <i32>String.UTF8.encodeUnsafe(changetype<usize>(s), n, p);
  }

  /** Appends `s` as a quoted JSON string. */
  string(s: string): void {
    let n = s.length;
    let src = changetype<usize>(s);
    // Worst case: every unit escaped as \u00XX (6 bytes), plus the quotes.
    let start = this.room(n * 6 + 2);
    let p = start;
    store<u8>(p++, 0x22);
    for (let i = 0; i < n; i++) {
      let c = <u32>load<u16>(src + (<usize>i << 1));
      if (c < 0x80) {
        if (c == 0x22 || c == 0x5c) {
          store<u8>(p++, 0x5c);
          store<u8>(p++, <u8>c);
        } else if (c >= 0x20) {
          store<u8>(p++, <u8>c);
        } else if (c == 0x0a) {
          store<u8>(p++, 0x5c);
          store<u8>(p++, 0x6e); // \n
        } else if (c == 0x0d) {
          store<u8>(p++, 0x5c);
          store<u8>(p++, 0x72); // \r
        } else if (c == 0x09) {
          store<u8>(p++, 0x5c);
          store<u8>(p++, 0x74); // \t
        } else {
          p = writeUnicodeEscape(p, c);
        }
      } else if (c < 0x800) {
        store<u8>(p++, <u8>(0xc0 | (c >> 6)));
        store<u8>(p++, <u8>(0x80 | (c & 0x3f)));
      } else if ((c & 0xf800) == 0xd800) {
        // A surrogate: a valid pair becomes one 4-byte sequence; a lone surrogate is escaped (still valid JSON).
        let c2: u32 = i + 1 < n ? <u32>load<u16>(src + (<usize>(i + 1) << 1)) : 0;
        if (c < 0xdc00 && (c2 & 0xfc00) == 0xdc00) {
          let cp = 0x10000 + (((c & 0x3ff) << 10) | (c2 & 0x3ff));
          store<u8>(p++, <u8>(0xf0 | (cp >> 18)));
          store<u8>(p++, <u8>(0x80 | ((cp >> 12) & 0x3f)));
          store<u8>(p++, <u8>(0x80 | ((cp >> 6) & 0x3f)));
          store<u8>(p++, <u8>(0x80 | (cp & 0x3f)));
          i++;
        } else {
          p = writeUnicodeEscape(p, c);
        }
      } else {
        store<u8>(p++, <u8>(0xe0 | (c >> 12)));
        store<u8>(p++, <u8>(0x80 | ((c >> 6) & 0x3f)));
        store<u8>(p++, <u8>(0x80 | (c & 0x3f)));
      }
    }
    store<u8>(p++, 0x22);
    this.advance(start, p);
  }

  /** Appends an integer. */
  int(v: i64): void {
    let start = this.room(20);
    let p = start;
    let u: u64;
    if (v < 0) {
      store<u8>(p++, 0x2d);
      u = <u64>(-v); // also right for i64.MIN_VALUE, read as unsigned
    } else {
      u = <u64>v;
    }
    let digits = 1;
    let t = u;
    while (t >= 10) {
      t /= 10;
      digits++;
    }
    let q = p + <usize>digits;
    do {
      store<u8>(--q, <u8>(0x30 + <u32>(u % 10)));
      u /= 10;
    } while (u != 0);
    p += <usize>digits;
    this.advance(start, p);
  }

  /** Appends a number (`null` for NaN and infinities, which JSON cannot express). */
  float(v: f64): void {
    if (!isFinite(v)) {
      this.raw("null");
    } else if (v == Math.trunc(v) && Math.abs(v) < 9007199254740992.0) {
      this.int(<i64>v);
    } else {
      this.raw(v.toString());
    }
  }

  /** Appends `true` or `false`. */
  bool(b: bool): void {
    this.raw(b ? "true" : "false");
  }

  /** Appends `null`. */
  nil(): void {
    this.raw("null");
  }

  /** Appends `"key":` (with a leading comma unless `first`). */
  key(k: string, first: bool = false): void {
    if (!first) this.char(0x2c);
    this.string(k);
    this.char(0x3a);
  }

  /** The text written so far. */
  toString(): string {
    return String.UTF8.decodeUnsafe(this.buf.ptr, <usize>this.len);
  }
}

function hexDigit(v: u32): u8 {
  return <u8>(v < 10 ? 0x30 + v : 0x57 + v);
}

function writeUnicodeEscape(p: usize, c: u32): usize {
  store<u8>(p, 0x5c);
  store<u8>(p + 1, 0x75); // \u
  store<u8>(p + 2, hexDigit((c >> 12) & 0xf));
  store<u8>(p + 3, hexDigit((c >> 8) & 0xf));
  store<u8>(p + 4, hexDigit((c >> 4) & 0xf));
  store<u8>(p + 5, hexDigit(c & 0xf));
  return p + 6;
}

const stringWriter = new JsonWriter(new ByteBuffer(memory.data(256, 16), 256));
const valueWriter = new JsonWriter(new ByteBuffer(memory.data(256, 16), 256));

/** `s` as a quoted JSON string literal, e.g. `he said "hi"` -> `"he said \"hi\""`. */
export function jsonString(s: string): string {
  stringWriter.reset();
  stringWriter.string(s);
  return stringWriter.toString();
}

// ---------------------------------------------------------------------------------------------------------------
// Reading

/** Kinds of JSON values. */
export namespace JsonKind {
  export const INVALID: i32 = -1;
  export const NULL: i32 = 0;
  export const BOOL: i32 = 1;
  export const NUMBER: i32 = 2;
  export const STRING: i32 = 3;
  export const ARRAY: i32 = 4;
  export const OBJECT: i32 = 5;
}

/** Nesting deeper than this is refused (the reader and `parseJson` recurse). */
const MAX_DEPTH: i32 = 64;

/**
 * A cursor over JSON text. Read methods consume one value; on malformed input they set `error` and return a neutral
 * value (null, 0, false), after which every method keeps failing.
 *
 * ```ts
 * const r = new JsonReader(text);
 * if (r.beginObject()) {
 *   let key = r.nextKey();
 *   while (key !== null) {
 *     if (key == "count") count = r.readInt();
 *     else r.skipValue();
 *     key = r.nextKey();
 *   }
 * }
 * if (r.error) ...
 * ```
 */
@final
export class JsonReader {
  pos: i32 = 0;
  error: bool = false;
  private end: i32;
  private depth: i32 = 0;
  // Bit d set: the container at depth d has had no member yet.
  private firstBits: u64 = 0;

  constructor(public text: string) {
    this.end = text.length;
  }

  // @ts-ignore: decorator
  @inline
  private at(i: i32): u32 {
    return <u32>load<u16>(changetype<usize>(this.text) + (<usize>i << 1));
  }

  private fail(): void {
    this.error = true;
    this.pos = this.end;
  }

  private skipWs(): void {
    let p = this.pos;
    while (p < this.end) {
      let c = this.at(p);
      if (c != 0x20 && c != 0x0a && c != 0x0d && c != 0x09) break;
      p++;
    }
    this.pos = p;
  }

  /** The kind of the next value, without consuming it (`JsonKind.INVALID` at the end or on an error). */
  peekKind(): i32 {
    if (this.error) return JsonKind.INVALID;
    this.skipWs();
    if (this.pos >= this.end) return JsonKind.INVALID;
    let c = this.at(this.pos);
    if (c == 0x7b) return JsonKind.OBJECT;
    if (c == 0x5b) return JsonKind.ARRAY;
    if (c == 0x22) return JsonKind.STRING;
    if (c == 0x74 || c == 0x66) return JsonKind.BOOL;
    if (c == 0x6e) return JsonKind.NULL;
    if (c == 0x2d || (c >= 0x30 && c <= 0x39)) return JsonKind.NUMBER;
    return JsonKind.INVALID;
  }

  /** True when only whitespace is left (and nothing failed). */
  done(): bool {
    if (this.error) return false;
    this.skipWs();
    return this.pos == this.end;
  }

  private open(c: u32): bool {
    if (this.error) return false;
    this.skipWs();
    if (this.pos >= this.end || this.at(this.pos) != c || this.depth >= MAX_DEPTH) {
      this.fail();
      return false;
    }
    this.pos++;
    this.depth++;
    this.firstBits |= (<u64>1) << <u64>this.depth;
    return true;
  }

  // Before a member: consumes the closing bracket (returns false) or the separating comma.
  private more(close: u32): bool {
    if (this.error) return false;
    this.skipWs();
    if (this.pos >= this.end) {
      this.fail();
      return false;
    }
    let c = this.at(this.pos);
    let bit = (<u64>1) << <u64>this.depth;
    let first = (this.firstBits & bit) != 0;
    if (c == close) {
      this.pos++;
      this.firstBits &= ~bit;
      this.depth--;
      return false;
    }
    if (first) {
      this.firstBits &= ~bit;
    } else if (c == 0x2c) {
      this.pos++;
    } else {
      this.fail();
      return false;
    }
    return true;
  }

  /** Consumes `{`; false (and `error`) if the next value is not an object. */
  beginObject(): bool {
    return this.open(0x7b);
  }

  /** The next key of the current object (its `:` consumed), or null after the closing `}` (or on an error). */
  nextKey(): string | null {
    if (!this.more(0x7d)) return null;
    let key = this.readString();
    if (key === null) return null;
    this.skipWs();
    if (this.pos >= this.end || this.at(this.pos) != 0x3a) {
      this.fail();
      return null;
    }
    this.pos++;
    return key;
  }

  /** Consumes `[`; false (and `error`) if the next value is not an array. */
  beginArray(): bool {
    return this.open(0x5b);
  }

  /** True if the current array has another item (read it next); false after the closing `]` (or on an error). */
  nextItem(): bool {
    return this.more(0x5d);
  }

  /** Reads a string value; null (and `error`) if the next value is not a string. */
  readString(): string | null {
    if (this.error) return null;
    this.skipWs();
    if (this.pos >= this.end || this.at(this.pos) != 0x22) {
      this.fail();
      return null;
    }
    let start = this.pos + 1;
    let p = start;
    let escaped = false;
    while (true) {
      if (p >= this.end) {
        this.fail();
        return null;
      }
      let c = this.at(p);
      if (c == 0x22) break;
      if (c == 0x5c) {
        escaped = true;
        p += 2;
        continue;
      }
      if (c < 0x20) {
        this.fail();
        return null;
      }
      p++;
    }
    this.pos = p + 1;
    if (!escaped) return this.text.substring(start, p);
    return this.unescape(start, p);
  }

  private unescape(start: i32, end: i32): string | null {
    // The result is never longer than the escaped text.
    let out = __new(<usize>(end - start) << 1, idof<String>());
    let o: usize = out;
    let i = start;
    while (i < end) {
      let c = this.at(i);
      if (c != 0x5c) {
        store<u16>(o, <u16>c);
        o += 2;
        i++;
        continue;
      }
      let e = this.at(i + 1);
      i += 2;
      let v: u32 = 0;
      if (e == 0x22 || e == 0x5c || e == 0x2f) v = e;
      else if (e == 0x62) v = 0x08;
      else if (e == 0x66) v = 0x0c;
      else if (e == 0x6e) v = 0x0a;
      else if (e == 0x72) v = 0x0d;
      else if (e == 0x74) v = 0x09;
      else if (e == 0x75 && i + 4 <= end) {
        for (let k = 0; k < 4; k++) {
          let h = this.at(i + k);
          let d: u32;
          if (h >= 0x30 && h <= 0x39) d = h - 0x30;
          else if (h >= 0x61 && h <= 0x66) d = h - 0x57;
          else if (h >= 0x41 && h <= 0x46) d = h - 0x37;
          else {
            this.fail();
            return null;
          }
          v = (v << 4) | d;
        }
        i += 4;
      } else {
        this.fail();
        return null;
      }
      store<u16>(o, <u16>v);
      o += 2;
    }
    return changetype<string>(__renew(out, o - out));
  }

  // Scans a number; returns its end, or -1 (and `error`). Sets `lastIsInteger`.
  private scanNumber(): i32 {
    if (this.error) return -1;
    this.skipWs();
    let p = this.pos;
    let end = this.end;
    this.lastIsInteger = true;
    if (p < end && this.at(p) == 0x2d) p++;
    if (p >= end) {
      this.fail();
      return -1;
    }
    let c = this.at(p);
    if (c == 0x30) {
      p++;
    } else if (c >= 0x31 && c <= 0x39) {
      while (p < end && this.at(p) >= 0x30 && this.at(p) <= 0x39) p++;
    } else {
      this.fail();
      return -1;
    }
    if (p < end && this.at(p) == 0x2e) {
      this.lastIsInteger = false;
      p++;
      let digits = p;
      while (p < end && this.at(p) >= 0x30 && this.at(p) <= 0x39) p++;
      if (p == digits) {
        this.fail();
        return -1;
      }
    }
    if (p < end && (this.at(p) == 0x65 || this.at(p) == 0x45)) {
      this.lastIsInteger = false;
      p++;
      if (p < end && (this.at(p) == 0x2b || this.at(p) == 0x2d)) p++;
      let digits = p;
      while (p < end && this.at(p) >= 0x30 && this.at(p) <= 0x39) p++;
      if (p == digits) {
        this.fail();
        return -1;
      }
    }
    return p;
  }

  /** Whether the last number read had neither a fraction nor an exponent. */
  lastIsInteger: bool = false;

  /** Reads a number; NaN (and `error`) if the next value is not a number. */
  readNumber(): f64 {
    let end = this.scanNumber();
    if (end < 0) return NaN;
    let start = this.pos;
    this.pos = end;
    return parseFloat(this.text.substring(start, end));
  }

  /**
   * Reads a number as an integer: exact for integers that fit an i64; a number with a fraction or an exponent is
   * accepted when its value is integral. Otherwise returns `fallback` (and sets `error` unless the value was a number;
   * `lastIntExact` tells the two apart).
   */
  readInt(fallback: i64 = 0): i64 {
    let end = this.scanNumber();
    if (end < 0) return fallback;
    let start = this.pos;
    this.pos = end;
    this.lastIntExact = false;
    if (this.lastIsInteger) {
      let p = start;
      let negative = this.at(p) == 0x2d;
      if (negative) p++;
      // 19 digits always fit a u64; then check the i64 range.
      if (end - p > 19) return fallback;
      let v: u64 = 0;
      while (p < end) v = v * 10 + <u64>(this.at(p++) - 0x30);
      if (negative ? v > 0x8000000000000000 : v > 0x7fffffffffffffff) return fallback;
      this.lastIntExact = true;
      return negative ? <i64>(0 - v) : <i64>v;
    }
    let f = parseFloat(this.text.substring(start, end));
    if (f != Math.trunc(f) || f < -9223372036854775808.0 || f >= 9223372036854775808.0) return fallback;
    this.lastIntExact = true;
    return <i64>f;
  }

  /** Whether the last `readInt` found an integral value within the i64 range (rather than returning `fallback`). */
  lastIntExact: bool = false;

  /** Reads `true` or `false`; false (and `error`) otherwise. */
  readBool(): bool {
    if (this.error) return false;
    this.skipWs();
    if (this.matchWord("true")) return true;
    if (!this.matchWord("false")) this.fail();
    return false;
  }

  /** Reads `null`; false (and `error`) otherwise. */
  readNull(): bool {
    if (this.error) return false;
    this.skipWs();
    if (this.matchWord("null")) return true;
    this.fail();
    return false;
  }

  private matchWord(w: string): bool {
    let n = w.length;
    if (this.pos + n > this.end) return false;
    for (let i = 0; i < n; i++) {
      if (this.at(this.pos + i) != <u32>w.charCodeAt(i)) return false;
    }
    this.pos += n;
    return true;
  }

  /** Skips the next value (of any kind); false (and `error`) if it is malformed. */
  skipValue(): bool {
    let kind = this.peekKind();
    if (kind == JsonKind.OBJECT) {
      if (!this.beginObject()) return false;
      while (this.nextKey() !== null) {
        if (!this.skipValue()) return false;
      }
    } else if (kind == JsonKind.ARRAY) {
      if (!this.beginArray()) return false;
      while (this.nextItem()) {
        if (!this.skipValue()) return false;
      }
    } else if (kind == JsonKind.STRING) {
      this.readString();
    } else if (kind == JsonKind.NUMBER) {
      let end = this.scanNumber();
      if (end >= 0) this.pos = end;
    } else if (kind == JsonKind.BOOL) {
      this.readBool();
    } else if (kind == JsonKind.NULL) {
      this.readNull();
    } else {
      this.fail();
    }
    return !this.error;
  }

  /** The raw text of the next value (consumed), or null if it is malformed. */
  readRaw(): string | null {
    if (this.error) return null;
    this.skipWs();
    let start = this.pos;
    if (!this.skipValue()) return null;
    return this.text.substring(start, this.pos);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Values

/** A parsed JSON value. `kind` is one of `JsonKind`; the fields that do not apply to the kind hold neutral values. */
@final
export class JsonValue {
  kind: i32 = JsonKind.NULL;
  boolValue: bool = false;
  numberValue: f64 = 0;
  /** The number as an i64, exact for integers written without fraction or exponent. */
  intValue: i64 = 0;
  isInteger: bool = false;
  /** The number exactly as the JSON text wrote it (`1.50`, `1e400`), for writing it back unchanged. */
  numberText: string = "";
  stringValue: string = "";
  /** Array items, or object values (parallel to `keys`). */
  items: JsonValue[] = [];
  /** Object keys, in document order. */
  keys: string[] = [];

  isNull(): bool {
    return this.kind == JsonKind.NULL;
  }
  isBool(): bool {
    return this.kind == JsonKind.BOOL;
  }
  isNumber(): bool {
    return this.kind == JsonKind.NUMBER;
  }
  isString(): bool {
    return this.kind == JsonKind.STRING;
  }
  isArray(): bool {
    return this.kind == JsonKind.ARRAY;
  }
  isObject(): bool {
    return this.kind == JsonKind.OBJECT;
  }

  /** Number of array items or object members (0 for other kinds). */
  get length(): i32 {
    return this.kind == JsonKind.ARRAY || this.kind == JsonKind.OBJECT ? this.items.length : 0;
  }

  /**
   * The member `key` of an object, or null. A key repeated in the text (RFC 8259 leaves it to the reader) gives the
   * last of its values, as JavaScript's JSON.parse does; `parseJson(text, JsonDuplicates.FIRST)` keeps the first one
   * instead, and `JsonDuplicates.REJECT` refuses such a text (two readers of one body can then never disagree).
   */
  get(key: string): JsonValue | null {
    if (this.kind != JsonKind.OBJECT) return null;
    for (let i = this.keys.length - 1; i >= 0; i--) {
      if (unchecked(this.keys[i]) == key) return unchecked(this.items[i]);
    }
    return null;
  }

  /** Whether an object has the member `key`. */
  has(key: string): bool {
    return this.get(key) !== null;
  }

  /** Item `i` of an array, or null. */
  at(i: i32): JsonValue | null {
    if (this.kind != JsonKind.ARRAY || i < 0 || i >= this.items.length) return null;
    return unchecked(this.items[i]);
  }

  asString(fallback: string | null = null): string | null {
    return this.kind == JsonKind.STRING ? this.stringValue : fallback;
  }
  asFloat(fallback: f64 = 0): f64 {
    return this.kind == JsonKind.NUMBER ? this.numberValue : fallback;
  }
  asInt(fallback: i64 = 0): i64 {
    return this.kind == JsonKind.NUMBER && this.isInteger ? this.intValue : fallback;
  }
  asBool(fallback: bool = false): bool {
    return this.kind == JsonKind.BOOL ? this.boolValue : fallback;
  }

  /** Compact JSON text of this value. */
  toString(): string {
    valueWriter.reset();
    writeValue(valueWriter, this);
    return valueWriter.toString();
  }
}

function writeValue(w: JsonWriter, v: JsonValue): void {
  let kind = v.kind;
  if (kind == JsonKind.NULL) w.nil();
  else if (kind == JsonKind.BOOL) w.bool(v.boolValue);
  else if (kind == JsonKind.NUMBER) {
    // As written (1.50, 1e400): an f64 would print 1.5 and Infinity.
    if (v.numberText.length > 0) w.raw(v.numberText);
    else if (v.isInteger) w.int(v.intValue);
    else w.float(v.numberValue);
  } else if (kind == JsonKind.STRING) w.string(v.stringValue);
  else if (kind == JsonKind.ARRAY) {
    w.char(0x5b);
    for (let i = 0; i < v.items.length; i++) {
      if (i > 0) w.char(0x2c);
      writeValue(w, unchecked(v.items[i]));
    }
    w.char(0x5d);
  } else {
    w.char(0x7b);
    for (let i = 0; i < v.items.length; i++) {
      w.key(unchecked(v.keys[i]), i == 0);
      writeValue(w, unchecked(v.items[i]));
    }
    w.char(0x7d);
  }
}

/** What `parseJson` does with a key repeated in one object. */
export namespace JsonDuplicates {
  /** Keep every member; `get` returns the last value (JavaScript's JSON.parse). The default. */
  export const LAST: i32 = 0;
  /** Keep the first value of a repeated key and drop the later ones (`keys` lists each key once). */
  export const FIRST: i32 = 1;
  /** A text that repeats a key in an object is not accepted: `parseJson` returns null. */
  export const REJECT: i32 = 2;
}

function readValue(r: JsonReader, duplicates: i32): JsonValue | null {
  let v = new JsonValue();
  let kind = r.peekKind();
  v.kind = kind;
  if (kind == JsonKind.OBJECT) {
    if (!r.beginObject()) return null;
    let key = r.nextKey();
    // Seen keys, only when repeats matter: a set, so that a hostile object of many keys costs linear time.
    let seen: Set<string> | null = duplicates != JsonDuplicates.LAST ? new Set<string>() : null;
    while (key !== null) {
      let item = readValue(r, duplicates);
      if (item === null) return null;
      if (seen !== null && seen.has(key)) {
        if (duplicates == JsonDuplicates.REJECT) return null;
      } else {
        if (seen !== null) seen.add(key);
        v.keys.push(key);
        v.items.push(item);
      }
      key = r.nextKey();
    }
  } else if (kind == JsonKind.ARRAY) {
    if (!r.beginArray()) return null;
    while (r.nextItem()) {
      let item = readValue(r, duplicates);
      if (item === null) return null;
      v.items.push(item);
    }
  } else if (kind == JsonKind.STRING) {
    let s = r.readString();
    if (s !== null) v.stringValue = s;
  } else if (kind == JsonKind.NUMBER) {
    let save = r.pos;
    let f = r.readNumber();
    v.numberValue = f;
    if (!r.error) v.numberText = r.text.substring(save, r.pos);
    if (!r.error && r.lastIsInteger) {
      // Re-read the digits for an exact i64.
      let end = r.pos;
      r.pos = save;
      v.intValue = r.readInt();
      v.isInteger = r.lastIntExact;
      r.pos = end;
    }
  } else if (kind == JsonKind.BOOL) {
    v.boolValue = r.readBool();
  } else if (kind == JsonKind.NULL) {
    r.readNull();
  } else {
    return null;
  }
  return r.error ? null : v;
}

/**
 * Parses a whole JSON text; null if it is malformed (or nests deeper than 64 levels). `duplicates` says what a key
 * repeated in one object does (`JsonDuplicates`: LAST, the default, FIRST or REJECT).
 */
export function parseJson(text: string, duplicates: i32 = JsonDuplicates.LAST): JsonValue | null {
  let r = new JsonReader(text);
  let v = readValue(r, duplicates);
  if (v === null || !r.done()) return null;
  return v;
}
