import { describe, expect, it } from 'vitest';
import {
  alsCgRows,
  alsCholeskyRows,
  alsLossRows,
  alsSolveExact,
  axpy,
  bprEpoch,
  bprFoldIn,
  cholesky,
  choleskySolve,
  cosinePair,
  cosinePairsTo,
  cosineToAll,
  dot,
  drawSortedBlock,
  gramian,
  invNorms,
  matVec,
  rowOfEntry,
  scaleAdd,
  sortedContains,
  type AlsRowsArgs,
} from './kernels.ts';
import { Rng } from './random.ts';
import { csrFromCoo, type Csr } from './sparse.ts';

function randArray(rng: Rng, n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (rng.float() * 2 - 1) * scale;
  return a;
}

/** Naive reference: Gaussian elimination with partial pivoting on a dense double matrix. */
function gaussSolve(A: number[][], b: number[]): number[] {
  const n = b.length;
  const M = A.map((row, i) => [...row, b[i]]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(M[r][c]) > Math.abs(M[p][c])) p = r;
    [M[c], M[p]] = [M[p], M[c]];
    for (let r = c + 1; r < n; r++) {
      const f = M[r][c] / M[c][c];
      for (let q = c; q <= n; q++) M[r][q] -= f * M[c][q];
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = M[r][n];
    for (let q = r + 1; q < n; q++) s -= M[r][q] * x[q];
    x[r] = s / M[r][r];
  }
  return x;
}

function naiveGram(Y: Float32Array, rows: number, k: number, reg = 0): number[][] {
  const G = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  for (let r = 0; r < rows; r++)
    for (let a = 0; a < k; a++) for (let b = 0; b < k; b++) G[a][b] += Y[r * k + a] * Y[r * k + b];
  for (let a = 0; a < k; a++) G[a][a] += reg;
  return G;
}

function toFlat(G: number[][]): Float64Array {
  return Float64Array.from(G.flat());
}

/** Naive normal equations of one ALS row. */
function naiveRowSystem(
  Y: Float32Array,
  k: number,
  gram: number[][],
  alpha: number,
  items: number[],
  weights: number[],
): { A: number[][]; b: number[] } {
  const A = gram.map((r) => [...r]);
  const b = new Array<number>(k).fill(0);
  items.forEach((i, q) => {
    const w = weights[q];
    const c = 1 + alpha * Math.abs(w);
    const p = w > 0 ? 1 : 0;
    for (let a = 0; a < k; a++) {
      b[a] += c * p * Y[i * k + a];
      for (let bb = 0; bb < k; bb++) A[a][bb] += (c - 1) * Y[i * k + a] * Y[i * k + bb];
    }
  });
  return { A, b };
}

function randomCsr(rng: Rng, rows: number, cols: number, perRow: number, negative = false): Csr {
  const r: number[] = [];
  const c: number[] = [];
  const v: number[] = [];
  for (let u = 0; u < rows; u++) {
    for (let j = 0; j < perRow; j++) {
      r.push(u);
      c.push(rng.int(cols));
      v.push(negative && rng.float() < 0.2 ? -1 : 0.5 + rng.float() * 3);
    }
  }
  return csrFromCoo(rows, cols, r, c, v);
}

describe('level-1 kernels', () => {
  it('dot, axpy and scaleAdd match naive loops at offsets and odd lengths', () => {
    const rng = new Rng(1);
    for (const k of [1, 3, 4, 7, 64, 65]) {
      const a = randArray(rng, k + 5);
      const b = new Float64Array(randArray(rng, k + 9));
      let want = 0;
      for (let f = 0; f < k; f++) want += a[2 + f] * b[5 + f];
      expect(dot(a, 2, b, 5, k)).toBeCloseTo(want, 10);

      const y = new Float64Array(b);
      axpy(0.75, a, 2, y, 5, k);
      for (let f = 0; f < y.length; f++)
        expect(y[f]).toBeCloseTo(f >= 5 && f < 5 + k ? b[f] + 0.75 * a[2 + f - 5] : b[f], 10);

      const z = new Float64Array(b);
      scaleAdd(z, 5, -0.5, a, 2, k);
      for (let f = 0; f < k; f++) expect(z[5 + f]).toBeCloseTo(a[2 + f] - 0.5 * b[5 + f], 10);
    }
  });

  it('gramian equals YᵀY over a row range, accumulating', () => {
    const rng = new Rng(2);
    for (const [rows, k] of [
      [1, 1],
      [9, 5],
      [23, 8],
      [50, 64],
    ]) {
      const Y = randArray(rng, rows * k);
      const out = new Float64Array(k * k + 3);
      // Two calls over split ranges must sum to the whole.
      const mid = Math.floor(rows / 3);
      gramian(Y, k, 0, mid, out, 3);
      gramian(Y, k, mid, rows, out, 3);
      const G = naiveGram(Y, rows, k);
      for (let a = 0; a < k; a++)
        for (let b = 0; b < k; b++) expect(out[3 + a * k + b]).toBeCloseTo(G[a][b], 9);
      expect(out[0]).toBe(0);
    }
  });

  it('matVec scores every row', () => {
    const rng = new Rng(3);
    for (const k of [3, 64, 70]) {
      const rows = 37;
      const M = randArray(rng, rows * k);
      for (const x of [new Float64Array(randArray(rng, k)), randArray(rng, k)]) {
        const out = new Float32Array(rows);
        matVec(M, k, x, out);
        for (let r = 0; r < rows; r++) {
          let s = 0;
          for (let f = 0; f < k; f++) s += M[r * k + f] * x[f];
          expect(out[r]).toBeCloseTo(s, 4);
        }
      }
    }
  });
});

describe('Cholesky', () => {
  it('factors an SPD matrix and solves against Gaussian elimination', () => {
    const rng = new Rng(4);
    for (const k of [1, 2, 5, 16, 64]) {
      const B = randArray(rng, (k + 3) * k);
      const G = naiveGram(B, k + 3, k, 0.1);
      const b = Array.from({ length: k }, () => rng.float() * 2 - 1);
      const L = toFlat(G);
      expect(cholesky(L, k)).toBe(true);
      // L Lᵀ reproduces A.
      for (let i = 0; i < k; i++) {
        for (let j = 0; j <= i; j++) {
          let s = 0;
          for (let p = 0; p <= j; p++) s += L[i * k + p] * L[j * k + p];
          expect(s).toBeCloseTo(G[i][j], 8);
        }
      }
      const x = Float64Array.from(b);
      choleskySolve(L, k, x);
      const want = gaussSolve(G, b);
      for (let f = 0; f < k; f++) expect(x[f]).toBeCloseTo(want[f], 6);
    }
  });

  it('reports a matrix that is not positive definite', () => {
    const A = new Float64Array([1, 2, 2, 1]);
    expect(cholesky(A, 2)).toBe(false);
  });
});

describe('implicit ALS row solvers', () => {
  const k = 8;
  const alpha = 3;
  const reg = 0.1;

  function setup(seed: number): { m: Csr; Y: Float32Array; gramNoReg: number[][]; gram: Float64Array } {
    const rng = new Rng(seed);
    const m = randomCsr(rng, 12, 30, 6, true);
    const Y = randArray(rng, 30 * k, 0.5);
    const gramNoReg = naiveGram(Y, 30, k);
    return { m, Y, gramNoReg, gram: toFlat(naiveGram(Y, 30, k, reg)) };
  }

  it('alsSolveExact solves the naive normal equations', () => {
    const { m, Y, gram } = setup(5);
    const G = Array.from({ length: k }, (_, a) => Array.from(gram.subarray(a * k, a * k + k)));
    const A = new Float64Array(k * k);
    const b = new Float64Array(k);
    for (let u = 0; u < m.rows; u++) {
      const s = m.indptr[u];
      const e = m.indptr[u + 1];
      expect(alsSolveExact(Y, gram, k, alpha, m.indices, m.data, s, e, A, b)).toBe(true);
      const sys = naiveRowSystem(
        Y,
        k,
        G,
        alpha,
        Array.from(m.indices.subarray(s, e)),
        Array.from(m.data.subarray(s, e)),
      );
      const want = gaussSolve(sys.A, sys.b);
      for (let f = 0; f < k; f++) expect(b[f]).toBeCloseTo(want[f], 6);
    }
  });

  it('CG converges to the exact solution and 3 steps already cut the residual', () => {
    const { m, Y, gram } = setup(6);
    const G = Array.from({ length: k }, (_, a) => Array.from(gram.subarray(a * k, a * k + k)));
    const base: Omit<AlsRowsArgs, 'X' | 'cgSteps' | 'solver'> = {
      indptr: m.indptr,
      indices: m.indices,
      data: m.data,
      Y,
      gram,
      k,
      alpha,
      start: 0,
      end: m.rows,
    };
    const exact = new Float32Array(m.rows * k);
    alsCholeskyRows({ ...base, X: exact, cgSteps: 0, solver: 'cholesky' });
    const many = new Float32Array(m.rows * k).fill(0.01);
    alsCgRows({ ...base, X: many, cgSteps: 3 * k, solver: 'cg' });
    for (let q = 0; q < exact.length; q++) expect(many[q]).toBeCloseTo(exact[q], 4);

    const start = new Float32Array(m.rows * k).fill(0.01);
    const three = new Float32Array(start);
    alsCgRows({ ...base, X: three, cgSteps: 3, solver: 'cg' });
    for (let u = 0; u < m.rows; u++) {
      const s = m.indptr[u];
      const e = m.indptr[u + 1];
      const sys = naiveRowSystem(
        Y,
        k,
        G,
        alpha,
        Array.from(m.indices.subarray(s, e)),
        Array.from(m.data.subarray(s, e)),
      );
      const resid = (x: Float32Array): number => {
        let n = 0;
        for (let a = 0; a < k; a++) {
          let r = sys.b[a];
          for (let b = 0; b < k; b++) r -= sys.A[a][b] * x[u * k + b];
          n += r * r;
        }
        return Math.sqrt(n);
      };
      expect(resid(three)).toBeLessThan(resid(start));
    }
  });

  it('alsLossRows equals the brute-force weighted loss over the full matrix', () => {
    const { m, Y, gramNoReg } = setup(7);
    const rng = new Rng(8);
    const X = randArray(rng, m.rows * k, 0.5);
    const got = alsLossRows(m.indptr, m.indices, m.data, X, Y, toFlat(gramNoReg), k, alpha, 0, m.rows);
    let want = 0;
    for (let u = 0; u < m.rows; u++) {
      for (let i = 0; i < m.cols; i++) {
        let c = 1;
        let p = 0;
        for (let q = m.indptr[u]; q < m.indptr[u + 1]; q++) {
          if (m.indices[q] === i) {
            c = 1 + alpha * Math.abs(m.data[q]);
            p = m.data[q] > 0 ? 1 : 0;
          }
        }
        let s = 0;
        for (let f = 0; f < k; f++) s += X[u * k + f] * Y[i * k + f];
        want += c * (p - s) * (p - s);
      }
    }
    expect(got).toBeCloseTo(want, 6);
  });
});

describe('BPR kernels', () => {
  it('drawSortedBlock draws the same values as the generator, sorted', () => {
    for (const total of [1, 7, 5000, 3_000_000]) {
      const out = new Int32Array(20_000);
      drawSortedBlock(new Rng(4), total, out, 10_000);
      const r = new Rng(4);
      const want = Array.from({ length: 10_000 }, () => r.int(total)).sort((a, b) => a - b);
      expect(Array.from(out.subarray(0, 10_000))).toEqual(want);
      expect(out[10_000]).toBe(0);
    }
  });

  it('rowOfEntry finds the row of a stored entry, skipping empty rows', () => {
    const indptr = new Int32Array([0, 2, 2, 2, 5, 6]);
    const want = [0, 0, 3, 3, 3, 4];
    for (let q = 0; q < 6; q++) expect(rowOfEntry(indptr, 5, q)).toBe(want[q]);
  });

  it('sortedContains is a binary search over a slice', () => {
    const a = new Int32Array([1, 3, 5, 7, 9, 11]);
    for (let v = 0; v < 13; v++) expect(sortedContains(a, 1, 5, v)).toBe([3, 5, 7, 9].includes(v));
    expect(sortedContains(a, 2, 2, 5)).toBe(false);
  });

  it('dynamic negative sampling updates the highest-scoring candidate, uniform a random one', () => {
    // One user who likes item 0 of 12; item scores are their biases (user vector zero), item 7 the
    // top non-positive. With 200 candidates item 7 is all but surely drawn and must be the one
    // pushed down; with 1 candidate the negative is whatever one draw gives.
    const k = 4;
    const items = 12;
    const m = csrFromCoo(1, items, [0], [0], null);
    const bias = Float32Array.from({ length: items }, (_, i) => (i === 7 ? 1 : i * 0.01));
    const changed = (negatives: number, seed: number): number[] => {
      const b = new Float32Array(bias);
      bprEpoch({
        indptr: m.indptr,
        indices: m.indices,
        X: new Float32Array(k),
        Y: new Float32Array(items * k),
        bias: b,
        k,
        nItems: items,
        learningRate: 0.1,
        regularization: 0,
        samples: 1,
        seed,
        negatives,
      });
      return Array.from(b.keys()).filter((i) => i !== 0 && b[i] !== bias[i]);
    };
    for (let seed = 1; seed <= 20; seed++) expect(changed(200, seed)).toEqual([7]);
    const uniform = new Set<number>();
    for (let seed = 1; seed <= 20; seed++) {
      const c = changed(1, seed);
      expect(c).toHaveLength(1);
      uniform.add(c[0]);
    }
    expect(uniform.size).toBeGreaterThan(3);
  });

  it('one SGD step matches the hand-derived update', () => {
    // One user who likes item 0 of two: the negative must be item 1.
    const k = 2;
    const m = csrFromCoo(1, 2, [0], [0], null);
    const X = new Float32Array([0.5, -0.2]);
    const Y = new Float32Array([0.1, 0.3, -0.4, 0.2]);
    const bias = new Float32Array([0.05, -0.05]);
    const lr = 0.1;
    const reg = 0.01;
    const xuij = 0.05 - -0.05 + 0.5 * (0.1 - -0.4) + -0.2 * (0.3 - 0.2);
    const z = 1 / (1 + Math.exp(xuij));
    const res = bprEpoch({
      indptr: m.indptr,
      indices: m.indices,
      X,
      Y,
      bias,
      k,
      nItems: 2,
      learningRate: lr,
      regularization: reg,
      samples: 1,
      seed: 1,
    });
    expect(res).toEqual({ correct: 1, skipped: 0 });
    expect(bias[0]).toBeCloseTo(0.05 + lr * (z - reg * 0.05), 6);
    expect(bias[1]).toBeCloseTo(-0.05 + lr * (-z - reg * -0.05), 6);
    expect(X[0]).toBeCloseTo(0.5 + lr * (z * (0.1 - -0.4) - reg * 0.5), 6);
    expect(X[1]).toBeCloseTo(-0.2 + lr * (z * (0.3 - 0.2) - reg * -0.2), 6);
    expect(Y[0]).toBeCloseTo(0.1 + lr * (z * 0.5 - reg * 0.1), 6);
    expect(Y[2]).toBeCloseTo(-0.4 + lr * (-z * 0.5 - reg * -0.4), 6);
  });

  it('skips users who have every item and never samples a positive as negative', () => {
    const m = csrFromCoo(1, 3, [0, 0, 0], [0, 1, 2], null);
    const res = bprEpoch({
      indptr: m.indptr,
      indices: m.indices,
      X: new Float32Array(2),
      Y: new Float32Array(6),
      bias: new Float32Array(3),
      k: 2,
      nItems: 3,
      learningRate: 0.1,
      regularization: 0,
      samples: 10,
      seed: 2,
    });
    expect(res.skipped).toBe(10);
  });

  it('fold-in is deterministic and ranks the history above other items', () => {
    const rng = new Rng(9);
    const k = 4;
    const nItems = 40;
    // Items 0..19 point one way, 20..39 the other; the history holds some of the first group.
    const Y = new Float32Array(nItems * k);
    for (let i = 0; i < nItems; i++)
      for (let f = 0; f < k; f++)
        Y[i * k + f] = (i < 20 ? 1 : -1) * (f === 0 ? 1 : 0) + 0.1 * (rng.float() - 0.5);
    const bias = new Float32Array(nItems);
    const items = new Int32Array([1, 4, 7, 10, 13]);
    const weights = new Float32Array(items.length).fill(1);
    const x1 = new Float64Array(k);
    const x2 = new Float64Array(k);
    bprFoldIn(Y, bias, k, nItems, items, weights, 0.05, 0.01, 500, x1);
    bprFoldIn(Y, bias, k, nItems, items, weights, 0.05, 0.01, 500, x2);
    expect(Array.from(x1)).toEqual(Array.from(x2));
    const scores = new Float32Array(nItems);
    matVec(Y, k, x1, scores);
    for (let i = 0; i < 20; i++) for (let j = 20; j < 40; j++) expect(scores[i]).toBeGreaterThan(scores[j]);
  });
});

describe('cosine', () => {
  it('cosineToAll matches the naive cosine and maps zero rows to 0', () => {
    const rng = new Rng(10);
    const k = 5;
    const rows = 9;
    const M = randArray(rng, rows * k);
    M.fill(0, 4 * k, 5 * k);
    const inv = invNorms(M, rows, k);
    expect(inv[4]).toBe(0);
    const out = new Float32Array(rows);
    cosineToAll(M, inv, k, 2, out, rows);
    for (let j = 0; j < rows; j++) {
      const d = dot(M, 2 * k, M, j * k, k);
      const n = Math.sqrt(dot(M, 2 * k, M, 2 * k, k) * dot(M, j * k, M, j * k, k));
      expect(out[j]).toBeCloseTo(n > 0 ? d / n : 0, 5);
    }
    expect(out[2]).toBeCloseTo(1, 5);
  });

  it('cosinePairsTo gives cosinePair bit for bit, in groups of four and the rest, 0 outside the matrix', () => {
    const rng = new Rng(11);
    const k = 13;
    const rows = 40;
    const M = randArray(rng, rows * k);
    const inv = invNorms(M, rows, k);
    // 11 rows: two groups of four and three left over; a row outside M in the second group.
    const picked = Int32Array.from([3, 0, 39, 7, 7, 12, -1, 25, 31, 2, rows]);
    const out = new Float64Array(picked.length);
    cosinePairsTo(M, inv, k, picked, 5, out);
    picked.forEach((r, j) => {
      expect(out[j]).toBe(r >= 0 && r < rows ? cosinePair(M, inv, k, r, 5) : 0);
    });
    const clean = Int32Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
    const out2 = new Float64Array(clean.length);
    cosinePairsTo(M, inv, k, clean, 9, out2);
    clean.forEach((r, j) => expect(out2[j]).toBe(cosinePair(M, inv, k, r, 9)));
    cosinePairsTo(M, inv, k, clean, rows, out2);
    expect([...out2]).toEqual(new Array(clean.length).fill(0));
  });
});
