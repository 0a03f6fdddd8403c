import { describe, expect, it } from 'vitest';
import { Rng } from './random.ts';
import { topK, topKBatch, TopKHeap } from './topk.ts';

/** Reference: full sort by (score desc, index asc), skipping excluded, NaN and -Infinity. */
function reference(scores: Float32Array, k: number, excluded: (i: number) => boolean): number[] {
  const ids: number[] = [];
  for (let i = 0; i < scores.length; i++) if (!excluded(i) && scores[i] > -Infinity) ids.push(i);
  ids.sort((a, b) => scores[b] - scores[a] || a - b);
  return ids.slice(0, Math.max(0, k));
}

function randomScores(rng: Rng, n: number, distinct: number): Float32Array {
  // Few distinct values force many ties.
  const s = new Float32Array(n);
  for (let i = 0; i < n; i++) s[i] = rng.int(distinct) - distinct / 2;
  return s;
}

describe('topK', () => {
  it('agrees with a full sort, ties broken by lower index', () => {
    const rng = new Rng(1);
    for (let trial = 0; trial < 200; trial++) {
      const n = 1 + rng.int(300);
      const k = rng.int(n + 5);
      const scores = randomScores(rng, n, 1 + rng.int(20));
      const got = topK(scores, k);
      const want = reference(scores, k, () => false);
      expect(Array.from(got.indices)).toEqual(want);
      expect(Array.from(got.scores)).toEqual(want.map((i) => scores[i]));
    }
  });

  it('honours a mask and a predicate the same way', () => {
    const rng = new Rng(2);
    for (let trial = 0; trial < 100; trial++) {
      const n = 1 + rng.int(200);
      const scores = randomScores(rng, n, 50);
      const mask = new Uint8Array(n);
      for (let i = 0; i < n; i++) mask[i] = rng.float() < 0.3 ? 1 : 0;
      const k = 1 + rng.int(20);
      const want = reference(scores, k, (i) => mask[i] !== 0);
      expect(Array.from(topK(scores, k, mask).indices)).toEqual(want);
      expect(Array.from(topK(scores, k, (i) => mask[i] !== 0).indices)).toEqual(want);
    }
  });

  it('skips NaN and -Infinity, keeps +Infinity, and handles k edge cases', () => {
    const s = new Float32Array([1, NaN, -Infinity, Infinity, 0, -5]);
    expect(Array.from(topK(s, 10).indices)).toEqual([3, 0, 4, 5]);
    expect(topK(s, 0).indices.length).toBe(0);
    expect(topK(new Float32Array(0), 3).indices.length).toBe(0);
    expect(Array.from(topK(s, 1).indices)).toEqual([3]);
  });

  it('TopKHeap accepts candidates in any order', () => {
    const rng = new Rng(3);
    const scores = randomScores(rng, 500, 30);
    const order = rng.shuffle(Int32Array.from({ length: 500 }, (_, i) => i));
    const heap = new TopKHeap(4);
    heap.reset(25);
    for (const i of order) heap.push(i, scores[i]);
    const idx = new Int32Array(25);
    const sc = new Float32Array(25);
    expect(heap.drainInto(idx, sc)).toBe(25);
    expect(Array.from(idx)).toEqual(reference(scores, 25, () => false));
    expect(heap.length).toBe(0);
  });
});

describe('topKBatch', () => {
  it('equals per-row topK, padding short rows', () => {
    const rng = new Rng(4);
    const rows = 7;
    const n = 40;
    const scores = randomScores(rng, rows * n, 10);
    for (let i = 0; i < n; i++) scores[3 * n + i] = i < 2 ? 1 : -Infinity; // row 3 has only 2 candidates
    const mask = new Uint8Array(rows * n);
    for (let i = 0; i < mask.length; i++) mask[i] = rng.float() < 0.2 ? 1 : 0;
    const k = 5;
    const got = topKBatch(scores, n, k, mask);
    for (let r = 0; r < rows; r++) {
      const row = scores.subarray(r * n, (r + 1) * n);
      const want = reference(row, k, (i) => mask[r * n + i] !== 0);
      expect(got.counts[r]).toBe(want.length);
      expect(Array.from(got.indices.subarray(r * k, r * k + want.length))).toEqual(want);
      for (let q = want.length; q < k; q++) {
        expect(got.indices[r * k + q]).toBe(-1);
        expect(Number.isNaN(got.scores[r * k + q])).toBe(true);
      }
    }
    const viaFn = topKBatch(scores, n, k, (r, i) => mask[r * n + i] !== 0);
    expect(Array.from(viaFn.indices)).toEqual(Array.from(got.indices));
    expect(() => topKBatch(scores, 3, k)).toThrow(RangeError);
  });
});
