/**
 * Runs background jobs from a `JobQueue` in this process: worker processes run one, and so does the
 * all-in-one process. The runner claims one job at a time (training is CPU-bound and brings its own
 * worker threads) among the names it has handlers for, keeps the job's lease alive with heartbeats
 * while the handler works, and records the outcome. A runner that dies simply stops heartbeating: once
 * the lease runs out another runner takes the job over, so no job stays `running` forever.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { RequestContext } from '../domain/context.ts';
import type { Job, JsonObject } from '../domain/types.ts';
import { CairnError } from '../errors/errors.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { ClaimedJob, JobName, JobQueue, JobService } from './contracts.ts';
import { isPermanent, type JobContext, type JobHandler } from './queue.ts';

export { isPermanent, PermanentJobError, type JobContext, type JobHandler } from './queue.ts';

export interface JobRunnerOptions {
  queue: JobQueue;
  logger: Logger;
  /** How long a claim lasts without a heartbeat (`jobs.leaseSeconds` × 1000). Default 30 000 ms. */
  leaseMs?: number;
  /** Idle wait between claims when nothing is runnable (default 1000 ms); `wake()` cuts it short. */
  pollMs?: number;
  /** Progress is written at most this often (default 1000 ms); heartbeats carry it otherwise. */
  progressIntervalMs?: number;
  /** This runner's identity in the queue. Default `<hostname>:<pid>:<random>`, unique per runner. */
  owner?: string;
}

/** Why a running job's signal was aborted. */
class LeaseLost extends Error {
  override readonly name = 'LeaseLost';
}

/** `JobService` (`GET /v1/jobs/{id}`) read from the queue. */
export function createJobService(queue: Pick<JobQueue, 'get'>): JobService {
  return {
    async get(_ctx: RequestContext, id: string): Promise<Job> {
      const job = await queue.get(id);
      if (!job) throw new CairnError('CAIRN_JOB_NOT_FOUND', `job ${id} not found`, { field: 'id' });
      return job;
    },
  };
}

/**
 * Claims and runs jobs one at a time: `register` handlers, `start()`, `close()` on shutdown. Between jobs
 * it polls every `pollMs` (`wake()` cuts the wait short), while a job runs it heartbeats every third of
 * the lease (carrying the latest progress), and it aborts the handler's signal when the lease is lost or
 * the runner closes. Outcomes: a result completes the job; a throw fails it, permanently per `isPermanent`.
 */
export class JobRunner {
  /** Identity the runner claims under (visible as `owner` of the jobs it runs). */
  readonly owner: string;
  private readonly queue: JobQueue;
  private readonly logger: Logger;
  private readonly leaseMs: number;
  private readonly heartbeatMs: number;
  private readonly pollMs: number;
  private readonly progressIntervalMs: number;
  private readonly handlers = new Map<string, JobHandler<JobName>>();
  private loop: Promise<void> | null = null;
  private closing = false;
  /** The running job's controller: aborted when its lease is lost or the runner closes. */
  private current: AbortController | null = null;
  /** Ends the idle wait early (set while waiting). */
  private wakeUp: (() => void) | null = null;
  /** A wake() that arrived while not waiting: the next wait is skipped. */
  private woken = false;
  private idleWaiters: (() => void)[] = [];

  constructor(options: JobRunnerOptions) {
    this.queue = options.queue;
    this.logger = options.logger;
    this.leaseMs = Math.max(30, options.leaseMs ?? 30_000);
    // Three heartbeats per lease: two can be lost (a slow database, a long GC pause) before it runs out.
    this.heartbeatMs = Math.max(10, Math.floor(this.leaseMs / 3));
    this.pollMs = Math.max(1, options.pollMs ?? 1000);
    this.progressIntervalMs = Math.max(0, options.progressIntervalMs ?? 1000);
    this.owner = options.owner ?? `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  }

  /** Runs `handler` for jobs named `name` (register before `start()`; the last registration wins). */
  register<N extends JobName>(name: N, handler: JobHandler<N>): void {
    if (this.loop) throw new CairnError('CAIRN_INTERNAL', 'register job handlers before starting the runner');
    this.handlers.set(name, handler as unknown as JobHandler<JobName>);
  }

  /** Starts claiming jobs (idempotent). */
  start(): void {
    if (this.loop || this.closing) return;
    if (this.handlers.size === 0) throw new CairnError('CAIRN_INTERNAL', 'the job runner has no handlers');
    this.loop = this.run();
  }

  /** Looks for a job now instead of after the idle wait (call after enqueueing in this process). */
  wake(): void {
    const wakeUp = this.wakeUp;
    if (wakeUp) {
      this.wakeUp = null;
      wakeUp();
    } else {
      this.woken = true;
    }
  }

  /**
   * Resolves the next time the runner finds nothing it can claim (a job waiting for its retry time does
   * not count), having finished what it ran before; at once after `close()`. Waits for `start()`.
   */
  onIdle(): Promise<void> {
    if (this.closing) return Promise.resolve();
    return new Promise((resolve) => {
      this.idleWaiters.push(resolve);
      this.wake();
    });
  }

  /**
   * Stops claiming, aborts the running job's signal and waits for its handler to return. The job is
   * recorded as a retryable failure (`interrupted`), so another runner picks it up after the backoff.
   */
  async close(): Promise<void> {
    if (!this.closing) {
      this.closing = true;
      this.current?.abort(new Error('the job runner is stopping'));
      this.wake();
    }
    await this.loop;
    this.releaseIdleWaiters(this.idleWaiters.splice(0));
  }

  private async run(): Promise<void> {
    const names = [...this.handlers.keys()];
    while (!this.closing) {
      // Waiters registered before this claim are answered by it; later ones by the next claim, which
      // sees whatever was enqueued before they asked.
      const waiters = this.idleWaiters.splice(0);
      let claimed: ClaimedJob | null;
      try {
        claimed = await this.queue.claim(this.owner, names, this.leaseMs);
      } catch (err) {
        this.idleWaiters.unshift(...waiters);
        this.logger.warn({ err }, 'could not claim a job; trying again');
        await this.idle();
        continue;
      }
      if (!claimed) {
        this.releaseIdleWaiters(waiters);
        await this.idle();
        continue;
      }
      this.idleWaiters.unshift(...waiters);
      await this.execute(claimed);
    }
  }

  private releaseIdleWaiters(waiters: (() => void)[]): void {
    for (const resolve of waiters) resolve();
  }

  /** Waits `pollMs`, or less when woken. */
  private idle(): Promise<void> {
    if (this.woken || this.closing) {
      this.woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wakeUp = null;
        resolve();
      }, this.pollMs);
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private async execute(claimed: ClaimedJob): Promise<void> {
    const { job, owner } = claimed;
    const log = this.logger.child({ jobId: job.id, job: job.name, attempt: job.attempts });
    const controller = new AbortController();
    this.current = controller;
    if (this.closing) controller.abort(new Error('the job runner is stopping'));

    // The lease as this process's clock sees it (the queue's clock may be another machine's): renewed
    // from the time each heartbeat was sent, so it never overestimates.
    let leaseUntil = Date.now() + this.leaseMs;
    let leaseLost = false;
    let pendingProgress: number | undefined;
    let lastProgressWrite = 0;
    let beating: Promise<void> | null = null;

    const loseLease = (why: string) => {
      if (leaseLost) return;
      leaseLost = true;
      log.warn(why);
      controller.abort(new LeaseLost(why));
    };
    const beat = async (): Promise<void> => {
      const progress = pendingProgress;
      pendingProgress = undefined;
      const sentAt = Date.now();
      try {
        if (await this.queue.heartbeat(job.id, owner, this.leaseMs, progress)) {
          leaseUntil = sentAt + this.leaseMs;
        } else {
          loseLease('lease lost: another worker took the job over, or it finished elsewhere');
        }
      } catch (err) {
        pendingProgress ??= progress;
        log.warn({ err }, 'heartbeat failed');
        if (Date.now() >= leaseUntil) loseLease('lease expired: the queue could not be reached to renew it');
      }
    };
    const heartbeat = () => {
      if (beating || leaseLost) return;
      beating = beat().finally(() => {
        beating = null;
      });
    };
    const timer = setInterval(heartbeat, this.heartbeatMs);
    const stop = async () => {
      clearInterval(timer);
      await beating;
    };

    const ctx: JobContext = {
      jobId: job.id,
      attempt: job.attempts,
      signal: controller.signal,
      logger: log,
      progress: (fraction) => {
        if (!Number.isFinite(fraction)) return;
        pendingProgress = Math.max(0, Math.min(1, fraction));
        const now = Date.now();
        if (now - lastProgressWrite >= this.progressIntervalMs) {
          lastProgressWrite = now;
          heartbeat();
        }
      },
    };

    log.info('job started');
    let result: JsonObject;
    try {
      const handler = this.handlers.get(job.name);
      if (!handler) throw new CairnError('CAIRN_UNSUPPORTED', `no handler for job ${job.name}`);
      result = await handler(job.payload, ctx);
    } catch (err) {
      await stop();
      this.current = null;
      if (leaseLost) {
        log.warn({ err }, 'job stopped after its lease was lost');
        return;
      }
      // A job cut short by close() failed through no fault of its own: retryable whatever it threw.
      const interrupted = controller.signal.aborted;
      const message = interrupted ? 'interrupted: the worker running it stopped' : errorMessage(err);
      await this.record(log, async () => {
        const stored = await this.queue.fail(job.id, owner, message, !interrupted && isPermanent(err));
        if (stored === null) log.warn({ err }, 'job failed after its lease was lost');
        else if (stored.status === 'failed') log.error({ err, attempts: stored.attempts }, 'job failed');
        else
          log.warn({ err, retryAt: new Date(stored.runAt).toISOString() }, 'job failed; it will be retried');
      });
      return;
    }
    await stop();
    this.current = null;
    if (leaseLost) {
      log.warn('job finished after its lease was lost; its result is dropped');
      return;
    }
    await this.record(log, async () => {
      if (await this.queue.complete(job.id, owner, result)) log.info('job succeeded');
      else log.warn('job finished after its lease was lost; its result is dropped');
    });
  }

  /**
   * Records an outcome. When the queue cannot be reached the job stays `running` under our lease, which
   * then runs out: another runner (or this one) takes it over and the attempt counts as failed.
   */
  private async record(log: Logger, write: () => Promise<void>): Promise<void> {
    try {
      await write();
    } catch (err) {
      log.error({ err }, 'could not record the job outcome; it runs again once its lease expires');
    }
  }
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
