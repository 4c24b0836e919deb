// Text read from a module's memory: header names and values, variable names, effect requests.
//
// A policy writes the same short texts on every request (`access-control-allow-origin`, `x-consumer-id`, its key's
// counter request), and each used to become a new string: about 2 KB of the 16 KB the five-policy chain of bench:proxy
// adds to a request's heap allocation (`npm run bench:alloc`), garbage the young generation's collector then sweeps.
// Each instance keeps the short ASCII texts it decoded in a small table indexed by a hash of their length and of a few
// of their bytes (hashing every byte was half of the host's `write` in a profile of the five-policy chain); a text
// whose bytes are all the same as a kept one's is that string again, with no allocation, and reading it costs one
// pass over the bytes to compare them, less than building or decoding it. A text may sit in either of two slots, both
// picked by its hash: with one slot a text, the 80 names and values of `bench:policy`'s 60 header operations missed 41
// times a call in 128 slots (two texts sharing a slot evict each other on every call); with two choices in 256 slots,
// twice. The table is the instance's own: no policy can tell what another one wrote, and it holds at most TABLE_SLOTS
// strings of MAX_INTERNED_BYTES.

/**
 * Strings up to this length are built by appending characters; longer ones are decoded. V8 makes an appended string
 * of 13 characters or more a rope, which every later use (a map lookup, a comparison) must flatten first: a 27-byte
 * header name cost 640 ns built and looked up, against 140 ns decoded (Node 20, this machine).
 */
const APPENDED_TEXT_MAX = 12;
/** Longer texts (bodies' worth of text, long values) are decoded each time: they rarely repeat. */
const MAX_INTERNED_BYTES = 128;
/** A power of two. */
const TABLE_SLOTS = 256;

const decoder = new TextDecoder();

/** Text from memory already checked to hold `ptr`..`ptr + len` (invalid UTF-8 becomes U+FFFD, as TextDecoder does). */
export function decodeText(mem: Uint8Array, ptr: number, len: number): string {
  if (len <= APPENDED_TEXT_MAX) {
    // Short ASCII (most header names, small values): building the string directly beats TextDecoder's setup cost.
    let s = '';
    for (let i = ptr; i < ptr + len; i++) {
      const c = mem[i]!;
      if (c >= 0x80) return decoder.decode(mem.subarray(ptr, ptr + len));
      s += String.fromCharCode(c);
    }
    return s;
  }
  return decoder.decode(mem.subarray(ptr, ptr + len));
}

/** decodeText, with the short ASCII texts an instance decodes kept and handed out again (see the header). */
export class ModuleTexts {
  private readonly slots: Array<string | undefined> = new Array<string | undefined>(TABLE_SLOTS).fill(undefined);
  /** Short texts decoded anew: not held by the table, or not ASCII (what test/module-text.test.ts counts). */
  misses = 0;

  decode(mem: Uint8Array, ptr: number, len: number): string {
    if (len > MAX_INTERNED_BYTES || len === 0) return decodeText(mem, ptr, len);
    // FNV-1a over the length and seven bytes: both ends, where names and counters differ, and three inside. Texts that
    // agree there share their two slots; the comparison below reads every byte, so they are never confused.
    const last = ptr + len - 1;
    let hash = Math.imul(0x811c9dc5 ^ len, 0x01000193);
    hash = Math.imul(hash ^ mem[ptr]!, 0x01000193);
    hash = Math.imul(hash ^ mem[ptr + (len >> 2)]!, 0x01000193);
    hash = Math.imul(hash ^ mem[ptr + (len >> 1)]!, 0x01000193);
    hash = Math.imul(hash ^ mem[last - (len >> 2)]!, 0x01000193);
    hash = Math.imul(hash ^ mem[last - 2 < ptr ? ptr : last - 2]!, 0x01000193);
    hash = Math.imul(hash ^ mem[last - 1 < ptr ? ptr : last - 1]!, 0x01000193);
    hash = Math.imul(hash ^ mem[last]!, 0x01000193);
    const slots = this.slots;
    const first = (hash ^ (hash >>> 15)) & (TABLE_SLOTS - 1);
    const kept = slots[first];
    if (kept !== undefined && kept.length === len && sameAscii(kept, mem, ptr)) return kept;
    const second = ((hash >>> 16) ^ (hash >>> 5)) & (TABLE_SLOTS - 1);
    const other = slots[second];
    if (other !== undefined && other.length === len && sameAscii(other, mem, ptr)) return other;
    this.misses++;
    const text = decodeText(mem, ptr, len);
    // Only texts of one character a byte, ASCII, are kept: a kept text is equal to bytes only if each of its characters
    // is the code of the byte in its place.
    if (text.length === len && isAscii(text)) slots[kept === undefined || other !== undefined ? first : second] = text;
    return text;
  }
}

function isAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) >= 0x80) return false;
  return true;
}

function sameAscii(text: string, mem: Uint8Array, ptr: number): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) !== mem[ptr + i]) return false;
  return true;
}
