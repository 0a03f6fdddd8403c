import { describe, expect, it } from 'vitest';
import type { FeatureConfig, ItemFeatureState } from './definitions.ts';
import { buildHead, categoryScore, headList, headScore, trendingScore } from './head-retrievers.ts';
import { foldItemEvent } from './item-state.ts';

const config: FeatureConfig = {
  types: { view: { weight: 1 }, purchase: { weight: 5 } },
  halfLivesDays: [1, 7, 30],
  maxSegmentsPerItem: 8,
};
const DAY = 86_400_000;
const NOW = Date.UTC(2025, 5, 1);

/** An item's state from `n` views spread evenly over the `days` before NOW. */
function viewed(n: number, days: number): ItemFeatureState {
  let s: ItemFeatureState | null = null;
  for (let k = 0; k < n; k++)
    s = foldItemEvent(
      s,
      { itemId: 'x', type: 'view', value: null, timestamp: NOW - ((k + 0.5) * (days * DAY)) / n },
      config,
    );
  return s!;
}

describe('head retrievers', () => {
  it('select exactly the head a full sort by weight (ties by id) gives, at every size', () => {
    // Many equal weights (the same few view counts), some items without a state.
    const candidates = Array.from({ length: 400 }, (_, i) => ({
      id: `i${(i * 7919) % 400}`,
      state: i % 9 === 0 ? null : viewed(1 + (i % 6), 10),
      categories: [],
    }));
    const weightOf = (c: (typeof candidates)[number]) => buildHead([c], NOW, config, 1, 1).pop[0] ?? 0;
    const reference = candidates
      .map((c) => ({ id: c.id, w: weightOf(c) }))
      .filter((c) => c.w > 0)
      .sort((a, b) => b.w - a.w || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    for (const size of [1, 5, 44, 45, 46, 100, 355, 356, 400, 1000]) {
      expect(buildHead(candidates, NOW, config, 1, size).ids).toEqual(
        reference.slice(0, size).map((c) => c.id),
      );
    }
  });

  it('score an item rising now above one with the same steady interest, and a fading one below zero', () => {
    const steady = trendingScore(viewed(3000, 300), NOW, config);
    const rising = trendingScore(viewed(100, 1), NOW, config);
    const fading = viewed(300, 30);
    // Thirty days on, nothing new: the short window has emptied faster than the long one.
    const faded = trendingScore(fading, NOW + 10 * DAY, config);
    expect(Math.abs(steady)).toBeLessThan(0.05 * (3000 / 300)); // near 0 relative to a day's weight
    expect(rising).toBeGreaterThan(10);
    expect(faded).toBeLessThan(0);
    expect(trendingScore(null, NOW, config)).toBeNaN();
    expect(trendingScore(viewed(5, 1), NOW, { halfLivesDays: [7] })).toBeNaN();
  });

  it('keep the most popular items, score categories by the user’s shares, and list only positive scores', () => {
    const head = buildHead(
      [
        { id: 'old-hit', state: viewed(3000, 300), categories: ['films'] },
        { id: 'new-hit', state: viewed(100, 1), categories: ['films', 'music'] },
        { id: 'book', state: viewed(40, 30), categories: ['books'] },
        { id: 'nobody', state: null, categories: ['books'] },
        { id: 'tail', state: viewed(1, 30), categories: ['music'] },
      ],
      NOW,
      config,
      1,
      3,
    );
    // By the 7-day decayed weight, at most 3, no item without weight.
    expect(head.ids).toEqual(['old-hit', 'new-hit', 'book']);
    expect(head.index.get('book')).toBe(2);
    expect(headScore(head, 'trending', 'tail', new Map())).toBeNaN(); // outside the head
    const shares = new Map([
      ['music', 0.25],
      ['books', 0.75],
    ]);
    expect(categoryScore(head, 1, shares)).toBeCloseTo(head.pop[1] * 0.25, 12);
    expect(categoryScore(head, 0, shares)).toBe(0);
    expect(headScore(head, 'category', 'book', shares)).toBeCloseTo(head.pop[2] * 0.75, 12);
    const categories = headList(head, 'category', shares, 10, () => true);
    expect(categories.positions.map((h) => head.ids[h]).sort()).toEqual(['book', 'new-hit']);
    expect(categories.scores[0]).toBeGreaterThanOrEqual(categories.scores[1]);
    const trending = headList(head, 'trending', shares, 10, (h) => head.ids[h] !== 'book');
    // Rising first; the steady hit scores about nothing (its evenly spaced views leave a small excess).
    expect(trending.positions.map((h) => head.ids[h])[0]).toBe('new-hit');
    expect(trending.positions).not.toContain(2);
    expect(trending.scores[0]).toBe(head.trending[1]);
    expect(Math.abs(head.trending[0])).toBeLessThan(head.trending[1] / 50);
  });
});
