import { describe, expect, it } from 'vitest';
import { bprParams, bprSpec, fitBpr, type BprModel } from './bpr.ts';
import { Rng } from './random.ts';
import { csrFromCoo, type Csr } from './sparse.ts';
import type { UserHistory } from './types.ts';

/** Users and items in clusters; users mostly pick items of their cluster. One pick held out per user. */
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
    const seen = new Set<number>();
    const picks: number[] = [];
    while (picks.length < perUser + 1) {
      const i = rng.float() < 0.9 ? (u % clusters) + clusters * rng.int(items / clusters) : rng.int(items);
      if (!seen.has(i)) {
        seen.add(i);
        picks.push(i);
      }
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

/** Mean over users of P(score(held-out) > score(random unseen item)), ties counting half. */
function auc(model: BprModel, train: Csr, test: Int32Array, foldIn: boolean): number {
  const out = new Float32Array(model.nItems);
  let total = 0;
  for (let u = 0; u < train.rows; u++) {
    const h = history(train, u);
    model.scoreUser(foldIn ? -1 : u, h, out, foldIn);
    const seen = new Set(h.items);
    const t = out[test[u]];
    let wins = 0;
    let n = 0;
    for (let i = 0; i < model.nItems; i++) {
      if (seen.has(i) || i === test[u]) continue;
      n++;
      if (t > out[i]) wins++;
      else if (t === out[i]) wins += 0.5;
    }
    total += wins / n;
  }
  return total / train.rows;
}

const small = { factors: 16, learningRate: 0.05, regularization: 0.01, iterations: 40 };

describe('BPR', () => {
  it('ranks held-out items well above chance on a planted problem', async () => {
    const { train, test } = planted(1);
    const model = (await bprSpec.fit(train, small, { threads: 1, seed: 1 })) as BprModel;
    // The best possible here is ~0.89: 10% of held-out items are off-cluster noise.
    expect(auc(model, train, test, false)).toBeGreaterThan(0.8);
  });

  it('is deterministic with one thread and still learns with two (Hogwild)', async () => {
    const { train, test } = planted(2);
    const a = (await bprSpec.fit(train, small, { threads: 1, seed: 3 })) as BprModel;
    const b = (await bprSpec.fit(train, small, { threads: 1, seed: 3 })) as BprModel;
    expect(Array.from(b.userFactors)).toEqual(Array.from(a.userFactors));
    expect(Array.from(b.itemBias)).toEqual(Array.from(a.itemBias));
    const c = (await bprSpec.fit(train, small, { threads: 1, seed: 4 })) as BprModel;
    expect(Array.from(c.userFactors)).not.toEqual(Array.from(a.userFactors));
    const par = (await bprSpec.fit(train, small, { threads: 2, seed: 3 })) as BprModel;
    expect(auc(par, train, test, false)).toBeGreaterThan(0.8);
  });

  it('folds unknown users in from their history', async () => {
    const { train, test } = planted(3);
    const model = (await bprSpec.fit(train, small, { threads: 1, seed: 5 })) as BprModel;
    expect(auc(model, train, test, true)).toBeGreaterThan(0.75);
    // Deterministic for a given history.
    const h = history(train, 7);
    const x1 = Float64Array.from(model.userVector(-1, h));
    const x2 = Float64Array.from(model.userVector(-1, h));
    expect(Array.from(x2)).toEqual(Array.from(x1));
    // Scoring from a kept vector is scoring the user: bit for bit.
    const direct = new Float32Array(model.nItems);
    const kept = new Float32Array(model.nItems);
    model.scoreUser(-1, h, direct);
    model.scoreVector(x1, kept);
    expect(Array.from(kept)).toEqual(Array.from(direct));
  });

  it('scores are bias plus dot product, and similarities are cosines', async () => {
    const { train } = planted(4, 100, 60);
    const model = (await bprSpec.fit(
      train,
      { ...small, iterations: 5 },
      { threads: 1, seed: 6 },
    )) as BprModel;
    const k = model.factors;
    const out = new Float32Array(model.nItems);
    model.scoreUser(5, history(train, 5), out);
    for (let i = 0; i < model.nItems; i++) {
      let s = model.itemBias[i];
      for (let f = 0; f < k; f++) s += model.userFactors[5 * k + f] * model.itemFactors[i * k + f];
      expect(out[i]).toBeCloseTo(s, 5);
    }
    expect(model.similarItems(2, out)).toBe(true);
    expect(out[2]).toBeCloseTo(1, 5);
    expect(model.itemSimilarity(2, 9)).toBeCloseTo(out[9], 5);
    const items = Int32Array.from([9, 0, 2, 30, 59, 11]);
    const many = new Float64Array(items.length);
    model.itemSimilarities(items, 2, many);
    items.forEach((a, j) => expect(many[j]).toBe(model.itemSimilarity(a, 2)));
  });

  it('round-trips through an artifact', async () => {
    const { train } = planted(5, 80, 50);
    const model = (await bprSpec.fit(
      train,
      { ...small, iterations: 3 },
      { threads: 1, seed: 7 },
    )) as BprModel;
    const art = model.toArtifact();
    expect(art.formatVersion).toBe(1);
    const loaded = bprSpec.load(structuredClone(art));
    const h = history(train, 1);
    for (const foldIn of [false, true]) {
      const a = new Float32Array(model.nItems);
      const b = new Float32Array(model.nItems);
      model.scoreUser(1, h, a, foldIn);
      loaded.scoreUser(1, h, b, foldIn);
      expect(Array.from(b)).toEqual(Array.from(a));
    }
    expect(() => bprSpec.load({ ...art, algorithm: 'als' })).toThrow();
    expect(() => bprSpec.load({ ...art, formatVersion: 2 })).toThrow();
  });

  it('honours cancellation and validates parameters', async () => {
    const { train } = planted(6);
    const ac = new AbortController();
    const run = bprSpec.fit(
      train,
      { ...small, iterations: 1000 },
      {
        threads: 2,
        seed: 1,
        signal: ac.signal,
        onProgress: (f) => {
          if (f > 0) ac.abort();
        },
      },
    );
    await expect(run).rejects.toMatchObject({ name: 'AbortError' });
    expect(() => bprParams({ learningRate: -1 })).toThrow();
    expect(bprParams({}).factors).toBe(64);
  });
});

/** `planted` with its held-out picks as a validation matrix. */
function plantedBpr(seed: number): { train: Csr; validation: Csr } {
  const { train, test } = planted(seed);
  const users = Array.from({ length: train.rows }, (_, u) => u);
  return { train, validation: csrFromCoo(train.rows, train.cols, users, Array.from(test), null) };
}

describe('BPR early stopping', () => {
  it('is off by default, stops on an inner split deterministically and reports the epochs used', async () => {
    const { train } = plantedBpr(31);
    expect(bprParams({}).earlyStopping).toBe(false);
    const plain = await bprSpec.fit(train, { factors: 8, iterations: 3 }, { threads: 1, seed: 1 });
    expect((plain as BprModel).fitReport).toBeNull();
    const q = { factors: 8, iterations: 200, earlyStopping: true, patience: 2, evalEvery: 5 };
    const before = Array.from(train.indices);
    for (const kernel of ['js', 'wasm']) {
      const a = (await bprSpec.fit(train, { ...q, kernel }, { threads: 1, seed: 2 })) as BprModel;
      const b = (await bprSpec.fit(train, { ...q, kernel }, { threads: 1, seed: 2 })) as BprModel;
      expect(Array.from(a.itemFactors)).toEqual(Array.from(b.itemFactors));
      const used = Number(a.fitReport?.iterationsUsed);
      expect(used % 5).toBe(0);
      expect(used).toBeLessThan(200);
      expect(Number(a.fitReport?.bestIteration)).toBe(used - 10);
      expect(Number(a.fitReport?.validationNdcg)).toBeGreaterThan(0.05);
    }
    expect(Array.from(train.indices)).toEqual(before);
  });

  it('monitors an explicit validation set', async () => {
    const { train, validation } = plantedBpr(32);
    const events: number[] = [];
    const model = await fitBpr(
      train,
      { factors: 8, iterations: 12 },
      {
        threads: 1,
        seed: 3,
        earlyStopping: { validation, patience: 0, evalEvery: 4, onEvaluate: (e) => events.push(e.iteration) },
      },
    );
    expect(events).toEqual([4, 8, 12]);
    expect(model.fitReport?.iterationsUsed).toBe(12);
  });
});
