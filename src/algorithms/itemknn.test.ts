import { describe, expect, it } from 'vitest';
import { CairnError } from '../errors/errors.ts';
import type { ItemKnnModel } from './itemknn.ts';
import { itemKnnParams, itemknnSpec } from './itemknn.ts';
import { Rng } from './random.ts';
import { weightInteractions } from './similarity.ts';
import { csrFromCoo, type Csr } from './sparse.ts';

const seq = { threads: 1, seed: 1 };

// Users × items (binary):  u0: i0 i1 | u1: i0 i1 i2 | u2: i1 i2 | u3: i2 i3
// Item vectors over users: i0 = (1,1,0,0), i1 = (1,1,1,0), i2 = (0,1,1,1), i3 = (0,0,0,1)
// Dots: i0·i1 = 2, i0·i2 = 1, i1·i2 = 2, i2·i3 = 1, others 0; norms √2, √3, √3, 1.
const m4 = csrFromCoo(4, 4, [0, 0, 1, 1, 1, 2, 2, 3, 3], [0, 1, 0, 1, 2, 1, 2, 2, 3], null);

function dense(model: ItemKnnModel): number[][] {
  const out = new Float32Array(model.nItems);
  return Array.from({ length: model.nItems }, (_, i) => {
    model.similarItems(i, out);
    return Array.from(out);
  });
}

function expectMatrixClose(a: number[][], b: number[][], digits = 6): void {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++)
    for (let j = 0; j < a.length; j++) expect(a[i][j]).toBeCloseTo(b[i][j], digits);
}

function randomMatrix(seed: number, users: number, items: number, density: number): Csr {
  const rng = new Rng(seed);
  const r: number[] = [];
  const c: number[] = [];
  const v: number[] = [];
  for (let u = 0; u < users; u++) {
    for (let i = 0; i < items; i++) {
      if (rng.float() < density) {
        r.push(u);
        c.push(i);
        v.push(1 + Math.floor(rng.float() * 4));
      }
    }
  }
  return csrFromCoo(users, items, r, c, v);
}

/** Dense item × user view of a user × item CSR. */
function itemUser(m: Csr): number[][] {
  const d = Array.from({ length: m.cols }, () => new Array<number>(m.rows).fill(0));
  for (let u = 0; u < m.rows; u++)
    for (let p = m.indptr[u]; p < m.indptr[u + 1]; p++) d[m.indices[p]][u] = m.data[p];
  return d;
}

describe('itemknn', () => {
  it('computes cosine similarity by hand on a 4×4 matrix', async () => {
    const model = (await itemknnSpec.fit(
      m4,
      { shrink: 0, neighbors: 10, weighting: 'none' },
      seq,
    )) as ItemKnnModel;
    const s01 = 2 / Math.sqrt(6);
    const s02 = 1 / Math.sqrt(6);
    const s12 = 2 / 3;
    const s23 = 1 / Math.sqrt(3);
    expectMatrixClose(dense(model), [
      [0, s01, s02, 0],
      [s01, 0, s12, 0],
      [s02, s12, 0, s23],
      [0, 0, s23, 0],
    ]);
  });

  it('applies shrinkage and keeps the top-K neighbours per item', async () => {
    const model = (await itemknnSpec.fit(
      m4,
      { shrink: 1, neighbors: 1, weighting: 'none' },
      seq,
    )) as ItemKnnModel;
    // With shrink 1: s01 = 0.5798, s02 = 0.2899, s12 = 0.5, s23 = 0.3660; each row keeps its best.
    const s01 = 2 / (Math.sqrt(6) + 1);
    const s12 = 2 / (3 + 1);
    const s23 = 1 / (Math.sqrt(3) + 1);
    expectMatrixClose(dense(model), [
      [0, s01, 0, 0],
      [s01, 0, 0, 0],
      [0, s12, 0, 0],
      [0, 0, s23, 0],
    ]);
    expect(model.graph.indptr[4]).toBe(4);
  });

  it('scores a history as Σ weight × similarity, or Σ similarity when binary', async () => {
    const history = { items: Int32Array.of(0, 3), weights: Float32Array.of(2, 1) };
    const s01 = 2 / Math.sqrt(6);
    const s02 = 1 / Math.sqrt(6);
    const s23 = 1 / Math.sqrt(3);
    const out = new Float32Array(4);
    const weighted = await itemknnSpec.fit(m4, { shrink: 0, weighting: 'none' }, seq);
    weighted.scoreUser(-1, history, out);
    expect(out[0]).toBeCloseTo(0, 6);
    expect(out[1]).toBeCloseTo(2 * s01, 6);
    expect(out[2]).toBeCloseTo(2 * s02 + s23, 6);
    expect(out[3]).toBeCloseTo(0, 6);
    const binary = await itemknnSpec.fit(m4, { shrink: 0, binary: true, weighting: 'none' }, seq);
    binary.scoreUser(-1, history, out);
    expect(out[2]).toBeCloseTo(s02 + s23, 6);
    // Items beyond the model (newer than it) are ignored, not an error.
    binary.scoreUser(-1, { items: Int32Array.of(0, 9), weights: Float32Array.of(1, 1) }, out);
    expect(out[1]).toBeCloseTo(s01, 6);
  });

  it('uses the weights in the similarity unless binary', async () => {
    const w = csrFromCoo(2, 2, [0, 0, 1, 1], [0, 1, 0, 1], [1, 3, 2, 1]);
    const model = (await itemknnSpec.fit(w, { shrink: 0, weighting: 'none' }, seq)) as ItemKnnModel;
    // i0 = (1, 2), i1 = (3, 1): cos = 5 / (√5 √10)
    expect(model.itemSimilarity(0, 1)).toBeCloseTo(5 / Math.sqrt(50), 6);
    const bin = (await itemknnSpec.fit(
      w,
      { shrink: 0, binary: true, weighting: 'none' },
      seq,
    )) as ItemKnnModel;
    expect(bin.itemSimilarity(0, 1)).toBeCloseTo(1, 6);
    expect(bin.itemSimilarity(0, 0)).toBe(0);
  });

  it('weights by BM25 as implicit does (direct formula)', () => {
    const m = randomMatrix(4, 12, 9, 0.4);
    const K1 = 1.2;
    const B = 0.75;
    const w = weightInteractions(m, 'bm25', false, K1, B);
    const X = itemUser(m);
    const N = m.cols;
    const rowSums = X.map((r) => r.reduce((a, b) => a + b, 0));
    const avg = rowSums.reduce((a, b) => a + b, 0) / N;
    const df = Array.from({ length: m.rows }, (_, u) => X.filter((r) => r[u] !== 0).length);
    const W = itemUser(w);
    for (let i = 0; i < N; i++) {
      for (let u = 0; u < m.rows; u++) {
        const x = X[i][u];
        const want =
          x === 0
            ? 0
            : ((x * (K1 + 1)) / (K1 * (1 - B + (B * rowSums[i]) / avg) + x)) *
              (Math.log(N) - Math.log(1 + df[u]));
        expect(W[i][u]).toBeCloseTo(want, 5);
      }
    }
  });

  it('weights by TF-IDF as implicit does (direct formula)', () => {
    const m = randomMatrix(6, 10, 8, 0.4);
    const w = weightInteractions(m, 'tfidf', false, 0, 0);
    const X = itemUser(m);
    const W = itemUser(w);
    for (let i = 0; i < m.cols; i++) {
      for (let u = 0; u < m.rows; u++) {
        const df = X.filter((r) => r[u] !== 0).length;
        const want = X[i][u] === 0 ? 0 : Math.sqrt(X[i][u]) * (Math.log(m.cols) - Math.log1p(df));
        expect(W[i][u]).toBeCloseTo(want, 5);
      }
    }
  });

  for (const weighting of ['none', 'bm25', 'tfidf'] as const) {
    it(`matches a dense cosine-with-shrink reference (${weighting})`, async () => {
      const m = randomMatrix(8, 40, 25, 0.3);
      const shrink = 2;
      const model = (await itemknnSpec.fit(m, { weighting, shrink, neighbors: 1000 }, seq)) as ItemKnnModel;
      const X = itemUser(weightInteractions(m, weighting, false, 1.2, 0.75));
      const norm = X.map((r) => Math.sqrt(r.reduce((a, b) => a + b * b, 0)));
      const ref = X.map((ri, i) =>
        X.map((rj, j) => {
          if (i === j) return 0;
          const d = ri.reduce((a, x, u) => a + x * rj[u], 0);
          return d > 0 ? d / (norm[i] * norm[j] + shrink) : 0;
        }),
      );
      expectMatrixClose(dense(model), ref, 5);
    });
  }

  it('builds the same graph with worker threads as in-thread', async () => {
    // Σ |user row|² above the threshold where threads are used.
    const m = randomMatrix(12, 110, 500, 0.9);
    const one = (await itemknnSpec.fit(m, { neighbors: 20 }, seq)) as ItemKnnModel;
    const two = (await itemknnSpec.fit(m, { neighbors: 20 }, { threads: 2, seed: 1 })) as ItemKnnModel;
    expect(two.graph.indptr).toEqual(one.graph.indptr);
    expect(two.graph.indices).toEqual(one.graph.indices);
    expect(two.graph.data).toEqual(one.graph.data);
    expect(one.graph.indptr[500]).toBe(500 * 20);
  });

  it('stores rows sorted by item index (a valid CSR)', async () => {
    const model = (await itemknnSpec.fit(
      randomMatrix(2, 30, 40, 0.3),
      { neighbors: 5 },
      seq,
    )) as ItemKnnModel;
    const { indptr, indices } = model.graph;
    for (let i = 0; i < 40; i++) {
      for (let p = indptr[i] + 1; p < indptr[i + 1]; p++) expect(indices[p]).toBeGreaterThan(indices[p - 1]);
      expect(indptr[i + 1] - indptr[i]).toBeLessThanOrEqual(5);
    }
  });

  it('round-trips through its artifact with identical scores', async () => {
    const m = randomMatrix(3, 30, 40, 0.3);
    const model = await itemknnSpec.fit(m, { weighting: 'bm25', neighbors: 7 }, seq);
    const loaded = itemknnSpec.load(model.toArtifact());
    const h = { items: Int32Array.of(1, 4, 9), weights: Float32Array.of(1, 2, 3) };
    const a = new Float32Array(40);
    const b = new Float32Array(40);
    model.scoreUser(0, h, a);
    loaded.scoreUser(0, h, b);
    expect(b).toEqual(a);
    expect(loaded.params).toEqual(model.params);
  });

  it('validates its parameters', () => {
    expect(() => itemKnnParams({ neighbors: 0 })).toThrow(CairnError);
    expect(() => itemKnnParams({ neighbors: 2.5 })).toThrow(/itemknn.neighbors/);
    expect(() => itemKnnParams({ weighting: 'lsa' })).toThrow(/itemknn.weighting/);
    expect(itemKnnParams({ neighbors: '50', binary: 'true' })).toMatchObject({ neighbors: 50, binary: true });
  });
});
