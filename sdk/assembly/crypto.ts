// Hashing for policies: SHA-256 (FIPS 180-4) and HMAC-SHA-256 (RFC 2104), in plain AssemblyScript, so that a policy
// needs no host call and no grant to compare a key with its stored digest or to check an HS256 signature.

import { encodeInto, valueBuf } from "./io";

// The first 32 bits of the fractional parts of the cube roots of the first 64 primes (FIPS 180-4, 4.2.2).
const K: StaticArray<u32> = [
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

const W = new StaticArray<u32>(64);

function resetState(h: StaticArray<u32>): void {
  h[0] = 0x6a09e667;
  h[1] = 0xbb67ae85;
  h[2] = 0x3c6ef372;
  h[3] = 0xa54ff53a;
  h[4] = 0x510e527f;
  h[5] = 0x9b05688c;
  h[6] = 0x1f83d9ab;
  h[7] = 0x5be0cd19;
}

/** One 64-byte block at `ptr` into the state `h`. */
function compress(h: StaticArray<u32>, ptr: usize): void {
  for (let t = 0; t < 16; t++) {
    unchecked((W[t] = bswap<u32>(load<u32>(ptr + (<usize>t << 2)))));
  }
  for (let t = 16; t < 64; t++) {
    const w15 = unchecked(W[t - 15]);
    const w2 = unchecked(W[t - 2]);
    const s0 = rotr<u32>(w15, 7) ^ rotr<u32>(w15, 18) ^ (w15 >>> 3);
    const s1 = rotr<u32>(w2, 17) ^ rotr<u32>(w2, 19) ^ (w2 >>> 10);
    unchecked((W[t] = unchecked(W[t - 16]) + s0 + unchecked(W[t - 7]) + s1));
  }
  let a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
  for (let t = 0; t < 64; t++) {
    const S1 = rotr<u32>(e, 6) ^ rotr<u32>(e, 11) ^ rotr<u32>(e, 25);
    const ch = (e & f) ^ (~e & g);
    const t1 = hh + S1 + ch + unchecked(K[t]) + unchecked(W[t]);
    const S0 = rotr<u32>(a, 2) ^ rotr<u32>(a, 13) ^ rotr<u32>(a, 22);
    const maj = (a & b) ^ (a & c) ^ (b & c);
    const t2 = S0 + maj;
    hh = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
  h[5] += f;
  h[6] += g;
  h[7] += hh;
}

/**
 * SHA-256 fed in pieces: `update` as often as needed, then `finish` once. A large body is hashed where it lies, in as
 * many slices as the policy likes, without first being copied into one message (HMAC's key block and the message, or
 * several fields of a signature base).
 */
@final
export class Sha256 {
  /** The chaining state; after `finish`, the digest's words. */
  readonly state: StaticArray<u32> = new StaticArray<u32>(8);
  private readonly block: StaticArray<u8> = new StaticArray<u8>(64);
  private filled: i32 = 0;
  private total: u64 = 0;

  constructor() {
    resetState(this.state);
  }

  /** Starts again, as a new hasher. */
  reset(): Sha256 {
    resetState(this.state);
    this.filled = 0;
    this.total = 0;
    return this;
  }

  /** Adds `len` bytes at `ptr`. */
  updateRaw(ptr: usize, len: i32): Sha256 {
    const blockPtr = changetype<usize>(this.block);
    const h = this.state;
    let filled = this.filled;
    let i = 0;
    this.total += <u64>len;
    // Whole blocks straight from the input once the buffered part is flushed.
    if (filled > 0) {
      const take = min(64 - filled, len);
      memory.copy(blockPtr + <usize>filled, ptr, <usize>take);
      filled += take;
      i = take;
      if (filled == 64) {
        compress(h, blockPtr);
        filled = 0;
      }
    }
    while (len - i >= 64) {
      compress(h, ptr + <usize>i);
      i += 64;
    }
    if (i < len) {
      memory.copy(blockPtr + <usize>filled, ptr + <usize>i, <usize>(len - i));
      filled += len - i;
    }
    this.filled = filled;
    return this;
  }

  /** Adds the bytes of `data`. */
  update(data: Uint8Array): Sha256 {
    return this.updateRaw(data.dataStart, data.length);
  }

  /** Adds the UTF-8 bytes of `text`. */
  updateText(text: string): Sha256 {
    const len = encodeInto(valueBuf, text);
    return this.updateRaw(valueBuf.ptr, len);
  }

  /** Pads the message (FIPS 180-4, 5.1.1): the digest is then in `state`. */
  finishState(): void {
    const blockPtr = changetype<usize>(this.block);
    const h = this.state;
    let filled = this.filled;
    const bits = this.total << 3;
    store<u8>(blockPtr + <usize>filled, 0x80);
    filled++;
    if (filled > 56) {
      memory.fill(blockPtr + <usize>filled, 0, <usize>(64 - filled));
      compress(h, blockPtr);
      filled = 0;
    }
    memory.fill(blockPtr + <usize>filled, 0, <usize>(56 - filled));
    store<u64>(blockPtr + 56, bswap<u64>(bits));
    compress(h, blockPtr);
    this.filled = 0;
  }

  /** The digest, 32 bytes. The hasher must be `reset` before it is used again. */
  finish(): Uint8Array {
    this.finishState();
    const out = new Uint8Array(32);
    for (let i = 0; i < 8; i++) store<u32>(out.dataStart + (<usize>i << 2), bswap<u32>(this.state[i]));
    return out;
  }
}

/** The hasher of the one-shot functions (one call at a time: a policy runs on one thread). */
const shared = new Sha256();

/** SHA-256 of `data`: 32 bytes. */
export function sha256(data: Uint8Array): Uint8Array {
  return shared.reset().update(data).finish();
}

/**
 * SHA-256 of the UTF-8 bytes of `text`, as 64 lowercase hex digits. Key checks run it on every request: the text is
 * encoded into the SDK's scratch buffer and the digits written straight into the new string, so that the only
 * allocation is the result.
 */
export function sha256Hex(text: string): string {
  shared.reset().updateText(text).finishState();
  const h = shared.state;
  const out = changetype<string>(__new(64 << 1, idof<string>()));
  const p = changetype<usize>(out);
  for (let i = 0; i < 8; i++) {
    const word = unchecked(h[i]);
    for (let j = 0; j < 8; j++) {
      store<u16>(p + (<usize>((i << 3) + j) << 1), hexDigit(<u8>((word >>> (28 - (j << 2))) & 15)));
    }
  }
  return out;
}

/**
 * HMAC-SHA-256 (RFC 2104) fed in pieces: `new HmacSha256(key)`, `update` as often as needed, then `finish` once.
 */
@final
export class HmacSha256 {
  private readonly inner: Sha256 = new Sha256();
  private readonly outerPad: StaticArray<u8> = new StaticArray<u8>(64);

  constructor(key: Uint8Array) {
    const k = key.length > 64 ? sha256(key) : key;
    const pad = new StaticArray<u8>(64);
    for (let i = 0; i < 64; i++) {
      const b: u8 = i < k.length ? k[i] : 0;
      pad[i] = b ^ 0x36;
      this.outerPad[i] = b ^ 0x5c;
    }
    this.inner.updateRaw(changetype<usize>(pad), 64);
  }

  update(data: Uint8Array): HmacSha256 {
    this.inner.update(data);
    return this;
  }

  updateText(text: string): HmacSha256 {
    this.inner.updateText(text);
    return this;
  }

  /** The MAC, 32 bytes. */
  finish(): Uint8Array {
    const innerDigest = this.inner.finish();
    return shared.reset().updateRaw(changetype<usize>(this.outerPad), 64).update(innerDigest).finish();
  }
}

/** HMAC-SHA-256 of `message` under `key`: 32 bytes. */
export function hmacSha256(key: Uint8Array, message: Uint8Array): Uint8Array {
  return new HmacSha256(key).update(message).finish();
}

/** Compares in time that depends on the lengths only, not on where the first difference is. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): bool {
  if (a.length != b.length) return false;
  let diff: u32 = 0;
  for (let i = 0; i < a.length; i++) diff |= <u32>(a[i] ^ b[i]);
  return diff == 0;
}

/** Lowercase hex digits of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  const out = new Uint8Array(bytes.length << 1);
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    out[i << 1] = hexDigit(b >> 4);
    out[(i << 1) + 1] = hexDigit(b & 15);
  }
  return String.UTF8.decodeUnsafe(out.dataStart, <usize>out.length);
}

// @ts-ignore: decorator
@inline
function hexDigit(n: u8): u8 {
  return n < 10 ? 0x30 + n : 0x57 + n;
}
