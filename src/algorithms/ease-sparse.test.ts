import { describe, expect, it } from 'vitest';
import { fitEaseMatrix } from './ease.ts';
import { getAlgorithm, resolveParams } from './index.ts';
import {
  choleskyInPlace,
  choleskySolve,
  fitSparseEase,
  gramMatrix,
  sparseEaseColumns,
} from './ease-sparse.ts';
import { Rng } from './random.ts';
import { csrFromCoo, transpose, type Csr } from './sparse.ts';

/** A random long-tail matrix: popularity falls with the item index. */
function randomMatrix(seed: number, users: number, items: number, density: number, weighted: boolean): Csr {
  const rng = new Rng(seed);
  const r: number[] = [];
  const c: number[] = [];
  const v: number[] = [];
  for (let u = 0; u < users; u++) {
    for (let i = 0; i < items; i++) {
      if (rng.float() < density / (1 + i / 6)) {
        r.push(u);
        c.push(i);
        v.push(weighted ? 1 + Math.floor(rng.float() * 5) : 1);
      }
    }
  }
  return csrFromCoo(users, items, r, c, v);
}

function denseGram(m: Csr, binary: boolean): number[][] {
  const G = Array.from({ length: m.cols }, () => new Array<number>(m.cols).fill(0));
  for (let u = 0; u < m.rows; u++) {
    for (let p = m.indptr[u]; p < m.indptr[u + 1]; p++) {
      for (let q = m.indptr[u]; q < m.indptr[u + 1]; q++) {
        G[m.indices[p]][m.indices[q]] += (binary ? 1 : m.data[p]) * (binary ? 1 : m.data[q]);
      }
    }
  }
  return G;
}

/** Gaussian elimination with partial pivoting: solves M x = b (M is copied). */
function solve(M: number[][], b: number[]): number[] {
  const n = b.length;
  const A = M.map((row, i) => [...row, b[i]]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(A[r][c]) > Math.abs(A[p][c])) p = r;
    [A[c], A[p]] = [A[p], A[c]];
    for (let r = c + 1; r < n; r++) {
      const f = A[r][c] / A[c][c];
      for (let q = c; q <= n; q++) A[r][q] -= f * A[c][q];
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = A[r][n];
    for (let q = r + 1; q < n; q++) s -= A[r][q] * x[q];
    x[r] = s / A[r][r];
  }
  return x;
}

/**
 * Reference sparse EASE straight from the definition: N(j) = the `m` co-occurring items of largest
 * cosine (ties to the lower index), B_{N j} = (G_NN + λI)⁻¹ G_{N j}. Returns B densely.
 */
function referenceSparseB(m: Csr, lambda: number, binary: boolean, neighbors: number): number[][] {
  const n = m.cols;
  const G = denseGram(m, binary);
  const B = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  for (let j = 0; j < n; j++) {
    const cand: number[] = [];
    for (let k = 0; k < n; k++) if (k !== j && G[j][k] > 0) cand.push(k);
    const cos = (k: number): number => G[j][k] / Math.sqrt(G[j][j] * G[k][k]);
    cand.sort((a, b) => cos(b) - cos(a) || a - b);
    const N = cand.slice(0, neighbors).sort((a, b) => a - b);
    if (N.length === 0) continue;
    const A = N.map((a, x) => N.map((b, y) => G[a][b] + (x === y ? lambda : 0)));
    const w = solve(
      A,
      N.map((a) => G[a][j]),
    );
    N.forEach((a, x) => (B[a][j] = w[x]));
  }
  return B;
}

function graphDense(g: Csr): number[][] {
  const B = Array.from({ length: g.rows }, () => new Array<number>(g.cols).fill(0));
  for (let i = 0; i < g.rows; i++) {
    for (let p = g.indptr[i]; p < g.indptr[i + 1]; p++) B[i][g.indices[p]] = g.data[p];
  }
  return B;
}

function maxDiff(a: number[][], b: number[][]): { worst: number; scale: number } {
  let worst = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    for (let j = 0; j < a[i].length; j++) {
      worst = Math.max(worst, Math.abs(a[i][j] - b[i][j]));
      scale = Math.max(scale, Math.abs(b[i][j]));
    }
  }
  return { worst, scale };
}

describe('ease-sparse kernels', () => {
  it('factorises and solves an SPD system like Gaussian elimination', () => {
    const rng = new Rng(3);
    const n = 17;
    const R = Array.from({ length: n }, () => Array.from({ length: n }, () => rng.float() - 0.5));
    const M = R.map((_, i) =>
      R.map((__, j) => R[i].reduce((s, v, k) => s + v * R[j][k], 0) + (i === j ? 0.1 : 0)),
    );
    const b = Array.from({ length: n }, () => rng.float());
    const A = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) A[i * n + j] = M[i][j];
    expect(choleskyInPlace(A, n)).toBe(true);
    const x = Float64Array.from(b);
    choleskySolve(A, n, x);
    const ref = solve(M, b);
    for (let i = 0; i < n; i++) expect(x[i]).toBeCloseTo(ref[i], 8);
  });

  it('reports a matrix that is not positive definite', () => {
    expect(choleskyInPlace(Float64Array.of(1, 2, 2, 1), 2)).toBe(false);
  });

  it('builds XᵀX with sorted rows, and prunes each row to its strongest entries under a budget', () => {
    const m = randomMatrix(5, 40, 25, 0.7, true);
    const G = denseGram(m, false);
    const { gram, pruned } = gramMatrix(m, transpose(m), 1e9);
    expect(pruned).toBe(false);
    expect(graphDense(gram)).toEqual(G);
    for (let i = 0; i < gram.rows; i++) {
      for (let p = gram.indptr[i] + 1; p < gram.indptr[i + 1]; p++) {
        expect(gram.indices[p]).toBeGreaterThan(gram.indices[p - 1]);
      }
    }
    const small = gramMatrix(m, transpose(m), 100);
    expect(small.pruned).toBe(true);
    for (let i = 0; i < small.gram.rows; i++) {
      const len = small.gram.indptr[i + 1] - small.gram.indptr[i];
      expect(len).toBeLessThanOrEqual(Math.floor(100 / 25));
      // Kept entries are exact, and the diagonal is always kept when the row is non-empty.
      let hasDiag = len === 0;
      for (let p = small.gram.indptr[i]; p < small.gram.indptr[i + 1]; p++) {
        const j = small.gram.indices[p];
        expect(small.gram.data[p]).toBe(G[i][j]);
        if (j === i) hasDiag = true;
      }
      expect(hasDiag).toBe(true);
    }
  });
});

describe('fitSparseEase', () => {
  for (const [name, weighted, neighbors] of [
    ['binary, 4 neighbours', false, 4],
    ['weighted, 7 neighbours', true, 7],
    ['binary, 1 neighbour', false, 1],
  ] as const) {
    it(`matches the naive restricted regressions (${name})`, async () => {
      const m = randomMatrix(17, 60, 30, 0.5, weighted);
      const lambda = 2.5;
      const r = await fitSparseEase(m, { lambda, binary: !weighted, neighbors });
      const ref = referenceSparseB(m, lambda, !weighted, neighbors);
      const { worst, scale } = maxDiff(graphDense(r.graph), ref);
      expect(worst).toBeLessThan(1e-5 * Math.max(1, scale));
      expect(r.gramPruned).toBe(false);
      // Rows sorted, at most `neighbors` weights per target column.
      const perTarget = new Int32Array(m.cols);
      for (let i = 0; i < r.graph.rows; i++) {
        for (let p = r.graph.indptr[i]; p < r.graph.indptr[i + 1]; p++) {
          if (p > r.graph.indptr[i]) expect(r.graph.indices[p]).toBeGreaterThan(r.graph.indices[p - 1]);
          perTarget[r.graph.indices[p]]++;
          expect(r.graph.indices[p]).not.toBe(i);
        }
      }
      for (const c of perTarget) expect(c).toBeLessThanOrEqual(neighbors);
    });
  }

  it('is dense EASE when every pair of items co-occurs and every item may use every other', async () => {
    const rng = new Rng(8);
    const r: number[] = [];
    const c: number[] = [];
    for (let u = 0; u < 50; u++) {
      for (let i = 0; i < 12; i++) {
        // Users 0..11 hold every item, so every pair co-occurs; the rest are random.
        if (u < 12 || rng.float() < 0.4) {
          r.push(u);
          c.push(i);
        }
      }
    }
    const m = csrFromCoo(50, 12, r, c, null);
    const sparse = await fitSparseEase(m, { lambda: 3, binary: true, neighbors: 11 });
    const dense = await fitEaseMatrix(
      m,
      { lambda: 3, binary: true, maxItems: 100, variant: 'dense', neighbors: 1 },
      { threads: 1 },
    );
    const D = Array.from({ length: 12 }, (_, i) => Array.from(dense.B.subarray(i * 12, (i + 1) * 12)));
    const { worst, scale } = maxDiff(graphDense(sparse.graph), D);
    expect(worst).toBeLessThan(1e-5 * scale);
  });

  it('stays finite with a pruned Gram matrix and re-regularises indefinite systems', async () => {
    const m = randomMatrix(23, 80, 40, 0.8, false);
    const r = await fitSparseEase(m, { lambda: 0.01, binary: true, neighbors: 10, gramBudget: 160 });
    expect(r.gramPruned).toBe(true);
    expect(r.reregularised).toBeGreaterThanOrEqual(0);
    for (const v of r.graph.data) expect(Number.isFinite(v)).toBe(true);
    expect(r.graph.indptr[r.graph.rows]).toBeGreaterThan(0);
  });

  it('leaves items without interactions with empty rows and columns', async () => {
    const m = csrFromCoo(3, 5, [0, 0, 1, 1, 2], [0, 1, 0, 3, 3], Float32Array.of(1, 1, 1, 0, 1));
    const r = await fitSparseEase(m, { lambda: 1, binary: true, neighbors: 10 });
    // Item 2 never appears; item 4 never appears; item 3 only co-occurs through a stored zero.
    expect(r.activeItems).toBe(3);
    const B = graphDense(r.graph);
    for (let k = 0; k < 5; k++) {
      expect(B[2][k]).toBe(0);
      expect(B[k][2]).toBe(0);
      expect(B[4][k]).toBe(0);
    }
    expect(B[0][1]).toBeCloseTo(1 / 3, 6); // G_00 = 2, G_01 = 1: w = 1 / (2 + 1)
  });

  it('gives the same B when column ranges run through a runner (as worker threads would)', async () => {
    const m = randomMatrix(31, 70, 35, 0.5, false);
    const inThread = await fitSparseEase(m, { lambda: 5, binary: true, neighbors: 6 });
    let calls = 0;
    const viaRunner = await fitSparseEase(m, {
      lambda: 5,
      binary: true,
      neighbors: 6,
      parts: 3,
      share: (g) => ({ ...g, data: g.data.slice() }),
      runColumns: (ranges) => {
        calls += ranges.length;
        return Promise.resolve(ranges.map((r) => sparseEaseColumns(r)));
      },
    });
    expect(calls).toBeGreaterThan(1);
    expect(viaRunner.graph.indptr).toEqual(inThread.graph.indptr);
    expect(viaRunner.graph.indices).toEqual(inThread.graph.indices);
    expect(viaRunner.graph.data).toEqual(inThread.graph.data);
  });

  it('is deterministic', async () => {
    const m = randomMatrix(29, 70, 35, 0.5, true);
    const a = await fitSparseEase(m, { lambda: 5, binary: false, neighbors: 6 });
    const b = await fitSparseEase(m, { lambda: 5, binary: false, neighbors: 6 });
    expect(b.graph.indices).toEqual(a.graph.indices);
    expect(b.graph.data).toEqual(a.graph.data);
  });
});

describe('sparse EASE on the worker pool', () => {
  it('scores the same with two worker threads as in one thread', async () => {
    const m = randomMatrix(31, 120, 60, 0.3, true);
    const params = resolveParams(getAlgorithm('ease'), { variant: 'sparse', neighbors: 12, lambda: 5 });
    const one = await getAlgorithm('ease').fit(m, params, { threads: 1, seed: 1 });
    const two = await getAlgorithm('ease').fit(m, params, { threads: 2, seed: 1 });
    expect(two.params.variant).toBe('sparse');
    for (let u = 0; u < 10; u++) {
      const a = new Float32Array(60);
      const b = new Float32Array(60);
      const history = {
        items: m.indices.slice(m.indptr[u], m.indptr[u + 1]),
        weights: m.data.slice(m.indptr[u], m.indptr[u + 1]),
      };
      one.scoreUser(u, history, a);
      two.scoreUser(u, history, b);
      expect(Array.from(b)).toEqual(Array.from(a));
    }
  });
});
