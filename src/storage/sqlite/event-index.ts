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
 * step (event-index-merge.ts; on a worker thread with its own connection for a database file): each
 * index page is then written once per merge instead of once per batch. A merge claims `event_index`
 * with a lease, so one process merges at a time; a merge cut short (crash, close) is simply done again
 * (`INSERT OR IGNORE`), because `merged_seq` only advances when it is complete.
 *
 * Pacing: sorting the tail (staging) runs beside the appends. Then the write steps and this
 * connection's append transactions take turns, never both at once (so neither waits on the other's
 * write lock), and every event appended since the merge began owes two rows of merge work (by id, by
 * user): an append transaction starts only between two steps once the debt is paid (`whenPaid`). A
 * merge therefore finishes before the tail has doubled, at any ingestion rate, and ingestion slows to
 * what appending and merging together sustain.
 *
 * Invariants: every event with seq ≤ merged_seq has its rows in `event_ids` and `event_users`; rows of
 * later events may be there too (a merge in progress). An erasure deletes the user's events and their
 * rows in both tables in one transaction and, while any connection merges, records the erased seqs in
 * `event_index_erased`; each write step first takes those out of what it staged, in its own
 * transaction: an erased event's rows never come back. A tail entry is trusted only after its event row
 * is found (another process may have erased it).
 *
 * One assumption: events appended with an explicit seq (`appendLogged`) come in ascending seq order
 * across processes, as the single store-writer of a log does; the catch-up reads `seq > last seen`.
 */
import { randomUUID } from 'node:crypto';
import { yieldToLoop } from '../../domain/cooperative.ts';
import type { Db } from './db.ts';
import {
  inThread,
  MergeThread,
  Statements,
  type MergeRunner,
  type MergeSettings,
} from './event-index-merge.ts';

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
  /**
   * Merge on a worker thread with its own connection (default for a database file; an in-memory one
   * merges on its own connection).
   */
  mergeOnThread?: boolean;
}

/** What the merges did so far in this connection (benchmarks, tests). */
export interface EventIndexStats {
  merges: number;
  /** Write steps, and the longest one (it held the file's write lock; on the thread, not the event loop). */
  steps: number;
  maxStepMs: number;
  /** Steps that took over 20 ms. */
  slowSteps: number;
}

const TAIL_CAP = 2_000_000;
/** Merge work each appended event owes while a merge runs: merged by id, merged by user. */
const ROWS_PER_EVENT = 2;
/** Rows per slice of the tail's read before the first append. */
const TAIL_SLICE = 5_000;

export class SqliteEventIndex {
  readonly stats: EventIndexStats = { merges: 0, steps: 0, maxStepMs: 0, slowSteps: 0 };
  /** Event id → seq of the events after `mergedSeq` this connection knows of. */
  private readonly tail = new Map<string, number>();
  private mergedSeq = -1;
  private lastSeen = -1;
  /** Ids added by the append transaction in progress: taken back out if it rolls back. */
  private added: string[] = [];
  private addedFrom = -1;
  /** The merge this connection runs: staging (appends go on) or writing (appends wait their turn). */
  private phase: 'staging' | 'writing' | null = null;
  private merger: MergeRunner | null = null;
  /** Loading the tail before the first append, a slice per event-loop turn; appends wait for it. */
  private warming: Promise<void> | null = null;
  private warmed = false;
  private driver: Promise<void> | null = null;
  /** Merge rows owed by this connection's appends; appends wait while it is positive. */
  private owed = 0;
  private waiting: (() => void)[] = [];
  private retryAfter = 0;
  private closed = false;
  private readonly sql: Statements;
  private readonly mergeMin: number;
  private readonly settings: MergeSettings;
  private readonly onThread: boolean;

  constructor(
    private readonly db: Db,
    options: SqliteEventIndexOptions = {},
  ) {
    this.sql = new Statements(db);
    this.mergeMin = Math.max(1, Math.floor(options.mergeMinEvents ?? 50_000));
    this.settings = {
      stepRows: Math.max(1, Math.floor(options.mergeStepRows ?? 2_000)),
      leaseMs: Math.max(1, options.mergeLeaseMs ?? 30_000),
      holder: randomUUID(),
    };
    this.onThread = (options.mergeOnThread ?? true) && !db.memory;
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
    if (this.phase !== null) this.owed += ROWS_PER_EVENT * this.added.length;
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
      await yieldToLoop();
    }
  }

  /**
   * Calls `run` (the next append transaction) once the tail is loaded and, while this connection's merge
   * writes, between two of its steps once the merge debt is paid.
   */
  whenPaid(run: () => void): void {
    if (!this.warmed && this.warming === null && !this.closed) void this.warm().catch(() => undefined);
    if (this.warming !== null) {
      void this.warming.catch(() => undefined).then(() => this.whenPaid(run));
      return;
    }
    if (this.phase === 'writing') this.waiting.push(run);
    else setImmediate(run);
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
    // A merge in progress (of any connection) may have staged them: it takes them out before its next
    // write step (event-index-merge.ts).
    if (recent.length > 0 && this.sql.get<[], number>(MERGING).pluck().get() === 1) {
      const record = this.sql.get<[number]>('INSERT OR IGNORE INTO event_index_erased (seq) VALUES (?)');
      for (const r of recent) record.run(r.seq);
    }
    return rows;
  }

  /** Stops a merge in progress (it is done again later) and waits for it. */
  async close(): Promise<void> {
    this.closed = true;
    await this.merger?.close();
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

  /** Runs a merge: claims the lease, stages the tail, writes it a step at a time. */
  private startMerge(): Promise<void> {
    const run = this.drive().finally(() => {
      if (this.driver === run) this.driver = null;
    });
    this.driver = run;
    return run;
  }

  private async drive(): Promise<void> {
    this.merger ??= this.onThread
      ? new MergeThread({
          path: this.db.name,
          busyTimeoutMs: this.db.pragma('busy_timeout', { simple: true }) as number,
          settings: this.settings,
        })
      : inThread(this.db, this.settings, () => this.closed);
    const merger = this.merger;
    this.phase = 'staging';
    try {
      const plan = await merger.begin();
      if (plan === null) {
        this.retryAfter = Date.now() + this.settings.leaseMs / 3;
        return;
      }
      this.phase = 'writing';
      for (;;) {
        // Appends woken here run before the next step (their turn comes first), never beside it.
        await yieldToLoop();
        if (this.closed || !this.db.open) throw new Error('event index closed during a merge');
        if (this.waiting.length > 0 && this.owed <= 0) {
          this.wake();
          continue;
        }
        const step = await merger.write();
        this.stats.steps++;
        this.stats.maxStepMs = Math.max(this.stats.maxStepMs, step.ms);
        if (step.ms > 20) this.stats.slowSteps++;
        this.owed -= step.rows;
        if (step.done) {
          this.advance(plan.hi);
          this.stats.merges++;
          return;
        }
      }
    } finally {
      this.phase = null;
      this.owed = 0;
      await merger.end().catch(() => undefined);
      this.wake();
    }
  }

  private wake(): void {
    const waiting = this.waiting;
    this.waiting = [];
    for (const run of waiting) setImmediate(run);
  }
}

/** 1 while some connection holds the merge lease (it may have staged what an erasure deletes). */
const MERGING = 'SELECT merger IS NOT NULL FROM event_index WHERE id = 1';
