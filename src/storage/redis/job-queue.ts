/**
 * The job queue on Redis through BullMQ, for the production roles. Claims use BullMQ's manual job
 * processing: a `Worker` without a processor hands out jobs with `getNextJob(owner)`, the owner string
 * is BullMQ's lock token, and the lease is the job's lock (`extendLock` renews it). A worker's stalled
 * checker moves a job whose lock expired (its worker died) back to the wait list, where another worker
 * claims it. Retryable failures go back through BullMQ's own `attempts` + `backoff` (delayed set),
 * permanent ones fail with `UnrecoverableError`, and `dedupeKey` is BullMQ's deduplication id.
 *
 * One BullMQ queue per job name (`<queue>.<name>`), because a BullMQ worker takes whatever its queue
 * holds while `claim` must only take the names its caller can run. A job id is therefore
 * `<name>.<BullMQ id>`: `get` finds the queue from the id alone, in any process.
 *
 * Where BullMQ differs from the SQL adapters (the conformance suite tests only what both promise):
 * - "Oldest first" holds per name; `claim` looks at `names` in the order given. A retried job joins the
 *   back of its queue, a job recovered from a dead worker the front.
 * - A lease that ran out is lost at once (the lock key expired), even before another worker takes the
 *   job: heartbeat, complete and fail then report the job as no longer held.
 * - A worker's lease-expired job is only noticed by a stalled check (every `stalledIntervalMs`), so it
 *   is taken over up to two intervals after its lease ran out.
 * - `runAt` is exact while a retry waits (delayed set); otherwise it is the creation time.
 *   `updatedAt` is the last state change (progress reports do not move it).
 * - Finished jobs are kept for `keepFinished` (default 7 days, at most 1000 per name), then `get`
 *   answers null; the SQL tables keep them.
 * - `dedupeKey` is unique per job name (BullMQ deduplicates within a queue).
 */
import { randomUUID } from 'node:crypto';
import { Job as BullJob, Queue, UnrecoverableError, Worker, type JobState } from 'bullmq';
import { Redis } from 'ioredis';
import type { Job, JobStatus, JsonObject } from '../../domain/types.ts';
import { CairnError } from '../../errors/errors.ts';
import { backoffMs, type ClaimedJob, type EnqueueOptions, type JobQueue } from '../../jobs/contracts.ts';

export interface BullJobQueueOptions {
  /** `redis://[user:password@]host:port[/db]`. */
  url: string;
  /**
   * BullMQ's key prefix: its keys are `<prefix>:<queue>.<name>:…`. The composition root derives it from
   * `redis.keyPrefix` (`cairn:bull`), so deployments and tests sharing a Redis stay apart. Default `cairn:bull`.
   */
  prefix?: string;
  /** Base name of the BullMQ queues, one per job name (`<queue>.<name>`). Default `jobs`. */
  queue?: string;
  /** Backoff before the second attempt (ms); it doubles per attempt (`backoffMs`). Default 1000. */
  backoffBaseMs?: number;
  /** Attempts of a job whose `enqueue` names none (default 3). */
  maxAttempts?: number;
  /** How often this process looks for jobs whose worker's lease expired (default 5000 ms). */
  stalledIntervalMs?: number;
  /** How long finished jobs stay readable (default 7 days, at most 1000 per job name). */
  keepFinished?: { ageSeconds: number; count: number };
  /** How long the first connection may take before calls fail with CAIRN_UNAVAILABLE (default 5000 ms). */
  connectTimeoutMs?: number;
  /** Background errors (connection lost, a stalled check that failed): log them. */
  onError?: (err: Error) => void;
}

/** Custom backoff type registered on our workers: `backoffMs` of the attempts started (see strategy). */
const BACKOFF_TYPE = 'cairn';
const WORKER_STOPPED = 'the worker running it stopped (its lease expired) and no attempt is left';
/** Names and the queue base become Redis keys and ids: no `:` (BullMQ's separator), no `.` (ours). */
const NAME = /^[A-Za-z0-9_-]{1,64}$/;
/** Lock a claim holds between BullMQ's moveToActive and our extendLock to the asked lease (ms). */
const INITIAL_LOCK_MS = 30_000;

/** `maxAttempts` must be a whole number of attempts, at least one. */
function checkAttempts(value: number): number {
  if (!Number.isInteger(value) || value < 1) {
    throw CairnError.validation([{ field: 'maxAttempts', message: 'must be an integer ≥ 1' }]);
  }
  return value;
}

function checkName(name: string, field: string): string {
  if (!NAME.test(name)) {
    throw CairnError.validation([{ field, message: `must match ${NAME.source}` }]);
  }
  return name;
}

/** Splits `<name>.<BullMQ id>`; null for anything this adapter cannot have issued. */
function parseId(id: string): { name: string; bullId: string } | null {
  const dot = id.lastIndexOf('.');
  if (dot <= 0 || dot === id.length - 1) return null;
  const name = id.slice(0, dot);
  const bullId = id.slice(dot + 1);
  return NAME.test(name) && !bullId.includes(':') ? { name, bullId } : null;
}

/** BullMQ's script failures for a job that is not (or no longer) held by the token: missing, unlocked… */
function isNotHeld(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'number' && code < 0;
}

const CONNECTION_MESSAGES =
  /Connection is closed|Stream isn't writeable|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|connect ETIMEDOUT/;

function unavailable(message: string, cause?: unknown): CairnError {
  return new CairnError('CAIRN_UNAVAILABLE', `Redis unavailable: ${message}`, undefined, { cause });
}

function clampProgress(p: number): number {
  return Math.max(0, Math.min(1, p));
}

/** What a job's state is besides its hash: who holds its lock and until when, when a retry is due. */
interface Live {
  state: JobState | 'unknown';
  owner: string | null;
  leaseUntil: number | null;
  delayedUntil: number | null;
}

function statusOf(state: JobState | 'unknown'): JobStatus {
  switch (state) {
    case 'active':
      return 'running';
    case 'completed':
      return 'succeeded';
    case 'failed':
      return 'failed';
    default:
      return 'queued'; // waiting, prioritized, delayed (a retry waiting for its time), waiting-children
  }
}

function toJob(name: string, bull: BullJob, live: Live): Job {
  const status = statusOf(live.state);
  const maxAttempts = bull.opts.attempts ?? 1;
  const progress = typeof bull.progress === 'number' ? clampProgress(bull.progress) : 0;
  return {
    id: `${name}.${bull.id}`,
    name,
    payload: bull.data as JsonObject,
    status,
    progress: status === 'succeeded' ? 1 : progress,
    result: status === 'succeeded' ? ((bull.returnvalue as JsonObject | null) ?? {}) : null,
    error: status === 'succeeded' ? null : bull.failedReason || null,
    createdAt: bull.timestamp,
    updatedAt: Math.max(bull.timestamp, bull.processedOn ?? 0, bull.finishedOn ?? 0),
    // A claim that finds a job out of attempts starts one more in BullMQ's count, then fails the job
    // without running it: that one is not an attempt.
    attempts: Math.min(bull.attemptsStarted, maxAttempts),
    maxAttempts,
    owner: status === 'running' ? live.owner : null,
    leaseUntil: status === 'running' ? live.leaseUntil : null,
    runAt: live.delayedUntil ?? bull.timestamp,
    dedupeKey: bull.deduplicationId ?? null,
  };
}

/** BullMQ implementation of the JobQueue port. It owns its Redis connections. */
export class BullJobQueue implements JobQueue {
  readonly kind = 'bullmq';
  private readonly client: Redis;
  private readonly prefix: string;
  private readonly base: string;
  private readonly backoffBaseMs: number;
  private readonly maxAttempts: number;
  private readonly stalledIntervalMs: number;
  private readonly keep: { age: number; count: number };
  private readonly connectTimeoutMs: number;
  private readonly onError: (err: Error) => void;
  private readonly queues = new Map<string, Queue>();
  private readonly workers = new Map<string, Worker>();
  private wasReady = false;
  private closed = false;

  constructor(options: BullJobQueueOptions) {
    this.prefix = options.prefix ?? 'cairn:bull';
    this.base = checkName(options.queue ?? 'jobs', 'queue');
    this.backoffBaseMs = Math.max(0, options.backoffBaseMs ?? 1000);
    this.maxAttempts = checkAttempts(options.maxAttempts ?? 3);
    this.stalledIntervalMs = Math.max(10, options.stalledIntervalMs ?? 5000);
    const keep = options.keepFinished ?? { ageSeconds: 7 * 86_400, count: 1000 };
    this.keep = { age: keep.ageSeconds, count: keep.count };
    this.connectTimeoutMs = Math.max(1, options.connectTimeoutMs ?? 5000);
    this.onError = options.onError ?? (() => undefined);
    // Fail fast instead of queueing commands while Redis is away: a caller (an API request, the job
    // runner's loop) gets CAIRN_UNAVAILABLE at once and decides, rather than hanging. BullMQ shares this
    // connection for its commands and duplicates it for the worker's blocking connection (unused here:
    // claims never block), which is why maxRetriesPerRequest is 0 and not a positive number.
    this.client = new Redis(options.url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: this.connectTimeoutMs,
    });
    this.client.on('error', (err: Error) => this.onError(err));
    this.client.on('ready', () => {
      this.wasReady = true;
    });
  }

  async enqueue(name: string, payload: JsonObject, options: EnqueueOptions = {}): Promise<Job> {
    checkName(name, 'name');
    const maxAttempts = checkAttempts(options.maxAttempts ?? this.maxAttempts);
    if (options.dedupeKey === '') {
      // BullMQ takes an empty deduplication id for none at all.
      throw CairnError.validation([{ field: 'dedupeKey', message: 'must not be empty' }]);
    }
    return this.guard(async () => {
      const queue = this.queueFor(name);
      // A deduplicated add returns the id of the unfinished job holding the key; that job can finish and
      // expire between the add and the read, so try again then (each round resolves one such race).
      for (let round = 0; round < 5; round++) {
        const added = await queue.add(name, payload, {
          jobId: randomUUID(),
          attempts: maxAttempts,
          backoff: { type: BACKOFF_TYPE },
          removeOnComplete: this.keep,
          removeOnFail: this.keep,
          // The "stack" of an error built from a message in fail() would point here: keep none.
          stackTraceLimit: 0,
          ...(options.dedupeKey === undefined ? {} : { deduplication: { id: options.dedupeKey } }),
        });
        const job = await this.read(name, added.id!);
        if (job) return job;
      }
      throw new CairnError('CAIRN_CONFLICT', `job key ${options.dedupeKey} keeps changing hands; try again`);
    });
  }

  async get(id: string): Promise<Job | null> {
    const parsed = parseId(id);
    if (!parsed) return null;
    return this.guard(() => this.read(parsed.name, parsed.bullId));
  }

  async claim(owner: string, names: readonly string[], leaseMs: number): Promise<ClaimedJob | null> {
    // BullMQ treats the token "0" as "no lock": such an owner could never be told apart.
    if (owner === '' || owner === '0') throw CairnError.validation([{ field: 'owner', message: 'invalid' }]);
    for (const name of names) checkName(name, 'names');
    const lease = Math.max(1, Math.round(leaseMs));
    return this.guard(async () => {
      for (const name of names) {
        const worker = this.workerFor(name);
        for (;;) {
          const bull = (await worker.getNextJob(owner, { block: false })) as BullJob | undefined;
          if (!bull) break;
          if (bull.deferredFailure || bull.attemptsStarted > (bull.opts.attempts ?? 1)) {
            // Back from a worker that vanished, with no attempt left: it fails instead of running again.
            const why = new UnrecoverableError(bull.deferredFailure || WORKER_STOPPED);
            await bull.moveToFailed(why, owner, false).catch((e: unknown) => {
              if (!isNotHeld(e)) throw e;
            });
            continue;
          }
          const start = Date.now();
          // moveToActive locked it for INITIAL_LOCK_MS; the lease asked for replaces that.
          const lost = await worker.extendJobLocks([bull.id!], [owner], lease);
          if (lost.length > 0) continue;
          // A new attempt starts from scratch (the previous attempt's progress would mislead).
          if (bull.progress !== 0) await bull.updateProgress(0);
          const job = toJob(name, bull, {
            state: 'active',
            owner,
            leaseUntil: start + lease,
            delayedUntil: null,
          });
          return { job, owner, leaseUntil: start + lease };
        }
      }
      return null;
    });
  }

  async heartbeat(id: string, owner: string, leaseMs: number, progress?: number): Promise<boolean> {
    const parsed = parseId(id);
    if (!parsed || owner === '0') return false;
    return this.guard(async () => {
      const worker = this.workerFor(parsed.name);
      const lost = await worker.extendJobLocks([parsed.bullId], [owner], Math.max(1, Math.round(leaseMs)));
      if (lost.length > 0) return false;
      if (progress !== undefined && !Number.isNaN(progress)) {
        await this.queueFor(parsed.name).updateJobProgress(parsed.bullId, clampProgress(progress));
      }
      return true;
    });
  }

  async complete(id: string, owner: string, result: JsonObject): Promise<boolean> {
    const parsed = parseId(id);
    if (!parsed || owner === '0') return false;
    return this.guard(async () => {
      const bull = await BullJob.fromId(this.workerFor(parsed.name), parsed.bullId);
      if (!bull) return false;
      try {
        await bull.moveToCompleted(result, owner, false);
        return true;
      } catch (e) {
        if (isNotHeld(e)) return false;
        throw e;
      }
    });
  }

  async fail(id: string, owner: string, error: string, permanent: boolean): Promise<Job | null> {
    const parsed = parseId(id);
    if (!parsed || owner === '0') return null;
    return this.guard(async () => {
      const bull = await BullJob.fromId(this.workerFor(parsed.name), parsed.bullId);
      if (!bull) return null;
      // BullMQ retries while its count of *finished* attempts allows; an attempt lost with a dead worker
      // is not in that count, so the decision is ours (attempts started, like the SQL adapters) and
      // UnrecoverableError enforces it.
      const final = permanent || bull.attemptsStarted >= (bull.opts.attempts ?? 1);
      try {
        await bull.moveToFailed(final ? new UnrecoverableError(error) : new Error(error), owner, false);
      } catch (e) {
        if (isNotHeld(e)) return null;
        throw e;
      }
      return this.read(parsed.name, parsed.bullId);
    });
  }

  /** Stops the stalled checkers and closes every connection (idempotent). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const closing = [...this.workers.values(), ...this.queues.values()].map((q) => q.close());
    await Promise.allSettled(closing);
    this.workers.clear();
    this.queues.clear();
    if (this.client.status === 'ready') {
      await this.client.quit().catch(() => this.client.disconnect());
    } else {
      this.client.disconnect();
    }
  }

  /** The job and what its state means now, or null once BullMQ no longer has it. */
  private async read(name: string, bullId: string): Promise<Job | null> {
    const queue = this.queueFor(name);
    let bull = (await queue.getJob(bullId)) as BullJob | undefined;
    if (!bull) return null;
    const state = await bull.getState();
    if (state === 'unknown') return null;
    // The hash was read before the state: a job that finished in between has a finished state and a hash
    // from before (no return value yet). A finished job never changes again, so one more read is current.
    if ((state === 'completed' || state === 'failed') && bull.finishedOn === undefined) {
      bull = (await queue.getJob(bullId)) as BullJob | undefined;
      if (!bull) return null;
    }
    const lockKey = `${queue.toKey(bullId)}:lock`;
    const replies = await this.client
      .multi()
      .get(lockKey)
      .pttl(lockKey)
      .zscore(queue.keys.delayed, bullId)
      .exec();
    const [lock, ttl, score] = (replies ?? []).map(([err, value]) => {
      if (err) throw err;
      return value;
    }) as [string | null, number, string | null];
    const now = Date.now();
    return toJob(name, bull, {
      state,
      owner: lock,
      leaseUntil: lock !== null && ttl > 0 ? now + ttl : null,
      // A delayed job's score is its due time × 4096 plus a tie-breaking counter (BullMQ's encoding).
      delayedUntil: state === 'delayed' && score !== null ? Math.floor(Number(score) / 0x1000) : null,
    });
  }

  private queueFor(name: string): Queue {
    let queue = this.queues.get(name);
    if (!queue) {
      queue = new Queue(`${this.base}.${name}`, { connection: this.client, prefix: this.prefix });
      queue.on('error', (err: Error) => this.onError(err));
      this.queues.set(name, queue);
    }
    return queue;
  }

  /** The worker handing out `name`'s jobs; creating it starts its stalled checker. */
  private workerFor(name: string): Worker {
    let worker = this.workers.get(name);
    if (!worker) {
      worker = new Worker(`${this.base}.${name}`, null, {
        connection: this.client,
        prefix: this.prefix,
        autorun: false,
        // Leases are renewed by our heartbeats only: a job whose runner stopped heartbeating must lose
        // its lock even if this process is alive.
        skipLockRenewal: true,
        lockDuration: INITIAL_LOCK_MS,
        stalledInterval: this.stalledIntervalMs,
        // A lost lease counts as an attempt (attemptsStarted); whether one is left is decided in claim()
        // against the job's own maxAttempts, not by a process-wide stall limit.
        maxStalledCount: Number.MAX_SAFE_INTEGER,
        settings: {
          backoffStrategy: (_made: number, _type?: string, _err?: Error, job?: unknown) =>
            backoffMs(
              (job as { attemptsStarted?: number } | undefined)?.attemptsStarted ?? 1,
              this.backoffBaseMs,
            ),
        },
      });
      worker.on('error', (err: Error) => this.onError(err));
      void worker.startStalledCheckTimer().catch((err: unknown) => this.onError(err as Error));
      this.workers.set(name, worker);
    }
    return worker;
  }

  /**
   * Runs `fn` once connected, mapping connection failures to CAIRN_UNAVAILABLE. The first call waits for
   * the first connection (up to `connectTimeoutMs`); later ones fail at once while a lost connection is
   * being re-established.
   */
  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw unavailable('the job queue is closed');
    await this.connected();
    try {
      return await fn();
    } catch (e) {
      if (e instanceof CairnError) throw e;
      const message = e instanceof Error ? e.message : String(e);
      if (
        this.client.status !== 'ready' ||
        (e as Error).name === 'MaxRetriesPerRequestError' ||
        CONNECTION_MESSAGES.test(message)
      ) {
        throw unavailable(message, e);
      }
      throw e;
    }
  }

  private async connected(): Promise<void> {
    const client = this.client;
    if (client.status === 'ready') return;
    if (this.wasReady) throw unavailable(`connection lost (${client.status}), reconnecting`);
    if (client.status === 'wait' || client.status === 'end') {
      // The first attempt's failure also shows as 'error' (onError); the wait below reports it.
      client.connect().catch(() => undefined);
    }
    await new Promise<void>((resolve, reject) => {
      let lastError: unknown;
      const onReady = () => {
        done();
        resolve();
      };
      const onError = (err: unknown) => {
        lastError = err;
      };
      const timer = setTimeout(() => {
        done();
        const why =
          lastError instanceof Error ? lastError.message : `no connection after ${this.connectTimeoutMs} ms`;
        reject(unavailable(why, lastError));
      }, this.connectTimeoutMs);
      const done = () => {
        clearTimeout(timer);
        client.off('ready', onReady);
        client.off('error', onError);
      };
      client.on('ready', onReady);
      client.on('error', onError);
      if (client.status === 'ready') onReady();
    });
  }
}
