// find-and-replace: replaces every occurrence of a text in a body (Azure API Management's find-and-replace). In
// inbound it rewrites the request body the backend receives, in outbound the response body the client receives;
// `scope` names the body explicitly and must agree with the phase.
//
// The replacement works on the body's UTF-8 bytes rather than on a decoded string: for UTF-8 text it is the same
// (UTF-8 is self-synchronising: the bytes of a character never start inside another's), but bytes that are not
// UTF-8 pass through unchanged instead of being turned into U+FFFD, and it needs no UTF-16 copies of the body. A
// body without a match is not written back, which costs nothing more than reading it.
import { request, response, config, fail, CONTINUE } from "@gatehouse/policy-sdk";

export function on_inbound(): i32 {
  if (config.getString("scope", "request")! != "request") {
    return fail('find-and-replace: scope "response" needs the outbound phase (in inbound there is no response yet)');
  }
  if (!compressed(request.header("content-encoding"))) {
    const replaced = rewritten(request.body());
    if (replaced !== null) request.setBody(replaced);
  }
  return CONTINUE;
}

export function on_outbound(): i32 {
  if (config.getString("scope", "response")! != "response") {
    return fail('find-and-replace: scope "request" needs the inbound phase (the request has been sent)');
  }
  if (!compressed(response.header("content-encoding"))) {
    const replaced = rewritten(response.body());
    if (replaced !== null) response.setBody(replaced);
  }
  return CONTINUE;
}

/** The new body, or null to leave it alone: absent, empty, or without the text. */
function rewritten(body: Uint8Array | null): Uint8Array | null {
  if (body === null || body.length == 0) return null;
  return replaceAll(body, fromBytes(), toBytes());
}

/** A compressed body's bytes are not its text: a match there would be chance, and replacing it corruption. */
function compressed(encoding: string | null): bool {
  return encoding !== null && encoding.trim().toLowerCase() != "identity";
}

let from: Uint8Array | null = null;
let to: Uint8Array | null = null;

/** The configuration never changes for an instance: encoded once. */
function fromBytes(): Uint8Array {
  if (from === null) from = Uint8Array.wrap(String.UTF8.encode(config.getString("from")!));
  return from!;
}

function toBytes(): Uint8Array {
  if (to === null) to = Uint8Array.wrap(String.UTF8.encode(config.getString("to", "")!));
  return to!;
}

/** `body` with each occurrence of `needle` (left to right, not overlapping) replaced; null when there is none. */
function replaceAll(body: Uint8Array, needle: Uint8Array, replacement: Uint8Array): Uint8Array | null {
  // Counted first, so that the new body is allocated once, at its size.
  const count = countMatches(body, needle);
  if (count == 0) return null;
  const out = new Uint8Array(body.length + count * (replacement.length - needle.length));
  // Plain loads and stores rather than memory.copy/compare calls: matches can be dense, and every call is metered.
  const bp = body.dataStart;
  const np = needle.dataStart;
  const rp = replacement.dataStart;
  const m = needle.length;
  const r = replacement.length;
  const end = body.length - m;
  const first = load<u8>(np);
  let op = out.dataStart;
  let i = 0;
  while (i <= end) {
    if (load<u8>(bp + <usize>i) == first && matchesAt(bp + <usize>i, np, m)) {
      for (let k = 0; k < r; k++) store<u8>(op + <usize>k, load<u8>(rp + <usize>k));
      op += <usize>r;
      i += m;
    } else {
      store<u8>(op++, load<u8>(bp + <usize>i));
      i++;
    }
  }
  for (; i < body.length; i++) store<u8>(op++, load<u8>(bp + <usize>i));
  return out;
}

/** How many times `needle` occurs in `body`, left to right, not overlapping. */
function countMatches(body: Uint8Array, needle: Uint8Array): i32 {
  const bp = body.dataStart;
  const np = needle.dataStart;
  const m = needle.length;
  const end = body.length - m;
  const first = load<u8>(np);
  let count = 0;
  let i = 0;
  while (i <= end) {
    if (load<u8>(bp + <usize>i) == first && matchesAt(bp + <usize>i, np, m)) {
      count++;
      i += m;
    } else {
      i++;
    }
  }
  return count;
}

/** Whether the `m` bytes at `at` are those at `needle` (the first is already known to be equal). */
function matchesAt(at: usize, needle: usize, m: i32): bool {
  for (let k = 1; k < m; k++) {
    if (load<u8>(at + <usize>k) != load<u8>(needle + <usize>k)) return false;
  }
  return true;
}
