/**
 * The merge of the event lookups (event-index.ts): the unmerged tail's keys sorted in temp tables, then
 * written into `event_ids` and `event_users` in key order, a write transaction per step.
 *
 * `LocalMerge` does the work on a connection of its own; for a database file that connection lives on a
 * worker thread (`MergeThread`, entry event-index-merge.worker.ts), so sorting the tail (staging: temp
 * tables only, no write lock on the file) runs on another core beside the appends, and the write steps,
 * which the appending connection asks for one at a time (`write()`), hold neither its event loop nor its
 * CPU. An in-memory database has no second connection: its merge runs on the service's own connection
 * (`inThread`), staging a slice per event-loop turn.
 *
 * Erasures: an erasure during a merge (any process) records the erased seqs in `event_index_erased` in
 * its own transaction; every write step first takes those rows out of what it staged, in the same
 * transaction, so an erased event's keys are never written back whatever the order of the two.
 */
import type { Statement } from 'better-sqlite3';
import { yieldToLoop } from '../../domain/cooperative.ts';
import { withoutSync, type Db, type ThreadConnection } from './db.ts';
import { entryBeside, SqliteThread } from './thread.ts';

/** The seqs a merge covers: after `lo` up to `hi`. */
export interface MergePlan {
  lo: number;
  hi: number;
}

/** What one write step did: rows written (counts toward the appends' debt), whether the merge is done. */
export interface MergeStep {
  rows: number;
  done: boolean;
  /** How long the step's write transaction took (ms). */
  ms: number;
}

export interface MergeSettings {
  /** Keys per step (staging slice, write step). */
  stepRows: number;
  leaseMs: number;
  /** This connection's name in the lease (`event_index.merger`). */
  holder: string;
}

/** A merge, on whichever connection does it. */
export interface MergeRunner {
  /** Takes the lease and stages the tail; null when another process holds the lease. */
  begin(): Promise<MergePlan | null>;
  /** One write step (fails once the lease is lost). */
  write(): Promise<MergeStep>;
  /** Gives the lease back and clears what was staged (after the merge, or when it failed). */
  end(): Promise<void>;
  /** Ends the runner (its thread and connection). */
  close(): Promise<void>;
}

type UserKey = [string, number, number];

/** Prepared statements, compiled on first use (the tables exist only after `migrate()`). */
export class Statements {
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

/** The merge's work on one connection, in steps the caller paces. */
export class LocalMerge {
  private readonly sql: Statements;
  private plan: MergePlan | null = null;
  private phase: 'stage' | 'ids' | 'users' | 'done' = 'done';
  private staged = 0;
  private idCursor = '';
  private userCursor: UserKey = ['', 0, 0];
  private renewedAt = 0;

  constructor(
    private readonly db: Db,
    private readonly settings: MergeSettings,
  ) {
    this.sql = new Statements(db);
  }

  /** Takes the lease when free or expired; returns the seqs after `merged_seq`, or null. */
  claim(): MergePlan | null {
    this.db.exec(`
      CREATE TEMP TABLE IF NOT EXISTS merge_ids (event_id TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS temp.merge_ids_seq ON merge_ids (seq);
      CREATE TEMP TABLE IF NOT EXISTS merge_users (
        user_id TEXT NOT NULL, ts INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (user_id, ts, seq)
      ) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS temp.merge_users_seq ON merge_users (seq);
      DELETE FROM temp.merge_ids; DELETE FROM temp.merge_users;`);
    const { holder, leaseMs } = this.settings;
    const plan = this.db
      .transaction((): MergePlan | null => {
        const now = Date.now();
        const taken = this.sql
          .get<[{ holder: string; until: number; now: number }]>(
            `UPDATE event_index SET merger = @holder, merging_until = @until
             WHERE id = 1 AND (merger IS NULL OR merger = @holder OR merging_until < @now)`,
          )
          .run({ holder, until: now + leaseMs, now }).changes;
        if (taken !== 1) return null;
        // Erasures recorded for an earlier merge (one cut short) concern nothing staged now.
        this.sql.get('DELETE FROM event_index_erased').run();
        const lo =
          this.sql.get<[], number>('SELECT merged_seq FROM event_index WHERE id = 1').pluck().get() ?? 0;
        const hi = this.sql.get<[], number>('SELECT COALESCE(MAX(seq), 0) FROM events').pluck().get() ?? 0;
        return { lo, hi };
      })
      .immediate();
    this.plan = plan;
    if (plan === null) return null;
    this.renewedAt = Date.now();
    this.phase = 'stage';
    this.staged = plan.lo;
    this.idCursor = '';
    // Strictly below every key: '' is the least string and seqs are positive.
    this.userCursor = ['', Number.MIN_SAFE_INTEGER, Number.MIN_SAFE_INTEGER];
    return plan;
  }

  /**
   * Copies the next `rows` tail events' keys into the temp tables, whose B-trees sort them; returns false
   * once all are staged. Writes only temp tables: no write lock on the file, except to renew the lease
   * (every third of it).
   */
  stage(rows = this.settings.stepRows): boolean {
    const plan = this.plan;
    if (plan === null || this.phase !== 'stage') return false;
    if (Date.now() - this.renewedAt > this.settings.leaseMs / 3)
      this.db.transaction(() => this.renew()).immediate();
    const to = Math.min(plan.hi, this.staged + rows);
    this.db
      .transaction(() => {
        this.sql
          .get<[number, number]>(
            'INSERT OR IGNORE INTO temp.merge_ids SELECT event_id, seq FROM events WHERE seq > ? AND seq <= ?',
          )
          .run(this.staged, to);
        this.sql
          .get<[number, number]>(
            'INSERT OR IGNORE INTO temp.merge_users SELECT user_id, ts, seq FROM events WHERE seq > ? AND seq <= ?',
          )
          .run(this.staged, to);
      })
      .deferred();
    this.staged = to;
    if (to < plan.hi) return true;
    this.phase = 'ids';
    return false;
  }

  /**
   * One write step in one transaction: renews the lease (fails once another process took it), takes
   * erased events out of what is staged, writes the next keys. Runs at `synchronous = NORMAL`: a step
   * lost in a crash is merged again, and the WAL loses only a suffix, so `merged_seq` never survives a
   * step it depends on.
   */
  write(): MergeStep {
    const t = performance.now();
    const rows = withoutSync(this.db, () =>
      this.db
        .transaction((): number => {
          this.renew();
          this.unstageErased();
          if (this.phase === 'ids') return this.idStep();
          if (this.phase === 'users') return this.userStep();
          return 0;
        })
        .immediate(),
    );
    return { rows, done: this.phase === 'done', ms: performance.now() - t };
  }

  /** Clears the temp tables and gives the lease back, if still held (busy: it runs out by itself). */
  release(): void {
    this.plan = null;
    this.phase = 'done';
    if (!this.db.open) return;
    try {
      this.db.exec('DELETE FROM temp.merge_ids; DELETE FROM temp.merge_users');
      this.db
        .transaction(() => {
          const mine = this.sql
            .get<[string]>(
              'UPDATE event_index SET merger = NULL, merging_until = 0 WHERE id = 1 AND merger = ?',
            )
            .run(this.settings.holder).changes;
          if (mine === 1) this.sql.get('DELETE FROM event_index_erased').run();
        })
        .immediate();
    } catch {
      // Busy, or the temp tables were never made.
    }
  }

  private renew(): void {
    const renewed = this.sql
      .get<[number, string]>('UPDATE event_index SET merging_until = ? WHERE id = 1 AND merger = ?')
      .run(Date.now() + this.settings.leaseMs, this.settings.holder).changes;
    if (renewed !== 1) throw new Error('merge lease lost');
    this.renewedAt = Date.now();
  }

  private unstageErased(): void {
    const seqs = this.sql.get<[], number>('SELECT seq FROM event_index_erased').pluck().all();
    if (seqs.length === 0) return;
    const ids = this.sql.get<[number]>('DELETE FROM temp.merge_ids WHERE seq = ?');
    const users = this.sql.get<[number]>('DELETE FROM temp.merge_users WHERE seq = ?');
    for (const seq of seqs) {
      ids.run(seq);
      users.run(seq);
    }
    this.sql.get('DELETE FROM event_index_erased').run();
  }

  private idStep(): number {
    const to = this.sql
      .get<[string, number], string | null>(
        'SELECT MAX(event_id) FROM (SELECT event_id FROM temp.merge_ids WHERE event_id > ? ORDER BY event_id LIMIT ?)',
      )
      .pluck()
      .get(this.idCursor, this.settings.stepRows);
    if (to === null || to === undefined) {
      this.phase = 'users';
      return 0;
    }
    this.sql
      .get<[string, string]>(
        'INSERT OR IGNORE INTO event_ids SELECT event_id, seq FROM temp.merge_ids WHERE event_id > ? AND event_id <= ?',
      )
      .run(this.idCursor, to);
    this.idCursor = to;
    return this.settings.stepRows;
  }

  private userStep(): number {
    const to = this.sql
      .get<[string, number, number, number], UserKey>(
        `SELECT user_id, ts, seq FROM (
           SELECT user_id, ts, seq FROM temp.merge_users WHERE (user_id, ts, seq) > (?, ?, ?)
           ORDER BY user_id, ts, seq LIMIT ?)
         ORDER BY user_id DESC, ts DESC, seq DESC LIMIT 1`,
      )
      .raw()
      .get(...this.userCursor, this.settings.stepRows);
    if (to === undefined) {
      this.sql
        .get<[number, string]>(
          `UPDATE event_index SET merged_seq = MAX(merged_seq, ?), merging_until = 0, merger = NULL
           WHERE id = 1 AND merger = ?`,
        )
        .run(this.plan!.hi, this.settings.holder);
      this.phase = 'done';
      return 0;
    }
    this.sql
      .get<[string, number, number, string, number, number]>(
        `INSERT OR IGNORE INTO event_users SELECT user_id, ts, seq FROM temp.merge_users
         WHERE (user_id, ts, seq) > (?, ?, ?) AND (user_id, ts, seq) <= (?, ?, ?)`,
      )
      .run(...this.userCursor, ...to);
    this.userCursor = to;
    return this.settings.stepRows;
  }
}

/** The merge on a given connection, staging a slice per event-loop turn (in-memory databases; the thread). */
export function inThread(db: Db, settings: MergeSettings, closed: () => boolean = () => false): MergeRunner {
  const merge = new LocalMerge(db, settings);
  return {
    async begin() {
      const plan = merge.claim();
      if (plan === null) return null;
      for (;;) {
        if (closed() || !db.open) throw new Error('event index closed during a merge');
        if (!merge.stage()) return plan;
        await yieldToLoop();
      }
    },
    write: () => Promise.resolve(merge.write()),
    end: () => Promise.resolve(merge.release()),
    close: () => Promise.resolve(),
  };
}

/** A request to the merge thread (its reply: a `ThreadReply` with the runner's value). */
export type MergeRequest = { id: number; op: 'begin' | 'write' | 'end' | 'close' };

/** What the merge thread opens: the database file and the settings of the merge. */
export interface MergeThreadData extends ThreadConnection {
  settings: MergeSettings;
}

/** The merge on a worker thread with its own connection to the file (started with the first merge). */
export class MergeThread implements MergeRunner {
  private readonly thread: SqliteThread;
  private closing = false;

  constructor(data: MergeThreadData) {
    this.thread = new SqliteThread(
      entryBeside(import.meta.url, 'event-index-merge.worker'),
      { cairnEventIndexMerge: data },
      {
        failed: (reply) => new Error(reply.message),
        lost: (why, cause) => new Error(`the event index merge thread ${why}`, { cause }),
      },
    );
  }

  begin(): Promise<MergePlan | null> {
    return this.ask('begin') as Promise<MergePlan | null>;
  }

  write(): Promise<MergeStep> {
    return this.ask('write') as Promise<MergeStep>;
  }

  async end(): Promise<void> {
    await this.ask('end');
  }

  /** Stops a merge in progress (its lease given back), closes the thread's connection and ends it. */
  async close(): Promise<void> {
    const closed = this.thread.running && !this.closing ? this.ask('close').catch(() => undefined) : null;
    this.closing = true;
    await closed;
    await this.thread.gone();
  }

  private ask(op: MergeRequest['op']): Promise<unknown> {
    if (this.closing) return Promise.reject(new Error('event index closed during a merge'));
    return this.thread.ask({ op });
  }
}
