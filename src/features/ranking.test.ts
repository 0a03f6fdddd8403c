import { describe, expect, it } from 'vitest';
import {
  featureDefinitions,
  type FeatureConfig,
  type FeatureEvent,
  type ItemFeatureState,
} from './definitions.ts';
import { foldItemEvent } from './item-state.ts';
import { itemMetaOf, RankingFeatures } from './ranking.ts';

const DAY = 86_400_000;
/** 2024-01-01 (a Monday) 13:30 UTC. */
const NOW = Date.UTC(2024, 0, 1, 13, 30);

const CONFIG: FeatureConfig = {
  types: {
    view: { weight: 1 },
    click: { weight: 2 },
    purchase: { weight: 8 },
    dislike: { weight: 0, negative: true },
  },
  limits: { maxEventWeight: 10 },
  halfLivesDays: [1, 7],
  maxSegmentsPerItem: 8,
};

const ev = (itemId: string, type: string, timestamp: number, segments?: string[]): FeatureEvent => ({
  itemId,
  type,
  value: null,
  timestamp,
  segments,
});

const CATEGORIES: Record<string, string[]> = { a: ['shoes'], b: ['shoes', 'red'], c: ['hats'], x: ['shoes'] };
const PRICES: Record<string, number> = { a: 50, b: 100, c: 25, x: 400 };

function stateOf(events: FeatureEvent[]): ItemFeatureState {
  let s: ItemFeatureState | null = null;
  for (const e of events) s = foldItemEvent(s, e, CONFIG);
  return s!;
}

describe('RankingFeatures', () => {
  const rf = new RankingFeatures({ config: CONFIG, retrievers: ['als', 'popular'] });
  const col = (row: Float32Array, name: string): number => {
    const i = rf.names.indexOf(name);
    expect(i, name).toBeGreaterThanOrEqual(0);
    return row[i];
  };

  it('names the columns of the declared definitions, in order, without duplicates', () => {
    expect(rf.names).toEqual(featureDefinitions(CONFIG, ['als', 'popular']).map((d) => d.name));
    expect(new Set(rf.names).size).toBe(rf.names.length);
    expect(rf.names).toContain('retriever_als_score');
    expect(rf.names).toContain('retriever_popular_rank');
    expect(rf.names).toContain('item_decayed_7d');
    // Config key order does not change the columns.
    const reordered = {
      ...CONFIG,
      types: {
        dislike: CONFIG.types.dislike,
        purchase: CONFIG.types.purchase,
        view: CONFIG.types.view,
        click: CONFIG.types.click,
      },
    };
    expect(new RankingFeatures({ config: reordered, retrievers: ['als', 'popular'] }).names).toEqual(
      rf.names,
    );
  });

  it('writes exactly names.length values at the offset, with values computed by hand', () => {
    const history = [
      ev('b', 'purchase', NOW - DAY), // newest first
      ev('a', 'click', NOW - 2 * DAY),
      ev('a', 'view', NOW - 3 * DAY),
      ev('c', 'view', NOW - 4 * DAY),
    ];
    const user = rf.userContext(
      history,
      { segments: ['vip', 'eu'], attributes: {} },
      NOW,
      (id) => CATEGORIES[id] ?? [],
      (id) => PRICES[id] ?? null,
    );
    const state = stateOf([
      ev('x', 'view', NOW - 10 * DAY, ['vip']),
      ev('x', 'view', NOW - 2 * DAY, ['eu', 'vip']),
      ev('x', 'view', NOW - DAY),
      ev('x', 'click', NOW - DAY, ['eu']),
      ev('x', 'purchase', NOW - DAY / 2, ['other']),
    ]);
    const item = itemMetaOf({
      categories: ['shoes', 'sale'],
      attributes: { price: 300 },
      createdAt: NOW - 20 * DAY,
    });
    const n = rf.names.length;
    const out = new Float32Array(n + 4).fill(-12345);
    rf.fill(out, 2, user, 'x', state, item, new Map([['popular', { score: 3.5, rank: 2 }]]), NOW);
    expect([out[0], out[1], out[n + 2], out[n + 3]]).toEqual([-12345, -12345, -12345, -12345]);
    const row = out.subarray(2, 2 + n);
    expect(row.includes(-12345)).toBe(false);

    const f32 = (x: number): number => Math.fround(x);
    // item: decayed weight 1·2^(-10/h) + 1·2^(-2/h) + 1·2^(-1/h) + 2·2^(-1/h) + 8·2^(-0.5/h)
    const decayed = (h: number): number =>
      2 ** (-10 / h) + 2 ** (-2 / h) + 3 * 2 ** (-1 / h) + 8 * 2 ** (-0.5 / h);
    expect(col(row, 'item_decayed_1d')).toBe(f32(decayed(1)));
    expect(col(row, 'item_decayed_7d')).toBe(f32(decayed(7)));
    expect(col(row, 'item_count_view')).toBe(3);
    expect(col(row, 'item_count_purchase')).toBe(1);
    expect(col(row, 'item_count_dislike')).toBe(0);
    expect(col(row, 'item_rate_click')).toBe(f32((1 + 1) / (3 + 20)));
    expect(col(row, 'item_rate_purchase')).toBe(f32((1 + 1) / (3 + 20)));
    expect(rf.names).not.toContain('item_rate_view');
    expect(col(row, 'item_trending')).toBe(f32(decayed(1) / 1 / (decayed(7) / 7)));
    expect(col(row, 'item_age_first_seen_days')).toBe(10);
    expect(col(row, 'item_age_created_days')).toBe(20);
    expect(col(row, 'item_recency_days')).toBe(0.5);
    expect(col(row, 'item_price')).toBe(300);
    // user: 4 events, 3 items, newest 1 day ago, weights 8 + 2 + 1 + 1 = 12 over 4 events
    expect(col(row, 'user_events')).toBe(4);
    expect(col(row, 'user_distinct_items')).toBe(3);
    expect(col(row, 'user_recency_days')).toBe(1);
    expect(col(row, 'user_mean_weight')).toBe(3);
    expect(col(row, 'user_item_seen')).toBe(0);
    expect(col(row, 'user_item_interacted')).toBe(0);
    // prices of positive non-view events: b (100, purchase), a (50, click): mean log = log(√5000);
    // log2(300 / 70.71) = 2.08 → band 2.
    expect(col(row, 'user_item_price_band')).toBe(2);
    // segments: vip made 2 of the item's 5 events, eu 2: largest share 2/5
    expect(col(row, 'user_segment_item_share')).toBe(f32(2 / 5));
    // user weight 12: shoes (a: 2 + 1, b: 8) = 11, hats 1 → item categories shoes, sale: 11/12
    expect(col(row, 'user_category_share')).toBe(f32(11 / 12));
    expect(col(row, 'retriever_als_score')).toBeNaN();
    expect(col(row, 'retriever_als_rank')).toBeNaN();
    expect(col(row, 'retriever_popular_score')).toBe(3.5);
    expect(col(row, 'retriever_popular_rank')).toBe(2);
    expect(col(row, 'context_hour')).toBe(13);
    expect(col(row, 'context_day_of_week')).toBe(1);
  });

  it('marks what is missing as NaN: unknown item, new user, no catalog entry', () => {
    const user = rf.userContext([], null, NOW, () => []);
    const row = new Float32Array(rf.names.length);
    rf.fill(row, 0, user, 'zz', null, null, new Map(), NOW);
    expect(col(row, 'item_decayed_1d')).toBe(0);
    expect(col(row, 'item_count_view')).toBe(0);
    expect(col(row, 'item_rate_click')).toBe(Math.fround(1 / 20));
    for (const name of [
      'item_trending',
      'item_age_first_seen_days',
      'item_age_created_days',
      'item_recency_days',
      'item_price',
      'user_recency_days',
      'user_mean_weight',
      'user_item_price_band',
      'user_segment_item_share',
      'user_category_share',
    ]) {
      expect(col(row, name), name).toBeNaN();
    }
    expect(col(row, 'user_events')).toBe(0);
  });

  it('tells a seen item from an interacted one', () => {
    const user = rf.userContext([ev('a', 'view', NOW), ev('b', 'dislike', NOW)], null, NOW, () => []);
    const row = new Float32Array(rf.names.length);
    rf.fill(row, 0, user, 'a', null, null, new Map(), NOW);
    expect([col(row, 'user_item_seen'), col(row, 'user_item_interacted')]).toEqual([1, 1]);
    rf.fill(row, 0, user, 'b', null, null, new Map(), NOW);
    expect([col(row, 'user_item_seen'), col(row, 'user_item_interacted')]).toEqual([1, 0]);
  });

  it('computes the context of days before the epoch too', () => {
    const before = Date.UTC(1969, 11, 31, 23, 0); // a Wednesday
    const user = rf.userContext([], null, before, () => []);
    const row = new Float32Array(rf.names.length);
    rf.fill(row, 0, user, 'a', null, null, new Map(), before);
    expect([col(row, 'context_hour'), col(row, 'context_day_of_week')]).toEqual([23, 3]);
  });
});

describe('itemMetaOf', () => {
  it('reads a finite, non-negative price and ignores anything else', () => {
    const base = { categories: ['c'], createdAt: 5 };
    expect(itemMetaOf({ ...base, attributes: { price: 9.5 } })).toEqual({
      categories: ['c'],
      price: 9.5,
      createdAt: 5,
      tokens: ['c:c'],
    });
    expect(itemMetaOf({ ...base, attributes: { price: '9.5' } }).price).toBeNull();
    expect(itemMetaOf({ ...base, attributes: { price: -1 } }).price).toBeNull();
    expect(itemMetaOf({ ...base, attributes: {} }).price).toBeNull();
  });
});
