/**
 * The answer cache on the recommendation path: a hit is answered from the cache alone (no read of the
 * user's history, so its cost does not grow with the history); an event of the user's drops it; and an
 * answer computed from a history that an event overtook while it was being computed is never stored
 * (the cache version read before the history no longer matches). On the serving test world (memory
 * online state, a tiny ALS champion) behind a wrapper that counts history reads and can apply an event
 * in the middle of a request.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { systemContext } from '../domain/context.ts';
import type { StoredEvent } from '../domain/types.ts';
import type { Serving } from '../main/serving.ts';
import {
  createWorld,
  item,
  ITEM_IDS,
  onlineView,
  startWorldServing,
  type World,
} from '../../test/fixtures/serving-world.ts';
import { cacheTtlMs, Recommender } from './recommender.ts';

let world: World;
let serving: Serving;
let historyReads: number;
/** Run (once) right after the next history read: an event landing while the answer is computed. */
let afterHistoryRead: (() => Promise<void>) | null;
let seq = 1_000_000;

const purchase = (userId: string, itemId: string): StoredEvent => ({
  seq: ++seq,
  eventId: `cache-test-${seq}`,
  userId,
  itemId,
  type: 'purchase',
  value: null,
  timestamp: Date.now(),
  context: null,
});

/** The recommender's clock (epoch ms); the online state's expiry keeps the real one. */
let clock = Date.now();

/**
 * A recommender on the world's online state that counts history reads (and runs `afterHistoryRead`), with
 * `stored` told the TTL of every answer it stores and `staleSeconds` replacing serving.cacheStaleSeconds.
 * History reads are how these tests see an answer computed, so the user states that spare them
 * (serving.userStateEvents) are off unless `userStateEvents` is given.
 */
function recommender(
  options: { stored?: (ttlMs: number) => void; staleSeconds?: number; userStateEvents?: number } = {},
): Recommender {
  const online = world.online;
  const { serving: settings } = world.config;
  return new Recommender({
    now: () => clock,
    config: {
      ...world.config,
      serving: {
        ...settings,
        cacheStaleSeconds: options.staleSeconds ?? settings.cacheStaleSeconds,
        userStateEvents: options.userStateEvents ?? 0,
      },
    },
    online: onlineView(online, {
      cacheSet: (user, key, value, ttlMs, version) => {
        options.stored?.(ttlMs);
        return online.cacheSet(user, key, value, ttlMs, version);
      },
      recentEvents: async (user, limit) => {
        historyReads++;
        const history = await online.recentEvents(user, limit);
        const hook = afterHistoryRead;
        afterHistoryRead = null;
        if (hook) await hook();
        return history;
      },
    }),
    catalog: serving.catalogView,
    popular: serving.popular,
    metrics: world.metrics,
    logger: world.logger,
    champion: () => serving.champion.get(),
    predecessor: () => serving.champion.predecessor(),
  });
}

/** The recommender's answers so far by cache outcome (cairn_recommendation_cache_total). */
async function outcomes(): Promise<Record<string, number>> {
  return Object.fromEntries(
    (await world.metrics.recommendationCache.get()).values.map((v) => [String(v.labels.outcome), v.value]),
  );
}

/** Lets the background recomputation run until `reads` history reads happened (or fails the test). */
async function untilHistoryReads(reads: number): Promise<void> {
  for (let i = 0; i < 100 && historyReads < reads; i++) await new Promise((res) => setImmediate(res));
  expect(historyReads).toBe(reads);
}

beforeEach(async () => {
  world = await createWorld({ serving: { cacheTtlSeconds: 60 } });
  await world.registry.promote((await world.registerModel()).version);
  serving = await startWorldServing(world);
  serving.catalogView.upsert(ITEM_IDS.map((id) => item(id)));
  historyReads = 0;
  afterHistoryRead = null;
  clock = Date.now();
});

afterEach(async () => {
  await serving?.close();
  await world?.close();
});

describe('answer cache', () => {
  it('answers a repeated request from the cache without reading the history, until the user acts', async () => {
    const r = recommender();
    const ctx = systemContext();
    const first = await r.recommend(ctx, { userId: 'u3', k: 4 });
    expect(first.source).toBe('personalized');
    expect(historyReads).toBe(1);
    const again = await r.recommend(ctx, { userId: 'u3', k: 4 });
    expect(again.items).toEqual(first.items);
    expect(historyReads).toBe(1); // a hit: nothing but the cache read
    // Another user's event leaves u3's answer cached.
    await world.online.applyEvents([purchase('u4', first.items[0].itemId)]);
    await r.recommend(ctx, { userId: 'u3', k: 4 });
    expect(historyReads).toBe(1);
    // u3's own event: recomputed from the new history (the purchased item is no longer recommended).
    const bought = first.items[0].itemId;
    await world.online.applyEvents([purchase('u3', bought)]);
    const after = await r.recommend(ctx, { userId: 'u3', k: 4 });
    expect(historyReads).toBe(2);
    expect(after.items.map((i) => i.itemId)).not.toContain(bought);
  });

  it('serves one cached answer to many requests unchanged by their fields, until an item in it goes unavailable', async () => {
    const r = recommender();
    const ctx = systemContext();
    const first = await r.recommend(ctx, { userId: 'u3', k: 4 });
    const titled = await r.recommend(ctx, { userId: 'u3', k: 4, fields: ['title'] });
    expect(titled.items.map((i) => i.itemId)).toEqual(first.items.map((i) => i.itemId));
    expect(titled.items.every((i) => 'title' in i)).toBe(true);
    // The next hit gets the answer as stored: what the last one added is not in it.
    const again = await r.recommend(ctx, { userId: 'u3', k: 4 });
    expect(again.items).toEqual(first.items);
    expect(again.items.some((i) => 'title' in i)).toBe(false);
    expect(historyReads).toBe(1);
    // Its second item withdrawn: computed again, without it.
    const gone = first.items[1].itemId;
    serving.catalogView.upsert([item(gone, { available: false })]);
    const after = await r.recommend(ctx, { userId: 'u3', k: 4 });
    expect(historyReads).toBe(2);
    expect(after.items.map((i) => i.itemId)).not.toContain(gone);
    expect(await outcomes()).toMatchObject({ miss: 2, hit: 2 });
  });

  it('keeps an answer parsed for no longer than an answer lives in the store', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    try {
      const r = recommender({ staleSeconds: 30 });
      const lifetimeMs = (60 + 30) * 1000;
      const ctx = systemContext();
      await r.recommend(ctx, { userId: 'u3', k: 4 });
      await r.recommend(ctx, { userId: 'u3', k: 4 }); // a hit: parsed and kept
      const parsed = (r as unknown as { parsed: Map<string, unknown> }).parsed;
      expect(parsed.size).toBe(1);
      clock += lifetimeMs / 2;
      vi.advanceTimersByTime(lifetimeMs); // a sweep: younger than a lifetime, kept
      expect(parsed.size).toBe(1);
      clock += lifetimeMs / 2;
      vi.advanceTimersByTime(lifetimeMs); // a lifetime old: dropped (what an erase left is gone with it)
      expect(parsed.size).toBe(0);
      await r.close();
    } finally {
      vi.useRealTimers();
    }
  });

  it('caches a cold-start user’s answer, labelled as the fallback it is, until their record changes', async () => {
    serving.catalogView.upsert([
      item('i7', { categories: ['Drama'] }),
      item('i3', { categories: ['Comedy'] }),
    ]);
    const put = (genre: string, seq: number) =>
      world.online.applyChanges([
        {
          seq,
          value: {
            kind: 'user',
            user: {
              id: 'newbie',
              segments: [],
              attributes: { genre },
              optOut: false,
              createdAt: 1,
              updatedAt: 1,
            },
          },
        },
      ]);
    const r = recommender();
    const ctx = systemContext();
    await put('drama', 900_001);
    const first = await r.recommend(ctx, { userId: 'newbie', k: 3 });
    expect(first).toMatchObject({ source: 'fallback', fallbackReason: 'cold_start_user', degraded: false });
    expect(first.items[0]).toMatchObject({ itemId: 'i7', reason: 'Matches your interest in Drama' });
    const again = await r.recommend(ctx, { userId: 'newbie', k: 3 });
    expect(again).toMatchObject({
      source: 'fallback',
      fallbackReason: 'cold_start_user',
      degraded: false,
      modelVersion: first.modelVersion,
    });
    expect(again.items).toEqual(first.items);
    expect(await outcomes()).toEqual({ miss: 1, hit: 1 });
    // A new record of theirs drops it: the next answer is computed from the new attributes.
    await put('comedy', 900_002);
    const changed = await r.recommend(ctx, { userId: 'newbie', k: 3 });
    expect(changed.items[0]).toMatchObject({ itemId: 'i3', reason: 'Matches your interest in Comedy' });
    expect(await outcomes()).toEqual({ miss: 2, hit: 1 });
    // And their first event: then the model answers.
    await world.online.applyEvents([purchase('newbie', 'i3')]);
    expect((await r.recommend(ctx, { userId: 'newbie', k: 3 })).items).not.toEqual(changed.items);
    expect(await outcomes()).toEqual({ miss: 3, hit: 1 });
  });

  it('stores answers for the configured TTL shortened by up to a quarter, so answers stored together expire apart', async () => {
    const ttls: number[] = [];
    const r = recommender({ stored: (ttl) => ttls.push(ttl) });
    for (const userId of ['u1', 'u2', 'u3', 'u4', 'u5', 'u6'])
      await r.recommend(systemContext(), { userId, k: 3 });
    expect(ttls.length).toBeGreaterThan(3);
    // The store keeps each answer for its fresh time plus the stale window (30 s by default).
    for (const ttl of ttls) {
      expect(ttl - 30_000).toBeLessThanOrEqual(60_000);
      expect(ttl - 30_000).toBeGreaterThan(45_000);
    }
    expect(new Set(ttls).size).toBe(ttls.length);
    expect([cacheTtlMs(60, () => 0), cacheTtlMs(60, () => 0.5)]).toEqual([60_000, 52_500]);
  });

  it('does not store an answer computed from a history an event overtook meanwhile', async () => {
    const r = recommender();
    const ctx = systemContext();
    const plain = await r.recommend(ctx, { userId: 'u7', k: 4, exclude: ['x'] });
    const bought = plain.items[0].itemId;
    // The next computation reads the history, then u7 buys the top item before the answer is stored.
    afterHistoryRead = () => world.online.applyEvents([purchase('u7', bought)]);
    const raced = await r.recommend(ctx, { userId: 'u7', k: 4 });
    expect(raced.items.map((i) => i.itemId)).toContain(bought); // computed from the older history
    expect(historyReads).toBe(2);
    // Not served again from the cache: recomputed from the history that holds the purchase.
    const next = await r.recommend(ctx, { userId: 'u7', k: 4 });
    expect(historyReads).toBe(3);
    expect(next.items.map((i) => i.itemId)).not.toContain(bought);
  });

  it('serves an expired answer while it is computed again in the background, then the new one', async () => {
    const r = recommender();
    const ctx = systemContext();
    const first = await r.recommend(ctx, { userId: 'u5', k: 4 });
    expect(historyReads).toBe(1);
    // Past the TTL (60 s less up to a quarter), within the stale window (30 s by default).
    clock += 61_000;
    const stale = await r.recommend(ctx, { userId: 'u5', k: 4 });
    expect(stale.items).toEqual(first.items);
    expect(historyReads).toBe(1); // answered from the cache: nothing computed on the request
    await untilHistoryReads(2); // computed again after the answer was sent
    await r.close();
    // The new answer is fresh: a hit, nothing computed.
    const again = await r.recommend(ctx, { userId: 'u5', k: 4 });
    expect(again.items.map((i) => i.itemId)).toEqual(first.items.map((i) => i.itemId));
    expect(historyReads).toBe(2);
    // The background computation was not an answer: not counted as a miss.
    expect(await outcomes()).toEqual({ miss: 1, stale: 1, hit: 1 });
  });

  it('stores answers for their TTL plus the stale window, and serves none stale when it is 0', async () => {
    const ttls: number[] = [];
    for (const staleSeconds of [30, 0]) {
      const r = recommender({ stored: (ttl) => ttls.push(ttl), staleSeconds });
      const userId = `u${staleSeconds === 0 ? 6 : 7}`;
      historyReads = 0;
      await r.recommend(systemContext(), { userId, k: 3 });
      const ttl = ttls.at(-1)!;
      expect(ttl).toBeGreaterThan(45_000 + staleSeconds * 1000);
      expect(ttl).toBeLessThanOrEqual(60_000 + staleSeconds * 1000);
      if (staleSeconds === 0) {
        // Past the TTL by the recommender's clock, still held by the store's: never served as stale.
        clock += 61_000;
        await r.recommend(systemContext(), { userId, k: 3 });
        for (let i = 0; i < 20; i++) await new Promise((res) => setImmediate(res));
        expect(historyReads).toBe(1);
      }
      await r.close();
    }
  });

  it('after a newer champion, serves the replaced one’s answer under its own version while the new one is computed', async () => {
    const r = recommender();
    const ctx = systemContext();
    const old = serving.champion.get()!.version.version;
    const first = await r.recommend(ctx, { userId: 'u5', k: 4 });
    expect(first.modelVersion).toBe(old);
    await new Promise((res) => setTimeout(res, 5)); // a later training time
    const newer = await world.registerModel({ scrambled: true });
    await serving.champion.useVersion(newer.version);
    expect(serving.champion.predecessor()?.version).toBe(old);
    const handed = await r.recommend(ctx, { userId: 'u5', k: 4 });
    expect(handed.modelVersion).toBe(old); // what computed these items, not the champion now
    expect(handed.items).toEqual(first.items);
    expect(historyReads).toBe(1); // nothing computed on the request
    await untilHistoryReads(2); // the new champion's answer, in the background
    await r.close();
    const fresh = await r.recommend(ctx, { userId: 'u5', k: 4 });
    expect(fresh.modelVersion).toBe(newer.version);
    expect(historyReads).toBe(2);
    expect(await outcomes()).toEqual({ miss: 1, handover: 1, hit: 1 });
  });

  it('hands nothing over after a rollback, past an answer’s lifetime, or with no stale window', async () => {
    const ctx = systemContext();
    const old = serving.champion.get()!.version.version;
    await new Promise((res) => setTimeout(res, 5));
    const newer = await world.registerModel({ scrambled: true });
    // Rollback: the newer version served u6, then the older one is back: its answer must not return.
    await serving.champion.useVersion(newer.version);
    const r = recommender();
    expect((await r.recommend(ctx, { userId: 'u6', k: 4 })).modelVersion).toBe(newer.version);
    await serving.champion.useVersion(old);
    expect(serving.champion.predecessor()).toBeNull();
    expect((await r.recommend(ctx, { userId: 'u6', k: 4 })).modelVersion).toBe(old);
    expect(historyReads).toBe(2); // computed on the request
    // Forward again (the newer version replaces the older), but later than any answer lives (TTL 60 s,
    // stale window 30 s), or with the stale window off: computed on the request.
    await r.recommend(ctx, { userId: 'u7', k: 4 });
    await r.recommend(ctx, { userId: 'u8', k: 4 });
    await serving.champion.useVersion(newer.version);
    expect(serving.champion.predecessor()?.version).toBe(old);
    const noStale = recommender({ staleSeconds: 0 });
    expect((await noStale.recommend(ctx, { userId: 'u8', k: 4 })).modelVersion).toBe(newer.version);
    clock += 91_000;
    expect((await r.recommend(ctx, { userId: 'u7', k: 4 })).modelVersion).toBe(newer.version);
    expect(historyReads).toBe(6);
    expect((await outcomes()).handover).toBeUndefined();
    await r.close();
    await noStale.close();
  });
});

describe('user states (serving.userStateEvents)', () => {
  /** Lets the background recomputation run until `stores` answers were stored (or fails the test). */
  async function untilStored(counter: { stores: number }, stores: number): Promise<void> {
    for (let i = 0; i < 100 && counter.stores < stores; i++) await new Promise((res) => setImmediate(res));
    expect(counter.stores).toBe(stores);
  }

  it('computes an expired answer again without reading the history while the user did nothing, the same answer', async () => {
    const counter = { stores: 0 };
    const r = recommender({ userStateEvents: 10_000, stored: () => counter.stores++ });
    const plain = recommender();
    const ctx = systemContext();
    const first = await r.recommend(ctx, { userId: 'u5', k: 4 });
    expect(historyReads).toBe(1);
    clock += 61_000; // past the TTL, within the stale window
    await r.recommend(ctx, { userId: 'u5', k: 4 }); // stale: computed again in the background
    await untilStored(counter, 2);
    expect(historyReads).toBe(1); // computed from the user's state: no history read
    expect(await outcomes()).toEqual({ miss: 1, stale: 1 });
    const again = await r.recommend(ctx, { userId: 'u5', k: 4 });
    expect(await outcomes()).toEqual({ miss: 1, stale: 1, hit: 1 }); // the recomputed answer, fresh
    expect(again.items).toEqual(first.items);
    // What a recommender without user states computes from the history now: the same items and scores.
    const reference = await plain.recommend(ctx, { userId: 'u5', k: 4, explain: true });
    const kept = await r.recommend(ctx, { userId: 'u5', k: 4, explain: true }); // explained: computed
    expect(historyReads).toBe(2); // the reference's read only
    expect(kept.items).toEqual(reference.items);
    await plain.close();
  });

  it('reads the history again after the user’s next event, after an erase, and when the state is off', async () => {
    const r = recommender({ userStateEvents: 10_000 });
    const ctx = systemContext();
    const explained = { userId: 'u7', k: 4, explain: true } as const; // always computed
    const first = await r.recommend(ctx, explained);
    await r.recommend(ctx, explained);
    expect(historyReads).toBe(1);
    const bought = first.items[0].itemId;
    await world.online.applyEvents([purchase('u7', bought)]);
    const next = await r.recommend(ctx, explained);
    expect(historyReads).toBe(2);
    expect(next.items.map((i) => i.itemId)).not.toContain(bought);
    await world.online.applyChanges([{ seq: ++seq, value: { kind: 'erase', userId: 'u7', events: [] } }]);
    await r.recommend(ctx, explained);
    expect(historyReads).toBe(3);
    const off = recommender({ userStateEvents: 0 });
    await off.recommend(ctx, explained);
    await off.recommend(ctx, explained);
    expect(historyReads).toBe(5);
    await r.close();
    await off.close();
  });

  it('folds the user in again for another model version', async () => {
    const r = recommender({ userStateEvents: 10_000 });
    const plain = recommender();
    const ctx = systemContext();
    const explained = { userId: 'u3', k: 4, explain: true } as const;
    await r.recommend(ctx, explained);
    await new Promise((res) => setTimeout(res, 5));
    const newer = await world.registerModel({ scrambled: true });
    await serving.champion.useVersion(newer.version);
    const after = await r.recommend(ctx, explained);
    expect(historyReads).toBe(1); // the same history: read once
    expect(after.modelVersion).toBe(newer.version);
    expect(after.items).toEqual((await plain.recommend(ctx, explained)).items);
    await r.close();
    await plain.close();
  });
});
