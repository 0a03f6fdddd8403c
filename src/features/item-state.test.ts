import { describe, expect, it } from 'vitest';
import type { FeatureConfig, FeatureEvent, ItemFeatureState } from './definitions.ts';
import { decayedAt, foldItemEvent, ItemStateTimeline, itemStatesAt, unfoldItemEvent } from './item-state.ts';

const DAY = 86_400_000;
const T0 = 1_700_000_000_000;

const CONFIG: FeatureConfig = {
  types: {
    view: { weight: 1 },
    click: { weight: 2 },
    purchase: { weight: 8 },
    rating: { weight: 1, useValue: true, minValue: 3 },
    dislike: { weight: 0, negative: true },
  },
  limits: { maxEventWeight: 10 },
  halfLivesDays: [1, 7, 30],
  maxSegmentsPerItem: 2,
};

const ev = (
  itemId: string,
  type: string,
  timestamp: number,
  extra: Partial<FeatureEvent> = {},
): FeatureEvent => ({
  itemId,
  type,
  value: null,
  timestamp,
  ...extra,
});

function fold(events: FeatureEvent[], config = CONFIG): ItemFeatureState {
  let s: ItemFeatureState | null = null;
  for (const e of events) s = foldItemEvent(s, e, config);
  return s!;
}

function expectClose(actual: number, expected: number, relative = 1e-12): void {
  expect(Math.abs(actual - expected)).toBeLessThanOrEqual(Math.abs(expected) * relative);
}

describe('foldItemEvent', () => {
  it('counts configured types, tracks first/last seen and sums decayed weights as computed by hand', () => {
    const s = fold([
      ev('a', 'view', T0 + DAY),
      ev('a', 'purchase', T0 + 3 * DAY),
      ev('a', 'view', T0), // late: older than the first one folded
      ev('a', 'rating', T0 + 2 * DAY, { value: 5 }), // weight 5
      ev('a', 'rating', T0 + 2 * DAY, { value: 2 }), // below minValue: counted, no weight
      ev('a', 'dislike', T0 + 2 * DAY),
      ev('a', 'unknown', T0 + 10 * DAY), // not configured: only moves lastSeen
    ]);
    expect(s.firstSeen).toBe(T0);
    expect(s.lastSeen).toBe(T0 + 10 * DAY);
    expect(s.counts).toEqual({ view: 2, purchase: 1, rating: 2, dislike: 1 });
    const now = T0 + 4 * DAY;
    const byHand = (h: number): number =>
      1 * 2 ** (-3 / h) + 8 * 2 ** (-1 / h) + 1 * 2 ** (-4 / h) + 5 * 2 ** (-2 / h);
    [1, 7, 30].forEach((h, i) => expectClose(decayedAt(s, i, now, CONFIG), byHand(h)));
    expect(decayedAt(null, 0, now, CONFIG)).toBe(0);
  });

  it('clamps weights to maxEventWeight like training does', () => {
    const s = fold([ev('a', 'rating', T0, { value: 1000 })]);
    expect(decayedAt(s, 0, T0, CONFIG)).toBe(10);
  });

  it('counts per segment and type, keeping the first maxSegmentsPerItem segments', () => {
    const s = fold([
      ev('a', 'view', T0, { segments: ['vip', '__proto__'] }),
      ev('a', 'click', T0 + 1, { segments: ['vip', 'new'] }), // `new` is a third segment: not kept
      ev('a', 'view', T0 + 2, { segments: ['__proto__'] }),
      ev('a', 'view', T0 + 3),
    ]);
    expect(Object.keys(s.segments).sort()).toEqual(['__proto__', 'vip']);
    expect(s.segments.vip).toEqual({ view: 1, click: 1 });
    expect(Object.getOwnPropertyDescriptor(s.segments, '__proto__')?.value).toEqual({ view: 2 });
    expect(Object.getPrototypeOf(s.segments)).toBe(Object.prototype);
    // JSON (Redis, snapshots) keeps it as a key too.
    const back = JSON.parse(JSON.stringify(s)) as ItemFeatureState;
    expect(Object.getOwnPropertyDescriptor(back.segments, '__proto__')?.value).toEqual({ view: 2 });
  });

  it('stays finite over any span: the reference moves forward before an exponent passes the limit', () => {
    const events = [
      ev('a', 'view', T0),
      ev('a', 'click', T0 + 1000 * DAY),
      ev('a', 'purchase', T0 + 5000 * DAY),
    ];
    const s = fold(events);
    expect(s.reference).toBeGreaterThan(T0);
    for (const x of s.decayed) expect(Number.isFinite(x)).toBe(true);
    const now = T0 + 5000 * DAY;
    // 30-day half-life: every event still counts; 1-day: the older ones are far below a double's precision.
    expectClose(decayedAt(s, 2, now, CONFIG), 8 + 2 * 2 ** (-4000 / 30) + 2 ** (-5000 / 30));
    expect(decayedAt(s, 0, now, CONFIG)).toBe(8);
  });

  it('round-trips through JSON exactly', () => {
    const s = fold([ev('a', 'view', T0 + 0.1 * DAY), ev('a', 'click', T0 + 0.37 * DAY, { segments: ['x'] })]);
    expect(JSON.parse(JSON.stringify(s))).toEqual(s);
  });
});

describe('itemStatesAt / ItemStateTimeline', () => {
  // Room for every segment: which segments are kept past the cap depends on the fold order (file comment).
  const WIDE: FeatureConfig = { ...CONFIG, maxSegmentsPerItem: 8 };
  /** A deterministic generator (tests must not depend on Math.random). */
  function lcg(seed: number): () => number {
    let s = seed >>> 0;
    return () => {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      return s / 2 ** 32;
    };
  }
  const rand = lcg(7);
  const types = ['view', 'view', 'view', 'click', 'purchase', 'rating', 'dislike'];
  const events: FeatureEvent[] = [];
  for (let i = 0; i < 2000; i++) {
    const type = types[Math.floor(rand() * types.length)];
    events.push(
      ev(`i${Math.floor(rand() * 30)}`, type, T0 + Math.floor(rand() * 60 * DAY), {
        seq: i + 1,
        value: type === 'rating' ? 1 + Math.floor(rand() * 5) : null,
        segments: rand() < 0.5 ? ['s' + Math.floor(rand() * 3)] : undefined,
      }),
    );
  }
  const at = T0 + 40 * DAY;
  const sorted = events
    .filter((e) => e.timestamp <= at)
    .sort((a, b) => a.timestamp - b.timestamp || a.seq! - b.seq!);

  it('folds the events up to `at` in (timestamp, seq) order, whatever the input order', () => {
    const expected = new Map<string, ItemFeatureState>();
    for (const e of sorted) expected.set(e.itemId, foldItemEvent(expected.get(e.itemId) ?? null, e, WIDE));
    expect(itemStatesAt(events, at, WIDE)).toEqual(expected);
    expect(itemStatesAt([...events].reverse(), at, WIDE)).toEqual(expected);
  });

  it('gives the same decayed values within rounding when folded in another order (log order)', () => {
    const inLogOrder = new Map<string, ItemFeatureState>();
    for (const e of events) {
      if (e.timestamp <= at)
        inLogOrder.set(e.itemId, foldItemEvent(inLogOrder.get(e.itemId) ?? null, e, WIDE));
    }
    const offline = itemStatesAt(events, at, WIDE);
    expect([...inLogOrder.keys()].sort()).toEqual([...offline.keys()].sort());
    for (const [id, s] of offline) {
      const o = inLogOrder.get(id)!;
      expect([o.firstSeen, o.lastSeen, o.counts, o.segments]).toEqual([
        s.firstSeen,
        s.lastSeen,
        s.counts,
        s.segments,
      ]);
      for (let i = 0; i < 3; i++) expectClose(decayedAt(o, i, at, WIDE), decayedAt(s, i, at, WIDE), 1e-12);
    }
  });

  it('a timeline advanced step by step matches itemStatesAt at each time, and cannot go back', () => {
    const timeline = new ItemStateTimeline(events, WIDE);
    for (const t of [T0 - 1, T0 + 5 * DAY, T0 + 5 * DAY, T0 + 33.3 * DAY, T0 + 61 * DAY]) {
      timeline.advanceTo(t);
      expect(new Map(timeline.all())).toEqual(itemStatesAt(events, t, WIDE));
      expect(timeline.state('i3')).toEqual(itemStatesAt(events, t, WIDE).get('i3') ?? null);
    }
    expect(() => timeline.advanceTo(T0)).toThrow(RangeError);
  });
});

describe('unfoldItemEvent', () => {
  /** A deep copy (the fold and unfold update states in place). */
  const copy = (s: ItemFeatureState): ItemFeatureState => JSON.parse(JSON.stringify(s)) as ItemFeatureState;

  function expectSameState(actual: ItemFeatureState | null, expected: ItemFeatureState, at: number): void {
    expect(actual).not.toBeNull();
    expect([actual!.counts, actual!.segments]).toEqual([expected.counts, expected.segments]);
    for (let i = 0; i < CONFIG.halfLivesDays.length; i++) {
      const want = decayedAt(expected, i, at, CONFIG);
      const got = decayedAt(actual, i, at, CONFIG);
      if (want === 0) expect(got).toBe(0);
      else expect(Math.abs(got - want)).toBeLessThanOrEqual(want * 1e-9);
    }
  }

  it('fold then unfold gives back the prior state: counts and segments exact, decayed within 1e-9', () => {
    const prior = fold([
      ev('a', 'view', T0, { segments: ['vip'] }),
      ev('a', 'rating', T0 + 2 * DAY, { value: 4, segments: ['eu'] }),
      ev('a', 'dislike', T0 + 3 * DAY),
    ]);
    const others = [
      ev('a', 'purchase', T0 + DAY, { segments: ['vip'] }), // existing segment, new type
      ev('a', 'click', T0 - 5 * DAY, { segments: ['eu', 'new'] }), // older than the reference; `new` not kept
      ev('a', 'rating', T0 + 4 * DAY, { value: 1000 }), // clamped to 10 when folded and unfolded alike
      ev('a', 'rating', T0 + 4 * DAY, { value: 1 }), // counted, no weight
      ev('a', 'dislike', T0 + 4 * DAY, { segments: ['vip'] }),
      ev('a', 'unknown', T0 + 9 * DAY), // unconfigured: nothing to take out
    ];
    for (const e of others) {
      const after = foldItemEvent(copy(prior), e, CONFIG);
      expectSameState(unfoldItemEvent(after, e, CONFIG), prior, T0 + 5 * DAY);
    }
    // All of them at once, taken out in another order.
    let s: ItemFeatureState | null = copy(prior);
    for (const e of others) s = foldItemEvent(s, e, CONFIG);
    for (const e of [...others].reverse()) s = unfoldItemEvent(s!, e, CONFIG);
    expectSameState(s, prior, T0 + 5 * DAY);
  });

  it('removes a type or segment left with no events, and returns null once no counted event is left', () => {
    const a = ev('a', 'click', T0, { segments: ['vip'] });
    const b = ev('a', 'view', T0 + DAY, { segments: ['vip', '__proto__'] });
    const s = fold([a, b]);
    const left = unfoldItemEvent(s, b, CONFIG)!;
    expect(left).toBe(s); // in place
    expect(left.counts).toEqual({ click: 1 });
    expect(left.segments).toEqual({ vip: { click: 1 } });
    expect(Object.getOwnPropertyDescriptor(left.segments, '__proto__')).toBeUndefined();
    expect(Object.getPrototypeOf(left.segments)).toBe(Object.prototype);
    expect(unfoldItemEvent(left, a, CONFIG)).toBeNull();
  });

  it('clamps at zero: rounding noise and events never folded leave no negative or tiny positive sum', () => {
    const view = ev('a', 'view', T0);
    const click = ev('a', 'click', T0 + 1.7 * DAY);
    const buy = ev('a', 'purchase', T0 + 0.85 * DAY);
    const dislike = ev('a', 'dislike', T0 + 5 * DAY); // a count without weight: keeps the state alive
    const s = fold([view, click, buy, dislike]);
    // Subtracted in another order than added, these sums leave −8.9e-16 (1-day) and +4.4e-16 (7-day) when
    // computed without the tolerance: both are dropped.
    for (const e of [buy, click, view]) unfoldItemEvent(s, e, CONFIG);
    expect(s.decayed).toEqual([0, 0, 0]);
    expect(s.counts).toEqual({ dislike: 1 });
    // Taking out a purchase that is no longer there: no count goes below 0, no sum below 0.
    expect(unfoldItemEvent(s, buy, CONFIG)).toBe(s);
    expect(s.counts).toEqual({ dislike: 1 });
    expect(s.decayed).toEqual([0, 0, 0]);
    expect(unfoldItemEvent(s, dislike, CONFIG)).toBeNull();
  });

  it('takes an event out after a rebase, leaving no residue', () => {
    const old = ev('a', 'click', T0);
    const late = ev('a', 'view', T0 + 700 * DAY); // past MAX_EXPONENT one-day half-lives: rebases
    const s = fold([old, late]);
    expect(s.reference).toBe(late.timestamp);
    const back = unfoldItemEvent(copy(s), late, CONFIG)!;
    expect(back.counts).toEqual({ click: 1 });
    // The 1-day sum lost the old click to underflow at the rebase: 0, not noise. The 30-day sum keeps it.
    expect(decayedAt(back, 0, late.timestamp, CONFIG)).toBe(0);
    expectClose(decayedAt(back, 2, late.timestamp, CONFIG), 2 * 2 ** (-700 / 30), 1e-9);
    const viewOnly = unfoldItemEvent(copy(s), old, CONFIG)!;
    for (let i = 0; i < 3; i++) expectClose(decayedAt(viewOnly, i, late.timestamp, CONFIG), 1, 1e-15);
    // A remainder below RESIDUE_TOLERANCE of what was taken out counts as noise (popularity.ts): 1,000 days
    // apart, the old click is 2^-33 of the view on the 30-day sum, and goes with it.
    const far = ev('a', 'view', T0 + 1000 * DAY);
    expect(unfoldItemEvent(fold([old, far]), far, CONFIG)!.decayed).toEqual([0, 0, 0]);
  });

  it('over a random log, folding everything then unfolding one user equals folding the others only', () => {
    const WIDE: FeatureConfig = { ...CONFIG, maxSegmentsPerItem: 8 };
    let seed = 12345;
    const rand = (): number => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return seed / 2 ** 32;
    };
    const types = ['view', 'view', 'click', 'purchase', 'rating', 'dislike', 'other'];
    const all: (FeatureEvent & { user: number })[] = [];
    for (let i = 0; i < 3000; i++) {
      const type = types[Math.floor(rand() * types.length)];
      const user = Math.floor(rand() * 5);
      all.push({
        ...ev(`i${Math.floor(rand() * 20)}`, type, T0 + Math.floor(rand() * 90 * DAY), {
          seq: i + 1,
          value: type === 'rating' ? 1 + Math.floor(rand() * 5) : null,
          segments: [['vip'], ['eu', 'vip'], [], ['new'], ['eu']][user],
        }),
        user,
      });
    }
    const states = new Map<string, ItemFeatureState>();
    for (const e of all) states.set(e.itemId, foldItemEvent(states.get(e.itemId) ?? null, e, WIDE));
    for (const e of all) {
      if (e.user !== 0) continue;
      const after = unfoldItemEvent(states.get(e.itemId)!, e, WIDE);
      if (after === null) states.delete(e.itemId);
    }
    const others = new Map<string, ItemFeatureState>();
    for (const e of all) {
      if (e.user !== 0) others.set(e.itemId, foldItemEvent(others.get(e.itemId) ?? null, e, WIDE));
    }
    // Items whose remaining events are all unconfigured have no counted event: null, like never seen.
    for (const [id, s] of others) if (Object.keys(s.counts).length === 0) others.delete(id);
    expect([...states.keys()].sort()).toEqual([...others.keys()].sort());
    const at = T0 + 91 * DAY;
    for (const [id, s] of states) {
      const o = others.get(id)!;
      expect([s.counts, s.segments]).toEqual([o.counts, o.segments]);
      for (let i = 0; i < 3; i++) {
        const want = decayedAt(o, i, at, WIDE);
        const got = decayedAt(s, i, at, WIDE);
        if (want === 0) expect(got).toBe(0);
        else expect(Math.abs(got - want)).toBeLessThanOrEqual(want * 1e-9);
      }
    }
  });
});
