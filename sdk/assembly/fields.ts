// Typed access to the fields of ABI section 4.1, on top of the buffers of io.ts.

import { host_add, host_get, host_remove, host_set, Status } from "./host";
import {
  check,
  describeStatus,
  encodeInto,
  encodeName,
  encodedNamePtr,
  failStatus,
  lastRead,
  readField,
  readList,
  releaseRead,
  resultBuf,
  takeBytes,
  takeString,
  valueBuf,
} from "./io";

/** A named field's value; null when absent. */
export function getNamed(field: i32, name: string, fn: string): string | null {
  let n = readField(field, encodeName(name), fn);
  if (n == Status.NOT_FOUND) return null;
  if (n < 0) failStatus(fn, name, n);
  return takeString(n);
}

/** A named field's value; "" when absent. */
export function getNamedOrEmpty(field: i32, name: string, fn: string): string {
  let n = readField(field, encodeName(name), fn);
  if (n == Status.NOT_FOUND) return "";
  if (n < 0) failStatus(fn, name, n);
  return takeString(n);
}

/** An unnamed field's value; "" when absent. */
export function getText(field: i32, fn: string): string {
  let n = readField(field, 0, fn);
  if (n == Status.NOT_FOUND) return "";
  if (n < 0) failStatus(fn, null, n);
  return takeString(n);
}

/** A body field; null when absent. */
export function getBytes(field: i32, fn: string): Uint8Array | null {
  let n = readField(field, 0, fn);
  if (n == Status.NOT_FOUND) return null;
  if (n < 0) failStatus(fn, null, n);
  return takeBytes(n);
}

/** A body field as UTF-8 text; null when absent. */
export function getBodyText(field: i32, fn: string): string | null {
  let n = readField(field, 0, fn);
  if (n == Status.NOT_FOUND) return null;
  if (n < 0) failStatus(fn, null, n);
  return takeString(n);
}

/** An unnamed field holding a decimal integer (RESPONSE_STATUS); 0 when absent or not a number. */
export function getDecimal(field: i32, fn: string): i32 {
  let n = readField(field, 0, fn);
  if (n == Status.NOT_FOUND) return 0;
  if (n < 0) failStatus(fn, null, n);
  let p = lastRead();
  let v: i32 = 0;
  for (let i = 0; i < n; i++) {
    let c = <i32>load<u8>(p + <usize>i);
    if (c < 0x30 || c > 0x39 || i >= 9) return 0;
    v = v * 10 + (c - 0x30);
  }
  return v;
}

/** Writes `value` in decimal into the value buffer, without making a string; returns its length in bytes. */
function decimalIntoValueBuf(value: i64): i32 {
  let p = valueBuf.reserve(20);
  let len: i32 = 0;
  let u: u64 = <u64>value;
  if (value < 0) {
    store<u8>(p, 0x2d);
    len = 1;
    u = <u64>(-value);
  }
  let digits = 1;
  let t = u;
  while (t >= 10) {
    t /= 10;
    digits++;
  }
  let q = p + <usize>(len + digits);
  do {
    store<u8>(--q, <u8>(0x30 + u % 10));
    u /= 10;
  } while (u != 0);
  return len + digits;
}

/** Sets an unnamed field to a decimal integer. */
export function setDecimal(field: i32, value: i32, fn: string): void {
  let len = decimalIntoValueBuf(value);
  check(host_set(field, 0, 0, valueBuf.ptr, len), fn, null);
}

/** Sets a named field (a header) to a decimal integer, as setText would with `value.toString()`. */
export function setNamedDecimal(field: i32, name: string, value: i64, fn: string): void {
  let nameLen = encodeName(name);
  let len = decimalIntoValueBuf(value);
  check(host_set(field, encodedNamePtr(nameLen), nameLen, valueBuf.ptr, len), fn, name);
}

/** Sets (or, with `add`, appends) a field's value; `name` is null for unnamed fields. */
export function setText(field: i32, name: string | null, value: string, add: bool, fn: string): void {
  let nameLen = name !== null ? encodeName(name) : 0;
  let valueLen = encodeInto(valueBuf, value);
  let status = add
    ? host_add(field, encodedNamePtr(nameLen), nameLen, valueBuf.ptr, valueLen)
    : host_set(field, encodedNamePtr(nameLen), nameLen, valueBuf.ptr, valueLen);
  check(status, fn, name);
}

/**
 * `setText` that returns instead of failing the call: null when the host took the value, else why it did not (an
 * invalid name or value, a field read-only in this phase).
 */
export function trySetText(field: i32, name: string, value: string, add: bool): string | null {
  let nameLen = encodeName(name);
  let valueLen = encodeInto(valueBuf, value);
  let status = add
    ? host_add(field, encodedNamePtr(nameLen), nameLen, valueBuf.ptr, valueLen)
    : host_set(field, encodedNamePtr(nameLen), nameLen, valueBuf.ptr, valueLen);
  return status < 0 ? describeStatus(status) + " (status " + status.toString() + ")" : null;
}

/** Sets a body field to bytes (passed to the host in place, without a copy). */
export function setBytes(field: i32, value: Uint8Array, fn: string): void {
  check(host_set(field, 0, 0, value.dataStart, value.byteLength), fn, null);
}

/** Removes a named item (no error when it was absent). */
export function removeNamed(field: i32, name: string, fn: string): void {
  let len = encodeName(name);
  let status = host_remove(field, encodedNamePtr(len), len);
  if (status != Status.NOT_FOUND) check(status, fn, name);
}

/** Names present in a named field. */
export function listNames(field: i32, fn: string): string[] {
  let n = readList(field, fn);
  if (n == Status.NOT_FOUND) return [];
  if (n < 0) failStatus(fn, null, n);
  let out = new Array<string>();
  let p = lastRead();
  let start = 0;
  for (let i = 0; i < n; i++) {
    if (load<u8>(p + <usize>i) == 0) {
      out.push(String.UTF8.decodeUnsafe(p + <usize>start, <usize>(i - start)));
      start = i + 1;
    }
  }
  // Tolerate a last name without its NUL.
  if (start < n) out.push(String.UTF8.decodeUnsafe(p + <usize>start, <usize>(n - start)));
  releaseRead();
  return out;
}
