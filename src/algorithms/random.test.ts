import { describe, expect, it } from 'vitest';
import { mixSeed, Rng } from './random.ts';

describe('Rng (xoshiro128**)', () => {
  it('matches the reference outputs for state {1, 2, 3, 4}', () => {
    // First outputs of Blackman & Vigna's reference xoshiro128** with s = {1, 2, 3, 4}
    // (the first three are easy to check by hand from the update rule).
    const r = Rng.fromState(1, 2, 3, 4);
    expect([r.next(), r.next(), r.next(), r.next()]).toEqual([11520, 0, 5927040, 70819200]);
  });

  it('is deterministic per seed and differs across seeds', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const c = new Rng(43);
    const sa = Array.from({ length: 16 }, () => a.next());
    const sb = Array.from({ length: 16 }, () => b.next());
    const sc = Array.from({ length: 16 }, () => c.next());
    expect(sa).toEqual(sb);
    expect(sa).not.toEqual(sc);
    for (const v of sa) expect(Number.isInteger(v) && v >= 0 && v < 2 ** 32).toBe(true);
    a.reseed(42);
    expect(a.next()).toBe(sa[0]);
  });

  it('distinguishes large and negative seeds', () => {
    const firsts = [0, 1, -1, 2 ** 32, 2 ** 32 + 1, 2 ** 40].map((s) => new Rng(s).next());
    expect(new Set(firsts).size).toBe(firsts.length);
  });

  it('float() is uniform on [0, 1)', () => {
    const r = new Rng(7);
    const n = 200_000;
    let sum = 0;
    let sumSq = 0;
    let min = 1;
    let max = 0;
    for (let i = 0; i < n; i++) {
      const x = r.float();
      sum += x;
      sumSq += x * x;
      min = Math.min(min, x);
      max = Math.max(max, x);
    }
    expect(min).toBeGreaterThanOrEqual(0);
    expect(max).toBeLessThan(1);
    expect(sum / n).toBeCloseTo(0.5, 2);
    expect(sumSq / n - (sum / n) ** 2).toBeCloseTo(1 / 12, 2);
  });

  it('int(n) covers [0, n) uniformly (chi-square)', () => {
    const r = new Rng(11);
    for (const n of [1, 2, 7, 10, 1000]) {
      const counts = new Float64Array(n);
      const draws = 2000 * n;
      let bad = 0;
      for (let i = 0; i < draws; i++) {
        const v = r.int(n);
        if (!(v >= 0 && v < n && Number.isInteger(v))) bad++;
        else counts[v]++;
      }
      expect(bad).toBe(0);
      if (n === 1) continue;
      const e = draws / n;
      let chi = 0;
      for (const c of counts) chi += ((c - e) * (c - e)) / e;
      // mean n-1, sd sqrt(2(n-1)); 6 sd is far beyond chance.
      expect(chi).toBeLessThan(n - 1 + 6 * Math.sqrt(2 * (n - 1)));
    }
  });

  it('int(n) stays in range and is unbiased for large n', () => {
    const r = new Rng(5);
    for (const n of [3_000_001, 2 ** 31 + 11, 2 ** 32, 2 ** 40]) {
      let sum = 0;
      const draws = 20_000;
      let bad = 0;
      for (let i = 0; i < draws; i++) {
        const v = r.int(n);
        if (!(v >= 0 && v < n && Number.isInteger(v))) bad++;
        sum += v / n;
      }
      expect(bad).toBe(0);
      expect(sum / draws).toBeCloseTo(0.5, 1);
    }
    expect(() => r.int(0)).toThrow(RangeError);
  });

  it('normal() has mean 0 and variance 1', () => {
    const r = new Rng(3);
    const n = 200_000;
    let sum = 0;
    let sumSq = 0;
    let beyond2 = 0;
    for (let i = 0; i < n; i++) {
      const x = r.normal();
      sum += x;
      sumSq += x * x;
      if (Math.abs(x) > 2) beyond2++;
    }
    expect(sum / n).toBeCloseTo(0, 2);
    expect(sumSq / n).toBeCloseTo(1, 1);
    expect(beyond2 / n).toBeCloseTo(0.0455, 2);
  });

  it('shuffle() permutes', () => {
    const a = Int32Array.from({ length: 100 }, (_, i) => i);
    new Rng(9).shuffle(a);
    expect(Array.from(a).sort((x, y) => x - y)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(Array.from(a)).not.toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  it('mixSeed() depends on every argument and their order', () => {
    expect(mixSeed(1, 2)).toBe(mixSeed(1, 2));
    expect(mixSeed(1, 2)).not.toBe(mixSeed(2, 1));
    expect(mixSeed(1, 2)).not.toBe(mixSeed(1, 3));
    expect(mixSeed(1)).not.toBe(mixSeed(1, 0));
  });
});
