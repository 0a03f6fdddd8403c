/**
 * What the recommender promises about what it hands out, whatever the model and the popularity say:
 * every score is a finite number, and only catalog items are popular. The model here is a stand-in that
 * writes Infinity and NaN (a model trained on absurd weights does); the online state, catalog and popular
 * list are the real ones.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FittedModel } from '../algorithms/types.ts';
import { loadConfig } from '../config/load.ts';
import { systemContext } from '../domain/context.ts';
import type { Item, ModelVersion, RecommendedItem, StoredEvent } from '../domain/types.ts';
import { createLogger } from '../monitoring/logger.ts';
import { createMetrics } from '../monitoring/metrics.ts';
import { MemoryOnlineState } from '../storage/memory/online-state.ts';
import { CatalogView } from './catalog.ts';
import { ServingModel } from './model-state.ts';
import { PopularList } from './popular.ts';
import { Recommender } from './recommender.ts';
import { onlineView } from '../../test/fixtures/serving-world.ts';

const NOW = 1_700_000_000_000;
const XSS = '<img src=x onerror=alert(1)>';
/** The model's items; `e` is what the user bought. */
const MODEL_ITEMS = ['a', 'b', 'c', 'd', 'e', 'f'];
/** What the stand-in model scores: the first two and the last are not finite. */
const SCORES = [Infinity, NaN, 3, 2, 1, -Infinity];

/** A model that answers with the scores above, for users and for item-to-item alike. */
function brokenModel(): FittedModel {
  const fill = (out: Float32Array) => out.set(SCORES);
  return {
    algorithm: 'als',
    params: {},
    nUsers: 1,
    nItems: MODEL_ITEMS.length,
    scoreUser: (_user, _history, out) => fill(out),
    scoreItems: (_user, _history, items, out) => {
      for (let j = 0; j < items.length; j++) out[j] = SCORES[items[j]];
    },
    similarItems: (_item, out) => {
      fill(out);
      return true;
    },
    itemSimilarity: () => 1,
    toArtifact: () => {
      throw new Error('not stored');
    },
  };
}

const version: ModelVersion = {
  version: 'v-broken',
  algorithm: 'als',
  params: {},
  status: 'champion',
  trainingData: { users: 1, items: MODEL_ITEMS.length, interactions: 1, events: 1, lastEventSeq: 0 },
  metrics: {},
  trainSeconds: 0,
  artifactPath: 'models/v-broken.cairn',
  checksum: '',
  configHash: '',
  parentVersion: null,
  createdAt: NOW,
  promotedAt: NOW,
  error: null,
  lineage: null,
};

const item = (id: string, categories: string[]): Item => ({
  id,
  categories,
  attributes: {},
  available: true,
  createdAt: 1,
  updatedAt: 1,
});

let seq = 0;
const purchase = (userId: string, itemId: string): StoredEvent => ({
  seq: ++seq,
  eventId: `e${seq}`,
  userId,
  itemId,
  type: 'purchase',
  value: null,
  timestamp: NOW - 1000,
  context: null,
});

describe('Recommender output', () => {
  let online: MemoryOnlineState;
  let recommender: Recommender;
  /** A cached answer to hand out for every key (null: the real cache). */
  let planted: string | null;

  beforeEach(async () => {
    seq = 0;
    planted = null;
    const config = loadConfig({ env: {}, overrides: { serving: { cacheTtlSeconds: 60 } } });
    online = new MemoryOnlineState({
      types: config.events.types,
      popularityHalfLifeDays: config.serving.popularityHalfLifeDays,
      historyLimit: config.serving.historyLimit,
    });
    // The id outside the catalog is by far the most popular; catalog items a, b, c follow.
    const events: StoredEvent[] = [];
    for (let u = 0; u < 50; u++) events.push(purchase(`bot${u}`, XSS));
    for (const [id, n] of [
      ['a', 5],
      ['b', 4],
      ['c', 3],
    ] as const)
      for (let u = 0; u < n; u++) events.push(purchase(`p${u}`, id));
    events.push(purchase('u1', 'e'));
    await online.applyEvents(events);
    const catalog = new CatalogView();
    catalog.upsert(MODEL_ITEMS.map((id) => item(id, id < 'd' ? ['c1'] : ['c2'])));
    const champion = new ServingModel(version, brokenModel(), ['u1'], MODEL_ITEMS, Number.MAX_SAFE_INTEGER);
    recommender = new Recommender({
      config,
      online: onlineView(online, {
        cacheGet: async (u, key) => planted ?? (await online.cacheGet(u, key)),
      }),
      catalog,
      popular: new PopularList(online, 1000, 0, () => NOW),
      metrics: createMetrics({ defaultMetrics: false }),
      logger: createLogger('silent'),
      champion: () => champion,
      now: () => NOW,
    });
  });

  afterEach(async () => {
    await online.close();
  });

  const finite = (items: RecommendedItem[]) => items.every((it) => Number.isFinite(it.score));
  const ids = (items: RecommendedItem[]) => items.map((it) => it.itemId);

  it('never hands out a score that is not a finite number, from any link of the chain', async () => {
    const ctx = systemContext();
    const personal = await recommender.recommend(ctx, { userId: 'u1', k: 6 });
    expect(personal.source).toBe('personalized');
    expect(ids(personal.items).slice(0, 2)).toEqual(['c', 'd']); // a, b, f score non-finite; e was bought
    const answers = [
      personal.items,
      (await recommender.recommend(ctx, { userId: 'u1', k: 6, category: 'c1' })).items,
      (await recommender.recommend(ctx, { userId: 'newcomer', k: 6 })).items,
      (await recommender.similar(ctx, 'e', { k: 6 })).items,
      (await recommender.popular(ctx, { k: 6 })).items,
    ];
    for (const items of answers) {
      expect(items.length).toBeGreaterThan(0);
      expect(finite(items), JSON.stringify(items)).toBe(true);
    }
  });

  it('recomputes a cached answer holding a score that is not a number instead of serving it', async () => {
    const ctx = systemContext();
    const first = await recommender.recommend(ctx, { userId: 'u1', k: 3 });
    // What an older process could have cached: JSON turns Infinity into null.
    planted = JSON.stringify({ seq, items: [{ itemId: 'a', score: null, reason: 'cached' }] });
    const again = await recommender.recommend(ctx, { userId: 'u1', k: 3 });
    expect(again.items).toEqual(first.items);
    expect(finite(again.items)).toBe(true);
  });

  it('lists only catalog items as popular, however popular an id outside it is', async () => {
    const ctx = systemContext();
    expect((await online.popular(0, 1, NOW))[0].itemId).toBe(XSS);
    const popular = await recommender.popular(ctx, { k: 3 });
    expect(ids(popular.items)).toEqual(['a', 'b', 'c']);
    const coldStart = await recommender.recommend(ctx, { userId: 'newcomer', k: 3 });
    expect(coldStart.fallbackReason).toBe('cold_start_user');
    expect(ids(coldStart.items)).toEqual(['a', 'b', 'c']);
    expect(ids((await recommender.popular(ctx, { k: 10, category: 'c1' })).items)).toEqual(['a', 'b', 'c']);
  });
});
