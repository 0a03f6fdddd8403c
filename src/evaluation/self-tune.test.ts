import { describe, expect, it } from 'vitest';
import { getAlgorithm } from '../algorithms/index.ts';
import { csrFromCoo, type Csr } from '../algorithms/sparse.ts';
import { isCairnError } from '../errors/errors.ts';
import { carveValidation, cropCsr, selfTune } from './self-tune.ts';

/** Two taste groups over 60 items; 120 users with 12 items each (weights 1..3). */
function groups(): Csr {
  const rows: number[] = [];
  const cols: number[] = [];
  const vals: number[] = [];
  for (let u = 0; u < 120; u++) {
    const base = u % 2 === 0 ? 0 : 30;
    for (let j = 0; j < 12; j++) {
      rows.push(u);
      cols.push(base + ((u * 7 + j * 11) % 30));
      vals.push(1 + (j % 3));
    }
  }
  return csrFromCoo(120, 60, rows, cols, vals);
}

function pairs(m: Csr): string[] {
  const out: string[] = [];
  for (let u = 0; u < m.rows; u++)
    for (let p = m.indptr[u]; p < m.indptr[u + 1]; p++) out.push(`${u}:${m.indices[p]}:${m.data[p]}`);
  return out;
}

describe('carveValidation', () => {
  it('partitions each user’s training pairs, weights kept, deterministic by seed', () => {
    const m = groups();
    const a = carveValidation(m, 5);
    const b = carveValidation(m, 5);
    expect(pairs(a.train)).toEqual(pairs(b.train));
    expect([...pairs(a.train), ...pairs(a.valid)].sort()).toEqual(pairs(m).sort());
    // 12 pairs at 1/8: one validation pair per user (RecBole rounding), eleven left to train on.
    for (let u = 0; u < m.rows; u++) {
      expect(a.valid.indptr[u + 1] - a.valid.indptr[u]).toBe(1);
      expect(a.train.indptr[u + 1] - a.train.indptr[u]).toBe(11);
    }
    expect(pairs(carveValidation(m, 6).valid)).not.toEqual(pairs(a.valid));
  });

  it('a user with one pair keeps it for training; two pairs give one away', () => {
    const m = csrFromCoo(2, 3, [0, 1, 1], [0, 1, 2], null);
    const { train, valid } = carveValidation(m, 1);
    expect(train.indptr[1] - train.indptr[0]).toBe(1);
    expect(valid.indptr[1] - valid.indptr[0]).toBe(0);
    expect(train.indptr[2] - train.indptr[1]).toBe(1);
    expect(valid.indptr[2] - valid.indptr[1]).toBe(1);
  });
});

describe('cropCsr', () => {
  it('keeps the leading users and items, refusing to drop stored entries', () => {
    const m = csrFromCoo(3, 4, [0, 1, 1], [0, 2, 1], null);
    const c = cropCsr(m, 2, 3);
    expect([c.rows, c.cols]).toEqual([2, 3]);
    expect(pairs(c)).toEqual(pairs(m));
    expect(() => cropCsr(m, 2, 2)).toThrow(RangeError);
  });
});

describe('selfTune', () => {
  const spec = getAlgorithm('itemknn');
  const base = { metric: { name: 'ndcg', k: 10 }, seed: 3, threads: 1 };

  it('tries the given points first (repeats dropped), then searches; returns resolved best params', async () => {
    const m = groups();
    const warm = { ...spec.defaults, neighbors: 20 };
    const r = await selfTune(spec, m, { ...base, trials: 4, initial: [warm, spec.defaults, warm] });
    expect(r.trials).toHaveLength(4);
    expect(r.trials.map((t) => t.source)).toEqual([
      'initial',
      'initial',
      expect.any(String),
      expect.any(String),
    ]);
    expect(r.trials[0].params.neighbors).toBe(20);
    expect(r.trials[1].params.neighbors).toBe(spec.defaults.neighbors);
    expect(r.trials[2].source).not.toBe('initial');
    const best = Math.max(...r.trials.map((t) => t.score));
    expect(r.best.score).toBe(best);
    expect(r.params).toEqual({ ...spec.defaults, ...r.best.params });
    expect(r.metric).toBe('ndcg@10');
    expect(r.validationUsers).toBe(120);
    // Deterministic with a seed and one thread.
    const again = await selfTune(spec, m, { ...base, trials: 4, initial: [warm, spec.defaults, warm] });
    expect(again.trials.map((t) => [t.params, t.score])).toEqual(r.trials.map((t) => [t.params, t.score]));
  });

  it('holds fixed parameters, and a zero budget runs the first point only', async () => {
    const m = groups();
    const r = await selfTune(spec, m, { ...base, trials: 5, budgetSeconds: 0, fixed: { neighbors: 30 } });
    expect(r.trials).toHaveLength(1);
    expect(r.stopReason).toBe('budget');
    expect(r.params.neighbors).toBe(30);
  });

  it('skips starting points that no longer validate', async () => {
    const r = await selfTune(spec, groups(), {
      ...base,
      trials: 1,
      initial: [{ neighbors: -3 }, spec.defaults],
    });
    expect(r.trials[0].params.neighbors).toBe(spec.defaults.neighbors);
  });

  it('refuses data with nothing to carve (CAIRN_NOT_ENOUGH_DATA)', async () => {
    const m = csrFromCoo(2, 3, [0, 1], [0, 1], null);
    const err = await selfTune(spec, m, { ...base, trials: 2 }).catch((e: unknown) => e);
    expect(isCairnError(err) && err.code).toBe('CAIRN_NOT_ENOUGH_DATA');
  });
});
