// Policy modules written by hand in WebAssembly text against docs/policy-abi.md, not built by the SDK: what an author
// with another toolchain, or an attacker, can send. Every import of the Extism kernel and of gatehouse:host/v1 is
// declared, so a module body can call any of them.

import { wat, watDescriptor } from './policies.ts';

/** Every kernel function but the three the descriptor already imports ($alloc, $store_u8, $output_set). */
const KERNEL_IMPORTS = `
  (import "extism:host/env" "free" (func $free (param i64)))
  (import "extism:host/env" "length" (func $length (param i64) (result i64)))
  (import "extism:host/env" "length_unsafe" (func $length_unsafe (param i64) (result i64)))
  (import "extism:host/env" "load_u8" (func $load_u8 (param i64) (result i32)))
  (import "extism:host/env" "load_u64" (func $load_u64 (param i64) (result i64)))
  (import "extism:host/env" "store_u64" (func $store_u64 (param i64 i64)))
  (import "extism:host/env" "input_offset" (func $input_offset (result i64)))
  (import "extism:host/env" "input_length" (func $input_length (result i64)))
  (import "extism:host/env" "input_load_u8" (func $input_load_u8 (param i64) (result i32)))
  (import "extism:host/env" "input_load_u64" (func $input_load_u64 (param i64) (result i64)))
  (import "extism:host/env" "error_set" (func $error_set (param i64)))
  (import "extism:host/env" "error_get" (func $error_get (result i64)))
  (import "extism:host/env" "config_get" (func $config_get (param i64) (result i64)))
  (import "extism:host/env" "var_get" (func $var_get (param i64) (result i64)))
  (import "extism:host/env" "var_set" (func $var_set (param i64 i64)))
  (import "extism:host/env" "http_request" (func $http_request (param i64 i64) (result i64)))
  (import "extism:host/env" "http_status_code" (func $http_status_code (result i32)))
  (import "extism:host/env" "http_headers" (func $http_headers (result i64)))
  (import "extism:host/env" "log_trace" (func $log_trace (param i64)))
  (import "extism:host/env" "log_debug" (func $log_debug (param i64)))
  (import "extism:host/env" "log_info" (func $log_info (param i64)))
  (import "extism:host/env" "log_warn" (func $log_warn (param i64)))
  (import "extism:host/env" "log_error" (func $log_error (param i64)))
  (import "extism:host/env" "get_log_level" (func $get_log_level (result i32)))`;

const HOST_IMPORTS = `
  (import "gatehouse:host/v1" "get" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "gatehouse:host/v1" "set" (func $set (param i32 i32 i32 i32 i32) (result i32)))
  (import "gatehouse:host/v1" "add" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "gatehouse:host/v1" "remove" (func $remove (param i32 i32 i32) (result i32)))
  (import "gatehouse:host/v1" "list" (func $list (param i32 i32 i32) (result i32)))
  (import "gatehouse:host/v1" "respond" (func $respond (param i32) (result i32)))
  (import "gatehouse:host/v1" "effect" (func $effect (param i32 i32 i32 i32 i32) (result i32)))
  (import "gatehouse:host/v1" "log" (func $log (param i32 i32 i32)))
  (import "gatehouse:host/v1" "now" (func $now (result f64)))
  (import "gatehouse:host/v1" "fail" (func $fail (param i32 i32)))
  (import "gatehouse:host/v1" "verify" (func $verify (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "gatehouse:host/v1" "metric" (func $metric (param i32 i32 f64 i32 i32) (result i32)))`;

/** Where `data` strings are placed: after the descriptor's text (at 1024) and a scratch buffer at 4096..8191. */
export const DATA_START = 8192;
export const SCRATCH = 4096;

export interface HostileModule {
  /** The body of `on_inbound` (locals declared in `locals`); it must leave an i32 on the stack. */
  inbound: string;
  locals?: string;
  /** Other module fields: functions, globals. */
  extra?: string;
  /** Memory pages (default 2). */
  pages?: number;
  /** Strings placed one after the other from DATA_START; their addresses are given to `inbound` by `at()`. */
  data?: (string | Uint8Array)[];
  name?: string;
}

/** The address and length of each `data` item, in order, for use in the module text. */
export function layout(data: (string | Uint8Array)[]): { ptr: number; len: number }[] {
  let at = DATA_START;
  return data.map((item) => {
    const len = typeof item === 'string' ? new TextEncoder().encode(item).byteLength : item.byteLength;
    const placed = { ptr: at, len };
    at += len + (8 - (len % 8 || 8));
    return placed;
  });
}

function escape(item: string | Uint8Array): string {
  const bytes = typeof item === 'string' ? new TextEncoder().encode(item) : item;
  let out = '';
  for (const b of bytes) out += `\\${b.toString(16).padStart(2, '0')}`;
  return out;
}

/** The module's text: descriptor, every import, its data and `on_inbound`. */
export function hostileText(m: HostileModule): string {
  const d = watDescriptor(`{"name":"${m.name ?? 'hostile'}","version":"1"}`);
  const data = m.data ?? [];
  const placed = layout(data);
  return `(module
    ${d.imports}
    ${KERNEL_IMPORTS}
    ${HOST_IMPORTS}
    (memory (export "memory") ${m.pages ?? 2})
    ${d.data}
    ${data.map((item, i) => `(data (i32.const ${placed[i]!.ptr}) "${escape(item)}")`).join('\n    ')}
    ${d.func}
    ${m.extra ?? ''}
    (func (export "on_inbound") (result i32) ${m.locals ?? ''}
      ${m.inbound})
  )`;
}

export function hostileModule(m: HostileModule): Promise<Uint8Array> {
  return wat(hostileText(m));
}
