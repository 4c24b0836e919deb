// Moving bytes across the ABI without allocating on the hot path.
//
// - Names and values going to the host are encoded with `String.UTF8.encodeUnsafe` into reusable scratch buffers that
//   start in static memory and move to the heap only when a longer string needs more room.
// - Values coming from the host are read into a reusable result buffer; when the host answers with a length above the
//   buffer's capacity the call is repeated with a buffer of that size (ABI section 3). Results above LARGE_RESULT use
//   a one-off heap block, freed once decoded, so one large body does not pin a large buffer for the instance's life.

import { host_effect, host_fail, host_get, host_list, Status } from "./host";

/** A growable, unmanaged byte buffer that starts on a static segment. */
@final
export class ByteBuffer {
  ptr: usize;
  cap: i32;
  private readonly staticPtr: usize;

  constructor(staticPtr: usize, cap: i32) {
    this.ptr = staticPtr;
    this.cap = cap;
    this.staticPtr = staticPtr;
  }

  /** Makes room for `n` bytes, discarding the content, and returns the buffer's address. */
  reserve(n: i32): usize {
    if (n > this.cap) this.resize(n, 0);
    return this.ptr;
  }

  /** Makes room for `n` bytes, keeping the first `keep` bytes, and returns the buffer's address. */
  grow(n: i32, keep: i32): usize {
    if (n > this.cap) this.resize(n, keep);
    return this.ptr;
  }

  private resize(n: i32, keep: i32): void {
    let cap = this.cap;
    while (cap < n) cap <<= 1;
    let ptr = heap.alloc(<usize>cap);
    if (keep > 0) memory.copy(ptr, this.ptr, <usize>keep);
    if (this.ptr != this.staticPtr) heap.free(this.ptr);
    this.ptr = ptr;
    this.cap = cap;
  }
}

/** Names (header, parameter, variable and config names). */
export const nameBuf = new ByteBuffer(memory.data(256, 16), 256);
/** Values sent to the host (set/add, log lines, failure messages). */
export const valueBuf = new ByteBuffer(memory.data(1024, 16), 1024);
/** Results read from the host. */
export const resultBuf = new ByteBuffer(memory.data(4096, 16), 4096);

/** Results larger than this are read into a one-off heap block instead of growing `resultBuf`. */
const LARGE_RESULT: i32 = 64 * 1024;

/** Encodes `s` as UTF-8 into `buf` and returns the byte length (the bytes are at `buf.ptr`). */
export function encodeInto(buf: ByteBuffer, s: string): i32 {
  let len = s.length;
  if (len == 0) return 0;
  // A UTF-16 code unit never takes more than 3 bytes in UTF-8 (a surrogate pair: 4 bytes for 2 units).
  let ptr = buf.reserve(len * 3);
  return <i32>String.UTF8.encodeUnsafe(changetype<usize>(s), len, ptr);
}

/**
 * The slot, in a table of `slots` (a power of two), of the string at `p`. A literal is static data below __heap_base,
 * never freed or changed, so its address stands for its text (the configuration keys of index.ts); a string on the
 * heap stands for its text only while something holds it (the names below).
 */
// @ts-ignore: decorator
@inline
export function addressSlot(p: usize, slots: i32): i32 {
  return <i32>((p ^ (p >> 7)) >> 4) & (slots - 1);
}

// A policy names the same headers on every call: literals (`request.header("origin")`), and names it read from its
// configuration once and keeps (set-header's `name`, key-auth's `identityHeader`). A name's UTF-8 bytes are kept in a
// slot of NAME_SLOTS picked by the string's address, and found again by that address: no encoding on later calls.
// A literal is static data, never freed; for a string on the heap the slot holds a reference to it, so that it cannot
// be collected and its address given to another string while the slot says what its bytes are. A name longer than a
// slot, or one that lost its slot to another, is encoded into `nameBuf` as before.
const NAME_SLOTS = 128;
const NAME_SLOT_BYTES = 32;
const nameSlotBytes: usize = memory.data(NAME_SLOTS * NAME_SLOT_BYTES, 16);
const nameAddresses = new StaticArray<usize>(NAME_SLOTS);
const nameLengths = new StaticArray<i32>(NAME_SLOTS);
const nameStrings = new StaticArray<string | null>(NAME_SLOTS);
/** Where the bytes of the last name encodeName gave are: `nameBuf`'s, or a slot's. */
let encodedName: usize = 0;

/** Encodes a name (through the slots above); its bytes are then at `encodedNamePtr(length)`. Returns the length. */
export function encodeName(name: string): i32 {
  const p = changetype<usize>(name);
  const slot = addressSlot(p, NAME_SLOTS);
  const kept = nameSlotBytes + <usize>(slot * NAME_SLOT_BYTES);
  if (unchecked(nameAddresses[slot]) == p) {
    encodedName = kept;
    return unchecked(nameLengths[slot]);
  }
  const len = encodeInto(nameBuf, name);
  if (len > NAME_SLOT_BYTES || len == 0) {
    encodedName = nameBuf.ptr;
    return len;
  }
  memory.copy(kept, nameBuf.ptr, <usize>len);
  unchecked((nameAddresses[slot] = p));
  unchecked((nameLengths[slot] = len));
  // A literal needs no reference (it is never freed); one to it would do no harm either.
  unchecked((nameStrings[slot] = p >= __heap_base ? name : null));
  encodedName = kept;
  return len;
}

/** The address of the last name encodeName gave (0 for an empty one, as the ABI takes unnamed fields). */
// @ts-ignore: decorator
@inline
export function encodedNamePtr(len: i32): usize {
  return len > 0 ? encodedName : 0;
}

// Where the last read landed, and the one-off block to free after it (0: none).
let readPtr: usize = 0;
let readTemp: usize = 0;

/** Frees the one-off block of the last read, if any. */
export function releaseRead(): void {
  if (readTemp != 0) {
    heap.free(readTemp);
    readTemp = 0;
  }
}

const OP_GET: i32 = 0;
const OP_LIST: i32 = 1;
const OP_EFFECT: i32 = 2;

// @ts-ignore: decorator
@inline
function invoke(op: i32, code: i32, ptr: usize, len: i32, buf: usize, cap: i32): i32 {
  if (op == OP_GET) return host_get(code, ptr, len, buf, cap);
  if (op == OP_LIST) return host_list(code, buf, cap);
  return host_effect(code, ptr, len, buf, cap);
}

function readLoop(op: i32, code: i32, ptr: usize, len: i32, what: string): i32 {
  releaseRead();
  let buf = resultBuf.ptr;
  let cap = resultBuf.cap;
  let n = invoke(op, code, ptr, len, buf, cap);
  let rounds = 0;
  while (n > cap) {
    if (++rounds > 4) fatal(what + ": the host kept returning larger values (" + n.toString() + " bytes)");
    if (n <= LARGE_RESULT) {
      releaseRead();
      buf = resultBuf.reserve(n);
      cap = resultBuf.cap;
    } else {
      releaseRead();
      buf = heap.alloc(<usize>n);
      readTemp = buf;
      cap = n;
    }
    n = invoke(op, code, ptr, len, buf, cap);
  }
  readPtr = buf;
  return n;
}

/** Reads a field (its name just given by encodeName, `nameLen` bytes, or 0 for unnamed fields); returns the length or a status. */
export function readField(field: i32, nameLen: i32, what: string): i32 {
  return readLoop(OP_GET, field, encodedNamePtr(nameLen), nameLen, what);
}

/** Reads the NUL-separated names of a named field; returns the length or a status. */
export function readList(field: i32, what: string): i32 {
  return readLoop(OP_LIST, field, 0, 0, what);
}

/** Runs an effect whose request is `len` bytes at `ptr`; returns the result length, -1 (pending) or a status. */
export function readEffect(kind: i32, ptr: usize, len: i32, what: string): i32 {
  return readLoop(OP_EFFECT, kind, ptr, len, what);
}

/** Address of the bytes of the last successful read. */
// @ts-ignore: decorator
@inline
export function lastRead(): usize {
  return readPtr;
}

/** Decodes the `n` bytes of the last read as UTF-8. */
export function takeString(n: i32): string {
  if (n <= 0) return "";
  let s = String.UTF8.decodeUnsafe(readPtr, <usize>n);
  releaseRead();
  return s;
}

/** Copies the `n` bytes of the last read into a new array. */
export function takeBytes(n: i32): Uint8Array {
  let out = new Uint8Array(n);
  if (n > 0) memory.copy(out.dataStart, readPtr, <usize>n);
  releaseRead();
  return out;
}

/** Describes an ABI status code for an error message. */
export function describeStatus(status: i32): string {
  if (status == Status.NOT_FOUND) return "not found";
  if (status == Status.READ_ONLY) return "this field cannot be written in this phase";
  if (status == Status.NOT_DECLARED) {
    return 'the body was not declared: set "requestBody" (request) or "responseBody" (response) to true in policy.json';
  }
  if (status == Status.INVALID_VALUE) {
    return "the host refused the value (characters a header or path may not hold, a \".\" or \"..\" path segment, a status outside 200-599 or a bad URL)";
  }
  if (status == Status.UNKNOWN_FIELD) return "unknown field or name";
  return "unexpected status";
}

/**
 * Reports a failure to the host (`fail`) and traps: the message is kept with the policy failure. Used for conditions
 * a policy cannot recover from (an unexpected status, a malformed host answer).
 */
export function fatal(message: string): void {
  let len = encodeInto(valueBuf, message);
  host_fail(valueBuf.ptr, len);
  unreachable();
}

/** `fatal` for an unexpected status: "<function>("<name>"): <what> (status N)". */
export function failStatus(fn: string, name: string | null, status: i32): void {
  let subject = fn;
  if (name !== null) subject = fn + '("' + name + '")';
  fatal(subject + ": " + describeStatus(status) + " (status " + status.toString() + ")");
}

/** Checks the result of set/add/remove/respond; fails the call on a negative status. */
// @ts-ignore: decorator
@inline
export function check(status: i32, fn: string, name: string | null): void {
  if (status < 0) failStatus(fn, name, status);
}
