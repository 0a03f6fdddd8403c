/**
 * The event table's two lookups — by event id (idempotency) and by user (history, erasure) — kept in
 * merged runs rather than as B-tree indexes on `events` (migration 7).
 *
 * Why: event ids are the clients' (random UUIDs as a rule), and users arrive in any order, so every
 * 10,000-event batch wrote its keys at random places in both indexes. Once these were larger than a few
 * thousand pages, each batch dirtied a page per event and SQLite wrote every such page to the WAL on
 * commit (and back on checkpoint): 9,600 events/s at 8M stored events against 48k at 0.1M.
 *
 * How: `events` has no secondary index; appends only extend it by seq. Events up to `merged_seq`
 * (table `event_index`) are in `event_ids (event_id → seq)` and `event_users (user_id, ts, seq)`. The
 * newer tail is held in memory (event id → seq) by each connection, caught up inside every append
 * transaction from the rows other processes appended (read by seq, under the write lock, so nothing is
 * missed). Once the tail holds an eighth of the merged events (at least `mergeMinEvents`), it is
 * sorted in temp tables and merged into the two tables in key order, a short write transaction per
 * step, the event loop free between steps: each index page is then written once per merge instead of
 * once per batch. A merge claims `event_index` with a lease, so one process merges at a time; a merge cut
 * short (crash, close) is simply done again (`INSERT OR IGNORE`), because `merged_seq` only advances
 * when it is complete.
 *
 * Pacing: while this connection merges, every event it appends owes three rows of merge work (staged,
 * merged by id, merged by user), and its next append transaction starts only once the debt is paid
 * (`whenPaid`), a step per event-loop turn. A merge therefore finishes before the tail has doubled, at
 * any ingestion rate, and ingestion slows to what appending and merging together sustain.
 *
 * Invariants: every event with seq ≤ merged_seq has its rows in `event_ids` and `event_users`; rows of
 * later events may be there too (a merge in progress). An erasure deletes the user's events and their
 * rows in both tables in one transaction, and the rows it deleted from what the merge has staged (the
 * merging connection), or else takes the lease from the merging process (another connection), whose
 * merge then stops at its next step and is done again: an erased event's rows never come back. A tail
 * entry is trusted only after its event row is found (another process may have erased it).
 *
 * One assumption: events appended with an explicit seq (`appendLogged`) come in ascending seq order
 * across processes, as the single store-writer of a log does; the catch-up reads `seq > last seen`.
 */
import { randomUUID } from 'node:crypto';
import type { Statement } from 'better-sqlite3';
import type { Db } from './db.ts';

export interface SqliteEventIndexOptions {
  /**
   * Merge the tail once it holds this many events or an eighth of the merged ones, whichever is more
   * (default 50,000; at most 2,000,000; memory: ~100 bytes per tail event).
   */
  mergeMinEvents?: number;
  /** Rows per merge step, each one write transaction (default 2,000). */
  mergeStepRows?: number;
  /** Lease of a merging process on `event_index` (ms, default 30,000), renewed on every step. */
  mergeLeaseMs?: number;
}

/** What the merges did so far in this connection (benchmarks, tests). */
export interface EventIndexStats {
  merges: number;
  /** Merge steps, and the longest one (it held the event loop and the file's write lock). */
  steps: number;
  maxStepMs: number;
  /** Steps that took over 20 ms. */
  slowSteps: number;
}

const TAIL_CAP = 2_000_000;
/** Merge work each appended event owes while a merge runs: staged, merged by id, merged by user. */
const ROWS_PER_EVENT = 3;
/** Rows per slice of the tail's read before the first append. */
const TAIL_SLICE = 5_000;

type UserKey = [string, number, number];

/** A merge in progress: the seqs it covers and how far each phase got. */
interface Merge {
  lo: number;
  hi: number;
  phase: 'stage' | 'ids' | 'users' | 'done';
  staged: number;
  idCursor: string;
  userCursor: UserKey;
}

/** Prepared statements, compiled on first use (the tables exist only after `migrate()`). */
class Statements {
  private readonly cache = new Map<string, Statement>();
  constructor(private readonly db: Db) {}

  get<P extends unknown[] = unknown[], R = unknown>(sql: string): Statement<P, R> {
    let s = this.cache.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.cache.set(sql, s);
    }
    return s as unknown as Statement<P, R>;
  }
}

export class SqliteEventIndex {
  readonly stats: EventIndexStats = { merges: 0, steps: 0, maxStepMs: 0, slowSteps: 0 };
  /** Event id → seq of the events after `mergedSeq` this connection knows of. */
  private readonly tail = new Map<string, number>();
  private mergedSeq = -1;
  private lastSeen = -1;
  /** Ids added by the append transaction in progress: taken back out if it rolls back. */
  private added: string[] = [];
  private addedFrom = -1;
  private current: Merge | null = null;
  /** Loading the tail before the first append, a slice per event-loop turn; appends wait for it. */
  private warming: Promise<void> | null = null;
  private warmed = false;
  private driver: Promise<void> | null = null;
  /** Merge rows owed by this connection's appends; appends wait while it is positive. */
  private owed = 0;
  private waiting: (() => void)[] = [];
  private retryAfter = 0;
  /** The connection's own `synchronous` level, restored after each merge step (read once). */
  private synchronous: number | null = null;
  private closed = false;
  private readonly holder = randomUUID();
  private readonly sql: Statements;
  private readonly mergeMin: number;
  private readonly stepRows: number;
  private readonly leaseMs: number;

  constructor(
    private readonly db: Db,
    options: SqliteEventIndexOptions = {},
  ) {
    this.sql = new Statements(db);
    this.mergeMin = Math.max(1, Math.floor(options.mergeMinEvents ?? 50_000));
    this.stepRows = Math.max(1, Math.floor(options.mergeStepRows ?? 2_000));
    this.leaseMs = Math.max(1, options.mergeLeaseMs ?? 30_000);
  }

  /** Events in the tail (for tests and metrics). */
  get tailSize(): number {
    return this.tail.size;
  }

  /**
   * Inside a write transaction, before the first `isDuplicate`: drops what a merge has taken over and
   * adds what other processes appended since this connection last looked.
   */
  beginAppend(): void {
    const merged =
      this.sql.get<[], number>('SELECT merged_seq FROM event_index WHERE id = 1').pluck().get() ?? 0;
    this.advance(merged);
    if (this.lastSeen < this.mergedSeq) this.lastSeen = this.mergedSeq;
    const rows = this.sql
      .get<[number], [number, string]>('SELECT seq, event_id FROM events WHERE seq > ? ORDER BY seq')
      .raw()
      .iterate(this.lastSeen);
    for (const [seq, id] of rows) {
      this.tail.set(id, seq);
      this.lastSeen = seq;
    }
    this.added = [];
    this.addedFrom = this.lastSeen;
  }

  /** Whether an event with this id is stored (inside the write transaction begun by `beginAppend`). */
  isDuplicate(eventId: string): boolean {
    const seq = this.tail.get(eventId);
    if (seq !== undefined) {
      if (this.sql.get<[number]>('SELECT 1 FROM events WHERE seq = ?').pluck().get(seq) !== undefined)
        return true;
      this.tail.delete(eventId); // erased by another process
    }
    return (
      this.sql.get<[string]>('SELECT 1 FROM event_ids WHERE event_id = ?').pluck().get(eventId) !== undefined
    );
  }

  /** Records an event the transaction inserted. */
  inserted(eventId: string, seq: number): void {
    this.tail.set(eventId, seq);
    this.added.push(eventId);
    if (seq > this.lastSeen) this.lastSeen = seq;
  }

  /** After the transaction rolled back: forgets what it inserted. */
  rolledBack(): void {
    for (const id of this.added) this.tail.delete(id);
    this.added = [];
    this.lastSeen = this.addedFrom;
  }

  /**
   * After the transaction committed: while a merge runs, the inserted events add to the debt; once the
   * tail is large enough, a merge starts.
   */
  committed(): void {
    if (this.current !== null) this.owed += ROWS_PER_EVENT * this.added.length;
    this.added = [];
    const due = Math.min(TAIL_CAP, Math.max(this.mergeMin, Math.floor(this.mergedSeq / 8)));
    if (this.tail.size >= due && this.driver === null && Date.now() >= this.retryAfter && !this.closed) {
      this.startMerge().catch(() => {
        // Busy, lease lost, closed: the tail stays valid; a later commit past the threshold tries again.
        this.retryAfter = Date.now() + 5_000;
      });
    }
  }

  /**
   * Loads the unmerged tail, a slice per event-loop turn, instead of in the first append's transaction
   * (at 1M tail events that read held the loop 2.4 s). The first append starts it and waits for it
   * (`whenPaid`), so a process that never appends never holds the tail.
   */
  warm(): Promise<void> {
    this.warming ??= this.load().finally(() => {
      this.warming = null;
      this.warmed = true; // even after a failure: the append transaction's catch-up reads the rest
    });
    return this.warming;
  }

  private async load(): Promise<void> {
    const slice = this.sql
      .get<[number], [number, string]>(
        `SELECT seq, event_id FROM events WHERE seq > ? ORDER BY seq LIMIT ${TAIL_SLICE}`,
      )
      .raw();
    this.advance(
      this.sql.get<[], number>('SELECT merged_seq FROM event_index WHERE id = 1').pluck().get() ?? 0,
    );
    if (this.lastSeen < this.mergedSeq) this.lastSeen = this.mergedSeq;
    for (;;) {
      if (this.closed || !this.db.open) return;
      const rows = slice.all(this.lastSeen);
      for (const [seq, id] of rows) {
        this.tail.set(id, seq);
        this.lastSeen = seq;
      }
      if (rows.length < TAIL_SLICE) return;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /** Calls `run` (the next append transaction) once the tail is loaded and this connection's merge debt paid. */
  whenPaid(run: () => void): void {
    if (!this.warmed && this.warming === null && !this.closed) void this.warm().catch(() => undefined);
    if (this.warming !== null) {
      void this.warming.catch(() => undefined).then(() => this.whenPaid(run));
      return;
    }
    if (this.owed <= 0 || this.current === null) setImmediate(run);
    else this.waiting.push(run);
  }

  /** Waits for a merge in progress, then merges what is left of the tail (tests, benchmarks). */
  async mergeNow(): Promise<void> {
    await this.driver?.catch(() => undefined);
    await this.startMerge();
  }

  /**
   * A user's events, newest first (by ts, then seq): the merged ones through `event_users`, the tail by
   * a scan of the events after `merged_seq` (at most the merge threshold and what came during a merge).
   */
  forUser<R>(columns: string, userId: string, limit: number): R[] {
    return this.sql
      .get<[{ user: string; limit: number }], R>(
        `SELECT ${columns} FROM events WHERE seq IN (
           SELECT seq FROM event_users WHERE user_id = @user ORDER BY ts DESC, seq DESC LIMIT @limit)
         UNION
         SELECT ${columns} FROM events
           WHERE seq > (SELECT merged_seq FROM event_index WHERE id = 1) AND user_id = @user
         ORDER BY ts DESC, seq DESC LIMIT @limit`,
      )
      .all({ user: userId, limit });
  }

  /**
   * Deletes a user's events and their lookup rows; call inside a write transaction. Returns the deleted
   * rows (`columns` must include `event_id`, `user_id`, `ts` and `seq`).
   */
  deleteUser<R extends { event_id: string; user_id: string; ts: number; seq: number }>(
    columns: string,
    userId: string,
  ): R[] {
    const merged = this.sql
      .get<[string], R>(
        `DELETE FROM events WHERE seq IN (SELECT seq FROM event_users WHERE user_id = ?) RETURNING ${columns}`,
      )
      .all(userId);
    const recent = this.sql
      .get<[string], R>(
        `DELETE FROM events WHERE seq > (SELECT merged_seq FROM event_index WHERE id = 1) AND user_id = ?
         RETURNING ${columns}`,
      )
      .all(userId);
    const rows = [...merged, ...recent];
    if (rows.length === 0) return rows;
    this.sql.get<[string]>('DELETE FROM event_users WHERE user_id = ?').run(userId);
    const dropId = this.sql.get<[string]>('DELETE FROM event_ids WHERE event_id = ?');
    for (const r of rows) {
      dropId.run(r.event_id);
      this.tail.delete(r.event_id);
    }
    if (this.current !== null) {
      // Our own merge: take the rows out of what it staged.
      const unstageId = this.sql.get<[string]>('DELETE FROM temp.merge_ids WHERE event_id = ?');
      const unstageUser = this.sql.get<[string, number, number]>(
        'DELETE FROM temp.merge_users WHERE user_id = ? AND ts = ? AND seq = ?',
      );
      for (const r of rows) {
        unstageId.run(r.event_id);
        unstageUser.run(r.user_id, r.ts, r.seq);
      }
    } else {
      // Another process's merge may have staged them: it loses its lease, stops, and is done again.
      this.sql.get('UPDATE event_index SET merger = NULL, merging_until = 0 WHERE id = 1').run();
    }
    return rows;
  }

  /** Stops a merge in progress at its next step (it is done again later) and waits for it. */
  async close(): Promise<void> {
    this.closed = true;
    await this.driver?.catch(() => undefined);
  }

  private advance(merged: number): void {
    if (merged <= this.mergedSeq) return;
    this.mergedSeq = merged;
    // Insertion order is seq order (appends and catch-ups add ascending seqs), so stop at the first
    // newer one; an entry left behind is still right (trusted only once its row is found).
    for (const [id, seq] of this.tail) {
      if (seq > merged) break;
      this.tail.delete(id);
    }
  }

  /** Claims the lease and runs the merge's steps, one per event-loop turn. */
  private startMerge(): Promise<void> {
    const run = this.drive().finally(() => {
      this.current = null;
      this.owed = 0;
      this.release();
      if (this.driver === run) this.driver = null;
    });
    this.driver = run;
    return run;
  }

  private async drive(): Promise<void> {
    const merge = this.claim();
    if (merge === null) {
      this.retryAfter = Date.now() + this.leaseMs / 3;
      return;
    }
    this.current = merge;
    while (merge.phase !== 'done') {
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (this.closed || !this.db.open) throw new Error('event index closed during a merge');
      const t = performance.now();
      const rows = this.step(merge);
      this.stats.steps++;
      const ms = performance.now() - t;
      this.stats.maxStepMs = Math.max(this.stats.maxStepMs, ms);
      if (ms > 20) this.stats.slowSteps++;
      this.owed -= rows;
      if (this.owed <= 0) this.wake();
    }
    this.advance(merge.hi);
    this.stats.merges++;
  }

  private wake(): void {
    const waiting = this.waiting;
    this.waiting = [];
    for (const run of waiting) setImmediate(run);
  }

  private release(): void {
    this.wake();
    if (!this.db.open) return;
    try {
      this.db.exec('DELETE FROM temp.merge_ids; DELETE FROM temp.merge_users');
      this.sql
        .get<[string]>('UPDATE event_index SET merger = NULL, merging_until = 0 WHERE id = 1 AND merger = ?')
        .run(this.holder);
    } catch {
      // Busy: the lease runs out by itself.
    }
  }

  /** Takes the merge lease when free or expired; returns the merge of the seqs after `merged_seq`, or null. */
  private claim(): Merge | null {
    this.db.exec(`
      CREATE TEMP TABLE IF NOT EXISTS merge_ids (event_id TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TEMP TABLE IF NOT EXISTS merge_users (
        user_id TEXT NOT NULL, ts INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (user_id, ts, seq)
      ) WITHOUT ROWID;
      DELETE FROM temp.merge_ids; DELETE FROM temp.merge_users;`);
    return this.db
      .transaction((): Merge | null => {
        const now = Date.now();
        const taken = this.sql
          .get<[{ holder: string; until: number; now: number }]>(
            `UPDATE event_index SET merger = @holder, merging_until = @until
             WHERE id = 1 AND (merger IS NULL OR merger = @holder OR merging_until < @now)`,
          )
          .run({ holder: this.holder, until: now + this.leaseMs, now }).changes;
        if (taken !== 1) return null;
        const lo =
          this.sql.get<[], number>('SELECT merged_seq FROM event_index WHERE id = 1').pluck().get() ?? 0;
        const hi = this.sql.get<[], number>('SELECT COALESCE(MAX(seq), 0) FROM events').pluck().get() ?? 0;
        return {
          lo,
          hi,
          phase: 'stage',
          staged: lo,
          idCursor: '',
          // Strictly below every key: '' is the least string and seqs are positive.
          userCursor: ['', Number.MIN_SAFE_INTEGER, Number.MIN_SAFE_INTEGER],
        };
      })
      .immediate();
  }

  /**
   * One step of the merge, in one write transaction that renews the lease (and fails once another
   * process took it). Returns the rows it moved.
   */
  private step(m: Merge): number {
    // A step need not reach the disk before the next: what a crash loses is merged again, and the WAL
    // loses only a suffix, so `merged_seq` never survives a step it depends on. The next synchronous
    // commit (an append) syncs the steps before it too.
    this.synchronous ??= this.db.pragma('synchronous', { simple: true }) as number;
    this.db.pragma('synchronous = NORMAL');
    try {
      return this.stepTx(m);
    } finally {
      this.db.pragma(`synchronous = ${this.synchronous}`);
    }
  }

  private stepTx(m: Merge): number {
    return this.db
      .transaction((): number => {
        const renewed = this.sql
          .get<[number, string]>('UPDATE event_index SET merging_until = ? WHERE id = 1 AND merger = ?')
          .run(Date.now() + this.leaseMs, this.holder).changes;
        if (renewed !== 1) throw new Error('merge lease lost');
        switch (m.phase) {
          case 'stage':
            return this.stageStep(m);
          case 'ids':
            return this.idStep(m);
          case 'users':
            return this.userStep(m);
          default:
            return 0;
        }
      })
      .immediate();
  }

  /** Copies the next tail events' keys into the temp tables, whose B-trees sort them. */
  private stageStep(m: Merge): number {
    const to = Math.min(m.hi, m.staged + this.stepRows);
    this.sql
      .get<[number, number]>(
        'INSERT OR IGNORE INTO temp.merge_ids SELECT event_id, seq FROM events WHERE seq > ? AND seq <= ?',
      )
      .run(m.staged, to);
    this.sql
      .get<[number, number]>(
        'INSERT OR IGNORE INTO temp.merge_users SELECT user_id, ts, seq FROM events WHERE seq > ? AND seq <= ?',
      )
      .run(m.staged, to);
    const rows = to - m.staged;
    m.staged = to;
    if (to >= m.hi) m.phase = 'ids';
    return rows;
  }

  private idStep(m: Merge): number {
    const to = this.sql
      .get<[string, number], string | null>(
        'SELECT MAX(event_id) FROM (SELECT event_id FROM temp.merge_ids WHERE event_id > ? ORDER BY event_id LIMIT ?)',
      )
      .pluck()
      .get(m.idCursor, this.stepRows);
    if (to === null || to === undefined) {
      m.phase = 'users';
      return 0;
    }
    this.sql
      .get<[string, string]>(
        'INSERT OR IGNORE INTO event_ids SELECT event_id, seq FROM temp.merge_ids WHERE event_id > ? AND event_id <= ?',
      )
      .run(m.idCursor, to);
    m.idCursor = to;
    return this.stepRows;
  }

  private userStep(m: Merge): number {
    const to = this.sql
      .get<[string, number, number, number], UserKey>(
        `SELECT user_id, ts, seq FROM (
           SELECT user_id, ts, seq FROM temp.merge_users WHERE (user_id, ts, seq) > (?, ?, ?)
           ORDER BY user_id, ts, seq LIMIT ?)
         ORDER BY user_id DESC, ts DESC, seq DESC LIMIT 1`,
      )
      .raw()
      .get(...m.userCursor, this.stepRows);
    if (to === undefined) {
      this.sql
        .get<[number, string]>(
          `UPDATE event_index SET merged_seq = MAX(merged_seq, ?), merging_until = 0, merger = NULL
           WHERE id = 1 AND merger = ?`,
        )
        .run(m.hi, this.holder);
      m.phase = 'done';
      return 0;
    }
    this.sql
      .get<[string, number, number, string, number, number]>(
        `INSERT OR IGNORE INTO event_users SELECT user_id, ts, seq FROM temp.merge_users
         WHERE (user_id, ts, seq) > (?, ?, ?) AND (user_id, ts, seq) <= (?, ?, ?)`,
      )
      .run(...m.userCursor, ...to);
    m.userCursor = to;
    return this.stepRows;
  }
}
