// Policy modules written by hand in WebAssembly text against abi/policy-abi.md, not built by the SDK: what an author
// with another toolchain, or an attacker, can send. Every import of the Extism kernel and of gatehouse:host/v1 is
// declared, so a module body can call any of them.

import type { Grants } from '../../runtime/policy-host/index.ts';
import { makeExchange, wat, watDescriptor } from './policies.ts';

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
  /** More imports (WASI's, say). */
  imports?: string;
  /** Memory pages (default 2). */
  pages?: number;
  /** Strings placed one after the other from DATA_START; their addresses are given to `inbound` by `at()`. */
  data?: (string | Uint8Array)[];
  name?: string;
  /** The descriptor's JSON; default `{"name": <name>, "version": "1"}`. */
  descriptor?: string;
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
  const d = watDescriptor(m.descriptor ?? `{"name":"${m.name ?? 'hostile'}","version":"1"}`);
  const data = m.data ?? [];
  const placed = layout(data);
  return `(module
    ${d.imports}
    ${KERNEL_IMPORTS}
    ${HOST_IMPORTS}
    ${m.imports ?? ''}
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

/** The body of a handler that never ends by itself: `body` in a loop. */
export const forever = (body: string) => `(loop $again ${body} (br $again)) (i32.const 0)`;

/** A handler looping forever over calls of one import (or a pure loop), with what it needs to run. */
export interface ImportLoop {
  name: string;
  module: HostileModule;
  grants?: Grants;
  exchange: () => ReturnType<typeof makeExchange>;
}

const LOOP_DATA = ['x-a', 'b', '{"key":"k","limit":1000000,"periodSeconds":60}', 'm'];

/**
 * Every function a module can import, each called in a loop that never ends by itself with arguments it accepts, and
 * loops of the module's own code: what the CPU budget must stop within its margin (test/sandbox-limits.test.ts,
 * scripts/bench-budget-margin.ts).
 */
export const IMPORT_LOOPS: ImportLoop[] = (() => {
  const [name, value, counter, metric] = layout(LOOP_DATA);
  const calls: [string, string, { locals?: string; grants?: Grants; extra?: string; imports?: string; prelude?: string; pages?: number }?][] = [
    ['nothing (a pure loop)', '(nop)'],
    ['a 40,000-instruction function', '(call $long)', { extra: `(func $long (local $x i32) ${'(local.set $x (i32.add (local.get $x) (i32.const 1)))'.repeat(40_000)})` }],
    ['memory.fill of 64 KiB', `(memory.fill (i32.const ${SCRATCH}) (i32.const 0) (i32.const 65536))`],
    ['memory.fill of 16 MiB of fresh pages', '(memory.fill (i32.const 0) (i32.const 7) (i32.const 16646144))', { prelude: '(drop (memory.grow (i32.const 254)))' }],
    [
      'a store a page over 16 MiB of fresh pages',
      '(i32.store8 (local.get $p) (i32.const 1)) (local.set $p (i32.rem_u (i32.add (local.get $p) (i32.const 4096)) (i32.const 16646144)))',
      { prelude: '(drop (memory.grow (i32.const 254)))', locals: '(local $p i32)' },
    ],
    ['get with a 16 MiB name', '(drop (call $get (i32.const 15) (i32.const 0) (i32.const 16646144) (i32.const 256) (i32.const 0)))', { pages: 256 }],
    [
      'WASI random_get of 16 MiB',
      '(drop (call $random_get (i32.const 0) (i32.const 16646144)))',
      { pages: 256, grants: { wasi: true }, imports: '(import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))' },
    ],
    ['get', `(drop (call $get (i32.const 5) (i32.const ${name!.ptr}) (i32.const 3) (i32.const ${SCRATCH}) (i32.const 64)))`],
    ['set', `(drop (call $set (i32.const 5) (i32.const ${name!.ptr}) (i32.const 3) (i32.const ${value!.ptr}) (i32.const 1)))`],
    ['add', `(drop (call $add (i32.const 9) (i32.const ${name!.ptr}) (i32.const 3) (i32.const ${value!.ptr}) (i32.const 1)))`],
    ['remove', `(drop (call $remove (i32.const 5) (i32.const ${name!.ptr}) (i32.const 3)))`],
    ['list', `(drop (call $list (i32.const 5) (i32.const ${SCRATCH}) (i32.const 0)))`],
    ['respond', '(drop (call $respond (i32.const 200)))'],
    ['effect', `(drop (call $effect (i32.const 1) (i32.const ${counter!.ptr}) (i32.const ${counter!.len}) (i32.const ${SCRATCH}) (i32.const 256)))`, { grants: { counters: true } }],
    ['log', `(call $log (i32.const 0) (i32.const ${name!.ptr}) (i32.const 3))`],
    ['now', '(drop (call $now))'],
    ['fail', `(call $fail (i32.const ${name!.ptr}) (i32.const 3))`],
    ['metric', `(drop (call $metric (i32.const ${metric!.ptr}) (i32.const 1) (f64.const 1) (i32.const 0) (i32.const 0)))`],
    ['kernel alloc+free', '(call $free (call $alloc (i64.const 65536)))'],
    ['kernel load/store', '(if (i64.eqz (local.get $h)) (then (local.set $h (call $alloc (i64.const 8))))) (call $store_u64 (local.get $h) (call $load_u64 (local.get $h))) (call $store_u8 (local.get $h) (call $load_u8 (local.get $h)))', { locals: '(local $h i64)' }],
    ['kernel length', '(drop (call $length (i64.const 281474976710656))) (drop (call $length_unsafe (i64.const 0)))'],
    ['kernel input', '(drop (call $input_length)) (drop (call $input_offset))'],
    ['kernel config_get', '(drop (call $config_get (call $alloc (i64.const 1))))'],
    ['kernel var_set/var_get', '(local.set $k (call $alloc (i64.const 1))) (call $var_set (local.get $k) (call $alloc (i64.const 64))) (drop (call $var_get (local.get $k)))', { locals: '(local $k i64)' }],
    ['kernel log_trace', '(call $log_trace (call $alloc (i64.const 16)))'],
    ['kernel output_set', '(call $output_set (call $alloc (i64.const 16)) (i64.const 16))'],
    ['kernel error_set/error_get', '(call $error_set (call $alloc (i64.const 16))) (drop (call $error_get))'],
    ['kernel http_status_code/headers, log level', '(drop (call $http_status_code)) (drop (call $http_headers)) (drop (call $get_log_level))'],
  ];
  return calls.map(([label, call, options = {}]) => ({
    name: label,
    module: {
      name: `loop-${label.replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '')}`,
      data: LOOP_DATA,
      locals: options.locals,
      extra: options.extra,
      imports: options.imports,
      pages: options.pages,
      inbound: `${options.prelude ?? ''} ${forever(call)}`,
    },
    grants: options.grants,
    exchange: () => makeExchange({ headers: { 'x-a': 'value' } }),
  }));
})();
