/**
 * Retraining without anyone asking: a cron schedule (`training.schedule`) and a data-volume trigger
 * (`training.retrainAfterEvents` new events since the champion's training snapshot). Each trigger becomes
 * a `train` job on the shared job queue; the job runner (this process's or another worker's) trains it,
 * and the queue's retries with exponential backoff apply as for any training.
 *
 * Every process that runs jobs (the worker role, the all-in-one role; never `--role api`) runs a
 * scheduler, so several of them see the same triggers. One training per trigger comes from four layers:
 *
 * 1. Every trigger has a key that all processes compute alike: a cron fire is named by its *scheduled*
 *    time (`schedule:2026-12-01T10:00:00.000Z`), never by the moment a process's timer woke up; a
 *    data-volume crossing by the champion's watermark and how many multiples of N arrived since
 *    (`data_volume:<base>:<k>`).
 * 2. The queue keeps at most one unfinished job per dedupe key, so two processes enqueueing the same
 *    trigger at once get the same job. The dedupe keys are per kind (`train:schedule`,
 *    `train:data_volume:<base>`): a fire or crossing that arrives while an earlier one of its kind is still
 *    queued or running is folded into that job instead of piling up (a queued job trains on the data as
 *    it is when it runs, so nothing is lost; a schedule faster than training cannot grow the queue).
 * 3. The pipeline records the trigger in the model's lineage (failed trainings too), and a trigger whose
 *    key a registered model already carries is skipped: a process that fires late, after another
 *    process's job for the same key finished, does not enqueue it again.
 * 4. Checking the registry and enqueueing are two steps, so a process that read the registry just before
 *    another's job recorded its model and finished can still enqueue a second job for the key: the job
 *    handler is wrapped by `skipTrainedTriggers`, and that job ends at once without training.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { Cron } from 'croner';
import { Counter, type Registry } from 'prom-client';
import type { Config } from '../config/load.ts';
import type { Job, JsonObject, ModelVersion, TrainRequest, TrainTrigger } from '../domain/types.ts';
import { CairnError } from '../errors/errors.ts';
import type { JobQueue } from '../jobs/contracts.ts';
import type { JobHandler } from '../jobs/queue.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { EventLog } from '../storage/ports.ts';

/** The kinds of trigger this scheduler fires. */
export type ScheduledTriggerKind = 'schedule' | 'data_volume';

/**
 * What became of one trigger: `enqueued` a new job; `deduplicated` into a job that was already queued
 * or running (another process fired the same trigger, or an earlier one of its kind is unfinished);
 * `skipped` because a registered model already records the trigger; `error` when the queue or the
 * registry could not be reached (a schedule fire is retried on the next check, a data-volume crossing is
 * seen again by the next check).
 */
export type TriggerOutcome = 'enqueued' | 'deduplicated' | 'skipped' | 'error';

export interface TriggerResult {
  trigger: { kind: ScheduledTriggerKind; key: string };
  outcome: TriggerOutcome;
  /** The job that trains it (a new one, or the unfinished one it was folded into); null when none. */
  job: Job | null;
}

export interface TrainingSchedulerDeps {
  config: Readonly<Config>;
  /** Model versions with their lineage, and the champion (its training watermark is the data-volume base). */
  registry: { list(limit?: number): Promise<ModelVersion[]>; champion(): Promise<ModelVersion | null> };
  jobs: Pick<JobQueue, 'enqueue' | 'get'>;
  eventLog: Pick<EventLog, 'head'>;
  /** The process's metrics registry (`metrics.registry`); the trigger counter is registered on it. */
  metrics: { readonly registry: Registry };
  logger: Logger;
  /** Called after a job was enqueued: a job runner in this process starts it now instead of polling. */
  wake?: () => void;
}

/**
 * The payload of a job the scheduler enqueues: the trigger (recorded in the model's lineage), `system` as
 * the requester, and which scheduler enqueued it (`<host>:<pid>:<random>`), so that a process can tell the
 * job it created from the one another process created for the same key a moment earlier.
 */
export type ScheduledTrainRequest = TrainRequest & {
  trigger: { kind: ScheduledTriggerKind; key: string };
  requested_by: 'system';
  enqueued_by: string;
};

/** How many recent model versions are searched for a trigger key already trained. */
const LINEAGE_LOOKBACK = 50;
/** setTimeout's longest delay (about 24.8 days); a later fire is waited for in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Trigger keys this process already handled, remembered so a check does not handle them again. */
const SEEN_KEYS_LIMIT = 1000;

export const TRIGGERS_METRIC = 'cairn_training_triggers_total';

/**
 * Parses `training.schedule`: null when empty (no schedule), else the cron (5 fields, or 6 with seconds
 * first; the server's time zone). Throws CAIRN_CONFIG_INVALID naming `training.schedule` when the
 * expression is malformed or never fires.
 */
export function parseSchedule(expression: string): Cron | null {
  const pattern = expression.trim();
  if (pattern === '') return null;
  let cron: Cron;
  try {
    cron = new Cron(pattern, { mode: '5-or-6-parts', paused: true });
  } catch (err) {
    throw invalidSchedule(pattern, err instanceof Error ? err.message : String(err));
  }
  // A well-formed expression can still match no date (e.g. `0 0 30 2 *`): that is a typo, not a schedule.
  if (cron.nextRun() === null) throw invalidSchedule(pattern, 'the expression never fires');
  return cron;
}

function invalidSchedule(pattern: string, why: string): CairnError {
  const message = `invalid cron expression "${pattern}": ${why} (5 fields, or 6 with seconds first)`;
  return new CairnError('CAIRN_CONFIG_INVALID', `invalid configuration:\n  training.schedule: ${message}`, {
    fields: [{ field: 'training.schedule', message }],
  });
}

/** The key of the fire scheduled for `fireAt`: the same in every process that runs the schedule. */
export function scheduleKey(fireAt: Date): string {
  return `schedule:${fireAt.toISOString()}`;
}

/**
 * The data-volume trigger's key when `head − base ≥ every` (null otherwise): the champion's watermark
 * and how many multiples of `every` arrived since, so each further N events is a new trigger while
 * challengers keep being rejected, and a new champion starts the count again.
 */
export function dataVolumeKey(base: number, head: number, every: number): string | null {
  if (every <= 0 || head - base < every) return null;
  return `data_volume:${base}:${Math.floor((head - base) / every)}`;
}

/** The trigger counter on `registry` (one per registry, shared by every scheduler using it). */
function triggerCounter(registry: Registry): Counter<'trigger' | 'outcome'> {
  const existing = registry.getSingleMetric(TRIGGERS_METRIC);
  if (existing) return existing as Counter<'trigger' | 'outcome'>;
  return new Counter({
    name: TRIGGERS_METRIC,
    help: 'Automatic training triggers by kind (schedule, data_volume) and outcome (enqueued: a new job; deduplicated: folded into an unfinished job; skipped: already trained; error: queue or registry unreachable)',
    labelNames: ['trigger', 'outcome'] as const,
    registers: [registry],
  });
}

interface Pending {
  trigger: { kind: ScheduledTriggerKind; key: string };
}

/**
 * Fires scheduled and data-volume trainings (see the file comment). `start()` arms the cron and the
 * periodic check; `close()` stops both and waits for a trigger being handled. Triggers are handled one
 * at a time, in order. The jobs it enqueued are watched until they finish: a job that failed for good
 * (out of attempts, or a permanent error) is logged at error level with its id.
 */
export class TrainingScheduler {
  private readonly cron: Cron | null;
  private readonly every: number;
  private readonly checkMs: number;
  private readonly counter: Counter<'trigger' | 'outcome'>;
  /** This scheduler's identity in the jobs it enqueues. */
  readonly id = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  private readonly log: Logger;
  private cronTimer: NodeJS.Timeout | null = null;
  private checkTimer: NodeJS.Timeout | null = null;
  private started = false;
  private closed = false;
  /** Trigger handling, one at a time. */
  private chain: Promise<unknown> = Promise.resolve();
  /** The periodic check running now, if any (close() waits for it). */
  private checking: Promise<void> | null = null;
  private next: Date | null = null;
  /** A schedule fire whose enqueue failed, tried again on the next check (a newer fire replaces it). */
  private retryFire: Date | null = null;
  /** Keys handled here (their job exists or a model has them): not handled again by later checks. */
  private readonly seen = new Set<string>();
  /** `<data-volume key>→<job id>` last folded into an unfinished job: a wait behind it is counted once. */
  private lastFolded: string | null = null;
  /** Jobs enqueued here, by id, watched until they finish. */
  private readonly pending = new Map<string, Pending>();

  /** Throws CAIRN_CONFIG_INVALID (field `training.schedule`) for an invalid cron expression. */
  constructor(private readonly deps: TrainingSchedulerDeps) {
    const { training } = deps.config;
    this.cron = parseSchedule(training.schedule);
    this.every = training.retrainAfterEvents;
    this.checkMs = Math.max(1, Math.round(training.triggerCheckSeconds * 1000));
    this.counter = triggerCounter(deps.metrics.registry);
    this.log = deps.logger.child({ component: 'training-scheduler' });
  }

  /** True when a schedule or a data-volume trigger is configured. */
  get enabled(): boolean {
    return this.cron !== null || this.every > 0;
  }

  /** The next scheduled fire this process waits for (null: no schedule, or not started). */
  get nextFire(): Date | null {
    return this.next;
  }

  /** Arms the cron and the periodic check (idempotent; nothing runs when no trigger is configured). */
  start(): this {
    if (this.started || this.closed) return this;
    this.started = true;
    if (!this.enabled) return this;
    if (this.cron) this.arm(new Date());
    // The check watches the jobs enqueued here too, so it runs with a schedule alone as well.
    this.checkTimer = setInterval(() => this.tick(), this.checkMs);
    this.checkTimer.unref();
    this.log.info(
      {
        schedule: this.cron?.getPattern() ?? null,
        nextFire: this.next?.toISOString() ?? null,
        retrainAfterEvents: this.every,
        checkSeconds: this.checkMs / 1000,
      },
      'training scheduler started',
    );
    return this;
  }

  /** Stops the timers and waits for the trigger being handled, if any. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.cronTimer) clearTimeout(this.cronTimer);
    if (this.checkTimer) clearInterval(this.checkTimer);
    this.cronTimer = this.checkTimer = null;
    await this.checking;
    await this.chain;
  }

  /**
   * Handles the fire scheduled for `fireAt` (the cron calls it; exposed so a caller can fire a given
   * time). Serialized with the other triggers.
   */
  fire(fireAt: Date): Promise<TriggerResult> {
    return this.serial(() => this.handleFire(fireAt));
  }

  /**
   * Compares the event log's head with the champion's training watermark and enqueues a training when
   * `retrainAfterEvents` or more arrived since. Null when nothing was due (or the trigger is off, or
   * this process already handled the crossing). Serialized with the other triggers.
   */
  checkDataVolume(): Promise<TriggerResult | null> {
    return this.serial(() => this.handleDataVolume());
  }

  /** Looks at the jobs enqueued here and logs those that finished (a permanent failure at error level). */
  watchJobs(): Promise<void> {
    return this.serial(() => this.handleWatch());
  }

  // ----------------------------------------------------------------------------------------------

  private serial<T>(work: () => Promise<T>): Promise<T> {
    // The chain itself never rejects (failures stay with each caller's promise).
    const run = this.chain.then(work);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Waits for the next fire after `from`, in steps of at most MAX_TIMER_MS. */
  private arm(from: Date): void {
    if (this.closed || !this.cron) return;
    const next = this.cron.nextRun(from);
    this.next = next;
    if (!next) {
      this.log.warn({ schedule: this.cron.getPattern() }, 'the training schedule has no further fire time');
      return;
    }
    const wait = () => {
      if (this.closed) return;
      const delay = next.getTime() - Date.now();
      if (delay > 0) {
        this.cronTimer = setTimeout(wait, Math.min(delay, MAX_TIMER_MS));
        this.cronTimer.unref();
        return;
      }
      // Keyed by the scheduled time even when the timer woke late; a fire missed while the process was
      // blocked or down is not made up for (the next one trains on all the data anyway).
      void this.fire(next);
      this.arm(new Date(Math.max(Date.now(), next.getTime())));
    };
    wait();
  }

  private tick(): void {
    // A check that is still running (a slow store) is not queued behind again.
    if (this.checking || this.closed) return;
    this.checking = this.check()
      .catch((err: unknown) => {
        this.log.warn({ err }, 'training trigger check failed; trying again at the next check');
      })
      .finally(() => {
        this.checking = null;
      });
  }

  private async check(): Promise<void> {
    const retry = this.retryFire;
    if (retry) {
      this.retryFire = null;
      await this.fire(retry);
    }
    if (this.every > 0 && !this.closed) await this.checkDataVolume();
    if (this.pending.size > 0 && !this.closed) await this.watchJobs();
  }

  private async handleFire(fireAt: Date): Promise<TriggerResult> {
    const trigger = { kind: 'schedule' as const, key: scheduleKey(fireAt) };
    const result = await this.trigger(trigger, 'train:schedule');
    if (result.outcome === 'error') {
      // Tried again at the next check unless a newer fire came meanwhile (it supersedes this one).
      if (!this.retryFire || this.retryFire.getTime() < fireAt.getTime()) this.retryFire = fireAt;
    }
    return result;
  }

  private async handleDataVolume(): Promise<TriggerResult | null> {
    if (this.every <= 0 || this.closed) return null;
    let base: number;
    let head: number;
    try {
      const champion = await this.deps.registry.champion();
      base = champion?.trainingData.lastEventSeq ?? 0;
      head = await this.deps.eventLog.head();
    } catch (err) {
      this.log.warn({ err }, 'could not read the champion or the event log head; checking again later');
      return null;
    }
    const key = dataVolumeKey(base, head, this.every);
    if (key === null || this.seen.has(key)) return null;
    // One unfinished data-volume training per base, in every process: a crossing while it runs waits.
    return this.trigger({ kind: 'data_volume', key }, `train:data_volume:${base}`, { base, head });
  }

  /**
   * Enqueues the training of `trigger` unless a model already records it. Classifies and counts the
   * outcome, remembers handled keys, and watches a new job.
   */
  private async trigger(
    trigger: { kind: ScheduledTriggerKind; key: string },
    dedupeKey: string,
    detail: JsonObject = {},
  ): Promise<TriggerResult> {
    const log = this.log.child({ trigger: trigger.kind, key: trigger.key, ...detail });
    if (this.closed) return { trigger, outcome: 'skipped', job: null };
    const done = (outcome: TriggerOutcome, job: Job | null): TriggerResult => {
      this.counter.inc({ trigger: trigger.kind, outcome });
      return { trigger, outcome, job };
    };
    try {
      const trained = (await this.deps.registry.list(LINEAGE_LOOKBACK)).find(
        (mv) => mv.lineage?.trigger.key === trigger.key,
      );
      if (trained) {
        this.remember(trigger.key);
        log.info({ version: trained.version }, 'training trigger skipped: a model already records it');
        return done('skipped', null);
      }
      const payload: ScheduledTrainRequest = {
        trigger: { kind: trigger.kind, key: trigger.key },
        requested_by: 'system',
        enqueued_by: this.id,
      };
      const job = await this.deps.jobs.enqueue('train', payload as unknown as JsonObject, {
        dedupeKey,
        maxAttempts: this.deps.config.jobs.maxAttempts,
      });
      const heldKey = triggerKeyOf(job);
      if (heldKey !== trigger.key) {
        // Folded into the unfinished job of an earlier trigger of this kind: this key stays unhandled,
        // so a data-volume crossing is looked at again once that job finished.
        const folded = `${trigger.key}→${job.id}`;
        if (trigger.kind === 'data_volume' && this.lastFolded === folded)
          return { trigger, outcome: 'deduplicated', job };
        this.lastFolded = folded;
        log.info(
          { jobId: job.id, heldBy: heldKey },
          'training trigger folded into an unfinished training of the same kind',
        );
        return done('deduplicated', job);
      }
      this.remember(trigger.key);
      // Same key: the job is ours, or another process enqueued it first.
      if ((job.payload as { enqueued_by?: unknown }).enqueued_by !== this.id) {
        log.info({ jobId: job.id, status: job.status }, 'training trigger already queued by another process');
        return done('deduplicated', job);
      }
      this.pending.set(job.id, { trigger });
      log.info({ jobId: job.id }, 'training enqueued by trigger');
      this.deps.wake?.();
      return done('enqueued', job);
    } catch (err) {
      log.error({ err }, 'could not enqueue the training of a trigger');
      return done('error', null);
    }
  }

  private async handleWatch(): Promise<void> {
    for (const [id, { trigger }] of [...this.pending]) {
      let job: Job | null;
      try {
        job = await this.deps.jobs.get(id);
      } catch (err) {
        this.log.warn({ err, jobId: id }, 'could not read a triggered training job; trying again later');
        return;
      }
      if (job === null) {
        // Removed from the queue (kept jobs expire): nothing more to learn about it.
        this.pending.delete(id);
      } else if (job.status === 'failed') {
        this.pending.delete(id);
        this.log.error(
          { jobId: id, trigger: trigger.kind, key: trigger.key, attempts: job.attempts, error: job.error },
          'triggered training failed permanently',
        );
      } else if (job.status === 'succeeded') {
        this.pending.delete(id);
        this.log.info(
          { jobId: id, trigger: trigger.kind, key: trigger.key, result: job.result },
          'triggered training finished',
        );
      }
    }
  }

  private remember(key: string): void {
    this.seen.add(key);
    if (this.seen.size > SEEN_KEYS_LIMIT) {
      // Sets iterate in insertion order: the oldest key goes first.
      const oldest = this.seen.values().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
  }
}

/** The trigger key a `train` job's payload carries (null for a job without one, e.g. a manual training). */
function triggerKeyOf(job: Job): string | null {
  const trigger = (job.payload as { trigger?: Partial<TrainTrigger> }).trigger;
  return typeof trigger?.key === 'string' ? trigger.key : null;
}

/**
 * Wraps the `train` job handler so that a job whose trigger a model already records (from another job)
 * finishes at once without training. The queue keeps one *unfinished* job per key, and the scheduler
 * skips keys a model records; what is left is a process that read the registry just before another
 * process's job for the same key recorded its model and finished, then enqueued (a fire handled late, a
 * slow first connection): its job may exist, but it does not train twice. Jobs without a trigger key
 * (manual trainings) run as they are.
 */
export function skipTrainedTriggers(
  registry: Pick<TrainingSchedulerDeps['registry'], 'list'>,
  handler: JobHandler<'train'>,
): JobHandler<'train'> {
  return async (payload, ctx) => {
    const key = payload.trigger?.key ?? null;
    if (key !== null) {
      const trained = (await registry.list(LINEAGE_LOOKBACK)).find(
        (mv) => mv.lineage?.trigger.key === key && mv.lineage.trigger.jobId !== ctx.jobId,
      );
      if (trained) {
        ctx.logger.warn(
          { key, version: trained.version, trainedBy: trained.lineage?.trigger.jobId ?? null },
          'training skipped: another job already trained this trigger',
        );
        ctx.progress(1);
        return {
          skipped: true,
          reason: 'trigger already trained',
          trigger_key: key,
          version: trained.version,
        };
      }
    }
    return handler(payload, ctx);
  };
}

/**
 * Builds and starts the scheduler of a process that runs jobs (worker and all-in-one roles). Throws
 * CAIRN_CONFIG_INVALID for an invalid `training.schedule`, before anything is armed.
 */
export function startTrainingScheduler(deps: TrainingSchedulerDeps): TrainingScheduler {
  return new TrainingScheduler(deps).start();
}
