/**
 * The SQLite event lookups kept in merged runs (src/storage/sqlite/event-index.ts), on real files: the
 * Store conformance suite with a merge every few events (so its tests meet merged, tail and half-merged
 * states), two connections on one file as two processes, erasure during a merge, a merge cut short, and
 * the migration of a store written before it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import type { CairnEvent } from '../../src/domain/types.ts';
import { describeStoreConformance } from '../../src/storage/conformance/store.conformance.ts';
import { SQLITE_MIGRATIONS } from '../../src/storage/sqlite/migrations.ts';
import { SqliteStore, type SqliteStoreOptions } from '../../src/storage/sqlite/store.ts';

const dir = mkdtempSync(join(tmpdir(), 'cairn-event-index-'));
let n = 0;
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Merges once 3 events are unmerged, 2 keys per step: many merges, each of several steps. */
const EAGER: SqliteStoreOptions['eventIndex'] = { mergeMinEvents: 3, mergeStepRows: 2 };

function ev(id: string, user: string, ts: number): CairnEvent {
  return {
    eventId: id,
    userId: user,
    itemId: `i-${id}`,
    type: 'view',
    value: null,
    timestamp: ts,
    context: null,
  };
}

/** Lets event-loop turns pass (a merge takes a step per turn) until `done`, for at most 10 s. */
async function until(done: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!done() && Date.now() < deadline) await new Promise<void>((r) => setImmediate(r));
  expect(done()).toBe(true);
}

function count(path: string, sql: string): number {
  const db = new Database(path, { readonly: true });
  try {
    return db.prepare<[], number>(sql).pluck().get() ?? 0;
  } finally {
    db.close();
  }
}

// Merges on a worker thread (a database file's default) and on the store's own connection (in-memory).
for (const onThread of [true, false]) {
  const where = onThread ? 'on a thread' : 'on the connection';
  const open = async (path = join(dir, `idx-${n++}.db`), eventIndex = EAGER): Promise<SqliteStore> => {
    const store = new SqliteStore({ path, eventIndex: { ...eventIndex, mergeOnThread: onThread } });
    await store.migrate();
    return store;
  };

  describeStoreConformance(`sqlite, event lookups merged every 3 events ${where}`, () => open());

  describe(`SQLite event lookups in merged runs, merged ${where}`, () => {
    it('finds repeats in the merged tables and in the tail, and serves histories from both', async () => {
      const path = join(dir, `idx-${n++}.db`);
      const store = await open(path);
      try {
        for (let b = 0; b < 6; b++) {
          const batch = Array.from({ length: 4 }, (_, i) => ev(`e${b * 4 + i}`, `u${i % 2}`, b * 10 + i));
          expect(await store.events.append(batch)).toEqual(['inserted', 'inserted', 'inserted', 'inserted']);
        }
        await store.eventIndex.mergeNow();
        expect(count(path, 'SELECT merged_seq FROM event_index')).toBe(24);
        expect(count(path, 'SELECT COUNT(*) FROM event_ids')).toBe(24);
        expect(count(path, 'SELECT COUNT(*) FROM event_users')).toBe(24);
        expect(store.eventIndex.tailSize).toBe(0);

        // Two new ones stay in the tail (below the threshold); every id seen so far is a repeat.
        expect(await store.events.append([ev('t1', 'u0', 100), ev('t2', 'u1', 101)])).toEqual([
          'inserted',
          'inserted',
        ]);
        expect(store.eventIndex.tailSize).toBe(2);
        const again = await store.events.append([
          ev('e0', 'u0', 0),
          ev('t1', 'u0', 100),
          ev('e23', 'u1', 53),
        ]);
        expect(again).toEqual(['duplicate', 'duplicate', 'duplicate']);
        expect(await store.events.count()).toBe(26);

        const history = await store.events.forUser('u0', 4);
        expect(history.map((e) => e.eventId)).toEqual(['t1', 'e22', 'e20', 'e18']);
        expect((await store.events.forUser('u0', 100)).length).toBe(13);
      } finally {
        await store.close();
      }
    });

    it('reads the unmerged tail in slices when the first append after open comes, before it runs', async () => {
      const path = join(dir, `idx-${n++}.db`);
      const first = await open(path, { mergeMinEvents: 1_000_000 });
      await first.events.append(Array.from({ length: 12_000 }, (_, i) => ev(`w${i}`, `u${i % 7}`, i)));
      await first.close();
      const again = await open(path, { mergeMinEvents: 1_000_000 });
      try {
        await new Promise((r) => setTimeout(r, 20));
        expect(again.eventIndex.tailSize).toBe(0); // nothing read until an append needs it
        const appended = again.events.append([ev('w11999', 'u0', 0), ev('fresh', 'u0', 1)]);
        await new Promise<void>((r) => setImmediate(r));
        expect(again.eventIndex.tailSize).toBeLessThan(12_000); // a slice per turn
        await again.eventIndex.warm();
        expect(again.eventIndex.tailSize).toBe(12_000);
        expect(await appended).toEqual(['duplicate', 'inserted']);
      } finally {
        await again.close();
      }
    });

    it('forgets the inserts of a batch that rolled back', async () => {
      const store = await open();
      try {
        const bad = { ...ev('x2', 'u', 2), userId: null } as unknown as CairnEvent; // NOT NULL fails
        await expect(store.events.append([ev('x1', 'u', 1), bad])).rejects.toThrow();
        expect(store.eventIndex.tailSize).toBe(0);
        expect(await store.events.append([ev('x1', 'u', 1)])).toEqual(['inserted']);
      } finally {
        await store.close();
      }
    });

    it('two connections on one file (two processes) see each other’s events as repeats, merged or not', async () => {
      const path = join(dir, `idx-${n++}.db`);
      const a = await open(path);
      const b = await open(path, { mergeMinEvents: 1_000 }); // b never merges itself
      try {
        await a.events.append([ev('a1', 'u', 1), ev('a2', 'u', 2)]);
        expect(await b.events.append([ev('a1', 'u', 1), ev('b1', 'v', 3)])).toEqual([
          'duplicate',
          'inserted',
        ]);
        expect(await a.events.append([ev('b1', 'v', 3), ev('a3', 'u', 4), ev('a4', 'u', 5)])).toEqual([
          'duplicate',
          'inserted',
          'inserted',
        ]);
        await a.eventIndex.mergeNow(); // merges b's event too
        expect(count(path, 'SELECT COUNT(*) FROM event_ids')).toBe(5);
        // b's tail still lists what a merged: dropped on its next append, and still a repeat meanwhile.
        expect(await b.events.append([ev('a4', 'u', 5), ev('b1', 'v', 3), ev('b2', 'v', 6)])).toEqual([
          'duplicate',
          'duplicate',
          'inserted',
        ]);
        expect(b.eventIndex.tailSize).toBe(1);

        // Erased through b: a's tail entry no longer counts (its row is gone), so the id is new again.
        await b.events.append([ev('c1', 'w', 7)]);
        await a.events.append([ev('c2', 'w', 8)]);
        expect(await b.eraseUser('w')).toHaveLength(2);
        expect(await a.events.append([ev('c1', 'w', 7), ev('c2', 'w', 8)])).toEqual(['inserted', 'inserted']);
      } finally {
        await a.close();
        await b.close();
      }
    });

    it('an erasure during a merge leaves none of the user’s rows in the lookups', async () => {
      const path = join(dir, `idx-${n++}.db`);
      const store = await open(path, { mergeMinEvents: 1_000_000, mergeStepRows: 1 });
      try {
        const batch = Array.from({ length: 40 }, (_, i) =>
          ev(`m${i}`, i % 4 === 0 ? 'gone' : `u${i % 3}`, i),
        );
        await store.events.append(batch);
        const merging = store.eventIndex.mergeNow();
        // Let a few one-key steps commit, then erase while the rest are still to come.
        await until(() => count(path, 'SELECT COUNT(*) FROM event_ids') > 2);
        expect(count(path, 'SELECT COUNT(*) FROM event_ids')).toBeLessThan(40);
        expect(await store.eraseUser('gone')).toHaveLength(10);
        await merging;
        expect(count(path, 'SELECT merged_seq FROM event_index')).toBe(40);
        expect(count(path, 'SELECT COUNT(*) FROM event_ids')).toBe(30);
        expect(count(path, "SELECT COUNT(*) FROM event_users WHERE user_id = 'gone'")).toBe(0);
        expect(await store.events.forUser('gone', 10)).toEqual([]);
        expect(await store.events.append([ev('m0', 'gone', 0), ev('m1', 'u1', 1)])).toEqual([
          'inserted',
          'duplicate',
        ]);
      } finally {
        await store.close();
      }
    });

    it('an erasure by another process during a merge: the merge goes on without the erased rows', async () => {
      const path = join(dir, `idx-${n++}.db`);
      const merger = await open(path, { mergeMinEvents: 1_000_000, mergeStepRows: 1 });
      const other = await open(path, { mergeMinEvents: 1_000_000 });
      try {
        await merger.events.append(
          Array.from({ length: 30 }, (_, i) => ev(`r${i}`, i % 3 === 0 ? 'gone' : 'kept', i)),
        );
        const merging = merger.eventIndex.mergeNow();
        await until(() => count(path, 'SELECT COUNT(*) FROM event_ids') > 2);
        expect(count(path, 'SELECT COUNT(*) FROM event_ids')).toBeLessThan(20);
        expect(await other.eraseUser('gone')).toHaveLength(10);
        await merging;
        expect(count(path, 'SELECT merged_seq FROM event_index')).toBe(30);
        expect(count(path, 'SELECT COUNT(*) FROM event_index_erased')).toBe(0);
        expect(count(path, 'SELECT COUNT(*) FROM event_ids')).toBe(20);
        expect(count(path, "SELECT COUNT(*) FROM event_users WHERE user_id = 'gone'")).toBe(0);
        expect(await merger.events.append([ev('r0', 'gone', 0), ev('r1', 'kept', 1)])).toEqual([
          'inserted',
          'duplicate',
        ]);
      } finally {
        await merger.close();
        await other.close();
      }
    });

    it('a merge cut short by close is done again; a dead merger’s lease runs out', async () => {
      const path = join(dir, `idx-${n++}.db`);
      const first = await open(path, { mergeMinEvents: 1_000_000, mergeStepRows: 1 });
      await first.events.append(Array.from({ length: 20 }, (_, i) => ev(`k${i}`, `u${i % 5}`, i)));
      const merging = first.eventIndex.mergeNow().then(
        () => 'merged',
        (e: Error) => e.message,
      );
      await until(() => count(path, 'SELECT COUNT(*) FROM event_ids') > 0);
      await first.close();
      expect(await merging).toMatch(/closed/);
      expect(count(path, 'SELECT merged_seq FROM event_index')).toBe(0);
      const partial = count(path, 'SELECT COUNT(*) FROM event_ids');
      expect(partial).toBeGreaterThan(0);
      expect(partial).toBeLessThan(20);

      // A lease left behind by a process that died mid-merge blocks others only until it runs out.
      const raw = new Database(path);
      const lease = raw.prepare("UPDATE event_index SET merger = 'dead', merging_until = ?");
      lease.run(Date.now() + 60_000);
      const second = await open(path, { mergeMinEvents: 1_000_000 });
      try {
        await second.eventIndex.mergeNow();
        expect(count(path, 'SELECT merged_seq FROM event_index')).toBe(0); // still held by 'dead'
        lease.run(Date.now() - 1); // its time is up
        await second.eventIndex.mergeNow();
        expect(count(path, 'SELECT merged_seq FROM event_index')).toBe(20);
        expect(count(path, 'SELECT COUNT(*) FROM event_ids')).toBe(20);
        expect(count(path, 'SELECT COUNT(*) FROM event_users')).toBe(20);
        expect(await second.events.append([ev('k3', 'u3', 3)])).toEqual(['duplicate']);
      } finally {
        raw.close();
        await second.close();
      }
    });

    it('migrates a store written before: same events and seqs, repeats still found, no seq reused', async () => {
      const path = join(dir, `idx-${n++}.db`);
      const old = new Database(path);
      old.exec(
        'CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)',
      );
      for (const m of SQLITE_MIGRATIONS.filter((x) => x.version < 7)) {
        old.exec(m.sql);
        old.prepare('INSERT INTO schema_migrations VALUES (?, ?, 0)').run(m.version, m.name);
      }
      const insert = old.prepare(
        'INSERT INTO events (event_id, user_id, item_id, type, value, ts, context) VALUES (?, ?, ?, ?, ?, ?, ?)',
      );
      for (let i = 1; i <= 5; i++)
        insert.run(`o${i}`, `u${i % 2}`, 'it', 'rating', i, i * 10, i === 1 ? '{"p":1}' : null);
      old.exec('DELETE FROM events WHERE seq = 5'); // the newest erased: seq 5 must not come back
      old.close();

      const store = await open(path, {});
      try {
        expect(await store.events.count()).toBe(4);
        expect((await store.events.forUser('u1', 10)).map((e) => [e.seq, e.eventId, e.value])).toEqual([
          [3, 'o3', 3],
          [1, 'o1', 1],
        ]);
        expect((await store.events.forUser('u1', 10))[1].context).toEqual({ p: 1 });
        expect(await store.events.append([ev('o2', 'u0', 20), ev('new', 'u0', 60)])).toEqual([
          'duplicate',
          'inserted',
        ]);
        expect(await store.events.lastSeq()).toBe(6);
        expect(count(path, 'SELECT merged_seq FROM event_index')).toBe(4);
        expect(
          count(path, "SELECT COUNT(*) FROM sqlite_master WHERE tbl_name = 'events' AND type = 'index'"),
        ).toBe(0);
      } finally {
        await store.close();
      }
    });
  });
}
