/**
 * The one conformance suite of the `OnlineState` port. Every adapter runs it:
 *
 *   describeOnlineStateConformance('memory', (options) => Promise.resolve(new MemoryOnlineState(options)));
 *
 * `factory` must return a fresh, empty state for the given options each time it is called (a test may open
 * several, with other options); the suite closes every state it opened. `cleanup` runs once after the whole
 * suite (delete keys, files). Expected popularity values are computed by hand from
 * score = Σ w · 2^((t_e − now)/H), never by the code under test.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { Item, JsonObject, StoredEvent, User } from '../../domain/types.ts';
import type { FeatureEvent } from '../../features/definitions.ts';
import { decayedAt, featureConfigOf, itemStatesAt } from '../../features/item-state.ts';
import type { EntityChange, LogRecord, OnlineState, OnlineStateOptions } from '../ports.ts';
import { sleep } from './helpers.ts';

const DAY = 86_400_000;
/** A round "now" far from the epoch, like real timestamps. */
const NOW = 1_700_000_000_000;

/** Event weights used throughout (the shape of config `events.types`). */
const TYPES: OnlineStateOptions['types'] = {
  view: { weight: 1 },
  click: { weight: 2 },
  purchase: { weight: 8 },
  rating: { weight: 1, useValue: true, minValue: 3 },
  dislike: { weight: 0, negative: true },
  impression: { weight: 0 },
};

const OPTIONS: OnlineStateOptions = { types: TYPES, popularityHalfLifeDays: 7, historyLimit: 5 };

function ev(
  seq: number,
  userId: string,
  itemId: string,
  type: string,
  timestamp: number,
  extra: Partial<StoredEvent> = {},
): StoredEvent {
  return { seq, eventId: `e${seq}`, userId, itemId, type, value: null, timestamp, context: null, ...extra };
}

function item(id: string, overrides: Partial<Item> = {}): Item {
  return {
    id,
    categories: ['c1'],
    attributes: { title: `Item ${id}`, price: 9.5 },
    available: true,
    createdAt: 1000,
    updatedAt: 2000,
    ...overrides,
  };
}

function user(id: string, optOut: boolean): User {
  return { id, attributes: {}, segments: [], optOut, createdAt: 1, updatedAt: 2 };
}

const rec = (seq: number, value: EntityChange): LogRecord<EntityChange> => ({ seq, value });

/** The event fields an erase record carries. */
const erased = (events: StoredEvent[]) =>
  events.map(({ seq, itemId, type, value, timestamp }) => ({ seq, itemId, type, value, timestamp }));

/** `actual` equals `expected` within a relative tolerance (exactly 0 when 0 is expected). */
function expectClose(actual: number, expected: number, relative = 1e-9): void {
  if (expected === 0) expect(actual).toBe(0);
  else expect(Math.abs(actual - expected)).toBeLessThanOrEqual(Math.abs(expected) * relative);
}

/** A small deterministic generator (tests must not depend on Math.random). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

export function describeOnlineStateConformance(
  name: string,
  factory: (options: OnlineStateOptions) => Promise<OnlineState>,
  cleanup?: () => Promise<void>,
): void {
  describe(`OnlineState conformance: ${name}`, () => {
    const opened: OnlineState[] = [];

    async function open(overrides: Partial<OnlineStateOptions> = {}): Promise<OnlineState> {
      const state = await factory({ ...OPTIONS, ...overrides });
      opened.push(state);
      return state;
    }

    afterEach(async () => {
      await Promise.all(opened.splice(0).map((s) => s.close()));
    });

    if (cleanup) afterAll(cleanup);

    it('starts empty', async () => {
      const s = await open();
      expect(typeof s.kind).toBe('string');
      expect(s.kind.length).toBeGreaterThan(0);
      expect(await s.watermarks()).toEqual({ events: 0, changes: 0 });
      expect(await s.recentEvents('u1', 10)).toEqual([]);
      expect(await s.optedOut('u1')).toBe(false);
      expect(await s.popular(0, 10, NOW)).toEqual([]);
      expect(await s.popularity(['a', 'b'], NOW)).toEqual([0, 0]);
      expect(await s.popularity([], NOW)).toEqual([]);
      expect(await s.popularCount()).toBe(0);
      expect(await s.items(undefined, 10)).toEqual([]);
      expect(await s.cacheGet('u1', 'k')).toBeNull();
    });

    describe('applyEvents', () => {
      it('sums decayed weights exactly as computed by hand, skipping non-positive types', async () => {
        const s = await open();
        await s.applyEvents([
          ev(1, 'u1', 'a', 'view', NOW - 7 * DAY), // 1 · 2^-1
          ev(2, 'u1', 'a', 'purchase', NOW), // 8
          ev(3, 'u2', 'b', 'rating', NOW - 14 * DAY, { value: 4 }), // 4 · 2^-2
          ev(4, 'u2', 'b', 'rating', NOW, { value: 2 }), // below minValue: not positive
          ev(5, 'u3', 'c', 'dislike', NOW), // negative
          ev(6, 'u3', 'c', 'impression', NOW), // weight 0
          ev(7, 'u3', 'd', 'not_configured', NOW), // unknown type
          ev(8, 'u2', 'e', 'click', NOW - 3.5 * DAY), // 2 · 2^-0.5
          ev(9, 'u4', 'f', 'view', NOW + DAY), // after "now": 2^(1/7)
        ]);
        const [a, b, c, d, e, f, unknown] = await s.popularity(['a', 'b', 'c', 'd', 'e', 'f', 'zz'], NOW);
        expectClose(a, 8.5);
        expectClose(b, 1);
        expect(c).toBe(0);
        expect(d).toBe(0);
        expectClose(e, Math.SQRT2);
        expectClose(f, Math.pow(2, 1 / 7));
        expect(unknown).toBe(0);
        expect(await s.popularCount()).toBe(4);

        const top = await s.popular(0, 10, NOW);
        expect(top.map((x) => x.itemId)).toEqual(['a', 'e', 'f', 'b']);
        expectClose(top[0].score, 8.5);
        expectClose(top[1].score, Math.SQRT2);
        expectClose(top[3].score, 1);

        // Decay is applied at read time: one half-life later every score is halved, the order unchanged.
        const later = await s.popular(0, 10, NOW + 7 * DAY);
        expect(later.map((x) => x.itemId)).toEqual(['a', 'e', 'f', 'b']);
        expectClose(later[0].score, 4.25);
        expectClose((await s.popularity(['b'], NOW + 7 * DAY))[0], 0.5);
        // Events arriving out of time order count the same as in order.
        await s.applyEvents([ev(10, 'u5', 'b', 'view', NOW - 70 * DAY)]);
        expectClose((await s.popularity(['b'], NOW))[0], 1 + Math.pow(2, -10));
      });

      it('ranks best first, breaks ties by item id in code-point order, and pages consistently', async () => {
        const s = await open();
        const ids = ['z', 'y', 'x', '😀', '～', 'é', 'X', 'x1'];
        await s.applyEvents([
          ...ids.map((id, i) => ev(i + 1, 'u1', id, 'view', NOW)),
          ev(20, 'u2', 'w', 'view', NOW),
          ev(21, 'u2', 'w', 'view', NOW),
          ev(22, 'u2', 'v', 'purchase', NOW - 7 * DAY), // 4
        ]);
        const all = await s.popular(0, 100, NOW);
        // Code points: X < x < x1 < y < z < é (U+E9) < ～ (U+FF5E) < 😀 (U+1F600): also UTF-8 byte order.
        expect(all.map((x) => x.itemId)).toEqual(['v', 'w', 'X', 'x', 'x1', 'y', 'z', 'é', '～', '😀']);
        expectClose(all[0].score, 4);
        expectClose(all[1].score, 2);
        for (const entry of all.slice(2)) expectClose(entry.score, 1);
        expect(await s.popularCount()).toBe(10);

        const pages = [];
        for (let offset = 0; offset < 12; offset += 3) pages.push(...(await s.popular(offset, 3, NOW)));
        expect(pages).toEqual(all);
        expect(await s.popular(9, 5, NOW)).toEqual(all.slice(9));
        expect(await s.popular(10, 5, NOW)).toEqual([]);
        expect(await s.popular(0, 0, NOW)).toEqual([]);
        expect(await s.popular(0, Infinity, NOW)).toEqual(all);
        expect(await s.popularity(['w', 'nope', 'w', 'v'], NOW)).toEqual([
          all[1].score,
          0,
          all[1].score,
          all[0].score,
        ]);
      });

      it('keeps recent events newest first by timestamp then seq, bounded by historyLimit', async () => {
        const s = await open(); // historyLimit 5
        const context: JsonObject = { page: 'home', slots: [1, 2], nested: { ok: true }, text: 'é 😀' };
        const e1 = ev(1, 'u1', 'a', 'view', 100);
        const e2 = ev(2, 'u1', 'b', 'rating', 300, { value: 3.5, context });
        const e3 = ev(3, 'u1', 'c', 'dislike', 200);
        const e4 = ev(4, 'u1', 'd', 'view', 300, { eventId: 'custom-id' });
        const e5 = ev(5, 'u1', 'e', 'impression', 50);
        const other = ev(6, 'u2', 'a', 'view', 400);
        await s.applyEvents([e1, e2, e3, e4, e5, other]);
        expect(await s.recentEvents('u1', 10)).toStrictEqual([e4, e2, e3, e1, e5]);
        expect(await s.recentEvents('u1', 2)).toStrictEqual([e4, e2]);
        expect(await s.recentEvents('u1', 0)).toEqual([]);
        expect(await s.recentEvents('u2', 10)).toStrictEqual([other]);
        expect(await s.recentEvents('nobody', 10)).toEqual([]);

        // Beyond historyLimit the oldest events go, whatever order they arrive in.
        const e7 = ev(7, 'u1', 'f', 'view', 500);
        const e8 = ev(8, 'u1', 'g', 'view', 40);
        await s.applyEvents([e7, e8]);
        expect(await s.recentEvents('u1', 100)).toStrictEqual([e7, e4, e2, e3, e1]);
        for (let i = 0; i < 3; i++) {
          await s.applyEvents([ev(10 + i, 'u1', 'h', 'view', 1000 + i)]);
        }
        expect((await s.recentEvents('u1', 100)).map((e) => e.seq)).toEqual([12, 11, 10, 7, 4]);
      });

      it('skips events at or below the watermark, so replays change nothing', async () => {
        const s = await open();
        const batch = [
          ev(1, 'u1', 'a', 'view', NOW),
          ev(2, 'u1', 'b', 'purchase', NOW - DAY),
          ev(3, 'u2', 'a', 'click', NOW),
        ];
        await s.applyEvents(batch);
        expect(await s.watermarks()).toEqual({ events: 3, changes: 0 });
        const popularity = await s.popularity(['a', 'b'], NOW);
        const history = await s.recentEvents('u1', 10);

        await s.applyEvents(batch);
        await s.applyEvents([]);
        expect(await s.popularity(['a', 'b'], NOW)).toEqual(popularity);
        expect(await s.recentEvents('u1', 10)).toStrictEqual(history);
        expect(await s.watermarks()).toEqual({ events: 3, changes: 0 });

        // An overlapping batch: only the new tail applies (2 and 3 differ here to prove they are skipped).
        await s.applyEvents([
          ev(2, 'u1', 'zz', 'purchase', NOW),
          ev(3, 'u3', 'zz', 'purchase', NOW),
          ev(4, 'u1', 'a', 'view', NOW),
          ev(5, 'u3', 'c', 'view', NOW),
        ]);
        expect(await s.watermarks()).toEqual({ events: 5, changes: 0 });
        const [a, b, zz, c] = await s.popularity(['a', 'b', 'zz', 'c'], NOW);
        expectClose(a, popularity[0] + 1);
        expect(b).toBe(popularity[1]);
        expect(zz).toBe(0);
        expectClose(c, 1);
        expect((await s.recentEvents('u3', 10)).map((e) => e.seq)).toEqual([5]);
      });

      it('applies a 1,000-event batch exactly, and overlapping redeliveries of it idempotently', async () => {
        const next = lcg(7);
        const types = ['view', 'click', 'purchase', 'dislike', 'rating', 'impression'];
        const events: StoredEvent[] = [];
        for (let i = 1; i <= 1000; i++) {
          const type = types[Math.floor(next() * types.length)];
          events.push(
            ev(
              i,
              `u${Math.floor(next() * 40)}`,
              `i${Math.floor(next() * 25)}`,
              type,
              NOW - Math.floor(next() * 30 * DAY),
              {
                value: type === 'rating' ? 1 + Math.floor(next() * 5) : null,
              },
            ),
          );
        }
        // Reference: Σ w · 2^((t − now)/H), H = 7 days.
        const expected = new Map<string, number>();
        for (const e of events) {
          const spec = TYPES[e.type];
          let w = spec.negative ? 0 : spec.weight;
          if (spec.useValue) w = e.value! < spec.minValue! ? 0 : spec.weight * e.value!;
          if (w > 0)
            expected.set(
              e.itemId,
              (expected.get(e.itemId) ?? 0) + w * Math.pow(2, (e.timestamp - NOW) / (7 * DAY)),
            );
        }
        const newest = (u: string) =>
          events
            .filter((e) => e.userId === u)
            .sort((x, y) => y.timestamp - x.timestamp || y.seq - x.seq)
            .slice(0, 5);

        const whole = await open();
        await whole.applyEvents(events);
        const chunked = await open();
        for (const [from, to] of [
          [0, 400],
          [300, 700],
          [0, 1000],
          [650, 1000],
        ]) {
          await chunked.applyEvents(events.slice(from, to));
        }
        const ids = [...expected.keys()];
        for (const s of [whole, chunked]) {
          expect(await s.watermarks()).toEqual({ events: 1000, changes: 0 });
          expect(await s.popularCount()).toBe(expected.size);
          const scores = await s.popularity(ids, NOW);
          ids.forEach((id, i) => expectClose(scores[i], expected.get(id)!));
          for (const u of ['u0', 'u7', 'u39']) expect(await s.recentEvents(u, 100)).toStrictEqual(newest(u));
        }
      });

      it('drops the cached answers of the users in the batch only', async () => {
        const s = await open();
        await s.cacheSet('u1', 'k1', 'one', 60_000);
        await s.cacheSet('u1', 'k2', 'two', 60_000);
        await s.cacheSet('u2', 'k1', 'other', 60_000);
        await s.applyEvents([ev(1, 'u1', 'a', 'impression', NOW)]);
        expect(await s.cacheGet('u1', 'k1')).toBeNull();
        expect(await s.cacheGet('u1', 'k2')).toBeNull();
        expect(await s.cacheGet('u2', 'k1')).toBe('other');
      });

      it('stays finite over decades with a one-day half-life (the reference time is rebased)', async () => {
        const s = await open({ popularityHalfLifeDays: 1 });
        const T = 1_000_000_000_000;
        // 700 half-lives: past the point where 2^x would be allowed to grow, still representable when scaled.
        await s.applyEvents([ev(1, 'u1', 'a', 'view', T), ev(2, 'u1', 'b', 'view', T + 700 * DAY)]);
        const [a700, b700] = await s.popularity(['a', 'b'], T + 700 * DAY);
        expectClose(a700, Math.pow(2, -700));
        expectClose(b700, 1);

        const years20 = T + 7305 * DAY;
        await s.applyEvents([ev(3, 'u1', 'c', 'purchase', years20), ev(4, 'u2', 'c', 'view', years20 - DAY)]);
        const scores = await s.popularity(['a', 'b', 'c'], years20);
        for (const x of scores) expect(Number.isFinite(x)).toBe(true);
        expectClose(scores[2], 8.5);
        expect(scores[0]).toBeLessThan(1e-300);
        expect(scores[1]).toBeLessThan(1e-300);
        const top = await s.popular(0, 10, years20);
        expect(top[0].itemId).toBe('c');
        expectClose(top[0].score, 8.5);
        for (const entry of top) expect(Number.isFinite(entry.score) && entry.score > 0).toBe(true);

        const years40 = years20 + 7305 * DAY;
        await s.applyEvents([ev(5, 'u3', 'd', 'view', years40)]);
        const [c40, d40] = await s.popularity(['c', 'd'], years40 + DAY);
        expect(c40).toBeLessThan(1e-300);
        expectClose(d40, 0.5);
        expect((await s.popular(0, 1, years40))[0]).toEqual({
          itemId: 'd',
          score: expect.any(Number) as number,
        });
      });
    });

    describe('applyChanges', () => {
      it('drops the cached answers of a user whose record changed, and moves their cache version', async () => {
        const s = await open();
        const before = await s.cacheVersion('u1');
        await s.cacheSet('u1', 'k', 'computed from the old record', 60_000, before);
        await s.cacheSet('u2', 'k', 'other', 60_000);
        await s.applyChanges([rec(1, { kind: 'user', user: user('u1', false) })]);
        expect(await s.cacheGet('u1', 'k')).toBeNull();
        expect(await s.cacheGet('u2', 'k')).toBe('other');
        // An answer computed from the old record (version read before the change) is not stored.
        expect(await s.cacheVersion('u1')).not.toBe(before);
        await s.cacheSet('u1', 'k', 'late', 60_000, before);
        expect(await s.cacheGet('u1', 'k')).toBeNull();
        // A redelivered record changes nothing (below the watermark).
        const now = await s.cacheVersion('u1');
        await s.applyChanges([rec(1, { kind: 'user', user: user('u1', false) })]);
        expect(await s.cacheVersion('u1')).toBe(now);
      });

      it('lists the catalog ordered by id (code points) with paging; later changes replace earlier ones', async () => {
        const s = await open();
        const ids = ['b', 'a', 'A', 'é', '～', '😀', 'a10', 'a2'];
        await s.applyChanges([rec(1, { kind: 'items', items: ids.map((id) => item(id)) })]);
        const sorted = ['A', 'a', 'a10', 'a2', 'b', 'é', '～', '😀'];
        expect((await s.items(undefined, 100)).map((i) => i.id)).toEqual(sorted);

        const paged: string[] = [];
        let after: string | undefined;
        for (;;) {
          const page = await s.items(after, 3);
          if (page.length === 0) break;
          paged.push(...page.map((i) => i.id));
          after = page[page.length - 1].id;
        }
        expect(paged).toEqual(sorted);
        expect(await s.items('😀', 10)).toEqual([]);
        expect(await s.items(undefined, 0)).toEqual([]);
        expect((await s.items('b', Infinity)).map((i) => i.id)).toEqual(['é', '～', '😀']);
        expect((await s.items('a1', 2)).map((i) => i.id)).toEqual(['a10', 'a2']);

        const replaced = item('a', {
          categories: ['y', 'z'],
          available: false,
          attributes: { title: 'Crème brûlée — 東京 🍮', nested: { list: [1, 'two', null] } },
          updatedAt: 3000,
        });
        await s.applyChanges([
          rec(2, { kind: 'items', items: [item('a', { categories: ['x'] }), item('new')] }),
          rec(3, { kind: 'items', items: [replaced] }),
        ]);
        const listed = await s.items(undefined, 100);
        expect(listed.map((i) => i.id)).toEqual(['A', 'a', 'a10', 'a2', 'b', 'new', 'é', '～', '😀']);
        expect(listed[1]).toStrictEqual(replaced);
        expect(listed[0]).toStrictEqual(item('A'));
        expect(await s.watermarks()).toEqual({ events: 0, changes: 3 });
      });

      it('records opt-outs, the latest change winning', async () => {
        const s = await open();
        await s.applyChanges([
          rec(1, { kind: 'user', user: user('u1', true) }),
          rec(2, { kind: 'user', user: user('u2', true) }),
          rec(3, { kind: 'user', user: user('u2', false) }),
        ]);
        expect(await s.optedOut('u1')).toBe(true);
        expect(await s.optedOut('u2')).toBe(false);
        expect(await s.optedOut('u3')).toBe(false);
        expect(await s.watermarks()).toEqual({ events: 0, changes: 3 });
      });

      it('erase drops history, opt-out and cache, and subtracts exactly the erased popularity', async () => {
        const s = await open();
        const u1 = [
          ev(1, 'u1', 'a', 'view', NOW - DAY),
          ev(2, 'u1', 'a', 'purchase', NOW),
          ev(3, 'u1', 'b', 'view', NOW - 2 * DAY),
        ];
        const u2 = [ev(4, 'u2', 'a', 'view', NOW - 3 * DAY), ev(5, 'u2', 'c', 'click', NOW)];
        await s.applyEvents([...u1, ...u2, ev(6, 'u1', 'c', 'dislike', NOW)]);
        await s.applyChanges([rec(1, { kind: 'user', user: user('u1', true) })]);
        await s.cacheSet('u1', 'k', 'answer', 60_000);
        await s.cacheSet('u2', 'k', 'kept', 60_000);
        expect(await s.optedOut('u1')).toBe(true);

        await s.applyChanges([rec(2, { kind: 'erase', userId: 'u1', events: erased(u1) })]);
        expect(await s.recentEvents('u1', 10)).toEqual([]);
        expect(await s.optedOut('u1')).toBe(false);
        expect(await s.cacheGet('u1', 'k')).toBeNull();
        expect(await s.cacheGet('u2', 'k')).toBe('kept');
        expect((await s.recentEvents('u2', 10)).map((e) => e.seq)).toEqual([5, 4]);

        const [a, b, c] = await s.popularity(['a', 'b', 'c'], NOW);
        expectClose(a, Math.pow(2, -3 / 7));
        expect(b).toBe(0);
        expectClose(c, 2);
        expect((await s.popular(0, 10, NOW)).map((x) => x.itemId)).toEqual(['c', 'a']);
        expect(await s.popularCount()).toBe(2);
        expect(await s.watermarks()).toEqual({ events: 6, changes: 2 });
      });

      it('erase after a rebase leaves no residue and never goes below zero', async () => {
        const s = await open({ popularityHalfLifeDays: 1 });
        const T = 1_600_000_000_000;
        const tY = T + Math.round(0.3 * DAY);
        const now = T + Math.round(700.45 * DAY);
        const x = ev(1, 'u1', 'x', 'rating', T, { value: 3.3 });
        const y = ev(2, 'u2', 'y', 'rating', tY, { value: 3.7 });
        const z = ev(3, 'u3', 'z', 'click', now); // 700.45 half-lives later: rebases, rescaling every sum
        await s.applyEvents([x, y, z]);
        await s.applyChanges([rec(1, { kind: 'erase', userId: 'u1', events: erased([x]) })]);
        const [px, py, pz] = await s.popularity(['x', 'y', 'z'], now);
        expect(px).toBe(0);
        expectClose(py, 3.7 * Math.pow(2, (tY - now) / DAY));
        expectClose(pz, 2);
        expect((await s.popular(0, 10, now)).map((e) => e.itemId)).toEqual(['z', 'y']);
        expect(await s.popularCount()).toBe(2);

        // An erase claiming more than was ever added (and an unknown item) clamps at zero.
        await s.applyChanges([
          rec(2, {
            kind: 'erase',
            userId: 'u9',
            events: [
              { seq: 2, itemId: 'y', type: 'purchase', value: null, timestamp: tY },
              { seq: 3, itemId: 'nope', type: 'purchase', value: null, timestamp: now },
            ],
          }),
        ]);
        expect(await s.popularity(['y', 'nope'], now)).toEqual([0, 0]);
        expect((await s.popular(0, 10, now)).map((e) => e.itemId)).toEqual(['z']);
        expect(await s.popularCount()).toBe(1);
        // Erasing a user with no events, or before any popularity exists, is harmless.
        const fresh = await open();
        await fresh.applyChanges([rec(1, { kind: 'erase', userId: 'ghost', events: erased([x]) })]);
        expect(await fresh.popularCount()).toBe(0);
        expect(await fresh.watermarks()).toEqual({ events: 0, changes: 1 });
      });

      it('erase subtracts only events at or below the event watermark (the ones it counted)', async () => {
        const s = await open();
        const counted = ev(1, 'u1', 'a', 'purchase', NOW);
        const other = ev(2, 'u2', 'a', 'view', NOW - 7 * DAY);
        await s.applyEvents([counted, other]);
        const pending = ev(5, 'u1', 'a', 'click', NOW); // still on its way through the event log
        await s.applyChanges([rec(1, { kind: 'erase', userId: 'u1', events: erased([counted, pending]) })]);
        expectClose((await s.popularity(['a'], NOW))[0], 0.5);
        await s.applyChanges([rec(2, { kind: 'erase', userId: 'u2', events: erased([other]) })]);
        expect(await s.popularity(['a'], NOW)).toEqual([0]);
        expect(await s.popularCount()).toBe(0);
      });

      it('champion only moves the watermark', async () => {
        const s = await open();
        await s.applyChanges([rec(1, { kind: 'champion', version: 'v1' })]);
        expect(await s.watermarks()).toEqual({ events: 0, changes: 1 });
        expect(await s.items(undefined, 10)).toEqual([]);
        expect(await s.popularCount()).toBe(0);
      });

      it('skips records at or below the watermark', async () => {
        const s = await open();
        await s.applyChanges([
          rec(1, { kind: 'items', items: [item('a')] }),
          rec(2, { kind: 'user', user: user('u1', true) }),
        ]);
        await s.applyChanges([
          rec(1, { kind: 'items', items: [item('a', { available: false }), item('b')] }),
          rec(2, { kind: 'user', user: user('u1', false) }),
        ]);
        await s.applyChanges([]);
        expect(await s.items(undefined, 10)).toStrictEqual([item('a')]);
        expect(await s.optedOut('u1')).toBe(true);
        await s.applyChanges([
          rec(2, { kind: 'user', user: user('u1', false) }),
          rec(3, { kind: 'user', user: user('u2', true) }),
        ]);
        expect(await s.optedOut('u1')).toBe(true);
        expect(await s.optedOut('u2')).toBe(true);
        expect(await s.watermarks()).toEqual({ events: 0, changes: 3 });
      });
    });

    describe('abuse limits (maxEventWeight, maxUserItemWeight)', () => {
      const LIMITS = { maxEventWeight: 10, maxUserItemWeight: 16 };
      /** `n` purchases of `itemId` by `userId` at `timestamp`, seqs from `from`. */
      const purchases = (from: number, n: number, userId: string, itemId: string, timestamp: number) =>
        Array.from({ length: n }, (_, i) => ev(from + i, userId, itemId, 'purchase', timestamp));

      it('clamps each event to maxEventWeight, whatever its value', async () => {
        const s = await open({ maxEventWeight: 10 });
        await s.applyEvents([
          ev(1, 'u1', 'a', 'rating', NOW, { value: 1e308 }), // would be 1e308: clamped to 10
          ev(2, 'u2', 'b', 'rating', NOW, { value: 25 }), // 25 → 10
          ev(3, 'u3', 'c', 'rating', NOW, { value: 4 }), // under the limit: 4
          ev(4, 'u4', 'd', 'purchase', NOW), // 8
          ev(5, 'u5', 'e', 'rating', NOW, { value: 1e308 }),
          ev(6, 'u6', 'e', 'rating', NOW, { value: Number.MAX_VALUE }), // two of them: 20, not Infinity
        ]);
        const top = await s.popular(0, 10, NOW);
        expect(top.map((x) => x.itemId)).toEqual(['e', 'a', 'b', 'd', 'c']);
        expect(top.map((x) => x.score)).toEqual([20, 10, 10, 8, 4]);
        // No per-user cap configured: one user's repeats all count.
        await s.applyEvents(purchases(7, 5, 'u4', 'd', NOW));
        expect(await s.popularity(['d'], NOW)).toEqual([48]);
      });

      it("caps one user's decayed weight on one item at maxUserItemWeight, in order and out of order", async () => {
        const s = await open(LIMITS);
        // 1,000 purchases of one item by one user, over two batches: 8 + 8, then nothing more.
        await s.applyEvents(purchases(1, 500, 'u1', 'a', NOW));
        await s.applyEvents([...purchases(501, 500, 'u1', 'a', NOW), ev(1001, 'u1', 'd', 'purchase', NOW)]);
        await s.applyEvents([ev(1002, 'u2', 'a', 'purchase', NOW), ev(1003, 'u5', 'a', 'view', NOW)]);
        // A week apart (H = 7 days): 8 + 8 + 0 a week ago, worth 8 now, leave room for a full purchase.
        await s.applyEvents([
          ...purchases(1004, 3, 'u3', 'b', NOW - 7 * DAY),
          ev(1007, 'u3', 'b', 'purchase', NOW),
        ]);
        // Out of order. Now: 8 (holding 8 at NOW). A week earlier: the room at NOW (8) is worth 16 then, so
        // the whole 8 counts (4 at NOW; holding 12). A view: 1 (13). A rating of 10 two weeks earlier: the
        // room (3) is worth 12 then, so its 10 counts (2.5 at NOW; 15.5). A purchase now: the last 0.5.
        await s.applyEvents([
          ev(1008, 'u4', 'c', 'purchase', NOW),
          ev(1009, 'u4', 'c', 'purchase', NOW - 7 * DAY),
          ev(1010, 'u4', 'c', 'view', NOW),
          ev(1011, 'u4', 'c', 'rating', NOW - 14 * DAY, { value: 10 }),
          ev(1012, 'u4', 'c', 'purchase', NOW),
        ]);
        const [a, b, c, d] = await s.popularity(['a', 'b', 'c', 'd'], NOW);
        expectClose(a, 16 + 8 + 1);
        expectClose(b, 16);
        expectClose(c, 16);
        expectClose(d, 8);
        expect((await s.popular(0, 10, NOW)).map((x) => x.itemId)).toEqual(['a', 'b', 'c', 'd']);
        // Redelivered batches change nothing.
        await s.applyEvents(purchases(1, 500, 'u1', 'a', NOW));
        expect(await s.popularity(['a'], NOW)).toEqual([a]);
        expect(await s.watermarks()).toEqual({ events: 1012, changes: 0 });
      });

      it('erase subtracts exactly what the clamped and capped events added; the user starts afresh', async () => {
        const s = await open(LIMITS);
        const u1 = [
          ...purchases(1, 400, 'u1', 'a', NOW),
          ev(401, 'u1', 'a', 'rating', NOW - 3 * DAY, { value: 1e308 }),
          ev(402, 'u1', 'b', 'purchase', NOW),
        ];
        const u4 = [
          ev(403, 'u4', 'c', 'purchase', NOW),
          ev(404, 'u4', 'c', 'purchase', NOW - 7 * DAY),
          ev(405, 'u4', 'c', 'rating', NOW - 14 * DAY, { value: 10 }),
        ];
        await s.applyEvents(u1.slice(0, 200));
        await s.applyEvents([...u1.slice(200), ...u4, ev(406, 'u2', 'a', 'purchase', NOW - DAY)]);
        await s.applyEvents([ev(407, 'u3', 'c', 'view', NOW)]);
        // The erase record lists the events in any order.
        await s.applyChanges([
          rec(1, { kind: 'erase', userId: 'u1', events: erased([...u1].reverse()) }),
          rec(2, { kind: 'erase', userId: 'u4', events: erased(u4) }),
        ]);
        const [a, b, c] = await s.popularity(['a', 'b', 'c'], NOW);
        expectClose(a, 8 * Math.pow(2, -1 / 7));
        expect(b).toBe(0);
        expectClose(c, 1);
        expect((await s.popular(0, 10, NOW)).map((x) => x.itemId)).toEqual(['a', 'c']);
        expect(await s.popularCount()).toBe(2);
        // The erased user's holdings went with them: their next purchases count from nothing.
        await s.applyEvents(purchases(408, 3, 'u1', 'b', NOW));
        expectClose((await s.popularity(['b'], NOW))[0], 16);
      });

      it('keeps holdings in absolute time: a rebase changes nothing, and an erase after it leaves no residue', async () => {
        const s = await open({ ...LIMITS, popularityHalfLifeDays: 1 });
        const T = 1_600_000_000_000;
        const later = T + 700 * DAY; // past MAX_EXPONENT half-lives: the reference moves, sums are rescaled
        const u1 = [...purchases(1, 3, 'u1', 'a', T), ...purchases(5, 3, 'u1', 'a', later)];
        await s.applyEvents([...u1.slice(0, 3), ev(4, 'u2', 'b', 'view', T)]);
        await s.applyEvents(u1.slice(3));
        // 700 half-lives later the old holding is worth 16 · 2^-700: the cap leaves room for 16 again.
        expectClose((await s.popularity(['a'], later))[0], 16 + 16 * Math.pow(2, -700));
        await s.applyChanges([rec(1, { kind: 'erase', userId: 'u1', events: erased(u1) })]);
        expect(await s.popularity(['a'], later)).toEqual([0]);
        expect(await s.popularCount()).toBe(1);
      });
    });

    describe('item features and user metadata', () => {
      const withSegments = (id: string, segments: string[], attributes: JsonObject = {}): User => ({
        ...user(id, false),
        segments,
        attributes,
      });

      it('userMeta is null when unknown, the last PUT otherwise, and null again after an erase', async () => {
        const s = await open();
        expect(await s.userMeta('u1')).toBeNull();
        await s.applyChanges([
          rec(1, { kind: 'user', user: withSegments('u1', ['vip'], { country: 'FR' }) }),
          rec(2, { kind: 'user', user: withSegments('u2', ['eu']) }),
          rec(3, { kind: 'user', user: withSegments('u1', ['vip', 'new'], { country: 'DE', age: 30 }) }),
        ]);
        expect(await s.userMeta('u1')).toEqual({
          segments: ['vip', 'new'],
          attributes: { country: 'DE', age: 30 },
        });
        await s.applyChanges([rec(4, { kind: 'erase', userId: 'u1', events: [] })]);
        expect(await s.userMeta('u1')).toBeNull();
        expect(await s.userMeta('u2')).toEqual({ segments: ['eu'], attributes: {} });
      });

      it('folds every applied event once into its item state, with the acting user’s stored segments', async () => {
        const s = await open();
        expect(await s.itemFeatures([])).toEqual([]);
        expect(await s.itemFeatures(['a', 'b'])).toEqual([null, null]);
        const rand = lcg(11);
        const types = [
          'view',
          'view',
          'click',
          'purchase',
          'rating',
          'dislike',
          'impression',
          'not_configured',
        ];
        const events: StoredEvent[] = [];
        for (let i = 1; i <= 300; i++) {
          const type = types[Math.floor(rand() * types.length)];
          events.push(
            ev(i, `u${1 + Math.floor(rand() * 4)}`, `i${Math.floor(rand() * 6)}`, type, NOW + i * 3_600_000, {
              value: type === 'rating' ? 1 + Math.floor(rand() * 5) : null,
            }),
          );
        }
        // u1 changes segments after event 150; u3 has none; u4 is unknown to the state.
        const segmentsAt = (e: StoredEvent): string[] | undefined =>
          ({ u1: e.seq <= 150 ? ['vip'] : ['new'], u2: ['eu', 'vip'], u3: [] })[e.userId];
        await s.applyChanges([
          rec(1, { kind: 'user', user: withSegments('u1', ['vip']) }),
          rec(2, { kind: 'user', user: withSegments('u2', ['eu', 'vip']) }),
          rec(3, { kind: 'user', user: withSegments('u3', []) }),
        ]);
        for (let from = 0; from < events.length; from += 50) {
          if (from === 150)
            await s.applyChanges([rec(4, { kind: 'user', user: withSegments('u1', ['new']) })]);
          await s.applyEvents(events.slice(from, from + 50));
          // An overlapping redelivery (half old, half new) and a full replay change nothing more.
          await s.applyEvents(events.slice(Math.max(0, from - 25), from + 25));
          await s.applyEvents(events.slice(0, from + 50));
        }
        const offline = itemStatesAt(
          events.map((e): FeatureEvent => ({ ...e, segments: segmentsAt(e) })),
          Infinity,
          featureConfigOf(OPTIONS),
        );
        const ids = ['i5', 'zz', 'i0', 'i1', 'i2', 'i3', 'i4'];
        const online = await s.itemFeatures(ids);
        expect(online).toEqual(ids.map((id) => offline.get(id) ?? null));
        expect(online[0]!.decayed).toHaveLength(3); // config `features` defaults: [1, 7, 30]
        expect(Object.keys(online[2]!.segments).sort()).toEqual(['eu', 'new', 'vip']);
      });

      it('erase takes the user’s counted events out of the item states: as if only the others were seen', async () => {
        const rand = lcg(23);
        const types = ['view', 'view', 'click', 'purchase', 'rating', 'dislike', 'not_configured'];
        const events: StoredEvent[] = [];
        for (let i = 1; i <= 240; i++) {
          const type = types[Math.floor(rand() * types.length)];
          const userId = rand() < 0.5 ? 'uA' : 'uB';
          // i5 and i6 only ever see uA: no state is left for them.
          const itemId = `i${Math.floor(rand() * 5) + (userId === 'uA' && rand() < 0.2 ? 5 : 0)}`;
          events.push(
            ev(i, userId, itemId, type, NOW - Math.floor(rand() * 20 * DAY), {
              value: type === 'rating' ? 1 + Math.floor(rand() * 5) : null,
            }),
          );
        }
        const ofA = events.filter((e) => e.userId === 'uA');
        const ofB = events.filter((e) => e.userId === 'uB');
        const users = [
          rec(1, { kind: 'user', user: withSegments('uA', ['vip', 'eu']) }),
          rec(2, { kind: 'user', user: withSegments('uB', ['eu', 'new']) }),
        ];
        const s = await open();
        await s.applyChanges(users);
        for (let from = 0; from < events.length; from += 60)
          await s.applyEvents(events.slice(from, from + 60));
        // Still on its way through the event log: never folded, so never taken out.
        const pending = ev(500, 'uA', 'i0', 'purchase', NOW);
        await s.applyChanges([rec(3, { kind: 'erase', userId: 'uA', events: erased([...ofA, pending]) })]);
        // A redelivered erase is at or below the change watermark: nothing is taken out twice.
        await s.applyChanges([rec(3, { kind: 'erase', userId: 'uA', events: erased(ofA) })]);

        const onlyB = await open();
        await onlyB.applyChanges([users[1]]);
        await onlyB.applyEvents(ofB);

        const ids = ['i0', 'i1', 'i2', 'i3', 'i4', 'i5', 'i6'];
        const actual = await s.itemFeatures(ids);
        const expected = await onlyB.itemFeatures(ids);
        expect(expected.filter((x) => x !== null)).toHaveLength(5);
        const config = featureConfigOf(OPTIONS);
        ids.forEach((id, k) => {
          const [a, b] = [actual[k], expected[k]];
          if (b === null) {
            expect(a, id).toBeNull();
            return;
          }
          expect(a, id).not.toBeNull();
          expect([a!.counts, a!.segments], id).toEqual([b.counts, b.segments]);
          for (let i = 0; i < config.halfLivesDays.length; i++) {
            expectClose(decayedAt(a, i, NOW, config), decayedAt(b, i, NOW, config));
          }
        });
        // The erased user's segments are gone from every item; popularity agrees too.
        expect(actual.some((x) => x !== null && 'vip' in x.segments)).toBe(false);
        const [pa, pb] = [await s.popularity(ids, NOW), await onlyB.popularity(ids, NOW)];
        pb.forEach((p, k) => expectClose(pa[k], p));
        expect(await s.userMeta('uA')).toBeNull();
      });

      it('rejects unusable feature settings with CAIRN_CONFIG_INVALID naming the key', async () => {
        await expect(open({ features: { halfLivesDays: [], maxSegmentsPerItem: 4 } })).rejects.toMatchObject({
          code: 'CAIRN_CONFIG_INVALID',
          details: { fields: [{ field: 'features.halfLivesDays' }] },
        });
        await expect(
          open({ features: { halfLivesDays: [1], maxSegmentsPerItem: -1 } }),
        ).rejects.toMatchObject({
          code: 'CAIRN_CONFIG_INVALID',
          details: { fields: [{ field: 'features.maxSegmentsPerItem' }] },
        });
      });

      it('a state read is not changed by events applied after the read', async () => {
        const s = await open({ features: { halfLivesDays: [2], maxSegmentsPerItem: 1 } });
        await s.applyEvents([ev(1, 'u1', 'x', 'click', NOW)]);
        const [read] = await s.itemFeatures(['x']);
        const copy = structuredClone(read);
        await s.applyEvents([ev(2, 'u2', 'x', 'click', NOW + 1000)]);
        expect(read).toEqual(copy);
        expect((await s.itemFeatures(['x']))[0]!.counts).toEqual({ click: 2 });
      });

      it('clear() forgets feature states and user metadata', async () => {
        const s = await open({ features: { halfLivesDays: [2], maxSegmentsPerItem: 1 } });
        await s.applyChanges([rec(1, { kind: 'user', user: withSegments('u1', ['a', 'b']) })]);
        await s.applyEvents([ev(1, 'u1', 'x', 'click', NOW)]);
        expect(await s.itemFeatures(['x'])).toEqual([
          {
            firstSeen: NOW,
            lastSeen: NOW,
            counts: { click: 1 },
            decayed: [2],
            reference: NOW,
            segments: { a: { click: 1 } },
          },
        ]);
        await s.clear();
        expect(await s.itemFeatures(['x'])).toEqual([null]);
        expect(await s.userMeta('u1')).toBeNull();
      });
    });

    describe('cache', () => {
      it('stores a versioned answer only while the user’s cache version is the one it was computed at', async () => {
        const s = await open();
        const v1 = await s.cacheVersion('u1');
        const v2 = await s.cacheVersion('u2');
        // Unchanged: stored.
        await s.cacheSet('u1', 'k', 'fresh', 60_000, v1);
        expect(await s.cacheGet('u1', 'k')).toBe('fresh');
        expect(await s.cacheVersion('u1')).toBe(v1);
        // An event of u1's after the version was read (the answer was computed from the older history):
        // the set is dropped, and so are the answers cached before the event.
        await s.applyEvents([ev(1, 'u1', 'a', 'view', NOW)]);
        const v1b = await s.cacheVersion('u1');
        expect(v1b).not.toBe(v1);
        await s.cacheSet('u1', 'k', 'stale', 60_000, v1);
        expect(await s.cacheGet('u1', 'k')).toBeNull();
        // Another user's event leaves u2's version as it was.
        expect(await s.cacheVersion('u2')).toBe(v2);
        await s.cacheSet('u2', 'k', 'u2 answer', 60_000, v2);
        expect(await s.cacheGet('u2', 'k')).toBe('u2 answer');
        // A replayed event changes nothing, the version included.
        await s.applyEvents([ev(1, 'u1', 'a', 'view', NOW)]);
        expect(await s.cacheVersion('u1')).toBe(v1b);
        await s.cacheSet('u1', 'k', 'current', 60_000, v1b);
        expect(await s.cacheGet('u1', 'k')).toBe('current');
        // An erase: a version read before it never matches after it, even though the user's own counter
        // is forgotten with the rest of them.
        await s.applyChanges([
          rec(1, { kind: 'erase', userId: 'u1', events: erased([ev(1, 'u1', 'a', 'view', NOW)]) }),
        ]);
        await s.cacheSet('u1', 'k', 'from erased history', 60_000, v1b);
        expect(await s.cacheGet('u1', 'k')).toBeNull();
        const v1c = await s.cacheVersion('u1');
        expect([v1, v1b]).not.toContain(v1c);
        await s.cacheSet('u1', 'k', 'after erase', 60_000, v1c);
        expect(await s.cacheGet('u1', 'k')).toBe('after erase');
        // Unversioned sets are stored as before.
        await s.cacheSet('u1', 'k', 'unversioned', 60_000);
        expect(await s.cacheGet('u1', 'k')).toBe('unversioned');
      });

      it('never gives a version again after clear(), whatever is applied since', async () => {
        const s = await open();
        const seen = new Set<string>([await s.cacheVersion('u1')]);
        await s.applyEvents([ev(1, 'u1', 'a', 'view', NOW)]);
        seen.add(await s.cacheVersion('u1'));
        await s.applyEvents([ev(2, 'u1', 'b', 'view', NOW)]);
        seen.add(await s.cacheVersion('u1'));
        expect(seen.size).toBe(3);
        // A rebuild: the same events applied again (one batch each, as before). A process that kept what
        // a history gave under its version (serving/user-states.ts) must not find it under a new history.
        await s.clear();
        const after = [await s.cacheVersion('u1')];
        await s.applyEvents([ev(1, 'u1', 'c', 'view', NOW)]);
        after.push(await s.cacheVersion('u1'));
        await s.applyEvents([ev(2, 'u1', 'd', 'view', NOW)]);
        after.push(await s.cacheVersion('u1'));
        for (const v of after) expect(seen).not.toContain(v);
      });

      it('stores answers per user and key until their TTL passes', async () => {
        const s = await open();
        await s.cacheSet('u1', 'k', 'v1', 60_000);
        await s.cacheSet('u1', 'k2', 'v2 with: colons and ünïcode', 60_000);
        await s.cacheSet('u1', 'short', 's', 300);
        expect(await s.cacheGet('u1', 'k')).toBe('v1');
        expect(await s.cacheGet('u1', 'k2')).toBe('v2 with: colons and ünïcode');
        expect(await s.cacheGet('u1', 'short')).toBe('s');
        expect(await s.cacheGet('u2', 'k')).toBeNull();
        await s.cacheSet('u1', 'k', 'v1b', 60_000);
        expect(await s.cacheGet('u1', 'k')).toBe('v1b');

        await sleep(450);
        expect(await s.cacheGet('u1', 'short')).toBeNull();
        expect(await s.cacheGet('u1', 'k')).toBe('v1b');
        // A shorter TTL set later does not cut the longer-lived entries short.
        await s.cacheSet('u1', 'tiny', 't', 50);
        await sleep(150);
        expect(await s.cacheGet('u1', 'tiny')).toBeNull();
        expect(await s.cacheGet('u1', 'k2')).toBe('v2 with: colons and ünïcode');
        // A TTL of zero removes the entry.
        await s.cacheSet('u1', 'k', 'gone', 0);
        expect(await s.cacheGet('u1', 'k')).toBeNull();
      });

      it('expires many entries under one user independently', async () => {
        const s = await open();
        for (let i = 0; i < 40; i++) await s.cacheSet('u1', `short${i}`, `s${i}`, 100);
        await s.cacheSet('u1', 'long', 'l', 60_000);
        await sleep(250);
        for (let i = 0; i < 40; i++) await s.cacheSet('u1', `more${i}`, `m${i}`, 60_000);
        expect(await s.cacheGet('u1', 'short3')).toBeNull();
        expect(await s.cacheGet('u1', 'long')).toBe('l');
        expect(await s.cacheGet('u1', 'more39')).toBe('m39');
      });
    });

    it('clear() forgets everything, watermarks included', async () => {
      const s = await open();
      await s.applyEvents([ev(1, 'u1', 'a', 'view', NOW)]);
      await s.applyChanges([
        rec(1, { kind: 'items', items: [item('a')] }),
        rec(2, { kind: 'user', user: user('u1', true) }),
      ]);
      await s.cacheSet('u2', 'k', 'v', 60_000);
      await s.clear();
      expect(await s.watermarks()).toEqual({ events: 0, changes: 0 });
      expect(await s.recentEvents('u1', 10)).toEqual([]);
      expect(await s.optedOut('u1')).toBe(false);
      expect(await s.popularCount()).toBe(0);
      expect(await s.popular(0, 10, NOW)).toEqual([]);
      expect(await s.items(undefined, 10)).toEqual([]);
      expect(await s.cacheGet('u2', 'k')).toBeNull();
      // And works again from scratch.
      await s.applyEvents([ev(1, 'u1', 'b', 'click', NOW)]);
      expect(await s.popular(0, 10, NOW)).toEqual([{ itemId: 'b', score: 2 }]);
    });

    it('rejects calls after close() with CAIRN_UNAVAILABLE; close() is idempotent', async () => {
      const s = await open();
      await s.close();
      await expect(s.watermarks()).rejects.toMatchObject({ code: 'CAIRN_UNAVAILABLE' });
      await expect(s.applyEvents([ev(1, 'u1', 'a', 'view', NOW)])).rejects.toMatchObject({
        code: 'CAIRN_UNAVAILABLE',
      });
      await expect(s.close()).resolves.toBeUndefined();
    });
  });
}
