/**
 * The job queue on the embedded store's `jobs` table. Every state change is one statement or one
 * IMMEDIATE transaction, so several processes sharing the file (a CLI command beside `cairn serve`)
 * serialize on SQLite's write lock and never both claim a job.
 */
import { randomUUID } from 'node:crypto';
import type { Job, JsonObject } from '../../domain/types.ts';
import { CairnError } from '../../errors/errors.ts';
import { backoffMs, type ClaimedJob, type EnqueueOptions, type JobQueue } from '../../jobs/contracts.ts';
import { guarded, lazy, type Db, type SqliteStore } from './store.ts';

export interface SqliteJobQueueOptions {
  /** Backoff before the second attempt (ms); it doubles per attempt (`backoffMs`). Default 1000. */
  backoffBaseMs?: number;
  /** Attempts of a job whose `enqueue` names none (default 3). */
  maxAttempts?: number;
}

/** Why a job whose worker vanished with no attempt left ends as `failed`. */
const WORKER_STOPPED = 'the worker running it stopped (its lease expired) and no attempt is left';

interface JobRow {
  id: string;
  name: string;
  payload: string;
  status: string;
  progress: number;
  result: string | null;
  error: string | null;
  created_at: number;
  updated_at: number;
  attempts: number;
  max_attempts: number;
  owner: string | null;
  lease_until: number | null;
  run_at: number;
  dedupe_key: string | null;
}

const COLUMNS =
  'id, name, payload, status, progress, result, error, created_at, updated_at, attempts, max_attempts, owner, lease_until, run_at, dedupe_key';

function toJob(r: JobRow): Job {
  return {
    id: r.id,
    name: r.name,
    payload: JSON.parse(r.payload) as JsonObject,
    status: r.status as Job['status'],
    progress: r.progress,
    result: r.result === null ? null : (JSON.parse(r.result) as JsonObject),
    error: r.error,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    attempts: r.attempts,
    maxAttempts: r.max_attempts,
    owner: r.owner,
    leaseUntil: r.lease_until,
    runAt: r.run_at,
    dedupeKey: r.dedupe_key,
  };
}

interface InsertParams {
  id: string;
  name: string;
  payload: string;
  now: number;
  maxAttempts: number;
  dedupeKey: string | null;
}

/** `maxAttempts` must be a whole number of attempts, at least one. */
function checkAttempts(value: number): number {
  if (!Number.isInteger(value) || value < 1) {
    throw CairnError.validation([{ field: 'maxAttempts', message: 'must be an integer ≥ 1' }]);
  }
  return value;
}

/** Progress is a fraction; anything outside 0..1 (or not a number) is clamped or ignored. */
function clampProgress(p: number | undefined): number | null {
  return p === undefined || Number.isNaN(p) ? null : Math.max(0, Math.min(1, p));
}

/** SQLite implementation of the JobQueue port, sharing the store's connection. */
export class SqliteJobQueue implements JobQueue {
  readonly kind = 'sqlite';
  private readonly backoffBaseMs: number;
  private readonly maxAttempts: number;
  private readonly byId;
  private readonly unfinishedByKey;
  private readonly insert;
  private readonly failExhausted;
  private readonly next;
  private readonly take;
  private readonly renew;
  private readonly succeed;
  private readonly requeue;
  private readonly finalFail;
  private readonly enqueueTx;
  private readonly claimTx;
  private readonly failTx;

  constructor(store: SqliteStore, options: SqliteJobQueueOptions = {}) {
    const db: Db = store.db;
    this.backoffBaseMs = Math.max(0, options.backoffBaseMs ?? 1000);
    this.maxAttempts = checkAttempts(options.maxAttempts ?? 3);

    this.byId = lazy(() => db.prepare<[string], JobRow>(`SELECT ${COLUMNS} FROM jobs WHERE id = ?`));
    this.unfinishedByKey = lazy(() =>
      db.prepare<[string], JobRow>(
        `SELECT ${COLUMNS} FROM jobs WHERE dedupe_key = ? AND status IN ('queued', 'running')`,
      ),
    );
    this.insert = lazy(() =>
      db.prepare<[InsertParams], JobRow>(
        `INSERT INTO jobs (id, name, payload, status, progress, result, error, created_at, updated_at,
           attempts, max_attempts, owner, lease_until, run_at, dedupe_key)
         VALUES (@id, @name, @payload, 'queued', 0, NULL, NULL, @now, @now, 0, @maxAttempts, NULL, NULL, @now,
           @dedupeKey)
         RETURNING ${COLUMNS}`,
      ),
    );
    // Names travel as one JSON array (json_each): any number of them, one prepared statement.
    this.failExhausted = lazy(() =>
      db.prepare<[{ error: string; now: number; names: string }]>(
        `UPDATE jobs SET status = 'failed', error = @error, owner = NULL, lease_until = NULL, updated_at = @now
         WHERE status = 'running' AND lease_until < @now AND attempts >= max_attempts
           AND name IN (SELECT value FROM json_each(@names))`,
      ),
    );
    this.next = lazy(() =>
      db
        .prepare<[{ now: number; names: string }], string>(
          `SELECT id FROM jobs
           WHERE status IN ('queued', 'running') AND name IN (SELECT value FROM json_each(@names))
             AND ((status = 'queued' AND run_at <= @now) OR (status = 'running' AND lease_until < @now))
           ORDER BY created_at, id LIMIT 1`,
        )
        .pluck(),
    );
    this.take = lazy(() =>
      db.prepare<[{ id: string; owner: string; leaseUntil: number; now: number }], JobRow>(
        `UPDATE jobs SET status = 'running', owner = @owner, lease_until = @leaseUntil,
           attempts = attempts + 1, progress = 0, updated_at = @now
         WHERE id = @id RETURNING ${COLUMNS}`,
      ),
    );
    this.renew = lazy(() =>
      db.prepare<[{ id: string; owner: string; leaseUntil: number; progress: number | null; now: number }]>(
        `UPDATE jobs SET lease_until = @leaseUntil, progress = COALESCE(@progress, progress), updated_at = @now
         WHERE id = @id AND owner = @owner AND status = 'running'`,
      ),
    );
    this.succeed = lazy(() =>
      db.prepare<[{ id: string; owner: string; result: string; now: number }]>(
        `UPDATE jobs SET status = 'succeeded', result = @result, progress = 1, error = NULL, owner = NULL,
           lease_until = NULL, updated_at = @now
         WHERE id = @id AND owner = @owner AND status = 'running'`,
      ),
    );
    this.requeue = lazy(() =>
      db.prepare<[{ id: string; error: string; runAt: number; now: number }], JobRow>(
        `UPDATE jobs SET status = 'queued', error = @error, run_at = @runAt, owner = NULL, lease_until = NULL,
           updated_at = @now
         WHERE id = @id RETURNING ${COLUMNS}`,
      ),
    );
    this.finalFail = lazy(() =>
      db.prepare<[{ id: string; error: string; now: number }], JobRow>(
        `UPDATE jobs SET status = 'failed', error = @error, owner = NULL, lease_until = NULL, updated_at = @now
         WHERE id = @id RETURNING ${COLUMNS}`,
      ),
    );

    this.enqueueTx = db.transaction(
      (name: string, payload: string, maxAttempts: number, dedupeKey: string | null): JobRow => {
        if (dedupeKey !== null) {
          // Inside the write transaction, so no other process can insert the same key in between;
          // the partial unique index backs this up.
          const existing = this.unfinishedByKey().get(dedupeKey);
          if (existing) return existing;
        }
        const params = { id: randomUUID(), name, payload, now: Date.now(), maxAttempts, dedupeKey };
        return this.insert().get(params)!;
      },
    );
    this.claimTx = db.transaction((owner: string, names: string, leaseMs: number): JobRow | null => {
      const now = Date.now();
      // A job whose worker vanished (lease expired) with no attempt left ends here instead of running
      // again; the others are claimable like queued ones.
      this.failExhausted().run({ error: WORKER_STOPPED, now, names });
      const id = this.next().get({ now, names });
      return id === undefined ? null : this.take().get({ id, owner, leaseUntil: now + leaseMs, now })!;
    });
    this.failTx = db.transaction(
      (id: string, owner: string, error: string, permanent: boolean): JobRow | null => {
        const row = this.byId().get(id);
        if (!row || row.status !== 'running' || row.owner !== owner) return null;
        const now = Date.now();
        if (permanent || row.attempts >= row.max_attempts) return this.finalFail().get({ id, error, now })!;
        const runAt = now + backoffMs(row.attempts, this.backoffBaseMs);
        return this.requeue().get({ id, error, runAt, now })!;
      },
    );
  }

  async enqueue(name: string, payload: JsonObject, options: EnqueueOptions = {}): Promise<Job> {
    const maxAttempts = checkAttempts(options.maxAttempts ?? this.maxAttempts);
    const row = guarded(() =>
      this.enqueueTx.immediate(name, JSON.stringify(payload), maxAttempts, options.dedupeKey ?? null),
    );
    return Promise.resolve(toJob(row));
  }

  async get(id: string): Promise<Job | null> {
    const row = guarded(() => this.byId().get(id));
    return Promise.resolve(row ? toJob(row) : null);
  }

  async claim(owner: string, names: readonly string[], leaseMs: number): Promise<ClaimedJob | null> {
    if (names.length === 0) return Promise.resolve(null);
    const row = guarded(() => this.claimTx.immediate(owner, JSON.stringify(names), Math.max(1, leaseMs)));
    if (!row) return Promise.resolve(null);
    return Promise.resolve({ job: toJob(row), owner, leaseUntil: row.lease_until! });
  }

  /**
   * Renews while `owner` still holds the job. A lease that ran out but that no other worker took over
   * yet is renewed too: nobody else is running the job, so its owner may as well finish it.
   */
  async heartbeat(id: string, owner: string, leaseMs: number, progress?: number): Promise<boolean> {
    const now = Date.now();
    const params = {
      id,
      owner,
      leaseUntil: now + Math.max(1, leaseMs),
      progress: clampProgress(progress),
      now,
    };
    const changes = guarded(() => this.renew().run(params).changes);
    return Promise.resolve(changes === 1);
  }

  async complete(id: string, owner: string, result: JsonObject): Promise<boolean> {
    const params = { id, owner, result: JSON.stringify(result), now: Date.now() };
    const changes = guarded(() => this.succeed().run(params).changes);
    return Promise.resolve(changes === 1);
  }

  async fail(id: string, owner: string, error: string, permanent: boolean): Promise<Job | null> {
    const row = guarded(() => this.failTx.immediate(id, owner, error, permanent));
    return Promise.resolve(row ? toJob(row) : null);
  }

  /** Nothing to release: the connection belongs to the store, which its owner closes. */
  async close(): Promise<void> {
    return Promise.resolve();
  }
}
