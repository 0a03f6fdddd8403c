import { describe, expect, it } from 'vitest';
import type { FeatureConfig, FeatureEvent, ItemFeatureState } from './definitions.ts';
import { decayedAt, foldItemEvent, ItemStateTimeline, itemStatesAt } from './item-state.ts';

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
