// Just enough of the WebAssembly binary format to read and rewrite a module's memory limits.
// (binaryen could do it too, but resetting a memory there means re-supplying every data segment.)

const MEMORY_SECTION = 5;

export interface MemoryLimits {
  /** Pages of 64 KiB. */
  initial: number;
  maximum: number | null;
}

function readLeb(bytes: Uint8Array, at: number): [value: number, next: number] {
  let value = 0;
  let shift = 0;
  let pos = at;
  for (;;) {
    if (pos >= bytes.length) throw new Error('truncated LEB128');
    const byte = bytes[pos++]!;
    value += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return [value, pos];
    shift += 7;
    if (shift > 49) throw new Error('LEB128 too long');
  }
}

function writeLeb(value: number): number[] {
  const out: number[] = [];
  let v = value;
  do {
    let byte = v % 128;
    v = Math.floor(v / 128);
    if (v > 0) byte |= 0x80;
    out.push(byte);
  } while (v > 0);
  return out;
}

interface Section {
  id: number;
  start: number; // offset of the id byte
  contentStart: number;
  end: number;
}

function sections(bytes: Uint8Array): Section[] {
  const out: Section[] = [];
  let pos = 8; // magic + version
  while (pos < bytes.length) {
    const start = pos;
    const id = bytes[pos++]!;
    const [size, contentStart] = readLeb(bytes, pos);
    const end = contentStart + size;
    if (end > bytes.length) throw new Error(`section ${id} runs past the end of the module`);
    out.push({ id, start, contentStart, end });
    pos = end;
  }
  return out;
}

/** The limits of the module's own (defined) memory, or null when it defines none. */
export function readMemoryLimits(bytes: Uint8Array): MemoryLimits | null {
  const section = sections(bytes).find((s) => s.id === MEMORY_SECTION);
  if (!section) return null;
  let pos = section.contentStart;
  const [count, afterCount] = readLeb(bytes, pos);
  if (count === 0) return null;
  pos = afterCount;
  const flags = bytes[pos++]!;
  const [initial, afterInitial] = readLeb(bytes, pos);
  if ((flags & 1) === 0) return { initial, maximum: null };
  const [maximum] = readLeb(bytes, afterInitial);
  return { initial, maximum };
}

/** Returns a copy of the module whose single defined memory has the given limits. */
export function writeMemoryLimits(
  bytes: Uint8Array,
  limits: { initial: number; maximum: number },
): Uint8Array<ArrayBuffer> {
  const section = sections(bytes).find((s) => s.id === MEMORY_SECTION);
  if (!section) throw new Error('module defines no memory');
  const [count] = readLeb(bytes, section.contentStart);
  if (count !== 1) throw new Error(`module defines ${count} memories; exactly one is supported`);
  // [count = 1][flags = 1: has a maximum][initial][maximum]
  const content = [...writeLeb(1), 0x01, ...writeLeb(limits.initial), ...writeLeb(limits.maximum)];
  const header = [MEMORY_SECTION, ...writeLeb(content.length)];
  const out = new Uint8Array(section.start + header.length + content.length + (bytes.length - section.end));
  out.set(bytes.subarray(0, section.start), 0);
  out.set(header, section.start);
  out.set(content, section.start + header.length);
  out.set(bytes.subarray(section.end), section.start + header.length + content.length);
  return out;
}
