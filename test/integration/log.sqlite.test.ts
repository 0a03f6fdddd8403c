/**
 * Runs the change-feed conformance suite against the SQLite logs (one fresh file per test, all under one
 * temp directory removed afterwards; `reopen()` opens a second connection on the same file, as another
 * process would), plus what only the SQLite adapter promises: lease takeover after a holder died.
 */
import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { StoredEvent } from '../../src/domain/types.ts';
import { describeLogConformance, type LogHandles } from '../../src/storage/conformance/log.conformance.ts';
import type { ConsumerErrorInfo } from '../../src/storage/polling-consumer.ts';
import {
  SQLITE_CONSUME_BATCH,
  SqliteChangeLog,
  SqliteEventLog,
  type SqliteLogOptions,
} from '../../src/storage/sqlite/log.ts';
import { SqliteStore } from '../../src/storage/sqlite/store.ts';

const dir = mkdtempSync(join(tmpdir(), 'cairn-log-sqlite-'));
let n = 0;

/** Short intervals keep the suite fast; the mechanisms are the production ones. */
const TIMINGS: SqliteLogOptions = {
  headPollMs: 50,
  lockRetryMs: 50,
  retryBaseMs: 20,
  retryMaxMs: 200,
  leaseMs: 3000,
};

async function openHandles(path: string, options: SqliteLogOptions = TIMINGS) {
  const store = new SqliteStore({ path });
  await store.migrate();
  const eventLog = new SqliteEventLog(store, options);
  const changeLog = new SqliteChangeLog(store, options);
  return {
    store,
    eventLog,
    changeLog,
    async close() {
      await eventLog.close();
      await changeLog.close();
      await store.close();
    },
  };
}

describeLogConformance(
  'sqlite',
  async () => {
    const path = join(dir, `log-${n++}.db`);
    const first: LogHandles = await openHandles(path);
    return { ...first, reopen: () => openHandles(path) };
  },
  () => rm(dir, { recursive: true, force: true }),
);

describe('SQLite logs', () => {
  // Its own directory: the conformance suite removes `dir` when it finishes.
  const own = mkdtempSync(join(tmpdir(), 'cairn-log-sqlite-own-'));
  const opened: { close(): Promise<void> }[] = [];
  afterAll(async () => {
    for (const o of opened) await o.close();
    await rm(own, { recursive: true, force: true });
  });

  it('a standby takes a durable name over once the lease of a process that died has run out', async () => {
    const path = join(own, 'lease.db');
    const h = await openHandles(path, { ...TIMINGS, leaseMs: 400 });
    opened.push(h);
    await h.eventLog.append([
      { eventId: 'e1', userId: 'u', itemId: 'i', type: 'view', value: null, timestamp: 1, context: null },
    ]);
    // A holder that died without releasing: its lease row stays until it runs out.
    const diedAt = Date.now();
    h.store.db
      .prepare('INSERT INTO consumer_leases (name, holder, until) VALUES (?, ?, ?)')
      .run('events:projector', 'dead-process', diedAt + 600);
    const handled: StoredEvent[] = [];
    const c = h.eventLog.consume({ durable: 'projector' }, (batch) => {
      handled.push(...batch);
      return Promise.resolve();
    });
    await c.caughtUp(await h.eventLog.head());
    expect(Date.now()).toBeGreaterThanOrEqual(diedAt + 600); // not before the dead lease ran out
    expect(handled.map((e) => e.eventId)).toEqual(['e1']);
    const holder = h.store.db
      .prepare<[string], string>('SELECT holder FROM consumer_leases WHERE name = ?')
      .pluck()
      .get('events:projector');
    expect(holder).not.toBe('dead-process');
    await c.close();
    // Released on close: the row is gone, so a standby need not wait for it to run out.
    expect(h.store.db.prepare('SELECT COUNT(*) FROM consumer_leases').pluck().get()).toBe(0);
    expect(await h.store.offsets.get('events:projector')).toBe(await h.eventLog.head());
  });

  it('hands a backlog over in batches of SQLITE_CONSUME_BATCH by default', async () => {
    const path = join(own, 'batches.db');
    const h = await openHandles(path);
    opened.push(h);
    const events = Array.from({ length: 2 * SQLITE_CONSUME_BATCH + 7 }, (_, i) => ({
      eventId: `b${i}`,
      userId: 'u',
      itemId: 'i',
      type: 'view',
      value: null,
      timestamp: i,
      context: null,
    }));
    await h.eventLog.append(events);
    const sizes: number[] = [];
    const c = h.eventLog.consume({}, (batch) => {
      sizes.push(batch.length);
      return Promise.resolve();
    });
    await c.caughtUp(await h.eventLog.head());
    expect(sizes).toEqual([SQLITE_CONSUME_BATCH, SQLITE_CONSUME_BATCH, 7]);
    await c.close();
  });

  it('keeps retrying, never throwing, while the database cannot be read; reports each failure', async () => {
    const path = join(own, 'broken.db');
    const h = await openHandles(path);
    opened.push(h);
    const errors: ConsumerErrorInfo[] = [];
    const log = new SqliteEventLog(h.store, { ...TIMINGS, onError: (_e, info) => errors.push(info) });
    // The table a log reads is gone (e.g. a broken file): reads fail, the consumer backs off and retries.
    h.store.db.exec('ALTER TABLE events RENAME TO events_away');
    const handled: StoredEvent[] = [];
    const c = log.consume({}, (batch) => {
      handled.push(...batch);
      return Promise.resolve();
    });
    const deadline = Date.now() + 5000;
    while (errors.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(errors.length).toBeGreaterThanOrEqual(3);
    expect(errors[0]).toMatchObject({ stage: 'read', failures: 1, consumer: 'events private' });
    expect(errors[2].failures).toBe(3);
    h.store.db.exec('ALTER TABLE events_away RENAME TO events');
    await log.append([
      { eventId: 'e1', userId: 'u', itemId: 'i', type: 'view', value: null, timestamp: 1, context: null },
    ]);
    await c.caughtUp(await log.head());
    expect(handled.map((e) => e.eventId)).toEqual(['e1']);
    await log.close();
    await expect(log.append([])).rejects.toMatchObject({ code: 'CAIRN_UNAVAILABLE' });
  });
});
