import { describe, expect, it } from 'vitest';
import { buildUserProfile, decayFactor, interactionWeight, pairWeight } from './interactions.ts';
import type { CairnEvent } from '../domain/types.ts';

const types = {
  view: { weight: 1 },
  purchase: { weight: 8 },
  rating: { weight: 1, useValue: true, minValue: 3 },
  dislike: { weight: 0, negative: true },
};

const ev = (itemId: string, type: string, timestamp: number, value: number | null = null): CairnEvent => ({
  eventId: `${itemId}-${type}-${timestamp}`,
  userId: 'u',
  itemId,
  type,
  value,
  timestamp,
  context: null,
});

describe('interactionWeight', () => {
  it('uses the type weight, the value for value types, and flags negatives', () => {
    expect(interactionWeight(types, { type: 'purchase', value: null })).toEqual({
      weight: 8,
      negative: false,
    });
    expect(interactionWeight(types, { type: 'rating', value: 4 })).toEqual({ weight: 4, negative: false });
    expect(interactionWeight(types, { type: 'rating', value: 2 })).toEqual({ weight: 0, negative: false });
    expect(interactionWeight(types, { type: 'dislike', value: null })).toEqual({ weight: 0, negative: true });
    expect(interactionWeight(types, { type: 'unknown', value: null })).toEqual({
      weight: 0,
      negative: false,
    });
  });
});

describe('abuse limits', () => {
  const limits = { maxEventWeight: 10, maxUserItemWeight: 16 };

  it('clamps one event to maxEventWeight, and a weight that is not finite to it (or to nothing)', () => {
    expect(interactionWeight(types, { type: 'rating', value: 1e308 }, limits).weight).toBe(10);
    expect(interactionWeight(types, { type: 'rating', value: 7 }, limits).weight).toBe(7);
    expect(interactionWeight(types, { type: 'rating', value: Infinity }, limits).weight).toBe(10);
    expect(interactionWeight(types, { type: 'rating', value: Infinity }).weight).toBe(0);
    expect(interactionWeight(types, { type: 'rating', value: 1e308 }).weight).toBe(1e308);
    expect(interactionWeight(types, { type: 'dislike', value: null }, limits)).toEqual({
      weight: 0,
      negative: true,
    });
  });

  it("caps a user's summed weight on one item at maxUserItemWeight", () => {
    expect(pairWeight(40, limits)).toBe(16);
    expect(pairWeight(9, limits)).toBe(9);
    expect(pairWeight(40)).toBe(40);
    const events = [
      ...Array.from({ length: 1000 }, (_, i) => ev('a', 'purchase', i)),
      ev('b', 'rating', 2000, 1e308),
      ev('c', 'view', 2001),
    ];
    const p = buildUserProfile(types, events, limits);
    expect(Object.fromEntries(p.positives)).toEqual({ a: 16, b: 10, c: 1 });
    expect(buildUserProfile(types, events).positives.get('a')).toBe(8000);
  });
});

describe('buildUserProfile', () => {
  it('sums positives, lets a negative override earlier positives, orders recent items', () => {
    const p = buildUserProfile(types, [
      ev('a', 'view', 1),
      ev('a', 'purchase', 5),
      ev('b', 'view', 3),
      ev('c', 'view', 2),
      ev('c', 'dislike', 4),
      ev('d', 'rating', 6, 1),
    ]);
    expect(Object.fromEntries(p.positives)).toEqual({ a: 9, b: 1 });
    expect([...p.negatives]).toEqual(['c']);
    expect([...p.seen].sort()).toEqual(['a', 'b', 'c', 'd']);
    expect(p.recent).toEqual(['a', 'b']);
    expect(p.lastEventAt).toBe(6);
    expect(Object.fromEntries(p.strongestType)).toEqual({ a: 'purchase', b: 'view' });
  });
});

describe('shown-only types', () => {
  it('an impression neither counts as seen nor as a positive; a view of the same item does', () => {
    const withImpressions = { ...types, impression: { weight: 0, shownOnly: true } };
    const shown = buildUserProfile(withImpressions, [ev('a', 'impression', 2), ev('b', 'view', 1)]);
    expect([...shown.seen]).toEqual(['b']);
    expect(shown.positives.has('a')).toBe(false);
    const viewed = buildUserProfile(withImpressions, [ev('a', 'impression', 2), ev('a', 'view', 3)]);
    expect(viewed.seen.has('a')).toBe(true);
  });
});

describe('decayFactor', () => {
  it('halves every half-life and is 1 without decay', () => {
    expect(decayFactor(7 * 86_400_000, 7)).toBeCloseTo(0.5, 12);
    expect(decayFactor(14 * 86_400_000, 7)).toBeCloseTo(0.25, 12);
    expect(decayFactor(123, 0)).toBe(1);
  });
});
