// C templates for the ABI fuzzer: shapes that are natural in C and that a hand-written penetration test found harmful
// (a byte-at-a-time kernel loop, a log loop, an alloc loop, a query-parameter loop with a too-small buffer, recursion
// with a stack array). Compiled with clang-14 for wasm32 without a libc, as the brief's command line says; a machine
// without clang-14 skips these cases and says so.

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Field } from '../../../abi/index.ts';
import type { Rng } from './prng.ts';

export const C_COMPILER = 'clang-14';
/** The brief's command line; wasm-ld-14 is found by clang-14 itself (Debian's lld-14 puts it beside clang). */
export const C_FLAGS = ['--target=wasm32', '-nostdlib', '-O2', '-Wl,--no-entry', '-Wl,--export-dynamic'];

/** Why C cases cannot run here (null when they can): checked once per process. */
let toolchain: string | null | undefined;
export function cToolchainProblem(): string | null {
  if (toolchain !== undefined) return toolchain;
  const probe = spawnSync(C_COMPILER, ['--version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    toolchain = `${C_COMPILER} is not installed (Debian: apt-get install clang-14 lld-14), so the C templates are skipped`;
    return toolchain;
  }
  // A first compile and link, once per machine (its output is kept): clang-14 without lld-14 compiles but cannot link.
  const dir = join(tmpdir(), 'gatehouse-abi-fuzz-cc');
  mkdirSync(dir, { recursive: true });
  const probeWasm = join(dir, 'probe.wasm');
  if (existsSync(probeWasm)) return (toolchain = null);
  const src = join(dir, 'probe.c');
  writeFileSync(src, '__attribute__((export_name("f"))) int f(void) { return 0; }\n');
  const link = spawnSync(C_COMPILER, [...C_FLAGS, '-o', probeWasm, src], { encoding: 'utf8' });
  toolchain = link.status === 0 ? null : `${C_COMPILER} cannot link for wasm32 (is lld-14 installed?): ${link.stderr.trim().split('\n')[0]}`;
  return toolchain;
}

/** Compiles C source to a module, cached by the source's hash (the same case compiles once per machine). */
export function compileC(source: string): Uint8Array {
  const problem = cToolchainProblem();
  if (problem) throw new Error(problem);
  const hash = createHash('sha256').update(source).update(C_FLAGS.join(' ')).digest('hex').slice(0, 24);
  const dir = join(tmpdir(), 'gatehouse-abi-fuzz-cc');
  mkdirSync(dir, { recursive: true });
  const out = join(dir, `${hash}.wasm`);
  if (!existsSync(out)) {
    const src = join(dir, `${hash}.c`);
    writeFileSync(src, source);
    const tmp = `${out}.${process.pid}.tmp`;
    const run = spawnSync(C_COMPILER, [...C_FLAGS, '-o', tmp, src], { encoding: 'utf8' });
    if (run.status !== 0) throw new Error(`${C_COMPILER} failed on a generated template (a fuzzer bug): ${run.stderr}`);
    writeFileSync(out, readFileSync(tmp));
  }
  return new Uint8Array(readFileSync(out));
}

/** What every C module starts with: the imports it may use and the descriptor export. */
function prelude(name: string, version: string): string {
  const descriptor = JSON.stringify({ name, version }).replace(/\\/g, '\\\\').replace(/"/g, '\\"');
  return `// gatehouse ABI fuzz case (C): compiled with ${C_COMPILER} ${C_FLAGS.join(' ')}
typedef unsigned long long u64;
typedef long long i64;
typedef unsigned int u32;
typedef unsigned char u8;
#define KERNEL(n) __attribute__((import_module("extism:host/env"), import_name(n)))
#define HOST(n) __attribute__((import_module("gatehouse:host/v1"), import_name(n)))
#define EXPORT(n) __attribute__((export_name(n)))
KERNEL("alloc") u64 k_alloc(u64 n);
KERNEL("free") void k_free(u64 h);
KERNEL("length") u64 k_length(u64 h);
KERNEL("store_u8") void k_store_u8(u64 h, u8 b);
KERNEL("load_u8") u8 k_load_u8(u64 h);
KERNEL("store_u64") void k_store_u64(u64 h, u64 v);
KERNEL("output_set") void k_output_set(u64 h, u64 n);
KERNEL("log_info") void k_log_info(u64 h);
KERNEL("log_error") void k_log_error(u64 h);
HOST("get") int h_get(int field, const char *name, int name_len, char *buf, int cap);
HOST("add") int h_add(int field, const char *name, int name_len, const char *value, int value_len);
HOST("log") void h_log(int level, const char *ptr, int len);

static const char DESCRIPTOR[] = "${descriptor}";

EXPORT("gatehouse_policy_v1") int describe(void) {
  u64 h = k_alloc(sizeof(DESCRIPTOR) - 1);
  for (u64 i = 0; i < sizeof(DESCRIPTOR) - 1; i++) k_store_u8(h + i, (u8)DESCRIPTOR[i]);
  k_output_set(h, sizeof(DESCRIPTOR) - 1);
  return 0;
}
`;
}

export interface CCase {
  source: string;
  variant: string;
  detail: string;
  uses: string[];
  exchange?: 'small' | 'big';
}

type CFamily = (rng: Rng) => { body: string; detail: string; uses: string[]; exchange?: 'small' | 'big'; variant?: string };

/** A loop count, or forever: C spells the unbounded loop as a condition that never fails. */
function countText(rng: Rng): [string, string] {
  const n = rng.pick([16, 4096, 1_000_000, 0]);
  return n === 0 ? ['1', 'forever'] : [`i < ${n}ULL`, `${n} times`];
}

export const C_FAMILIES: Record<string, { weight: number; run: CFamily }> = {
  'c-byte-loop': {
    weight: 4,
    run: (rng) => {
      const size = rng.pick(['4096ULL', '(1ULL << 20)', '(16ULL << 20)', '((16ULL << 20) + 1)', '0xffffffffffffffffULL', '0x7fffffffffffffffULL']);
      const past = rng.pick(['0', '1', '4096']);
      return {
        body: `EXPORT("on_inbound") int on_inbound(void) {
  u64 n = ${size};
  u64 h = k_alloc(n);
  u64 sum = 0;
  // byte at a time, as a naive C policy copies a buffer into a kernel block, then reads it back (and ${past} past it)
  for (u64 i = 0; i < n + ${past}; i++) k_store_u8(h + i, (u8)i);
  for (u64 i = 0; i < n + ${past}; i++) sum += k_load_u8(h + i);
  k_output_set(h, n);
  return (int)sum;
}`,
        detail: `byte-at-a-time store_u8/load_u8 over a ${size}-byte kernel block, ${past} past its end`,
        uses: ['kernel:alloc', 'kernel:store_u8', 'kernel:load_u8', 'kernel:output_set'],
      };
    },
  },
  'c-log-loop': {
    weight: 4,
    run: (rng) => {
      const [cond, times] = countText(rng);
      const len = rng.pick(['16', '4096', '(1 << 20)']);
      const kernel = rng.chance(0.5);
      return {
        // The line lives in .bss (zeros, not carried in the module) with its text copied in at run time.
        body: `static const char text[] = "fuzz: a line logged from C";
static char line[${kernel ? 64 : '(1 << 20) + 16'}];
EXPORT("on_inbound") int on_inbound(void) {
  for (int j = 0; j < 26; j++) line[j] = text[j];
  for (u64 i = 0; ${cond}; i++) {
${
  kernel
    ? `    u64 h = k_alloc(${len});
    for (u64 j = 0; j < 26; j++) k_store_u8(h + j, (u8)line[j]);
    k_log_error(h); // the kernel frees the block once logged`
    : `    h_log(3, line, ${len});`
}
  }
  return 0;
}`,
        detail: `${kernel ? `kernel log_error of ${len}-byte blocks` : `host log of ${len} bytes`} ${times}`,
        variant: kernel ? 'kernel-log' : 'host-log',
        uses: kernel ? ['kernel:alloc', 'kernel:store_u8', 'kernel:log_error'] : ['host:log'],
      };
    },
  },
  'c-alloc-loop': {
    weight: 4,
    run: (rng) => {
      const [cond, times] = countText(rng);
      const size = rng.pick(['(1ULL << 20)', '(8ULL << 20)', '(16ULL << 20)']);
      const free = rng.chance(0.4);
      const touch = rng.chance(0.6);
      return {
        body: `EXPORT("on_inbound") int on_inbound(void) {
  for (u64 i = 0; ${cond}; i++) {
    u64 h = k_alloc(${size});
    if (h == 0) continue; // refused: ask again
${touch ? `    for (u64 off = 0; off < ${size}; off += 4096) k_store_u64(h + off, ~0ULL); // make every page resident` : ''}
${free ? '    k_free(h);' : ''}
  }
  return 0;
}`,
        detail: `kernel alloc of ${size} ${times}${free ? ', freed' : ''}${touch ? ', every page written' : ''}`,
        variant: `${free ? 'free' : 'keep'}${touch ? '-touch' : ''}`,
        uses: ['kernel:alloc', ...(touch ? ['kernel:store_u64'] : []), ...(free ? ['kernel:free'] : [])],
      };
    },
  },
  'c-query-loop': {
    weight: 3,
    run: (rng) => {
      const [cond, times] = countText(rng);
      const cap = rng.pick([0, 1, 8]);
      const field = rng.pick([Field.REQUEST_QUERY_PARAM, Field.REQUEST_HEADER, Field.REQUEST_QUERY]);
      return {
        body: `static char buf[16];
EXPORT("on_inbound") int on_inbound(void) {
  int total = 0;
  // the penetration test's loop: a value read again and again into a buffer too small for it
  for (u64 i = 0; ${cond}; i++) total += h_get(${field}, "q", 1, buf, ${cap});
  return total;
}`,
        detail: `get(field ${field}, "q") into a ${cap}-byte buffer ${times} on a big exchange`,
        uses: ['host:get'],
        exchange: 'big',
      };
    },
  },
  'c-recursion': {
    weight: 2,
    run: (rng) => {
      const frame = rng.pick([16, 1024, 65536]);
      return {
        body: `static int depth(volatile int n) {
  volatile char frame[${frame}];
  frame[0] = (char)n;
  frame[${frame} - 1] = (char)n;
  return frame[0] + depth(n + 1) + frame[${frame} - 1];
}
EXPORT("on_inbound") int on_inbound(void) { return depth(0); }`,
        detail: `unbounded recursion with a ${frame}-byte stack array per frame (the C stack lives in linear memory)`,
        uses: [],
      };
    },
  },
  'c-header-add': {
    weight: 2,
    run: (rng) => {
      const [cond, times] = countText(rng);
      return {
        body: `EXPORT("on_inbound") int on_inbound(void) {
  for (u64 i = 0; ${cond}; i++) h_add(${Field.REQUEST_HEADER}, "x-fuzz", 6, "v", 1);
  return 0;
}`,
        detail: `add(REQUEST_HEADER, "x-fuzz", "v") ${times}`,
        uses: ['host:add'],
      };
    },
  },
};

export function generateC(family: string, rng: Rng, descriptor: { name: string; version: string }): CCase {
  const f = C_FAMILIES[family];
  if (!f) throw new Error(`no C family ${family}`);
  const { body, detail, uses, exchange, variant } = f.run(rng);
  return { source: `${prelude(descriptor.name, descriptor.version)}\n${body}\n`, variant: variant ?? '', detail, uses, exchange };
}
