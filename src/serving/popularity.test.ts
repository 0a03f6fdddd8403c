import { describe, expect, it } from 'vitest';
import { PopularityTracker } from './popularity.ts';

const DAY = 86_400_000;
const types = { view: { weight: 1 }, purchase: { weight: 8 }, dislike: { weight: 0, negative: true } };
const e = (itemId: string, type: string, timestamp: number) => ({ itemId, type, value: null, timestamp });

describe('PopularityTracker', () => {
  it('sums decayed weights exactly as hand-computed', () => {
    const t = new PopularityTracker(types, 7, 0);
    const now = 100 * DAY;
    t.add([
      e('a', 'view', now),
      e('a', 'purchase', now - 7 * DAY),
      e('b', 'view', now - 14 * DAY),
      e('b', 'dislike', now),
    ]);
    expect(t.score('a', now)).toBeCloseTo(1 + 8 * 0.5, 9);
    expect(t.score('b', now)).toBeCloseTo(0.25, 9);
    expect(t.score('zzz', now)).toBe(0);
    expect(t.top(5, now, () => true).map((x) => x.itemId)).toEqual(['a', 'b']);
  });

  it('ranks recent activity above old activity of the same volume and filters', () => {
    const t = new PopularityTracker(types, 1, 0);
    const now = 50 * DAY;
    for (let i = 0; i < 10; i++) t.add([e('old', 'view', now - 10 * DAY), e('new', 'view', now - DAY / 2)]);
    t.add([e('other', 'view', now)]);
    expect(t.top(3, now, () => true)[0].itemId).toBe('new');
    expect(t.top(3, now, (id) => id !== 'new').map((x) => x.itemId)).toEqual(['other', 'old']);
  });

  it('stays finite over years of events (rebasing the reference time)', () => {
    const t = new PopularityTracker(types, 0.01, 0);
    t.add([e('a', 'view', 0)]);
    t.add([e('b', 'view', 3 * 365 * DAY)]);
    const s = t.score('b', 3 * 365 * DAY);
    expect(Number.isFinite(s)).toBe(true);
    expect(s).toBeCloseTo(1, 9);
    expect(t.top(2, 3 * 365 * DAY, () => true)[0].itemId).toBe('b');
  });
});
