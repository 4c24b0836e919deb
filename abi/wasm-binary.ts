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

// --- function signatures ------------------------------------------------------------------------------------------

const TYPE_SECTION = 1;
const IMPORT_SECTION = 2;
const FUNCTION_SECTION = 3;
const EXPORT_SECTION = 7;

const VALUE_TYPES: Record<number, string> = { 0x7f: 'i32', 0x7e: 'i64', 0x7d: 'f32', 0x7c: 'f64', 0x7b: 'v128', 0x70: 'funcref', 0x6f: 'externref' };

/** A function type written as in the ABI's tables: `(i32, i32) -> i32`, `() -> ()`. */
export type Signature = string;

export interface ImportedItem {
  module: string;
  name: string;
  kind: 'function' | 'table' | 'memory' | 'global' | 'tag';
  /** For functions. */
  signature: Signature | null;
}

export interface FunctionSignatures {
  imports: ImportedItem[];
  /** Exported functions by name. */
  exports: Map<string, Signature>;
}

class Reader {
  constructor(
    private readonly bytes: Uint8Array,
    public pos: number,
  ) {}

  byte(): number {
    if (this.pos >= this.bytes.length) throw new Error('truncated section');
    return this.bytes[this.pos++]!;
  }

  u32(): number {
    const [value, next] = readLeb(this.bytes, this.pos);
    this.pos = next;
    return value;
  }

  name(): string {
    const length = this.u32();
    const text = new TextDecoder().decode(this.bytes.subarray(this.pos, this.pos + length));
    this.pos += length;
    return text;
  }

  valueType(): string {
    const code = this.byte();
    const type = VALUE_TYPES[code];
    if (type === undefined) throw new Error(`value type 0x${code.toString(16)} is not one of WebAssembly 2.0`);
    return type;
  }

  limits(): void {
    const flags = this.byte();
    this.u32();
    if (flags & 1) this.u32();
  }
}

/**
 * The signature of every imported and exported function, read from the binary (the JS API gives names and kinds
 * only). Throws on what it cannot read: type forms past WebAssembly 2.0 (which instrumentation refuses anyway).
 */
export function functionSignatures(bytes: Uint8Array): FunctionSignatures {
  const all = sections(bytes);
  const body = (id: number) => {
    const s = all.find((x) => x.id === id);
    return s ? new Reader(bytes, s.contentStart) : null;
  };
  const types: Signature[] = [];
  const typeReader = body(TYPE_SECTION);
  if (typeReader) {
    for (let n = typeReader.u32(); n > 0; n--) {
      const form = typeReader.byte();
      if (form !== 0x60) throw new Error(`type form 0x${form.toString(16)} is not a function type of WebAssembly 2.0`);
      const params = Array.from({ length: typeReader.u32() }, () => typeReader.valueType());
      const results = Array.from({ length: typeReader.u32() }, () => typeReader.valueType());
      types.push(`(${params.join(', ')}) -> ${results.length === 1 ? results[0] : `(${results.join(', ')})`}`);
    }
  }
  const typeOf = (index: number) => {
    const t = types[index];
    if (t === undefined) throw new Error(`type index ${index} out of range`);
    return t;
  };
  const imports: ImportedItem[] = [];
  const functionTypes: Signature[] = [];
  const importReader = body(IMPORT_SECTION);
  if (importReader) {
    for (let n = importReader.u32(); n > 0; n--) {
      const module = importReader.name();
      const name = importReader.name();
      const kind = importReader.byte();
      if (kind === 0) {
        const signature = typeOf(importReader.u32());
        functionTypes.push(signature);
        imports.push({ module, name, kind: 'function', signature });
      } else if (kind === 1) {
        importReader.byte();
        importReader.limits();
        imports.push({ module, name, kind: 'table', signature: null });
      } else if (kind === 2) {
        importReader.limits();
        imports.push({ module, name, kind: 'memory', signature: null });
      } else if (kind === 3) {
        importReader.valueType();
        importReader.byte();
        imports.push({ module, name, kind: 'global', signature: null });
      } else if (kind === 4) {
        importReader.byte();
        importReader.u32();
        imports.push({ module, name, kind: 'tag', signature: null });
      } else {
        throw new Error(`import kind ${kind} is not one of WebAssembly 2.0`);
      }
    }
  }
  const functionReader = body(FUNCTION_SECTION);
  if (functionReader) for (let n = functionReader.u32(); n > 0; n--) functionTypes.push(typeOf(functionReader.u32()));
  const exports = new Map<string, Signature>();
  const exportReader = body(EXPORT_SECTION);
  if (exportReader) {
    for (let n = exportReader.u32(); n > 0; n--) {
      const name = exportReader.name();
      const kind = exportReader.byte();
      const index = exportReader.u32();
      if (kind === 0) {
        const signature = functionTypes[index];
        if (signature === undefined) throw new Error(`export ${name}: function index ${index} out of range`);
        exports.set(name, signature);
      }
    }
  }
  return { imports, exports };
}
