import { describe, expect, it } from 'vitest';
import { ALGORITHMS, resolveParams } from './index.ts';
import { Rng } from './random.ts';
import { csrFromCoo, type Csr } from './sparse.ts';
import type { AlgorithmName, FittedModel, Params, UserHistory } from './types.ts';

/** 60 users × 80 items, clustered tastes, weights 1..3, so every model learns non-trivial scores. */
function data(seed: number): Csr {
  const rng = new Rng(seed);
  const rows: number[] = [];
  const cols: number[] = [];
  const vals: number[] = [];
  for (let u = 0; u < 60; u++) {
    const taste = u % 4;
    const seen = new Set<number>();
    for (let e = 0; e < 12; e++) {
      const i = rng.float() < 0.7 ? taste * 20 + rng.int(20) : rng.int(80);
      if (seen.has(i)) continue;
      seen.add(i);
      rows.push(u);
      cols.push(i);
      vals.push(1 + rng.int(3));
    }
  }
  return csrFromCoo(60, 80, rows, cols, vals);
}

/** Every fitted model kind: each algorithm, and the variants that have their own scoring code. */
const CASES: [AlgorithmName, Params][] = [
  ['pop', {}],
  ['pop', { halfLifeDays: 7 }],
  ['itemknn', {}],
  ['itemknn', { binary: true }],
  ['als', { factors: 12, iterations: 4 }],
  ['als', { factors: 12, iterations: 4, solver: 'ialspp' }],
  ['bpr', { factors: 12, iterations: 5 }],
  ['ease', { variant: 'dense' }],
  ['ease', { variant: 'sparse' }],
  ['rp3beta', {}],
];

describe('FittedModel.scoreItems', () => {
  const train = data(3);
  const now = 1_700_000_000_000;
  const items = Int32Array.from(train.indices);
  const times = Float64Array.from(items, (_, e) => now - e * 3_600_000);

  it.each(CASES)('%s %j scores a subset exactly as scoreUser does', async (name, overrides) => {
    const spec = ALGORITHMS[name];
    const params = resolveParams(spec, {
      ...overrides,
      ...('threads' in spec.defaults ? { threads: 1 } : {}),
    });
    const model: FittedModel = await spec.fit(train, params, {
      threads: 1,
      seed: 5,
      now,
      itemEventTimes: { items, times },
    });
    const rng = new Rng(11);
    const full = new Float32Array(model.nItems);
    const hist: UserHistory = { items: new Int32Array(0), weights: new Float32Array(0) };
    let compared = 0;
    for (const user of [0, 7, 33, -1]) {
      const row = user >= 0 ? user : 12;
      hist.items = train.indices.subarray(train.indptr[row], train.indptr[row + 1]);
      hist.weights = train.data.subarray(train.indptr[row], train.indptr[row + 1]);
      for (const foldIn of [false, true]) {
        model.scoreUser(user, hist, full, foldIn);
        for (let trial = 0; trial < 5; trial++) {
          // A random subset in random order, with a repeat and an index outside the catalog.
          const n = 1 + rng.int(30);
          const subset = Int32Array.from({ length: n + 2 }, (_, j) => (j === n + 1 ? 80 : rng.int(80)));
          subset[n] = subset[0];
          const out = new Float32Array(subset.length).fill(Number.NaN);
          model.scoreItems(user, hist, subset, out, foldIn);
          for (let j = 0; j <= n; j++) expect(out[j]).toBe(full[subset[j]]);
          expect(out[n + 1]).toBe(-Infinity);
          compared += n + 1;
        }
      }
    }
    expect(compared).toBeGreaterThan(100);
    // The scores are not all alike (a constant model would pass trivially).
    expect(new Set(full).size).toBeGreaterThan(5);
  });
});
