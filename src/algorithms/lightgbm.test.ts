import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CairnError } from '../errors/errors.ts';
import { GbdtModel } from './gbdt.ts';
import { parseLightGbmModel } from './lightgbm.ts';

const FIXTURE = readFileSync(new URL('../../test/fixtures/lightgbm/ranker.txt', import.meta.url), 'utf8');

function fieldOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CairnError);
    expect((e as CairnError).code).toBe('CAIRN_VALIDATION');
    return ((e as CairnError).details as { fields: { field: string }[] }).fields[0].field;
  }
  return undefined;
}

describe('parseLightGbmModel', () => {
  const model = parseLightGbmModel(FIXTURE);
  const row = (...v: number[]): Float32Array => Float32Array.from(v);

  it('keeps the feature names, objective and trees', () => {
    expect(model.featureNames).toEqual(['item_pop', 'item_age', 'retriever_als_score']);
    expect(model.objective).toBe('lambdarank');
    expect(model.nTrees).toBe(3);
    expect(model.importance('split')).toEqual({ item_pop: 1, item_age: 1, retriever_als_score: 1 });
    expect(model.importance('gain')).toEqual({ item_pop: 12.5, item_age: 3, retriever_als_score: 4.25 });
  });

  it('predicts what the trees say, computed by hand', () => {
    // A: item_pop 0.2 ≤ 0.5 → node 1; als 1.0 ≤ 1.5 → leaf 0 (0.1). age 5 ≤ 10 → −0.05. Constant tree 0.011.
    expect(model.predict(row(0.2, 5, 1.0))).toBeCloseTo(0.1 - 0.05 + 0.011, 12);
    // B: item_pop NaN with missing type "none" counts as 0 → left; als NaN with missing type NaN goes to the
    // default (left) → 0.1; age 0 with missing type "zero" goes to the default (right) → 0.07.
    expect(model.predict(row(NaN, 0, NaN))).toBeCloseTo(0.1 + 0.07 + 0.011, 12);
    // C: 0.9 > 0.5 → leaf 1 (−0.2); 20 > 10 → 0.07.
    expect(model.predict(row(0.9, 20, 2.0))).toBeCloseTo(-0.2 + 0.07 + 0.011, 12);
    // D: thresholds are inclusive on the left: 0.5 ≤ 0.5, 3 > 1.5 → leaf 2 (0.3); 10 ≤ 10 → −0.05.
    expect(model.predict(row(0.5, 10, 3))).toBeCloseTo(0.3 - 0.05 + 0.011, 12);
    const many = new Float32Array(2);
    model.predictMany(Float32Array.from([0.2, 5, 1.0, 0.9, 20, 2.0]), 2, many);
    expect(many[0]).toBeCloseTo(0.061, 6);
    expect(many[1]).toBeCloseTo(-0.119, 6);
  });

  it('explains a row by path contributions from internal_value', () => {
    const out = new Float64Array(4);
    model.contributions(row(0.2, 5, 1.0), 0, out);
    // item_pop: node 1 (0.15) − root (0.02); als: leaf 0 (0.1) − node 1 (0.15); age: −0.05 − 0.01;
    // bias: the roots 0.02 + 0.01 + the constant tree 0.011.
    expect(out[0]).toBeCloseTo(0.13, 12);
    expect(out[1]).toBeCloseTo(-0.06, 12);
    expect(out[2]).toBeCloseTo(-0.05, 12);
    expect(out[3]).toBeCloseTo(0.041, 12);
  });

  it('derives node values from leaf counts when internal_value is absent', () => {
    const m = parseLightGbmModel(FIXTURE.replace(/^internal_value=.*$/gm, ''));
    const out = new Float64Array(4);
    m.contributions(row(0.2, 5, 1.0), 0, out);
    // Tree 0 node 1 = (0.1·10 + 0.3·30) / 40 = 0.25; root = (0.25·40 − 0.2·20) / 60 = 0.1.
    expect(out[0]).toBeCloseTo(0.25 - 0.1, 12);
    expect(out[2]).toBeCloseTo(0.1 - 0.25, 12);
    expect(out.reduce((s, v) => s + v, 0)).toBeCloseTo(m.predict(row(0.2, 5, 1.0)), 12);
  });

  it('round-trips through the Cairn JSON form', () => {
    const copy = GbdtModel.fromJSON(JSON.parse(JSON.stringify(model.toJSON())));
    for (const r of [row(0.2, 5, 1), row(NaN, 0, NaN), row(0.5, 10, 3)])
      expect(copy.predict(r)).toBe(model.predict(r));
  });

  it('refuses categorical splits, multi-class and malformed files with field "model"', () => {
    expect(
      fieldOf(() => parseLightGbmModel(FIXTURE.replace('decision_type=2 10', 'decision_type=3 10'))),
    ).toBe('model');
    expect(fieldOf(() => parseLightGbmModel(FIXTURE.replace('num_cat=0', 'num_cat=1')))).toBe('model');
    expect(fieldOf(() => parseLightGbmModel(FIXTURE.replace('num_class=1', 'num_class=3')))).toBe('model');
    expect(fieldOf(() => parseLightGbmModel(FIXTURE.replace('end of trees', '')))).toBe('model');
    expect(fieldOf(() => parseLightGbmModel(FIXTURE.replace('split_feature=0 2', 'split_feature=0 7')))).toBe(
      'model',
    );
    expect(fieldOf(() => parseLightGbmModel(FIXTURE.replace('left_child=1 -1', 'left_child=1 x')))).toBe(
      'model',
    );
    expect(fieldOf(() => parseLightGbmModel('{"not": "lightgbm"}'))).toBe('model');
  });
});
