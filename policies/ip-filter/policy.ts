// ip-filter: lets requests through, or refuses them, by the client's address (Azure API Management's ip-filter).
// `action: allow` lets only the listed addresses through; `action: forbid` refuses the listed addresses. A refused
// client gets 403 with a problem body that does not say which rules exist.
//
// Every address is handled as 128 bits, two u64 halves: the IPv4 address a.b.c.d is the IPv4-mapped IPv6 address
// ::ffff:a.b.c.d and an IPv4 range /n is /(96 + n). So an IPv4 client that a dual-stack socket reports as
// ::ffff:10.1.2.3 matches the rule 10.0.0.0/8, and one masked comparison serves both families.
//
// The schema already refuses entries that are not addresses or CIDR ranges; the parser below checks them again, with
// the same grammar, so an entry that got past the schema by mistake fails the call instead of silently matching nothing.
import { request, config, log, fail, respondProblem, CONTINUE } from "@gatehouse/policy-sdk";

const COLON: i32 = 0x3a;
const DOT: i32 = 0x2e;
const ZERO: i32 = 0x30;
/** The `ffff` of an IPv4-mapped address (::ffff:0:0/96) in the low half; the high half is all zeros. */
const IPV4_MAPPED: u64 = 0x0000ffff00000000;

// The configuration never changes for an instance: it is parsed on the first call and kept.
let loaded = false;
let configError: string | null = null;
/** action allow: a listed client passes; action forbid: a listed client is refused. */
let listedPass = true;
/** Each rule's network (address with the host bits cleared) and mask, high and low halves. */
const netHi = new Array<u64>();
const netLo = new Array<u64>();
const maskHi = new Array<u64>();
const maskLo = new Array<u64>();

// Where the parsers put what they read (AssemblyScript has no tuples: a parser writes here and returns a bool).
let parsedHi: u64 = 0;
let parsedLo: u64 = 0;
/** The prefix length, in the 128-bit space. */
let parsedPrefix: i32 = 128;
/** The eight 16-bit groups of the IPv6 address being parsed. */
const groups = new StaticArray<u32>(8);

export function on_inbound(): i32 {
  return filter();
}

export function on_backend(): i32 {
  return filter();
}

function filter(): i32 {
  if (!loaded) load();
  if (configError !== null) return fail(configError!);
  const client = request.clientAddress();
  if (!parseClient(client)) {
    // The address comes from the socket, so this is not the client's doing; refusing is the safe answer either way.
    log.warn("ip-filter: the client address is not an IP address, request refused: " + client);
    return refuse();
  }
  const pass = listedPass ? listed(parsedHi, parsedLo) : !listed(parsedHi, parsedLo);
  return pass ? CONTINUE : refuse();
}

/** 403 without the rules or the address: a refused client learns nothing about the filter. */
function refuse(): i32 {
  return respondProblem(403, "Forbidden", "the client address is not allowed");
}

function listed(hi: u64, lo: u64): bool {
  for (let i = 0; i < netHi.length; i++) {
    if ((hi & maskHi[i]) == netHi[i] && (lo & maskLo[i]) == netLo[i]) return true;
  }
  return false;
}

function load(): void {
  loaded = true;
  const action = config.getString("action", "")!;
  if (action != "allow" && action != "forbid") {
    configError = "ip-filter: action must be allow or forbid, not: " + action;
    return;
  }
  listedPass = action == "allow";
  const entries = config.getStringArray("addresses");
  if (entries.length == 0) {
    configError = "ip-filter: addresses lists no address or CIDR range";
    return;
  }
  for (let i = 0; i < entries.length; i++) {
    if (!parseRule(entries[i])) {
      configError = "ip-filter: addresses[" + i.toString() + "] is not an IP address or CIDR range: " + entries[i];
      return;
    }
    addRule(parsedHi, parsedLo, parsedPrefix);
  }
}

/** Host bits of the address are cleared: 10.1.2.3/8 is 10.0.0.0/8, as most filters read it. */
function addRule(hi: u64, lo: u64, prefix: i32): void {
  const mh = highMask(prefix);
  const ml = lowMask(prefix);
  netHi.push(hi & mh);
  netLo.push(lo & ml);
  maskHi.push(mh);
  maskLo.push(ml);
}

/** The mask of the high 64 bits for a prefix of 0-128 bits (a shift by 64 would be a shift by 0 in WebAssembly). */
function highMask(prefix: i32): u64 {
  if (prefix <= 0) return 0;
  if (prefix >= 64) return u64.MAX_VALUE;
  return u64.MAX_VALUE << <u64>(64 - prefix);
}

function lowMask(prefix: i32): u64 {
  if (prefix <= 64) return 0;
  if (prefix >= 128) return u64.MAX_VALUE;
  return u64.MAX_VALUE << <u64>(128 - prefix);
}

// --- parsing -----------------------------------------------------------------------------------------------------

/** A rule: an address, optionally `/prefix` (0-32 for IPv4, 0-128 for IPv6). No zone: a zone names a local link. */
function parseRule(text: string): bool {
  const slash = text.indexOf("/");
  const end = slash < 0 ? text.length : slash;
  const v4 = text.indexOf(":") < 0;
  if (!parseAddress(text, 0, end)) return false;
  if (slash < 0) {
    parsedPrefix = 128;
    return true;
  }
  const bits = parseDecimal(text, slash + 1, text.length, v4 ? 32 : 128);
  if (bits < 0) return false;
  parsedPrefix = v4 ? 96 + bits : bits;
  return true;
}

/** The client's address as the socket reports it; a zone (`fe80::1%eth0`) is dropped. */
function parseClient(text: string): bool {
  const zone = text.indexOf("%");
  return parseAddress(text, 0, zone < 0 ? text.length : zone);
}

/** An IPv4 or IPv6 address in `s[start, end)`, into parsedHi/parsedLo (IPv4 as IPv4-mapped IPv6). */
function parseAddress(s: string, start: i32, end: i32): bool {
  if (end <= start) return false;
  if (!contains(s, start, end, COLON)) {
    const v4 = parseIPv4(s, start, end);
    if (v4 < 0) return false;
    parsedHi = 0;
    parsedLo = IPV4_MAPPED | <u64>v4;
    return true;
  }
  return parseIPv6(s, start, end);
}

/** Dotted decimal, exactly four parts of 0-255 without leading zeros (`010` is octal to some parsers); -1 if not. */
function parseIPv4(s: string, start: i32, end: i32): i64 {
  let value: i64 = 0;
  let i = start;
  for (let part = 0; part < 4; part++) {
    const stop = digitsEnd(s, i, end);
    const octet = parseDecimal(s, i, stop, 255);
    if (octet < 0) return -1;
    value = (value << 8) | <i64>octet;
    if (part < 3) {
      if (stop >= end || s.charCodeAt(stop) != DOT) return -1;
      i = stop + 1;
    } else if (stop != end) {
      return -1;
    }
  }
  return value;
}

/**
 * RFC 4291 text: eight groups of 1-4 hex digits, or fewer around one `::` (which stands for at least one zero group),
 * and optionally an IPv4 address as the last 32 bits (`::ffff:10.1.2.3`).
 */
function parseIPv6(s: string, start: i32, end: i32): bool {
  const gap = find2Colons(s, start, end);
  if (gap < 0) {
    if (parseGroups(s, start, end, 0, true) != 8) return false;
  } else {
    if (find2Colons(s, gap + 1, end) >= 0) return false; // a second `::` (or `:::`) is ambiguous
    const head = gap == start ? 0 : parseGroups(s, start, gap, 0, false);
    if (head < 0) return false;
    const tail = gap + 2 == end ? 0 : parseGroups(s, gap + 2, end, head, true);
    if (tail < 0 || head + tail > 7) return false;
    // The tail goes to the end; the zeros `::` stands for fill the middle.
    for (let i = tail - 1; i >= 0; i--) groups[8 - tail + i] = groups[head + i];
    for (let i = head; i < 8 - tail; i++) groups[i] = 0;
  }
  parsedHi = joinGroups(0);
  parsedLo = joinGroups(4);
  return true;
}

function joinGroups(from: i32): u64 {
  return (<u64>groups[from] << 48) | (<u64>groups[from + 1] << 32) | (<u64>groups[from + 2] << 16) | <u64>groups[from + 3];
}

/**
 * Colon-separated groups of `s[start, end)` into `groups` from index `at`; the last may be an IPv4 address (two
 * groups) when `v4Last`. Returns how many groups were written, or -1.
 */
function parseGroups(s: string, start: i32, end: i32, at: i32, v4Last: bool): i32 {
  let n = at;
  let i = start;
  while (true) {
    let stop = s.indexOf(":", i);
    if (stop < 0 || stop > end) stop = end;
    if (v4Last && stop == end && contains(s, i, end, DOT)) {
      const v4 = parseIPv4(s, i, end);
      if (v4 < 0 || n + 2 > 8) return -1;
      groups[n++] = <u32>(v4 >> 16);
      groups[n++] = <u32>(v4 & 0xffff);
    } else {
      const group = parseHexGroup(s, i, stop);
      if (group < 0 || n + 1 > 8) return -1;
      groups[n++] = <u32>group;
    }
    if (stop == end) return n - at;
    i = stop + 1;
  }
}

/** 1-4 hex digits; -1 if not. */
function parseHexGroup(s: string, start: i32, end: i32): i32 {
  const len = end - start;
  if (len < 1 || len > 4) return -1;
  let value = 0;
  for (let i = start; i < end; i++) {
    const d = hexDigit(s.charCodeAt(i));
    if (d < 0) return -1;
    value = (value << 4) | d;
  }
  return value;
}

/** A decimal number of 1-3 digits without a leading zero, at most `max`; -1 if not. */
function parseDecimal(s: string, start: i32, end: i32, max: i32): i32 {
  const len = end - start;
  if (len < 1 || len > 3) return -1;
  if (len > 1 && s.charCodeAt(start) == ZERO) return -1;
  let value = 0;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (!isDigit(c)) return -1;
    value = value * 10 + (c - ZERO);
  }
  return value <= max ? value : -1;
}

function find2Colons(s: string, start: i32, end: i32): i32 {
  for (let i = start; i + 1 < end; i++) {
    if (s.charCodeAt(i) == COLON && s.charCodeAt(i + 1) == COLON) return i;
  }
  return -1;
}

function contains(s: string, start: i32, end: i32, c: i32): bool {
  for (let i = start; i < end; i++) if (s.charCodeAt(i) == c) return true;
  return false;
}

function digitsEnd(s: string, i: i32, end: i32): i32 {
  while (i < end && isDigit(s.charCodeAt(i))) i++;
  return i;
}

function isDigit(c: i32): bool {
  return c >= 0x30 && c <= 0x39;
}

function hexDigit(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}
