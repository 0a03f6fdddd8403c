/**
 * The job queue on PostgreSQL's `jobs` table, shared by every worker process. A claim is one UPDATE of
 * the row picked by `FOR UPDATE SKIP LOCKED`, so concurrent workers never wait for each other nor take
 * the same job. Leases and retry times are read from the database clock (`statement_timestamp()`), the
 * one clock all workers share, so a worker host whose clock drifts cannot steal a live lease.
 */
import { randomUUID } from 'node:crypto';
import type { Job, JsonObject } from '../../domain/types.ts';
import { CairnError } from '../../errors/errors.ts';
import { backoffMs, type ClaimedJob, type EnqueueOptions, type JobQueue } from '../../jobs/contracts.ts';
import type { Db, PostgresStore } from './store.ts';

export interface PostgresJobQueueOptions {
  /** Backoff before the second attempt (ms); it doubles per attempt (`backoffMs`). Default 1000. */
  backoffBaseMs?: number;
  /** Attempts of a job whose `enqueue` names none (default 3). */
  maxAttempts?: number;
}

const WORKER_STOPPED = 'the worker running it stopped (its lease expired) and no attempt is left';

/** Epoch ms of the database clock, fixed for the duration of one statement. */
const NOW = `floor(extract(epoch from statement_timestamp()) * 1000)::bigint`;

const COLUMNS =
  'id, name, payload, status, progress, result, error, created_at, updated_at, attempts, max_attempts, owner, lease_until, run_at, dedupe_key';

interface JobRow {
  id: string;
  name: string;
  payload: JsonObject;
  status: string;
  progress: number;
  result: JsonObject | null;
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

const toJob = (r: JobRow): Job => ({
  id: r.id,
  name: r.name,
  payload: r.payload,
  status: r.status as Job['status'],
  progress: r.progress,
  result: r.result,
  error: r.error,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
  attempts: r.attempts,
  maxAttempts: r.max_attempts,
  owner: r.owner,
  leaseUntil: r.lease_until,
  runAt: r.run_at,
  dedupeKey: r.dedupe_key,
});

/** `maxAttempts` must be a whole number of attempts, at least one. */
function checkAttempts(value: number): number {
  if (!Number.isInteger(value) || value < 1) {
    throw CairnError.validation([{ field: 'maxAttempts', message: 'must be an integer ≥ 1' }]);
  }
  return value;
}

/** PostgreSQL implementation of the JobQueue port, sharing the store's pool and schema. */
export class PostgresJobQueue implements JobQueue {
  readonly kind = 'postgres';
  private readonly db: Db;
  private readonly backoffBaseMs: number;
  private readonly maxAttempts: number;
  private readonly sql;

  constructor(store: PostgresStore, options: PostgresJobQueueOptions = {}) {
    this.db = store.db;
    this.backoffBaseMs = Math.max(0, options.backoffBaseMs ?? 1000);
    this.maxAttempts = checkAttempts(options.maxAttempts ?? 3);
    const t = `${this.db.s}.jobs`;
    this.sql = {
      get: `SELECT ${COLUMNS} FROM ${t} WHERE id = $1`,
      unfinishedByKey: `SELECT ${COLUMNS} FROM ${t} WHERE dedupe_key = $1 AND status IN ('queued', 'running')`,
      // The conflict target names the partial unique index (jobs_dedupe): a key that is still unfinished
      // inserts nothing, and the caller reads the job holding it.
      insert: `
        INSERT INTO ${t} (id, name, payload, status, progress, created_at, updated_at, attempts, max_attempts,
          run_at, dedupe_key)
        VALUES ($1, $2, $3::jsonb, 'queued', 0, ${NOW}, ${NOW}, 0, $4, ${NOW}, $5)
        ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'running') DO NOTHING
        RETURNING ${COLUMNS}`,
      // The CTE fails the jobs whose worker vanished with no attempt left (they are not claimable); the
      // main UPDATE takes the oldest runnable job. Both skip rows another claimer has locked, so claimers
      // never wait for (or deadlock on) each other, and they touch disjoint rows (attempts ≥ max vs < max).
      claim: `
        WITH exhausted AS (
          UPDATE ${t} SET status = 'failed', error = $4, owner = NULL, lease_until = NULL, updated_at = ${NOW}
          WHERE id IN (
            SELECT id FROM ${t}
            WHERE status = 'running' AND lease_until < ${NOW} AND attempts >= max_attempts
              AND name = ANY($2::text[])
            FOR UPDATE SKIP LOCKED)
        )
        UPDATE ${t} SET status = 'running', owner = $1, lease_until = ${NOW} + $3::bigint,
          attempts = attempts + 1, progress = 0, updated_at = ${NOW}
        WHERE id = (
          SELECT id FROM ${t}
          WHERE status IN ('queued', 'running') AND name = ANY($2::text[])
            AND ((status = 'queued' AND run_at <= ${NOW})
              OR (status = 'running' AND lease_until < ${NOW} AND attempts < max_attempts))
          ORDER BY created_at, id
          LIMIT 1
          FOR UPDATE SKIP LOCKED)
        RETURNING ${COLUMNS}`,
      heartbeat: `
        UPDATE ${t} SET lease_until = ${NOW} + $3::bigint, progress = COALESCE($4, progress), updated_at = ${NOW}
        WHERE id = $1 AND owner = $2 AND status = 'running'
        RETURNING id`,
      complete: `
        UPDATE ${t} SET status = 'succeeded', result = $3::jsonb, progress = 1, error = NULL, owner = NULL,
          lease_until = NULL, updated_at = ${NOW}
        WHERE id = $1 AND owner = $2 AND status = 'running'
        RETURNING id`,
      lockForFail: `
        SELECT attempts, max_attempts, ${NOW} AS now FROM ${t}
        WHERE id = $1 AND owner = $2 AND status = 'running'
        FOR UPDATE`,
      requeue: `
        UPDATE ${t} SET status = 'queued', error = $2, run_at = $3, owner = NULL, lease_until = NULL,
          updated_at = $4
        WHERE id = $1 RETURNING ${COLUMNS}`,
      finalFail: `
        UPDATE ${t} SET status = 'failed', error = $2, owner = NULL, lease_until = NULL, updated_at = $3
        WHERE id = $1 RETURNING ${COLUMNS}`,
    };
  }

  async enqueue(name: string, payload: JsonObject, options: EnqueueOptions = {}): Promise<Job> {
    const maxAttempts = checkAttempts(options.maxAttempts ?? this.maxAttempts);
    const dedupeKey = options.dedupeKey ?? null;
    const json = JSON.stringify(payload);
    // A conflicting job can finish between the INSERT and the SELECT; then the key is free again and the
    // next INSERT succeeds. Each round trip resolves one such race, so a few suffice.
    for (let round = 0; round < 5; round++) {
      const inserted = await this.db.query<JobRow>(this.sql.insert, [
        randomUUID(),
        name,
        json,
        maxAttempts,
        dedupeKey,
      ]);
      if (inserted.length > 0) return toJob(inserted[0]);
      const existing = await this.db.query<JobRow>(this.sql.unfinishedByKey, [dedupeKey]);
      if (existing.length > 0) return toJob(existing[0]);
    }
    throw new CairnError('CAIRN_CONFLICT', `job key ${dedupeKey} keeps changing hands; try again`);
  }

  async get(id: string): Promise<Job | null> {
    const rows = await this.db.query<JobRow>(this.sql.get, [id]);
    return rows.length > 0 ? toJob(rows[0]) : null;
  }

  async claim(owner: string, names: readonly string[], leaseMs: number): Promise<ClaimedJob | null> {
    if (names.length === 0) return null;
    const rows = await this.db.query<JobRow>(this.sql.claim, [
      owner,
      names,
      Math.max(1, Math.round(leaseMs)),
      WORKER_STOPPED,
    ]);
    if (rows.length === 0) return null;
    return { job: toJob(rows[0]), owner, leaseUntil: rows[0].lease_until! };
  }

  /**
   * Renews while `owner` still holds the job. A lease that ran out but that no other worker took over
   * yet is renewed too: nobody else is running the job, so its owner may as well finish it.
   */
  async heartbeat(id: string, owner: string, leaseMs: number, progress?: number): Promise<boolean> {
    const p = progress === undefined || Number.isNaN(progress) ? null : Math.max(0, Math.min(1, progress));
    const rows = await this.db.query(this.sql.heartbeat, [id, owner, Math.max(1, Math.round(leaseMs)), p]);
    return rows.length === 1;
  }

  async complete(id: string, owner: string, result: JsonObject): Promise<boolean> {
    const rows = await this.db.query(this.sql.complete, [id, owner, JSON.stringify(result)]);
    return rows.length === 1;
  }

  async fail(id: string, owner: string, error: string, permanent: boolean): Promise<Job | null> {
    return this.db.tx(async (c) => {
      const held = await c.query<{ attempts: number; max_attempts: number; now: number }>(
        this.sql.lockForFail,
        [id, owner],
      );
      if (held.rows.length === 0) return null;
      const { attempts, max_attempts, now } = held.rows[0];
      const res =
        permanent || attempts >= max_attempts
          ? await c.query<JobRow>(this.sql.finalFail, [id, error, now])
          : await c.query<JobRow>(this.sql.requeue, [
              id,
              error,
              now + backoffMs(attempts, this.backoffBaseMs),
              now,
            ]);
      return toJob(res.rows[0]);
    });
  }

  /** Nothing to release: the pool belongs to the store, which its owner closes. */
  async close(): Promise<void> {}
}
