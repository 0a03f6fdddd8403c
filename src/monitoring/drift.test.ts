import { describe, expect, it } from 'vitest';
import {
  binOf,
  buildDriftReference,
  histogram,
  popularityBuckets,
  psi,
  psiByKey,
  quantileEdges,
} from './drift.ts';

describe('psi', () => {
  it('is zero for identical distributions and grows with the shift', () => {
    expect(psi([10, 20, 70], [1, 2, 7])).toBeCloseTo(0, 12);
    const small = psi([0.5, 0.5], [0.55, 0.45]);
    const large = psi([0.5, 0.5], [0.9, 0.1]);
    expect(small).toBeGreaterThan(0);
    expect(small).toBeLessThan(0.1);
    expect(large).toBeGreaterThan(0.25);
  });

  it('matches the textbook value', () => {
    // (0.3-0.2)ln(0.3/0.2) + (0.7-0.8)ln(0.7/0.8)
    expect(psi([0.2, 0.8], [0.3, 0.7])).toBeCloseTo(0.1 * Math.log(1.5) - 0.1 * Math.log(0.875), 12);
  });

  it('stays finite when a bucket is empty on one side, and joins keys', () => {
    expect(Number.isFinite(psi([1, 0], [0, 1]))).toBe(true);
    expect(psiByKey({ view: 9, purchase: 1 }, { view: 9, purchase: 1 })).toBeCloseTo(0, 12);
    expect(psiByKey({ view: 1 }, { view: 1, click: 1 })).toBeGreaterThan(0.25);
  });
});

describe('histograms', () => {
  it('cuts values into equal-count bins and bins them back', () => {
    const values = Array.from({ length: 1000 }, (_, i) => i / 1000);
    const edges = quantileEdges(values, 10);
    expect(edges).toHaveLength(9);
    const h = histogram(edges, values);
    for (const c of h) expect(Math.abs(c - 100)).toBeLessThanOrEqual(1);
    expect(binOf(edges, -1)).toBe(0);
    expect(binOf(edges, 2)).toBe(9);
  });

  it('drops repeated edges of a discrete distribution', () => {
    expect(quantileEdges([1, 1, 1, 1, 2], 4)).toEqual([1]);
  });
});

describe('buildDriftReference', () => {
  it('ranks items into popularity buckets with an empty bucket for unseen items', () => {
    const { bucketOf, shares } = popularityBuckets([1, 100, 10, 0], 2);
    expect(bucketOf).toEqual([1, 0, 0, 1]);
    expect(shares).toHaveLength(3);
    expect(shares[0]).toBeCloseTo(110 / 111);
    expect(shares[2]).toBe(0);
    const ref = buildDriftReference({
      typeCounts: { view: 3, purchase: 1 },
      itemCounts: [1, 100, 10, 0],
      scores: [0.1, 0.2, 0.3, 0.4],
      buckets: 2,
      scoreBins: 2,
    });
    expect(ref.reference.eventTypes).toEqual({ purchase: 0.25, view: 0.75 });
    expect(ref.reference.scoreShares.reduce((a, b) => a + b, 0)).toBeCloseTo(1);
    expect(ref.popularityBuckets).toEqual(bucketOf);
  });
});
