// W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` and `tracestate` a request came with,
// continued when valid, replaced by a new trace when not. The gateway is one hop of the trace: it draws a span id of
// its own for each request, sends it as the parent in the `traceparent` the backend gets, and draws one more for each
// outbound call a policy makes (the HTTP effect), a child of the gateway's span.
//
// Hostile input never fails a request: a header that does not parse is ignored as the specification says (the
// request starts a new trace; a bad `tracestate` member is dropped), and what is kept of `tracestate` is bounded to
// 32 members and 512 characters whatever arrives.

import { randomFillSync } from 'node:crypto';

/** One request's place in its trace. */
export interface TraceContext {
  /** 32 lower-case hex digits, never all zeros: the caller's when it sent a valid `traceparent`, else a new one. */
  readonly traceId: string;
  /** The caller's span (the parent-id of its `traceparent`), or null when the gateway started the trace. */
  readonly parentId: string | null;
  /** The gateway's span for this request: 16 lower-case hex digits. */
  readonly spanId: string;
  /** The caller's sampled flag, carried on; a trace the gateway starts is sampled. */
  readonly sampled: boolean;
  /** The `tracestate` to pass on (valid members only, bounded), or null when there is none. */
  readonly state: string | null;
}

/** Random ids, drawn from a pool filled a few thousand bytes at a time (one read of the system's source per 256 spans). */
export class IdSource {
  private readonly pool = Buffer.alloc(4096);
  private at = this.pool.length;

  /** `bytes` random bytes as lower-case hex (at most the pool's size): 16 for a trace id (32 digits), 8 for a span id. */
  hex(bytes: number): string {
    if (this.at + bytes > this.pool.length) {
      randomFillSync(this.pool);
      this.at = 0;
    }
    const text = this.pool.toString('hex', this.at, this.at + bytes);
    this.at += bytes;
    return text;
  }
}

const ids = new IdSource();
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

/** A new span id (never all zeros: a chance of 2^-64, drawn again). */
export function newSpanId(): string {
  let id = ids.hex(8);
  while (id === ZERO_SPAN) id = ids.hex(8);
  return id;
}

function newTraceId(): string {
  let id = ids.hex(16);
  while (id === ZERO_TRACE) id = ids.hex(16);
  return id;
}

const HEX = new Uint8Array(128);
for (const c of '0123456789abcdef') HEX[c.charCodeAt(0)] = 1;

/** Whether `s[from, to)` is lower-case hex only. */
function isHex(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || HEX[c] === 0) return false;
  }
  return true;
}

/** A version-00 `traceparent` is exactly this long: `00-` trace-id `-` parent-id `-` flags. */
const TRACEPARENT_LENGTH = 55;
/** Longer values are refused before any parsing (a later version may add fields, not kilobytes). */
const MAX_TRACEPARENT_LENGTH = 256;

/**
 * The trace, parent and flags of a `traceparent` value, or null when it is not valid: version 00 exactly as
 * specified; a later version (not `ff`) read as far as version 00 goes, when what follows starts with `-` (the
 * specification's rule for versions this parser does not know). Trace and parent ids may not be all zeros.
 */
export function parseTraceparent(value: string): { traceId: string; parentId: string; sampled: boolean } | null {
  const length = value.length;
  if (length < TRACEPARENT_LENGTH || length > MAX_TRACEPARENT_LENGTH) return null;
  if (!isHex(value, 0, 2) || value.charCodeAt(2) !== 45 || value.charCodeAt(35) !== 45 || value.charCodeAt(52) !== 45) return null;
  const v0 = value.charCodeAt(0);
  const v1 = value.charCodeAt(1);
  // 102: "f". Version ff is invalid; 00 has exactly four fields; a later version's fifth field follows a dash.
  if (v0 === 102 && v1 === 102) return null;
  if (v0 === 48 && v1 === 48 ? length !== TRACEPARENT_LENGTH : length > TRACEPARENT_LENGTH && value.charCodeAt(TRACEPARENT_LENGTH) !== 45) return null;
  if (!isHex(value, 3, 35) || !isHex(value, 36, 52) || !isHex(value, 53, 55)) return null;
  const traceId = value.slice(3, 35);
  const parentId = value.slice(36, 52);
  if (traceId === ZERO_TRACE || parentId === ZERO_SPAN) return null;
  // The sampled flag is the low bit of the flags' second hex digit (lower case, checked above).
  const digit = value.charCodeAt(54);
  return { traceId, parentId, sampled: ((digit <= 57 ? digit - 48 : digit - 87) & 1) === 1 };
}

/** Members a `tracestate` keeps at most, and the characters it keeps at most (commas included), as the specification sets. */
export const MAX_TRACESTATE_MEMBERS = 32;
export const MAX_TRACESTATE_LENGTH = 512;
/**
 * Past this many characters of `tracestate`, or this many members looked at (valid or not), nothing more is read: a
 * hostile header costs no more than that to parse. Members that far in would be cut by the 512-character bound anyway.
 */
const MAX_TRACESTATE_READ = 4096;
const MAX_TRACESTATE_EXAMINED = 128;
/** When the members are too long together, those longer than this go first (the specification's order). */
const LONG_MEMBER = 128;

// A list member: key = simple-key / tenant-id "@" system-id (lower-case letters, digits, _ - * /), "=", then a value of
// printable ASCII but "," and "=", not ending in a space, at most 256 characters. One expression for the whole member.
const MEMBER =
  /^(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;

/**
 * The `tracestate` to pass on from the values a request carried (several headers are one list), or null when none is
 * left: empty members skipped, invalid ones and repeated keys dropped (the first of a key kept), at most 32 members,
 * and past 512 characters members longer than 128 removed first, then members from the end. A single value that
 * needs none of that is passed on as it came.
 */
export function parseTracestate(values: readonly string[]): string | null {
  const members: string[] = [];
  const keys: string[] = [];
  let read = 0;
  let examined = 0;
  let unchanged = values.length === 1;
  for (const value of values) {
    read += value.length + 1;
    if (read > MAX_TRACESTATE_READ) {
      unchanged = false;
      break;
    }
    for (const raw of value.split(',', MAX_TRACESTATE_EXAMINED - examined)) {
      examined++;
      const member = raw.trim();
      if (member !== raw) unchanged = false;
      if (member === '' || !MEMBER.test(member)) {
        unchanged = false;
        continue;
      }
      const key = member.slice(0, member.indexOf('='));
      if (keys.includes(key)) {
        unchanged = false;
        continue;
      }
      keys.push(key);
      members.push(member);
      if (members.length === MAX_TRACESTATE_MEMBERS) break;
    }
    if (members.length === MAX_TRACESTATE_MEMBERS || examined >= MAX_TRACESTATE_EXAMINED) {
      unchanged = false;
      break;
    }
  }
  if (members.length === 0) return null;
  if (unchanged && values[0]!.length <= MAX_TRACESTATE_LENGTH && joinedLength(members) === values[0]!.length) return values[0]!;
  let kept = members;
  if (joinedLength(kept) > MAX_TRACESTATE_LENGTH) {
    kept = kept.filter((m) => m.length <= LONG_MEMBER);
    while (joinedLength(kept) > MAX_TRACESTATE_LENGTH) kept.pop();
  }
  return kept.length === 0 ? null : kept.join(',');
}

function joinedLength(members: readonly string[]): number {
  let n = members.length - 1;
  for (const m of members) n += m.length;
  return n;
}

/**
 * The trace a request belongs to, from its `traceparent` and `tracestate` values (as many as it sent): continued when
 * there is exactly one valid `traceparent`, else a new trace (and no `tracestate`, which means nothing without its
 * parent). Either way the gateway's span is new.
 */
export function traceContextOf(traceparent: readonly string[] | undefined, tracestate: readonly string[] | undefined): TraceContext {
  const parent = traceparent?.length === 1 ? parseTraceparent(traceparent[0]!) : null;
  if (parent === null) return { traceId: newTraceId(), parentId: null, spanId: newSpanId(), sampled: true, state: null };
  return {
    traceId: parent.traceId,
    parentId: parent.parentId,
    spanId: newSpanId(),
    sampled: parent.sampled,
    state: tracestate ? parseTracestate(tracestate) : null,
  };
}

/** The `traceparent` the next hop gets: version 00, the trace's id, `spanId` as its parent (the gateway's span by default). */
export function traceparentOf(trace: TraceContext, spanId: string = trace.spanId): string {
  return `00-${trace.traceId}-${spanId}-${trace.sampled ? '01' : '00'}`;
}
