// One live instance of a policy module: an Extism plugin plus the host functions of ABI v1 bound to it.
//
// Extism instantiates the module, links the kernel and the host functions, and provides WASI when granted. Phase
// handlers are then called straight into the module's export, synchronously (`callHandler`), rather than through
// Extism's `call`: handlers take no input and their output is ignored (docs/policy-abi.md, section 2), so Extism's
// per-call frame (input, output, error) has nothing to carry, and skipping its two async layers saved about 0.6 us a
// call (BENCHMARKS.md). The kernel functions that would need the frame are answered by the host instead (`error_set`
// becomes the call's failure, `output_set` is counted and ignored, input is empty), and the kernel's blocks are freed
// after every call as Extism's `call` does. The descriptor export, whose output matters, goes through Extism's
// `call` on an instance of its own (`describe`).
//
// The state of the current call lives on the instance (`call`). Host functions move bytes between the module's own
// memory and the host with i32 pointers: no Extism handles, no BigInt (docs/policy-abi.md, section 3).

import process from 'node:process';
import createPlugin, { type Plugin } from '@extism/extism';
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
  Status,
} from './abi.ts';
import { CallAbort } from './errors.ts';
import { BUDGET_CHECK_IMPORT } from './instrument.ts';
import type { Logger } from '../telemetry/logger.ts';

/** What a policy may touch beyond the request it is given. Everything is off unless granted. */
export interface Grants {
  wasi?: boolean;
  /** Guest path → host directory, through WASI (implies `wasi`). */
  filesystem?: Record<string, string>;
  /** Hosts and ports the HTTP effect may call (`host:port`, `*.domain:port`, `*:port`; docs/policy-abi.md, section 5). */
  http?: { allowedHosts: string[] };
  /** Hosts and ports a policy may send the request to by writing BACKEND_URL (same entries as `http`). */
  backend?: { allowedHosts: string[] };
  counters?: boolean;
}

export interface Limits {
  memoryBytes: number;
  outputBytes: number;
  cpuMs: number;
}

export const DEFAULT_LIMITS: Limits = { memoryBytes: 16 * 1024 * 1024, outputBytes: 1024 * 1024, cpuMs: 50 };

/**
 * However little CPU it got, a call is stopped after this many budgets of wall-clock time: pauses of up to about two
 * budgets are forgiven (a container throttled at half a core waits up to 50 ms in each 100 ms period), and a runaway
 * call holds the event loop of a starved process for three budgets at most.
 */
const PAUSED_CEILING_BUDGETS = 3;

/** The process's CPU time (user and system, every thread: concurrent collection too, which errs towards stopping). */
function cpuMicroseconds(): number {
  const { user, system } = process.cpuUsage();
  return user + system;
}

export type WriteOp = 'set' | 'add' | 'remove';

/** The request/response a call works on, as host functions see it. Implemented by the pipeline's exchange. */
export interface CallView {
  read(field: number, name: string): string | Uint8Array | null | number;
  write(op: WriteOp, field: number, name: string, value: string | Uint8Array | null): number;
  list(field: number): string[] | number;
  respond(status: number): number;
}

/** Per-call state: what the handler asked for and what it produced. */
export interface CallState {
  view: CallView;
  /**
   * Effect results by `kind:request`: from earlier rounds, and those completed synchronously in this call (so that the
   * SDK asking again with a bigger buffer, or a later round, reads the same result instead of a second effect).
   * Null until the first.
   */
  effectResults: Map<string, string> | null;
  /** Completes an effect inside the host function when the runner can (the in-memory counter); undefined: it cannot. */
  completeNow: ((kind: number, request: string) => string | undefined) | null;
  /** Effects asked for in this round that have no result yet (null until the first). */
  pendingEffects: Map<string, { kind: number; request: string }> | null;
  failMessage: string | null;
  outputBytes: number;
  grants: Grants;
  /** Metrics the call emitted, recorded only if it succeeds (null until the first). */
  metrics: MetricEmission[] | null;
}

/** What the kernel overrides use of Extism's call context. */
interface KernelContext {
  read(addr: bigint): { string(): string } | null;
}

const BODY_FIELDS = new Set<number>([Field.REQUEST_BODY, Field.RESPONSE_BODY]);
const EFFECT_NAMES: Record<number, string> = { 1: 'COUNTER', 2: 'HTTP', 3: 'LEASE', 4: 'METER' };
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export interface InstanceOptions {
  compiled: WebAssembly.Module;
  policy: string;
  grants: Grants;
  limits: Limits;
  /** Flattened configuration, also offered through Extism's `config_get` for modules built with other PDKs. */
  extismConfig: Record<string, string>;
  logger: Logger;
  /** `handlers` (default): phase handlers, called directly. `describe`: the descriptor export, through Extism. */
  purpose?: 'handlers' | 'describe';
}

export class PolicyInstance {
  private plugin!: Plugin;
  private memory!: WebAssembly.Memory;
  private u8 = new Uint8Array(0);
  private deadline = 0;
  /** When the running call started (wall clock), and the process's CPU time once it passed half its budget. */
  private callStarted = 0;
  private cpuAtHalfwayUs: number | null = null;
  private call: CallState | null = null;
  /** The running call allocated kernel blocks (most handlers never do: they have no input and set no output). */
  private kernelBlocks = false;
  private exports: WebAssembly.Exports = {};

  private constructor(private readonly options: InstanceOptions) {}

  static async create(options: InstanceOptions): Promise<PolicyInstance> {
    const instance = new PolicyInstance(options);
    await instance.init();
    return instance;
  }

  private async init(): Promise<void> {
    const { grants, limits, logger, policy } = this.options;
    const pages = Math.ceil(limits.memoryBytes / 65536);
    const extismLogger = {
      trace: (m: string) => logger.trace(m, { source: 'extism-log' }),
      debug: (m: string) => logger.debug(m, { source: 'extism-log' }),
      info: (m: string) => logger.info(m, { source: 'extism-log' }),
      warn: (m: string) => logger.warn(m, { source: 'extism-log' }),
      error: (m: string) => logger.error(m, { source: 'extism-log' }),
      log: (m: string) => logger.info(m, { source: 'extism-log' }),
    } as unknown as Console;
    const useWasi = grants.wasi === true || grants.filesystem !== undefined;
    // The module's start function (top-level code) runs inside createPlugin, under the same budget as a call.
    this.startClock();
    this.plugin = await createPlugin(
      { wasm: [{ module: this.options.compiled }], config: this.options.extismConfig },
      {
        useWasi,
        allowedPaths: grants.filesystem ?? {},
        logger: extismLogger,
        logLevel: 'info',
        memory: { maxPages: pages, maxVarBytes: 64 * 1024 },
        functions: {
          [HOST_MODULE]: this.hostFunctions(),
          [INTERNAL_MODULE]: { [BUDGET_CHECK_IMPORT]: () => this.checkBudget() },
          // Overrides of kernel functions: a kernel block larger than the memory cap is refused before the host
          // allocates it, and the kernel's own HTTP client is not how Gatehouse policies reach the network.
          [KERNEL_MODULE]: {
            alloc: (cp: { alloc(n: bigint): bigint }, n: bigint) => {
              if (n > BigInt(limits.memoryBytes)) return 0n;
              this.kernelBlocks = true;
              return cp.alloc(n);
            },
            http_request: () => {
              throw new CallAbort('capability', `policy ${policy} called extism http_request; use the HTTP effect`);
            },
            ...(this.options.purpose === 'describe' ? {} : this.frameFunctions()),
          },
        },
      },
    );
    const exports = (await this.plugin.getInstance()).exports;
    this.exports = exports;
    this.memory = exports.memory as WebAssembly.Memory;
    this.u8 = new Uint8Array(this.memory.buffer);
  }

  /**
   * True when the module's memory is within 1/8 of its cap. A module whose allocation failed at the cap traps with its
   * memory just below it (the allocation that did not fit is not counted), so "at the cap" has to be approximate.
   */
  memoryNearCap(): boolean {
    return this.memory.buffer.byteLength >= this.options.limits.memoryBytes * 0.875;
  }

  /**
   * Runs a phase handler once, synchronously. Throws what the module or a host function threw; the caller classifies
   * it. What the handler did is in `state` (and in the view it changed).
   */
  callHandler(exportName: string, state: CallState): void {
    const handler = this.exports[exportName];
    if (typeof handler !== 'function') throw new CallAbort('bad-argument', `the module does not export ${exportName}`);
    this.call = state;
    this.startClock();
    try {
      (handler as () => unknown)();
    } finally {
      this.call = null;
      // Frees the kernel blocks the call allocated (Extism's `call` does the same before each call). Synchronous
      // inside, although the method is declared async; skipped when there are none, which saves a promise a call.
      if (this.kernelBlocks) {
        this.kernelBlocks = false;
        void this.plugin.reset();
      }
    }
  }

  /** Calls the descriptor export through Extism (its output is the descriptor); null when it set no output. */
  async describe(exportName: string): Promise<Uint8Array | null> {
    this.startClock();
    const output = await this.plugin.call(exportName);
    if (!output) return null;
    const bytes = new Uint8Array(output.bytes());
    if (bytes.byteLength > this.options.limits.outputBytes) {
      throw new CallAbort('output-cap', `output of ${bytes.byteLength} bytes exceeds the ${this.options.limits.outputBytes}-byte cap`);
    }
    return bytes;
  }

  async close(): Promise<void> {
    await this.plugin.close();
  }

  private startClock(): void {
    this.callStarted = performance.now();
    // The first deadline is halfway through the budget: see checkBudget.
    this.deadline = this.callStarted + this.options.limits.cpuMs / 2;
    this.cpuAtHalfwayUs = null;
  }

  /**
   * Called by the metered module every FUEL_PER_CHECK units, which a running module reaches every few microseconds.
   * Deadlines are wall-clock time, cheap to read on every check; but wall time also passes while the process is not
   * running the call: descheduled on a busy machine, throttled at a container's CPU limit (CFS periods of 100 ms). A
   * call that takes microseconds would then fail (a 500) for time it never used. So the CPU time is read once a call
   * passes half its budget in wall-clock time (about a microsecond, paid only by such calls): up to there it ran for
   * half the budget at most (checks come every few microseconds while it runs, so the one that found the halfway point
   * passed came right after it, or right after a pause). From then on the deadline moves by what is left of the budget
   * in CPU time, and the call is stopped once that is used up; or after PAUSED_CEILING_BUDGETS of wall-clock time,
   * however little it ran. The CPU time is the process's (every thread, garbage collection included), which errs
   * towards stopping.
   */
  private checkBudget(): void {
    const now = performance.now();
    if (now <= this.deadline) return;
    const budgetMs = this.options.limits.cpuMs;
    if (this.cpuAtHalfwayUs === null) {
      this.cpuAtHalfwayUs = cpuMicroseconds();
      this.deadline = Math.max(this.callStarted + budgetMs, now + budgetMs / 2);
      return;
    }
    const usedMs = budgetMs / 2 + (cpuMicroseconds() - this.cpuAtHalfwayUs) / 1000;
    if (usedMs >= budgetMs || now - this.callStarted >= budgetMs * PAUSED_CEILING_BUDGETS) {
      throw new CallAbort('cpu-budget', `call ran past its CPU budget of ${budgetMs} ms`);
    }
    this.deadline = now + (budgetMs - usedMs);
  }

  private current(): CallState {
    const state = this.call;
    if (!state) throw new CallAbort('bad-argument', 'host function called outside a policy phase');
    return state;
  }

  private countOutput(state: CallState, n: number): void {
    state.outputBytes += n;
    if (state.outputBytes > this.options.limits.outputBytes) {
      throw new CallAbort(
        'output-cap',
        `the call handed the host more than its output cap of ${this.options.limits.outputBytes} bytes`,
      );
    }
  }

  private mem(): Uint8Array {
    // Growing a wasm memory detaches its old buffer, and views on a detached buffer have length 0: a cheap test,
    // where reading `memory.buffer` on every host call is not.
    if (this.u8.byteLength === 0) this.u8 = new Uint8Array(this.memory.buffer);
    return this.u8;
  }

  private range(ptr: number, len: number): Uint8Array {
    const mem = this.mem();
    if (ptr < 0 || len < 0 || ptr + len > mem.byteLength) {
      throw new CallAbort('bad-argument', `pointer range ${ptr}+${len} is outside the module's memory`);
    }
    return mem;
  }

  /** Copies bytes out of the module's memory (the host never keeps a view into it). */
  private readBytes(ptr: number, len: number): Uint8Array {
    return this.range(ptr, len).slice(ptr, ptr + len);
  }

  private readString(ptr: number, len: number): string {
    const mem = this.range(ptr, len);
    if (len <= 64) {
      // Header names and most values are short ASCII: building the string directly beats TextDecoder's setup cost.
      let s = '';
      for (let i = ptr; i < ptr + len; i++) {
        const c = mem[i]!;
        if (c >= 0x80) return decoder.decode(mem.subarray(ptr, ptr + len));
        s += String.fromCharCode(c);
      }
      return s;
    }
    return decoder.decode(mem.subarray(ptr, ptr + len));
  }

  /** Writes a value into the module's buffer if it fits; returns its byte length either way. */
  private writeValue(value: string | Uint8Array, buf: number, cap: number): number {
    const mem = this.range(buf, cap);
    if (typeof value !== 'string') {
      if (value.byteLength <= cap) mem.set(value, buf);
      return value.byteLength;
    }
    const n = value.length;
    if (n <= cap) {
      let i = 0;
      for (; i < n; i++) {
        const c = value.charCodeAt(i);
        if (c >= 0x80) break;
        mem[buf + i] = c;
      }
      if (i === n) return n;
    }
    const bytes = encoder.encode(value);
    if (bytes.byteLength <= cap) mem.set(bytes, buf);
    return bytes.byteLength;
  }

  /**
   * The kernel functions that read or write Extism's per-call frame, answered by the host for directly called
   * handlers (which have none): the input is empty, output is counted against the cap and ignored, and `error_set`
   * makes the call fail with the module's message, as it does through Extism.
   */
  private frameFunctions(): Record<string, (cp: KernelContext, ...args: bigint[]) => unknown> {
    return {
      input_length: () => 0n,
      input_offset: () => 0n,
      input_load_u8: () => 0,
      input_load_u64: () => 0n,
      output_set: (_cp, _addr, length) => {
        this.countOutput(this.current(), Number(length));
      },
      error_set: (cp, addr) => {
        const state = this.current();
        const message = cp.read(addr)?.string() ?? '';
        this.countOutput(state, message.length);
        state.failMessage = message.slice(0, 4096);
      },
      error_get: () => 0n,
    };
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- Extism's own signature for host functions
  private hostFunctions(): Record<string, (callContext: any, ...args: any[]) => unknown> {
    const { policy, logger } = this.options;
    return {
      get: (_cp: unknown, field: number, namePtr: number, nameLen: number, buf: number, cap: number): number => {
        const state = this.current();
        const value = state.view.read(field, this.readString(namePtr, nameLen));
        if (value === null) return Status.NOT_FOUND;
        if (typeof value === 'number') return value;
        return this.writeValue(value, buf, cap);
      },
      set: (_cp: unknown, field: number, np: number, nl: number, vp: number, vl: number): number =>
        this.write('set', field, np, nl, vp, vl),
      add: (_cp: unknown, field: number, np: number, nl: number, vp: number, vl: number): number =>
        this.write('add', field, np, nl, vp, vl),
      remove: (_cp: unknown, field: number, namePtr: number, nameLen: number): number => {
        const state = this.current();
        return state.view.write('remove', field, this.readString(namePtr, nameLen), null);
      },
      list: (_cp: unknown, field: number, buf: number, cap: number): number => {
        const names = this.current().view.list(field);
        if (typeof names === 'number') return names;
        return this.writeValue(names.map((n) => n + '\0').join(''), buf, cap);
      },
      respond: (_cp: unknown, status: number): number => this.current().view.respond(status),
      effect: (_cp: unknown, kind: number, reqPtr: number, reqLen: number, buf: number, cap: number): number => {
        const state = this.current();
        this.countOutput(state, reqLen);
        const request = this.readString(reqPtr, reqLen);
        const counting = kind === EffectKind.COUNTER || kind === EffectKind.LEASE || kind === EffectKind.METER;
        if (counting && state.grants.counters !== true) {
          throw new CallAbort('capability', `policy ${policy} used effect ${EFFECT_NAMES[kind]} without the "counters" grant`);
        }
        if (kind === EffectKind.HTTP && state.grants.http === undefined) {
          throw new CallAbort('capability', `policy ${policy} used the HTTP effect without the "http" grant`);
        }
        if (!counting && kind !== EffectKind.HTTP) return Status.UNKNOWN_FIELD;
        const key = `${kind}:${request}`;
        let result = state.effectResults?.get(key);
        if (result === undefined && state.completeNow !== null) {
          result = state.completeNow(kind, request);
          if (result !== undefined) (state.effectResults ??= new Map()).set(key, result);
        }
        if (result !== undefined) return this.writeValue(result, buf, cap);
        (state.pendingEffects ??= new Map()).set(key, { kind, request });
        return EFFECT_PENDING;
      },
      log: (_cp: unknown, level: number, ptr: number, len: number): void => {
        this.countOutput(this.current(), len);
        const lvl = LOG_LEVELS[level] ?? 'info';
        if (logger.enabled(lvl)) logger.log(lvl, this.readString(ptr, len), { source: 'policy' });
      },
      now: (): number => Date.now(),
      metric: (_cp: unknown, np: number, nl: number, value: number, dp: number, dl: number): number => {
        const state = this.current();
        this.countOutput(state, nl + dl);
        // Dimensions: name NUL value NUL, repeated.
        const parts = dl > 0 ? this.readString(dp, dl).split('\0') : [];
        if (parts.length > 0 && parts[parts.length - 1] === '') parts.pop();
        if (parts.length % 2 !== 0) return Status.INVALID_VALUE;
        const dimensions: [string, string][] = [];
        for (let i = 0; i < parts.length; i += 2) dimensions.push([parts[i]!, parts[i + 1]!]);
        const emission = { name: this.readString(np, nl), value, dimensions };
        const { status } = checkEmission(emission);
        if (status === Status.OK) (state.metrics ??= []).push(emission);
        return status;
      },
      verify: (_cp: unknown, ap: number, al: number, kp: number, kl: number, dp: number, dl: number, sp: number, sl: number): number => {
        this.countOutput(this.current(), al + kl + dl + sl);
        // Views, not copies: verifySignature reads them before this host function returns.
        const mem = this.range(dp, dl);
        this.range(sp, sl);
        return verifySignature(this.readString(ap, al), this.readString(kp, kl), mem.subarray(dp, dp + dl), mem.subarray(sp, sp + sl));
      },
      fail: (_cp: unknown, ptr: number, len: number): void => {
        const state = this.current();
        this.countOutput(state, len);
        state.failMessage = this.readString(ptr, Math.min(len, 4096));
      },
    };
  }

  private write(op: 'set' | 'add', field: number, np: number, nl: number, vp: number, vl: number): number {
    const state = this.current();
    this.countOutput(state, nl + vl);
    const name = this.readString(np, nl);
    const value = BODY_FIELDS.has(field) ? this.readBytes(vp, vl) : this.readString(vp, vl);
    return state.view.write(op, field, name, value);
  }
}
