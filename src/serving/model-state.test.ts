import { describe, expect, it } from 'vitest';
import { getAlgorithm, resolveParams } from '../algorithms/index.ts';
import { csrFromCoo } from '../algorithms/sparse.ts';
import type { FittedModel } from '../algorithms/types.ts';
import type { ModelVersion } from '../domain/types.ts';
import { ServingModel, SIMILAR_ROWS_BYTES } from './model-state.ts';

const version = { version: 'v1', algorithm: 'als' } as ModelVersion;

/** A trained ALS model whose similarItems calls are counted. */
async function counted(nItems: number) {
  const rows: number[] = [];
  const cols: number[] = [];
  for (let u = 0; u < 40; u++)
    for (let j = 0; j < 6; j++) {
      rows.push(u);
      cols.push((u * 3 + j * 7) % nItems);
    }
  const spec = getAlgorithm('als');
  const model = await spec.fit(
    csrFromCoo(40, nItems, rows, cols, null),
    resolveParams(spec, { factors: 8 }),
    {
      threads: 1,
      seed: 1,
    },
  );
  const calls: number[] = [];
  const wrapped: FittedModel = Object.create(model, {
    similarItems: {
      value: (item: number, out: Float32Array) => {
        calls.push(item);
        return model.similarItems(item, out);
      },
    },
  }) as FittedModel;
  const ids = Array.from({ length: nItems }, (_, i) => `i${i}`);
  return { model, calls, sm: new ServingModel(version, wrapped, [], ids, 0) };
}

describe('ServingModel.similarItems', () => {
  it('answers what the model answers, computing each item’s row once', async () => {
    const { model, calls, sm } = await counted(30);
    const expected = new Float32Array(30);
    const got = new Float32Array(30);
    for (const item of [3, 7, 3, 3, 7, 12]) {
      model.similarItems(item, expected);
      got.fill(-9);
      expect(sm.similarItems(item, got)).toBe(true);
      expect(got).toEqual(expected);
    }
    expect(calls).toEqual([3, 7, 12]);
    expect(sm.similarItems(99, got)).toBe(false); // out of range: no row, remembered as none
    expect(sm.similarItems(99, got)).toBe(false);
    expect(calls).toEqual([3, 7, 12, 99]);
  });

  it('keeps at most SIMILAR_ROWS_BYTES of rows, dropping the least recently used', () => {
    // Rows of 4 × 600,000 bytes: 13 fit in 32 MiB.
    const nItems = 600_000;
    const ids = Array.from({ length: nItems }, (_, i) => `i${i}`);
    const calls: number[] = [];
    const fake = {
      similarItems: (item: number, out: Float32Array) => {
        calls.push(item);
        out.fill(item);
        return true;
      },
    } as unknown as FittedModel;
    const sm = new ServingModel(version, fake, [], ids, 0);
    const fit = Math.floor(SIMILAR_ROWS_BYTES / (4 * nItems));
    const out = new Float32Array(nItems);
    for (let item = 0; item < fit; item++) sm.similarItems(item, out);
    sm.similarItems(0, out); // 0 is now the most recent; 1 the least
    sm.similarItems(fit, out); // one more: 1 goes
    calls.length = 0;
    sm.similarItems(0, out);
    sm.similarItems(fit, out);
    expect(calls).toEqual([]);
    sm.similarItems(1, out);
    expect(calls).toEqual([1]);
    expect(out[0]).toBe(1);
  });
});
