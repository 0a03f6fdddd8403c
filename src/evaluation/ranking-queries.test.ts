import { describe, expect, it } from 'vitest';
import { loadConfig } from '../config/load.ts';
import type { FeatureEvent } from '../features/definitions.ts';
import { featureConfigFor, ItemStateTimeline } from '../features/item-state.ts';
import { RankingFeatures } from '../features/ranking.ts';
import { buildQueries, type BuiltQuery, type QueryRetriever } from './ranking-queries.ts';

const config = loadConfig({ env: {} });
const features = featureConfigFor(config);
const DAY = 86_400_000;
const T0 = 1_700_000_000_000;
const itemIds = ['a', 'b', 'c', 'd'];
// Views of item c on days 1, 2 and 3; user 0 viewed a on day 0.
const events: (FeatureEvent & { user: number })[] = [
  { user: 0, itemId: 'a', type: 'view', value: null, timestamp: T0 },
  { user: 1, itemId: 'c', type: 'view', value: null, timestamp: T0 + DAY },
  { user: 1, itemId: 'c', type: 'view', value: null, timestamp: T0 + 2 * DAY },
  { user: 2, itemId: 'c', type: 'view', value: null, timestamp: T0 + 3 * DAY },
];

describe('buildQueries', () => {
  it('builds queries in time order with the given candidates, each row as of its query time', () => {
    const advanced: number[] = [];
    // Scores a > b > c > d; with 2 candidates per query its list holds a and b only.
    const fixed: QueryRetriever = {
      name: 'fixed',
      model: { scoreUser: (_u, _h, o) => o.set([4, 3, 2, 1]) },
      advanceTo: (now) => advanced.push(now),
    };
    const rf = new RankingFeatures({ config: features, retrievers: ['fixed'] });
    const nf = rf.names.length;
    const col = (name: string) => rf.names.indexOf(name);
    const empty = {
      rows: 3,
      cols: 4,
      indptr: new Int32Array(4),
      indices: new Int32Array(0),
      data: new Float32Array(0),
    };
    const seenAt: [number, number][] = [];
    const built: { index: number; at: number; items: string[]; views: number[]; rank: number[] }[] = [];
    buildQueries(
      {
        retrievers: [fixed],
        history: empty,
        exclude: [],
        itemIds,
        timeline: new ItemStateTimeline(events, features),
        userEvents: (u, at) => {
          seenAt.push([u, at]);
          return events.filter((e) => e.user === u && e.timestamp <= at).reverse();
        },
      },
      {
        users: Int32Array.from([0, 0, 0]),
        at: Float64Array.from([T0 + 3 * DAY, T0 + 1.5 * DAY, T0 + 2.5 * DAY]),
        given: [Int32Array.from([2, 1]), Int32Array.from([2, 0]), null],
      },
      rf,
      2,
      (q: BuiltQuery) =>
        built.push({
          index: q.index,
          at: q.at,
          items: Array.from(q.items.subarray(0, q.count), (i) => itemIds[i]),
          views: Array.from({ length: q.count }, (_, c) => q.rows[c * nf + col('item_count_view')]),
          rank: Array.from({ length: q.count }, (_, c) => q.rows[c * nf + col('retriever_fixed_rank')]),
        }),
    );
    expect(built.map((q) => q.index)).toEqual([1, 2, 0]);
    expect(advanced).toEqual([T0 + 1.5 * DAY, T0 + 2.5 * DAY, T0 + 3 * DAY]);
    expect(seenAt).toEqual(built.map((q) => [0, q.at]));
    // Given: their items in their order; c's views as of each time (1, then 3); a given item outside the
    // merged list keeps no rank, one inside it keeps its rank.
    expect(built[0]).toMatchObject({ items: ['c', 'a'], views: [1, 1], rank: [Number.NaN, 1] });
    expect(built[2]).toMatchObject({ items: ['c', 'b'], views: [3, 0], rank: [Number.NaN, 2] });
    // Not given: the retriever's own top two.
    expect(built[1].items).toEqual(['a', 'b']);
  });
});
