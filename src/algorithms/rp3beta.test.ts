import { describe, expect, it } from 'vitest';
import { CairnError } from '../errors/errors.ts';
import { Rng } from './random.ts';
import { rp3betaGraph, rp3betaParams, rp3betaSpec, type Rp3betaParams } from './rp3beta.ts';
import { csrFromCoo, type Csr } from './sparse.ts';

const seq = { threads: 1, seed: 1 };

function randomMatrix(seed: number, users: number, items: number, density: number): Csr {
  const rng = new Rng(seed);
  const r: number[] = [];
  const c: number[] = [];
  const v: number[] = [];
  for (let u = 0; u < users; u++) {
    for (let i = 0; i < items; i++) {
      if (rng.float() < density / (1 + i / 5)) {
        r.push(u);
        c.push(i);
        v.push(1 + Math.floor(rng.float() * 4));
      }
    }
  }
  return csrFromCoo(users, items, r, c, v);
}

/**
 * Reference RP3beta with dense matrices, as Dacrema et al.'s implementation computes it:
 * Pui = row-L1(X), Piu = row-L1(binary Xᵀ), both raised to α; W = Piu·Pui, columns divided by pop^β,
 * diagonal zeroed, each row's top-k kept (ties to the lower index), optionally rescaled to sum 1.
 */
function reference(m: Csr, p: Rp3betaParams): number[][] {
  const U = m.rows;
  const n = m.cols;
  const X = Array.from({ length: U }, () => new Array<number>(n).fill(0));
  for (let u = 0; u < U; u++) {
    for (let q = m.indptr[u]; q < m.indptr[u + 1]; q++) X[u][m.indices[q]] = p.binary ? 1 : m.data[q];
  }
  const pop = Array.from({ length: n }, (_, i) => X.reduce((s, row) => s + (row[i] > 0 ? 1 : 0), 0));
  const Pui = X.map((row) => {
    const s = row.reduce((a, b) => a + b, 0);
    return row.map((x) => (x > 0 ? Math.pow(x / s, p.alpha) : 0));
  });
  const W: number[][] = [];
  for (let i = 0; i < n; i++) {
    const row = new Array<number>(n).fill(0);
    for (let j = 0; j < n; j++) {
      if (j === i) continue;
      let s = 0;
      for (let u = 0; u < U; u++) if (X[u][i] > 0) s += Math.pow(1 / pop[i], p.alpha) * Pui[u][j];
      row[j] = s > 0 ? s / Math.pow(pop[j], p.beta) : 0;
    }
    const order = row
      .map((v, j) => [v, j] as const)
      .filter(([v]) => v > 0)
      .sort((a, b) => b[0] - a[0] || a[1] - b[1])
      .slice(0, p.neighbors);
    const kept = new Array<number>(n).fill(0);
    const sum = order.reduce((s, [v]) => s + v, 0);
    for (const [v, j] of order) kept[j] = p.normalize ? v / sum : v;
    W.push(kept);
  }
  return W;
}

function dense(g: Csr): number[][] {
  const W = Array.from({ length: g.rows }, () => new Array<number>(g.cols).fill(0));
  for (let i = 0; i < g.rows; i++)
    for (let q = g.indptr[i]; q < g.indptr[i + 1]; q++) W[i][g.indices[q]] = g.data[q];
  return W;
}

describe('rp3beta', () => {
  const cases: [string, Partial<Rp3betaParams>][] = [
    ['defaults', {}],
    ['α 0.6, β 0.3, 5 neighbours, weighted', { alpha: 0.6, beta: 0.3, neighbors: 5, binary: false }],
    ['α 1.4, β 0, normalised, 3 neighbours', { alpha: 1.4, beta: 0, neighbors: 3, normalize: true }],
  ];
  for (const [name, over] of cases) {
    it(`matches the dense reference (${name})`, async () => {
      const m = randomMatrix(7, 50, 25, 0.6);
      const p = rp3betaParams(over);
      const g = await rp3betaGraph(m, p);
      const ref = reference(m, p);
      const got = dense(g);
      for (let i = 0; i < 25; i++) {
        for (let j = 0; j < 25; j++) expect(got[i][j]).toBeCloseTo(ref[i][j], 6);
        for (let q = g.indptr[i] + 1; q < g.indptr[i + 1]; q++) {
          expect(g.indices[q]).toBeGreaterThan(g.indices[q - 1]);
        }
      }
    });
  }

  it('penalises popular arrival items more as β grows', async () => {
    // Item 0 is held by everyone, item 1 by user 0 only, item 2 by users 0 and 1.
    const m = csrFromCoo(4, 3, [0, 0, 0, 1, 1, 2, 3], [0, 1, 2, 0, 2, 0, 0], null);
    const w = async (beta: number): Promise<number[][]> =>
      dense(await rp3betaGraph(m, rp3betaParams({ alpha: 1, beta })));
    const flat = await w(0);
    const steep = await w(1);
    expect(steep[1][0] / steep[1][2]).toBeLessThan(flat[1][0] / flat[1][2]);
    // Hand value (α 1): W_10 = P_1,u0 · P_u0,0 / pop_0^β = 1 · 1/3 / 4^0.5.
    expect((await w(0.5))[1][0]).toBeCloseTo(1 / 3 / 2, 6);
  });

  it('scores a history as the sum of its rows, ignores unknown items, round-trips its artifact', async () => {
    const m = randomMatrix(3, 40, 30, 0.5);
    const model = await rp3betaSpec.fit(m, { neighbors: 8 }, seq);
    const h = { items: Int32Array.of(0, 4, 9, 99), weights: Float32Array.of(1, 1, 1, 1) };
    const out = new Float32Array(30);
    model.scoreUser(0, h, out);
    const row = new Float32Array(30);
    const expected = new Float32Array(30);
    for (const i of [0, 4, 9]) {
      expect(model.similarItems(i, row)).toBe(true);
      for (let j = 0; j < 30; j++) expected[j] += row[j];
    }
    for (let j = 0; j < 30; j++) expect(out[j]).toBeCloseTo(expected[j], 6);
    const loaded = rp3betaSpec.load(model.toArtifact());
    const again = new Float32Array(30);
    loaded.scoreUser(0, h, again);
    expect(again).toEqual(out);
    expect(loaded.params).toEqual(model.params);
    expect(loaded.itemSimilarity?.(0, 1)).toBe(model.itemSimilarity?.(0, 1));
    expect(model.similarItems(30, row)).toBe(false);
    const art = model.toArtifact();
    expect(() => rp3betaSpec.load({ ...art, formatVersion: 9 })).toThrow(CairnError);
    expect(() => rp3betaSpec.load({ ...art, arrays: { ...art.arrays, indices: Int32Array.of(1) } })).toThrow(
      CairnError,
    );
  });

  it('validates its parameters', () => {
    expect(() => rp3betaParams({ alpha: 0 })).toThrow(/rp3beta.alpha/);
    expect(() => rp3betaParams({ beta: -1 })).toThrow(/rp3beta.beta/);
    expect(() => rp3betaParams({ neighbors: 2.5 })).toThrow(/rp3beta.neighbors/);
  });

  it('stops when aborted', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(
      rp3betaSpec.fit(randomMatrix(1, 10, 10, 0.5), {}, { ...seq, signal: ac.signal }),
    ).rejects.toThrow();
  });
});
