import { describe, expect, it } from 'vitest';
import { Rng } from './random.ts';
import {
  invertSmallSpd,
  invertSpdInPlace,
  sequentialRunner,
  subtractProductNT,
  SWEEP_BLOCK,
  sweepBuffers,
  triangularRanges,
} from './spd-inverse.ts';

/** A random SPD matrix (full storage): MᵀM/rows + shift·I. */
function randomSpd(rng: Rng, n: number, shift: number): Float64Array {
  const rows = n + 3;
  const M = new Float64Array(rows * n);
  for (let q = 0; q < M.length; q++) M[q] = rng.float() * 2 - 1;
  const A = new Float64Array(n * n);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < n; i++) {
      const x = M[r * n + i];
      for (let j = 0; j < n; j++) A[i * n + j] += (x * M[r * n + j]) / rows;
    }
  }
  for (let i = 0; i < n; i++) A[i * n + i] += shift;
  return A;
}

/** max |A·X − I| for full n × n matrices. */
function residual(A: Float64Array, X: Float64Array, n: number): number {
  let worst = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += A[i * n + k] * X[k * n + j];
      worst = Math.max(worst, Math.abs(s - (i === j ? 1 : 0)));
    }
  }
  return worst;
}

describe('spd-inverse', () => {
  it('subtracts U·Wᵀ over a rectangle, including odd edges', () => {
    const rng = new Rng(1);
    const n = 11;
    const b = 5;
    const U = Float64Array.from({ length: n * b }, () => rng.float());
    const W = Float64Array.from({ length: n * b }, () => rng.float());
    const A = Float64Array.from({ length: n * n }, () => rng.float());
    const before = A.slice();
    subtractProductNT(A, n, U, W, b, 2, 9, 1, 8);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let want = before[i * n + j];
        if (i >= 2 && i < 9 && j >= 1 && j < 8)
          for (let p = 0; p < b; p++) want -= U[i * b + p] * W[j * b + p];
        expect(A[i * n + j]).toBeCloseTo(want, 12);
      }
    }
  });

  it('inverts a small SPD block by the scalar sweep', () => {
    const rng = new Rng(2);
    const n = 7;
    const A = randomSpd(rng, n, 0.1);
    const T = A.slice();
    invertSmallSpd(T, n);
    expect(residual(A, T, n)).toBeLessThan(1e-10);
    expect(() => invertSmallSpd(Float64Array.of(1, 2, 2, 1), 2)).toThrow(/positive definite/);
  });

  for (const n of [1, 5, SWEEP_BLOCK, SWEEP_BLOCK + 1, 2 * SWEEP_BLOCK + 37]) {
    it(`inverts an SPD matrix of size ${n} from its lower triangle`, async () => {
      const rng = new Rng(n);
      const A = randomSpd(rng, n, 0.05);
      const work = A.slice();
      // Garbage in the strict upper triangle must not matter.
      for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) work[i * n + j] = 1e6;
      const buf = sweepBuffers(work, n, false);
      await invertSpdInPlace(buf, sequentialRunner(buf));
      expect(residual(A, work, n)).toBeLessThan(1e-9);
      for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) expect(work[j * n + i]).toBe(work[i * n + j]);
    });
  }

  it('splits rows into ranges of equal triangular work', () => {
    const r = triangularRanges(1000, 4);
    expect(r[0][0]).toBe(0);
    expect(r[r.length - 1][1]).toBe(1000);
    for (let t = 1; t < r.length; t++) expect(r[t][0]).toBe(r[t - 1][1]);
    const work = r.map(([s, e]) => (e * (e + 1) - s * (s + 1)) / 2);
    for (const w of work) expect(w / (500_500 / 4)).toBeCloseTo(1, 1);
    expect(triangularRanges(2, 8)).toEqual([
      [0, 1],
      [1, 2],
    ]);
  });
});
