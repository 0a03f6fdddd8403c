import { describe, expect, it } from 'vitest';
import { getAlgorithm, resolveParams } from '../algorithms/index.ts';
import { loadConfig } from '../config/load.ts';
import { featureConfigFor } from '../features/item-state.ts';
import { parseStoredRanker, rankerMismatch } from '../features/ranker-artifact.ts';
import { itemMetaOf, RankingFeatures } from '../features/ranking.ts';
import type { ItemMeta } from '../features/definitions.ts';
import { generateDemoData } from '../ingest/demo-data.ts';
import { SqliteStore } from '../storage/sqlite/store.ts';
import { extractTrainingData } from './extract.ts';
import { holdoutSplit } from './holdout.ts';
import { onlineRetrievers } from '../serving/ranker.ts';
import { loggedQuery, trainRanker, type LoggedQuery, type RankerInput } from './ranker.ts';
import { Rng } from '../algorithms/random.ts';

const config = loadConfig({ env: {} });
const features = featureConfigFor(config);

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
    logged: [],
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
      extracted,
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
      extracted,
      { seed: 3, k: 10 },
    );
    expect(outcome.ranker).toBeNull();
    expect(outcome.reason).toMatch(/fewer than the 1000000/);
  });

  it('learns from logged answers what users chose among the items they saw, features as of serving time, without leaked labels', async () => {
    const { extracted, itemMeta } = await demo();
    const split = holdoutSplit(extracted.matrix, 0.2, 3);
    const spec = getAlgorithm('als');
    const model = await spec.fit(split.train, resolveParams(spec, { factors: 16, iterations: 8 }), {
      threads: 1,
      seed: 3,
    });
    const { userIds, itemIds } = extracted;
    const ts = extracted.featureEvents!.timestamp;
    const [first, last] = [Math.min(...ts), Math.max(...ts)];
    const price = (i: number) => itemMeta[itemIds[i]].price ?? 0;
    // Answers served at times inside the log: ten items each the user had not interacted with in the
    // model's training part, and the user picks the dearest (or the cheapest) of them — a choice the
    // holdout's interactions do not teach (demo shoppers buy cheaper items more often, if anything).
    const answers = (pick: 'dearest' | 'cheapest', seed: number): LoggedQuery[] => {
      const rng = new Rng(seed);
      const out: LoggedQuery[] = [];
      for (let n = 0; n < 400; n++) {
        const u = rng.int(userIds.length);
        const trained = new Set(
          split.train.indices.subarray(split.train.indptr[u], split.train.indptr[u + 1]),
        );
        const shown: number[] = [];
        while (shown.length < 10) {
          const i = rng.int(itemIds.length);
          if (!trained.has(i) && !shown.includes(i)) shown.push(i);
        }
        const best = shown.reduce((a, b) =>
          (pick === 'dearest' ? price(b) > price(a) : price(b) < price(a)) ? b : a,
        );
        out.push({
          userId: userIds[u],
          at: first + rng.float() * (last - first),
          items: shown.map((i) => itemIds[i]),
          labels: shown.map((i) => (i === best ? 1 : 0)),
        });
      }
      return out;
    };
    const run = (logged: LoggedQuery[]) =>
      trainRanker(
        input({ events: extracted.featureEvents!, itemMeta, logged }),
        split,
        model,
        'als',
        extracted,
        {
          seed: 3,
          k: 10,
        },
      ).metrics;

    for (const pick of ['dearest', 'cheapest'] as const) {
      const m = run(answers(pick, 5));
      expect(m.logged_queries + m.logged_valid_queries).toBe(400);
      expect(m.logged_leaked).toBe(0);
      // On the answers kept apart, the ranker puts the chosen item far above where it was served.
      expect(m['logged_ndcg@10'] - m['served_ndcg@10']).toBeGreaterThan(0.25);
    }

    // Labels carrying nothing: no lift to learn.
    const noise = answers('dearest', 6).map((q) => ({
      ...q,
      labels: q.labels.map((_, c) => (c === 3 ? 1 : 0)),
    }));
    const m = run(noise);
    expect(Math.abs(m['logged_ndcg@10'] - m['served_ndcg@10'])).toBeLessThan(0.25);

    // A clicked item the model was trained on leaks its label: the answer is left out, and counted.
    const u = 0;
    const trainedItem = itemIds[split.train.indices[split.train.indptr[u]]];
    const other = itemIds.find(
      (id, i) => !split.train.indices.subarray(split.train.indptr[u], split.train.indptr[u + 1]).includes(i),
    )!;
    const leak = run([{ userId: userIds[u], at: last, items: [other, trainedItem], labels: [0, 1] }]);
    expect(leak.logged_leaked).toBe(1);
    expect(leak.logged_queries ?? 0).toBe(0);
  });
});

describe('loggedQuery', () => {
  const served = (items: string[]) => ({
    requestId: 'r',
    userId: 'u',
    mode: 'served' as const,
    endpoint: 'recommendations',
    experimentId: null,
    variant: null,
    modelVersion: 'v1',
    source: 'personalized' as const,
    items: items.map((itemId, position) => ({ itemId, position, score: 1 })),
    at: 1_700_000_000_000,
  });
  const fb = (itemId: string, type: 'impression' | 'click' | 'conversion') => ({
    requestId: 'r',
    itemId,
    type,
    value: null,
    at: 1_700_000_001_000,
  });

  it('labels every served item by its best outcome, in served order', () => {
    expect(
      loggedQuery({
        served: served(['a', 'b', 'c']),
        feedback: [fb('c', 'click'), fb('b', 'conversion'), fb('b', 'click')],
      }),
    ).toEqual({
      userId: 'u',
      at: 1_700_000_000_000,
      items: ['a', 'b', 'c'],
      labels: [0, 2, 1],
    });
  });

  it('keeps only the items seen when the answer has impressions (clicked ones always), and ignores feedback on items it did not serve', () => {
    expect(
      loggedQuery({
        served: served(['a', 'b', 'c', 'd']),
        feedback: [fb('a', 'impression'), fb('c', 'click'), fb('x', 'conversion')],
      }),
    ).toMatchObject({ items: ['a', 'c'], labels: [0, 1] });
  });

  it('is null without a click or conversion on a served item', () => {
    expect(
      loggedQuery({ served: served(['a']), feedback: [fb('a', 'impression'), fb('x', 'click')] }),
    ).toBeNull();
  });
});
