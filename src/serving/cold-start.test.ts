import { describe, expect, it } from 'vitest';
import { loadConfig } from '../config/load.ts';
import type { ItemFeatureState } from '../features/definitions.ts';
import { LIFT_PRIOR, rankColdStart, userValues } from './cold-start.ts';

const types = loadConfig({ env: {} }).events.types;

function state(
  counts: Record<string, number>,
  segments: Record<string, Record<string, number>> = {},
): ItemFeatureState {
  return { firstSeen: 0, lastSeen: 0, counts, decayed: [0], reference: 0, segments };
}

const candidate = (itemId: string, popularity: number, categories: string[] = [], attributes = {}) => ({
  itemId,
  popularity,
  categories,
  attributes,
});

describe('rankColdStart', () => {
  it('lifts items a segment over-buys, smoothed by the prior, and names the segment', () => {
    const ranked = rankColdStart(
      { segments: ['vip'], attributes: {} },
      [candidate('a', 100), candidate('b', 20), candidate('c', 20)],
      [
        state({ purchase: 100 }, { vip: { purchase: 5 } }),
        state({ purchase: 20 }, { vip: { purchase: 20 } }),
        state({ purchase: 20 }, { vip: { purchase: 1 } }),
      ],
      types,
    );
    expect(ranked.map((r) => r.itemId)).toEqual(['b', 'a', 'c']);
    // Interactions are weighed by their type's weight; the prior is in the same (weighted) units.
    const w = types.purchase.weight;
    const base = 26 / 140;
    const lift = (20 * w + LIFT_PRIOR * base) / (20 * w + LIFT_PRIOR) / base;
    expect(ranked[0].features[1].name).toBe('segment_lift:vip');
    expect(ranked[0].features[1].value).toBeCloseTo(lift, 12);
    expect(ranked[0].features[1].contribution).toBeCloseTo(Math.log(lift), 12);
    expect(ranked[0].reason).toBe('Popular with customers in segment vip');
    expect(ranked[1].reason).toBeNull();
  });

  it('matches attribute values to categories and to the same key, case-insensitively; negative types weigh nothing', () => {
    const ranked = rankColdStart(
      { segments: [], attributes: { brand: ['ACME'], mood: 42 } },
      [candidate('x', 50), candidate('y', 10, [], { brand: 'Acme ' }), candidate('z', 10, ['acme'])],
      [null, null, null],
      types,
    );
    expect(ranked.map((r) => [r.itemId, r.reason])).toEqual([
      ['y', 'Matches your interest in Acme'],
      ['z', 'Matches your interest in acme'],
      ['x', null],
    ]);
    expect(userValues({ attributes: { brand: ['ACME'], mood: 42, empty: ' ' } })).toEqual([
      { key: 'brand', match: 'acme' },
    ]);
    // A dislike is not interest: the segment's dislikes do not lift the item.
    const disliked = rankColdStart(
      { segments: ['vip'], attributes: {} },
      [candidate('a', 10), candidate('b', 10)],
      [
        state({ purchase: 10 }, { vip: { purchase: 2 } }),
        state({ dislike: 50, purchase: 10 }, { vip: { dislike: 50, purchase: 2 } }),
      ],
      types,
    );
    expect(disliked[0].features[1].value).toBeCloseTo(disliked[1].features[1].value!, 12);
  });

  it('leaves out items with no popularity, and ranks by popularity alone with nothing known', () => {
    const ranked = rankColdStart(
      { segments: ['s'], attributes: {} },
      [candidate('a', 0), candidate('b', 3), candidate('c', 7)],
      [null, null, null],
      types,
    );
    expect(ranked.map((r) => r.itemId)).toEqual(['c', 'b']);
    for (const r of ranked)
      expect(r.features.reduce((a, f) => a + f.contribution, 0)).toBeCloseTo(r.score, 12);
  });
});
