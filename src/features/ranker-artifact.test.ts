import { describe, expect, it } from 'vitest';
import { GbdtModel } from '../algorithms/gbdt.ts';
import { isCairnError } from '../errors/errors.ts';
import type { FeatureConfig } from './definitions.ts';
import { parseStoredRanker, rankerMismatch, type StoredRanker } from './ranker-artifact.ts';
import { RankingFeatures } from './ranking.ts';

const config: FeatureConfig = {
  types: { view: { weight: 1 }, purchase: { weight: 8 } },
  halfLivesDays: [1, 7, 30],
  maxSegmentsPerItem: 8,
};
const retrievers = ['als', 'pop'];
const names = [...new RankingFeatures({ config, retrievers }).names];
/** A one-split model on the first feature. */
const model = new GbdtModel(names, [
  {
    splitFeature: [0],
    threshold: [1],
    decisionType: [0],
    leftChild: [-1],
    rightChild: [-2],
    splitGain: [1],
    internalValue: [0],
    leafValue: [-1, 1],
  },
]);
const stored: StoredRanker = {
  formatVersion: 1,
  model: model.toJSON(),
  retrievers,
  featureNames: names,
  halfLivesDays: [1, 7, 30],
  candidates: 200,
  metrics: { 'ndcg@10': 0.3 },
};

function fields(value: unknown): string[] {
  try {
    parseStoredRanker(value);
  } catch (e) {
    if (isCairnError(e)) return (e.details as { fields: { field: string }[] }).fields.map((f) => f.field);
    throw e;
  }
  return [];
}

describe('stored ranker', () => {
  it('round-trips through JSON and is absent when not stored', () => {
    expect(parseStoredRanker(JSON.parse(JSON.stringify(stored)))).toEqual(stored);
    expect(parseStoredRanker(undefined)).toBeNull();
    expect(parseStoredRanker(null)).toBeNull();
  });

  it('lists every malformed field', () => {
    expect(fields('x')).toEqual(['ranker']);
    expect(
      fields({
        ...stored,
        formatVersion: 2,
        retrievers: ['a', 'a'],
        halfLivesDays: [0],
        candidates: 0,
        metrics: { x: 'y' },
      }),
    ).toEqual([
      'ranker.formatVersion',
      'ranker.retrievers',
      'ranker.halfLivesDays',
      'ranker.candidates',
      'ranker.metrics',
    ]);
    expect(fields({ ...stored, model: { format: 'other' } })).toEqual(['ranker.model']);
    expect(fields({ ...stored, featureNames: names.slice(1) })).toEqual(['ranker.featureNames']);
  });

  it('says why it cannot rank with other settings or retrievers', () => {
    expect(rankerMismatch(stored, config, ['als', 'pop', 'similar'])).toBeNull();
    expect(rankerMismatch(stored, config, ['bpr', 'pop'])).toMatch(/retriever als not available/);
    expect(rankerMismatch(stored, { ...config, halfLivesDays: [1, 30] }, retrievers)).toMatch(/half-lives/);
    const otherTypes = { ...config, types: { ...config.types, click: { weight: 2 } } };
    expect(rankerMismatch(stored, otherTypes, retrievers)).toMatch(/features stored/);
    const renamed = { ...stored, featureNames: names.map((n, i) => (i === 3 ? `${n}_v0` : n)) };
    expect(rankerMismatch(renamed, config, retrievers)).toMatch(/^feature 3 is /);
  });
});
