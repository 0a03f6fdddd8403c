import { describe, expect, it } from 'vitest';
import {
  ALS_FORMAT_VERSION,
  alsLoss,
  alsParams,
  alsSpec,
  fitAls,
  rowRegularization,
  type AlsModel,
} from './als.ts';
import { resolveParams } from './index.ts';
import { Rng } from './random.ts';
import { csrFromCoo, type Csr } from './sparse.ts';
import type { UserHistory } from './types.ts';

/**
 * A planted low-rank problem: users and items fall into clusters and a user mostly interacts with
 * items of their own cluster. One interaction per user is held out for a hit-rate check.
 */
function planted(
  seed: number,
  users = 300,
  items = 200,
  clusters = 5,
  perUser = 16,
): { train: Csr; test: Int32Array } {
  const rng = new Rng(seed);
  const rows: number[] = [];
  const cols: number[] = [];
  const test = new Int32Array(users);
  for (let u = 0; u < users; u++) {
    const cu = u % clusters;
    const seen = new Set<number>();
    const picks: number[] = [];
    while (picks.length < perUser + 1) {
      const i = rng.float() < 0.9 ? cu + clusters * rng.int(items / clusters) : rng.int(items);
      if (seen.has(i)) continue;
      seen.add(i);
      picks.push(i);
    }
    test[u] = picks.pop()!;
    for (const i of picks) {
      rows.push(u);
      cols.push(i);
    }
  }
  return { train: csrFromCoo(users, items, rows, cols, null), test };
}

function history(m: Csr, u: number): UserHistory {
  return {
    items: m.indices.slice(m.indptr[u], m.indptr[u + 1]),
    weights: m.data.slice(m.indptr[u], m.indptr[u + 1]),
  };
}

/** Share of users whose held-out item is in the top 10 of their unseen items. */
function hitRate(
  model: { scoreUser: AlsModel['scoreUser']; nItems: number },
  train: Csr,
  test: Int32Array,
): number {
  const out = new Float32Array(model.nItems);
  let hits = 0;
  for (let u = 0; u < train.rows; u++) {
    const h = history(train, u);
    model.scoreUser(u, h, out);
    for (const i of h.items) out[i] = -Infinity;
    const target = out[test[u]];
    let better = 0;
    for (let i = 0; i < out.length; i++) if (out[i] > target) better++;
    if (better < 10) hits++;
  }
  return hits / train.rows;
}

const small = { factors: 8, regularization: 0.1, alpha: 5 };

describe('ALS', () => {
  it('recovers a planted structure far better than chance', async () => {
    const { train, test } = planted(1);
    const model = await alsSpec.fit(train, { ...small, iterations: 10 }, { threads: 1, seed: 1 });
    const hr = hitRate(model, train, test);
    // Chance is ~10/184 ≈ 0.05. The best any model can do here is ~0.36-0.4: 90% of held-out
    // items are in the user's cluster, where ~25 unseen items are indistinguishable.
    expect(hr).toBeGreaterThan(0.3);
  });

  it('decreases the loss every iteration (CG and Cholesky)', async () => {
    const { train } = planted(2, 120, 80);
    for (const [solver, kernel, regExponent] of [
      ['cg', 'wasm', 0],
      ['cg', 'js', 0],
      ['cholesky', 'js', 0],
      // Frequency-scaled λ (λ·C_r): a different objective, still decreasing monotonically.
      ['cg', 'wasm', 1],
      ['cg', 'js', 1],
      ['cholesky', 'js', 1],
    ] as const) {
      const losses: number[] = [];
      const reg = regExponent === 0 ? small.regularization : 0.002;
      for (const iterations of [1, 2, 3, 5, 8]) {
        const m = (await alsSpec.fit(
          train,
          { ...small, regularization: reg, regExponent, solver, kernel, iterations },
          { threads: 1, seed: 3 },
        )) as AlsModel;
        losses.push(alsLoss(train, m.userFactors, m.itemFactors, alsParams(m.params)));
      }
      for (let t = 1; t < losses.length; t++) expect(losses[t]).toBeLessThan(losses[t - 1] * (1 + 1e-9));
      expect(losses[losses.length - 1]).toBeLessThan(losses[0] * 0.95);
    }
  });

  it('CG and Cholesky solvers reach nearly the same model', async () => {
    const { train } = planted(3, 150, 100);
    const p = { ...small, iterations: 30 };
    const cg = (await alsSpec.fit(train, { ...p, solver: 'cg' }, { threads: 1, seed: 4 })) as AlsModel;
    const ch = (await alsSpec.fit(train, { ...p, solver: 'cholesky' }, { threads: 1, seed: 4 })) as AlsModel;
    const lossCg = alsLoss(train, cg.userFactors, cg.itemFactors, alsParams(cg.params));
    const lossCh = alsLoss(train, ch.userFactors, ch.itemFactors, alsParams(ch.params));
    expect(Math.abs(lossCg - lossCh) / lossCh).toBeLessThan(0.015);
    // Predictions agree closely on average (the two runs take different paths to nearby optima).
    const a = new Float32Array(train.cols);
    const b = new Float32Array(train.cols);
    let diff = 0;
    let mag = 0;
    for (let u = 0; u < train.rows; u++) {
      const h = history(train, u);
      cg.scoreUser(u, h, a);
      ch.scoreUser(u, h, b);
      for (let i = 0; i < train.cols; i++) {
        diff += Math.abs(a[i] - b[i]);
        mag += Math.abs(b[i]);
      }
    }
    expect(diff / mag).toBeLessThan(0.05);
  });

  it('gives identical factors with 1 and 2 threads', async () => {
    const { train } = planted(4, 400, 150);
    for (const kernel of ['js', 'wasm']) {
      const p = { ...small, kernel, iterations: 3 };
      const one = (await alsSpec.fit(train, p, { threads: 1, seed: 5 })) as AlsModel;
      const two = (await alsSpec.fit(train, p, { threads: 2, seed: 5 })) as AlsModel;
      expect(Buffer.from(two.userFactors.buffer).equals(Buffer.from(one.userFactors.buffer))).toBe(true);
      expect(Buffer.from(two.itemFactors.buffer).equals(Buffer.from(one.itemFactors.buffer))).toBe(true);
      expect(two.userFactors.buffer).toBeInstanceOf(ArrayBuffer);
    }
  });

  it('trains nearly the same model with the wasm and the JS kernel', async () => {
    const { train, test } = planted(10, 300, 150);
    const p = { ...small, iterations: 10 };
    const js = (await alsSpec.fit(train, { ...p, kernel: 'js' }, { threads: 1, seed: 2 })) as AlsModel;
    const wasm = (await alsSpec.fit(train, { ...p, kernel: 'wasm' }, { threads: 1, seed: 2 })) as AlsModel;
    const lossJs = alsLoss(train, js.userFactors, js.itemFactors, alsParams(js.params));
    const lossWasm = alsLoss(train, wasm.userFactors, wasm.itemFactors, alsParams(wasm.params));
    expect(Math.abs(lossWasm - lossJs) / lossJs).toBeLessThan(1e-3);
    // After one iteration the factors agree closely. Later, float32 rounding (as in implicit) lets the
    // two paths drift apart along directions this rank-deficient problem leaves nearly free, which
    // the loss barely sees; hence the loss and hit-rate checks.
    const one = { ...p, iterations: 1 };
    const js1 = (await alsSpec.fit(train, { ...one, kernel: 'js' }, { threads: 1, seed: 2 })) as AlsModel;
    const wasm1 = (await alsSpec.fit(train, { ...one, kernel: 'wasm' }, { threads: 1, seed: 2 })) as AlsModel;
    for (const key of ['userFactors', 'itemFactors'] as const) {
      let maxDiff = 0;
      let maxAbs = 0;
      for (let q = 0; q < js1[key].length; q++) {
        maxDiff = Math.max(maxDiff, Math.abs(js1[key][q] - wasm1[key][q]));
        maxAbs = Math.max(maxAbs, Math.abs(js1[key][q]));
      }
      expect(maxDiff).toBeLessThan(1e-2 * maxAbs);
    }
    expect(Math.abs(hitRate(js, train, test) - hitRate(wasm, train, test))).toBeLessThan(0.03);
  });

  it('folds a training user in close to their trained vector', async () => {
    const { train } = planted(5, 200, 120);
    for (const solver of ['cholesky', 'cg']) {
      const model = (await alsSpec.fit(
        train,
        { ...small, solver, iterations: 40 },
        { threads: 1, seed: 6 },
      )) as AlsModel;
      const k = model.factors;
      let worst = 0;
      for (let u = 0; u < train.rows; u += 7) {
        const h = history(train, u);
        const trained = Float64Array.from(model.userVector(u, h, false));
        const folded = model.userVector(u, h, true);
        let diff = 0;
        let norm = 0;
        for (let f = 0; f < k; f++) {
          diff += (trained[f] - folded[f]) ** 2;
          norm += trained[f] ** 2;
        }
        worst = Math.max(worst, Math.sqrt(diff / norm));
      }
      // Not zero: the stored vector was solved against the previous iteration's item factors.
      expect(worst).toBeLessThan(solver === 'cholesky' ? 0.05 : 0.1);
    }
  });

  it('scores unknown users by fold-in and reacts to new history', async () => {
    const { train } = planted(6, 200, 100);
    const model = (await alsSpec.fit(
      train,
      { ...small, iterations: 10 },
      { threads: 1, seed: 7 },
    )) as AlsModel;
    // A new user whose history is all in cluster 2 gets cluster-2 items on top.
    const h: UserHistory = { items: new Int32Array([2, 7, 12, 17]), weights: new Float32Array([1, 1, 1, 1]) };
    const out = new Float32Array(model.nItems);
    model.scoreUser(-1, h, out);
    const order = Array.from(out.keys()).filter((i) => !h.items.includes(i));
    order.sort((a, b) => out[b] - out[a]);
    const top = order.slice(0, 10);
    expect(top.filter((i) => i % 5 === 2).length).toBeGreaterThanOrEqual(8);
    // foldIn=true for a known user uses the history, not the stored vector.
    const stored = new Float32Array(model.nItems);
    const folded = new Float32Array(model.nItems);
    model.scoreUser(0, h, stored, false);
    model.scoreUser(0, h, folded, true);
    expect(Array.from(folded)).toEqual(Array.from(out));
    expect(Array.from(stored)).not.toEqual(Array.from(out));
    // Scoring from a kept folded-in vector is scoring the user: bit for bit.
    const kept = new Float32Array(model.nItems);
    model.scoreVector(Float64Array.from(model.userVector(0, h, true)), kept);
    expect(Array.from(kept)).toEqual(Array.from(out));
    // An empty history yields zero scores rather than garbage.
    model.scoreUser(-1, { items: new Int32Array(0), weights: new Float32Array(0) }, out);
    expect(out.every((v) => v === 0)).toBe(true);
  });

  it('round-trips through an artifact', async () => {
    const { train } = planted(7, 100, 60);
    const model = (await alsSpec.fit(
      train,
      { ...small, iterations: 4 },
      { threads: 1, seed: 8 },
    )) as AlsModel;
    const art = model.toArtifact();
    expect(art.formatVersion).toBe(ALS_FORMAT_VERSION);
    expect(art.algorithm).toBe('als');
    const loaded = alsSpec.load(structuredClone(art));
    const h = history(train, 3);
    for (const foldIn of [false, true]) {
      const a = new Float32Array(model.nItems);
      const b = new Float32Array(model.nItems);
      model.scoreUser(3, h, a, foldIn);
      loaded.scoreUser(3, h, b, foldIn);
      expect(Array.from(b)).toEqual(Array.from(a));
    }
    expect(() => alsSpec.load({ ...art, formatVersion: 99 })).toThrow();
    expect(() => alsSpec.load({ ...art, arrays: { userFactors: art.arrays.userFactors } })).toThrow();
  });

  it('folds a user in to the exact minimiser of their objective with frequency-scaled λ', async () => {
    const { train } = planted(11, 120, 60);
    const p = { ...small, regularization: 0.003, regExponent: 1, iterations: 6 };
    const model = (await alsSpec.fit(train, p, { threads: 1, seed: 12 })) as AlsModel;
    const h = history(train, 5);
    for (let q = 0; q < h.weights.length; q++) h.weights[q] = 1 + (q % 3);
    const k = model.factors;
    const x = Float64Array.from(model.userVector(-1, h));
    let mass = 0;
    for (const w of h.weights) mass += w;
    const lambda = rowRegularization(p.regularization, 1, model.nItems, p.alpha, mass);
    expect(lambda).toBeCloseTo(0.003 * (60 + 5 * mass), 10);
    // f(x) = Σ_i c_i (p_i − x·y_i)² + λ_u‖x‖² over every item.
    const objective = (v: Float64Array): number => {
      let f = 0;
      for (let i = 0; i < model.nItems; i++) {
        let s = 0;
        for (let a = 0; a < k; a++) s += v[a] * model.itemFactors[i * k + a];
        const q = h.items.indexOf(i);
        const c = q >= 0 ? 1 + p.alpha * h.weights[q] : 1;
        const pref = q >= 0 ? 1 : 0;
        f += c * (pref - s) * (pref - s);
      }
      for (let a = 0; a < k; a++) f += lambda * v[a] * v[a];
      return f;
    };
    const best = objective(x);
    for (let a = 0; a < k; a++) {
      for (const step of [1e-3, -1e-3]) {
        const y = Float64Array.from(x);
        y[a] += step;
        expect(objective(y)).toBeGreaterThan(best);
      }
    }
  });

  it('loads a format-1 artifact (one λ for every row) as regExponent 0', async () => {
    const { train } = planted(12, 80, 50);
    const model = (await alsSpec.fit(
      train,
      { ...small, regExponent: 0, iterations: 3 },
      { threads: 1, seed: 2 },
    )) as AlsModel;
    const art = model.toArtifact();
    const { regExponent: _dropped, ...v1Params } = art.params;
    const v1 = { ...art, formatVersion: 1, params: v1Params };
    const loaded = alsSpec.load(structuredClone(v1));
    expect(loaded.params.regExponent).toBe(0);
    const h = history(train, 2);
    const a = new Float32Array(model.nItems);
    const b = new Float32Array(model.nItems);
    model.scoreUser(2, h, a, true);
    loaded.scoreUser(2, h, b, true);
    expect(Array.from(b)).toEqual(Array.from(a));
  });

  it('computes cosine item similarities', async () => {
    const { train } = planted(8, 200, 100);
    const model = await alsSpec.fit(train, { ...small, iterations: 8 }, { threads: 1, seed: 9 });
    const out = new Float32Array(model.nItems);
    expect(model.similarItems(3, out)).toBe(true);
    expect(out[3]).toBeCloseTo(1, 5);
    for (const v of out) expect(Math.abs(v)).toBeLessThanOrEqual(1 + 1e-5);
    expect(model.itemSimilarity!(3, 8)).toBeCloseTo(out[8], 5);
    const items = Int32Array.from([8, 0, 3, 99, 41, 17, 64]);
    const many = new Float64Array(items.length);
    model.itemSimilarities!(items, 3, many);
    items.forEach((a, j) => expect(many[j]).toBe(model.itemSimilarity!(a, 3)));
    // Items of the same cluster are more alike than items of other clusters, on average.
    let same = 0;
    let other = 0;
    for (let j = 0; j < model.nItems; j++) {
      if (j === 3) continue;
      if (j % 5 === 3) same += out[j] / 19;
      else other += out[j] / 80;
    }
    expect(same).toBeGreaterThan(other + 0.3);
    expect(model.similarItems(-1, out)).toBe(false);
  });

  it('reports progress and honours cancellation', async () => {
    const { train } = planted(9, 300, 100);
    for (const threads of [1, 2]) {
      const ac = new AbortController();
      const fractions: number[] = [];
      const run = alsSpec.fit(
        train,
        { ...small, iterations: 50 },
        {
          threads,
          seed: 1,
          signal: ac.signal,
          onProgress: (f) => {
            fractions.push(f);
            if (f >= 0.04) ac.abort();
          },
        },
      );
      await expect(run).rejects.toMatchObject({ name: 'AbortError' });
      expect(fractions[fractions.length - 1]).toBeLessThan(1);
    }
    const ac = new AbortController();
    ac.abort();
    await expect(alsSpec.fit(train, small, { threads: 1, seed: 1, signal: ac.signal })).rejects.toMatchObject(
      { name: 'AbortError' },
    );
  });

  it('handles empty matrices, empty rows and empty columns', async () => {
    for (const [rows, cols] of [
      [[], []],
      [
        [0, 1, 2],
        [0, 0, 0],
      ],
    ] as [number[], number[]][]) {
      const m = csrFromCoo(3, 4, rows, cols, null);
      for (const kernel of ['js', 'wasm']) {
        const model = await alsSpec.fit(m, { factors: 8, iterations: 2, kernel }, { threads: 1, seed: 1 });
        const out = new Float32Array(4);
        model.scoreUser(0, history(m, 0), out);
        expect(out.every(Number.isFinite)).toBe(true);
        model.scoreUser(-1, { items: new Int32Array([3]), weights: new Float32Array([1]) }, out);
        expect(out.every(Number.isFinite)).toBe(true);
      }
    }
    const none = await alsSpec.fit(csrFromCoo(0, 0, [], [], null), small, { threads: 1, seed: 1 });
    expect(none.nUsers + none.nItems).toBe(0);
  });

  it('validates parameters', () => {
    expect(alsParams({}).factors).toBe(64);
    expect(alsParams({ factors: '32' }).factors).toBe(32);
    expect(() => alsParams({ factors: 0 })).toThrow();
    expect(() => alsParams({ factors: 1.5 })).toThrow();
    expect(() => alsParams({ solver: 'svd' })).toThrow();
    expect(() => alsParams({ alpha: 'x' })).toThrow();
    expect(() => alsParams({ kernel: 'gpu' })).toThrow();
  });
});

describe('ALS early stopping', () => {
  const p = { ...small, iterations: 40 };

  it('is off by default and leaves the fit unchanged', async () => {
    const { train } = planted(21);
    expect(alsParams({}).earlyStopping).toBe(false);
    const a = (await alsSpec.fit(train, p, { threads: 1, seed: 3 })) as AlsModel;
    const b = (await alsSpec.fit(train, { ...p, earlyStopping: false }, { threads: 1, seed: 3 })) as AlsModel;
    expect(a.fitReport).toBeNull();
    expect(Array.from(a.userFactors)).toEqual(Array.from(b.userFactors));
  });

  it('fits zero-weight entries exactly as if they were absent (the inner split masks that way)', async () => {
    const { train } = planted(22);
    const zeroed = { ...train, data: train.data.slice() };
    const keepR: number[] = [];
    const keepC: number[] = [];
    for (let u = 0; u < train.rows; u++) {
      for (let q = train.indptr[u]; q < train.indptr[u + 1]; q++) {
        if (q % 7 === 0) zeroed.data[q] = 0;
        else {
          keepR.push(u);
          keepC.push(train.indices[q]);
        }
      }
    }
    const reduced = csrFromCoo(train.rows, train.cols, keepR, keepC, null);
    for (const kernel of ['js', 'wasm']) {
      const q = { ...p, iterations: 5, kernel };
      const a = (await alsSpec.fit(zeroed, q, { threads: 1, seed: 4 })) as AlsModel;
      const b = (await alsSpec.fit(reduced, q, { threads: 1, seed: 4 })) as AlsModel;
      for (let i = 0; i < a.itemFactors.length; i++)
        expect(a.itemFactors[i]).toBeCloseTo(b.itemFactors[i], 5);
    }
  });

  it('stops on an inner split, keeps the best iterate, is deterministic and leaves the input intact', async () => {
    const { train, test } = planted(23);
    const before = train.data.slice();
    const q = { ...p, iterations: 60, earlyStopping: true, patience: 1 };
    const a = (await alsSpec.fit(train, q, { threads: 1, seed: 5 })) as AlsModel;
    const b = (await alsSpec.fit(train, q, { threads: 1, seed: 5 })) as AlsModel;
    expect(Array.from(a.userFactors)).toEqual(Array.from(b.userFactors));
    expect(Array.from(train.data)).toEqual(Array.from(before));
    const used = Number(a.fitReport?.iterationsUsed);
    expect(used).toBeGreaterThanOrEqual(2);
    expect(used).toBeLessThan(60);
    expect(Number(a.fitReport?.bestIteration)).toBe(used - 1);
    expect(Number(a.fitReport?.validationNdcg)).toBeGreaterThan(0.1);
    expect(hitRate(a, train, test)).toBeGreaterThan(0.3);
    // The report lives beside the params, which stay valid input for another fit (champion refits).
    expect(resolveParams(alsSpec, a.params)).toEqual(a.params);
    expect(a.toArtifact().meta.earlyStoppingIterationsUsed).toBe(used);
  });

  it('monitors an explicit validation set and stops at a target', async () => {
    const { train, test } = planted(24);
    const validation = csrFromCoo(
      train.rows,
      train.cols,
      Array.from({ length: train.rows }, (_, u) => u),
      Array.from(test),
      null,
    );
    const events: { iteration: number; ndcg: number; trainSeconds: number }[] = [];
    const model = await fitAls(
      train,
      { ...p, iterations: 10 },
      {
        threads: 1,
        seed: 6,
        earlyStopping: { validation, patience: 0, evalEvery: 3, onEvaluate: (e) => events.push(e) },
      },
    );
    expect(events.map((e) => e.iteration)).toEqual([3, 6, 9, 10]);
    expect(model.fitReport?.iterationsUsed).toBe(10);
    for (let j = 1; j < events.length; j++)
      expect(events[j].trainSeconds).toBeGreaterThanOrEqual(events[j - 1].trainSeconds);
    const target = events[0].ndcg / 2;
    const stopped = await fitAls(
      train,
      { ...p, iterations: 10 },
      {
        threads: 1,
        seed: 6,
        earlyStopping: { validation, patience: 0, evalEvery: 1, target },
      },
    );
    expect(Number(stopped.fitReport?.iterationsUsed)).toBeLessThanOrEqual(3);
  });

  it('validates the early-stopping parameters', () => {
    expect(() => alsParams({ patience: -1 })).toThrow();
    expect(() => alsParams({ validationFraction: 0 })).toThrow();
    expect(() => alsParams({ earlyStopping: 'maybe' })).toThrow();
    expect(alsParams({ earlyStopping: 'true', solver: 'ialspp', blockSize: 8 })).toMatchObject({
      earlyStopping: true,
      solver: 'ialspp',
      blockSize: 8,
    });
  });
});
