/**
 * Proof of no train/serve skew in the feature store: generated demo data (users with segments, items with
 * prices and categories) is applied to the online state (memory and the real Redis, under a unique key
 * prefix) in log order, in batches; at sampled times the online item states and user histories are
 * compared with the offline point-in-time replay (`itemStatesAt`, `userEventsAt`) over the same events,
 * and so are the ranking vectors `RankingFeatures.fill` builds from each.
 *
 * Equality is exact when the log is in time order (the demo generator's): both sides fold the same events
 * in the same order with the same code. When some events arrive late (log order ≠ time order), the offline
 * replay folds in (timestamp, seq) order and the online state in log order: the decayed sums are then added
 * in another order (and rebased at other points), which changes their last bits, so decayed values and the
 * vectors are compared within 1e-9 relative there, and everything else (counts, segments, first/last seen,
 * user features) exactly.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.ts';
import type { StoredEvent, User } from '../../src/domain/types.ts';
import type { FeatureEvent, ItemFeatureState, ItemMeta } from '../../src/features/definitions.ts';
import { decayedAt, featureConfigOf, itemStatesAt } from '../../src/features/item-state.ts';
import { RankingFeatures } from '../../src/features/ranking.ts';
import { userEventsAt } from '../../src/features/user-features.ts';
import { generateDemoData } from '../../src/ingest/demo-data.ts';
import { onlineStateOptions } from '../../src/main/adapters.ts';
import { MemoryOnlineState } from '../../src/storage/memory/online-state.ts';
import type { OnlineState, OnlineStateOptions } from '../../src/storage/ports.ts';
import { RedisOnlineState } from '../../src/storage/redis/online-state.ts';

const url = process.env.CAIRN_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const run = randomBytes(4).toString('hex');
const prefixes: string[] = [];

afterAll(async () => {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await client.connect();
  try {
    for (const prefix of prefixes) {
      let cursor = '0';
      do {
        const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length > 0) await client.del(...keys);
      } while (cursor !== '0');
    }
  } finally {
    await client.quit();
  }
});

// The configured defaults (event types, limits, `features`), with a short history so that it is trimmed.
const config = loadConfig({ env: {}, overrides: { serving: { historyLimit: 40 } } });
const OPTIONS: OnlineStateOptions = onlineStateOptions(config);
const FEATURES = featureConfigOf(OPTIONS);
const BATCH = 700;

const demo = generateDemoData({ users: 150, items: 120, events: 12_000, seed: 5, days: 60 });
const USERS: User[] = demo.users.map((u) => ({
  id: u.id,
  attributes: u.attributes,
  segments: u.segments,
  optOut: false,
  createdAt: demo.startTime,
  updatedAt: demo.startTime,
}));
const SEGMENTS = new Map(USERS.map((u) => [u.id, u.segments]));
const ITEMS = new Map<string, ItemMeta>(
  demo.items.map((i) => [
    i.id,
    { categories: i.categories, price: i.attributes.price, createdAt: i.created_at },
  ]),
);
const categoriesOf = (id: string): readonly string[] => ITEMS.get(id)?.categories ?? [];
const priceOf = (id: string): number | null => ITEMS.get(id)?.price ?? null;

/** The demo events in log order (seq = position), time order. */
const IN_TIME_ORDER: StoredEvent[] = [...demo.events()].map((e, i) => ({
  seq: i + 1,
  eventId: e.event_id,
  userId: e.user_id,
  itemId: e.item_id,
  type: e.type,
  value: e.value ?? null,
  timestamp: e.timestamp,
  context: null,
}));

/** The same events with every 17th delivered ~1,000 positions late (log order ≠ time order), seqs renumbered. */
function lateDelivery(events: StoredEvent[]): StoredEvent[] {
  const late: { at: number; e: StoredEvent }[] = [];
  const onTime: StoredEvent[] = [];
  events.forEach((e, i) => (i % 17 === 3 ? late.push({ at: i + 1000, e }) : onTime.push(e)));
  const out: StoredEvent[] = [];
  let l = 0;
  for (let i = 0; i < onTime.length; i++) {
    while (l < late.length && late[l].at <= i) out.push(late[l++].e);
    out.push(onTime[i]);
  }
  while (l < late.length) out.push(late[l++].e);
  return out.map((e, i) => ({ ...e, seq: i + 1 }));
}

const withSegments = (e: StoredEvent): FeatureEvent & { userId: string } => ({
  ...e,
  segments: SEGMENTS.get(e.userId),
});

/** Deterministic stand-in retriever signals (inputs of `fill`, the same on both sides). */
function signalsFor(userIdx: number, itemIdx: number): Map<string, { score: number; rank: number }> {
  const m = new Map<string, { score: number; rank: number }>();
  if ((userIdx + itemIdx) % 3 !== 0)
    m.set('als', { score: 1 / (1 + ((userIdx * 7 + itemIdx) % 50)), rank: 1 + (itemIdx % 50) });
  if (itemIdx % 2 === 0) m.set('popular', { score: itemIdx / 10, rank: 1 + (itemIdx >> 1) });
  return m;
}

const ranking = new RankingFeatures({ config: FEATURES, retrievers: ['als', 'popular'] });
const SAMPLE_USERS = USERS.filter((_, i) => i % 10 === 0).map((u) => u.id);
const SAMPLE_ITEMS = [...ITEMS.keys()].filter((_, i) => i % 4 === 0);

/** Ranking vectors of SAMPLE_USERS × SAMPLE_ITEMS, one row per pair, from the given inputs. */
function vectors(
  now: number,
  history: (userId: string) => readonly FeatureEvent[],
  meta: (userId: string) => { segments: readonly string[]; attributes: Record<string, unknown> } | null,
  state: (itemId: string) => ItemFeatureState | null,
): Float32Array {
  const n = ranking.names.length;
  const out = new Float32Array(SAMPLE_USERS.length * SAMPLE_ITEMS.length * n);
  let row = 0;
  SAMPLE_USERS.forEach((userId, u) => {
    const ctx = ranking.userContext(history(userId), meta(userId), now, categoriesOf, priceOf);
    SAMPLE_ITEMS.forEach((itemId, i) => {
      ranking.fill(out, row++ * n, ctx, itemId, state(itemId), ITEMS.get(itemId)!, signalsFor(u, i), now);
    });
  });
  return out;
}

/** Everything online at a sample: item states of every item, user histories and metadata of the sample. */
async function readOnline(state: OnlineState) {
  const ids = [...ITEMS.keys()];
  const states = await state.itemFeatures(ids);
  const histories = new Map<string, StoredEvent[]>();
  const metas = new Map<string, Awaited<ReturnType<OnlineState['userMeta']>>>();
  for (const u of SAMPLE_USERS) {
    histories.set(u, await state.recentEvents(u, OPTIONS.historyLimit));
    metas.set(u, await state.userMeta(u));
  }
  return { states: new Map(ids.map((id, i) => [id, states[i]])), histories, metas };
}

function expectRelClose(a: Float32Array | number[], b: Float32Array | number[], relative: number): void {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i]) || Number.isNaN(b[i])) {
      expect([i, Number.isNaN(a[i])]).toEqual([i, Number.isNaN(b[i])]);
      continue;
    }
    const d = Math.abs(a[i] - b[i]) / Math.max(Math.abs(a[i]), Math.abs(b[i]), Number.MIN_VALUE);
    if (a[i] !== b[i]) worst = Math.max(worst, d);
  }
  expect(worst).toBeLessThanOrEqual(relative);
}

/** Applies `log` in batches, stopping at each sample position to compare online with offline. */
async function replayAndCompare(state: OnlineState, log: StoredEvent[], exact: boolean): Promise<number> {
  await state.applyChanges(USERS.map((user, i) => ({ seq: i + 1, value: { kind: 'user' as const, user } })));
  // Sample positions: a few batch boundaries and a few positions inside batches.
  const samples = [1500, 3100, 3101, 6000, 8765, log.length];
  let applied = 0;
  let compared = 0;
  for (const position of samples) {
    while (applied < position) {
      const next = Math.min(position, applied + BATCH);
      await state.applyEvents(log.slice(applied, next));
      applied = next;
    }
    // A redelivered batch changes nothing.
    await state.applyEvents(log.slice(Math.max(0, applied - BATCH), applied));
    const seen = log.slice(0, applied);
    // Offline time: the newest event applied. In a time-ordered log these are exactly the events up to it.
    const at = seen.reduce((m, e) => Math.max(m, e.timestamp), -Infinity);
    if (exact) expect(seen).toEqual(log.filter((e) => e.timestamp <= at).slice(0, applied));
    const offline = itemStatesAt(seen.map(withSegments), at, FEATURES);
    const online = await readOnline(state);

    for (const [id, s] of online.states) {
      const o = offline.get(id) ?? null;
      if (exact) expect(s, id).toEqual(o);
      else if (s === null || o === null) expect(s).toEqual(o);
      else {
        expect([s.firstSeen, s.lastSeen, s.counts, s.segments]).toEqual([
          o.firstSeen,
          o.lastSeen,
          o.counts,
          o.segments,
        ]);
        const d = FEATURES.halfLivesDays.map((_, i) => decayedAt(s, i, at, FEATURES));
        expectRelClose(
          d,
          FEATURES.halfLivesDays.map((_, i) => decayedAt(o, i, at, FEATURES)),
          1e-9,
        );
      }
    }
    const byUser = new Map<string, StoredEvent[]>();
    for (const e of seen) {
      const list = byUser.get(e.userId) ?? [];
      list.push(e);
      byUser.set(e.userId, list);
    }
    for (const u of SAMPLE_USERS) {
      expect(online.histories.get(u)).toEqual(userEventsAt(byUser.get(u) ?? [], at, OPTIONS.historyLimit));
      expect(online.metas.get(u)).toEqual({
        segments: SEGMENTS.get(u),
        attributes: USERS.find((x) => x.id === u)!.attributes,
      });
    }

    for (const now of [at, at + 3_600_000 * 5]) {
      const fromOnline = vectors(
        now,
        (u) => online.histories.get(u)!,
        (u) => online.metas.get(u) ?? null,
        (id) => online.states.get(id) ?? null,
      );
      const fromOffline = vectors(
        now,
        (u) => userEventsAt(byUser.get(u) ?? [], at, OPTIONS.historyLimit),
        (u) => ({ segments: SEGMENTS.get(u)!, attributes: {} }),
        (id) => offline.get(id) ?? null,
      );
      if (exact) expect(Buffer.from(fromOnline.buffer).equals(Buffer.from(fromOffline.buffer))).toBe(true);
      else expectRelClose(fromOnline, fromOffline, 1e-9);
      // Not a vacuous comparison: the rows carry item and user signal.
      expect(
        fromOnline.some((v, i) => ranking.names[i % ranking.names.length] === 'item_decayed_7d' && v > 0),
      ).toBe(true);
    }
    compared++;
  }
  return compared;
}

const adapters: [string, () => Promise<OnlineState>][] = [
  ['memory', () => Promise.resolve(new MemoryOnlineState(OPTIONS))],
  [
    'redis',
    () => {
      const keyPrefix = `cairn-test:features:${run}:${prefixes.length}:`;
      prefixes.push(keyPrefix);
      return RedisOnlineState.open({ ...OPTIONS, url, keyPrefix });
    },
  ],
];

describe.each(adapters)('features online == offline: %s', (_name, open) => {
  it('log in time order: item states, histories and vectors are identical at every sample', async () => {
    const state = await open();
    try {
      expect(await replayAndCompare(state, IN_TIME_ORDER, true)).toBe(6);
    } finally {
      await state.close();
    }
  });

  it('late deliveries: counts exact, decayed sums and vectors within 1e-9 relative (summation order)', async () => {
    const state = await open();
    try {
      expect(await replayAndCompare(state, lateDelivery(IN_TIME_ORDER), false)).toBe(6);
    } finally {
      await state.close();
    }
  });
});

describe('redis: concurrent writers never fold an event twice (compare-and-set on the watermark)', () => {
  it('a batch folded from a state another writer has since moved is folded again, not written', async () => {
    const keyPrefix = `cairn-test:features:${run}:${prefixes.length}:`;
    prefixes.push(keyPrefix);
    const a = await RedisOnlineState.open({ ...OPTIONS, url, keyPrefix });
    const b = await RedisOnlineState.open({ ...OPTIONS, url, keyPrefix });
    const memory = new MemoryOnlineState(OPTIONS);
    try {
      const log = IN_TIME_ORDER.slice(0, 600);
      await memory.applyEvents(log);
      await a.applyEvents(log.slice(0, 200));
      // b reads (watermark 200) and folds 201..600; before it writes, a applies 201..400.
      const inner = b as unknown as { foldBatch(events: StoredEvent[]): Promise<unknown> };
      const foldBatch = inner.foldBatch.bind(b);
      const applied: unknown[] = [];
      let raced = false;
      inner.foldBatch = async (events) => {
        const folded = await foldBatch(events);
        applied.push(folded);
        if (!raced) {
          raced = true;
          await a.applyEvents(log.slice(200, 400));
        }
        return folded;
      };
      await b.applyEvents(log.slice(200, 600));
      expect(applied).toHaveLength(2); // the first fold was discarded, the second started from watermark 400
      const ids = [...ITEMS.keys()];
      expect(await b.itemFeatures(ids)).toEqual(await memory.itemFeatures(ids));
      expect(await b.watermarks()).toMatchObject({ events: 600 });
    } finally {
      await Promise.all([a.close(), b.close(), memory.close()]);
    }
  });

  it('two adapters applying overlapping batches at once end with the single-writer states', async () => {
    const keyPrefix = `cairn-test:features:${run}:${prefixes.length}:`;
    prefixes.push(keyPrefix);
    const a = await RedisOnlineState.open({ ...OPTIONS, url, keyPrefix });
    const b = await RedisOnlineState.open({ ...OPTIONS, url, keyPrefix });
    const memory = new MemoryOnlineState(OPTIONS);
    try {
      const log = IN_TIME_ORDER.slice(0, 4000);
      const users = USERS.map((user, i) => ({ seq: i + 1, value: { kind: 'user' as const, user } }));
      await a.applyChanges(users);
      await memory.applyChanges(users);
      await memory.applyEvents(log);
      // Both writers race through the log in batches of 300, b half a batch ahead of a.
      const race = async (s: RedisOnlineState, offset: number) => {
        for (let from = offset; from < log.length; from += 300)
          await s.applyEvents(log.slice(Math.max(0, from), from + 300));
      };
      await Promise.all([race(a, 0), race(b, -150)]);
      const ids = [...ITEMS.keys()];
      expect(await a.itemFeatures(ids)).toEqual(await memory.itemFeatures(ids));
      // Popularity (the Lua part) once per event too; within 1e-12 because Lua's C pow and V8's Math.pow
      // may differ in the last bit (the existing Redis-vs-memory popularity tests use the same bound).
      const online = await b.popularity(ids, demo.endTime);
      const single = await memory.popularity(ids, demo.endTime);
      ids.forEach((_, i) => expect(Math.abs(online[i] - single[i])).toBeLessThanOrEqual(1e-12 * single[i]));
      expect(await a.watermarks()).toEqual({ events: 4000, changes: USERS.length });
    } finally {
      await Promise.all([a.close(), b.close(), memory.close()]);
    }
  });
});
