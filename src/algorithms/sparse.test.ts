import { describe, expect, it } from 'vitest';
import { Rng } from './random.ts';
import { csrFromCoo, nnz, transpose, type Csr } from './sparse.ts';

/** Cell → value of a CSR matrix, checking that every row is sorted and duplicate-free. */
function cells(m: Csr): Map<string, number> {
  const out = new Map<string, number>();
  for (let r = 0; r < m.rows; r++) {
    for (let p = m.indptr[r]; p < m.indptr[r + 1]; p++) {
      if (p > m.indptr[r]) expect(m.indices[p]).toBeGreaterThan(m.indices[p - 1]);
      out.set(`${r},${m.indices[p]}`, m.data[p]);
    }
  }
  return out;
}

describe('csrFromCoo', () => {
  it('sums duplicate (row, col) pairs and sorts columns (hand-computed)', () => {
    // Row 0: (0,2)=1, (0,0)=2, (0,2)=3, (0,1)=4, (0,0)=5 → [0:7, 1:4, 2:4]; row 1 empty; row 2: (2,1)=6+1.
    const m = csrFromCoo(3, 3, [0, 0, 0, 2, 0, 0, 2], [2, 0, 2, 1, 1, 0, 1], [1, 2, 3, 6, 4, 5, 1]);
    expect(Array.from(m.indptr)).toEqual([0, 3, 3, 4]);
    expect(Array.from(m.indices)).toEqual([0, 1, 2, 1]);
    expect(Array.from(m.data)).toEqual([7, 4, 4, 7]);
  });

  it('matches a naive map-based sum on random triples with many duplicates', () => {
    const rng = new Rng(7);
    const rows = 40;
    const cols = 25;
    const n = 3000;
    const r = new Int32Array(n);
    const c = new Int32Array(n);
    const v = new Float32Array(n);
    const expected = new Map<string, number>();
    for (let q = 0; q < n; q++) {
      r[q] = rng.int(rows);
      c[q] = rng.int(cols);
      v[q] = 1 + rng.int(8);
      const key = `${r[q]},${c[q]}`;
      expected.set(key, (expected.get(key) ?? 0) + v[q]);
    }
    const m = csrFromCoo(rows, cols, r, c, v);
    expect(nnz(m)).toBe(expected.size);
    expect(cells(m)).toEqual(expected);
    // The transpose holds the same cells.
    const t = cells(transpose(m));
    expect(t.size).toBe(expected.size);
    for (const [key, value] of expected) {
      const [a, b] = key.split(',');
      expect(t.get(`${b},${a}`)).toBe(value);
    }
  });

  it('counts 1 per triple without values and rejects out-of-range entries', () => {
    const m = csrFromCoo(2, 2, [1, 1, 0], [0, 0, 1], null);
    expect(Array.from(m.data)).toEqual([1, 2]);
    expect(() => csrFromCoo(2, 2, [2], [0], null)).toThrow(RangeError);
  });
});
