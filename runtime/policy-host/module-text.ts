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
// strings of MAX_INTERNED_BYTES, with a copy of their bytes (32 KiB an instance) that a text is compared with a word at
// a time: `bench:policy`'s 60 header operations took 5% less than comparing character by character, the rate limit's
// call (a counter request of 70 bytes) 4% less.
// A kept text also keeps what the exchange's checks of header names and values find of it (header-text.ts), asked for
// the first time it is used as one: a policy that writes the same header on every call has it checked once.

import { classifyHeaderText } from './header-text.ts';

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

/** A kept text not classified yet (classifyHeaderText uses the low three bits). */
const UNCLASSIFIED = 0x80;

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
  /** The bytes of each kept text, MAX_INTERNED_BYTES a slot, compared with a text four bytes at a time. */
  private readonly kept = new DataView(new ArrayBuffer(TABLE_SLOTS * MAX_INTERNED_BYTES));
  private readonly keptBytes = new Uint8Array(this.kept.buffer);
  /** The memory last read, and a view of it that reads four bytes at once (made again when the memory is). */
  private memory: Uint8Array | null = null;
  private words: DataView = new DataView(new ArrayBuffer(0));
  /** What classifyHeaderText found of each kept text, or UNCLASSIFIED. */
  private readonly classes = new Uint8Array(TABLE_SLOTS).fill(UNCLASSIFIED);
  /** The slot of the text the last decode gave, or -1 when that text is not kept. */
  private lastSlot = -1;
  /** Short texts decoded anew: not held by the table, or not ASCII (what test/module-text.test.ts counts). */
  misses = 0;

  /**
   * What classifyHeaderText finds of the text the last decode gave, when the table keeps it (found once a text);
   * 0, which says nothing, for a text it does not keep.
   */
  lastClass(): number {
    const slot = this.lastSlot;
    if (slot < 0) return 0;
    let found = this.classes[slot]!;
    if (found === UNCLASSIFIED) found = this.classes[slot] = classifyHeaderText(this.slots[slot]!);
    return found;
  }

  decode(mem: Uint8Array, ptr: number, len: number): string {
    this.lastSlot = -1;
    if (len > MAX_INTERNED_BYTES || len === 0) return decodeText(mem, ptr, len);
    if (mem !== this.memory) {
      this.memory = mem;
      this.words = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
    }
    const words = this.words;
    // A hash of the length and of three words: both ends, where names and counters differ, and the middle (the bytes
    // themselves for texts under four). Texts that agree there share their two slots; the comparison below reads every
    // byte, so they are never confused.
    let hash: number;
    if (len >= 4) {
      hash = Math.imul(0x811c9dc5 ^ len, 0x9e3779b1);
      hash = Math.imul(hash ^ words.getInt32(ptr, true), 0x9e3779b1);
      hash = Math.imul(hash ^ words.getInt32(ptr + ((len - 4) >> 1), true), 0x9e3779b1);
      hash = Math.imul(hash ^ words.getInt32(ptr + len - 4, true), 0x9e3779b1);
    } else {
      hash = Math.imul(0x811c9dc5 ^ len ^ (mem[ptr]! << 8) ^ (mem[ptr + (len >> 1)]! << 16) ^ (mem[ptr + len - 1]! << 24), 0x9e3779b1);
    }
    // MurmurHash3's finaliser: a word's high byte (the last character of a name ending in a digit) moves only the
    // product's high bits, and the slots are taken from the low ones.
    hash = Math.imul(hash ^ (hash >>> 16), 0x85ebca6b);
    hash = Math.imul(hash ^ (hash >>> 13), 0xc2b2ae35);
    hash ^= hash >>> 16;
    const slots = this.slots;
    const first = hash & (TABLE_SLOTS - 1);
    const kept = slots[first];
    if (kept !== undefined && kept.length === len && this.holds(first, words, ptr, len)) {
      this.lastSlot = first;
      return kept;
    }
    const second = (hash >>> 8) & (TABLE_SLOTS - 1);
    const other = slots[second];
    if (other !== undefined && other.length === len && this.holds(second, words, ptr, len)) {
      this.lastSlot = second;
      return other;
    }
    this.misses++;
    const text = decodeText(mem, ptr, len);
    // Only texts of one character a byte, ASCII, are kept: a kept text is equal to bytes only if each of its characters
    // is the code of the byte in its place.
    if (text.length === len && isAscii(text)) {
      const slot = kept === undefined || other !== undefined ? first : second;
      slots[slot] = text;
      this.classes[slot] = UNCLASSIFIED;
      this.lastSlot = slot;
      // Copied byte by byte: a subarray to copy from cost more than the copy (a miss a call: the rate limit's count).
      const keptBytes = this.keptBytes;
      const base = slot * MAX_INTERNED_BYTES;
      for (let i = 0; i < len; i++) keptBytes[base + i] = mem[ptr + i]!;
    }
    return text;
  }

  /** Whether the `len` bytes at `ptr` are those kept for `slot` (whose text is `len` long). */
  private holds(slot: number, words: DataView, ptr: number, len: number): boolean {
    const kept = this.kept;
    const base = slot * MAX_INTERNED_BYTES;
    if (len < 4) {
      for (let i = 0; i < len; i++) if (words.getUint8(ptr + i) !== kept.getUint8(base + i)) return false;
      return true;
    }
    // Whole words, then the last four bytes (which may overlap the last word read).
    for (let i = 0; i + 4 <= len; i += 4) if (words.getInt32(ptr + i, true) !== kept.getInt32(base + i, true)) return false;
    return words.getInt32(ptr + len - 4, true) === kept.getInt32(base + len - 4, true);
  }
}

function isAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) >= 0x80) return false;
  return true;
}
