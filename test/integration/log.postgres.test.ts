/**
 * Runs the change-feed conformance suite against the PostgreSQL logs on the real server
 * (`CAIRN_TEST_POSTGRES_URL`, default postgres://postgres@127.0.0.1:5432/test), one fresh schema per
 * test (`reopen()` opens a second store and pool on it, as another process would), all dropped
 * afterwards. Then what only this adapter promises: LISTEN survives a lost connection, a durable name
 * is handed over when its holder's session dies, consumers retry while the server is unreachable, and
 * concurrent change-log appends never let a consumer pass over a row. An unreachable server fails the
 * file. Event appends run concurrently: a consumer, a read and a scan stop below an append still in
 * flight, and appends sharing ids in opposite orders (a deadlock PostgreSQL breaks) both complete.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CairnEvent, StoredEvent } from '../../src/domain/types.ts';
import { describeLogConformance } from '../../src/storage/conformance/log.conformance.ts';
import type { EntityChange, LogRecord } from '../../src/storage/ports.ts';
import type { ConsumerErrorInfo } from '../../src/storage/polling-consumer.ts';
import { PgChangeLog, PgEventLog, type PgLogOptions } from '../../src/storage/postgres/log.ts';
import { LOCK_APPEND, PostgresStore } from '../../src/storage/postgres/store.ts';

const url = process.env.CAIRN_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const prefix = `cairn_test_${randomBytes(4).toString('hex')}`;
const schemas: string[] = [];
let n = 0;

function freshSchema(): string {
  const schema = `${prefix}_${n++}`;
  schemas.push(schema);
  return schema;
}

async function withAdmin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.end();
  }
}

async function dropSchemas(): Promise<void> {
  await withAdmin(async (admin) => {
    for (const s of schemas.splice(0)) await admin.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
  });
}

/** Short intervals keep the suite fast; the mechanisms are the production ones. */
const TIMINGS: PgLogOptions = { lockRetryMs: 50, retryBaseMs: 20, retryMaxMs: 200, keepAliveMs: 1000 };

async function openHandles(schema: string, options: PgLogOptions = TIMINGS) {
  const store = new PostgresStore({ url, schema, maxConnections: 4 });
  try {
    await store.migrate();
  } catch (e) {
    await store.close();
    throw e;
  }
  const eventLog = new PgEventLog(store, options);
  const changeLog = new PgChangeLog(store, options);
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

const ev = (eventId: string): CairnEvent => ({
  eventId,
  userId: 'u',
  itemId: 'i',
  type: 'view',
  value: null,
  timestamp: 1,
  context: null,
});

async function waitFor(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

beforeAll(async () => {
  // Fail loudly (not skip) when the server is not there.
  const probe = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await probe.connect();
  await probe.end();
});

afterAll(dropSchemas);

describeLogConformance('postgres', async () => {
  const schema = freshSchema();
  const first = await openHandles(schema);
  return { ...first, reopen: () => openHandles(schema) };
});

describe('PostgreSQL logs', () => {
  it('keeps waking consumers after the LISTEN connection is lost (server restart), without polling', async () => {
    const schema = freshSchema();
    // No safety-net poll within the test's horizon: only notifications can deliver.
    const a = await openHandles(schema, { ...TIMINGS, idlePollMs: 600_000 });
    const b = await openHandles(schema);
    try {
      const handled: StoredEvent[] = [];
      const c = a.eventLog.consume({}, (batch) => {
        handled.push(...batch);
        return Promise.resolve();
      });
      await b.eventLog.append([ev('before')]);
      await waitFor(() => handled.length === 1, 'a notification from another process');

      const killed = await withAdmin((admin) =>
        admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [
          `cairn-listen:${schema}`,
        ]),
      );
      expect(killed.rowCount).toBe(1);
      await b.eventLog.append([ev('after')]);
      await b.changeLog.append([{ kind: 'champion', version: 'v1' }]);
      await waitFor(() => handled.length === 2, 'delivery after the listener reconnected');
      expect(handled.map((e) => e.eventId)).toEqual(['before', 'after']);
      await c.close();
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('hands a durable name over when the holder’s session dies; no record is handled twice', async () => {
    const schema = freshSchema();
    const a = await openHandles(schema);
    const b = await openHandles(schema);
    try {
      const byA: number[] = [];
      const byB: number[] = [];
      await a.eventLog.append([ev('e0'), ev('e1')]);
      const ca = a.eventLog.consume({ durable: 'writer' }, (batch) => {
        byA.push(...batch.map((e) => e.seq));
        return Promise.resolve();
      });
      await ca.caughtUp(await a.eventLog.head());
      const cb = b.eventLog.consume({ durable: 'writer' }, (batch) => {
        byB.push(...batch.map((e) => e.seq));
        return Promise.resolve();
      });

      // The holder's lock session dies (network cut, server-side kill): PostgreSQL frees the lock.
      const killed = await withAdmin((admin) =>
        admin.query(
          `SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_stat_activity s ON s.pid = l.pid
           WHERE l.locktype = 'advisory' AND l.granted AND s.application_name = $1`,
          [`cairn-consumer:${schema}`],
        ),
      );
      expect(killed.rowCount).toBe(1);
      await a.eventLog.append([ev('e2'), ev('e3'), ev('e4')]);
      const all = (await a.eventLog.read(0, 100)).map((e) => e.seq);
      // Either process may hold the name now; together they handle everything, once.
      await waitFor(() => byA.length + byB.length >= all.length, 'the new owner to handle the appends');
      expect([...byA, ...byB].sort((x, y) => x - y)).toEqual(all);
      expect(byA.slice(0, 2)).toEqual(all.slice(0, 2));

      const holders = await withAdmin((admin) =>
        admin.query(
          `SELECT l.pid FROM pg_locks l JOIN pg_stat_activity s ON s.pid = l.pid
           WHERE l.locktype = 'advisory' AND l.granted AND s.application_name = $1`,
          [`cairn-consumer:${schema}`],
        ),
      );
      expect(holders.rowCount).toBe(1);
      await Promise.all([ca.close(), cb.close()]);
      expect(await a.store.offsets.get('events:writer')).toBe(all[all.length - 1]);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('consumers retry with CAIRN_UNAVAILABLE reports while the server is unreachable, and close cleanly', async () => {
    const store = new PostgresStore({ url: 'postgres://postgres@127.0.0.1:1/test', schema: freshSchema() });
    const errors: { code: unknown; info: ConsumerErrorInfo }[] = [];
    const options: PgLogOptions = {
      ...TIMINGS,
      onError: (e, info) => errors.push({ code: (e as { code?: unknown }).code, info }),
    };
    const events = new PgEventLog(store, options);
    const changes = new PgChangeLog(store, options);
    try {
      const handler = () => Promise.resolve();
      events.consume({}, handler);
      changes.consume({ durable: 'projector' }, handler);
      await waitFor(
        () =>
          errors.filter((e) => e.info.stage === 'read').length >= 2 &&
          errors.filter((e) => e.info.stage === 'lock').length >= 2,
        'repeated failures of both consumers',
      );
      expect(errors.every((e) => e.code === 'CAIRN_UNAVAILABLE')).toBe(true);
      const reads = errors.filter((e) => e.info.consumer === 'events private').map((e) => e.info.failures);
      expect(reads.slice(0, 2)).toEqual([1, 2]);
      await expect(events.append([ev('x')])).rejects.toMatchObject({ code: 'CAIRN_UNAVAILABLE' });
      await expect(changes.head()).rejects.toMatchObject({ code: 'CAIRN_UNAVAILABLE' });
    } finally {
      await events.close();
      await changes.close();
      await store.close();
    }
  });

  it('concurrent change-log appends from several processes reach a running consumer exactly once, in seq order', async () => {
    const schema = freshSchema();
    const writers = await Promise.all([0, 1, 2, 3].map(() => openHandles(schema)));
    try {
      const seen: LogRecord<EntityChange>[] = [];
      const c = writers[0].changeLog.consume({ batchSize: 7 }, (batch) => {
        seen.push(...batch);
        return Promise.resolve();
      });
      const appended = (
        await Promise.all(
          writers.map(async (w, k) => {
            const seqs: number[] = [];
            for (let i = 0; i < 25; i++) {
              seqs.push(
                ...(await w.changeLog.append([
                  { kind: 'champion', version: `w${k}-${i}-a` },
                  { kind: 'champion', version: `w${k}-${i}-b` },
                ])),
              );
            }
            return seqs;
          }),
        )
      ).flat();
      await c.caughtUp(Math.max(...appended));
      expect(seen.map((r) => r.seq)).toEqual([...appended].sort((x, y) => x - y));
      expect(new Set(seen.map((r) => (r.value as { version: string }).version)).size).toBe(200);
      await c.close();
    } finally {
      for (const w of writers) await w.close();
    }
  });

  it('never passes over an event whose append is still in flight below a committed one', async () => {
    const schema = freshSchema();
    const h = await openHandles(schema);
    const seen: number[] = [];
    const c = h.eventLog.consume({}, (batch) => {
      seen.push(...batch.map((e) => e.seq));
      return Promise.resolve();
    });
    await h.eventLog.append([ev('before')]);
    await c.caughtUp(await h.eventLog.head());
    const slow = await h.store.db.pool.connect();
    try {
      const low = await appendUncommitted(h.store, slow, 'slow');
      await h.eventLog.append([ev('after')]);
      const high = await h.eventLog.head();
      expect(high).toBeGreaterThan(low);
      // Committed and visible, but not yet readable: reading it would move a cursor past `low`.
      await new Promise((r) => setTimeout(r, 150));
      expect(await h.eventLog.read(seen[0], 10)).toEqual([]);
      expect((await pagesAll(h.store.events.scan({ afterSeq: seen[0] }))).length).toBe(0);
      expect(seen).toHaveLength(1);
      await slow.query('COMMIT');
      await c.caughtUp(high);
      expect(seen).toEqual([seen[0], low, high]);
      expect((await pagesAll(h.store.events.scan({ afterSeq: seen[0] }))).map((e) => e.eventId)).toEqual([
        'slow',
        'after',
      ]);
      await c.close();
    } finally {
      await slow.query('ROLLBACK').catch(() => undefined);
      slow.release();
      await h.close();
    }
  });

  it('moves on past an in-flight append that rolls back, without waiting for the idle poll', async () => {
    const schema = freshSchema();
    // An idle poll far longer than the test: only the horizon's own recheck can wake the consumer.
    const h = await openHandles(schema, { ...TIMINGS, idlePollMs: 60_000 });
    const seen: string[] = [];
    const c = h.eventLog.consume({}, (batch) => {
      seen.push(...batch.map((e) => e.eventId));
      return Promise.resolve();
    });
    const slow = await h.store.db.pool.connect();
    try {
      await appendUncommitted(h.store, slow, 'gone');
      await h.eventLog.append([ev('kept')]);
      await new Promise((r) => setTimeout(r, 100));
      expect(seen).toEqual([]);
      await slow.query('ROLLBACK');
      await waitFor(() => seen.length === 1, 'the committed event', 2000);
      expect(seen).toEqual(['kept']);
      await c.close();
    } finally {
      slow.release();
      await h.close();
    }
  });

  it('concurrent event appends from several processes reach a running consumer exactly once, in seq order', async () => {
    const schema = freshSchema();
    const writers = await Promise.all([0, 1, 2, 3].map(() => openHandles(schema)));
    try {
      const seen: StoredEvent[] = [];
      const c = writers[0].eventLog.consume({ batchSize: 7 }, (batch) => {
        seen.push(...batch);
        return Promise.resolve();
      });
      await Promise.all(
        writers.map(async (w, k) => {
          for (let i = 0; i < 25; i++) await w.eventLog.append([ev(`w${k}-${i}-a`), ev(`w${k}-${i}-b`)]);
        }),
      );
      await c.caughtUp(await writers[0].eventLog.head());
      const seqs = seen.map((e) => e.seq);
      expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
      expect(new Set(seen.map((e) => e.eventId)).size).toBe(200);
      expect(seen).toHaveLength(200);
      await c.close();
    } finally {
      for (const w of writers) await w.close();
    }
  });

  it('appends sharing ids in opposite orders both complete (PostgreSQL breaks the deadlock; the loser retries)', async () => {
    const schema = freshSchema();
    const [a, b] = await Promise.all([openHandles(schema), openHandles(schema)]);
    try {
      const ids = Array.from({ length: 3000 }, (_, i) => `shared-${i}`);
      const [x, y] = await Promise.all([
        a.store.events.append(ids.map(ev)),
        b.store.events.append([...ids].reverse().map(ev)),
      ]);
      const reversed = [...y].reverse();
      // Each id inserted by exactly one of the two, a duplicate for the other.
      expect(x.every((o, i) => (o === 'inserted') !== (reversed[i] === 'inserted'))).toBe(true);
      expect(await a.store.events.count()).toBe(3000);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

/**
 * An appender of another process caught between its INSERT and its COMMIT, on `client`: the protocol of
 * PgEvents.insert (the shared append lock first, then the INSERT that draws the seq). Returns the seq.
 */
async function appendUncommitted(
  store: PostgresStore,
  client: pg.PoolClient,
  eventId: string,
): Promise<number> {
  await client.query('BEGIN');
  await store.db.lockShared(client, LOCK_APPEND);
  const res = await client.query<{ seq: number }>(
    `INSERT INTO "${store.schema}".events (event_id, user_id, item_id, type, ts) VALUES ($1, 'u', 'i', 'view', 1)
     RETURNING seq`,
    [eventId],
  );
  return res.rows[0].seq; // the store's pool reads int8 as a number
}

async function pagesAll(pages: AsyncIterable<StoredEvent[]>): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  for await (const page of pages) out.push(...page);
  return out;
}
