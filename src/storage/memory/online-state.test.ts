import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import type { StoredEvent } from '../../domain/types.ts';
import { describeOnlineStateConformance } from '../conformance/online-state.conformance.ts';
import type { OnlineState, OnlineStateOptions } from '../ports.ts';
import { countLoopTurns } from '../../../test/fixtures/loop-turns.ts';
import { MemoryOnlineState } from './online-state.ts';

describeOnlineStateConformance('memory', (options) => Promise.resolve(new MemoryOnlineState(options)));

const DAY = 86_400_000;
const NOW = 1_700_000_000_000;
const OPTIONS: OnlineStateOptions = {
  types: { view: { weight: 1 }, purchase: { weight: 8 }, rating: { weight: 1, useValue: true } },
  popularityHalfLifeDays: 1,
  historyLimit: 4,
  // Low enough that the populated state's repeated purchases hit the per-user cap: holdings are snapshotted.
  maxEventWeight: 6,
  maxUserItemWeight: 10,
};

function ev(seq: number, userId: string, itemId: string, type: string, timestamp: number): StoredEvent {
  return {
    seq,
    eventId: `e${seq}`,
    userId,
    itemId,
    type,
    value: type === 'rating' ? 3.25 : null,
    timestamp,
    context: seq % 3 === 0 ? { page: 'p', n: [seq], s: 'é 😀' } : null,
  };
}

/** Everything a reader can observe, for comparing two states. */
async function observe(s: OnlineState, users: string[], items: string[], now: number) {
  return {
    watermarks: await s.watermarks(),
    popular: await s.popular(0, 1000, now),
    popularity: await s.popularity(items, now),
    count: await s.popularCount(),
    catalog: await s.items(undefined, 1000),
    histories: await Promise.all(users.map((u) => s.recentEvents(u, 100))),
    optedOut: await Promise.all(users.map((u) => s.optedOut(u))),
    itemFeatures: await s.itemFeatures(items),
    userMeta: await Promise.all(users.map((u) => s.userMeta(u))),
  };
}

/** A state with a bit of everything: rebased popularity, long histories, opt-outs, an erase, a catalog. */
async function populated(): Promise<{ state: MemoryOnlineState; users: string[]; items: string[] }> {
  const state = new MemoryOnlineState(OPTIONS);
  const users = ['u0', 'u1', 'u2', 'u3', 'ünï'];
  const items = ['a', 'b', 'c', 'd', '😀', 'never'];
  const events: StoredEvent[] = [];
  for (let i = 1; i <= 60; i++) {
    const t = NOW + (i < 50 ? i * 3600_000 : 800 * DAY + i * 60_000); // the late ones force a rebase
    events.push(ev(i, users[i % users.length], items[i % 5], ['view', 'purchase', 'rating'][i % 3], t));
  }
  await state.applyEvents(events.slice(0, 30));
  await state.applyEvents(events.slice(30));
  await state.applyChanges([
    {
      seq: 1,
      value: {
        kind: 'items',
        items: items.map((id) => ({
          id,
          categories: ['x'],
          attributes: { id },
          available: id !== 'b',
          createdAt: 1,
          updatedAt: 2,
        })),
      },
    },
    {
      seq: 2,
      value: {
        kind: 'user',
        user: {
          id: 'u1',
          attributes: { tier: 'gold' },
          segments: ['vip'],
          optOut: true,
          createdAt: 1,
          updatedAt: 1,
        },
      },
    },
    {
      seq: 3,
      value: {
        kind: 'erase',
        userId: 'u2',
        events: events
          .filter((e) => e.userId === 'u2')
          .map(({ seq, itemId, type, value, timestamp }) => ({ seq, itemId, type, value, timestamp })),
      },
    },
  ]);
  await state.cacheSet('u0', 'k', 'v', 60_000);
  return { state, users, items };
}

describe('MemoryOnlineState snapshots', () => {
  it('round-trips every observable part of the state (the cache excepted) and keeps evolving identically', async () => {
    const { state, users, items } = await populated();
    const later = NOW + 801 * DAY;
    const bytes = state.snapshot();
    expect(Buffer.isBuffer(bytes)).toBe(true);
    const restored = MemoryOnlineState.restore(bytes, OPTIONS);
    expect(await observe(restored, users, items, later)).toStrictEqual(
      await observe(state, users, items, later),
    );
    expect((await observe(state, users, items, later)).popular.length).toBeGreaterThan(0);
    expect((await observe(state, users, items, later)).itemFeatures.filter(Boolean).length).toBe(4);
    expect(await restored.userMeta('u1')).toEqual({ segments: ['vip'], attributes: { tier: 'gold' } });
    expect(await restored.cacheGet('u0', 'k')).toBeNull();
    expect(restored.snapshot().equals(bytes)).toBe(true);

    // u0 holds most of the cap on `a` from its late events: the restored holdings must limit these alike.
    const late = NOW + 800 * DAY + 61 * 60_000;
    const more = [
      ev(61, 'u0', 'c', 'purchase', later),
      ev(62, 'u9', 'new', 'view', later + 1),
      ev(63, 'u0', 'a', 'purchase', late),
      ev(64, 'u0', 'a', 'purchase', late - 3600_000),
      ev(65, 'u1', 'c', 'view', later + 2), // folded with u1's restored segments
    ];
    const [before] = await state.popularity(['a'], late);
    await state.applyEvents(more);
    await restored.applyEvents(more);
    expect(await observe(restored, [...users, 'u9'], [...items, 'new'], later)).toStrictEqual(
      await observe(state, [...users, 'u9'], [...items, 'new'], later),
    );
    // The restored holdings did bite: u0 was at its cap on `a`, so 63 and 64 added next to nothing, where a
    // user without holdings adds the whole cap (10).
    const added = (await state.popularity(['a'], late))[0] - before;
    expect(added).toBeGreaterThanOrEqual(0);
    expect(added).toBeLessThan(0.1);
    const fresh = new MemoryOnlineState(OPTIONS);
    await fresh.applyEvents(more.slice(2));
    expect(Math.abs((await fresh.popularity(['a'], late))[0] - 10)).toBeLessThan(1e-9);
  });

  it('writes the same bytes in slices with the event loop free in between, while the state goes on changing', async () => {
    const { state, users, items } = await populated();
    const whole = state.snapshot();
    // Slices of 0 ms: a turn of the event loop after every user and item.
    const turns = countLoopTurns();
    const sliced = state.snapshotInSlices(0);
    let written = false;
    void sliced.then(() => (written = true));
    // Applied at once while it runs, changing every part it holds: histories and holdings (u0 is at its
    // cap on `a`), item feature states, popularity, a new user, a user record, an erase, the catalog.
    const late = NOW + 900 * DAY;
    await state.applyEvents([
      ev(500, 'u0', 'a', 'purchase', late),
      ev(501, 'u3', 'c', 'rating', late),
      ev(502, 'newcomer', 'd', 'view', late),
    ]);
    const u4 = (await state.recentEvents('ünï', 100)).map(({ seq, itemId, type, value, timestamp }) => ({
      seq,
      itemId,
      type,
      value,
      timestamp,
    }));
    await state.applyChanges([
      { seq: 500, value: { kind: 'erase', userId: 'ünï', events: u4 } },
      {
        seq: 501,
        value: {
          kind: 'user',
          user: { id: 'u0', attributes: {}, segments: ['new'], optOut: true, createdAt: 1, updatedAt: 3 },
        },
      },
      {
        seq: 502,
        value: {
          kind: 'items',
          items: [{ id: 'a', categories: [], attributes: {}, available: false, createdAt: 1, updatedAt: 9 }],
        },
      },
    ]);
    expect(written).toBe(false);
    expect(await state.watermarks()).toEqual({ events: 502, changes: 502 });
    // The state as it was when the snapshot started.
    expect((await sliced).equals(whole)).toBe(true);
    turns.stop();
    expect(turns.count).toBeGreaterThan(10);
    // And the state as it is now, in the next one.
    const now = state.snapshot();
    expect(now.equals(whole)).toBe(false);
    const later = NOW + 901 * DAY;
    expect(
      await observe(MemoryOnlineState.restore(now, OPTIONS), [...users, 'newcomer'], items, later),
    ).toStrictEqual(await observe(state, [...users, 'newcomer'], items, later));
    expect(await state.recentEvents('ünï', 10)).toEqual([]);
    // Closed while it runs: it fails rather than return a truncated snapshot.
    const cut = state.snapshotInSlices(0);
    await state.close();
    await expect(cut).rejects.toMatchObject({ code: 'CAIRN_UNAVAILABLE' });
  });

  it('writes whole snapshots after one much smaller or much larger, and keeps no unused buffer', async () => {
    const state = new MemoryOnlineState(OPTIONS);
    const events = (from: number, users: number) =>
      Array.from({ length: 4000 }, (_, i) =>
        ev(from + i, `user-${i % users}`, `item-${i % 97}`, ['view', 'purchase'][i % 2], NOW + i * 1000),
      );
    await state.applyEvents(events(1, 50).slice(0, 200));
    const small = await state.snapshotInSlices(0, 0);
    // Over twice the size of the last one: the writer (presized from it) grows past it.
    await state.applyEvents(events(201, 400));
    const large = await state.snapshotInSlices(0, 0);
    expect(large.length).toBeGreaterThan(small.length * 4);
    expect(large.equals(state.snapshot())).toBe(true);
    const users = Array.from({ length: 400 }, (_, u) => `user-${u}`);
    const items = Array.from({ length: 97 }, (_, i) => `item-${i}`);
    const at = NOW + 5000 * 1000;
    expect(await observe(MemoryOnlineState.restore(large, OPTIONS), users, items, at)).toStrictEqual(
      await observe(state, users, items, at),
    );
    // Most users erased: far smaller than the last one, and not held in a buffer sized for that.
    const erased = [];
    for (let u = 10; u < 400; u++) {
      const gone = (await state.recentEvents(`user-${u}`, 1000)).map(
        ({ seq, itemId, type, value, timestamp }) => ({ seq, itemId, type, value, timestamp }),
      );
      erased.push({ seq: 1000 + u, value: { kind: 'erase' as const, userId: `user-${u}`, events: gone } });
    }
    await state.applyChanges(erased);
    const shrunk = await state.snapshotInSlices(0, 0);
    expect(shrunk.length).toBeLessThan(large.length / 4);
    expect(shrunk.buffer.byteLength).toBeLessThan(large.length / 2);
    expect(shrunk.equals(state.snapshot())).toBe(true);
    expect(await observe(MemoryOnlineState.restore(shrunk, OPTIONS), users, items, at)).toStrictEqual(
      await observe(state, users, items, at),
    );
  });

  it('snapshots an empty state', async () => {
    const restored = MemoryOnlineState.restore(new MemoryOnlineState(OPTIONS).snapshot(), OPTIONS);
    expect(await restored.watermarks()).toEqual({ events: 0, changes: 0 });
    expect(await restored.popularCount()).toBe(0);
    await restored.applyEvents([ev(1, 'u', 'a', 'view', NOW)]);
    expect(await restored.popularity(['a'], NOW)).toEqual([1]);
  });

  it('restores under a smaller history limit by keeping the newest events', async () => {
    const { state } = await populated();
    const restored = MemoryOnlineState.restore(state.snapshot(), { ...OPTIONS, historyLimit: 2 });
    expect(await restored.recentEvents('u0', 10)).toStrictEqual(
      (await state.recentEvents('u0', 10)).slice(0, 2),
    );
  });

  it('refuses snapshots it cannot trust with CAIRN_UNSUPPORTED and the reason', async () => {
    const { state } = await populated();
    const bytes = state.snapshot();
    const reason = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        expect(e).toMatchObject({ code: 'CAIRN_UNSUPPORTED' });
        return (e as { details: { reason: string } }).details.reason;
      }
      throw new Error('restore did not fail');
    };
    expect(reason(() => MemoryOnlineState.restore(bytes, { ...OPTIONS, popularityHalfLifeDays: 2 }))).toBe(
      'settings',
    );
    const otherWeights = { ...OPTIONS, types: { ...OPTIONS.types, view: { weight: 2 } } };
    expect(reason(() => MemoryOnlineState.restore(bytes, otherWeights))).toBe('settings');
    expect(reason(() => MemoryOnlineState.restore(bytes, { ...OPTIONS, historyLimit: 5 }))).toBe('settings');
    expect(reason(() => MemoryOnlineState.restore(bytes, { ...OPTIONS, maxEventWeight: 7 }))).toBe(
      'settings',
    );
    const otherFeatures = { ...OPTIONS, features: { halfLivesDays: [1, 7], maxSegmentsPerItem: 32 } };
    expect(reason(() => MemoryOnlineState.restore(bytes, otherFeatures))).toBe('settings');
    expect(reason(() => MemoryOnlineState.restore(bytes, { ...OPTIONS, maxUserItemWeight: undefined }))).toBe(
      'settings',
    );

    const flipped = Buffer.from(bytes);
    flipped[flipped.length >> 1] ^= 0x40;
    expect(reason(() => MemoryOnlineState.restore(flipped, OPTIONS))).toBe('checksum');
    expect(reason(() => MemoryOnlineState.restore(bytes.subarray(0, bytes.length - 10), OPTIONS))).toBe(
      'checksum',
    );
    expect(reason(() => MemoryOnlineState.restore(Buffer.from('{"not":"a snapshot"}'), OPTIONS))).toBe(
      'format',
    );

    // A future version with a valid checksum.
    const future = Buffer.from(bytes);
    future.writeUInt32LE(bytes.readUInt32LE(8) + 1, 8);
    future.writeUInt32LE(crc32(future.subarray(0, future.length - 4)), future.length - 4);
    expect(reason(() => MemoryOnlineState.restore(future, OPTIONS))).toBe('version');
  });
});

describe('MemoryOnlineState', () => {
  it('reports invalid options by key', () => {
    expect(() => new MemoryOnlineState({ ...OPTIONS, historyLimit: 0 })).toThrow(
      expect.objectContaining({ code: 'CAIRN_CONFIG_INVALID' }),
    );
    expect(() => new MemoryOnlineState({ ...OPTIONS, popularityHalfLifeDays: 0 })).toThrow(
      expect.objectContaining({ code: 'CAIRN_CONFIG_INVALID' }),
    );
    expect(() => new MemoryOnlineState({ ...OPTIONS, maxUserItemWeight: 0 })).toThrow(
      expect.objectContaining({
        code: 'CAIRN_CONFIG_INVALID',
        details: { fields: [{ field: 'events.maxUserItemWeight', message: 'must be a positive number' }] },
      }),
    );
  });

  it('keeps its own copy of catalog items', async () => {
    const s = new MemoryOnlineState(OPTIONS);
    const item = {
      id: 'a',
      categories: ['x'],
      attributes: { n: 1 },
      available: true,
      createdAt: 1,
      updatedAt: 1,
    };
    await s.applyChanges([{ seq: 1, value: { kind: 'items', items: [item] } }]);
    item.categories.push('mutated');
    item.attributes.n = 2;
    expect(await s.items(undefined, 1)).toStrictEqual([{ ...item, categories: ['x'], attributes: { n: 1 } }]);
  });

  it('keeps at most historyLimit events per user visible under long out-of-order streams', async () => {
    const s = new MemoryOnlineState(OPTIONS);
    const events: StoredEvent[] = [];
    for (let i = 1; i <= 200; i++) events.push(ev(i, 'u', 'a', 'view', NOW + ((i * 37) % 101) * 1000));
    for (let i = 0; i < events.length; i += 7) await s.applyEvents(events.slice(i, i + 7));
    const expected = [...events].sort((x, y) => y.timestamp - x.timestamp || y.seq - x.seq).slice(0, 4);
    expect(await s.recentEvents('u', 100)).toStrictEqual(expected);
  });
});
