import { describe, expect, it } from 'vitest';
import { popParams, popSpec, popularityScores } from './popularity.ts';
import { csrFromCoo } from './sparse.ts';

const DAY = 86_400_000;
const seq = { threads: 1, seed: 1 };

// u0: i0 (2), i1 (1); u1: i0 (3); u2: i2 (5); i3 has no interactions.
const train = csrFromCoo(3, 4, [0, 0, 1, 2], [0, 1, 0, 2], [2, 1, 3, 5]);

describe('popularity', () => {
  it('counts distinct users or sums weights', () => {
    expect(Array.from(popularityScores(train, { by: 'users', halfLifeDays: 0 }))).toEqual([2, 1, 1, 0]);
    expect(Array.from(popularityScores(train, { by: 'weight', halfLifeDays: 0 }))).toEqual([5, 1, 5, 0]);
  });

  it('decays every event by 0.5^(age / half-life) (hand case)', () => {
    const now = 10 * DAY;
    // One event per interaction: the score is exactly Σ 0.5^(age / 1 day).
    const events = {
      items: Int32Array.of(0, 0, 1, 2),
      times: Float64Array.of(now, now - DAY, now - 2 * DAY, now - 3 * DAY),
    };
    const s = popularityScores(train, { by: 'users', halfLifeDays: 1 }, { itemEventTimes: events, now });
    expect(s[0]).toBeCloseTo(1 + 0.5, 6);
    expect(s[1]).toBeCloseTo(0.25, 6);
    expect(s[2]).toBeCloseTo(0.125, 6);
    expect(s[3]).toBe(0);
    // A two-day half-life halves the discount exponent.
    const s2 = popularityScores(train, { by: 'users', halfLifeDays: 2 }, { itemEventTimes: events, now });
    expect(s2[2]).toBeCloseTo(Math.pow(0.5, 1.5), 6);
  });

  it('scales the base score by the mean discount of the item events', () => {
    const now = 10 * DAY;
    // Item 0: three events (user 0 twice), two users, total weight 5.
    const events = { items: Int32Array.of(0, 0, 0), times: Float64Array.of(now, now - DAY, now - 2 * DAY) };
    const meanDecay = (1 + 0.5 + 0.25) / 3;
    const byUsers = popularityScores(
      train,
      { by: 'users', halfLifeDays: 1 },
      { itemEventTimes: events, now },
    );
    const byWeight = popularityScores(
      train,
      { by: 'weight', halfLifeDays: 1 },
      { itemEventTimes: events, now },
    );
    expect(byUsers[0]).toBeCloseTo(2 * meanDecay, 6);
    expect(byWeight[0]).toBeCloseTo(5 * meanDecay, 6);
    // Items without event times keep their base score.
    expect(byUsers[2]).toBe(1);
  });

  it('uses the newest event as "now" by default and treats future events as new', () => {
    const events = { items: Int32Array.of(0, 1, 2), times: Float64Array.of(5 * DAY, 4 * DAY, 7 * DAY) };
    const s = popularityScores(train, { by: 'users', halfLifeDays: 1 }, { itemEventTimes: events });
    expect(s[0]).toBeCloseTo(2 * 0.25, 6);
    expect(s[1]).toBeCloseTo(0.125, 6);
    expect(s[2]).toBeCloseTo(1, 6);
    const skewed = popularityScores(
      train,
      { by: 'users', halfLifeDays: 1 },
      { itemEventTimes: events, now: 6 * DAY },
    );
    expect(skewed[2]).toBe(1);
  });

  it('falls back to last-seen times, and ignores times without a half-life', () => {
    const lastSeen = Float64Array.of(9 * DAY, 8 * DAY, 10 * DAY, 0);
    const s = popularityScores(
      train,
      { by: 'weight', halfLifeDays: 1 },
      { itemLastSeen: lastSeen, now: 10 * DAY },
    );
    expect(s[0]).toBeCloseTo(5 * 0.5, 6);
    expect(s[1]).toBeCloseTo(0.25, 6);
    expect(s[2]).toBeCloseTo(5, 6);
    const events = { items: Int32Array.of(0), times: Float64Array.of(0) };
    expect(
      Array.from(
        popularityScores(train, { by: 'users', halfLifeDays: 0 }, { itemEventTimes: events, now: 100 * DAY }),
      ),
    ).toEqual([2, 1, 1, 0]);
  });

  it('gives every user the same scores and has no item similarity', async () => {
    const model = await popSpec.fit(train, { by: 'weight' }, seq);
    const a = new Float32Array(4);
    const b = new Float32Array(4);
    model.scoreUser(0, { items: Int32Array.of(0), weights: Float32Array.of(1) }, a);
    model.scoreUser(-1, { items: new Int32Array(0), weights: new Float32Array(0) }, b);
    expect(Array.from(a)).toEqual([5, 1, 5, 0]);
    expect(b).toEqual(a);
    expect(model.similarItems(0, a)).toBe(false);
  });

  it('fits with time decay from FitOptions', async () => {
    const now = 10 * DAY;
    const model = await popSpec.fit(
      train,
      { halfLifeDays: 1 },
      {
        ...seq,
        now,
        itemEventTimes: {
          items: Int32Array.of(0, 0, 1, 2),
          times: Float64Array.of(now, now, now - DAY, now - 2 * DAY),
        },
      },
    );
    const out = new Float32Array(4);
    model.scoreUser(0, { items: new Int32Array(0), weights: new Float32Array(0) }, out);
    expect(Array.from(out)).toEqual([2, 0.5, 0.25, 0]);
  });

  it('round-trips through its artifact', async () => {
    const model = await popSpec.fit(train, { by: 'users' }, seq);
    const loaded = popSpec.load(model.toArtifact());
    const a = new Float32Array(4);
    const b = new Float32Array(4);
    model.scoreUser(1, { items: new Int32Array(0), weights: new Float32Array(0) }, a);
    loaded.scoreUser(1, { items: new Int32Array(0), weights: new Float32Array(0) }, b);
    expect(b).toEqual(a);
    expect(loaded.params).toEqual(model.params);
  });

  it('validates its parameters', () => {
    expect(popParams({})).toEqual({ by: 'users', halfLifeDays: 0 });
    expect(() => popParams({ by: 'clicks' })).toThrow(/pop.by/);
    expect(() => popParams({ halfLifeDays: -1 })).toThrow(/pop.halfLifeDays/);
  });
});
