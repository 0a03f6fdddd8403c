import { describe, expect, it } from 'vitest';
import { csrFromCoo, type Csr } from '../algorithms/sparse.ts';
import type { AlgorithmSpec, FitOptions, FittedModel, Params, UserHistory } from '../algorithms/types.ts';
import { evaluateAlgorithm, evaluateModel } from './evaluator.ts';
import { evaluateHoldout } from './holdout.ts';
import type { Split } from './splits.ts';

const lg = Math.log2;

function csr(rows: number, cols: number, entries: [number, number][]): Csr {
  return csrFromCoo(
    rows,
    cols,
    entries.map((e) => e[0]),
    entries.map((e) => e[1]),
    null,
  );
}

/** A test-only model: fixed scores per user; it records the histories it was given. */
class FixedModel implements FittedModel {
  readonly algorithm = 'pop' as const;
  readonly nUsers: number;
  readonly nItems: number;
  readonly histories = new Map<number, number[]>();
  constructor(
    readonly params: Params,
    private readonly table: number[][],
  ) {
    this.nUsers = table.length;
    this.nItems = table[0].length;
  }
  scoreUser(user: number, history: UserHistory, out: Float32Array): void {
    this.histories.set(user, Array.from(history.items));
    out.set(this.table[user]);
  }
  scoreItems(user: number, _history: UserHistory, items: Int32Array, out: Float32Array): void {
    for (let j = 0; j < items.length; j++) out[j] = this.table[user][items[j]];
  }
  similarItems(): boolean {
    return false;
  }
  toArtifact(): never {
    throw new Error('not needed');
  }
}

// 3 users × 5 items. User 2 has no test pair; user 1 no validation pair.
const split: Split = {
  protocol: 'random-holdout',
  train: csr(3, 5, [
    [0, 0],
    [1, 1],
    [1, 2],
  ]),
  valid: csr(3, 5, [
    [0, 1],
    [2, 4],
  ]),
  test: csr(3, 5, [
    [0, 2],
    [1, 3],
  ]),
};
const table = [
  [5, 4, 3, 2, 1],
  [1, 2, 3, 4, 5],
  [0, 0, 0, 0, 9],
];

describe('evaluateModel', () => {
  it('on test: excludes train and valid items, averages over users with test pairs', () => {
    const model = new FixedModel({}, table);
    const r = evaluateModel(model, split.train, split.test, [split.train, split.valid], 2);
    // u0: candidates 2,3,4 → top-2 [2,3], test {2} at rank 1. u1: candidates 0,3,4 → [4,3], test {3} at rank 2.
    expect(r.users).toBe(2);
    expect(r.metrics['hit@2']).toBe(1);
    expect(r.metrics['mrr@2']).toBeCloseTo((1 + 1 / 2) / 2, 12);
    expect(r.metrics['ndcg@2']).toBeCloseTo((1 + 1 / lg(3)) / 2, 12);
    expect(r.metrics['precision@2']).toBeCloseTo(0.5, 12);
    expect(r.metrics['recall@2']).toBe(1);
    expect(r.metrics['map@2']).toBeCloseTo((1 + 1 / 2) / 2, 12);
    expect(r.metrics['coverage@2']).toBeCloseTo(3 / 5, 12);
    // Models see the training row as the user's history, and users without test pairs are not scored.
    expect(model.histories).toEqual(
      new Map([
        [0, [0]],
        [1, [1, 2]],
      ]),
    );
  });

  it('on valid: excludes train items only', () => {
    const r = evaluateModel(new FixedModel({}, table), split.train, split.valid, [split.train], 1);
    // u0: item 0 excluded → item 1 first, which is its validation item; u2: item 4 first.
    expect(r.users).toBe(2);
    expect(r.metrics['ndcg@1']).toBe(1);
    expect(r.metrics['coverage@1']).toBeCloseTo(2 / 5, 12);
  });

  it('without exclusion, a seen item takes the slot (the exclusion is what the first test measures)', () => {
    const r = evaluateModel(new FixedModel({}, table), split.train, split.test, [], 1);
    // u0 gets item 0 (train), u1 item 4: no hit.
    expect(r.metrics['hit@1']).toBe(0);
  });
});

describe('evaluateAlgorithm', () => {
  it('fits on train with the given options and reports the fit time apart from scoring', async () => {
    const calls: { train: Csr; params: Params; opts: FitOptions }[] = [];
    const spec: AlgorithmSpec = {
      name: 'pop',
      defaults: {},
      space: {},
      fit: async (train, params, opts) => {
        calls.push({ train, params, opts });
        await new Promise((r) => setTimeout(r, 30));
        return new FixedModel(params, table);
      },
      load: () => {
        throw new Error('not needed');
      },
    };
    const stages: string[] = [];
    const r = await evaluateAlgorithm(spec, { alpha: 1 }, split, {
      k: 2,
      target: 'test',
      threads: 2,
      seed: 9,
      onProgress: (_f, stage) => stages.push(stage),
    });
    expect(calls).toHaveLength(1);
    expect(calls[0].train).toBe(split.train);
    expect(calls[0].opts).toMatchObject({ threads: 2, seed: 9 });
    expect(r.params).toEqual({ alpha: 1 });
    expect(r.trainSeconds).toBeGreaterThanOrEqual(0.02);
    expect(r.metrics['hit@2']).toBe(1);
    expect(stages).toContain('scoring');
    const valid = await evaluateAlgorithm(spec, {}, split, { k: 1, target: 'valid', threads: 1, seed: 9 });
    expect(valid.metrics['ndcg@1']).toBe(1);
  });
});

describe('evaluateHoldout', () => {
  it('measures held-out item lists like evaluateModel with train items excluded', () => {
    const test = { indptr: Int32Array.from([0, 1, 2, 2]), items: Int32Array.from([2, 3]) };
    const m = evaluateHoldout(new FixedModel({}, table), split.train, test, 2);
    // u0: item 0 excluded → [1, 2], hit at rank 2; u1: [4, 3], hit at rank 2.
    expect(m['ndcg@2']).toBeCloseTo(1 / lg(3), 12);
    expect(m['hit@2']).toBe(1);
    expect(m['coverage@2']).toBeCloseTo(4 / 5, 12);
  });
});
