import { describe, expect, it } from 'vitest';
import { Rng } from '../algorithms/random.ts';
import {
  chiSquareSurvival,
  logGamma,
  meanInterval,
  regularizedGammaQ,
  relativeLift,
  srmPValue,
  wilson,
} from './stats.ts';

const binomial = (rng: Rng, n: number, p: number) => {
  let x = 0;
  for (let i = 0; i < n; i++) if (rng.float() < p) x++;
  return x;
};

describe('regularized incomplete gamma and chi-square', () => {
  it('matches known values of ln Γ', () => {
    expect(logGamma(5)).toBeCloseTo(Math.log(24), 12);
    expect(logGamma(0.5)).toBeCloseTo(Math.log(Math.sqrt(Math.PI)), 12);
    expect(logGamma(0.1)).toBeCloseTo(Math.log(9.513507698668732), 10);
    expect(logGamma(100)).toBeCloseTo(359.1342053695754, 8);
  });

  it('matches closed forms: Q(1, x) = e^-x and Q(1/2, x) = erfc(√x)', () => {
    for (const x of [0.01, 0.5, 1, 2, 7.5, 30]) expect(regularizedGammaQ(1, x)).toBeCloseTo(Math.exp(-x), 12);
    // erfc values: erfc(1) = 0.157299207050285, erfc(2) = 0.004677734981047266
    expect(regularizedGammaQ(0.5, 1)).toBeCloseTo(0.157299207050285, 12);
    expect(regularizedGammaQ(0.5, 4)).toBeCloseTo(0.004677734981047266, 14);
    expect(regularizedGammaQ(3, 0)).toBe(1);
  });

  it('gives the textbook chi-square critical values', () => {
    expect(chiSquareSurvival(3.84, 1)).toBeCloseTo(0.05, 3);
    expect(chiSquareSurvival(3.841458820694124, 1)).toBeCloseTo(0.05, 10);
    expect(chiSquareSurvival(6.634896601021214, 1)).toBeCloseTo(0.01, 10);
    expect(chiSquareSurvival(10.827566170662733, 1)).toBeCloseTo(0.001, 10);
    expect(chiSquareSurvival(5.991464547107979, 2)).toBeCloseTo(0.05, 10);
    expect(chiSquareSurvival(7.814727903251178, 3)).toBeCloseTo(0.05, 10);
    expect(chiSquareSurvival(18.307038053275146, 10)).toBeCloseTo(0.05, 10);
    expect(chiSquareSurvival(124.34211340400407, 100)).toBeCloseTo(0.05, 8);
    expect(chiSquareSurvival(0, 4)).toBe(1);
  });
});

describe('srmPValue', () => {
  it('is 1 for a perfect split and tiny for a clear mismatch', () => {
    expect(srmPValue([5000, 5000], [50, 50])).toBeCloseTo(1, 12);
    expect(srmPValue([2500, 7500], [1, 3])).toBeCloseTo(1, 12);
    // 5100 vs 4900 of 10,000: χ² = 4 → p = 0.0455
    expect(srmPValue([5100, 4900], [50, 50])).toBeCloseTo(0.04550026389635842, 10);
    expect(srmPValue([5500, 4500], [50, 50])!).toBeLessThan(1e-20);
  });

  it('treats units in a zero-weight variant as a mismatch and has nothing to test without data', () => {
    expect(srmPValue([10, 10, 1], [1, 1, 0])).toBe(0);
    expect(srmPValue([10, 10, 0], [1, 1, 0])).toBeCloseTo(1, 12);
    expect(srmPValue([0, 0], [1, 1])).toBeNull();
    expect(srmPValue([10, 0], [1, 0])).toBeNull();
  });

  it('keeps its false-positive rate at the nominal level under correct assignment', () => {
    const rng = new Rng(7);
    let below = 0;
    const runs = 2000;
    for (let r = 0; r < runs; r++) {
      const a = binomial(rng, 400, 0.3);
      if (srmPValue([a, 400 - a], [30, 70])! < 0.05) below++;
    }
    expect(below / runs).toBeGreaterThan(0.03);
    expect(below / runs).toBeLessThan(0.07);
  });
});

describe('wilson', () => {
  it('matches published intervals', () => {
    const half = wilson(5, 10);
    expect(half.value).toBe(0.5);
    expect(half.low).toBeCloseTo(0.236593, 6);
    expect(half.high).toBeCloseTo(0.763407, 6);
    const none = wilson(0, 10);
    expect(none.low).toBe(0);
    expect(none.high).toBeCloseTo(0.2775328, 6);
    expect(wilson(10, 10).high).toBe(1);
    // Exact edges, not rounding residue (2.8e-17 for 0 of 9 before the edges were pinned).
    for (let n = 1; n < 200; n++) {
      expect(wilson(0, n).low).toBe(0);
      expect(wilson(n, n).high).toBe(1);
    }
    expect(wilson(0, 0)).toEqual({ value: 0, low: 0, high: 1 });
    expect(wilson(12, 10).value).toBe(1);
  });

  it('covers the true rate about 95 % of the time', () => {
    const rng = new Rng(11);
    let covered = 0;
    const runs = 2000;
    for (let r = 0; r < runs; r++) {
      const ci = wilson(binomial(rng, 200, 0.08), 200);
      if (ci.low <= 0.08 && 0.08 <= ci.high) covered++;
    }
    expect(covered / runs).toBeGreaterThan(0.93);
    expect(covered / runs).toBeLessThan(0.975);
  });
});

describe('meanInterval', () => {
  it('is mean ± z·s/√n', () => {
    // 1..5: mean 3, s² = 2.5
    const ci = meanInterval(15, 55, 5);
    expect(ci.value).toBe(3);
    expect(ci.high - ci.value).toBeCloseTo(1.959963984540054 * Math.sqrt(2.5 / 5), 12);
    expect(ci.value - ci.low).toBeCloseTo(ci.high - ci.value, 12);
  });

  it('handles no data, one observation and constant data', () => {
    expect(meanInterval(0, 0, 0)).toEqual({ value: 0, low: 0, high: 0 });
    expect(meanInterval(7, 49, 1)).toEqual({ value: 7, low: 7, high: 7 });
    const constant = meanInterval(0.3 * 3, 0.09 * 3, 3);
    expect(constant.high - constant.low).toBeLessThan(1e-6);
  });
});

describe('relativeLift', () => {
  it('is the log-ratio delta-method interval', () => {
    // 12 % vs 10 % on 1000 each: ratio 1.2, se(ln r) = √(0.88/120 + 0.9/100)
    const lift = relativeLift({ successes: 120, trials: 1000 }, { successes: 100, trials: 1000 })!;
    const se = Math.sqrt(0.88 / 120 + 0.9 / 100);
    expect(lift.value).toBeCloseTo(0.2, 12);
    expect(lift.low).toBeCloseTo(1.2 * Math.exp(-1.959963984540054 * se) - 1, 12);
    expect(lift.high).toBeCloseTo(1.2 * Math.exp(1.959963984540054 * se) - 1, 12);
    expect(lift.low).toBeLessThan(0);
    // The same rates on 20 times the data exclude 0.
    expect(
      relativeLift({ successes: 2400, trials: 20_000 }, { successes: 2000, trials: 20_000 })!.low,
    ).toBeGreaterThan(0);
  });

  it('stays finite with zero counts and is null without trials', () => {
    const zero = relativeLift({ successes: 0, trials: 100 }, { successes: 5, trials: 100 })!;
    for (const v of [zero.value, zero.low, zero.high]) expect(Number.isFinite(v)).toBe(true);
    expect(zero.value).toBeLessThan(-0.8);
    expect(zero.low).toBeGreaterThanOrEqual(-1);
    expect(relativeLift({ successes: 0, trials: 0 }, { successes: 5, trials: 100 })).toBeNull();
    expect(relativeLift({ successes: 1, trials: 10 }, { successes: 0, trials: 0 })).toBeNull();
  });

  it('covers the true lift about 95 % of the time', () => {
    const rng = new Rng(3);
    let covered = 0;
    const runs = 1500;
    for (let r = 0; r < runs; r++) {
      const lift = relativeLift(
        { successes: binomial(rng, 2000, 0.06), trials: 2000 },
        { successes: binomial(rng, 2000, 0.05), trials: 2000 },
      )!;
      if (lift.low <= 0.2 && 0.2 <= lift.high) covered++;
    }
    expect(covered / runs).toBeGreaterThan(0.93);
    expect(covered / runs).toBeLessThan(0.97);
  });
});
