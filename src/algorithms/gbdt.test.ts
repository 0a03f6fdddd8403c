import { describe, expect, it } from 'vitest';
import { CairnError } from '../errors/errors.ts';
import {
  GbdtModel,
  LAMBDAMART_DEFAULTS,
  meanNdcg,
  resolveLambdaMartParams,
  trainLambdaMart,
  type RankingDataset,
} from './gbdt.ts';
import { Rng } from './random.ts';

const NAMES = ['x0', 'x1', 'x2', 'noise'];

/**
 * Queries of `perQuery` documents whose graded relevance (0..3) is a known function of the
 * features: mostly x0, then x1, and x2 only when present (NaN in a third of rows, which then count
 * as "high" — a rule only a learned default direction can express). `noise` is irrelevant.
 */
function synthetic(queries: number, perQuery: number, seed: number): RankingDataset {
  const rng = new Rng(seed);
  const rows = queries * perQuery;
  const nf = NAMES.length;
  const features = new Float32Array(rows * nf);
  const labels = new Float32Array(rows);
  const groups = new Int32Array(queries + 1);
  for (let q = 0; q < queries; q++) groups[q + 1] = (q + 1) * perQuery;
  for (let r = 0; r < rows; r++) {
    const x0 = rng.float();
    const x1 = rng.float();
    const x2 = rng.float() < 0.33 ? NaN : rng.float();
    features[r * nf] = x0;
    features[r * nf + 1] = x1;
    features[r * nf + 2] = x2;
    features[r * nf + 3] = rng.float();
    const u = 0.6 * x0 + 0.25 * x1 + 0.15 * (Number.isNaN(x2) ? 1 : x2);
    labels[r] = Math.min(3, Math.floor(u * 4));
  }
  return { nFeatures: nf, features, labels, groups };
}

function scoresOf(model: GbdtModel, d: RankingDataset): Float32Array {
  const out = new Float32Array(d.labels.length);
  model.predictMany(d.features, d.labels.length, out);
  return out;
}

describe('trainLambdaMart', () => {
  const train = synthetic(300, 20, 1);
  const valid = synthetic(100, 20, 2);
  const test = synthetic(200, 20, 3);
  const params = { trees: 80, learningRate: 0.1, leaves: 15, minDataInLeaf: 10, seed: 7 };
  const model = trainLambdaMart(train, valid, params, { featureNames: NAMES });

  it('learns a known ranking function (NDCG near 1, far above random)', () => {
    const learned = meanNdcg(scoresOf(model, test), test.labels, test.groups, 10);
    const rng = new Rng(99);
    const random = Float32Array.from(test.labels, () => rng.float());
    const chance = meanNdcg(random, test.labels, test.groups, 10);
    expect(learned).toBeGreaterThan(0.93);
    expect(chance).toBeLessThan(0.75);
    // The irrelevant feature earns little of the gain.
    const gain = model.importance('gain');
    expect(gain.x0).toBeGreaterThan(gain.noise * 5);
    expect(model.importance('split').x0).toBeGreaterThan(0);
  });

  it('learns where missing values go', () => {
    // Two rows identical but for x2: missing (counts as the highest) must score at least as high as x2 = 0.
    const a = Float32Array.from([0.5, 0.5, NaN, 0.5]);
    const b = Float32Array.from([0.5, 0.5, 0.0, 0.5]);
    expect(model.predict(a)).toBeGreaterThan(model.predict(b));
  });

  it('contributions sum to the prediction', () => {
    const out = new Float64Array(NAMES.length + 1);
    for (let r = 0; r < 50; r++) {
      model.contributions(test.features, r * NAMES.length, out);
      const sum = out.reduce((s, v) => s + v, 0);
      expect(sum).toBeCloseTo(model.predict(test.features, r * NAMES.length), 9);
    }
  });

  it('predictMany (tree by tree) equals predict (row by row)', () => {
    const many = scoresOf(model, test);
    for (let r = 0; r < 200; r++)
      expect(many[r]).toBe(Math.fround(model.predict(test.features, r * NAMES.length)));
  });

  it('round-trips through JSON exactly', () => {
    const copy = GbdtModel.fromJSON(JSON.parse(JSON.stringify(model.toJSON())));
    expect(Array.from(scoresOf(copy, test))).toEqual(Array.from(scoresOf(model, test)));
    expect(copy.history).toEqual(model.history);
    expect(copy.toJSON()).toEqual(model.toJSON());
  });

  it('is deterministic for a seed, and the feature sample depends on it', () => {
    const p = { ...params, trees: 10, featureFraction: 0.5 };
    const a = trainLambdaMart(train, null, p, { featureNames: NAMES });
    const b = trainLambdaMart(train, null, p, { featureNames: NAMES });
    const c = trainLambdaMart(train, null, { ...p, seed: 8 }, { featureNames: NAMES });
    expect(a.toJSON()).toEqual(b.toJSON());
    expect(c.toJSON()).not.toEqual(a.toJSON());
  });

  it('stops early and keeps the best iteration', () => {
    // A tiny training set overfits fast: validation NDCG peaks and the run stops soon after.
    const small = synthetic(20, 20, 4);
    const m = trainLambdaMart(
      small,
      valid,
      { trees: 500, learningRate: 0.3, leaves: 31, minDataInLeaf: 2, earlyStoppingRounds: 10, seed: 1 },
      { featureNames: NAMES },
    );
    const h = m.history;
    expect(h.validNdcg.length).toBeLessThan(500);
    expect(m.nTrees).toBe(h.bestIteration);
    expect(h.validNdcg.length).toBe(h.bestIteration + 10);
    const bestSeen = Math.max(...h.validNdcg);
    expect(h.validNdcg[h.bestIteration - 1]).toBe(bestSeen);
    // The kept model scores exactly the validation NDCG recorded at its best iteration.
    expect(meanNdcg(scoresOf(m, valid), valid.labels, valid.groups, 10)).toBeCloseTo(bestSeen, 5);
  });

  it('rejects bad parameters and datasets with the field named', () => {
    const fieldOf = (fn: () => unknown): string | undefined => {
      try {
        fn();
      } catch (e) {
        expect(e).toBeInstanceOf(CairnError);
        return ((e as CairnError).details as { fields: { field: string }[] }).fields[0].field;
      }
      return undefined;
    };
    expect(fieldOf(() => resolveLambdaMartParams({ leaves: 1 }))).toBe('lambdamart.leaves');
    expect(fieldOf(() => resolveLambdaMartParams({ bins: 300 }, 'ranking.lambdaMart'))).toBe(
      'ranking.lambdaMart.bins',
    );
    expect(fieldOf(() => resolveLambdaMartParams({ trees: 1.5 }))).toBe('lambdamart.trees');
    const bad = { ...train, groups: Int32Array.from([0, 5]) };
    expect(fieldOf(() => trainLambdaMart(bad, null, {}, { featureNames: NAMES }))).toBe('train');
    expect(fieldOf(() => trainLambdaMart(train, null, {}, { featureNames: ['a'] }))).toBe('train');
    expect(resolveLambdaMartParams({})).toEqual(LAMBDAMART_DEFAULTS);
  });
});

describe('meanNdcg', () => {
  it('matches a hand computation with graded labels and skips queries without a relevant row', () => {
    // Query 0: ranking by score puts labels [1, 2, 0]; ideal [2, 1, 0].
    const scores = Float32Array.from([3, 2, 1, 5, 4]);
    const labels = Float32Array.from([1, 2, 0, 0, 0]);
    const groups = Int32Array.from([0, 3, 5]);
    const dcg = 1 / Math.log2(2) + 3 / Math.log2(3);
    const idcg = 3 / Math.log2(2) + 1 / Math.log2(3);
    expect(meanNdcg(scores, labels, groups, 10)).toBeCloseTo(dcg / idcg, 12);
    expect(meanNdcg(scores, labels, groups, 1)).toBeCloseTo(1 / 3, 12);
  });
});
