import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { CairnError } from '../errors/errors.ts';
import {
  DECISION_DEFAULT_LEFT,
  GbdtModel,
  LAMBDAMART_DEFAULTS,
  meanNdcg,
  resolveLambdaMartParams,
  trainLambdaMart,
  MISSING_NAN,
  MISSING_NONE,
  MISSING_ZERO,
  type GbdtModelJson,
  type RankingDataset,
  type TreeJson,
} from './gbdt.ts';
import { parseLightGbmModel } from './lightgbm.ts';
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

/**
 * Reference scorer, written from LightGBM's NumericalDecision over the JSON trees: the sum of the
 * reached leaves in tree order (double), independent of the model's flattened walk arrays.
 */
function referenceScore(json: GbdtModelJson, x: Float32Array, offset: number): number {
  let s = 0;
  for (const t of json.trees) {
    let node = t.splitFeature.length === 0 ? -1 : 0;
    while (node >= 0) {
      const d = t.decisionType[node];
      const missing = (d >> 2) & 3;
      let v = x[offset + t.splitFeature[node]];
      if (Number.isNaN(v) && missing !== MISSING_NAN) v = 0;
      const toDefault =
        (missing === MISSING_ZERO && Math.abs(v) <= 1e-35) || (missing === MISSING_NAN && Number.isNaN(v));
      const left = toDefault ? (d & DECISION_DEFAULT_LEFT) !== 0 : v <= t.threshold[node];
      node = left ? t.leftChild[node] : t.rightChild[node];
    }
    s += t.leafValue[~node];
  }
  return s;
}

/** A random tree of `leaves` leaves over nf features whose splits use the given missing types. */
function randomTree(rng: Rng, nf: number, leaves: number, missingTypes: number[]): TreeJson {
  const t: TreeJson = {
    splitFeature: [],
    threshold: [],
    decisionType: [],
    leftChild: [],
    rightChild: [],
    splitGain: [],
    internalValue: [],
    leafValue: [0],
  };
  // Grow by splitting a random leaf (reached through parent/side), like leaf-wise growth.
  const parentOf: number[] = [-1];
  const sideOf: number[] = [0];
  while (t.leafValue.length < leaves) {
    const leaf = rng.int(t.leafValue.length);
    const node = t.splitFeature.length;
    t.splitFeature.push(rng.int(nf));
    t.threshold.push([-0.5, 0, 0.25, 0.5, 1e-36][rng.int(5)]);
    const missing = missingTypes[rng.int(missingTypes.length)];
    t.decisionType.push((rng.float() < 0.5 ? DECISION_DEFAULT_LEFT : 0) | (missing << 2));
    t.leftChild.push(~leaf);
    t.rightChild.push(~t.leafValue.length);
    t.splitGain.push(1);
    t.internalValue.push(0);
    if (parentOf[leaf] >= 0) {
      if (sideOf[leaf] === 0) t.leftChild[parentOf[leaf]] = node;
      else t.rightChild[parentOf[leaf]] = node;
    }
    parentOf[leaf] = node;
    sideOf[leaf] = 0;
    parentOf.push(node);
    sideOf.push(1);
    t.leafValue.push(0);
  }
  for (let l = 0; l < leaves; l++) t.leafValue[l] = rng.normal() * 0.1;
  return t;
}

/** Rows drawn to hit every rule: NaN, zero, tiny values, values equal to thresholds, ±∞. */
function awkwardRows(rng: Rng, rows: number, nf: number): Float32Array {
  const pool = [NaN, 0, -0, 1e-36, -1e-36, 0.25, 0.5, -0.5, Infinity, -Infinity];
  return Float32Array.from({ length: rows * nf }, () =>
    rng.float() < 0.5 ? pool[rng.int(pool.length)] : rng.normal(),
  );
}

describe('GbdtModel.predict / predictMany', () => {
  const check = (model: GbdtModel, x: Float32Array, rows: number): void => {
    const json = model.toJSON();
    const nf = model.nFeatures;
    const many = new Float32Array(rows);
    model.predictMany(x, rows, many);
    for (let r = 0; r < rows; r++) {
      const one = model.predict(x, r * nf);
      expect(one).toBe(referenceScore(json, x, r * nf));
      expect(many[r]).toBe(Math.fround(one));
    }
  };

  it('score bit for bit like the reference for a trained model with missing values (odd row count)', () => {
    const d = synthetic(30, 7, 5); // 210 rows: blocks of eight plus a remainder
    const m = trainLambdaMart(
      d,
      null,
      { trees: 40, leaves: 15, minDataInLeaf: 5, seed: 3 },
      { featureNames: NAMES },
    );
    check(m, d.features, 203);
    check(m, awkwardRows(new Rng(11), 101, NAMES.length), 101);
  });

  it('score bit for bit like the reference for the LightGBM fixture (missing none, zero, NaN)', () => {
    const text = readFileSync(new URL('../../test/fixtures/lightgbm/ranker.txt', import.meta.url), 'utf8');
    const m = parseLightGbmModel(text);
    check(m, awkwardRows(new Rng(12), 77, m.nFeatures), 77);
  });

  it('score bit for bit like the reference for random trees, with and without zero-as-missing', () => {
    const rng = new Rng(13);
    const nf = 5;
    const names = Array.from({ length: nf }, (_, f) => `f${f}`);
    for (const types of [
      [MISSING_NAN, MISSING_NONE],
      [MISSING_NAN, MISSING_NONE, MISSING_ZERO],
    ]) {
      // Tree sizes include a single leaf (a constant) and a count not a multiple of four.
      const trees = Array.from({ length: 23 }, (_, i) =>
        randomTree(rng, nf, i === 3 ? 1 : 2 + rng.int(20), types),
      );
      const m = new GbdtModel(names, trees);
      check(m, awkwardRows(rng, 45, nf), 45);
      check(GbdtModel.fromJSON(JSON.parse(JSON.stringify(m.toJSON()))), awkwardRows(rng, 9, nf), 9);
    }
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
