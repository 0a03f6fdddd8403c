import { describe, expect, it } from 'vitest';
import { MetricAccumulator, metricsForRanking } from './metrics.ts';

const lg = Math.log2;

describe('metricsForRanking (RecBole definitions, hand-computed)', () => {
  it('two hits at ranks 2 and 4 of k=5, three relevant items', () => {
    const m = metricsForRanking([0, 1, 0, 1, 0], 3, 5);
    expect(m.hit).toBe(1);
    expect(m.mrr).toBeCloseTo(1 / 2, 12);
    expect(m.precision).toBeCloseTo(2 / 5, 12);
    expect(m.recall).toBeCloseTo(2 / 3, 12);
    // DCG over the hit ranks; IDCG over min(3, 5) = 3 ideal positions.
    expect(m.ndcg).toBeCloseTo((1 / lg(3) + 1 / lg(5)) / (1 + 1 / lg(3) + 1 / lg(4)), 12);
    expect(m.ndcg).toBeCloseTo(0.498189, 5);
    // AP: precision@2 = 1/2 and precision@4 = 2/4, summed, over min(3, 5).
    expect(m.map).toBeCloseTo((1 / 2 + 2 / 4) / 3, 12);
  });

  it('more relevant items than k: IDCG and MAP cap at k, recall does not', () => {
    const m = metricsForRanking([1, 1, 0, 0, 1], 10, 5);
    expect(m.recall).toBeCloseTo(3 / 10, 12);
    expect(m.precision).toBeCloseTo(3 / 5, 12);
    expect(m.mrr).toBe(1);
    const idcg = 1 + 1 / lg(3) + 1 / lg(4) + 1 / lg(5) + 1 / lg(6);
    expect(m.ndcg).toBeCloseTo((1 + 1 / lg(3) + 1 / lg(6)) / idcg, 12);
    expect(m.map).toBeCloseTo((1 + 1 + 3 / 5) / 5, 12);
  });

  it('a perfect ranking scores 1 on ndcg, map, mrr and hit', () => {
    const m = metricsForRanking([1, 1, 0, 0], 2, 4);
    expect(m.ndcg).toBeCloseTo(1, 12);
    expect(m.map).toBeCloseTo(1, 12);
    expect(m.recall).toBe(1);
    expect(m.precision).toBe(0.5);
  });

  it('no hit gives zeros; entries beyond k are ignored', () => {
    expect(metricsForRanking([0, 0, 0, 1], 1, 3)).toEqual({
      ndcg: 0,
      recall: 0,
      precision: 0,
      map: 0,
      mrr: 0,
      hit: 0,
    });
  });

  it('a short list (fewer candidates than k) still divides precision by k', () => {
    const m = metricsForRanking([1], 1, 10);
    expect(m.precision).toBeCloseTo(0.1, 12);
    expect(m.ndcg).toBe(1);
  });
});

describe('MetricAccumulator', () => {
  it('averages over users with relevant items and measures catalog coverage', () => {
    const acc = new MetricAccumulator(2, 10);
    acc.add(Int32Array.from([3, 4]), 2, [4]); // hit at rank 2
    acc.add(Int32Array.from([3, 5]), 2, [3, 9]); // hit at rank 1
    acc.add(Int32Array.from([7, 8]), 2, []); // no relevant items: not averaged, not covered
    acc.add(Int32Array.from([6, 0]), 1, [0]); // only one candidate: item 0 at rank 2 is not counted
    const r = acc.result();
    expect(acc.users).toBe(3);
    expect(Object.keys(r)).toEqual([
      'ndcg@2',
      'recall@2',
      'precision@2',
      'map@2',
      'mrr@2',
      'hit@2',
      'coverage@2',
    ]);
    expect(r['hit@2']).toBeCloseTo(2 / 3, 12);
    expect(r['mrr@2']).toBeCloseTo((1 / 2 + 1 + 0) / 3, 12);
    expect(r['recall@2']).toBeCloseTo((1 + 1 / 2 + 0) / 3, 12);
    expect(r['precision@2']).toBeCloseTo((1 / 2 + 1 / 2 + 0) / 3, 12);
    expect(r['ndcg@2']).toBeCloseTo((1 / lg(3) + 1 / (1 + 1 / lg(3)) + 0) / 3, 12);
    expect(r['map@2']).toBeCloseTo((1 / 2 + 1 / 2 + 0) / 3, 12);
    // Items 3, 4, 5, 6 were recommended to averaged users.
    expect(r['coverage@2']).toBeCloseTo(4 / 10, 12);
  });

  it('reports zeros when no user had relevant items', () => {
    const r = new MetricAccumulator(5, 3).result();
    expect(r['ndcg@5']).toBe(0);
    expect(r['coverage@5']).toBe(0);
  });
});
