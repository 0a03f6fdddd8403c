import { describe, expect, it } from 'vitest';
import { getAlgorithm, resolveParams } from '../algorithms/index.ts';
import { loadConfig } from '../config/load.ts';
import { featureConfigOf } from '../features/item-state.ts';
import { parseStoredRanker, rankerMismatch } from '../features/ranker-artifact.ts';
import { itemMetaOf, RankingFeatures } from '../features/ranking.ts';
import type { ItemMeta } from '../features/definitions.ts';
import { generateDemoData } from '../ingest/demo-data.ts';
import { SqliteStore } from '../storage/sqlite/store.ts';
import { extractTrainingData } from './extract.ts';
import { holdoutSplit } from './holdout.ts';
import { onlineRetrievers } from '../serving/ranker.ts';
import { trainRanker, type RankerInput } from './ranker.ts';

const config = loadConfig({ env: {} });
const features = featureConfigOf({
  types: config.events.types,
  maxEventWeight: config.events.maxEventWeight,
  maxUserItemWeight: config.events.maxUserItemWeight,
  features: config.features,
});

async function demo() {
  const store = new SqliteStore({ path: ':memory:' });
  await store.migrate();
  const data = generateDemoData({ users: 300, items: 120, events: 12_000, seed: 11, categories: 6 });
  await store.events.append(
    [...data.events()].map((e) => ({
      eventId: e.event_id,
      userId: e.user_id,
      itemId: e.item_id,
      type: e.type,
      value: e.value ?? null,
      timestamp: e.timestamp,
      context: null,
    })),
  );
  const extracted = await extractTrainingData(store.events, config.events.types, {
    limits: config.events,
    featureEvents: true,
  });
  await store.close();
  const itemMeta: Record<string, ItemMeta> = {};
  for (const item of data.items) itemMeta[item.id] = itemMetaOf({ ...item, createdAt: item.created_at });
  return { extracted, itemMeta };
}

const input = (over: Partial<RankerInput>, base: Omit<RankerInput, 'events' | 'itemMeta'> = defaults()) =>
  ({ ...base, ...over }) as RankerInput;

function defaults(): Omit<RankerInput, 'events' | 'itemMeta'> {
  return {
    features,
    historyLimit: config.serving.historyLimit,
    popularityHalfLifeDays: config.serving.popularityHalfLifeDays,
    candidates: 50,
    negatives: 20,
    extraRetrievers: ['trending', 'category', 'similar', 'content'],
    recentItems: config.serving.recentItems,
    maxQueries: 1000,
    minQueries: 10,
    validShare: 0.3,
    lambdaMart: { ...config.ranking.lambdaMart, trees: 60, seed: 1 },
  };
}

describe('trainRanker', () => {
  it('learns from the holdout, measures itself against the model on users kept apart, and stores what serving needs', async () => {
    const { extracted, itemMeta } = await demo();
    expect(extracted.featureEvents!.user.length).toBe(extracted.events);
    const split = holdoutSplit(extracted.matrix, 0.2, 3);
    const spec = getAlgorithm('als');
    const model = await spec.fit(split.train, resolveParams(spec, { factors: 16, iterations: 8 }), {
      threads: 1,
      seed: 3,
    });
    const outcome = trainRanker(
      input({ events: extracted.featureEvents!, itemMeta }),
      split,
      model,
      'als',
      extracted.itemIds,
      { seed: 3, k: 10 },
    );
    expect(outcome.queries).toBeGreaterThan(10);
    expect(outcome.metrics['ndcg@10']).toBeGreaterThan(0);
    expect(outcome.metrics['model_ndcg@10']).toBeGreaterThan(0);
    // Shipped exactly when it beat the model on the users kept apart.
    expect(outcome.ranker !== null).toBe(outcome.metrics['ndcg@10'] > outcome.metrics['model_ndcg@10']);
    if (outcome.ranker) {
      const stored = parseStoredRanker(JSON.parse(JSON.stringify(outcome.ranker)))!;
      const retrievers = ['als', 'pop', 'trending', 'category', 'similar', 'content'];
      expect(stored.retrievers).toEqual(retrievers);
      expect(stored.featureNames).toEqual(new RankingFeatures({ config: features, retrievers }).names);
      // Serving (the same feature settings and what it provides for an ALS model) can use it as stored.
      expect(rankerMismatch(stored, features, onlineRetrievers('als'))).toBeNull();
      expect(rankerMismatch(stored, features, ['als', 'pop', 'similar'])).toMatch(/trending/);
    } else {
      expect(outcome.reason).toMatch(/does not beat/);
    }
  });

  it('learns nothing from too few queries, and says so', async () => {
    const { extracted, itemMeta } = await demo();
    const split = holdoutSplit(extracted.matrix, 0.2, 3);
    const model = await getAlgorithm('pop').fit(split.train, {}, { threads: 1, seed: 1 });
    const outcome = trainRanker(
      input({ events: extracted.featureEvents!, itemMeta, minQueries: 1e6 }),
      split,
      model,
      'itemknn',
      extracted.itemIds,
      { seed: 3, k: 10 },
    );
    expect(outcome.ranker).toBeNull();
    expect(outcome.reason).toMatch(/fewer than the 1000000/);
  });
});
