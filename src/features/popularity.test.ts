import { describe, expect, it } from 'vitest';
import { interactionWeight } from './interactions.ts';
import {
  capContribution,
  compareIds,
  ContributionRules,
  MAX_EXPONENT,
  PopularityTracker,
  RESIDUE_TOLERANCE,
  weightLimitIssues,
} from './popularity.ts';

const DAY = 86_400_000;
const types = {
  view: { weight: 1 },
  purchase: { weight: 8 },
  rating: { weight: 1, useValue: true },
  dislike: { weight: 0, negative: true },
};
/** An event's contribution under `types`, without limits (the tracker only sums contributions). */
const e = (itemId: string, type: string, timestamp: number, value: number | null = null) => ({
  itemId,
  timestamp,
  weight: interactionWeight(types, { type, value }).weight,
});

describe('PopularityTracker', () => {
  it('sums decayed weights exactly as hand-computed', () => {
    const t = new PopularityTracker(7);
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
    const t = new PopularityTracker(1);
    const now = 50 * DAY;
    for (let i = 0; i < 10; i++) t.add([e('old', 'view', now - 10 * DAY), e('new', 'view', now - DAY / 2)]);
    t.add([e('other', 'view', now)]);
    expect(t.top(3, now, () => true)[0].itemId).toBe('new');
    expect(t.top(3, now, (id) => id !== 'new').map((x) => x.itemId)).toEqual(['other', 'old']);
  });

  it('stays finite over years of events (rebasing the reference time) and drops underflowed items', () => {
    const t = new PopularityTracker(0.01);
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
    const t = new PopularityTracker(1);
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
    const t = new PopularityTracker(1);
    t.add([e('a', 'view', 2000 * DAY), e('ancient', 'view', 0)]);
    expect(t.size).toBe(1);
    expect(t.score('ancient', 2000 * DAY)).toBe(0);
  });

  it('subtracts exactly, drops rounding residue, and never goes below zero', () => {
    const t = new PopularityTracker(1);
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
    const t = new PopularityTracker(7);
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
    const t = new PopularityTracker(3);
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
    const t = new PopularityTracker(2);
    t.add([e('a', 'view', 10), e('b', 'purchase', 20), e('c', 'view', 30)]);
    t.subtract([e('c', 'view', 30)]);
    const state = t.exportState();
    expect(state.ids.sort()).toEqual(['a', 'b']);
    const copy = PopularityTracker.fromState(2, t.exportState());
    expect(copy.page(0, 10, 100)).toEqual(t.page(0, 10, 100));
    expect(copy.reference).toBe(t.reference);
    t.clear();
    expect(t.size).toBe(0);
    expect(t.reference).toBeNull();
    expect(t.page(0, 10, 100)).toEqual([]);
  });

  it('refuses a non-positive half-life', () => {
    expect(() => new PopularityTracker(0)).toThrow(RangeError);
  });
});

describe('capContribution', () => {
  const H = 7 * DAY;
  /** Events added one after the other to one holding: what each added, and the holding after them. */
  const run = (steps: [weight: number, timestamp: number][], held = { weight: 0, at: steps[0][1] }) => ({
    added: steps.map(([w, t]) => capContribution(held, w, t, 16, H)),
    held,
  });

  it("keeps a user's decayed holding of an item at or below the cap, valued at their latest event", () => {
    expect(
      run([
        [8, 0],
        [8, 0],
        [8, 0],
      ]),
    ).toEqual({ added: [8, 8, 0], held: { weight: 16, at: 0 } });
    // A half-life later half of it has decayed: room for 8 again.
    expect(
      run([
        [8, 0],
        [8, 0],
        [10, H],
      ]),
    ).toEqual({ added: [8, 8, 8], held: { weight: 16, at: H } });
    expect(run([[20, 0]])).toEqual({ added: [16], held: { weight: 16, at: 0 } });
  });

  it('lets an older event add the room left, grown back to its own time (it decays to the room)', () => {
    // Room 8 at 2H is worth 16 at H: the whole 10 counts, and is worth 5 at 2H.
    expect(
      run([
        [8, 2 * H],
        [10, H],
      ]),
    ).toEqual({ added: [8, 10], held: { weight: 13, at: 2 * H } });
    expect(run([[10, -1e6 * H]], { weight: 16, at: 2 * H }).added).toEqual([0]);
    // Far older than the holding: the growth factor overflows to Infinity, the weight still counts once.
    expect(
      run([
        [8, 2 * H],
        [5, 2 * H - 5000 * H],
      ]),
    ).toEqual({ added: [8, 5], held: { weight: 8, at: 2 * H } });
  });
});

describe('ContributionRules', () => {
  const rules = new ContributionRules(types, 7, { maxEventWeight: 10, maxUserItemWeight: 16 });
  const ev = (seq: number, itemId: string, type: string, value: number | null = null) => ({
    seq,
    itemId,
    type,
    value,
    timestamp: 0,
  });

  it('clamps, caps per user and item, and replays an erased user exactly as added in log order', () => {
    const events = [
      ev(1, 'a', 'purchase'),
      ev(2, 'a', 'purchase'),
      ev(3, 'a', 'rating', 1e308),
      ev(4, 'b', 'view'),
    ];
    const holdings = new Map();
    expect(events.map((e) => rules.add(holdings, e))).toEqual([8, 8, 0, 1]);
    expect(rules.replay([...events].reverse())).toEqual([
      { seq: 1, itemId: 'a', timestamp: 0, weight: 8 },
      { seq: 2, itemId: 'a', timestamp: 0, weight: 8 },
      { seq: 4, itemId: 'b', timestamp: 0, weight: 1 },
    ]);
    // Without a cap nothing needs keeping, and only the clamp applies.
    const clampOnly = new ContributionRules(types, 7, { maxEventWeight: 10 });
    expect(clampOnly.cap).toBeNull();
    expect(events.map((e) => clampOnly.add(null, e))).toEqual([8, 8, 10, 1]);
  });

  it('reports limits that are not positive numbers by config key', () => {
    expect(weightLimitIssues({ maxEventWeight: 10, maxUserItemWeight: 16 })).toEqual([]);
    expect(weightLimitIssues({ maxEventWeight: 0, maxUserItemWeight: Number.NaN })).toEqual([
      { field: 'events.maxEventWeight', message: 'must be a positive number' },
      { field: 'events.maxUserItemWeight', message: 'must be a positive number' },
    ]);
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
