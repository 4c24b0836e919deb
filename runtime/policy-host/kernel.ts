// The Extism kernel (`extism:host/env`) as the policy host answers it: every function of it, so that nothing a module
// reaches escapes the policy's limits.
//
// Extism's JS SDK implements the kernel in JavaScript with no limits of its own: `alloc` adds a block before checking
// its page limit and leaves it there when it refuses, `output_set` believes any length, and `log_*` write to the logger
// at no cost to the caller. The host therefore replaces the whole kernel (Extism links the host's functions in place
// of its own) with this one, in which:
// - blocks are ArrayBuffers that count against the policy's memory cap together with its linear memory (the host's
//   `reserve` decides), and are freed after every call (a handler has no input and its output is ignored, so nothing
//   outlives a call but Extism vars);
// - every address, offset and length is checked for sign and range; a bad one fails the call (`bad-argument`);
// - output and log lines go through the host, which counts them against the output cap and the log budget;
// - every function charges the host's CPU meter.
// Addresses are Extism JS's: the block index in the top 16 bits, the offset in the low 48.

import { CallAbort } from './errors.ts';
import { LOG_LEVELS, type LogLevel } from '../../abi/index.ts';

/** What the kernel needs of the instance it serves. */
export interface KernelHost {
  readonly policy: string;
  /** Throws CallAbort('memory-cap') when `bytes` more would take the module past its memory cap. */
  reserve(bytes: number): void;
  /**
   * The largest block `alloc` gives: what one call may hand the host (its output cap, 1 MiB at least), since a block
   * is only of use to hand bytes over. Allocating a large zeroed buffer costs milliseconds (8 MiB: 4 ms here); this
   * bounds what one alloc costs.
   */
  readonly maxBlockBytes: number;
  /** Counts bytes handed to the host against the output cap (throws CallAbort('output-cap')). */
  output(bytes: number): void;
  /** Charges the CPU meter (throws CallAbort('cpu-budget') when the call's budget is spent). */
  work(units: number): void;
  /** A log line of the module's (the host counts it and may refuse it). */
  log(level: LogLevel, text: Uint8Array): void;
  /** `error_set`: the call fails with this message. */
  fail(message: string): void;
  /** A configuration value for `config_get`, or undefined. */
  config(key: string): string | undefined;
  /** The call read or changed what outlives it (Extism's variables): it is not replayed (replay.ts). */
  stopReplay(): void;
  /** The Extism priority of the least severe level the gateway writes (0 trace ... 4 error). */
  readonly logPriority: number;
}

/** Extism JS addresses: block index << 48 | offset. */
const INDEX_SHIFT = 48n;
const OFFSET_MASK = (1n << INDEX_SHIFT) - 1n;
/** Indexes from 32768 on make negative i64 addresses, which PDKs read as errors. */
export const MAX_KERNEL_BLOCKS = 32_767;
/** What a block costs the host beyond its bytes (the objects that hold it): counted against the memory cap. */
export const BLOCK_OVERHEAD_BYTES = 64;
/** Extism vars outlive calls (they live as long as the instance); their bytes, keys included, are capped. */
export const MAX_VAR_BYTES = 64 * 1024;
/** At most this many bytes of freed blocks are kept for reuse within a call. */
const MAX_FREED_BYTES = 4 * 1024 * 1024;
/** The longest `error_set` message kept. */
const MAX_ERROR_CHARS = 4096;

const decoder = new TextDecoder();
const encoder = new TextEncoder();

type KernelFunction = (...args: bigint[]) => unknown;

export class ExtismKernel {
  /** Index 0 is never a block: address 0 means "none" to every PDK. */
  private blocks: (DataView | null)[] = [null];
  /** Bytes the live blocks hold, overhead included. */
  private blockBytes = 0;
  private readonly vars = new Map<string, Uint8Array>();
  private varBytes = 0;
  /**
   * Freed blocks kept for an allocation of the same size in the same call (zeroed again first). A freed block is
   * garbage until the collector runs, and a loop allocating and freeing would otherwise pile up garbage far past the
   * memory cap before it does (60 MiB under a 16 MiB cap, found by npm run fuzz:abi).
   */
  private freed = new Map<number, DataView[]>();
  private freedBytes = 0;
  /** The last `output_set` of the call, for the descriptor export (handlers' output is counted and ignored). */
  private lastOutput: { view: DataView; length: number } | null = null;

  constructor(private readonly host: KernelHost) {}

  /** Bytes the kernel holds for the module now: live blocks and vars. */
  held(): number {
    return this.blockBytes + this.varBytes;
  }

  /** Frees what a call allocated. Called after every call. */
  endCall(): void {
    if (this.blocks.length > 1) this.blocks = [null];
    this.blockBytes = 0;
    this.lastOutput = null;
    if (this.freedBytes > 0) {
      this.freed = new Map();
      this.freedBytes = 0;
    }
  }

  /** A copy of the bytes the call last set as its output, or null. */
  output(): Uint8Array | null {
    const out = this.lastOutput;
    if (!out) return null;
    return new Uint8Array(out.view.buffer, out.view.byteOffset, out.length).slice();
  }

  /** The import object for `extism:host/env`: every function of KERNEL_FUNCTIONS (abi.ts). */
  functions(): Record<string, KernelFunction> {
    const host = this.host;
    const log = (level: LogLevel) => (addr: bigint) => {
      const view = this.block(addr, 'log');
      host.output(view.byteLength);
      host.work(1 + (view.byteLength >> 8));
      host.log(level, bytesOf(view, view.byteLength));
      this.free(addr);
    };
    const noInput = (what: string) => () => {
      throw new CallAbort('bad-argument', `${what}: a policy handler has no input (input_length is 0)`);
    };
    const fns: Record<string, KernelFunction> = {
      alloc: (n) => this.alloc(n),
      free: (addr) => {
        host.work(1);
        this.free(addr);
      },
      length: (addr) => this.length(addr),
      length_unsafe: (addr) => this.length(addr),
      load_u8: (addr) => {
        host.work(1);
        const [view, offset] = this.at(addr, 1, 'load_u8');
        return view.getUint8(offset);
      },
      load_u64: (addr) => {
        host.work(1);
        const [view, offset] = this.at(addr, 8, 'load_u64');
        return view.getBigUint64(offset, true);
      },
      store_u8: (addr, value) => {
        host.work(1);
        const [view, offset] = this.at(addr, 1, 'store_u8');
        view.setUint8(offset, Number(value) & 0xff);
      },
      store_u64: (addr, value) => {
        host.work(1);
        const [view, offset] = this.at(addr, 8, 'store_u64');
        view.setBigUint64(offset, BigInt.asUintN(64, value), true);
      },
      input_offset: () => 0n,
      input_length: () => 0n,
      input_load_u8: noInput('input_load_u8'),
      input_load_u64: noInput('input_load_u64'),
      output_set: (addr, length) => {
        const view = this.block(addr, 'output_set');
        if (length < 0n || length > BigInt(view.byteLength)) {
          throw new CallAbort('bad-argument', `output_set: length ${length} is outside its block of ${view.byteLength} bytes`);
        }
        host.output(Number(length));
        host.work(1);
        this.lastOutput = { view, length: Number(length) };
      },
      error_set: (addr) => {
        const view = this.block(addr, 'error_set');
        host.output(view.byteLength);
        host.work(1 + (view.byteLength >> 8));
        host.fail(decoder.decode(bytesOf(view, Math.min(view.byteLength, MAX_ERROR_CHARS * 4))).slice(0, MAX_ERROR_CHARS));
      },
      error_get: () => 0n,
      config_get: (addr) => {
        const key = this.takeString(addr, 'config_get');
        const value = host.config(key);
        return value === undefined ? 0n : this.store(encoder.encode(value));
      },
      var_get: (addr) => {
        host.stopReplay();
        const key = this.takeString(addr, 'var_get');
        const value = this.vars.get(key);
        return value === undefined ? 0n : this.store(value);
      },
      var_set: (keyAddr, valueAddr) => {
        host.stopReplay();
        return this.setVar(keyAddr, valueAddr);
      },
      http_request: () => {
        throw new CallAbort('capability', `policy ${host.policy} called the Extism kernel's http_request; the network is reached through the HTTP effect`);
      },
      http_status_code: () => 0,
      http_headers: () => 0n,
      get_log_level: () => host.logPriority,
    };
    for (const level of LOG_LEVELS) fns[`log_${level}`] = log(level);
    return fns;
  }

  private alloc(n: bigint): bigint {
    const host = this.host;
    if (n < 0n) throw new CallAbort('bad-argument', `alloc: negative length ${n}`);
    if (this.blocks.length > MAX_KERNEL_BLOCKS) {
      throw new CallAbort('memory-cap', `alloc: more than ${MAX_KERNEL_BLOCKS} Extism kernel blocks in one call`);
    }
    if (n > BigInt(host.maxBlockBytes)) {
      throw new CallAbort('memory-cap', `alloc: a block of ${n} bytes is larger than the ${host.maxBlockBytes} bytes a kernel block may hold (the output cap, 1 MiB at least)`);
    }
    const size = Number(n);
    host.reserve(size + BLOCK_OVERHEAD_BYTES);
    host.work(1 + (size >> 10));
    const reused = this.freed.get(size)?.pop();
    if (reused) {
      this.freedBytes -= size;
      new Uint8Array(reused.buffer).fill(0);
    }
    this.blocks.push(reused ?? new DataView(new ArrayBuffer(size)));
    this.blockBytes += size + BLOCK_OVERHEAD_BYTES;
    return BigInt(this.blocks.length - 1) << INDEX_SHIFT;
  }

  /** Extism frees quietly whatever is not a live block (0, an address freed already), and so does this kernel. */
  private free(addr: bigint): void {
    const index = indexOf(addr);
    const view = index > 0 ? this.blocks[index] : undefined;
    if (!view) return;
    this.blocks[index] = null;
    this.blockBytes -= view.byteLength + BLOCK_OVERHEAD_BYTES;
    if (this.freedBytes + view.byteLength <= MAX_FREED_BYTES && view.byteLength > 0) {
      let same = this.freed.get(view.byteLength);
      if (!same) this.freed.set(view.byteLength, (same = []));
      same.push(view);
      this.freedBytes += view.byteLength;
    }
  }

  private length(addr: bigint): bigint {
    this.host.work(1);
    const index = indexOf(addr);
    const view = index > 0 ? this.blocks[index] : undefined;
    return view ? BigInt(view.byteLength) : 0n;
  }

  /** The live block an address starts (offset 0), or a failed call. */
  private block(addr: bigint, what: string): DataView {
    const index = indexOf(addr);
    const view = index > 0 ? this.blocks[index] : undefined;
    if (!view || (addr & OFFSET_MASK) !== 0n) throw badAddress(what, addr);
    return view;
  }

  /** The block and offset of `size` bytes at `addr`, all inside one live block, or a failed call. */
  private at(addr: bigint, size: number, what: string): [DataView, number] {
    const index = indexOf(addr);
    const view = index > 0 ? this.blocks[index] : undefined;
    const offset = Number(addr & OFFSET_MASK);
    if (!view || offset + size > view.byteLength) throw badAddress(what, addr);
    return [view, offset];
  }

  /** Reads a key block as text and frees it, as Extism's config_get and var_get do. */
  private takeString(addr: bigint, what: string): string {
    const view = this.block(addr, what);
    this.host.output(view.byteLength);
    this.host.work(1 + (view.byteLength >> 8));
    const text = decoder.decode(bytesOf(view, view.byteLength));
    this.free(addr);
    return text;
  }

  /** A new block holding a copy of `bytes`. */
  private store(bytes: Uint8Array): bigint {
    const addr = this.alloc(BigInt(bytes.byteLength));
    new Uint8Array(this.blocks[this.blocks.length - 1]!.buffer).set(bytes);
    this.host.work(bytes.byteLength >> 8);
    return addr;
  }

  private setVar(keyAddr: bigint, valueAddr: bigint): void {
    const host = this.host;
    const keyView = this.block(keyAddr, 'var_set');
    host.output(keyView.byteLength);
    host.work(1 + (keyView.byteLength >> 8));
    const key = decoder.decode(bytesOf(keyView, keyView.byteLength));
    const previous = this.vars.get(key);
    const before = previous === undefined ? 0 : key.length + previous.byteLength;
    if (valueAddr === 0n) {
      this.vars.delete(key);
      this.varBytes -= before;
      return;
    }
    const view = this.block(valueAddr, 'var_set');
    host.output(view.byteLength);
    host.work(1 + (view.byteLength >> 8));
    const after = key.length + view.byteLength;
    if (this.varBytes - before + after > MAX_VAR_BYTES) {
      throw new CallAbort('memory-cap', `var_set: Extism vars would hold more than ${MAX_VAR_BYTES} bytes`);
    }
    host.reserve(Math.max(0, after - before));
    this.vars.set(key, bytesOf(view, view.byteLength).slice());
    this.varBytes += after - before;
  }
}

function indexOf(addr: bigint): number {
  // A negative address gives a negative index, which is never a block.
  return Number(addr >> INDEX_SHIFT);
}

function bytesOf(view: DataView, length: number): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, length);
}

function badAddress(what: string, addr: bigint): CallAbort {
  const hex = BigInt.asUintN(64, addr).toString(16).padStart(16, '0');
  return new CallAbort('bad-argument', `${what}: address 0x${hex} is not inside a live Extism kernel block`);
}
