import { describe, expect, it } from 'vitest';
import { alsLoss, alsSpec, type AlsModel } from './als.ts';
import { alsSolveExact, gramian } from './kernels.ts';
import { alsSubspaceRows, type AlsSubspaceArgs } from './ialspp.ts';
import { Rng } from './random.ts';
import { csrFromCoo, type Csr } from './sparse.ts';

/** A tiny random problem: rows × cols with ~density, mixed positive and negative weights. */
function problem(seed: number, rows = 12, cols = 30, k = 8) {
  const rng = new Rng(seed);
  const r: number[] = [];
  const c: number[] = [];
  const w: number[] = [];
  for (let u = 0; u < rows; u++) {
    for (let i = 0; i < cols; i++) {
      if (rng.float() < 0.25) {
        r.push(u);
        c.push(i);
        w.push(rng.float() < 0.9 ? 1 + rng.int(3) : -1);
      }
    }
  }
  const m = csrFromCoo(rows, cols, r, c, w);
  const Y = new Float32Array(cols * k).map(() => rng.float() - 0.5);
  const X = new Float32Array(rows * k).map(() => (rng.float() - 0.5) * 0.1);
  const gram = new Float64Array(k * k);
  gramian(Y, k, 0, cols, gram, 0);
  return { m, Y, X, gram, k };
}

/** Exact per-row solutions via the Cholesky reference of kernels.ts. */
function exact(
  m: Csr,
  Y: Float32Array,
  gram: Float64Array,
  k: number,
  alpha: number,
  reg: number,
): Float64Array {
  const out = new Float64Array(m.rows * k);
  const A = new Float64Array(k * k);
  const b = new Float64Array(k);
  for (let u = 0; u < m.rows; u++) {
    alsSolveExact(Y, gram, k, alpha, m.indices, m.data, m.indptr[u], m.indptr[u + 1], A, b, reg);
    out.set(b, u * k);
  }
  return out;
}

/** Row objective xᵀ(G + λI)x + Σ_i c1 s² − 2 t s (the row's ALS loss up to a constant). */
function rowLoss(
  x: Float32Array,
  u: number,
  p: ReturnType<typeof problem>,
  alpha: number,
  reg: number,
): number {
  const { m, Y, gram, k } = p;
  let q = 0;
  for (let a = 0; a < k; a++) {
    for (let c = 0; c < k; c++) q += x[u * k + a] * gram[a * k + c] * x[u * k + c];
    q += reg * x[u * k + a] ** 2;
  }
  for (let e = m.indptr[u]; e < m.indptr[u + 1]; e++) {
    const w = m.data[e];
    const c1 = alpha * Math.abs(w);
    const t = w > 0 ? 1 + c1 : 0;
    let s = 0;
    for (let f = 0; f < k; f++) s += Y[m.indices[e] * k + f] * x[u * k + f];
    q += c1 * s * s - 2 * t * s;
  }
  return q;
}

function args(
  p: ReturnType<typeof problem>,
  X: Float32Array,
  blockSize: number,
  sweeps: number,
  reg: number,
  alpha: number,
): AlsSubspaceArgs {
  return {
    indptr: p.m.indptr,
    indices: p.m.indices,
    data: p.m.data,
    X,
    Y: p.Y,
    gram: p.gram,
    rowReg: new Float32Array(p.m.rows).fill(reg),
    k: p.k,
    alpha,
    blockSize,
    sweeps,
    start: 0,
    end: p.m.rows,
  };
}

describe('iALS++ subspace rows', () => {
  const alpha = 3;
  const reg = 0.5;

  it('is the exact solution in one sweep when the block covers every coordinate', () => {
    const p = problem(1);
    const X = p.X.slice();
    alsSubspaceRows(args(p, X, p.k, 1, reg, alpha));
    const want = exact(p.m, p.Y, p.gram, p.k, alpha, reg);
    for (let q = 0; q < X.length; q++) expect(X[q]).toBeCloseTo(want[q], 4);
  });

  it('converges to the exact solution with smaller blocks (and any block size that does not divide k)', () => {
    const p = problem(2);
    const want = exact(p.m, p.Y, p.gram, p.k, alpha, reg);
    for (const b of [1, 2, 3, 4]) {
      const X = p.X.slice();
      alsSubspaceRows(args(p, X, b, 200, reg, alpha));
      let err = 0;
      for (let q = 0; q < X.length; q++) err = Math.max(err, Math.abs(X[q] - want[q]));
      expect(err, `block ${b}`).toBeLessThan(1e-4);
    }
  });

  it('never increases a row objective, block after block', () => {
    const p = problem(3);
    const X = p.X.slice();
    let prev = Array.from({ length: p.m.rows }, (_, u) => rowLoss(X, u, p, alpha, reg));
    for (let sweep = 0; sweep < 5; sweep++) {
      alsSubspaceRows(args(p, X, 2, 1, reg, alpha));
      const now = Array.from({ length: p.m.rows }, (_, u) => rowLoss(X, u, p, alpha, reg));
      for (let u = 0; u < p.m.rows; u++) expect(now[u]).toBeLessThanOrEqual(prev[u] + 1e-6);
      prev = now;
    }
  });

  it('gives the same rows for any partition of the row range', () => {
    const p = problem(4);
    const a = p.X.slice();
    alsSubspaceRows(args(p, a, 3, 2, reg, alpha));
    const b = p.X.slice();
    for (const [s, e] of [
      [0, 5],
      [5, 6],
      [6, p.m.rows],
    ]) {
      alsSubspaceRows({ ...args(p, b, 3, 2, reg, alpha), start: s, end: e });
    }
    expect(Array.from(b)).toEqual(Array.from(a));
  });

  it('trains ALS to the same loss level as CG (als.solver=ialspp)', async () => {
    const p = problem(5, 60, 40, 8);
    const common = { factors: 8, regularization: 1, alpha: 3, iterations: 8, kernel: 'js' };
    const fit = async (extra: Record<string, number | string>): Promise<AlsModel> =>
      (await alsSpec.fit(p.m, { ...common, ...extra }, { threads: 1, seed: 1 })) as AlsModel;
    const cg = await fit({ solver: 'cg' });
    const pp = await fit({ solver: 'ialspp', blockSize: 4 });
    const chol = await fit({ solver: 'cholesky' });
    const loss = (mdl: AlsModel): number => alsLoss(p.m, mdl.userFactors, mdl.itemFactors, common);
    const exactLoss = loss(chol);
    expect(loss(pp)).toBeLessThan(exactLoss * 1.02);
    expect(loss(cg)).toBeLessThan(exactLoss * 1.02);
    expect(pp.params.solver).toBe('ialspp');
  });
});
