import { describe, expect, it } from 'vitest';
import { buildUserProfile, decayFactor, interactionWeight } from './interactions.ts';
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

describe('decayFactor', () => {
  it('halves every half-life and is 1 without decay', () => {
    expect(decayFactor(7 * 86_400_000, 7)).toBeCloseTo(0.5, 12);
    expect(decayFactor(14 * 86_400_000, 7)).toBeCloseTo(0.25, 12);
    expect(decayFactor(123, 0)).toBe(1);
  });
});
