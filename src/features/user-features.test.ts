import { describe, expect, it } from 'vitest';
import type { FeatureConfig, FeatureEvent } from './definitions.ts';
import { buildUserContext, userEventsAt } from './user-features.ts';

const DAY = 86_400_000;
const T = 1_700_000_000_000;
const CONFIG: Pick<FeatureConfig, 'types' | 'limits'> = {
  types: { view: { weight: 1 }, purchase: { weight: 8 }, rating: { weight: 1, useValue: true } },
  limits: { maxEventWeight: 5 },
};
const ev = (
  seq: number,
  itemId: string,
  type: string,
  timestamp: number,
  value: number | null = null,
): FeatureEvent => ({
  seq,
  itemId,
  type,
  value,
  timestamp,
});

describe('userEventsAt', () => {
  it('keeps events at or before the time, newest first by timestamp then seq, at most `limit`', () => {
    const events = [
      ev(1, 'a', 'view', T),
      ev(2, 'b', 'view', T + 5),
      ev(3, 'c', 'view', T + 5),
      ev(4, 'd', 'view', T + 9),
      ev(5, 'e', 'view', T + 1),
    ];
    expect(userEventsAt(events, T + 5, 10).map((e) => e.seq)).toEqual([3, 2, 5, 1]);
    expect(userEventsAt(events, T + 5, 2).map((e) => e.seq)).toEqual([3, 2]);
    expect(userEventsAt(events, T - 1, 10)).toEqual([]);
    expect(userEventsAt(events, T + 100, 0)).toEqual([]);
  });
});

describe('buildUserContext', () => {
  it('summarises the history with the training weights (clamped)', () => {
    const history = [
      ev(3, 'b', 'purchase', T + 2 * DAY),
      ev(2, 'a', 'rating', T + DAY, 4),
      ev(1, 'a', 'view', T),
    ];
    const u = buildUserContext(history, { segments: ['s'], attributes: {} }, T + 3 * DAY, CONFIG, (id) =>
      id === 'a' ? ['x', 'y'] : ['y'],
    );
    expect(u.events).toBe(3);
    expect(u.distinctItems).toBe(2);
    expect(u.recencyDays).toBe(1);
    expect(u.meanWeight).toBe((5 + 4 + 1) / 3); // purchase clamped to 5
    expect(u.totalWeight).toBe(10);
    expect(u.itemWeights.get('a')).toBe(5);
    expect(u.categoryShares.get('x')).toBe(0.5);
    expect(u.categoryShares.get('y')).toBe(1);
    expect(u.segments).toEqual(['s']);
    expect(u.meanLogPrice).toBeNaN(); // no prices given
    // The order of the history does not matter.
    const reversed = buildUserContext([...history].reverse(), null, T + 3 * DAY, CONFIG, (id) =>
      id === 'a' ? ['x', 'y'] : ['y'],
    );
    expect([reversed.meanWeight, reversed.recencyDays, [...reversed.categoryShares].sort()]).toEqual([
      u.meanWeight,
      u.recencyDays,
      [...u.categoryShares].sort(),
    ]);
  });

  it('averages log prices of positive non-view events only', () => {
    const history = [ev(2, 'b', 'purchase', T), ev(1, 'a', 'view', T)];
    const u = buildUserContext(
      history,
      null,
      T,
      CONFIG,
      () => [],
      (id) => (id === 'a' ? 1000 : 20),
    );
    expect(u.meanLogPrice).toBe(Math.log(20));
  });
});
