/**
 * Seeded pseudo-random numbers: xoshiro128** (Blackman & Vigna) on 32-bit integers, seeded through
 * splitmix32. Every stochastic step in training (initialisation, sampling, splits) draws from an
 * `Rng` so that one seed reproduces one model bit for bit; `Math.random` is never used.
 */

const TWO_POW_32 = 4294967296;

/** splitmix32 step: a good 32-bit mixer, used to expand one seed into the four state words. */
function splitmix32(state: number): number {
  let z = (state + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
  z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
  return (z ^ (z >>> 15)) >>> 0;
}

/**
 * Folds any number of integer-ish values into one 32-bit seed. Used to derive independent streams
 * (e.g. per epoch and per worker) from a base seed, so results do not depend on scheduling.
 */
export function mixSeed(...values: number[]): number {
  let h = 0x6a09e667;
  for (const v of values) {
    // Split into low and high 32-bit halves so seeds beyond 2^32 (and negatives) still mix fully.
    const lo = v | 0;
    const hi = Math.floor(v / TWO_POW_32) | 0;
    h = splitmix32(h ^ lo);
    h = splitmix32(h ^ hi);
  }
  return h >>> 0;
}

/** A small, fast, deterministic PRNG (xoshiro128**). Not for cryptography. */
export class Rng {
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;
  private spare = 0;
  private hasSpare = false;

  constructor(seed: number) {
    this.reseed(seed);
  }

  /** An Rng with an explicit xoshiro128** state (for reference test vectors); not all zero. */
  static fromState(s0: number, s1: number, s2: number, s3: number): Rng {
    const r = new Rng(0);
    r.s0 = s0 | 0;
    r.s1 = s1 | 0;
    r.s2 = s2 | 0;
    r.s3 = s3 | 0;
    if ((r.s0 | r.s1 | r.s2 | r.s3) === 0) throw new RangeError('xoshiro128** state must not be all zero');
    return r;
  }

  /** The four xoshiro128** state words (for kernels that continue the same stream elsewhere). */
  state(): [number, number, number, number] {
    return [this.s0, this.s1, this.s2, this.s3];
  }

  /** Continues from explicit state words (e.g. returned by a kernel that drew from this stream). */
  setState(s0: number, s1: number, s2: number, s3: number): void {
    if ((s0 | s1 | s2 | s3) === 0) throw new RangeError('xoshiro128** state must not be all zero');
    this.s0 = s0 | 0;
    this.s1 = s1 | 0;
    this.s2 = s2 | 0;
    this.s3 = s3 | 0;
    this.hasSpare = false;
  }

  /** Resets the state from `seed`; the same seed always yields the same sequence. */
  reseed(seed: number): void {
    let x = mixSeed(seed);
    x = splitmix32(x);
    this.s0 = x | 0;
    x = splitmix32(x);
    this.s1 = x | 0;
    x = splitmix32(x);
    this.s2 = x | 0;
    x = splitmix32(x);
    this.s3 = x | 0;
    // The all-zero state is a fixed point of xoshiro; splitmix makes it practically impossible,
    // but guard anyway.
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
    this.hasSpare = false;
  }

  /** Next 32-bit unsigned integer. */
  next(): number {
    const s1 = this.s1;
    const m = Math.imul(s1, 5);
    const result = Math.imul((m << 7) | (m >>> 25), 9) >>> 0;
    const t = s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    const s3 = this.s3;
    this.s3 = (s3 << 11) | (s3 >>> 21);
    return result;
  }

  /** Uniform float in [0, 1) with 32 bits of randomness. */
  float(): number {
    return this.next() / TWO_POW_32;
  }

  /** Uniform float in [0, 1) with 53 bits of randomness (two draws). */
  float53(): number {
    const hi = this.next() >>> 5; // 27 bits
    const lo = this.next() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /**
   * Uniform integer in [0, n). Uses Lemire's multiply-shift with rejection, so it is exactly
   * uniform for n ≤ 2^32; larger n falls back to a 53-bit float.
   */
  int(n: number): number {
    if (!(n > 0)) throw new RangeError(`Rng.int: n must be positive, got ${n}`);
    if (n <= 2097152) {
      // x * n < 2^53, so the 64-bit product is exact in a double; split it without `%` (fmod is slow).
      let prod = this.next() * n;
      let high = Math.floor(prod / TWO_POW_32);
      let low = prod - high * TWO_POW_32;
      if (low < n) {
        // Rare path: reject the 2^32 mod n lowest products to remove the bias.
        const threshold = (TWO_POW_32 - n) % n;
        while (low < threshold) {
          prod = this.next() * n;
          high = Math.floor(prod / TWO_POW_32);
          low = prod - high * TWO_POW_32;
        }
      }
      return high;
    }
    if (n > TWO_POW_32) return Math.floor(this.float53() * n);
    const threshold = (TWO_POW_32 - n) % n;
    for (;;) {
      // Split x into 16-bit halves so the 64-bit product stays exact in doubles.
      const x = this.next();
      const a = (x >>> 16) * n; // < 2^48
      const b = (x & 0xffff) * n; // < 2^48
      const aHi = Math.floor(a / 65536);
      const mid = (a - aHi * 65536) * 65536 + b; // < 2^49
      const carry = Math.floor(mid / TWO_POW_32);
      const low = mid - carry * TWO_POW_32;
      if (low >= threshold) return aHi + carry;
    }
  }

  /** Standard normal deviate (Box–Muller; the second value of each pair is cached). */
  normal(): number {
    if (this.hasSpare) {
      this.hasSpare = false;
      return this.spare;
    }
    let u = 0;
    while (u === 0) u = this.float53();
    const v = this.float53();
    const r = Math.sqrt(-2 * Math.log(u));
    const theta = 2 * Math.PI * v;
    this.spare = r * Math.sin(theta);
    this.hasSpare = true;
    return r * Math.cos(theta);
  }

  /** Fisher–Yates shuffle in place. */
  shuffle<T extends { length: number; [i: number]: unknown }>(a: T): T {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = a[i];
      a[i] = a[j];
      a[j] = t;
    }
    return a;
  }
}
