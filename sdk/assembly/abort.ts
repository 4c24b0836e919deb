// The abort handler the build installs with `--use abort=...`: AssemblyScript calls it for failed assertions,
// `throw`, out-of-range array accesses and the like. It hands the message to the host's `fail` (so the message
// survives the trap, ABI section 4) and then traps. It does not allocate: an abort may come from a broken heap.

import { host_fail } from "./host";

// 7 + 200*3 + 4 + 100*3 + 2 + 2*10 = 933 bytes at most.
const abortBuf: usize = memory.data(1024, 16);

// Writes at most `maxChars` UTF-16 units of `s` as UTF-8 at `p` (3 bytes per unit at most); returns the new end.
function put(p: usize, s: string, maxChars: i32): usize {
  let n = s.length < maxChars ? s.length : maxChars;
  return p + String.UTF8.encodeUnsafe(changetype<usize>(s), n, p);
}

function putU32(p: usize, v: u32): usize {
  let digits: usize = 1;
  let t = v;
  while (t >= 10) {
    t /= 10;
    digits++;
  }
  let q = p + digits;
  do {
    store<u8>(--q, <u8>(0x30 + v % 10));
    v /= 10;
  } while (v != 0);
  return p + digits;
}

/** Reports "abort: <message> at <file>:<line>:<column>" through the host's `fail`, then traps. */
export function gatehouseAbort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  let p = abortBuf;
  p = put(p, "abort: ", 7);
  // The message and the file name are cut to 200 and 100 UTF-16 units so that everything fits the buffer.
  p = put(p, message !== null ? message : "(no message)", 200);
  p = put(p, " at ", 4);
  p = put(p, fileName !== null ? fileName : "(unknown file)", 100);
  store<u8>(p++, 0x3a);
  p = putU32(p, line);
  store<u8>(p++, 0x3a);
  p = putU32(p, column);
  host_fail(abortBuf, <i32>(p - abortBuf));
  unreachable();
}
