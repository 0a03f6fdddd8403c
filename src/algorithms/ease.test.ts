import { describe, expect, it } from 'vitest';
import { CairnError } from '../errors/errors.ts';
import {
  EASE_SPARSE_FORMAT_VERSION,
  EaseModel,
  easeParams,
  easeSpec,
  fitEaseMatrix,
  SparseEaseModel,
} from './ease.ts';
import { Rng } from './random.ts';
import { csrFromCoo, type Csr } from './sparse.ts';

/** Naive reference: Gauss-Jordan inverse with partial pivoting on a dense double matrix. */
function invert(M: number[][]): number[][] {
  const n = M.length;
  const A = M.map((row, i) => [...row, ...Array.from({ length: n }, (_, j) => (i === j ? 1 : 0))]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(A[r][c]) > Math.abs(A[p][c])) p = r;
    [A[c], A[p]] = [A[p], A[c]];
    const d = A[c][c];
    for (let q = 0; q < 2 * n; q++) A[c][q] /= d;
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = A[r][c];
      for (let q = 0; q < 2 * n; q++) A[r][q] -= f * A[c][q];
    }
  }
  return A.map((row) => row.slice(n));
}

/** B = I − P diag(1/diag P), P = (XᵀX + λI)⁻¹, over every item, straight from the definition. */
function referenceB(m: Csr, lambda: number, binary: boolean): number[][] {
  const n = m.cols;
  const G = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  for (let u = 0; u < m.rows; u++) {
    for (let p = m.indptr[u]; p < m.indptr[u + 1]; p++) {
      for (let q = m.indptr[u]; q < m.indptr[u + 1]; q++) {
        const wp = binary ? 1 : m.data[p];
        const wq = binary ? 1 : m.data[q];
        G[m.indices[p]][m.indices[q]] += wp * wq;
      }
    }
  }
  for (let i = 0; i < n; i++) G[i][i] += lambda;
  const P = invert(G);
  return P.map((row, i) => row.map((v, j) => (i === j ? 0 : -v / P[j][j])));
}

/** A random sparse matrix with a long tail: many items with one user, some users with one item. */
function randomMatrix(seed: number, users: number, items: number, density: number, weighted: boolean): Csr {
  const rng = new Rng(seed);
  const r: number[] = [];
  const c: number[] = [];
  const v: number[] = [];
  for (let u = 0; u < users; u++) {
    for (let i = 0; i < items; i++) {
      // Popularity falls with the item index, so the tail holds leaves and empty items.
      if (rng.float() < density / (1 + i / 4)) {
        r.push(u);
        c.push(i);
        v.push(weighted ? 1 + Math.floor(rng.float() * 5) : 1);
      }
    }
  }
  return csrFromCoo(users, items, r, c, v);
}

function fullB(model: EaseModel): number[][] {
  const out = new Float32Array(model.nItems);
  return Array.from({ length: model.nItems }, (_, i) => {
    expect(model.similarItems(i, out)).toBe(true);
    return Array.from(out);
  });
}

function expectClose(a: number[][], b: number[][], tol: number): void {
  let worst = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    for (let j = 0; j < a.length; j++) {
      worst = Math.max(worst, Math.abs(a[i][j] - b[i][j]));
      scale = Math.max(scale, Math.abs(b[i][j]));
    }
  }
  expect(scale).toBeGreaterThan(0);
  expect(worst).toBeLessThanOrEqual(tol * scale);
}

const seq = { threads: 1, seed: 1 };

describe('ease', () => {
  it('matches the dense closed form on a hand-sized matrix, with a zero diagonal', async () => {
    // 3 users × 4 items; item 3 is a leaf (one user), item 2 too.
    const m = csrFromCoo(3, 4, [0, 0, 1, 1, 1, 2, 2], [0, 1, 0, 1, 2, 1, 3], null);
    const model = (await easeSpec.fit(m, { lambda: 0.5 }, seq)) as EaseModel;
    const B = fullB(model);
    for (let i = 0; i < 4; i++) expect(B[i][i]).toBe(0);
    expectClose(B, referenceB(m, 0.5, true), 1e-5);
  });

  it('handles users whose items are all leaves, and several leaves per user (weighted)', async () => {
    // u0: 0,1,2(leaf)  u1: 0,1,3(leaf)  u2: 1,4(leaf),7(leaf)  u3: 5,6 (leaves only)
    const m = csrFromCoo(
      4,
      8,
      [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3],
      [0, 1, 2, 0, 1, 3, 1, 4, 7, 5, 6],
      [1, 2, 3, 2, 1, 4, 5, 2, 3, 2, 7],
    );
    const model = (await easeSpec.fit(m, { lambda: 1.5, binary: false }, seq)) as EaseModel;
    const B = fullB(model);
    const ref = referenceB(m, 1.5, false);
    expectClose(B, ref, 1e-5);
    // The two leaves of u3 explain each other and nothing else.
    expect(B[5][6]).toBeGreaterThan(0);
    expect(B[5][0]).toBe(0);
  });

  for (const [name, seed, weighted, lambda] of [
    ['binary', 7, false, 3],
    ['weighted', 11, true, 20],
    ['strong regularisation', 13, false, 500],
  ] as const) {
    it(`matches the naive inverse on a random long-tail matrix (${name})`, async () => {
      const m = randomMatrix(seed, 60, 150, 0.35, weighted);
      const model = (await easeSpec.fit(m, { lambda, binary: !weighted }, seq)) as EaseModel;
      expectClose(fullB(model), referenceB(m, lambda, !weighted), 2e-5);
    });
  }

  it('is exact when blocks span several sweep steps (core larger than one block)', async () => {
    const m = randomMatrix(5, 120, 400, 2.5, false);
    const { items, B } = await fitEaseMatrix(m, easeParams({ lambda: 10 }), seq);
    const ref = referenceB(m, 10, true);
    const n = items.length;
    let worst = 0;
    for (let a = 0; a < n; a++)
      for (let b = 0; b < n; b++) worst = Math.max(worst, Math.abs(B[a * n + b] - ref[items[a]][items[b]]));
    expect(n).toBeGreaterThan(200);
    expect(worst).toBeLessThan(1e-5);
  });

  it('drops items without interactions and leaves them at zero', async () => {
    const m = csrFromCoo(2, 5, [0, 0, 1, 1], [0, 2, 2, 4], null);
    const model = (await easeSpec.fit(m, { lambda: 1 }, seq)) as EaseModel;
    expect(Array.from(model.items)).toEqual([0, 2, 4]);
    const out = new Float32Array(5);
    model.scoreUser(0, { items: Int32Array.of(0, 2), weights: Float32Array.of(1, 1) }, out);
    expect(out[1]).toBe(0);
    expect(out[3]).toBe(0);
    expect(out[4]).toBeGreaterThan(0);
    expectClose(fullB(model), referenceB(m, 1, true), 1e-5);
  });

  it('scores a history as the weighted sum of its B rows', async () => {
    const m = randomMatrix(3, 40, 60, 0.4, true);
    const model = (await easeSpec.fit(m, { lambda: 5, binary: false }, seq)) as EaseModel;
    const B = fullB(model);
    const history = { items: Int32Array.of(0, 3, 7), weights: Float32Array.of(2, 1, 4) };
    const out = new Float32Array(60);
    model.scoreUser(-1, history, out);
    for (let j = 0; j < 60; j++) {
      const want = 2 * B[0][j] + 1 * B[3][j] + 4 * B[7][j];
      expect(out[j]).toBeCloseTo(want, 5);
    }
    expect(model.itemSimilarity(3, 5)).toBeCloseTo(B[3][5], 6);
  });

  it('gives the same B with worker threads as in-thread', async () => {
    const m = randomMatrix(21, 300, 1600, 3, false);
    const one = await fitEaseMatrix(m, easeParams({ lambda: 50 }), seq);
    const two = await fitEaseMatrix(m, easeParams({ lambda: 50 }), { threads: 2 });
    expect(two.items).toEqual(one.items);
    let worst = 0;
    for (let q = 0; q < one.B.length; q++) worst = Math.max(worst, Math.abs(one.B[q] - two.B[q]));
    expect(worst).toBeLessThan(1e-6);
  });

  it('refuses more items than maxItems with CAIRN_UNSUPPORTED when the dense variant is asked for', async () => {
    const m = csrFromCoo(2, 6, [0, 0, 0, 1, 1, 1], [0, 1, 2, 3, 4, 5], null);
    const err = await easeSpec.fit(m, { maxItems: 5, variant: 'dense' }, seq).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CairnError);
    expect((err as CairnError).code).toBe('CAIRN_UNSUPPORTED');
    expect((err as CairnError).message).toMatch(/maxItems/);
    await expect(easeSpec.fit(m, { maxItems: 6, variant: 'dense' }, seq)).resolves.toBeDefined();
  });

  it('switches to the sparse variant above maxItems by default and records it in params', async () => {
    const m = randomMatrix(4, 40, 30, 0.6, false);
    const dense = await easeSpec.fit(m, { lambda: 3 }, seq);
    expect(dense).toBeInstanceOf(EaseModel);
    expect(dense.params.variant).toBe('dense');
    const sparse = await easeSpec.fit(m, { lambda: 3, maxItems: 10 }, seq);
    expect(sparse).toBeInstanceOf(SparseEaseModel);
    expect(sparse.params.variant).toBe('sparse');
    expect(sparse.algorithm).toBe('ease');
    // With one user holding every item, every pair co-occurs; letting every item use every other,
    // the sparse solve is dense EASE exactly (up to rounding).
    const rowOf: number[] = [];
    for (let u = 0; u < m.rows; u++) for (let p = m.indptr[u]; p < m.indptr[u + 1]; p++) rowOf.push(u);
    const everything = Array.from({ length: 30 }, (_, i) => i);
    const full = csrFromCoo(
      m.rows + 1,
      30,
      [...rowOf, ...everything.map(() => m.rows)],
      [...m.indices, ...everything],
      null,
    );
    const exact = await easeSpec.fit(full, { lambda: 3 }, seq);
    const wide = await easeSpec.fit(full, { lambda: 3, variant: 'sparse', neighbors: 100 }, seq);
    const h = { items: Int32Array.of(0, 3, 7), weights: Float32Array.of(1, 1, 1) };
    const a = new Float32Array(30);
    const b = new Float32Array(30);
    exact.scoreUser(0, h, a);
    wide.scoreUser(0, h, b);
    let worst = 0;
    let scale = 0;
    for (let j = 0; j < 30; j++) {
      worst = Math.max(worst, Math.abs(a[j] - b[j]));
      scale = Math.max(scale, Math.abs(a[j]));
    }
    expect(worst).toBeLessThan(1e-5 * scale);
  });

  it('round-trips a sparse model through its artifact (format 2) with identical scores', async () => {
    const m = randomMatrix(11, 30, 40, 0.5, true);
    const model = await easeSpec.fit(m, { lambda: 4, variant: 'sparse', neighbors: 6, binary: false }, seq);
    const art = model.toArtifact();
    expect(art.formatVersion).toBe(EASE_SPARSE_FORMAT_VERSION);
    const loaded = easeSpec.load(art);
    expect(loaded).toBeInstanceOf(SparseEaseModel);
    const h = { items: Int32Array.of(1, 2, 5, 39), weights: Float32Array.of(2, 1, 3, 1) };
    const a = new Float32Array(40);
    const b = new Float32Array(40);
    model.scoreUser(0, h, a);
    loaded.scoreUser(0, h, b);
    expect(b).toEqual(a);
    expect(loaded.params).toEqual(model.params);
    expect(loaded.itemSimilarity?.(1, 2)).toBe(model.itemSimilarity?.(1, 2));
    const bad = { ...art, arrays: { ...art.arrays, indptr: Int32Array.of(0) } };
    expect(() => easeSpec.load(bad)).toThrow(CairnError);
  });

  it('rejects an unknown variant', () => {
    expect(() => easeParams({ variant: 'huge' })).toThrow(/ease.variant/);
  });

  it('rejects a non-positive lambda', () => {
    expect(() => easeParams({ lambda: 0 })).toThrow(CairnError);
    expect(() => easeParams({ lambda: 'x' })).toThrow(/ease.lambda/);
  });

  it('round-trips through its artifact with identical scores', async () => {
    const m = randomMatrix(9, 30, 40, 0.5, false);
    const model = await easeSpec.fit(m, { lambda: 8 }, seq);
    const loaded = easeSpec.load(model.toArtifact());
    const h = { items: Int32Array.of(1, 2, 5), weights: Float32Array.of(1, 1, 1) };
    const a = new Float32Array(40);
    const b = new Float32Array(40);
    model.scoreUser(0, h, a);
    loaded.scoreUser(0, h, b);
    expect(b).toEqual(a);
    expect(loaded.params).toEqual(model.params);
  });

  it('stops when aborted', async () => {
    const m = randomMatrix(2, 20, 30, 0.5, false);
    const ac = new AbortController();
    ac.abort();
    await expect(easeSpec.fit(m, {}, { ...seq, signal: ac.signal })).rejects.toThrow();
  });
});
