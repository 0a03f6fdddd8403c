import { describe, expect, it } from 'vitest';
import { getAlgorithm } from '../algorithms/index.ts';
import { csrFromCoo, type Csr } from '../algorithms/sparse.ts';
import type { FittedModel } from '../algorithms/types.ts';
import { fitAndEvaluate, sampleUsers, scoreStoredChampion, watchFinite, type FitInput } from './fit.ts';
import { holdoutSplit } from './holdout.ts';

const opts = { threads: 1, seed: 1 };

describe('scoreStoredChampion', () => {
  it("maps ids into the champion's space; items it does not know are misses, never recommended", async () => {
    // The champion knows i3, i1, i2 (its own order); i2 is its most popular item.
    const champMatrix = csrFromCoo(3, 3, [0, 1, 2, 2, 0], [2, 2, 2, 0, 1], null);
    const champ = await getAlgorithm('pop').fit(champMatrix, { halfLifeDays: 0 }, opts);
    const stored = {
      artifact: champ.toArtifact(),
      userIds: ['c1', 'c2', 'c3'],
      itemIds: ['i3', 'i1', 'i2'],
      extra: {},
    };
    // Globally: items i1, i2, i3, i4 (i4 is new). u1 knows i1 and then took i2; u2 knows i3 and took i4.
    const train: Csr = csrFromCoo(2, 4, [0, 1], [0, 2], null);
    const test = { indptr: Int32Array.from([0, 1, 2]), items: Int32Array.from([1, 3]) };
    const target: Csr = {
      rows: 2,
      cols: 4,
      indptr: test.indptr,
      indices: test.items,
      data: Float32Array.from([1, 1]),
    };
    const m = scoreStoredChampion(
      stored,
      { userIds: ['u1', 'u2'], itemIds: ['i1', 'i2', 'i3', 'i4'], k: 2, holdout: { split: { train, test } } },
      target,
      undefined,
    );
    expect(m['hit@2']).toBe(0.5); // u1 gets i2 first; u2's i4 cannot be recommended by the champion
    expect(m['ndcg@2']).toBe(0.5);
    // Recommended: u1 → i2, i3; u2 → i2, i1 (never i4, never a known item): 3 of 4 items.
    expect(m['coverage@2']).toBe(0.75);
  });
});

describe('watchFinite and sampleUsers', () => {
  it('counts NaN and infinite scores of every call', () => {
    const inner = {
      algorithm: 'als',
      params: {},
      nUsers: 1,
      nItems: 3,
      scoreUser: (_u: number, _h: unknown, out: Float32Array) => out.set([1, NaN, Infinity]),
      similarItems: () => false,
      toArtifact: () => {
        throw new Error('unused');
      },
    } as unknown as FittedModel;
    const watch = { bad: 0, checked: 0 };
    const m = watchFinite(inner, watch);
    const out = new Float32Array(3);
    m.scoreUser(0, { items: new Int32Array(0), weights: new Float32Array(0) }, out);
    m.scoreUser(0, { items: new Int32Array(0), weights: new Float32Array(0) }, out);
    expect(watch).toEqual({ bad: 4, checked: 6 });
  });

  it('samples active users evenly and deterministically', () => {
    const m = csrFromCoo(10, 2, [0, 2, 3, 5, 7, 9], [0, 0, 1, 1, 0, 1], null);
    expect(sampleUsers(m, 100)).toEqual([0, 2, 3, 5, 7, 9]);
    expect(sampleUsers(m, 3)).toEqual([0, 3, 7]);
  });
});

describe('fitAndEvaluate', () => {
  // Two taste groups over 40 items; 80 users with 10 items each.
  const rows: number[] = [];
  const cols: number[] = [];
  for (let u = 0; u < 80; u++) {
    const base = u % 2 === 0 ? 0 : 20;
    for (let j = 0; j < 10; j++) {
      rows.push(u);
      cols.push(base + ((u * 3 + j * 7) % 20));
    }
  }
  const full = csrFromCoo(80, 40, rows, cols, null);
  const input = (champion: FitInput['champion']): FitInput => ({
    algorithm: 'itemknn',
    params: {},
    threads: 1,
    seed: 3,
    k: 10,
    full,
    userIds: Array.from({ length: 80 }, (_, i) => `u${i}`),
    itemIds: Array.from({ length: 40 }, (_, i) => `i${i}`),
    holdout: { kind: 'random', split: holdoutSplit(full, 0.2, 3) },
    champion,
    itemEventTimes: { items: Int32Array.from(cols), times: new Float64Array(cols.length).fill(1000) },
    typeCounts: { view: 800 },
    now: 1000,
    baselineParams: {},
  });

  it('scores the challenger, popularity and the refitted champion on the same holdout', async () => {
    const out = await fitAndEvaluate(
      input({ kind: 'refit', version: 'v1', algorithm: 'pop', params: {} }),
      () => undefined,
    );
    expect(out.holdoutUsers).toBe(80);
    expect(out.championError).toBeNull();
    // The champion is popularity here: it scores exactly as the baseline on the same holdout.
    expect(out.championMetrics).toEqual(out.baseline);
    expect(out.metrics['ndcg@10']).toBeGreaterThan(out.baseline['ndcg@10']);
    expect(out.nonFiniteScores).toBe(0);
    expect(out.scoresChecked).toBeGreaterThan(0);
    expect(out.popularityOverlap).toBeGreaterThanOrEqual(0);
    expect(out.popularityOverlap).toBeLessThan(0.9);
    expect(out.trainingSetHash).toMatch(/^[0-9a-f]{64}$/);
    expect(out.popularityBuckets).toHaveLength(40);
    expect(out.drift.eventTypes).toEqual({ view: 1 });
    expect(out.drift.scoreShares.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);

    // Same configuration as the challenger: its own measurement, no second fit.
    const same = await fitAndEvaluate(
      input({ kind: 'refit', version: 'v1', algorithm: 'itemknn', params: out.artifact.params }),
      () => undefined,
    );
    expect(same.championMetrics).toEqual(same.metrics);
    // A champion whose algorithm no longer exists cannot be scored: noted, not fatal.
    const gone = await fitAndEvaluate(
      input({ kind: 'refit', version: 'v0', algorithm: 'magic', params: {} }),
      () => undefined,
    );
    expect(gone.championMetrics).toBeNull();
    expect(gone.championError).toMatch(/magic/);
  });

  it('self-tunes first: the champion’s parameters, then the defaults, then sampled; records every trial', async () => {
    const spec = getAlgorithm('itemknn');
    const champion = { ...spec.defaults, neighbors: 20, shrink: 5 };
    const tuning = (over: Partial<NonNullable<FitInput['tuning']>>): FitInput['tuning'] => ({
      trials: 4,
      budgetSeconds: 1e6,
      metric: { name: 'ndcg', k: 10 },
      warmStart: { version: 'v7', params: champion },
      defaults: spec.defaults,
      fixed: {},
      ...over,
    });
    const out = await fitAndEvaluate({ ...input(null), tuning: tuning({}) }, () => undefined);
    const t = out.tuning!;
    expect(out.tuningSkipped).toBeNull();
    expect(t.metric).toBe('ndcg@10');
    expect(t.warmStart).toBe('v7');
    expect(t.trials).toHaveLength(4);
    expect(t.trials[0].params).toMatchObject({ neighbors: 20, shrink: 5 });
    expect(t.trials[1].params).toMatchObject({
      neighbors: spec.defaults.neighbors,
      shrink: spec.defaults.shrink,
    });
    expect(t.best).toBe(Math.max(...t.trials.map((x) => x.value ?? -1)));
    // The served model is fitted with the winner.
    const winner = t.trials.find((x) => x.value === t.best)!;
    expect(out.params).toMatchObject(winner.params);
    expect(out.artifact.params).toEqual(out.params);

    // A zero budget: the champion's parameters are the only trial.
    const quick = await fitAndEvaluate(
      { ...input(null), tuning: tuning({ budgetSeconds: 0 }) },
      () => undefined,
    );
    expect(quick.tuning!.trials).toHaveLength(1);
    expect(quick.tuning!.trials[0].params).toMatchObject({ neighbors: 20, shrink: 5 });
    expect(quick.params).toMatchObject({ neighbors: 20, shrink: 5 });

    // No champion of this algorithm: the defaults come first; a fixed parameter is never searched.
    const cold = await fitAndEvaluate(
      { ...input(null), tuning: tuning({ warmStart: null, trials: 3, fixed: { neighbors: 30 } }) },
      () => undefined,
    );
    expect(cold.tuning!.warmStart).toBeNull();
    expect(cold.tuning!.trials[0].params).toMatchObject({ shrink: spec.defaults.shrink });
    expect(cold.tuning!.trials.every((x) => x.params.neighbors === 30)).toBe(true);
    expect(cold.params.neighbors).toBe(30);
  });

  it('fits the given parameters when tuning is off or there is nothing to carve', async () => {
    const off = await fitAndEvaluate(input(null), () => undefined);
    expect(off.tuning).toBeNull();
    expect(off.params).toEqual({});
    const tiny = csrFromCoo(3, 3, [0, 1, 2], [0, 1, 2], null);
    const skipped = await fitAndEvaluate(
      {
        ...input(null),
        full: tiny,
        userIds: ['a', 'b', 'c'],
        itemIds: ['x', 'y', 'z'],
        holdout: null,
        itemEventTimes: { items: Int32Array.from([0, 1, 2]), times: new Float64Array(3).fill(1000) },
        tuning: {
          trials: 3,
          budgetSeconds: 10,
          metric: { name: 'ndcg', k: 10 },
          warmStart: null,
          defaults: {},
          fixed: {},
        },
      },
      () => undefined,
    );
    expect(skipped.tuning).toBeNull();
    expect(skipped.tuningSkipped).toMatch(/nothing to tune on/);
  });
});
