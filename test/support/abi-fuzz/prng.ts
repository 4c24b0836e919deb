// A small seeded PRNG for the ABI fuzzer: the same seed gives the same modules on every machine and runtime, so a
// broken bound is reproduced from (seed, case index) alone. Math.random cannot be seeded, hence our own.

/** Mixes two 32-bit numbers into a well-spread 32-bit seed (the finaliser of MurmurHash3), so neighbouring case
 * indices do not start neighbouring streams. */
export function mixSeed(a: number, b: number): number {
  let h = (a ^ Math.imul(b + 1, 0x9e3779b9)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** mulberry32: 32 bits of state, good enough spread for choosing shapes and values, and trivially reproducible. */
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** A uniform 32-bit unsigned integer. */
  u32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** An integer in [0, n). */
  below(n: number): number {
    return Math.floor((this.u32() / 2 ** 32) * n);
  }

  /** An integer in [lo, hi]. */
  between(lo: number, hi: number): number {
    return lo + this.below(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.u32() / 2 ** 32 < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[this.below(items.length)]!;
  }

  /** Picks by weight: [[weight, value], ...]. */
  weighted<T>(items: readonly (readonly [number, T])[]): T {
    const total = items.reduce((s, [w]) => s + w, 0);
    let r = this.below(total);
    for (const [w, v] of items) {
      if (r < w) return v;
      r -= w;
    }
    return items[items.length - 1]![1];
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }
}

/** The generator of case `index` of a run seeded `seed`: independent of every other case, so one can be rerun alone. */
export function caseRng(seed: number, index: number): Rng {
  return new Rng(mixSeed(seed >>> 0, index >>> 0));
}

/** A fresh seed for a run that was given none (printed first, so the run can be repeated). */
export function randomSeed(): number {
  return (Date.now() ^ Math.imul(process.pid, 0x27d4eb2d) ^ Math.floor(performance.now() * 1000)) >>> 0;
}
