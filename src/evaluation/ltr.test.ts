import { describe, expect, it } from 'vitest';
import { Rng } from '../algorithms/random.ts';
import { csrFromCoo } from '../algorithms/sparse.ts';
import { CairnError } from '../errors/errors.ts';
import type { Interactions } from './filters.ts';
import { evaluateLtr, innerSplit, LTR_DEFAULTS, pairTimes, resolveLtrSettings } from './ltr.ts';
import { splitInteractions, type Protocol } from './splits.ts';

const DAY = 86_400_000;

/**
 * 240 users × 60 items over 60 days: items come into fashion one after another (item i is popular
 * around day i), and users like items of their own taste group. Both time and taste matter.
 */
function world(seed: number): Interactions {
  const rng = new Rng(seed);
  const users: number[] = [];
  const items: number[] = [];
  const times: number[] = [];
  for (let u = 0; u < 240; u++) {
    const taste = u % 3;
    const seen = new Set<number>();
    const start = rng.int(40);
    for (let e = 0; e < 10; e++) {
      const day = start + e * 2 + rng.float();
      const trendy = Math.min(59, Math.floor(day));
      const i = rng.float() < 0.6 ? trendy : taste * 20 + rng.int(20);
      if (seen.has(i)) continue;
      seen.add(i);
      users.push(u);
      items.push(i);
      times.push(1_600_000_000_000 + day * DAY);
    }
  }
  return {
    nUsers: 240,
    nItems: 60,
    users: Int32Array.from(users),
    items: Int32Array.from(items),
    values: new Float32Array(users.length).fill(1),
    times: Float64Array.from(times),
  };
}

const SETTINGS = resolveLtrSettings(LTR_DEFAULTS, {
  retrievers: 'pop+itemknn+als',
  extraRetrievers: 'none',
  candidates: 30,
  trees: 40,
  leaves: 7,
  minDataInLeaf: 5,
  learningRate: 0.1,
  'als.factors': 8,
});

describe('pairTimes and innerSplit', () => {
  const x = world(1);
  const split = splitInteractions(x, 'leave-last-out', { seed: 3 });
  const times = pairTimes(split.train, x);

  it('aligns each training pair with its time', () => {
    const byPair = new Map<string, number>();
    for (let r = 0; r < x.users.length; r++) byPair.set(`${x.users[r]}:${x.items[r]}`, x.times[r]);
    for (let u = 0; u < split.train.rows; u++) {
      for (let p = split.train.indptr[u]; p < split.train.indptr[u + 1]; p++) {
        expect(times[p]).toBe(byPair.get(`${u}:${split.train.indices[p]}`));
      }
    }
  });

  it('leave-last-out moves each user’s newest training pair; temporal the newest share; both partition', () => {
    const llo = innerSplit({ m: split.train, times }, 'leave-last-out', 1);
    for (let u = 0; u < split.train.rows; u++) {
      const n = split.train.indptr[u + 1] - split.train.indptr[u];
      const v = llo.valid.m.indptr[u + 1] - llo.valid.m.indptr[u];
      expect(v).toBe(n >= 2 ? 1 : 0);
      if (v === 1) {
        const vt = llo.valid.times[llo.valid.m.indptr[u]];
        for (let p = llo.train.m.indptr[u]; p < llo.train.m.indptr[u + 1]; p++)
          expect(llo.train.times[p]).toBeLessThanOrEqual(vt);
      }
    }
    const tmp = innerSplit({ m: split.train, times }, 'temporal', 1);
    const nTrain = tmp.train.m.indices.length;
    const nValid = tmp.valid.m.indices.length;
    expect(nTrain + nValid).toBe(split.train.indices.length);
    expect(nValid).toBe(Math.trunc(split.train.indices.length / 9));
    expect(Math.max(...tmp.train.times)).toBeLessThanOrEqual(Math.min(...tmp.valid.times));
    const rh = innerSplit({ m: split.train, times }, 'random-holdout', 1);
    expect(rh.train.m.indices.length + rh.valid.m.indices.length).toBe(split.train.indices.length);
  });
});

describe('evaluateLtr', () => {
  it.each<Protocol>(['leave-last-out', 'temporal', 'random-holdout'])(
    '%s: learns from the training part only and ranks the test part',
    async (protocol) => {
      const x = world(2);
      const split = splitInteractions(x, protocol, { seed: 5 });
      const times = pairTimes(split.train, x);
      const opts = { k: 10, seed: 5, threads: 1, settings: SETTINGS, halfLivesDays: [1, 7, 30] };
      const r = await evaluateLtr(split, times, opts);
      expect(r.algorithm).toBe('ltr');
      expect(r.users).toBeGreaterThan(0);
      expect(r.training.queries).toBeGreaterThan(20);
      expect(r.model.nTrees).toBeGreaterThan(0);
      expect(r.metrics['ndcg@10']).toBeGreaterThan(0);
      expect(r.params.retrievers).toBe('pop+itemknn+als');
      // The ranker never sees the test part: another test target gives the same model.
      const shifted = { ...split, test: csrFromCoo(split.test.rows, split.test.cols, [0, 1], [3, 4], null) };
      const again = await evaluateLtr(shifted, times, opts);
      expect(again.model.toJSON()).toEqual(r.model.toJSON());
      expect(again.users).toBe(2);
    },
    60_000,
  );

  it('beats the time-blind retrievers on trend-driven data (leave-last-out)', async () => {
    const x = world(4);
    const split = splitInteractions(x, 'leave-last-out', { seed: 5 });
    const r = await evaluateLtr(split, pairTimes(split.train, x), {
      k: 10,
      seed: 5,
      threads: 1,
      settings: SETTINGS,
      halfLivesDays: [1, 7, 30],
    });
    // Inner validation of each retriever alone vs the ranker's early-stopping NDCG (same kind of users).
    const bestRetriever = Math.max(...Object.values(r.training.retrieverNdcg));
    expect(r.training.validNdcg).toBeGreaterThan(bestRetriever);
    expect(r.training.pointInTime).toBe('user');
  }, 60_000);

  it('rejects bad settings with the field named', () => {
    const fieldOf = (o: Record<string, string | number>): string | undefined => {
      try {
        resolveLtrSettings(LTR_DEFAULTS, o);
      } catch (e) {
        expect(e).toBeInstanceOf(CairnError);
        return ((e as CairnError).details as { fields: { field: string }[] }).fields[0].field;
      }
      return undefined;
    };
    expect(fieldOf({ retrievers: 'pop+svd' })).toBe('ltr.retrievers');
    expect(fieldOf({ leaves: 1 })).toBe('ltr.leaves');
    expect(fieldOf({ candidates: 0 })).toBe('ltr.candidates');
    expect(fieldOf({ 'als.factors': -3 })).toBe('als.factors');
    expect(fieldOf({ nonsense: 1 })).toBe('ltr.nonsense');
    expect(fieldOf({ pointInTime: 'later' })).toBe('ltr.pointInTime');
    expect(fieldOf({ extraRetrievers: 'trending+category' })).toBe('ltr.extraRetrievers');
    expect(resolveLtrSettings(LTR_DEFAULTS, { extraRetrievers: 'similar,trending' }).extraRetrievers).toEqual(
      ['similar', 'trending'],
    );
    expect(resolveLtrSettings(LTR_DEFAULTS, { extraRetrievers: 'none' }).extraRetrievers).toEqual([]);
  });

  it('draws the extra retrievers after the fitted ones, as features and as candidates', async () => {
    const x = world(2);
    const split = splitInteractions(x, 'temporal', { seed: 5 });
    const settings = resolveLtrSettings(SETTINGS, { extraRetrievers: 'trending+similar' });
    const r = await evaluateLtr(split, pairTimes(split.train, x), {
      k: 10,
      seed: 5,
      threads: 1,
      settings,
      halfLivesDays: [1, 7, 30],
      recentItems: 5,
    });
    expect(r.params.retrievers).toBe('pop+itemknn+als+trending+similar');
    expect(r.model.toJSON().featureNames).toEqual(
      expect.arrayContaining(['retriever_trending_score', 'retriever_similar_rank']),
    );
    // Each is measured alone on the inner validation like the fitted ones, and retrieves something.
    expect(r.training.retrieverNdcg.trending).toBeGreaterThan(0);
    expect(r.training.retrieverNdcg.similar).toBeGreaterThan(0);
    expect(r.metrics['ndcg@10']).toBeGreaterThan(0);
  }, 60_000);
});
