// Base64 (RFC 4648): the standard and URL-safe alphabets, with or without padding, as JWTs and JWKS documents use.

/** The 6-bit value of a base64 character of either alphabet, or -1. */
function sextet(c: i32): i32 {
  if (c >= 0x41 && c <= 0x5a) return c - 0x41; // A-Z
  if (c >= 0x61 && c <= 0x7a) return c - 0x61 + 26; // a-z
  if (c >= 0x30 && c <= 0x39) return c - 0x30 + 52; // 0-9
  if (c == 0x2b || c == 0x2d) return 62; // + or -
  if (c == 0x2f || c == 0x5f) return 63; // / or _
  return -1;
}

/**
 * Decodes base64 or base64url text (padding optional), or returns null when it is not valid: a character outside both
 * alphabets, a length that no encoding produces, or bits left over that are not zero.
 */
export function base64Decode(text: string): Uint8Array | null {
  let end = text.length;
  while (end > 0 && text.charCodeAt(end - 1) == 0x3d) end--; // '='
  if (text.length - end > 2) return null;
  if (end % 4 == 1) return null;
  const out = new Uint8Array((end * 3) >> 2);
  let acc: u32 = 0;
  let bits = 0;
  let o = 0;
  for (let i = 0; i < end; i++) {
    const v = sextet(text.charCodeAt(i));
    if (v < 0) return null;
    acc = (acc << 6) | <u32>v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = <u8>(acc >> bits);
    }
  }
  if ((acc & ((1 << bits) - 1)) != 0) return null;
  return out;
}

/** The UTF-8 text encoded in base64 or base64url `text`; null when not valid. */
export function base64DecodeText(text: string): string | null {
  const bytes = base64Decode(text);
  return bytes === null ? null : String.UTF8.decodeUnsafe(bytes.dataStart, <usize>bytes.length);
}

/**
 * Whether `bytes` are UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF. Decoding anything
 * else turns the bytes into U+FFFD, so a policy that converts a body should refuse it rather than send on something
 * the client never wrote.
 */
export function isUtf8(bytes: Uint8Array): bool {
  const n = bytes.length;
  let i = 0;
  while (i < n) {
    const b = bytes[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    let need = 0;
    let min: u32 = 0;
    let cp: u32 = 0;
    if (b >= 0xc2 && b <= 0xdf) { need = 1; min = 0x80; cp = b & 0x1f; }
    else if (b >= 0xe0 && b <= 0xef) { need = 2; min = 0x800; cp = b & 0x0f; }
    else if (b >= 0xf0 && b <= 0xf4) { need = 3; min = 0x10000; cp = b & 0x07; }
    else return false;
    if (i + need >= n) return false; // cut short
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k];
      if ((c & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += need + 1;
  }
  return true;
}

/** The text `bytes` encode as UTF-8, or null when they are not UTF-8 (see `isUtf8`): never U+FFFD for a bad byte. */
export function utf8Decode(bytes: Uint8Array): string | null {
  if (!isUtf8(bytes)) return null;
  return String.UTF8.decodeUnsafe(bytes.dataStart, <usize>bytes.length);
}

/** The UTF-8 bytes of `text` (a lone surrogate becomes U+FFFD, as TextEncoder writes it). */
export function utf8Encode(text: string): Uint8Array {
  return Uint8Array.wrap(String.UTF8.encode(text));
}

const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/** Base64 of `bytes` (RFC 4648 section 4, padded); with `url`, base64url without padding (section 5, as JWTs write it). */
export function base64Encode(bytes: Uint8Array, url: bool = false): string {
  const alphabet = url ? BASE64URL : BASE64;
  const n = bytes.length;
  const full = (n / 3) * 3;
  const rest = n - full;
  const outLen = (n / 3) * 4 + (rest == 0 ? 0 : url ? rest + 1 : 4);
  const out = new Uint8Array(outLen);
  let o = 0;
  for (let i = 0; i < full; i += 3) {
    const v = (<u32>bytes[i] << 16) | (<u32>bytes[i + 1] << 8) | <u32>bytes[i + 2];
    out[o++] = <u8>alphabet.charCodeAt(v >> 18);
    out[o++] = <u8>alphabet.charCodeAt((v >> 12) & 63);
    out[o++] = <u8>alphabet.charCodeAt((v >> 6) & 63);
    out[o++] = <u8>alphabet.charCodeAt(v & 63);
  }
  if (rest > 0) {
    const v = (<u32>bytes[full] << 16) | (rest == 2 ? <u32>bytes[full + 1] << 8 : 0);
    out[o++] = <u8>alphabet.charCodeAt(v >> 18);
    out[o++] = <u8>alphabet.charCodeAt((v >> 12) & 63);
    if (rest == 2) out[o++] = <u8>alphabet.charCodeAt((v >> 6) & 63);
    if (!url) {
      if (rest == 1) out[o++] = 0x3d;
      out[o++] = 0x3d;
    }
  }
  return String.UTF8.decodeUnsafe(out.dataStart, <usize>outLen);
}

/** Base64 of the UTF-8 bytes of `text` (what `btoa` does for ASCII text, for any text). */
export function base64EncodeText(text: string, url: bool = false): string {
  return base64Encode(utf8Encode(text), url);
}

/** `a` followed by `b`, in a new array (one copy of each). */
export function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  memory.copy(out.dataStart, a.dataStart, <usize>a.length);
  memory.copy(out.dataStart + <usize>a.length, b.dataStart, <usize>b.length);
  return out;
}
