// Pieces of WebAssembly text the ABI fuzzer assembles modules from: the imports of every kernel and host function
// (from the ABI's own tables, so a function added there is fuzzed without touching the generator), constants written
// the way binaryen's text parser reads them, and the data the modules point their arguments at.

import { HOST_FUNCTIONS, HOST_MODULE, KERNEL_FUNCTIONS, KERNEL_MODULE } from '../../../abi/index.ts';

export type ValType = 'i32' | 'i64' | 'f64';

export interface Signature {
  params: ValType[];
  results: ValType[];
}

/** Parses the ABI's signature notation, `(i64, i32) -> ()`. */
export function parseSignature(text: string): Signature {
  const m = /^\((.*)\) -> (.*)$/.exec(text);
  if (!m) throw new Error(`unreadable signature ${text}`);
  const params = m[1]!.trim() === '' ? [] : m[1]!.split(',').map((p) => p.trim() as ValType);
  const result = m[2]!.trim();
  return { params, results: result === '()' ? [] : [result as ValType] };
}

export const KERNEL_NAMES = Object.keys(KERNEL_FUNCTIONS);
export const HOST_NAMES = Object.keys(HOST_FUNCTIONS);

/** WAT names of the imports: `$k_alloc` for the kernel's, `$h_get` for the host's. */
export const kernel = (name: string) => `$k_${name}`;
export const host = (name: string) => `$h_${name}`;

export function signatureOf(module: 'kernel' | 'host', name: string): Signature {
  const table = module === 'kernel' ? KERNEL_FUNCTIONS : HOST_FUNCTIONS;
  const text = table[name];
  if (text === undefined) throw new Error(`no ${module} function ${name}`);
  return parseSignature(text);
}

function funcType(sig: Signature): string {
  const params = sig.params.length ? ` (param ${sig.params.join(' ')})` : '';
  const results = sig.results.length ? ` (result ${sig.results.join(' ')})` : '';
  return `${params}${results}`;
}

/** Every kernel and host function, imported with the host's own signatures (a module that declares them otherwise is
 * refused at load, and the fuzzer wants its modules to load). */
export function allImports(): string {
  const lines: string[] = [];
  for (const name of KERNEL_NAMES) {
    lines.push(`  (import "${KERNEL_MODULE}" "${name}" (func ${kernel(name)}${funcType(signatureOf('kernel', name))}))`);
  }
  for (const name of HOST_NAMES) {
    lines.push(`  (import "${HOST_MODULE}" "${name}" (func ${host(name)}${funcType(signatureOf('host', name))}))`);
  }
  return lines.join('\n');
}

/** A call as a statement: results are dropped. */
export function callStmt(module: 'kernel' | 'host', name: string, args: string[]): string {
  const sig = signatureOf(module, name);
  if (args.length !== sig.params.length) throw new Error(`${name} takes ${sig.params.length} arguments, got ${args.length}`);
  const call = `(call ${module === 'kernel' ? kernel(name) : host(name)}${args.length ? ' ' + args.join(' ') : ''})`;
  return sig.results.length ? `(drop ${call})` : call;
}

export const i32 = (n: number) => `(i32.const ${n | 0})`;

/** An i64 constant as a signed decimal: binaryen's parser reads every i64 that way. */
export function i64(n: bigint | number): string {
  return `(i64.const ${BigInt.asIntN(64, BigInt(n)).toString()})`;
}

export function f64(x: number): string {
  if (Number.isNaN(x)) return '(f64.const nan)';
  if (x === Infinity) return '(f64.const inf)';
  if (x === -Infinity) return '(f64.const -inf)';
  return `(f64.const ${x.toExponential()})`;
}

/** Bytes as a WAT string literal: printable ASCII as itself, the rest escaped. */
export function watString(bytes: Uint8Array): string {
  let out = '';
  for (const b of bytes) {
    if (b >= 0x20 && b < 0x7f && b !== 0x22 && b !== 0x5c) out += String.fromCharCode(b);
    else out += `\\${b.toString(16).padStart(2, '0')}`;
  }
  return out;
}

/** Where a string of the data pool sits in every generated module's memory. */
export interface Placed {
  ptr: number;
  len: number;
}

/**
 * Lays strings out from `base`, each at an 8-byte boundary; returns where each went and the data segments. The
 * layout is a pure function of the strings, so a module's arguments and its data always agree.
 */
export function layout(base: number, strings: Record<string, string | Uint8Array>): { at: Record<string, Placed>; data: string[]; end: number } {
  const at: Record<string, Placed> = {};
  const data: string[] = [];
  let ptr = base;
  const encoder = new TextEncoder();
  for (const [key, value] of Object.entries(strings)) {
    const bytes = typeof value === 'string' ? encoder.encode(value) : value;
    at[key] = { ptr, len: bytes.length };
    if (bytes.length > 0) data.push(`  (data (i32.const ${ptr}) "${watString(bytes)}")`);
    ptr = (ptr + bytes.length + 7) & ~7;
  }
  return { at, data, end: ptr };
}
