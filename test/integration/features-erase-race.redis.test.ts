/**
 * Races of the Redis online state's feature folds (JS read-modify-write, written only if the watermarks
 * and the fold generation did not move): an erase landing inside an applyEvents, and the reverse. The
 * result must equal the memory adapter that applied the same records in order.
 */
import { randomBytes } from 'node:crypto';
import { expect, it } from 'vitest';
import type { StoredEvent } from '../../src/domain/types.ts';
import { MemoryOnlineState } from '../../src/storage/memory/online-state.ts';
import { RedisOnlineState } from '../../src/storage/redis/online-state.ts';
import type { EntityChange, LogRecord, OnlineStateOptions } from '../../src/storage/ports.ts';

const url = 'redis://127.0.0.1:6379';
const prefix = `cairn-test:race:${randomBytes(4).toString('hex')}:`;
const OPTIONS: OnlineStateOptions = {
  types: { view: { weight: 1 }, purchase: { weight: 8 }, dislike: { weight: 0, negative: true } },
  popularityHalfLifeDays: 7,
  historyLimit: 5,
};
const NOW = 1_700_000_000_000;
const ev = (seq: number, userId: string, itemId: string, type: string): StoredEvent => ({
  seq,
  eventId: `e${seq}`,
  userId,
  itemId,
  type,
  value: null,
  timestamp: NOW + seq * 60_000,
  context: null,
});
const log: StoredEvent[] = [];
for (let i = 1; i <= 400; i++)
  log.push(ev(i, `u${i % 3}`, `i${(i * 7) % 5}`, ['view', 'purchase', 'dislike'][i % 3 === 0 ? 1 : i % 2]));
const users: LogRecord<EntityChange>[] = [0, 1, 2].map((k) => ({
  seq: k + 1,
  value: {
    kind: 'user',
    user: {
      id: `u${k}`,
      attributes: {},
      segments: [`s${k}`, 'all'],
      optOut: false,
      createdAt: 1,
      updatedAt: 1,
    },
  },
}));
const erase = (upTo: number): LogRecord<EntityChange> => ({
  seq: 4,
  value: {
    kind: 'erase',
    userId: 'u0',
    events: log
      .filter((e) => e.userId === 'u0' && e.seq <= upTo)
      .map(({ seq, itemId, type, value, timestamp }) => ({ seq, itemId, type, value, timestamp })),
  },
});
const ids = ['i0', 'i1', 'i2', 'i3', 'i4'];

/** Same state: counts and segments exactly, the decayed sums (same reference) within 1e-9 relative. */
function close(
  a: { counts: unknown; segments: unknown; decayed: number[]; reference: number } | null,
  b: typeof a,
) {
  expect(a === null).toBe(b === null);
  if (a === null || b === null) return;
  expect([a.counts, a.segments]).toEqual([b.counts, b.segments]);
  expect(a.reference).toBe(b.reference);
  a.decayed.forEach((x, i) =>
    expect(Math.abs(x - b.decayed[i])).toBeLessThanOrEqual(Math.abs(b.decayed[i]) * 1e-9),
  );
}

/**
 * Two Redis adapters on one key prefix (two processes racing) and a memory state as the reference, the
 * users' records applied to both sides.
 */
async function states(run: string) {
  const keyPrefix = `${prefix}${run}:`;
  const a = await RedisOnlineState.open({ ...OPTIONS, url, keyPrefix });
  const b = await RedisOnlineState.open({ ...OPTIONS, url, keyPrefix });
  const m = new MemoryOnlineState(OPTIONS);
  await a.applyChanges(users);
  await m.applyChanges(users);
  return { a, b, m };
}

it('an erase between applyEvents read and write: the fold is redone from the erased states', async () => {
  const { a, b, m } = await states('1');
  await a.applyEvents(log.slice(0, 200));
  await m.applyEvents(log.slice(0, 200));
  await m.applyChanges([erase(200)]);
  await m.applyEvents(log.slice(200));
  const inner = b as unknown as { foldBatch(e: StoredEvent[]): Promise<unknown> };
  const orig = inner.foldBatch.bind(b);
  let calls = 0;
  inner.foldBatch = async (events) => {
    const r = await orig(events);
    if (calls++ === 0) await a.applyChanges([erase(200)]);
    return r;
  };
  await b.applyEvents(log.slice(200));
  expect(calls).toBe(2);
  const [x, y] = [await b.itemFeatures(ids), await m.itemFeatures(ids)];
  ids.forEach((_, k) => close(x[k], y[k]));
  await a.clear();
  await Promise.all([a.close(), b.close(), m.close()]);
});

it('applyEvents between an erase read and write: the unfold is redone', async () => {
  const { a, b, m } = await states('2');
  await a.applyEvents(log.slice(0, 200));
  await m.applyEvents(log.slice(0, 300));
  await m.applyChanges([erase(400)]);
  const inner = b as unknown as { unfoldBatch(r: unknown): Promise<unknown> };
  const orig = inner.unfoldBatch.bind(b);
  let calls = 0;
  inner.unfoldBatch = async (records) => {
    const r = await orig(records);
    if (calls++ === 0) await a.applyEvents(log.slice(200, 300));
    return r;
  };
  await b.applyChanges([erase(400)]);
  expect(calls).toBe(2);
  const [x, y] = [await b.itemFeatures(ids), await m.itemFeatures(ids)];
  ids.forEach((_, k) => close(x[k], y[k]));
  expect(await b.popularity(ids, NOW)).toEqual(await m.popularity(ids, NOW));
  await a.clear();
  await Promise.all([a.close(), b.close(), m.close()]);
});
