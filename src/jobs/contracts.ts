/**
 * Background jobs: their names and payloads, the read contract behind `GET /v1/jobs/{id}`, and the
 * queue port every backend implements (a table in the store embedded, BullMQ on Redis in
 * production). Jobs have owners and leases: a worker claims a job for `leaseMs`, renews the lease by
 * heartbeats while it works, and a job whose lease expired (its worker died) is claimable again, so
 * another worker takes it over. Retryable failures come back after an exponential backoff until
 * `maxAttempts`; permanent ones fail at once.
 */
import type { RequestContext } from '../domain/context.ts';
import type { Job, JsonObject, TrainRequest } from '../domain/types.ts';

export interface JobPayloads {
  train: TrainRequest;
}
export type JobName = keyof JobPayloads;

export interface JobService {
  /** Throws CAIRN_JOB_NOT_FOUND. */
  get(ctx: RequestContext, id: string): Promise<Job>;
}

export interface EnqueueOptions {
  /**
   * At most one unfinished (queued or running) job per key: enqueueing a key that is still unfinished
   * returns that job instead of a new one.
   */
  dedupeKey?: string;
  /** Attempts before a retryable failure becomes final (default 3). */
  maxAttempts?: number;
}

/** A job claimed by a worker: it owns it until its lease runs out. */
export interface ClaimedJob {
  job: Job;
  owner: string;
  /** Epoch ms the lease lasts until unless renewed. */
  leaseUntil: number;
}

/** The queue port. Every adapter passes src/storage/conformance/job-queue.conformance.ts. */
export interface JobQueue {
  readonly kind: string;
  enqueue(name: string, payload: JsonObject, options?: EnqueueOptions): Promise<Job>;
  get(id: string): Promise<Job | null>;
  /**
   * Atomically claims the oldest runnable job among `names` for `owner`: a queued job whose retry time
   * has come, or a running job whose lease expired (its attempt counts as failed). Null when none.
   */
  claim(owner: string, names: readonly string[], leaseMs: number): Promise<ClaimedJob | null>;
  /**
   * Renews the lease (and records progress 0..1 when given). False when `owner` no longer holds the
   * job (the lease expired and another worker took it, or it finished): the caller must stop working.
   */
  heartbeat(id: string, owner: string, leaseMs: number, progress?: number): Promise<boolean>;
  /** Marks the job succeeded; false (and nothing changes) when `owner` no longer holds it. */
  complete(id: string, owner: string, result: JsonObject): Promise<boolean>;
  /**
   * Records a failed attempt. Permanent, or out of attempts: the job is `failed`. Otherwise it is
   * queued again, claimable from `now + backoff(attempts)`. Returns the job as stored, or null when
   * `owner` no longer holds it.
   */
  fail(id: string, owner: string, error: string, permanent: boolean): Promise<Job | null>;
  close(): Promise<void>;
}

/** Exponential backoff before attempt `attempt + 1` (attempt ≥ 1): base · 2^(attempt−1), capped. */
export function backoffMs(attempt: number, baseMs = 1000, capMs = 5 * 60_000): number {
  return Math.min(capMs, baseMs * 2 ** Math.max(0, attempt - 1));
}
