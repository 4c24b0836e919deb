// The generator of hostile policy modules. A case is a pure function of (seed, index): its module source (WAT, or C
// for the C families), the phase it runs in, its grants and limits, and the exchange it is given. Every module carries
// a valid descriptor (gatehouse_policy_v1), so it loads unless its start function is what is hostile, and the
// hostility is in what its handler does: every kernel and host function with arguments picked to hurt (negative and
// huge lengths, pointers past the memory, freed and unallocated kernel handles, offsets past a block, every field code
// and effect kind), in loops bounded and not, deep recursion, memory grown to the cap and past it, kernel blocks
// allocated with and without free, bulk copies and fills, data segments, calls that fail and go on.
//
// The first cases of every run sweep the ABI: one case per kernel function, one per host function, then one per
// family; later cases pick a family by weight. So even a short run calls every function the ABI has.

import { EffectKind, Field, KERNEL_FUNCTIONS, PHASE_EXPORTS, type Phase } from '../../../abi/index.ts';
import type { Grants, Limits } from '../../../runtime/policy-host/instance.ts';
import { watDescriptor } from '../policies.ts';
import { dataPool, ROLES, SLOW_RSA_BYTES } from './data-pool.ts';
import { caseRng, type Rng } from './prng.ts';
import { allImports, callStmt, f64, HOST_NAMES, i32, i64, KERNEL_NAMES, layout, signatureOf, type Placed } from './wat-text.ts';
import { C_FAMILIES, generateC } from './c-templates.ts';

export type ExchangeShape = 'small' | 'big';

export interface FuzzCase {
  seed: number;
  index: number;
  family: string;
  /** What the family chose, in a word or two (a function, a variant): reports group breaks by family and variant. */
  variant: string;
  /** What the family chose, in words, for reports. */
  detail: string;
  lang: 'wat' | 'c';
  source: string;
  phase: Phase;
  grants: Grants;
  limits: Partial<Limits>;
  exchange: ExchangeShape;
  /** Calls of the handler, each on a fresh exchange: later calls meet what earlier ones left (globals, a recycled instance). */
  calls: number;
  /** Every call must fail: the handler reports a failure (fail, error_set) on every path before it returns. */
  mustFail: boolean;
  /** Functions the module imports and calls, `kernel:alloc`, `host:get` (the coverage check reads them). */
  uses: string[];
}

/** Where generated modules keep things in their memory (the descriptor's text sits at 1024, see watDescriptor). */
const SCRATCH = 256;
const POOL_BASE = 2048;
/** The big scratch area: effect requests built at run time, fills and copies. Every module has at least 2 pages. */
const BIG = 65536;

const FIELD_CODES = [...Object.values(Field), 0, 17, -1, 0x7fffffff, -0x80000000];
const EFFECT_KINDS = [...Object.values(EffectKind), 0, 5, -1, 0x7fffffff];
const LOG_LEVELS = [-1, 0, 1, 2, 3, 4, 5, 255];
const STATUSES = [0, 100, 199, 200, 204, 302, 401, 599, 600, -1, 0x7fffffff];
const METRIC_VALUES = [1, 0, -1, NaN, Infinity, -Infinity, 1e308, 5e-324];
/** i64 lengths, sizes and handles: the ones the brief names, plus kernel addresses (block index << 48). */
const I64_VALUES: bigint[] = [
  0n, 1n, -1n, 0x7fffffffn, 0xffffffffn, 0x7fffffffffffffffn, -0x8000000000000000n, 1n << 48n, (1n << 48n) + 0xffffffffffffn,
  2n << 48n, 0xffffn << 48n, 16777216n, 16777217n, 8388608n, 0x100000000n,
];

/** Accumulates one WAT module. */
class Module {
  body: string[] = [];
  helpers: string[] = [];
  data: string[] = [];
  globals: string[] = [];
  start: string[] | null = null;
  uses = new Set<string>();
  details: string[] = [];
  /** A short name for what the family chose (a function, a variant): breaks are grouped by it in reports. */
  variant = '';
  /** Set for the cases that re-check a known finding (KNOWN_FINDINGS): the family takes this variant, at its worst. */
  force: string | null = null;
  memory = { initial: 2, maximum: null as number | null };
  requestBody = false;
  responseBody = false;
  wasi: string[] = [];
  private labels = 0;
  pool!: Record<string, Placed>;

  constructor(readonly rng: Rng) {}

  get memBytes(): number {
    return this.memory.initial * 65536;
  }

  label(): string {
    return `l${this.labels++}`;
  }

  k(name: string, args: string[]): string {
    this.uses.add(`kernel:${name}`);
    return callStmt('kernel', name, args);
  }

  h(name: string, args: string[]): string {
    this.uses.add(`host:${name}`);
    return callStmt('host', name, args);
  }

  /** The kernel preamble (a live block and a freed one), counted as uses of alloc and free. */
  preamble(): string {
    this.uses.add('kernel:alloc');
    this.uses.add('kernel:free');
    return KERNEL_PREAMBLE;
  }

  /** A kernel call as an expression (its result kept). */
  kx(name: string, args: string[]): string {
    this.uses.add(`kernel:${name}`);
    return `(call $k_${name} ${args.join(' ')})`;
  }

  /** A variant: the forced one when it is among the options, else one at random. */
  choose<T extends string>(options: readonly T[]): T {
    return this.force !== null && (options as readonly string[]).includes(this.force) ? (this.force as T) : this.rng.pick(options);
  }

  /** `worst` when the case re-checks a known finding, else one of `options` at random. */
  worst<T>(worst: T, options: readonly T[]): T {
    return this.force !== null ? worst : this.rng.pick(options);
  }

  note(text: string): void {
    this.details.push(text);
  }

  /** A (ptr, len) pair: mostly a pool entry of `role`, sometimes hostile numbers. */
  pair(role: keyof typeof ROLES): [string, string] {
    if (this.rng.chance(0.7)) {
      const key = this.rng.pick(ROLES[role]);
      const at = this.pool[key]!;
      return [i32(at.ptr), i32(at.len)];
    }
    return [this.ptr(), this.len()];
  }

  /** A (buf, cap) pair: mostly the scratch buffer with a small or zero capacity, sometimes hostile. */
  buffer(): [string, string] {
    if (this.rng.chance(0.6)) return [i32(SCRATCH), i32(this.rng.pick([0, 1, 8, 64, 512]))];
    return [this.ptr(), this.len()];
  }

  ptr(): string {
    const m = this.memBytes;
    return i32(this.rng.pick([0, 1, -1, 0x7fffffff, -0x80000000, m - 1, m, m + 1, m - 8, 16 << 20, BIG]));
  }

  len(): string {
    const m = this.memBytes;
    return i32(this.rng.pick([0, 1, -1, 0x7fffffff, -0x80000000, 0xffff, 0x10000, m, m - BIG, m + 1, 1 << 20]));
  }

  i32Of(values: readonly number[]): string {
    // Sometimes the value walks with the loop counter, so a loop sweeps codes instead of repeating one.
    if (this.rng.chance(0.15)) return `(i32.sub (local.get $i) (i32.const 2))`;
    return i32(this.rng.pick(values));
  }

  /** An i64 argument of a kernel function: a hostile constant, or a handle that is valid, freed, or past its block. */
  i64Arg(): string {
    switch (this.rng.below(10)) {
      case 5:
        return '(local.get $blk)';
      case 6:
        return '(local.get $freed)';
      case 7:
        return `(i64.add (local.get $blk) ${i64(this.rng.pick([63, 64, 65, 4096, 0xffffffffffff]))})`;
      case 8:
        return '(i64.add (local.get $blk) (i64.extend_i32_u (local.get $i)))';
      case 9:
        return '(local.get $h)';
      default:
        return i64(this.rng.pick(I64_VALUES));
    }
  }

  /** Statements repeated by `shape`. */
  loop(stmts: string[], shape: LoopShape): string {
    if (shape.kind === 'once') return stmts.join('\n    ');
    const l = this.label();
    const step = '(local.set $i (i32.add (local.get $i) (i32.const 1)))';
    if (shape.kind === 'unbounded') {
      return `(local.set $i (i32.const 0))
    (loop $${l}
      ${stmts.join('\n      ')}
      ${step}
      (br $${l}))`;
    }
    return `(local.set $i (i32.const 0))
    (block $${l}_done (loop $${l}
      (br_if $${l}_done (i32.ge_u (local.get $i) (i32.const ${shape.n})))
      ${stmts.join('\n      ')}
      ${step}
      (br $${l})))`;
  }
}

type LoopShape = { kind: 'once' } | { kind: 'bounded'; n: number } | { kind: 'unbounded' };

function loopShape(rng: Rng): LoopShape {
  return rng.weighted<LoopShape>([
    [30, { kind: 'once' }],
    [12, { kind: 'bounded', n: 16 }],
    [12, { kind: 'bounded', n: 4096 }],
    [14, { kind: 'bounded', n: 100_000 }],
    [12, { kind: 'bounded', n: 10_000_000 }],
    [20, { kind: 'unbounded' }],
  ]);
}

function shapeText(s: LoopShape): string {
  return s.kind === 'once' ? 'once' : s.kind === 'unbounded' ? 'in an unbounded loop' : `${s.n} times`;
}

/** Allocates a 64-byte block ($blk) and a freed one ($freed): kernel arguments point at them, or just past them. */
const KERNEL_PREAMBLE = `(local.set $blk (call $k_alloc (i64.const 64)))
    (local.set $freed (call $k_alloc (i64.const 16)))
    (call $k_free (local.get $freed))
    (local.set $h (local.get $blk))`;

// ---------------------------------------------------------------------------------------------------------------
// Families

type Family = (m: Module, c: CaseSettings, pick?: string) => void;

interface CaseSettings {
  phase: Phase;
  grants: Grants;
  limits: Partial<Limits>;
  exchange: ExchangeShape;
  calls: number;
  mustFail: boolean;
}

const HTTP_GRANT: Grants = { http: { allowedHosts: ['127.0.0.1'] } };

function kernelCall(m: Module, _c: CaseSettings, fn = m.rng.pick(KERNEL_NAMES)): void {
  const sig = signatureOf('kernel', fn);
  m.variant = fn;
  const args = sig.params.map((p) => (p === 'i64' ? m.i64Arg() : m.i32Of([0, 1, -1, 255, 256, 0x7fffffff])));
  const shape = loopShape(m.rng);
  m.note(`kernel ${fn}(${args.join(', ')}) ${shapeText(shape)}`);
  m.body.push(m.preamble(), m.loop([m.k(fn, args), `(local.set $h (i64.add (local.get $h) (i64.const 1)))`], shape));
}

function hostArgs(m: Module, fn: string): string[] {
  const field = () => m.i32Of(FIELD_CODES);
  switch (fn) {
    case 'get':
      return [field(), ...m.pair('name'), ...m.buffer()];
    case 'set':
    case 'add':
      return [field(), ...m.pair('name'), ...m.pair('value')];
    case 'remove':
      return [field(), ...m.pair('name')];
    case 'list':
      return [field(), ...m.buffer()];
    case 'respond':
      return [m.i32Of(STATUSES)];
    case 'effect':
      return [m.i32Of(EFFECT_KINDS), ...m.pair('request'), ...m.buffer()];
    case 'log':
      return [m.i32Of(LOG_LEVELS), ...m.pair('message')];
    case 'now':
      return [];
    case 'fail':
      return [...m.pair('message')];
    case 'verify':
      return [...m.pair('alg'), ...m.pair('key'), ...m.pair('data'), ...m.pair('sig')];
    case 'metric':
      return [...m.pair('metric'), f64(m.rng.pick(METRIC_VALUES)), ...m.pair('dims')];
    default:
      // A host function added to HOST_FUNCTIONS without a case here still gets called, with hostile i32s.
      return signatureOf('host', fn).params.map((p) => (p === 'f64' ? f64(m.rng.pick(METRIC_VALUES)) : p === 'i64' ? m.i64Arg() : m.len()));
  }
}

function hostCall(m: Module, c: CaseSettings, fn = m.rng.pick(HOST_NAMES)): void {
  const args = hostArgs(m, fn);
  m.variant = fn;
  const shape = loopShape(m.rng);
  if (fn === 'effect') c.grants = m.rng.pick<Grants>([{}, { counters: true }, HTTP_GRANT, { counters: true, ...HTTP_GRANT }]);
  m.note(`host ${fn}(${args.join(', ')}) ${shapeText(shape)}`);
  m.body.push(m.loop([m.h(fn, args)], shape));
}

/** Kernel alloc in a loop, with or without free, sometimes touching every page so the memory is really used. */
function allocLoop(m: Module): void {
  // At its worst, the penetration test's shape: 40 blocks of 8 MiB under a 16 MiB cap, none freed.
  const size = m.worst(8 << 20, [1, 4096, 65536, 1 << 20, 8 << 20, 16 << 20, (16 << 20) + 1, -1, 0x7fffffffffffffff, 0]);
  const free = m.force !== null ? m.force === 'free' : m.rng.chance(0.4);
  const touch = size > 0 && size <= 16 << 20 && m.worst(false, [true, true, true, false, false]);
  const shape = m.worst<LoopShape>({ kind: 'bounded', n: 40 }, [{ kind: 'bounded', n: 40 }, { kind: 'bounded', n: 1000 }, { kind: 'bounded', n: 100_000 }, { kind: 'unbounded' }]);
  m.variant = `${free ? 'free' : 'keep'}${touch ? '-touch' : ''}`;
  m.note(`kernel alloc(${size}) ${shapeText(shape)}${free ? ', freed each time' : ''}${touch ? ', every page written' : ''}`);
  const stmts = [`(local.set $h ${m.kx('alloc', [i64(size)])})`];
  if (touch) {
    const l = m.label();
    // One store per 4 KiB page: the block's memory becomes resident, as a real policy's buffer would.
    stmts.push(`(local.set $x (i64.const 0))
      (block $${l}_done (loop $${l}
        (br_if $${l}_done (i64.ge_u (local.get $x) ${i64(size)}))
        ${m.k('store_u8', ['(i64.add (local.get $h) (local.get $x))', i32(0xab)])}
        (local.set $x (i64.add (local.get $x) (i64.const 4096)))
        (br $${l})))`);
  }
  if (free) stmts.push(m.k('free', ['(local.get $h)']));
  m.body.push(m.loop(stmts, shape));
}

/** Logs through the kernel (log_*), through the host (log), or makes the kernel log its own errors, in a loop. */
function logFlood(m: Module): void {
  const variant = m.choose(['kernel-log', 'kernel-log-bad-handle', 'host-log', 'alloc-over-cap', 'var-set-bad'] as const);
  m.variant = variant;
  const level = m.rng.pick(['log_trace', 'log_debug', 'log_info', 'log_warn', 'log_error']);
  const shape = m.worst<LoopShape>({ kind: 'bounded', n: 100_000 }, [{ kind: 'bounded', n: 100 }, { kind: 'bounded', n: 100_000 }, { kind: 'unbounded' }]);
  const stmts: string[] = [];
  if (variant === 'kernel-log') {
    // The kernel frees a block once logged, so each line needs a new one.
    const size = m.worst(1024, [0, 1, 1024, 65536, 1 << 20, 8 << 20]);
    stmts.push(`(local.set $h ${m.kx('alloc', [i64(size)])})`, m.k(level, ['(local.get $h)']));
    m.note(`kernel ${level} of a ${size}-byte block (NUL bytes) ${shapeText(shape)}`);
  } else if (variant === 'kernel-log-bad-handle') {
    const handle = m.rng.pick(['(local.get $freed)', i64(0xffffn << 48n), i64(-1n)]);
    stmts.push(m.k(level, [handle]));
    m.note(`kernel ${level} with a bad handle ${handle} ${shapeText(shape)} (the kernel logs an error for each)`);
  } else if (variant === 'host-log') {
    const len = m.rng.pick([0, 1, 100, 4096, m.memBytes - BIG]);
    stmts.push(m.h('log', [m.i32Of(LOG_LEVELS), i32(BIG), i32(len)]));
    m.note(`host log of ${len} bytes ${shapeText(shape)}`);
  } else if (variant === 'alloc-over-cap') {
    stmts.push(m.k('alloc', [i64(m.rng.pick([8 << 20, 16 << 20]))]));
    m.note(`kernel alloc of 8-16 MiB ${shapeText(shape)} (past the cap the kernel logs an error for each)`);
  } else {
    stmts.push(m.k('var_set', ['(local.get $freed)', '(local.get $blk)']));
    m.note(`kernel var_set with a freed key block ${shapeText(shape)} (the kernel logs an error for each)`);
  }
  m.body.push(m.preamble(), m.loop(stmts, shape));
}

/** output_set with lengths that are negative or huge, between writes that hand the host real bytes. */
function outputSet(m: Module): void {
  const lengths = [-1n, -(1n << 20n), -0x8000000000000000n, 0x7fffffffffffffffn, 1n << 40n, 64n, 0n];
  // At its worst: a negative length, then real bytes, again and again (the penetration test's cap bypass).
  const first = m.worst(-(1n << 20n), lengths);
  m.variant = first < 0n ? 'negative-length' : 'length';
  const write = m.worst(true, [true, true, true, false, false]);
  const bodyLen = m.worst(1 << 19, [1 << 16, 1 << 19, (1 << 20) - 1]);
  m.memory.initial = Math.max(m.memory.initial, Math.ceil((BIG + bodyLen) / 65536));
  const stmts = [m.k('output_set', ['(local.get $blk)', i64(first)])];
  if (write) stmts.push(m.h('set', [i32(Field.RESPONSE_BODY), i32(0), i32(0), i32(BIG), i32(bodyLen)]));
  const shape = m.worst<LoopShape>({ kind: 'bounded', n: 64 }, [{ kind: 'once' }, { kind: 'bounded', n: 64 }, { kind: 'bounded', n: 4096 }]);
  m.note(`kernel output_set(blk, ${first})${write ? ` then host set RESPONSE_BODY of ${bodyLen} bytes` : ''} ${shapeText(shape)}`);
  m.body.push(m.preamble(), m.loop(stmts, shape));
}

/** A handler that reports a failure (error_set or fail) and then keeps going: writes, logs, responds, loops. */
function failThenContinue(m: Module, c: CaseSettings): void {
  const how = m.rng.pick(['error_set', 'fail', 'error_set-bad-handle', 'fail-hostile'] as const);
  m.body.push(m.preamble());
  if (how === 'error_set') {
    // The message block holds the pool's failure text, copied byte by byte.
    const at = m.pool.failMsg!;
    const l = m.label();
    m.body.push(`(local.set $h ${m.kx('alloc', [i64(at.len)])})
    (local.set $i (i32.const 0))
    (block $${l}_done (loop $${l}
      (br_if $${l}_done (i32.ge_u (local.get $i) ${i32(at.len)}))
      ${m.k('store_u8', ['(i64.add (local.get $h) (i64.extend_i32_u (local.get $i)))', `(i32.load8_u (i32.add (local.get $i) ${i32(at.ptr)}))`])}
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $${l})))`);
    m.body.push(m.k('error_set', ['(local.get $h)']));
  } else if (how === 'error_set-bad-handle') {
    m.body.push(m.k('error_set', [m.rng.pick(['(local.get $freed)', i64(0), i64(0xffffn << 48n)])]));
  } else {
    m.body.push(m.h('fail', how === 'fail' ? [i32(m.pool.failMsg!.ptr), i32(m.pool.failMsg!.len)] : m.pair('message')));
  }
  const after = m.rng.pick(['writes', 'respond', 'trap', 'loop', 'second-fail'] as const);
  m.variant = `${how}-${after}`;
  if (after === 'writes') m.body.push(m.h('set', [i32(Field.REQUEST_HEADER), i32(m.pool.hdr!.ptr), i32(m.pool.hdr!.len), i32(m.pool.val!.ptr), i32(1)]));
  if (after === 'respond') m.body.push(m.h('respond', [i32(m.rng.pick([200, 401]))]));
  if (after === 'trap') m.body.push('unreachable');
  if (after === 'loop') m.body.push(m.loop([m.h('now', [])], { kind: 'unbounded' }));
  if (after === 'second-fail') m.body.push(m.h('fail', m.pair('message')));
  m.note(`${how}, then ${after}`);
  // Every path reports a failure first (a bad-handle error_set still fails the call, with an empty message).
  c.mustFail = true;
}

/** respond twice, respond then write, respond with hostile statuses; sometimes trapping afterwards. */
function respondTwice(m: Module, c: CaseSettings): void {
  const a = m.rng.pick(STATUSES);
  const b = m.rng.pick(STATUSES);
  m.body.push(m.h('respond', [i32(a)]), m.h('set', [i32(Field.RESPONSE_HEADER), i32(m.pool.hdr!.ptr), i32(m.pool.hdr!.len), i32(m.pool.val!.ptr), i32(1)]), m.h('respond', [i32(b)]));
  const trap = m.rng.chance(0.3);
  m.variant = trap ? 'then-trap' : 'twice';
  if (trap) m.body.push('unreachable');
  c.phase = m.rng.pick(['inbound', 'backend', 'outbound', 'on-error'] as const);
  m.note(`respond(${a}), set a response header, respond(${b})${trap ? ', then trap' : ''}`);
}

/**
 * Where the request goes: BACKEND_URL set to another host (no grant asked), with or without a path change, in the
 * phases that may write it. Network access without the http grant is what the oracle's backend-url check looks for.
 */
function backendUrl(m: Module, c: CaseSettings): void {
  const url = m.choose(['urlEvil', 'urlHttps', 'urlCreds', 'urlQuery'] as const);
  m.variant = url;
  c.phase = m.rng.pick(['inbound', 'backend'] as const);
  const P = m.pool;
  m.body.push(m.h('set', [i32(Field.BACKEND_URL), i32(0), i32(0), i32(P[url]!.ptr), i32(P[url]!.len)]));
  const path = m.rng.chance(0.5);
  if (path) m.body.push(m.h('set', [i32(Field.REQUEST_PATH), i32(0), i32(0), i32(P.pathOk!.ptr), i32(P.pathOk!.len)]));
  m.note(`set BACKEND_URL to ${url}${path ? ' and the path' : ''} in ${c.phase}, with no grant`);
}

/** The effect request builder: `{"method":"POST","url":"<config url>/<4 letters of n>","body":"fuzz"}` at BIG. */
function httpRequestHelper(m: Module): void {
  const pre = m.pool.httpPrefix!;
  const suf = m.pool.httpSuffix!;
  const url = m.pool.configUrl!;
  m.uses.add('host:get');
  m.helpers.push(`(func $http_req (param $n i32) (result i32) (local $len i32) (local $at i32)
    (memory.copy (i32.const ${BIG}) (i32.const ${pre.ptr}) (i32.const ${pre.len}))
    (local.set $len (call $h_get (i32.const ${Field.CONFIG}) (i32.const ${url.ptr}) (i32.const ${url.len}) (i32.const ${BIG + pre.len}) (i32.const 512)))
    (if (i32.lt_s (local.get $len) (i32.const 0)) (then (local.set $len (i32.const 0))))
    (local.set $at (i32.add (i32.const ${BIG + pre.len}) (local.get $len)))
    (i32.store8 (local.get $at) (i32.const 47))
    (i32.store8 (i32.add (local.get $at) (i32.const 1)) (i32.add (i32.const 97) (i32.and (i32.shr_u (local.get $n) (i32.const 12)) (i32.const 15))))
    (i32.store8 (i32.add (local.get $at) (i32.const 2)) (i32.add (i32.const 97) (i32.and (i32.shr_u (local.get $n) (i32.const 8)) (i32.const 15))))
    (i32.store8 (i32.add (local.get $at) (i32.const 3)) (i32.add (i32.const 97) (i32.and (i32.shr_u (local.get $n) (i32.const 4)) (i32.const 15))))
    (i32.store8 (i32.add (local.get $at) (i32.const 4)) (i32.add (i32.const 97) (i32.and (local.get $n) (i32.const 15))))
    (memory.copy (i32.add (local.get $at) (i32.const 5)) (i32.const ${suf.ptr}) (i32.const ${suf.len}))
    (i32.add (i32.sub (i32.add (local.get $at) (i32.const 5)) (i32.const ${BIG})) (i32.const ${suf.len})))`);
}

/** Effects: many distinct HTTP requests, requests that change every round, hostile kinds and requests, counters. */
function effects(m: Module, c: CaseSettings): void {
  const variant = m.choose(['http-fanout', 'changing', 'hostile', 'lease-flood', 'counter-flood'] as const);
  m.variant = variant;
  m.memory.initial = Math.max(m.memory.initial, 3);
  if (variant === 'http-fanout' || variant === 'changing') {
    httpRequestHelper(m);
    c.grants = HTTP_GRANT;
    if (variant === 'http-fanout') {
      const n = m.worst(1000, [4, 64, 1000, 100_000]);
      m.body.push(m.loop([m.h('effect', [i32(EffectKind.HTTP), i32(BIG), '(call $http_req (local.get $i))', i32(SCRATCH), i32(512)])], { kind: 'bounded', n }));
      m.note(`${n} distinct HTTP effects in one call`);
    } else {
      // A global survives between rounds (the instance stays), so every round asks for a new request.
      m.globals.push('(global $round (mut i32) (i32.const 0))');
      m.body.push('(global.set $round (i32.add (global.get $round) (i32.const 1)))');
      m.body.push(m.h('effect', [i32(EffectKind.HTTP), i32(BIG), '(call $http_req (global.get $round))', i32(SCRATCH), i32(512)]));
      m.note('an HTTP effect whose request changes every round');
    }
    return;
  }
  if (variant === 'hostile') {
    c.grants = m.rng.pick<Grants>([{}, { counters: true }, HTTP_GRANT]);
    const shape = loopShape(m.rng);
    const args = [m.i32Of(EFFECT_KINDS), ...m.pair('request'), ...m.buffer()];
    m.body.push(m.loop([m.h('effect', args)], shape));
    m.note(`effect(${args.join(', ')}) ${shapeText(shape)} with grants ${JSON.stringify(c.grants)}`);
    return;
  }
  // Distinct keys: each a new counter or lease slot held in the gateway's memory.
  c.grants = { counters: true };
  const kind = variant === 'lease-flood' ? EffectKind.LEASE : EffectKind.COUNTER;
  const req = variant === 'lease-flood' ? '{"key":"k0000","limit":20,"ttlSeconds":300}' : '{"key":"k0000","limit":100,"periodSeconds":60}';
  const bytes = new TextEncoder().encode(req);
  const at = BIG + 1024;
  m.data.push(`  (data (i32.const ${at}) "${req.replace(/"/g, '\\22')}")`);
  const keyAt = at + req.indexOf('k0000') + 1;
  const n = m.rng.pick([1000, 100_000]);
  m.body.push(
    m.loop(
      [
        `(i32.store8 (i32.const ${keyAt}) (i32.add (i32.const 97) (i32.and (i32.shr_u (local.get $i) (i32.const 12)) (i32.const 15))))`,
        `(i32.store8 (i32.const ${keyAt + 1}) (i32.add (i32.const 97) (i32.and (i32.shr_u (local.get $i) (i32.const 8)) (i32.const 15))))`,
        `(i32.store8 (i32.const ${keyAt + 2}) (i32.add (i32.const 97) (i32.and (i32.shr_u (local.get $i) (i32.const 4)) (i32.const 15))))`,
        `(i32.store8 (i32.const ${keyAt + 3}) (i32.add (i32.const 97) (i32.and (local.get $i) (i32.const 15))))`,
        m.h('effect', [i32(kind), i32(at), i32(bytes.length), i32(SCRATCH), i32(512)]),
      ],
      { kind: 'bounded', n },
    ),
  );
  m.note(`${n} ${variant === 'lease-flood' ? 'LEASE' : 'COUNTER'} effects with distinct keys`);
}

/** memory.grow to the cap and past it, then fills and copies over all of it. */
function memoryGrow(m: Module, c: CaseSettings): void {
  const step = m.rng.pick([1, 16, 256, 65536, -1]);
  const maximum = m.rng.pick([null, m.memory.initial, 65536]);
  m.memory.maximum = maximum;
  const then = m.rng.pick(['fill', 'copy', 'fill-past-end', 'trap', 'nothing', 'grow-again'] as const);
  m.variant = then;
  const l = m.label();
  m.body.push(`(block $${l}_done (loop $${l}
      (br_if $${l}_done (i32.eq (memory.grow (i32.const ${step})) (i32.const -1)))
      (br $${l})))`);
  const size = '(i32.mul (memory.size) (i32.const 65536))';
  if (then === 'fill') m.body.push(m.loop([`(memory.fill (i32.const 0) (i32.const 171) ${size})`], m.rng.pick<LoopShape>([{ kind: 'once' }, { kind: 'unbounded' }])));
  if (then === 'copy') m.body.push(m.loop([`(memory.copy (i32.const 1) (i32.const 0) (i32.sub ${size} (i32.const 1)))`], m.rng.pick<LoopShape>([{ kind: 'once' }, { kind: 'unbounded' }])));
  if (then === 'fill-past-end') m.body.push(`(memory.fill (i32.const 0) (i32.const 1) (i32.add ${size} (i32.const 1)))`);
  if (then === 'trap') m.body.push('unreachable');
  if (then === 'grow-again') m.body.push('(drop (memory.grow (i32.const 0x7fffffff)))', '(drop (memory.grow (i32.const -1)))');
  if (m.rng.chance(0.3)) c.limits = { ...c.limits, memoryBytes: m.rng.pick([2 << 20, 32 << 20]) };
  m.note(`memory.grow(${step}) until it fails (declared maximum ${maximum ?? 'none'}), then ${then}`);
}

/** Recursion: unbounded (stack overflow), deep and bounded, with a host or kernel call at every level, big frames. */
function recursion(m: Module): void {
  const variant = m.rng.pick(['unbounded', 'unbounded-host-call', 'deep-bounded', 'big-frames', 'mutual'] as const);
  m.variant = variant;
  if (variant === 'unbounded' || variant === 'unbounded-host-call') {
    const call = variant === 'unbounded-host-call' ? m.rng.pick([m.h('now', []), m.k('alloc', [i64(1)]), m.h('get', [i32(Field.REQUEST_PATH), i32(0), i32(0), i32(SCRATCH), i32(64)])]) : '';
    m.helpers.push(`(func $rec (param $d i32) (result i32) ${call} (i32.add (call $rec (i32.add (local.get $d) (i32.const 1))) (i32.const 1)))`);
    m.body.push('(drop (call $rec (i32.const 0)))');
  } else if (variant === 'deep-bounded') {
    const depth = m.rng.pick([1000, 10_000, 50_000]);
    m.helpers.push(`(func $rec (param $d i32) (result i32) (if (result i32) (i32.eqz (local.get $d)) (then (i32.const 0)) (else (i32.add (call $rec (i32.sub (local.get $d) (i32.const 1))) (i32.const 1)))))`);
    m.body.push(m.loop([`(drop (call $rec (i32.const ${depth})))`], m.rng.pick<LoopShape>([{ kind: 'once' }, { kind: 'unbounded' }])));
  } else if (variant === 'big-frames') {
    const locals = Array.from({ length: 64 }, (_, i) => `(local $v${i} v128)`).join(' ');
    m.helpers.push(`(func $rec (param $d i32) (result i32) ${locals}
      (local.set $v0 (v128.load (i32.const ${SCRATCH})))
      (v128.store (i32.const ${SCRATCH}) (local.get $v0))
      (i32.add (call $rec (i32.add (local.get $d) (i32.const 1))) (i32.const 1)))`);
    m.body.push('(drop (call $rec (i32.const 0)))');
  } else {
    m.helpers.push(`(func $ping (param $d i32) (result i32) (call $pong (i32.add (local.get $d) (i32.const 1))))`);
    m.helpers.push(`(func $pong (param $d i32) (result i32) ${m.h('now', [])} (call $ping (local.get $d)))`);
    m.body.push('(drop (call $ping (i32.const 0)))');
  }
  m.note(`recursion: ${variant}`);
}

/** A start function (top-level code) that calls the host, loops, allocates kernel blocks, or grows memory. */
function startFunction(m: Module): void {
  const variant = m.rng.pick(['host-call', 'kernel-alloc-loop', 'spin', 'grow', 'kernel-log', 'host-log'] as const);
  m.variant = variant;
  const start: string[] = ['(local $i i32) (local $h i64) (local $x i64)'];
  if (variant === 'host-call') {
    const fn = m.rng.pick(['get', 'respond', 'set', 'effect', 'list', 'fail', 'now']);
    start.push(m.h(fn, hostArgs(m, fn)));
  }
  if (variant === 'kernel-alloc-loop') {
    const size = m.rng.pick([1 << 20, 8 << 20, 16 << 20]);
    start.push(m.loop([m.k('alloc', [i64(size)])], m.rng.pick<LoopShape>([{ kind: 'bounded', n: 40 }, { kind: 'unbounded' }])));
  }
  if (variant === 'spin') start.push('(loop $spin (br $spin))');
  if (variant === 'grow') start.push('(block $g_done (loop $g (br_if $g_done (i32.eq (memory.grow (i32.const 1)) (i32.const -1))) (br $g)))', '(memory.fill (i32.const 0) (i32.const 1) (i32.mul (memory.size) (i32.const 65536)))');
  if (variant === 'kernel-log') start.push(m.loop([`(local.set $h ${m.kx('alloc', [i64(65536)])})`, m.k('log_error', ['(local.get $h)'])], { kind: 'bounded', n: 1000 }));
  if (variant === 'host-log') start.push(m.h('log', [i32(2), i32(m.pool.logMsg!.ptr), i32(m.pool.logMsg!.len)]));
  m.start = start;
  // The handler itself is harmless: what is under test is instantiation, at load and after every recycle.
  m.body.push(m.h('now', []));
  m.note(`start function: ${variant}`);
}

/** Data segments: many, large, passive ones copied in with memory.init in a loop, dropped then used. */
function dataSegments(m: Module): void {
  const variant = m.rng.pick(['many-active', 'fill-initial', 'passive-init-loop', 'drop-then-init', 'past-end'] as const);
  m.variant = variant;
  if (variant === 'many-active') {
    for (let k = 0; k < 100; k++) m.data.push(`  (data (i32.const ${BIG + k * 600}) "${'z'.repeat(512)}")`);
    m.body.push(m.h('now', []));
  } else if (variant === 'fill-initial') {
    m.memory.initial = 4;
    m.data.push(`  (data (i32.const ${4 * 65536 - 8192}) "${'\\ff'.repeat(8192)}")`);
    m.body.push(m.h('log', [i32(2), i32(4 * 65536 - 8192), i32(8192)]));
  } else if (variant === 'passive-init-loop' || variant === 'drop-then-init') {
    m.data.push(`  (data $passive "${'p'.repeat(4096)}")`);
    if (variant === 'drop-then-init') m.body.push('(data.drop $passive)');
    m.body.push(m.loop(['(memory.init $passive (i32.and (i32.mul (local.get $i) (i32.const 4096)) (i32.const 0xffff)) (i32.const 0) (i32.const 4096))'], m.rng.pick<LoopShape>([{ kind: 'bounded', n: 100_000 }, { kind: 'unbounded' }])));
  } else {
    // Refused at load: the segment does not fit the memory it declares.
    m.data.push(`  (data (i32.const ${m.memBytes - 4}) "12345678")`);
    m.body.push(m.h('now', []));
  }
  m.note(`data segments: ${variant}`);
}

/** Host calls whose cost grows with their arguments or with the exchange, each charged one fuel unit today. */
function hostAmplifier(m: Module, c: CaseSettings): void {
  const variant = m.choose([
    'query-param-small-buffer',
    'huge-name',
    'list-zero-cap',
    'header-add',
    'query-add',
    'variable-set',
    'verify-rsa',
    'metric',
    'remove-long-name',
    'body-read',
    'config-whole',
  ] as const);
  m.variant = variant;
  const shape = m.worst<LoopShape>({ kind: 'unbounded' }, [{ kind: 'bounded', n: 10_000 }, { kind: 'unbounded' }]);
  const P = m.pool;
  let call: string;
  c.exchange = 'big';
  switch (variant) {
    case 'query-param-small-buffer':
      call = m.h('get', [i32(Field.REQUEST_QUERY_PARAM), i32(P.q!.ptr), i32(P.q!.len), i32(SCRATCH), i32(0)]);
      break;
    case 'huge-name':
      m.memory.initial = 256;
      call = m.h('get', [i32(m.rng.pick([Field.REQUEST_HEADER, Field.VARIABLE, Field.CONTEXT])), i32(0), i32(m.memBytes), i32(SCRATCH), i32(0)]);
      break;
    case 'list-zero-cap':
      call = m.h('list', [i32(m.rng.pick([Field.REQUEST_HEADER, Field.REQUEST_QUERY_PARAM])), i32(SCRATCH), i32(0)]);
      break;
    case 'header-add':
      call = m.h('add', [i32(m.rng.pick([Field.REQUEST_HEADER, Field.RESPONSE_HEADER])), i32(P.hdr!.ptr), i32(P.hdr!.len), i32(P.val!.ptr), i32(P.val!.len)]);
      break;
    case 'query-add':
      call = m.h('add', [i32(Field.REQUEST_QUERY_PARAM), i32(P.q!.ptr), i32(P.q!.len), i32(P.val!.ptr), i32(P.val!.len)]);
      break;
    case 'variable-set':
      // The name is 4 bytes of the loop counter: a new variable every time.
      m.helpers.push('(func $counter_name (param $i i32) (i32.store (i32.const 128) (local.get $i)))');
      call = `(call $counter_name (local.get $i)) ${m.h('set', [i32(Field.VARIABLE), i32(128), i32(4), i32(P.val!.ptr), i32(P.val!.len)])}`;
      break;
    case 'verify-rsa':
      call = m.h('verify', [i32(P.algRS!.ptr), i32(P.algRS!.len), i32(P.jwkRsaHugeE!.ptr), i32(P.jwkRsaHugeE!.len), i32(P.signed!.ptr), i32(P.signed!.len), i32(P.sig!.ptr), i32(SLOW_RSA_BYTES)]);
      break;
    case 'metric':
      call = m.h('metric', [i32(P.metricName!.ptr), i32(P.metricName!.len), f64(1), i32(P.dims!.ptr), i32(P.dims!.len)]);
      break;
    case 'remove-long-name':
      call = m.h('remove', [i32(Field.REQUEST_HEADER), i32(P.longName!.ptr), i32(P.longName!.len)]);
      break;
    case 'body-read':
      m.requestBody = true;
      m.responseBody = true;
      call = m.h('get', [i32(m.rng.pick([Field.REQUEST_BODY, Field.RESPONSE_BODY])), i32(0), i32(0), i32(SCRATCH), i32(0)]);
      break;
    default:
      call = m.h('get', [i32(Field.CONFIG), i32(0), i32(0), i32(SCRATCH), i32(0)]);
  }
  m.body.push(m.loop([call], shape));
  m.note(`${variant} ${shapeText(shape)} on a big exchange`);
}

/** SIMD, reference types, multi-value, saturating conversions, tables: proposals the host accepts, used at the edges. */
function features(m: Module): void {
  const variant = m.choose(['simd-at-end', 'call-indirect-bad', 'multi-value', 'trunc-sat', 'table-grow'] as const);
  m.variant = variant;
  if (variant === 'simd-at-end') {
    m.body.push(m.loop([`(v128.store (i32.sub (i32.mul (memory.size) (i32.const 65536)) (local.get $i)) (i32x4.splat (local.get $i)))`], { kind: 'bounded', n: 32 }));
  } else if (variant === 'call-indirect-bad') {
    m.helpers.push('(table $t 4 funcref)', '(type $v (func (result i32)))');
    m.body.push('(drop (call_indirect $t (type $v) (i32.const 7)))');
  } else if (variant === 'multi-value') {
    m.helpers.push('(func $two (result i32 i64) (i32.const 1) (i64.const -1))');
    m.body.push('(call $two) (local.set $h) (local.set $r)', m.k('length', ['(local.get $h)']));
  } else if (variant === 'trunc-sat') {
    m.body.push(m.k('alloc', ['(i64.trunc_sat_f64_s (f64.const inf))']), m.h('respond', ['(i32.trunc_sat_f64_u (f64.const nan))']));
  } else {
    m.helpers.push('(table $g 1 funcref)');
    m.body.push(m.loop(['(drop (table.grow $g (ref.null func) (i32.const 100000)))'], { kind: 'bounded', n: 100 }));
  }
  m.note(`features: ${variant}`);
}

const WASI_IMPORTS: Record<string, string> = {
  fd_write: '(param i32 i32 i32 i32) (result i32)',
  random_get: '(param i32 i32) (result i32)',
  proc_exit: '(param i32)',
  clock_time_get: '(param i32 i64 i32) (result i32)',
  environ_sizes_get: '(param i32 i32) (result i32)',
};

/** WASI, granted: writes to stdout and stderr, random bytes into huge buffers, proc_exit. */
function wasi(m: Module, c: CaseSettings): void {
  c.grants = { wasi: true };
  m.wasi = Object.keys(WASI_IMPORTS);
  const variant = m.rng.pick(['fd_write-flood', 'random-huge', 'proc_exit', 'clock-loop', 'environ'] as const);
  m.variant = variant;
  if (variant === 'fd_write-flood') {
    // One iovec at 64: BIG, of the memory's whole size past BIG (or hostile).
    const len = m.rng.pick([m.memBytes - BIG, 0x7fffffff, 4096]);
    m.body.push(`(i32.store (i32.const 64) (i32.const ${BIG})) (i32.store (i32.const 68) ${i32(len)})`);
    m.body.push(m.loop([`(drop (call $w_fd_write ${i32(m.rng.pick([1, 2]))} (i32.const 64) (i32.const 1) (i32.const 80)))`], m.rng.pick<LoopShape>([{ kind: 'bounded', n: 1000 }, { kind: 'unbounded' }])));
  } else if (variant === 'random-huge') {
    m.body.push(m.loop([`(drop (call $w_random_get ${i32(BIG)} ${m.len()}))`], loopShape(m.rng)));
  } else if (variant === 'proc_exit') {
    m.body.push(`(call $w_proc_exit ${i32(m.rng.pick([0, 1, 137]))})`);
  } else if (variant === 'clock-loop') {
    m.body.push(m.loop([`(drop (call $w_clock_time_get ${i32(m.rng.pick([0, 1, 2, 3, -1]))} (i64.const 1) ${m.ptr()}))`], loopShape(m.rng)));
  } else {
    m.body.push(`(drop (call $w_environ_sizes_get ${m.ptr()} ${m.ptr()}))`);
  }
  m.note(`WASI: ${variant}`);
}

const WAT_FAMILIES: Record<string, { weight: number; run: Family }> = {
  'kernel-call': { weight: 14, run: kernelCall },
  'host-call': { weight: 16, run: hostCall },
  'alloc-loop': { weight: 8, run: allocLoop },
  'log-flood': { weight: 8, run: logFlood },
  'output-set': { weight: 5, run: outputSet },
  'fail-continue': { weight: 5, run: failThenContinue },
  'respond-twice': { weight: 4, run: respondTwice },
  'backend-url': { weight: 3, run: backendUrl },
  effects: { weight: 7, run: effects },
  'memory-grow': { weight: 6, run: memoryGrow },
  recursion: { weight: 5, run: recursion },
  'start-function': { weight: 5, run: startFunction },
  'data-segments': { weight: 4, run: dataSegments },
  'host-amplifier': { weight: 10, run: hostAmplifier },
  features: { weight: 3, run: features },
  wasi: { weight: 3, run: wasi },
};

/**
 * The penetration test's findings, as (family, variant): each is generated once, at its worst, right after the family
 * sweep, so that even the suite's short run checks every one of them (whatever the seed draws later).
 */
export const KNOWN_FINDINGS: readonly (readonly [string, string])[] = [
  ['log-flood', 'kernel-log'], // kernel log_* not counted against the output cap
  ['output-set', 'negative-length'], // output_set with a negative length, then real output past the cap
  ['alloc-loop', 'keep'], // 40 kernel blocks of 8 MiB under a 16 MiB cap
  ['host-amplifier', 'verify-rsa'], // RSA verify with a public exponent of thousands of bits, in a loop
  ['host-amplifier', 'query-param-small-buffer'], // a query parameter read again and again into a zero-byte buffer
  ['backend-url', 'urlEvil'], // BACKEND_URL pointed elsewhere without any grant
  ['effects', 'http-fanout'], // a thousand HTTP effects from one call
];

export const FAMILIES: readonly string[] = [...Object.keys(WAT_FAMILIES), ...Object.keys(C_FAMILIES)];
export const WAT_FAMILY_NAMES: readonly string[] = Object.keys(WAT_FAMILIES);
export const C_FAMILY_NAMES: readonly string[] = Object.keys(C_FAMILIES);

function assembleWat(m: Module, c: CaseSettings, descriptorName: string, version: string, deterministic: boolean): string {
  const descriptor = JSON.stringify({
    name: descriptorName,
    version,
    ...(m.requestBody ? { requestBody: true } : {}),
    ...(m.responseBody ? { responseBody: true } : {}),
    // Every other case declares itself deterministic (whatever it does), so that the oracle's repeated calls also go
    // through replay (runtime/policy-host/replay.ts) with its checks; not drawn, so the seeds' cases stay the same.
    ...(deterministic ? { deterministic: true } : {}),
  });
  const d = watDescriptor(descriptor);
  const wasiImports = m.wasi.map((n) => `  (import "wasi_snapshot_preview1" "${n}" (func $w_${n} ${WASI_IMPORTS[n]}))`).join('\n');
  const memory = `(memory (export "memory") ${m.memory.initial}${m.memory.maximum !== null ? ` ${Math.max(m.memory.maximum, m.memory.initial)}` : ''})`;
  const start = m.start ? `  (func $start ${m.start.join('\n    ')})\n  (start $start)` : '';
  return `;; gatehouse ABI fuzz case: ${m.details.join('; ')}
(module
${d.imports}
${allImports()}
${wasiImports}
  ${memory}
${m.globals.map((g) => `  ${g}`).join('\n')}
  ${d.data}
${m.data.join('\n')}
  ${d.func}
${m.helpers.map((h) => `  ${h}`).join('\n')}
${start}
  (func (export "${PHASE_EXPORTS[c.phase]}") (result i32)
    (local $i i32) (local $r i32) (local $blk i64) (local $freed i64) (local $h i64) (local $x i64)
    ${m.body.join('\n    ')}
    (i32.const 0))
)
`;
}

export interface GenerateOptions {
  /** Only these families (in this order for the sweep); default: all. */
  families?: readonly string[];
  /** C cases are generated only when true (the C compiler is there); otherwise C families are left out. */
  withC?: boolean;
}

/** Names for sets of families: `--families wat` and `--families c` (short reproduction commands). */
const FAMILY_SETS: Record<string, readonly string[]> = { wat: WAT_FAMILY_NAMES, c: C_FAMILY_NAMES };

/** The families a run draws from, given its options: what a case index means depends on them. */
export function runFamilies(options: GenerateOptions = {}): string[] {
  const all = options.families ? options.families.flatMap((f) => FAMILY_SETS[f] ?? [f]) : [...FAMILIES];
  for (const f of all) if (!FAMILIES.includes(f)) throw new Error(`no fuzz family ${f} (families: ${FAMILIES.join(', ')})`);
  return all;
}

/** Case `index` of the run seeded `seed`. Pure: the same arguments give the same case, byte for byte. */
export function generateCase(seed: number, index: number, options: GenerateOptions = {}): FuzzCase {
  const rng = caseRng(seed, index);
  const families = runFamilies(options);
  const sweepKernel = families.includes('kernel-call') ? KERNEL_NAMES : [];
  const sweepHost = families.includes('host-call') ? HOST_NAMES : [];
  const known = KNOWN_FINDINGS.filter(([f]) => families.includes(f));
  let family: string;
  let pick: string | undefined;
  let force: string | null = null;
  const afterFamilies = sweepKernel.length + sweepHost.length + families.length;
  if (index < sweepKernel.length) [family, pick] = ['kernel-call', sweepKernel[index]];
  else if (index < sweepKernel.length + sweepHost.length) [family, pick] = ['host-call', sweepHost[index - sweepKernel.length]];
  else if (index < afterFamilies) family = families[index - sweepKernel.length - sweepHost.length]!;
  else if (index < afterFamilies + known.length) [family, force] = known[index - afterFamilies]!;
  else {
    const weights = families.map((f) => [WAT_FAMILIES[f]?.weight ?? C_FAMILIES[f]!.weight, f] as const);
    family = rng.weighted(weights);
  }
  const settings: CaseSettings = {
    phase: rng.weighted<Phase>([[60, 'inbound'], [14, 'backend'], [13, 'outbound'], [13, 'on-error']]),
    grants: {},
    limits: rng.weighted<Partial<Limits>>([[85, {}], [5, { cpuMs: 10 }], [4, { cpuMs: 200 }], [3, { outputBytes: 1024 }], [3, { memoryBytes: 4 << 20 }]]),
    exchange: rng.chance(0.3) ? 'big' : 'small',
    calls: 2,
    mustFail: false,
  };
  const name = `fuzz-${index}`;
  const version = `seed ${seed} case ${index}`;
  let source: string;
  let lang: 'wat' | 'c';
  let detail: string;
  let uses: string[];
  let variant: string;
  if (C_FAMILIES[family]) {
    const c = generateC(family, rng, { name, version });
    ({ source, detail, uses } = c);
    variant = c.variant;
    if (c.exchange) settings.exchange = c.exchange;
    // The C templates export on_inbound only.
    settings.phase = 'inbound';
    lang = 'c';
  } else {
    const m = new Module(rng);
    m.pool = {};
    const pool = layout(POOL_BASE, dataPool(rng));
    m.pool = pool.at;
    if (pool.end > BIG) throw new Error('the data pool overlaps the big scratch area');
    m.data.push(...pool.data);
    m.force = force;
    if (force !== null) {
      // A known finding is re-checked where it was found: inbound, default limits, the exchange it needs.
      settings.phase = 'inbound';
      settings.limits = {};
    }
    WAT_FAMILIES[family]!.run(m, settings, pick);
    source = assembleWat(m, settings, name, version, index % 2 === 1);
    lang = 'wat';
    detail = m.details.join('; ');
    uses = [...m.uses].sort();
    variant = m.variant;
  }
  // Limits other than the defaults are part of what the case is.
  if (Object.keys(settings.limits).length > 0) detail += ` (limits ${JSON.stringify(settings.limits)})`;
  if (Object.keys(settings.grants).length > 0) detail += ` (grants ${JSON.stringify(settings.grants)})`;
  return { seed, index, family, variant, detail, lang, source, ...settings, uses };
}

/** Every kernel and host function, as `kernel:alloc` / `host:get`: what a run should have called. */
export function everyFunction(): string[] {
  return [...Object.keys(KERNEL_FUNCTIONS).map((n) => `kernel:${n}`), ...HOST_NAMES.map((n) => `host:${n}`)];
}
