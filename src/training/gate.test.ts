import { describe, expect, it } from 'vitest';
import { csrFromCoo } from '../algorithms/sparse.ts';
import { decideGate, type GateInput, type GateOptions } from './gate.ts';
import { chooseHoldout, freshSplit } from './holdout.ts';

const options: GateOptions = {
  tolerances: { 'recall@10': 0.05, 'coverage@10': 0.5 },
  minRatio: 0.95,
  minUsersScored: 20,
  maxPopularityOverlap: 0.9,
};

/** A challenger that passes every check against a champion. */
function passing(overrides: Partial<GateInput> = {}): GateInput {
  return {
    algorithm: 'als',
    holdout: 'random',
    holdoutUsers: 100,
    holdoutInteractions: 300,
    champion: 'v1',
    challenger: { 'ndcg@10': 0.3, 'recall@10': 0.4, 'coverage@10': 0.2 },
    championMetrics: { 'ndcg@10': 0.3, 'recall@10': 0.4, 'coverage@10': 0.2 },
    baseline: { 'ndcg@10': 0.1, 'recall@10': 0.15, 'coverage@10': 0.01 },
    nonFiniteScores: 0,
    scoresChecked: 5000,
    popularityOverlap: 0.3,
    ...overrides,
  };
}

const failedChecks = (input: GateInput, opts = options) =>
  decideGate(input, opts)
    .checks.filter((c) => !c.passed)
    .map((c) => c.name);

describe('decideGate', () => {
  it('passes a challenger that matches the champion on every check, and records each check', () => {
    const g = decideGate(passing(), options);
    expect(g.passed).toBe(true);
    expect(g.checks.map((c) => c.name)).toEqual([
      'finite_scores',
      'ndcg@10',
      'recall@10',
      'coverage@10',
      'beats_popularity',
      'users_scored',
      'not_popularity',
    ]);
    expect(g.reason).toMatch(/^passes 7 checks on the random holdout/);
    expect(g.champion).toBe('v1');
    expect(g.championMetrics['ndcg@10']).toBe(0.3);
    const ndcg = g.checks.find((c) => c.name === 'ndcg@10')!;
    expect(ndcg).toMatchObject({ challenger: 0.3, champion: 0.3 });
    expect(ndcg.tolerance).toBeCloseTo(0.05);
  });

  it('fails ndcg@10 below the champion × autoPromoteMinRatio, within it passes', () => {
    expect(failedChecks(passing({ challenger: { ...passing().challenger, 'ndcg@10': 0.284 } }))).toEqual([
      'ndcg@10',
    ]);
    expect(failedChecks(passing({ challenger: { ...passing().challenger, 'ndcg@10': 0.286 } }))).toEqual([]);
    // An explicit tolerance for ndcg@10 overrides the ratio.
    const strict = { ...options, tolerances: { ...options.tolerances, 'ndcg@10': 0 } };
    expect(
      failedChecks(passing({ challenger: { ...passing().challenger, 'ndcg@10': 0.299 } }), strict),
    ).toEqual(['ndcg@10']);
  });

  it('fails recall@10 and coverage@10 beyond their tolerances, and gives the first failure as reason', () => {
    const g = decideGate(
      passing({ challenger: { 'ndcg@10': 0.3, 'recall@10': 0.37, 'coverage@10': 0.09 } }),
      options,
    );
    expect(g.passed).toBe(false);
    expect(g.checks.filter((c) => !c.passed).map((c) => c.name)).toEqual(['recall@10', 'coverage@10']);
    expect(g.reason).toMatch(/^recall@10 0\.3700 is below the champion's 0\.4000/);
    // Tolerances not listed in the config fall back to the defaults.
    expect(
      failedChecks(passing({ challenger: { 'ndcg@10': 0.3, 'recall@10': 0.39, 'coverage@10': 0.2 } }), {
        ...options,
        tolerances: {},
      }),
    ).toEqual([]);
  });

  it('fails a challenger that does not beat popularity (not for pop itself)', () => {
    const weak = passing({ baseline: { 'ndcg@10': 0.3 } });
    expect(failedChecks(weak)).toEqual(['beats_popularity']);
    expect(failedChecks({ ...weak, algorithm: 'pop', popularityOverlap: null })).toEqual([]);
  });

  it('fails NaN or infinite scores, even for a first model', () => {
    expect(failedChecks(passing({ nonFiniteScores: 3 }))).toEqual(['finite_scores']);
    const first = decideGate(
      passing({ champion: null, championMetrics: null, holdout: 'none', challenger: {}, nonFiniteScores: 1 }),
      options,
    );
    expect(first.passed).toBe(false);
    expect(first.reason).toBe('1 of 5000 scores are NaN or infinite');
  });

  it('fails a copy of popularity', () => {
    const g = decideGate(passing({ popularityOverlap: 0.95 }), options);
    expect(g.checks.filter((c) => !c.passed).map((c) => c.name)).toEqual(['not_popularity']);
    expect(g.reason).toMatch(/a copy of popularity/);
    expect(failedChecks(passing({ popularityOverlap: null }))).toEqual([]);
  });

  it('needs enough holdout users to replace a champion, not to be the first model', () => {
    expect(failedChecks(passing({ holdoutUsers: 19 }))).toEqual(['users_scored']);
    const first = decideGate(passing({ holdoutUsers: 3, champion: null, championMetrics: null }), options);
    expect(first.passed).toBe(true);
    expect(first.reason).toBe('first model');
    expect(first.checks.map((c) => c.name)).not.toContain('users_scored');
  });

  it('without a holdout: a first model passes, a challenger of a champion fails', () => {
    const none = { holdout: 'none' as const, challenger: {}, baseline: {}, holdoutUsers: 0 };
    const first = decideGate(passing({ ...none, champion: null, championMetrics: null }), options);
    expect(first.passed).toBe(true);
    expect(first.reason).toMatch(/^first model/);
    const challenger = decideGate(passing({ ...none, championMetrics: null }), options);
    expect(challenger.passed).toBe(false);
    expect(challenger.checks[0]).toMatchObject({ name: 'holdout', passed: false });
  });

  it('a champion that could not be scored does not block, but popularity must still be beaten', () => {
    const g = decideGate(passing({ championMetrics: null, championError: 'artifact gone' }), options);
    expect(g.passed).toBe(true);
    expect(g.checks.find((c) => c.name === 'champion_scored')?.detail).toMatch(/artifact gone/);
    expect(
      failedChecks(passing({ championMetrics: null, championError: 'x', baseline: { 'ndcg@10': 0.5 } })),
    ).toEqual(['beats_popularity']);
  });
});

describe('gate holdouts', () => {
  // 30 users × 20 items; user u has items u%20 .. (u+5)%20 with seqs 1..6 per user, u*10 + j.
  const rows: number[] = [];
  const cols: number[] = [];
  const seqOf = new Map<string, number>();
  for (let u = 0; u < 30; u++) {
    for (let j = 0; j < 6; j++) {
      rows.push(u);
      cols.push((u + j) % 20);
      seqOf.set(`${u}:${(u + j) % 20}`, u * 10 + j + 1);
    }
  }
  const m = csrFromCoo(30, 20, rows, cols, null);
  const firstSeq = new Float64Array(m.indices.length);
  for (let u = 0; u < m.rows; u++) {
    for (let p = m.indptr[u]; p < m.indptr[u + 1]; p++) firstSeq[p] = seqOf.get(`${u}:${m.indices[p]}`)!;
  }

  it('fresh: holds out exactly the pairs newer than the champion, for users with older pairs', () => {
    // Champion saw seqs ≤ 154: users 0..14 entirely, user 15 up to its 4th pair (151..154).
    const split = freshSplit(m, firstSeq, 154);
    expect(split.users).toBe(1); // only user 15 has both older and newer pairs
    expect(split.interactions).toBe(2);
    const held = Array.from(split.test.items.subarray(split.test.indptr[15], split.test.indptr[16])).sort(
      (a, b) => a - b,
    );
    expect(held).toEqual([(15 + 4) % 20, (15 + 5) % 20].sort((a, b) => a - b));
    // Users 16..29 are all new: their pairs train the challenger, none is held out.
    for (let u = 16; u < 30; u++) {
      expect(split.test.indptr[u + 1] - split.test.indptr[u]).toBe(0);
      expect(split.train.indptr[u + 1] - split.train.indptr[u]).toBe(6);
    }
    expect(split.train.indices.length + split.test.items.length).toBe(m.indices.length);
  });

  it('chooses fresh with enough new pairs, random without, none when nothing can be held out', () => {
    // A champion that saw the first 3 pairs of every user: 3 fresh pairs per user, 90 in all.
    const older = new Float64Array(firstSeq);
    for (let u = 0; u < m.rows; u++) {
      for (let p = m.indptr[u]; p < m.indptr[u + 1]; p++) older[p] = ((older[p] - 1) % 10) + 1;
    }
    // Every user's pairs now have first seqs 1..6: the champion saw ≤ 3.
    const fresh = chooseHoldout(m, older, 3, { minFresh: 90, fraction: 0.2, seed: 1 });
    expect(fresh).toMatchObject({ kind: 'fresh', users: 30, interactions: 90 });
    const random = chooseHoldout(m, older, 3, { minFresh: 91, fraction: 0.2, seed: 1 });
    expect(random.kind).toBe('random');
    expect(random.users).toBe(30);
    expect(random.interactions).toBe(30); // round(6 × 0.2) = 1 per user
    expect(chooseHoldout(m, older, null, { minFresh: 1, fraction: 0.2, seed: 1 }).kind).toBe('random');

    const tiny = csrFromCoo(3, 5, [0, 0, 1, 2], [0, 1, 2, 3], null);
    expect(
      chooseHoldout(tiny, new Float64Array(4).fill(1), null, { minFresh: 1, fraction: 0.2, seed: 1 }),
    ).toMatchObject({ kind: 'none', split: null, users: 0, interactions: 0 });
  });
});
