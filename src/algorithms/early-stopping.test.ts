import { describe, expect, it } from 'vitest';
import { EarlyStopper, holdOutValidation, ValidationScorer } from './early-stopping.ts';
import { Rng } from './random.ts';
import { csrFromCoo, nnz, type Csr } from './sparse.ts';

function randomMatrix(seed: number, rows = 40, cols = 25): Csr {
  const rng = new Rng(seed);
  const r: number[] = [];
  const c: number[] = [];
  for (let u = 0; u < rows; u++) {
    for (let i = 0; i < cols; i++) {
      if (rng.float() >= 0.3) continue;
      r.push(u);
      c.push(i);
    }
  }
  return csrFromCoo(rows, cols, r, c, null);
}

/** Straightforward NDCG@k: sort every unseen item by score (ties by index), count held-out hits. */
function referenceNdcg(
  X: Float32Array,
  Y: Float32Array,
  f: number,
  fit: Csr,
  val: Csr,
  users: Int32Array,
  k: number,
  bias: Float32Array | null = null,
): number {
  let sum = 0;
  for (const u of users) {
    const seen = new Set(fit.indices.slice(fit.indptr[u], fit.indptr[u + 1]));
    const rel = new Set(val.indices.slice(val.indptr[u], val.indptr[u + 1]));
    const items = [...Array(fit.cols).keys()].filter((i) => !seen.has(i));
    const score = (i: number): number => {
      let s = 0;
      for (let q = 0; q < f; q++) s += X[u * f + q] * Y[i * f + q];
      return bias === null ? Math.fround(s) : Math.fround(Math.fround(s) + bias[i]);
    };
    items.sort((a, b) => score(b) - score(a) || a - b);
    let dcg = 0;
    items.slice(0, k).forEach((i, r) => (dcg += rel.has(i) ? 1 / Math.log2(r + 2) : 0));
    let idcg = 0;
    for (let r = 0; r < Math.min(k, rel.size); r++) idcg += 1 / Math.log2(r + 2);
    sum += dcg / idcg;
  }
  return sum / users.length;
}

describe('early stopping', () => {
  it('holds out a seeded share of each user, never a whole history, and partitions the entries', () => {
    const m = randomMatrix(1);
    const a = holdOutValidation(m, 0.2, 7);
    const b = holdOutValidation(m, 0.2, 7);
    expect(Array.from(a.heldOut)).toEqual(Array.from(b.heldOut));
    expect(nnz(a.fit) + nnz(a.validation)).toBe(nnz(m));
    const share = nnz(a.validation) / nnz(m);
    expect(share).toBeGreaterThan(0.12);
    expect(share).toBeLessThan(0.28);
    for (let u = 0; u < m.rows; u++) {
      if (m.indptr[u + 1] - m.indptr[u] >= 1)
        expect(a.fit.indptr[u + 1] - a.fit.indptr[u]).toBeGreaterThan(0);
    }
  });

  it('computes the same NDCG@k as a sort-everything reference', () => {
    const m = randomMatrix(2);
    const { fit, validation } = holdOutValidation(m, 0.3, 3);
    const f = 4;
    const rng = new Rng(5);
    const X = new Float32Array(m.rows * f).map(() => rng.float() - 0.5);
    const Y = new Float32Array(m.cols * f).map(() => rng.float() - 0.5);
    for (const maxUsers of [1000, 10]) {
      const scorer = new ValidationScorer(fit, validation, f, 5, maxUsers, 1);
      expect(scorer.users.length).toBe(Math.min(maxUsers, scorer.users.length));
      expect(scorer.ndcg(X, Y, f)).toBeCloseTo(referenceNdcg(X, Y, f, fit, validation, scorer.users, 5), 6);
    }
  });

  it('scores users two at a time with the same NDCG, at factor counts past the unrolled step, with a bias', () => {
    const m = randomMatrix(3);
    const { fit, validation } = holdOutValidation(m, 0.3, 4);
    const rng = new Rng(6);
    for (const f of [8, 12, 19]) {
      const X = new Float32Array(m.rows * f).map(() => rng.float() - 0.5);
      const Y = new Float32Array(m.cols * f).map(() => rng.float() - 0.5);
      const bias = new Float32Array(m.cols).map(() => rng.float() - 0.5);
      // An odd number of users: pairs, then one alone.
      const scorer = new ValidationScorer(fit, validation, f, 5, 7, 2);
      expect(scorer.users.length).toBe(7);
      for (const b of [null, bias])
        expect(scorer.ndcg(X, Y, f, b)).toBeCloseTo(
          referenceNdcg(X, Y, f, fit, validation, scorer.users, 5, b),
          6,
        );
    }
  });

  it('stops after `patience` evaluations without a new best, or at the target', () => {
    const s = new EarlyStopper(2);
    expect(s.update(0.1, 1)).toBe(true);
    expect(s.update(0.2, 2)).toBe(true);
    expect(s.update(0.2, 3)).toBe(false);
    expect(s.shouldStop).toBe(false);
    expect(s.update(0.15, 4)).toBe(false);
    expect(s.shouldStop).toBe(true);
    expect(s.bestIteration).toBe(2);
    const t = new EarlyStopper(0, 0.3);
    t.update(0.29, 1);
    expect(t.shouldStop).toBe(false);
    t.update(0.31, 2);
    expect(t.shouldStop).toBe(true);
  });
});
