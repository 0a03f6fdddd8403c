import { describe, expect, it } from 'vitest';
import { CairnError } from '../errors/errors.ts';
import { ALGORITHM_NAMES, ALGORITHMS, getAlgorithm, loadArtifact, resolveParams } from './index.ts';
import { csrFromCoo } from './sparse.ts';

function fieldOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CairnError);
    const err = e as CairnError;
    expect(err.code).toBe('CAIRN_VALIDATION');
    return (err.details as { fields: { field: string }[] }).fields[0]?.field;
  }
  return undefined;
}

describe('algorithm registry', () => {
  it('registers the five algorithms under their own names', () => {
    expect([...ALGORITHM_NAMES].sort()).toEqual(['als', 'bpr', 'ease', 'itemknn', 'pop', 'rp3beta']);
    for (const name of ALGORITHM_NAMES) {
      expect(ALGORITHMS[name].name).toBe(name);
      expect(getAlgorithm(name)).toBe(ALGORITHMS[name]);
      // Every tunable parameter has a default of a matching type, and the defaults are valid.
      for (const [key, space] of Object.entries(ALGORITHMS[name].space)) {
        const def = ALGORITHMS[name].defaults[key];
        expect(def, `${name}.${key}`).toBeDefined();
        if (space.kind !== 'choice') expect(typeof def).toBe('number');
        else expect(space.values.some((v) => typeof v === typeof def)).toBe(true);
      }
      expect(resolveParams(ALGORITHMS[name])).toEqual(ALGORITHMS[name].defaults);
    }
  });

  it('throws on an unknown algorithm', () => {
    expect(fieldOf(() => getAlgorithm('svd'))).toBe('algorithm');
    expect(() => getAlgorithm('toString')).toThrow(CairnError);
  });

  it('merges overrides into the defaults, coercing strings to the default type', () => {
    const p = resolveParams(getAlgorithm('itemknn'), { neighbors: '50', binary: 'true', weighting: 'bm25' });
    expect(p).toMatchObject({
      neighbors: 50,
      binary: true,
      weighting: 'bm25',
      shrink: ALGORITHMS.itemknn.defaults.shrink,
    });
    expect(resolveParams(getAlgorithm('als'), { factors: 32 }).factors).toBe(32);
    // A value outside the tuner's range is still allowed when the algorithm accepts it.
    expect(resolveParams(getAlgorithm('ease'), { lambda: 20_000 }).lambda).toBe(20_000);
  });

  it('names the parameter on a bad value or an unknown name', () => {
    expect(fieldOf(() => resolveParams(getAlgorithm('itemknn'), { neighbours: 5 }))).toBe(
      'itemknn.neighbours',
    );
    expect(fieldOf(() => resolveParams(getAlgorithm('itemknn'), { neighbors: 'many' }))).toBe(
      'itemknn.neighbors',
    );
    expect(fieldOf(() => resolveParams(getAlgorithm('itemknn'), { neighbors: 2.5 }))).toBe(
      'itemknn.neighbors',
    );
    expect(fieldOf(() => resolveParams(getAlgorithm('itemknn'), { weighting: 'lsa' }))).toBe(
      'itemknn.weighting',
    );
    expect(fieldOf(() => resolveParams(getAlgorithm('ease'), { lambda: -1 }))).toBe('ease.lambda');
    expect(fieldOf(() => resolveParams(getAlgorithm('ease'), { binary: 'maybe' }))).toBe('ease.binary');
    expect(fieldOf(() => resolveParams(getAlgorithm('als'), { factors: 0 }))).toBe('als.factors');
    expect(fieldOf(() => resolveParams(getAlgorithm('pop'), { by: 3 }))).toBe('pop.by');
  });

  it('loads an artifact through the spec of its algorithm', async () => {
    const m = csrFromCoo(3, 3, [0, 0, 1, 2], [0, 1, 1, 2], null);
    for (const name of ['pop', 'itemknn', 'ease', 'rp3beta'] as const) {
      const model = await getAlgorithm(name).fit(m, resolveParams(getAlgorithm(name)), {
        threads: 1,
        seed: 1,
      });
      const loaded = loadArtifact(model.toArtifact());
      expect(loaded.algorithm).toBe(name);
      const h = { items: Int32Array.of(1), weights: Float32Array.of(1) };
      const a = new Float32Array(3);
      const b = new Float32Array(3);
      model.scoreUser(0, h, a);
      loaded.scoreUser(0, h, b);
      expect(b).toEqual(a);
    }
    expect(() =>
      loadArtifact({ algorithm: 'nope' as 'pop', formatVersion: 1, params: {}, meta: {}, arrays: {} }),
    ).toThrow(CairnError);
  });
});
