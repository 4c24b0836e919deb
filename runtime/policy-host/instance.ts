// One live instance of a policy module, every import of which is answered by the host with the policy's limits
// applied to each.
//
// The host instantiates the module itself, with four import modules: the Extism kernel (kernel.ts: every function of
// it, so that modules built with Extism PDKs run unchanged; Extism's own JavaScript kernel had no limits, its blocks
// escaped the memory cap and its output and logs were not counted), the functions of ABI v1 (below), the metering
// imports (instrument.ts) and, when granted, WASI (wasi.ts, each function charged). Handlers are called straight into
// the module's export, synchronously (`callHandler`): they take no input and their output is ignored
// (abi/policy-abi.md, section 2), so there is no per-call frame to set up, and a host function is a plain function
// (no bound Extism context in front of it). The descriptor export is called the same way, its output taken from the
// kernel. Guests are initialised as Extism initialises them (`_initialize`, `_start`, `hs_init`), so that a module
// that ran under the Extism JS SDK runs here.
//
// What a call may spend, each checked where it is spent:
// - CPU: the module's own instructions are metered (instrument.ts); host functions charge `work` units by what they
//   do (one a call, one per 256 bytes they copy or scan, a whole check interval for a signature check or a WASI call),
//   and the budget (call-budget.ts) is checked every HOST_WORK_PER_CHECK units. No call outlives its budget by more
//   than one check interval of either meter plus the longest single host operation (abi/policy-abi.md, section 6,
//   with the measured margin). The one cost an instruction count cannot see is a page fault: the first touch of a
//   fresh page of linear memory costs the kernel 1 to 15 us. So the host faults the memory in itself (`faultIn`: a
//   slice of at most 2 ms at instantiation and 0.25 ms before a call, until none is left) and gives a call the
//   longest interval only once none is left fresh; until then, and from a growth of the memory on, the intervals
//   start short. The five built-ins of bench:proxy made 11 checks a request with short first intervals.
// - Memory: linear memory plus the kernel's blocks and vars, against the cap. Linear memory grows only through
//   `memory_grow`, which the host refuses past the cap; kernel allocations are refused the same way.
// - Output: bytes handed to the host (values, bodies, logs, effect requests, kernel output and errors), per call.
// - Logs: lines and bytes per call written to the gateway's log, past which the call fails (`log-budget`).
//
// The state of the current call lives on the instance (`call`). Host functions move bytes between the module's own
// memory and the host with i32 pointers: no Extism handles, no BigInt (abi/policy-abi.md, section 3).

import { ModuleTexts } from './module-text.ts';
import { verifySignature } from './signatures.ts';
import { checkEmission, type MetricEmission } from '../telemetry/custom-metrics.ts';
import {
  EFFECT_PENDING,
  EffectKind,
  Field,
  HOST_MODULE,
  INTERNAL_MODULE,
  KERNEL_MODULE,
  LOG_LEVELS,
  MAX_EFFECTS_PER_CALL,
  Status,
  WASI_MODULE,
  type LogLevel,
} from '../../abi/index.ts';
import { CallAbort } from './errors.ts';
import { CallBudget, type BudgetClocks } from './call-budget.ts';
import { BUDGET_CHECK_IMPORT, FIRST_FUEL, FUEL_EXPORT, MEMORY_GROW_IMPORT } from './instrument.ts';
import { ExtismKernel, type KernelHost } from './kernel.ts';
import { PolicyWasi } from './wasi.ts';
import type { Logger } from '../telemetry/logger.ts';

/** What a policy may touch beyond the request it is given. Everything is off unless granted. */
export interface Grants {
  wasi?: boolean;
  /** Guest path → host directory, through WASI (implies `wasi`). */
  filesystem?: Record<string, string>;
  /** Hosts and ports the HTTP effect may call (`host:port`, `*.domain:port`, `*:port`; abi/policy-abi.md, section 5). */
  http?: { allowedHosts: string[] };
  /** Hosts and ports a policy may send the request to by writing BACKEND_URL (same entries as `http`). */
  backend?: { allowedHosts: string[] };
  counters?: boolean;
  /**
   * OpenID Connect discovery documents (exact https:// or http:// URLs) whose signing keys the policy may ask the
   * gateway for (the KEYS effect): the gateway fetches them, never the module.
   */
  openidConfig?: string[];
}

export interface Limits {
  memoryBytes: number;
  outputBytes: number;
  cpuMs: number;
  /** Lines a call may write to the gateway's log (lines below the gateway's log level are not written or counted). */
  logLines: number;
  /** Bytes of those lines. */
  logBytes: number;
}

export const DEFAULT_LIMITS: Limits = {
  memoryBytes: 16 * 1024 * 1024,
  outputBytes: 1024 * 1024,
  cpuMs: 50,
  logLines: 32,
  logBytes: 16 * 1024,
};

/**
 * Host work between two deadline checks. A unit is about what the cheapest host function costs (0.1 to 0.3 us), so
 * a module calling the host in a loop reaches a check every 25 to 80 us, as one running its own code does.
 */
export const HOST_WORK_PER_CHECK = 256;

/**
 * What a write costs the output cap beyond its bytes: the host keeps an undo entry for each, so a loop of empty
 * writes must run into the cap too.
 */
const WRITE_OVERHEAD_BYTES = 32;

const PAGE = 65536;
/** The kernel's page: 4 KiB on x86-64 and arm64 Linux (touching every 4 KiB also faults in larger pages). */
const OS_PAGE = 4096;
/** Pages faulted in between two readings of the clock. */
const FAULT_PAGES_PER_READING = 16;
/**
 * The longest the host faults pages in at a time (at instantiation, before a call): a module whose memory
 * starts large (the cap, 16 MiB, is 4,096 pages: 57 ms at 14 us a fault) is faulted in over its first calls, each
 * paying at most this, never failed for it.
 */
const FAULT_SLICE_MS = 0.25;
/** The same at instantiation, off a call's path: enough for a memory of a few MiB, so that most first calls need none. */
const FAULT_SLICE_AT_INSTANTIATION_MS = 2;

/**
 * The longest name a host function reads (a header, variable, configuration key, context or metric name, metric
 * dimensions, an algorithm): a request head is 16 KiB in all by default, and decoding a name of megabytes on every
 * call of a loop would be work no check sees in time. Longer names are INVALID_VALUE, unread.
 */
export const MAX_NAME_BYTES = 8 * 1024;
/** Kernel blocks may always be this large, whatever the output cap (kernel.ts, maxBlockBytes). */
const MIN_MAX_BLOCK_BYTES = 1024 * 1024;
/** A public JWK's text (signatures.ts refuses longer ones without parsing). */
const MAX_JWK_BYTES = 16 * 1024;

/** The length of a string in UTF-8 (a lone surrogate is written as U+FFFD, three bytes, as TextEncoder does). */
function utf8Length(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/**
 * What a line's bytes become in the log, where it is a JSON string: a control character is written as \u00XX (six
 * bytes), a quote or a backslash as two. A module logging NUL bytes would otherwise write six times its budget.
 */
function loggedBytes(text: Uint8Array): number {
  let n = text.byteLength;
  for (let i = 0; i < text.byteLength; i++) {
    const c = text[i]!;
    if (c < 0x20) n += 5;
    else if (c === 0x22 || c === 0x5c) n += 1;
  }
  return n;
}

export type WriteOp = 'set' | 'add' | 'remove';

/** The request/response a call works on, as host functions see it. Implemented by the pipeline's exchange. */
export interface CallView {
  /** `nameClass`, `valueClass`: what header-text.ts found of the texts, when the host's table of texts knew (else 0). */
  read(field: number, name: string, nameClass?: number): string | Uint8Array | null | number;
  write(op: WriteOp, field: number, name: string, value: string | Uint8Array | null, nameClass?: number, valueClass?: number): number;
  list(field: number): string[] | number;
  respond(status: number): number;
}

/** What a call reads and changes, kept so that the call can be replayed (replay.ts implements it). */
export interface CallRecorder {
  read(field: number, name: string, value: string | Uint8Array | number | null): void;
  change(op: WriteOp | 'respond', field: number, name: string, value: string | Uint8Array | number | null, status: number): void;
  /** The call did something a replay cannot make again. */
  stop(): void;
}

/** An effect a call asked for; `result` is undefined while it waits to be performed. */
export interface EffectCall {
  readonly kind: number;
  readonly request: string;
  result: string | undefined;
}

/** Per-call state: what the handler asked for and what it produced. */
export interface CallState {
  view: CallView;
  /**
   * The effects the call asked for, in order: with results from earlier rounds and those completed synchronously in
   * this call (so that the SDK asking again with a bigger buffer, or a later round, reads the same result instead of a
   * second effect), and those asked for in this round without one yet. At most MAX_EFFECTS_PER_CALL, found by a scan:
   * no key is built from the request text. Null until the first.
   */
  effects: EffectCall[] | null;
  /** Completes an effect inside the host function when the runner can (the in-memory counter); undefined: it cannot. */
  completeNow: ((kind: number, request: string) => string | undefined) | null;
  failMessage: string | null;
  grants: Grants;
  /** Metrics the call emitted, recorded only if it succeeds (null until the first). */
  metrics: MetricEmission[] | null;
  /** What the call reads and changes, when its handler's calls may be replayed (replay.ts); null otherwise. */
  recording: CallRecorder | null;
}

const BODY_FIELDS = new Set<number>([Field.REQUEST_BODY, Field.RESPONSE_BODY]);
const EFFECT_NAMES: Record<number, string> = { 1: 'COUNTER', 3: 'LEASE', 4: 'METER', 5: 'KEYS' };
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export interface InstanceOptions {
  compiled: WebAssembly.Module;
  policy: string;
  grants: Grants;
  limits: Limits;
  /** Pages of linear memory the module starts with (its memory declaration). */
  initialPages: number;
  /** Flattened configuration, offered through Extism's `config_get` for modules built with other PDKs. */
  extismConfig: Record<string, string>;
  logger: Logger;
  /** The clocks the CPU budget reads (the runtime adapter's). */
  clocks: BudgetClocks;
}

export class PolicyInstance implements KernelHost {
  private wasi: PolicyWasi | null = null;
  private memory: WebAssembly.Memory | null = null;
  private u8 = new Uint8Array(0);
  /** The short texts this instance's module wrote, handed out again when it writes them again (module-text.ts). */
  private readonly texts = new ModuleTexts();
  private readonly kernel: ExtismKernel;
  /** Linear memory in pages: the module's initial pages plus every growth the host allowed (before the memory is known). */
  private linearPages: number;
  /** The module's fuel (instrument.ts), refilled at each of its checks with what the budget gives. */
  private fuel: WebAssembly.Global | null = null;
  /** Bytes of linear memory, from 0, that the host has faulted in (see the header). */
  private faultedBytes = 0;
  private readonly budget: CallBudget;
  private call: CallState | null = null;
  /** What the running call (or instantiation) has spent of its limits. */
  private outputBytes = 0;
  private logLines = 0;
  private logBytes = 0;
  private hostWork = 0;
  /** The running call asked to grow its memory past the cap: a trap that follows is the cap's doing. */
  private growRefused = false;
  /** An `error_set` or `fail` outside a handler call (the descriptor export, the start function). */
  private orphanFailure: string | null = null;
  private exports: WebAssembly.Exports = {};
  readonly policy: string;
  readonly logPriority: number;
  readonly maxBlockBytes: number;

  private constructor(private readonly options: InstanceOptions) {
    this.policy = options.policy;
    this.budget = new CallBudget(options.clocks);
    this.linearPages = options.initialPages;
    this.maxBlockBytes = Math.max(options.limits.outputBytes, MIN_MAX_BLOCK_BYTES);
    const lowest = LOG_LEVELS.findIndex((l) => options.logger.enabled(l));
    this.logPriority = lowest === -1 ? LOG_LEVELS.length : lowest;
    this.kernel = new ExtismKernel(this);
  }

  static async create(options: InstanceOptions): Promise<PolicyInstance> {
    const instance = new PolicyInstance(options);
    await instance.init();
    return instance;
  }

  private async init(): Promise<void> {
    const { grants, compiled } = this.options;
    const imports: WebAssembly.Imports = {
      [HOST_MODULE]: this.hostFunctions(),
      [INTERNAL_MODULE]: {
        [BUDGET_CHECK_IMPORT]: () => this.fuelCheck(),
        [MEMORY_GROW_IMPORT]: (delta: number) => this.allowGrowth(delta),
      },
      [KERNEL_MODULE]: this.kernel.functions(),
    };
    if (grants.wasi === true || grants.filesystem !== undefined) {
      // A call that used WASI (the clock, randomness, files) cannot be replayed.
      const work = (units: number) => {
        this.stopReplay();
        this.work(units);
      };
      this.wasi = new PolicyWasi(grants.filesystem ?? {}, { work, memory: () => this.mem() });
      imports[WASI_MODULE] = this.wasi.imports;
    }
    // The module's start function, data segments and initialisation run here, under the same limits as a call.
    this.beginCall();
    try {
      const instance = await WebAssembly.instantiate(compiled, imports);
      this.exports = instance.exports;
      this.fuel = instance.exports[FUEL_EXPORT] as WebAssembly.Global;
      this.memory = instance.exports.memory as WebAssembly.Memory;
      this.u8 = new Uint8Array(this.memory.buffer);
      this.initializeGuest(instance);
      this.faultIn(FAULT_SLICE_AT_INSTANTIATION_MS);
    } catch (err) {
      this.wasi?.close();
      throw err;
    } finally {
      this.kernel.endCall();
    }
    if (this.orphanFailure !== null) throw new Error(`the start function failed: ${this.orphanFailure}`);
  }

  /** What Extism runs after instantiating a guest, by its kind, so that modules made for Extism start as they did. */
  private initializeGuest(instance: WebAssembly.Instance): void {
    const exported = (name: string) => {
      const fn = instance.exports[name];
      return typeof fn === 'function' ? (fn as () => unknown) : null;
    };
    if (this.wasi) {
      this.wasi.initialize(instance);
      exported('hs_init')?.();
      return;
    }
    const init = exported('hs_init') ?? exported('_initialize') ?? exported('_start');
    init?.();
  }

  /**
   * True when the module's memory is within 1/8 of its cap. A module whose allocation failed at the cap traps with its
   * memory just below it (the allocation that did not fit is not counted), so "at the cap" has to be approximate.
   */
  memoryNearCap(): boolean {
    return this.growRefused || this.linearBytes() >= this.options.limits.memoryBytes * 0.875;
  }

  /** The memory cap, for a failure that `memoryNearCap` charges to it. */
  get memoryCap(): number {
    return this.options.limits.memoryBytes;
  }

  /**
   * Runs a phase handler once, synchronously. Throws what the module or a host function threw; the caller classifies
   * it. What the handler did is in `state` (and in the view it changed). `startedMs`: the budget's wall clock as the
   * caller read it just before the call (read here when absent).
   */
  callHandler(exportName: string, state: CallState, startedMs?: number): void {
    const handler = this.exports[exportName];
    if (typeof handler !== 'function') throw new CallAbort('bad-argument', `the module does not export ${exportName}`);
    this.call = state;
    try {
      this.beginCall(startedMs);
      (handler as () => unknown)();
    } finally {
      this.call = null;
      this.kernel.endCall();
    }
  }

  /** Calls the descriptor export; its output (null when it set none). */
  describe(exportName: string): Uint8Array | null {
    const fn = this.exports[exportName];
    if (typeof fn !== 'function') throw new Error(`the module does not export ${exportName}`);
    this.beginCall();
    try {
      (fn as () => unknown)();
      if (this.orphanFailure !== null) throw new Error(this.orphanFailure);
      return this.kernel.output();
    } finally {
      this.kernel.endCall();
    }
  }

  close(): void {
    this.wasi?.close();
  }

  /** `startedMs`: the budget's wall clock as the caller read it just before, if it did. */
  private beginCall(startedMs?: number): void {
    this.outputBytes = 0;
    this.logLines = 0;
    this.logBytes = 0;
    this.hostWork = 0;
    this.growRefused = false;
    this.orphanFailure = null;
    this.budget.start(this.options.limits.cpuMs, startedMs);
    // Instantiating, the module's fuel is its own initial FIRST_FUEL.
    if (!this.fuel) return;
    this.fuel.value = this.faultIn() ? this.budget.lengthenIntervals() : FIRST_FUEL;
  }

  /**
   * The module ran out of fuel: the budget is checked and the fuel refilled for the next interval. A call that grew
   * the memory goes on with the intervals fitted to what they take, from FIRST_FUEL (allowGrowth); its fresh pages
   * are faulted in before the next call, not during this one: the host's touch reads a page before writing it, two
   * faults where the module's own write takes one, and a module growing to its cap paid them all within one call.
   */
  private fuelCheck(): void {
    const refill = this.budget.fuelCheck();
    if (this.fuel) this.fuel.value = refill;
  }

  /**
   * Faults in more of the module's memory, for `sliceMs` at most; true once the whole memory is faulted in. The time
   * is the call's (its budget's clock runs), but no call is failed for it: a slice is what one interval may take.
   */
  private faultIn(sliceMs = FAULT_SLICE_MS): boolean {
    const mem = this.mem();
    const size = mem.byteLength;
    if (this.faultedBytes >= size) return true;
    const { clocks } = this.options;
    const until = clocks.wallMs() + sliceMs;
    do {
      const stop = Math.min(size, this.faultedBytes + FAULT_PAGES_PER_READING * OS_PAGE);
      // A write the compiler cannot drop, of the byte already there: the module may have written the page already.
      for (let at = this.faultedBytes; at < stop; at += OS_PAGE) Atomics.add(mem, at, 0);
      this.faultedBytes = stop;
    } while (this.faultedBytes < size && clocks.wallMs() < until);
    return this.faultedBytes >= size;
  }

  // --- KernelHost: what the kernel and the host functions charge -------------------------------------------------

  work(units: number): void {
    this.hostWork += units;
    if (this.hostWork >= HOST_WORK_PER_CHECK) {
      this.hostWork = 0;
      this.budget.check();
    }
  }

  output(bytes: number): void {
    this.outputBytes += bytes;
    if (this.outputBytes > this.options.limits.outputBytes) {
      const cap = this.options.limits.outputBytes;
      throw new CallAbort('output-cap', `the call handed the host more than its output cap of ${cap} bytes`, { setting: 'limits.outputBytes', value: cap });
    }
  }

  reserve(bytes: number): void {
    const cap = this.options.limits.memoryBytes;
    const total = this.linearBytes() + this.kernel.held() + bytes;
    if (total > cap) {
      throw new CallAbort(
        'memory-cap',
        `Extism kernel memory of ${bytes} more bytes would take the module to ${total} bytes, past its memory cap of ${cap} ` +
          '(linear memory and kernel blocks count together)',
        { setting: 'limits.memoryBytes', value: cap },
      );
    }
  }

  log(level: LogLevel, text: Uint8Array): void {
    this.stopReplay();
    const { logger, limits } = this.options;
    // Lines the gateway does not write cost the sink nothing; they were counted against the output cap already.
    if (!logger.enabled(level)) return;
    this.logLines++;
    this.logBytes += loggedBytes(text);
    if (this.logLines > limits.logLines || this.logBytes > limits.logBytes) {
      throw new CallAbort(
        'log-budget',
        `the call logged more than its budget of ${limits.logLines} lines or ${limits.logBytes} bytes`,
        this.logLines > limits.logLines ? { setting: 'limits.logLines', value: limits.logLines } : { setting: 'limits.logBytes', value: limits.logBytes },
      );
    }
    logger.log(level, decoder.decode(text), { source: 'policy' });
  }

  /** The message is 4,096 characters at most: the host function `fail` reads no more, and error_set keeps no more. */
  fail(message: string): void {
    if (this.call) this.call.failMessage = message;
    else this.orphanFailure = message;
  }

  stopReplay(): void {
    this.call?.recording?.stop();
  }

  config(key: string): string | undefined {
    return Object.hasOwn(this.options.extismConfig, key) ? this.options.extismConfig[key] : undefined;
  }

  private linearBytes(): number {
    return this.memory ? this.memory.buffer.byteLength : this.linearPages * PAGE;
  }

  /** `memory.grow` asks here first: the delta to grow by, or -1 (an impossible delta: the grow fails) past the cap. */
  private allowGrowth(delta: number): number {
    this.work(1);
    const pages = delta >>> 0;
    if (pages === 0) return delta;
    if (this.linearBytes() + pages * PAGE + this.kernel.held() > this.options.limits.memoryBytes) {
      this.growRefused = true;
      return -1;
    }
    this.linearPages = this.linearBytes() / PAGE + pages;
    // The pages it adds are fresh: until they are faulted in, the intervals are short again.
    if (this.fuel && (this.fuel.value as number) > FIRST_FUEL) this.fuel.value = FIRST_FUEL;
    this.budget.shortenIntervals();
    return delta;
  }

  // --- gatehouse:host/v1 -------------------------------------------------------------------------------------------

  private current(): CallState {
    const state = this.call;
    if (!state) throw new CallAbort('bad-argument', 'host function called outside a policy phase');
    return state;
  }

  private mem(): Uint8Array {
    // Growing a wasm memory detaches its old buffer, and views on a detached buffer have length 0: a cheap test,
    // where reading `memory.buffer` on every host call is not.
    if (this.u8.byteLength === 0 && this.memory) this.u8 = new Uint8Array(this.memory.buffer);
    return this.u8;
  }

  /** The module's memory, once `ptr`..`ptr + len` is checked to lie inside it; a failed call otherwise. */
  private range(ptr: number, len: number): Uint8Array {
    const mem = this.mem();
    if (ptr < 0 || len < 0 || ptr + len > mem.byteLength) {
      throw new CallAbort('bad-argument', `pointer range ${ptr}+${len} is outside the module's memory`);
    }
    return mem;
  }

  /** The module's memory, once both ranges are checked (one look at the memory for the two). */
  private ranges(p1: number, l1: number, p2: number, l2: number): Uint8Array {
    const mem = this.mem();
    const size = mem.byteLength;
    if (p1 < 0 || l1 < 0 || p1 + l1 > size) throw new CallAbort('bad-argument', `pointer range ${p1}+${l1} is outside the module's memory`);
    if (p2 < 0 || l2 < 0 || p2 + l2 > size) throw new CallAbort('bad-argument', `pointer range ${p2}+${l2} is outside the module's memory`);
    return mem;
  }

  private readString(ptr: number, len: number): string {
    return this.texts.decode(this.range(ptr, len), ptr, len);
  }

  /** Writes a value into the module's buffer if it fits; returns its byte length either way. */
  private writeValue(value: string | Uint8Array, buf: number, cap: number): number {
    const mem = this.range(buf, cap);
    if (typeof value !== 'string') {
      this.work(1 + (value.byteLength >> 8));
      if (value.byteLength <= cap) mem.set(value, buf);
      return value.byteLength;
    }
    const n = value.length;
    this.work(1 + (n >> 8));
    if (n <= cap) {
      let i = 0;
      for (; i < n; i++) {
        const c = value.charCodeAt(i);
        if (c >= 0x80) break;
        mem[buf + i] = c;
      }
      if (i === n) return n;
    }
    // Measured, then encoded in place if it fits: encoding into a new array on every call that asks only for the
    // length (a buffer too small) made garbage of megabytes a call for a loop to pile up.
    const bytes = utf8Length(value);
    if (bytes <= cap) encoder.encodeInto(value, mem.subarray(buf, buf + bytes));
    return bytes;
  }

  /**
   * The query is re-read or re-written whole by each query-parameter operation (and a whole query write): they cost
   * its length, one unit per 2^`shift` characters, which a policy can grow.
   */
  private queryWork(state: CallState, shift: number): number {
    const query = state.view.read(Field.REQUEST_QUERY, '');
    return typeof query === 'string' ? query.length >> shift : 0;
  }

  /**
   * The ABI's functions. Each checks its pointer ranges, then counts its bytes against the output cap and charges the
   * CPU meter for the work it is about to do, and only then decodes or copies: a deadline that has passed stops the
   * call before the work, not after it. Names (of fields, metrics, keys) longer than MAX_NAME_BYTES are not read.
   */
  private hostFunctions(): Record<string, (...args: never[]) => unknown> {
    const { policy } = this.options;
    return {
      get: (field: number, namePtr: number, nameLen: number, buf: number, cap: number): number => {
        const state = this.current();
        const mem = this.ranges(buf, cap, namePtr, nameLen);
        if (nameLen > MAX_NAME_BYTES) return Status.INVALID_VALUE;
        this.work(1 + (nameLen >> 8) + (field === Field.REQUEST_QUERY_PARAM ? this.queryWork(state, 6) : 0));
        const name = this.texts.decode(mem, namePtr, nameLen);
        const value = state.view.read(field, name, this.texts.lastClass());
        if (state.recording !== null) state.recording.read(field, name, value);
        if (value === null) return Status.NOT_FOUND;
        if (typeof value === 'number') return value;
        return this.writeValue(value, buf, cap);
      },
      set: (field: number, np: number, nl: number, vp: number, vl: number): number =>
        this.write('set', field, np, nl, vp, vl),
      add: (field: number, np: number, nl: number, vp: number, vl: number): number =>
        this.write('add', field, np, nl, vp, vl),
      remove: (field: number, namePtr: number, nameLen: number): number => {
        const state = this.current();
        this.range(namePtr, nameLen);
        this.output(nameLen + WRITE_OVERHEAD_BYTES);
        if (nameLen > MAX_NAME_BYTES) return Status.INVALID_VALUE;
        this.work(1 + (nameLen >> 8) + (field === Field.REQUEST_QUERY_PARAM ? this.queryWork(state, 8) : 0));
        const name = this.readString(namePtr, nameLen);
        const status = state.view.write('remove', field, name, null, this.texts.lastClass());
        if (state.recording !== null) state.recording.change('remove', field, name, null, status);
        return status;
      },
      list: (field: number, buf: number, cap: number): number => {
        const state = this.current();
        state.recording?.stop();
        this.range(buf, cap);
        this.work(1);
        const names = state.view.list(field);
        if (typeof names === 'number') return names;
        return this.writeValue(names.map((n) => n + '\0').join(''), buf, cap);
      },
      respond: (status: number): number => {
        const state = this.current();
        this.output(WRITE_OVERHEAD_BYTES);
        this.work(1);
        const result = state.view.respond(status);
        if (state.recording !== null) state.recording.change('respond', 0, '', status, result);
        return result;
      },
      effect: (kind: number, reqPtr: number, reqLen: number, buf: number, cap: number): number => {
        const state = this.current();
        state.recording?.stop();
        this.range(buf, cap);
        this.range(reqPtr, reqLen);
        this.output(reqLen);
        this.work(1 + (reqLen >> 6));
        const request = this.readString(reqPtr, reqLen);
        const counting = kind === EffectKind.COUNTER || kind === EffectKind.LEASE || kind === EffectKind.METER;
        if (counting && state.grants.counters !== true) {
          throw new CallAbort('capability', `policy ${policy} used effect ${EFFECT_NAMES[kind]} without the "counters" grant`);
        }
        if (kind === EffectKind.HTTP && state.grants.http === undefined) {
          throw new CallAbort('capability', `policy ${policy} used the HTTP effect without the "http" grant`);
        }
        if (kind === EffectKind.KEYS && state.grants.openidConfig === undefined) {
          throw new CallAbort('capability', `policy ${policy} used effect KEYS without the "openidConfig" grant`);
        }
        if (!counting && kind !== EffectKind.HTTP && kind !== EffectKind.KEYS) return Status.UNKNOWN_FIELD;
        const asked = state.effects ?? (state.effects = []);
        let call: EffectCall | undefined;
        for (let i = 0; i < asked.length; i++) {
          const c = asked[i]!;
          if (c.kind === kind && c.request === request) {
            call = c;
            break;
          }
        }
        if (call === undefined) {
          if (asked.length >= MAX_EFFECTS_PER_CALL) {
            throw new CallAbort('effects', `policy ${policy} asked for more than ${MAX_EFFECTS_PER_CALL} effects in one call`);
          }
          call = { kind, request, result: state.completeNow === null ? undefined : state.completeNow(kind, request) };
          asked.push(call);
        }
        if (call.result !== undefined) return this.writeValue(call.result, buf, cap);
        return EFFECT_PENDING;
      },
      log: (level: number, ptr: number, len: number): void => {
        this.current();
        const bytes = this.range(ptr, len).subarray(ptr, ptr + len);
        this.output(len);
        this.work(1 + (len >> 8));
        this.log(LOG_LEVELS[level] ?? 'info', bytes);
      },
      now: (): number => {
        this.stopReplay();
        this.work(1);
        return Date.now();
      },
      metric: (np: number, nl: number, value: number, dp: number, dl: number): number => {
        const state = this.current();
        state.recording?.stop();
        this.range(np, nl);
        this.range(dp, dl);
        this.output(nl + dl + WRITE_OVERHEAD_BYTES);
        if (nl > MAX_NAME_BYTES || dl > MAX_NAME_BYTES) return Status.INVALID_VALUE;
        this.work(1 + ((nl + dl) >> 6));
        const name = this.readString(np, nl);
        // Dimensions: name NUL value NUL, repeated.
        const parts = dl > 0 ? this.readString(dp, dl).split('\0') : [];
        if (parts.length > 0 && parts[parts.length - 1] === '') parts.pop();
        if (parts.length % 2 !== 0) return Status.INVALID_VALUE;
        const dimensions: [string, string][] = [];
        for (let i = 0; i < parts.length; i += 2) dimensions.push([parts[i]!, parts[i + 1]!]);
        const emission = { name, value, dimensions };
        const { status } = checkEmission(emission);
        if (status === Status.OK) (state.metrics ??= []).push(emission);
        return status;
      },
      verify: (ap: number, al: number, kp: number, kl: number, dp: number, dl: number, sp: number, sl: number): number => {
        this.current().recording?.stop();
        this.range(ap, al);
        this.range(kp, kl);
        // Views, not copies: verifySignature reads them before this host function returns.
        const mem = this.range(dp, dl);
        this.range(sp, sl);
        this.output(al + kl + dl + sl);
        if (al > MAX_NAME_BYTES || kl > MAX_JWK_BYTES) return Status.INVALID_VALUE;
        this.work(1 + ((kl + dl + sl) >> 6));
        const result = verifySignature(this.readString(ap, al), this.readString(kp, kl), mem.subarray(dp, dp + dl), mem.subarray(sp, sp + sl));
        // A signature check costs tens of microseconds to a millisecond: the deadline is checked after each.
        this.work(HOST_WORK_PER_CHECK);
        return result;
      },
      fail: (ptr: number, len: number): void => {
        this.current();
        this.range(ptr, len);
        this.output(len);
        const kept = Math.min(len, 4096);
        this.work(1 + (kept >> 8));
        this.fail(this.readString(ptr, kept));
      },
    };
  }

  private write(op: 'set' | 'add', field: number, np: number, nl: number, vp: number, vl: number): number {
    const state = this.current();
    const mem = this.ranges(np, nl, vp, vl);
    this.output(nl + vl + WRITE_OVERHEAD_BYTES);
    if (nl > MAX_NAME_BYTES) return Status.INVALID_VALUE;
    const query = field === Field.REQUEST_QUERY_PARAM || field === Field.REQUEST_QUERY;
    this.work(1 + ((nl + vl) >> 8) + (query ? this.queryWork(state, 8) : 0));
    const name = this.texts.decode(mem, np, nl);
    const nameClass = this.texts.lastClass();
    // A body is copied out of the module's memory: the host never keeps a view into it.
    const body = BODY_FIELDS.has(field);
    const value = body ? mem.slice(vp, vp + vl) : this.texts.decode(mem, vp, vl);
    const status = state.view.write(op, field, name, value, nameClass, body ? 0 : this.texts.lastClass());
    if (state.recording !== null) state.recording.change(op, field, name, value, status);
    return status;
  }
}
