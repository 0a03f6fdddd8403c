/**
 * Background jobs, typed by name and payload. The embedded deployment runs them in-process, one at a
 * time (training is CPU-bound and has its own worker threads); their state lives in the job store so
 * `GET /v1/jobs/{id}` reads the same thing whichever process runs them. Permanent failures (bad input,
 * not enough data) fail at once; anything else is retried with backoff up to `maxAttempts`.
 */
import { randomUUID } from 'node:crypto';
import type { TrainRequest } from '../api/deps.ts';
import type { Job, JsonObject } from '../domain/types.ts';
import { CairnError, isCairnError } from '../errors/errors.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { JobStore } from '../storage/ports.ts';

export interface JobPayloads {
  train: TrainRequest;
}
export type JobName = keyof JobPayloads;

/** Thrown (or a CairnError with a 4xx code) to fail a job without retrying it. */
export class PermanentJobError extends Error {}

export function isPermanent(err: unknown): boolean {
  return err instanceof PermanentJobError || (isCairnError(err) && err.isClientError);
}

export interface JobContext {
  jobId: string;
  /** Reports progress 0..1 (persisted at most every `progressIntervalMs`). */
  progress(fraction: number): void;
  signal: AbortSignal;
  logger: Logger;
}

export type JobHandler<N extends JobName> = (payload: JobPayloads[N], ctx: JobContext) => Promise<JsonObject>;

export interface QueueOptions {
  maxAttempts?: number;
  backoffMs?: number;
  progressIntervalMs?: number;
}

export class InProcessQueue {
  private readonly handlers = new Map<JobName, JobHandler<JobName>>();
  private readonly pending: { id: string; name: JobName; payload: JsonObject }[] = [];
  private running: Promise<void> | null = null;
  private readonly abort = new AbortController();
  private idleWaiters: (() => void)[] = [];
  private readonly maxAttempts: number;
  private readonly backoffMs: number;
  private readonly progressIntervalMs: number;

  constructor(
    private readonly store: JobStore,
    private readonly logger: Logger,
    options: QueueOptions = {},
  ) {
    this.maxAttempts = options.maxAttempts ?? 2;
    this.backoffMs = options.backoffMs ?? 1000;
    this.progressIntervalMs = options.progressIntervalMs ?? 250;
  }

  register<N extends JobName>(name: N, handler: JobHandler<N>): void {
    this.handlers.set(name, handler as JobHandler<JobName>);
  }

  /** Marks jobs left running by a dead process as failed and re-queues those that never started. */
  async recover(): Promise<void> {
    for (const job of await this.store.unfinished()) {
      if (job.status === 'running') {
        await this.store.update(job.id, {
          status: 'failed',
          error: 'interrupted: the process running it stopped',
          updatedAt: Date.now(),
        });
      } else if (this.handlers.has(job.name as JobName)) {
        this.pending.push({ id: job.id, name: job.name as JobName, payload: job.payload });
      }
    }
    this.pump();
  }

  async enqueue<N extends JobName>(name: N, payload: JobPayloads[N]): Promise<Job> {
    if (!this.handlers.has(name)) throw new CairnError('CAIRN_UNSUPPORTED', `no handler for job ${name}`);
    const now = Date.now();
    const job: Job = {
      id: randomUUID(),
      name,
      payload: payload as unknown as JsonObject,
      status: 'queued',
      progress: 0,
      result: null,
      error: null,
      createdAt: now,
      updatedAt: now,
    };
    await this.store.create(job);
    this.pending.push({ id: job.id, name, payload: job.payload });
    this.pump();
    return job;
  }

  async get(id: string): Promise<Job> {
    const job = await this.store.get(id);
    if (!job) throw new CairnError('CAIRN_JOB_NOT_FOUND', `job ${id} not found`, { field: 'id' });
    return job;
  }

  /** Resolves when no job is queued or running. */
  onIdle(): Promise<void> {
    if (!this.running && this.pending.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Cancels the running job and drops queued ones (they stay `queued` in the store for recovery). */
  async close(): Promise<void> {
    this.pending.length = 0;
    this.abort.abort();
    await this.running;
  }

  private pump(): void {
    if (this.running || this.abort.signal.aborted) return;
    const next = this.pending.shift();
    if (!next) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      waiters.forEach((w) => w());
      return;
    }
    this.running = this.run(next).finally(() => {
      this.running = null;
      this.pump();
    });
  }

  private async run(entry: { id: string; name: JobName; payload: JsonObject }): Promise<void> {
    const handler = this.handlers.get(entry.name)!;
    const log = this.logger.child({ jobId: entry.id, job: entry.name });
    let lastWrite = 0;
    let pendingWrite: Promise<unknown> = Promise.resolve();
    const ctx: JobContext = {
      jobId: entry.id,
      signal: this.abort.signal,
      logger: log,
      progress: (fraction) => {
        const now = Date.now();
        if (now - lastWrite < this.progressIntervalMs) return;
        lastWrite = now;
        const p = Math.max(0, Math.min(1, fraction));
        pendingWrite = pendingWrite
          .then(() => this.store.update(entry.id, { progress: p, updatedAt: now }))
          .catch((err: unknown) => log.warn({ err }, 'could not record job progress'));
      },
    };
    for (let attempt = 1; ; attempt++) {
      await this.store.update(entry.id, { status: 'running', updatedAt: Date.now() });
      log.info({ attempt }, 'job started');
      try {
        const result = await handler(entry.payload, ctx);
        await pendingWrite;
        await this.store.update(entry.id, {
          status: 'succeeded',
          progress: 1,
          result,
          error: null,
          updatedAt: Date.now(),
        });
        log.info('job succeeded');
        return;
      } catch (err) {
        await pendingWrite;
        const permanent = isPermanent(err) || this.abort.signal.aborted;
        const message = err instanceof Error ? err.message : String(err);
        if (permanent || attempt >= this.maxAttempts) {
          await this.store
            .update(entry.id, { status: 'failed', error: message, updatedAt: Date.now() })
            .catch(() => undefined);
          log.error({ err, attempt, permanent }, 'job failed');
          return;
        }
        log.warn({ err, attempt }, 'job failed; retrying');
        await new Promise((r) => setTimeout(r, this.backoffMs * attempt));
      }
    }
  }
}
