import { describe, expect, it } from 'vitest';
import { csrFromCoo } from '../algorithms/sparse.ts';
import { holdoutSplit } from './holdout.ts';

describe('holdoutSplit', () => {
  const rows: number[] = [];
  const cols: number[] = [];
  for (let u = 0; u < 50; u++) {
    for (let i = 0; i < (u % 12) + 1; i++) {
      rows.push(u);
      cols.push((u * 7 + i * 3) % 40);
    }
  }
  const m = csrFromCoo(50, 40, rows, cols, null);

  it('partitions every user row without leakage and is deterministic', () => {
    const a = holdoutSplit(m, 0.2, 7);
    const b = holdoutSplit(m, 0.2, 7);
    expect(Array.from(a.test.items)).toEqual(Array.from(b.test.items));
    for (let u = 0; u < m.rows; u++) {
      const all = Array.from(m.indices.subarray(m.indptr[u], m.indptr[u + 1]));
      const train = Array.from(a.train.indices.subarray(a.train.indptr[u], a.train.indptr[u + 1]));
      const test = Array.from(a.test.items.subarray(a.test.indptr[u], a.test.indptr[u + 1]));
      expect([...train, ...test].sort((x, y) => x - y)).toEqual([...all].sort((x, y) => x - y));
      expect(test.filter((t) => train.includes(t))).toEqual([]);
      if (all.length < 3) expect(test).toEqual([]);
      else expect(test.length).toBe(Math.max(1, Math.round(all.length * 0.2)));
    }
  });
});
