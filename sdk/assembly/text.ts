// Text a policy writes into HTTP messages: numbers as JSON and people write them, and checks of header names and
// values before a setter would fail the call with them.

/** 2^53: above it an f64 no longer holds every integer, and its integer digits would be made up. */
const EXACT_INTEGERS: f64 = 9007199254740992;

/**
 * `n` as text, integers without a fraction: 100 gives `100` (where `f64.toString()` gives `100.0`), 1.5 gives `1.5`,
 * -0 gives `0`; NaN and the infinities give `NaN`, `Infinity` and `-Infinity`.
 */
export function formatNumber(n: f64): string {
  if (isFinite(n) && Math.trunc(n) == n && Math.abs(n) <= EXACT_INTEGERS) return (<i64>n).toString();
  return n.toString();
}

// RFC 9110 token characters: letters, digits and !#$%&'*+-.^_`|~
function isTokenChar(c: i32): bool {
  if ((c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39)) return true;
  return c == 0x21 || (c >= 0x23 && c <= 0x27) || c == 0x2a || c == 0x2b || c == 0x2d || c == 0x2e || c == 0x5e || c == 0x5f || c == 0x60 || c == 0x7c || c == 0x7e;
}

/** Whether `name` is a header name the host accepts (an RFC 9110 token: not empty, no spaces, no separators). */
export function isValidHeaderName(name: string): bool {
  if (name.length == 0) return false;
  for (let i = 0; i < name.length; i++) if (!isTokenChar(name.charCodeAt(i))) return false;
  return true;
}

/**
 * Whether `value` is a header value the host accepts: tab, space, visible ASCII and U+0080-U+00FF. CR, LF, NUL and
 * other control characters (which could smuggle a header), and characters above U+00FF, are refused: a value taken
 * from a token claim or a body can hold them.
 */
export function isValidHeaderValue(value: string): bool {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20 ? c != 0x09 : c == 0x7f || c > 0xff) return false;
  }
  return true;
}
