import { describe, expect, it } from 'vitest';
import { Rng } from '../algorithms/random.ts';
import { betaMean, evidence, posterior, sampleBeta, sampleGamma, segmentPosterior } from './explore.ts';

const prior = { alpha: 1, beta: 9 };

describe('Beta posteriors', () => {
  it('adds conversions and non-converting trials; successes never exceed trials', () => {
    expect(posterior(prior, { exposures: 100, conversions: 20 })).toEqual({ alpha: 21, beta: 89 });
    // 5 purchases, 2 exposures: 5 trials, 5 successes.
    expect(posterior(prior, { exposures: 2, conversions: 5 })).toEqual({ alpha: 6, beta: 9 });
    expect(posterior(prior, { exposures: -4, conversions: NaN })).toEqual(prior);
    expect(evidence(posterior(prior, { exposures: 100, conversions: 20 }), prior)).toBe(100);
  });

  it('a segment shrinks to the offer overall with the prior strength, and follows its own data when it has plenty', () => {
    const overall = posterior(prior, { exposures: 1000, conversions: 100 }); // mean ≈ 0.1
    const tiny = segmentPosterior(prior, overall, { exposures: 2, conversions: 2 });
    // 2 of 2 alone would be 100 %; shrunk by 10 pseudo-exposures at ≈ 10 %: (1 + 2) / 12 ≈ 0.25.
    expect(betaMean(tiny)).toBeCloseTo((10 * betaMean(overall) + 2) / 12, 12);
    const big = segmentPosterior(prior, overall, { exposures: 5000, conversions: 1500 });
    expect(betaMean(big)).toBeGreaterThan(0.29);
    expect(betaMean(big)).toBeLessThan(0.31);
  });
});

describe('sampling', () => {
  const moments = (draw: () => number, n: number) => {
    let s = 0;
    let s2 = 0;
    for (let i = 0; i < n; i++) {
      const x = draw();
      s += x;
      s2 += x * x;
    }
    const mean = s / n;
    return { mean, variance: s2 / n - mean * mean };
  };

  it.each([0.3, 1, 2.5, 40])('Gamma(%f) has mean and variance equal to its shape', (shape) => {
    const rng = new Rng(7);
    const { mean, variance } = moments(() => sampleGamma(shape, rng), 200_000);
    expect(Math.abs(mean - shape) / shape).toBeLessThan(0.02);
    expect(Math.abs(variance - shape) / shape).toBeLessThan(0.04);
  });

  it.each([
    [1, 1],
    [2, 18],
    [0.5, 0.5],
    [300, 700],
  ])('Beta(%f, %f) draws match its mean and variance', (a, b) => {
    const rng = new Rng(11);
    const { mean, variance } = moments(() => sampleBeta({ alpha: a, beta: b }, rng), 200_000);
    const m = a / (a + b);
    const v = (a * b) / ((a + b) ** 2 * (a + b + 1));
    expect(Math.abs(mean - m)).toBeLessThan(0.01 * Math.max(m, 0.05));
    expect(Math.abs(variance - v) / v).toBeLessThan(0.04);
  });

  it('is reproducible from the seed and refuses a non-positive shape', () => {
    const a = new Rng(3);
    const b = new Rng(3);
    for (let i = 0; i < 10; i++)
      expect(sampleBeta({ alpha: 2, beta: 5 }, a)).toBe(sampleBeta({ alpha: 2, beta: 5 }, b));
    expect(() => sampleGamma(0, a)).toThrow(RangeError);
  });
});
