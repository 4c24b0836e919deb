// WASI (preview 1) for policies granted it: the platform's implementation (node:wasi, which Deno provides too) with
// no environment, no arguments, standard streams on /dev/null and only the granted directories, every function of it
// charged to the call's CPU meter like the host's own.
//
// A WASI function is a host function like any other: a module calling `random_get` for 16 MiB in a loop, or reading
// a large granted file again and again, does work the module's fuel never sees. So each function charges one unit
// before it runs and a whole check interval after it (the deadline is checked after every WASI call, which costs
// about 50 ns beside the microseconds of a system call); a transfer is charged for its bytes before it starts, with
// at most IOV_MAX buffers as POSIX allows, and `random_get` is served in chunks with the deadline checked between
// them. No single WASI call outlasts the budget by more than the time to move one chunk or one transfer.

import { closeSync, openSync } from 'node:fs';
import { devNull } from 'node:os';
import { WASI } from 'node:wasi';

/** What a WASI function charges: `units` of host work (see PolicyInstance.work). */
export interface WasiMeter {
  work(units: number): void;
  /** The module's memory as it is now (it may have grown since the last call). */
  memory(): Uint8Array;
}

/** POSIX's IOV_MAX: more buffers in one transfer are refused with EINVAL, as the system would. */
const IOV_MAX = 1024;
/** `random_get` is served this many bytes at a time, with the deadline checked between. */
const RANDOM_CHUNK_BYTES = 64 * 1024;
/** A check interval of host work (instance.ts, HOST_WORK_PER_CHECK): charged after every WASI call. */
const AFTER_CALL_UNITS = 256;
const ERRNO_FAULT = 21;
const ERRNO_INVAL = 28;
const TRANSFERS = new Set(['fd_read', 'fd_write', 'fd_pread', 'fd_pwrite']);
/** WASI fds 0-2 are the host's /dev/null descriptors: a module may not close or renumber them. */
const STDIO_FDS = 3;
const ERRNO_NOTSUP = 58;

/** Closes the /dev/null descriptors of a WASI context that was dropped without close() (a binding replaced). */
const unclosed = new FinalizationRegistry<number[]>((fds) => closeAll(fds));

function closeAll(fds: number[]): void {
  for (const fd of fds.splice(0)) {
    try {
      closeSync(fd);
    } catch {
      // Already closed: nothing to give back.
    }
  }
}

type WasiFunction = (...args: (number | bigint)[]) => number;

export class PolicyWasi {
  readonly imports: Record<string, WasiFunction>;
  private readonly context: WASI;
  private readonly fds: number[];

  constructor(preopens: Record<string, string>, meter: WasiMeter) {
    this.fds = [openSync(devNull, 'r'), openSync(devNull, 'w')];
    this.context = new WASI({
      version: 'preview1',
      preopens,
      stdin: this.fds[0],
      stdout: this.fds[1],
      stderr: this.fds[1],
      returnOnExit: true,
    });
    const own = this.context.wasiImport as Record<string, WasiFunction>;
    this.imports = {};
    for (const [name, fn] of Object.entries(own)) {
      if (name === 'random_get') this.imports[name] = randomGet(fn, meter);
      else if (TRANSFERS.has(name)) this.imports[name] = transfer(fn, meter);
      else if (name === 'fd_close' || name === 'fd_renumber') this.imports[name] = sparingStdio(fn, meter);
      else {
        this.imports[name] = (...args) => {
          meter.work(1);
          const result = fn(...args);
          meter.work(AFTER_CALL_UNITS);
          return result;
        };
      }
    }
    unclosed.register(this, this.fds, this);
  }

  /** Gives WASI the instance's memory, running `_initialize` for a reactor module (as Extism does). */
  initialize(instance: WebAssembly.Instance): void {
    const memory = instance.exports.memory as WebAssembly.Memory;
    const init = instance.exports._initialize;
    if (typeof init === 'function') this.context.initialize({ exports: { memory, _initialize: () => (init as () => void)() } });
    // A command module's `_start` is not run: the policy's handlers are its entry points. WASI only needs the memory.
    else this.context.start({ exports: { memory, _start: () => undefined } });
  }

  close(): void {
    unclosed.unregister(this);
    closeAll(this.fds);
  }
}

/**
 * fd_close and fd_renumber, refused (ENOTSUP) for the standard streams: closing one would close the host's
 * descriptor under node:wasi, and the host's own close later could then close whatever file reused the number.
 */
function sparingStdio(fn: WasiFunction, meter: WasiMeter): WasiFunction {
  return (...args) => {
    meter.work(1);
    if (args.slice(0, 2).some((fd) => Number(fd) >>> 0 < STDIO_FDS)) return ERRNO_NOTSUP;
    const result = fn(...args);
    meter.work(AFTER_CALL_UNITS);
    return result;
  };
}

/** `random_get(buf, len)` in chunks, the deadline checked between them. */
function randomGet(fn: WasiFunction, meter: WasiMeter): WasiFunction {
  return (buf, len) => {
    const start = Number(buf) >>> 0;
    const length = Number(len) >>> 0;
    if (start + length > meter.memory().byteLength) return ERRNO_FAULT;
    for (let offset = 0; offset < length; offset += RANDOM_CHUNK_BYTES) {
      meter.work(1 + (RANDOM_CHUNK_BYTES >> 8));
      const errno = fn(start + offset, Math.min(RANDOM_CHUNK_BYTES, length - offset));
      if (errno !== 0) return errno;
    }
    meter.work(AFTER_CALL_UNITS);
    return 0;
  };
}

/** fd_read, fd_write, fd_pread, fd_pwrite `(fd, iovs, iovs_len, ...)`: charged for the bytes of their buffers first. */
function transfer(fn: WasiFunction, meter: WasiMeter): WasiFunction {
  return (...args) => {
    const iovs = Number(args[1]) >>> 0;
    const count = Number(args[2]) >>> 0;
    if (count > IOV_MAX) return ERRNO_INVAL;
    const mem = meter.memory();
    if (iovs + count * 8 > mem.byteLength) return ERRNO_FAULT;
    let bytes = 0;
    for (let i = 0; i < count; i++) {
      const at = iovs + i * 8 + 4;
      bytes += (mem[at]! | (mem[at + 1]! << 8) | (mem[at + 2]! << 16) | (mem[at + 3]! << 24)) >>> 0;
    }
    meter.work(1 + Math.floor(bytes / 256));
    const result = fn(...args);
    meter.work(AFTER_CALL_UNITS);
    return result;
  };
}
