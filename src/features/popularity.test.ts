import { describe, expect, it } from 'vitest';
import { compareIds, MAX_EXPONENT, PopularityTracker, RESIDUE_TOLERANCE } from './popularity.ts';

const DAY = 86_400_000;
const types = {
  view: { weight: 1 },
  purchase: { weight: 8 },
  rating: { weight: 1, useValue: true },
  dislike: { weight: 0, negative: true },
};
const e = (itemId: string, type: string, timestamp: number, value: number | null = null) => ({
  itemId,
  type,
  value,
  timestamp,
});

describe('PopularityTracker', () => {
  it('sums decayed weights exactly as hand-computed', () => {
    const t = new PopularityTracker(types, 7);
    const now = 100 * DAY;
    t.add([
      e('a', 'view', now),
      e('a', 'purchase', now - 7 * DAY),
      e('b', 'view', now - 14 * DAY),
      e('b', 'dislike', now),
      e('c', 'dislike', now),
    ]);
    expect(t.score('a', now)).toBeCloseTo(1 + 8 * 0.5, 12);
    expect(t.score('b', now)).toBeCloseTo(0.25, 12);
    expect(t.score('c', now)).toBe(0);
    expect(t.score('zzz', now)).toBe(0);
    expect(t.size).toBe(2);
    expect(t.top(5, now, () => true).map((x) => x.itemId)).toEqual(['a', 'b']);
    expect(t.scores(['b', 'zzz', 'a'], now + 7 * DAY)).toEqual([
      t.score('b', now) / 2,
      0,
      t.score('a', now) / 2,
    ]);
  });

  it('ranks recent activity above old activity of the same volume and filters', () => {
    const t = new PopularityTracker(types, 1);
    const now = 50 * DAY;
    for (let i = 0; i < 10; i++) t.add([e('old', 'view', now - 10 * DAY), e('new', 'view', now - DAY / 2)]);
    t.add([e('other', 'view', now)]);
    expect(t.top(3, now, () => true)[0].itemId).toBe('new');
    expect(t.top(3, now, (id) => id !== 'new').map((x) => x.itemId)).toEqual(['other', 'old']);
  });

  it('stays finite over years of events (rebasing the reference time) and drops underflowed items', () => {
    const t = new PopularityTracker(types, 0.01);
    t.add([e('a', 'view', 0)]);
    t.add([e('b', 'view', 3 * 365 * DAY)]);
    const s = t.score('b', 3 * 365 * DAY);
    expect(Number.isFinite(s)).toBe(true);
    expect(s).toBeCloseTo(1, 12);
    expect(t.reference).toBe(3 * 365 * DAY);
    expect(t.size).toBe(1); // a's 2^-109500 underflowed to 0
    expect(t.page(0, 5, 3 * 365 * DAY).map((x) => x.itemId)).toEqual(['b']);
  });

  it('rebases only past MAX_EXPONENT half-lives, keeping representable sums exact', () => {
    const t = new PopularityTracker(types, 1);
    t.add([e('a', 'view', 0), e('b', 'view', MAX_EXPONENT * DAY)]);
    expect(t.reference).toBe(0);
    t.add([e('c', 'view', (MAX_EXPONENT + 100) * DAY)]);
    expect(t.reference).toBe((MAX_EXPONENT + 100) * DAY);
    const now = (MAX_EXPONENT + 100) * DAY;
    expect(t.score('a', now) / Math.pow(2, -(MAX_EXPONENT + 100))).toBeCloseTo(1, 12);
    expect(t.score('b', now) / Math.pow(2, -100)).toBeCloseTo(1, 12);
    expect(t.page(0, 3, now).map((x) => x.itemId)).toEqual(['c', 'b', 'a']);
  });

  it('ignores events whose weight underflows instead of listing the item with zero', () => {
    const t = new PopularityTracker(types, 1);
    t.add([e('a', 'view', 2000 * DAY), e('ancient', 'view', 0)]);
    expect(t.size).toBe(1);
    expect(t.score('ancient', 2000 * DAY)).toBe(0);
  });

  it('subtracts exactly, drops rounding residue, and never goes below zero', () => {
    const t = new PopularityTracker(types, 1);
    const u1 = [e('x', 'rating', 0, 3.3), e('y', 'view', 5 * 3600_000)];
    t.add(u1);
    t.add([e('y', 'rating', 0, 0.7), e('z', 'view', Math.round(700.37 * DAY))]); // rebase in between
    t.subtract(u1);
    const now = Math.round(700.37 * DAY);
    expect(t.score('x', now)).toBe(0);
    const y = t.score('y', now);
    const expected = 0.7 * Math.pow(2, -now / DAY);
    expect(Math.abs(y - expected) / expected).toBeLessThan(1e-12);
    expect(t.size).toBe(2);
    t.subtract([e('y', 'purchase', 0), e('unknown', 'purchase', now), e('z', 'dislike', now)]);
    expect(t.score('y', now)).toBe(0);
    expect(t.size).toBe(1);
    expect(t.page(0, 10, now)).toEqual([{ itemId: 'z', score: 1 }]);
    // A genuine remainder well above the tolerance survives.
    t.add([e('z', 'view', now)]);
    t.subtract([e('z', 'view', now)]);
    expect(t.score('z', now)).toBeCloseTo(1, 12);
    expect(RESIDUE_TOLERANCE).toBeLessThan(1e-6);
  });

  it('breaks ties by id in code-point order and pages consistently', () => {
    const t = new PopularityTracker(types, 7);
    const ids = ['b', '😀', 'a', '～', 'B', 'aa'];
    t.add(ids.map((id) => e(id, 'view', 0)));
    t.add([e('top', 'purchase', 0)]);
    const all = t.page(0, 100, 0).map((x) => x.itemId);
    expect(all).toEqual(['top', 'B', 'a', 'aa', 'b', '～', '😀']);
    const pages = [...t.page(0, 3, 0), ...t.page(3, 3, 0), ...t.page(6, 3, 0)].map((x) => x.itemId);
    expect(pages).toEqual(all);
    expect(t.page(7, 3, 0)).toEqual([]);
    expect(t.page(-1, 3, 0)).toEqual([]);
  });

  it('keeps its incrementally repaired ranking equal to a full sort under random updates', () => {
    let seed = 12345;
    const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
    const t = new PopularityTracker(types, 3);
    const added: ReturnType<typeof e>[] = [];
    for (let step = 0; step < 300; step++) {
      const batch = Array.from({ length: 1 + Math.floor(rnd() * (step % 50 === 0 ? 400 : 4)) }, () =>
        e(`i${Math.floor(rnd() * 500)}`, rnd() < 0.8 ? 'view' : 'purchase', Math.floor(rnd() * 30 * DAY)),
      );
      t.add(batch);
      added.push(...batch);
      if (step % 7 === 3) {
        // Erase a random handful of earlier events.
        const gone = added.splice(Math.floor(rnd() * added.length), 3);
        t.subtract(gone);
      }
      if (step % 5 === 0) {
        // At now = T0 the scale is exactly 1, so scores compare exactly like the stored sums.
        const ranked = t.page(0, 10_000, t.reference!);
        const reference = [...ranked].sort((x, y) => y.score - x.score || compareIds(x.itemId, y.itemId));
        expect(ranked).toEqual(reference);
        expect(ranked.length).toBe(t.size);
      }
    }
  });

  it('exports and rebuilds its state', () => {
    const t = new PopularityTracker(types, 2);
    t.add([e('a', 'view', 10), e('b', 'purchase', 20), e('c', 'view', 30)]);
    t.subtract([e('c', 'view', 30)]);
    const state = t.exportState();
    expect(state.ids.sort()).toEqual(['a', 'b']);
    const copy = PopularityTracker.fromState(types, 2, t.exportState());
    expect(copy.page(0, 10, 100)).toEqual(t.page(0, 10, 100));
    expect(copy.reference).toBe(t.reference);
    t.clear();
    expect(t.size).toBe(0);
    expect(t.reference).toBeNull();
    expect(t.page(0, 10, 100)).toEqual([]);
  });

  it('refuses a non-positive half-life', () => {
    expect(() => new PopularityTracker(types, 0)).toThrow(RangeError);
  });
});

describe('compareIds', () => {
  it('orders by code point (UTF-8 byte order), unlike UTF-16 comparison', () => {
    const ids = ['😀', '～', 'é', 'b', 'a', 'A', 'ab', '', '\uE000', '\uD7FF'];
    const byCodePoint = [...ids].sort(compareIds);
    const byUtf8 = [...ids].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    expect(byCodePoint).toEqual(byUtf8);
    expect(byCodePoint).toEqual(['', 'A', 'a', 'ab', 'b', 'é', '\uD7FF', '\uE000', '～', '😀']);
    expect(compareIds('x', 'x')).toBe(0);
  });
});
