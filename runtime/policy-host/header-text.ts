// What makes a text a header name or value a policy may write: the checks of abi/policy-abi.md, section 4.1 (names are
// tokens, the exchange keys them in lower case, framing headers are the proxy's; values carry no CR, LF or NUL), and
// what they found about a text, kept by a module's table of texts (module-text.ts) so that a name or value a policy
// writes on every call is not scanned again on every call.

const TOKEN_CHARS = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") {
  TOKEN_CHARS[c.charCodeAt(0)] = 1;
}

const NOT_A_TOKEN = -1;
const LOWER_CASE_TOKEN = 0;
const MIXED_CASE_TOKEN = 1;

/**
 * Whether `s` is an HTTP token (RFC 9110: header names and methods), and whether it has an upper-case letter: one
 * pass, a table lookup a character; this runs on every header a policy sets.
 */
function tokenCase(s: string): number {
  if (s.length === 0) return NOT_A_TOKEN;
  let found = LOWER_CASE_TOKEN;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || TOKEN_CHARS[c] === 0) return NOT_A_TOKEN;
    if (c <= 0x5a && c >= 0x41) found = MIXED_CASE_TOKEN;
  }
  return found;
}

export function isToken(s: string): boolean {
  return tokenCase(s) !== NOT_A_TOKEN;
}

/**
 * A header name as the exchange keys it (lower case): the name itself when it has no upper-case letter, which is how
 * policies write them; toLowerCase, a call into the runtime that makes a new string, only for one that has. Null when
 * it is not a token.
 */
export function headerKey(name: string): string | null {
  const found = tokenCase(name);
  if (found === NOT_A_TOKEN) return null;
  return found === MIXED_CASE_TOKEN ? name.toLowerCase() : name;
}

/**
 * A name to look a header up by: lower-cased as headerKey does, any text (one that is not a token is not found). A
 * name whose class (classifyHeaderText) says it is a key already is taken as it is, unscanned.
 */
export function lookupKey(name: string, nameClass = 0): string {
  if ((nameClass & HEADER_KEY) !== 0) return name;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if ((c <= 0x5a && c >= 0x41) || c >= 128) return name.toLowerCase();
  }
  return name;
}

/**
 * A header value HTTP can carry (RFC 9110 field-value): tab, visible ASCII, space, and bytes 0x80-0xFF (header values
 * are bytes; text read from one comes back as the same bytes). CR, LF and NUL would let a value smuggle another header
 * or end the header block; other control characters, and characters above U+00FF that no byte stands for, would make
 * the HTTP server refuse the whole response head after the policy succeeded (Node cuts the connection).
 */
export function isSafeValue(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 ? c !== 0x09 : c === 0x7f || c > 0xff) return false;
  }
  return true;
}
/** Framing headers are the proxy's business: a policy that could set them could desynchronise the connection. */
export const FRAMING = new Set(['content-length', 'transfer-encoding', 'connection', 'upgrade', 'te', 'trailer']);

/** A header name as the exchange keys it, as it is: a token with no upper-case letter (headerKey gives it back). */
export const HEADER_KEY = 1;
/** With HEADER_KEY: one of the FRAMING headers. */
export const FRAMING_NAME = 2;
/** A header value HTTP can carry (isSafeValue). */
export const SAFE_VALUE = 4;

/**
 * What the checks above find about `text`, as bits: HEADER_KEY, FRAMING_NAME, SAFE_VALUE. A bit that is not set says
 * nothing: whoever is handed the text checks it as if no class came with it.
 */
export function classifyHeaderText(text: string): number {
  let found = isSafeValue(text) ? SAFE_VALUE : 0;
  if (tokenCase(text) === LOWER_CASE_TOKEN) found |= FRAMING.has(text) ? HEADER_KEY | FRAMING_NAME : HEADER_KEY;
  return found;
}
