import { describe, expect, it } from 'vitest';
import { mergeCandidates } from './candidates.ts';

describe('mergeCandidates', () => {
  const lists = [
    { retriever: 'als', items: ['a', 'b', 'c', 'd'], scores: [0.9, 0.8, 0.7, 0.6] },
    { retriever: 'pop', items: Int32Array.from([]) as unknown as string[], scores: [] },
    { retriever: 'knn', items: ['c', 'e', 'a', 'f'], scores: [5, 4, 3, 2] },
  ];

  it('takes items round-robin, each once, with every retriever’s score and 1-based rank', () => {
    const out = mergeCandidates(lists, 10);
    expect(out.map((c) => c.item)).toEqual(['a', 'c', 'b', 'e', 'd', 'f']);
    const a = out[0].signals;
    expect(a.get('als')).toEqual({ score: 0.9, rank: 1 });
    expect(a.get('knn')).toEqual({ score: 3, rank: 3 });
    expect(a.has('pop')).toBe(false);
    expect(Object.fromEntries(out[1].signals)).toEqual({
      als: { score: 0.7, rank: 3 },
      knn: { score: 5, rank: 1 },
    });
  });

  it('stops at the limit, giving each retriever an equal share, and keeps provenance from unread positions', () => {
    const out = mergeCandidates(lists, 3);
    expect(out.map((c) => c.item)).toEqual(['a', 'c', 'b']);
    // 'a' was taken from als; knn lists it third, after the merge stopped reading knn.
    expect(out[0].signals.get('knn')?.rank).toBe(3);
    expect(mergeCandidates(lists, 0)).toEqual([]);
  });

  it('skips excluded items without shifting ranks, and works on dense indices', () => {
    const out = mergeCandidates(lists, 10, (i) => i === 'a' || i === 'e');
    expect(out.map((c) => c.item)).toEqual(['b', 'c', 'd', 'f']);
    expect(out.find((c) => c.item === 'f')?.signals.get('knn')).toEqual({ score: 2, rank: 4 });
    const dense = mergeCandidates(
      [
        { retriever: 'x', items: Int32Array.from([3, 1]), scores: Float32Array.from([2, 1]) },
        { retriever: 'y', items: Int32Array.from([1, 7]), scores: Float32Array.from([9, 8]) },
      ],
      5,
    );
    expect(dense.map((c) => c.item)).toEqual([3, 1, 7]);
    expect(dense[1].signals.get('y')).toEqual({ score: 9, rank: 1 });
  });
});
