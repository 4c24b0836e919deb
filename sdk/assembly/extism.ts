// The few Extism kernel imports (`extism:host/env`) the SDK needs: only to hand the descriptor to the host from the
// generated `gatehouse_policy_v1` export (ABI section 2). Handlers never use them.

import { encodeInto, fatal, valueBuf } from "./io";

// @ts-ignore: decorator
@external("extism:host/env", "alloc")
declare function extism_alloc(n: u64): u64;

// @ts-ignore: decorator
@external("extism:host/env", "store_u8")
declare function extism_store_u8(addr: u64, v: u8): void;

// @ts-ignore: decorator
@external("extism:host/env", "store_u64")
declare function extism_store_u64(addr: u64, v: u64): void;

// @ts-ignore: decorator
@external("extism:host/env", "output_set")
declare function extism_output_set(addr: u64, len: u64): void;

/** Sets the call's Extism output to `s` (UTF-8). */
export function outputString(s: string): void {
  let n = encodeInto(valueBuf, s);
  let src = valueBuf.ptr;
  let block = extism_alloc(<u64>n);
  if (block == 0) {
    if (n == 0) return;
    fatal("output: the host refused a block of " + n.toString() + " bytes");
  }
  let i = 0;
  for (; i + 8 <= n; i += 8) extism_store_u64(block + <u64>i, load<u64>(src + <usize>i));
  for (; i < n; i++) extism_store_u8(block + <u64>i, load<u8>(src + <usize>i));
  extism_output_set(block, <u64>n);
}
