/**
 * The background work of the roles that run jobs (`all` and `worker`): the canary guard, the job
 * runner with the training handler, and the training scheduler. One definition, so the all-in-one
 * process and a production worker run the same loop.
 */
import type { Config } from '../config/load.ts';
import { CanaryGuard } from '../experiments/guard.ts';
import type { JobQueue } from '../jobs/contracts.ts';
import { JobRunner } from '../jobs/runner.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { Metrics } from '../monitoring/metrics.ts';
import type { ModelRegistry } from '../registry/registry.ts';
import type { ChangeLog, EventLog, Store } from '../storage/ports.ts';
import { runTrainingJob } from '../training/pipeline.ts';
import { skipTrainedTriggers, startTrainingScheduler } from '../training/scheduler.ts';
import type { StoreWriter } from '../ingest/consumers.ts';
import { openJobQueue, type Base } from './adapters.ts';

export interface BackgroundDeps {
  config: Readonly<Config>;
  logger: Logger;
  metrics: Metrics;
  store: Store;
  eventLog: EventLog;
  changeLog: ChangeLog;
  registry: ModelRegistry;
  /** The deployment's pseudonym of user ids (audit log). */
  pseudonymize: (id: string) => string;
  /** Where what is started here is registered for closing (the root's core). */
  core: Pick<Base, 'add'>;
  /** The store writer, where the store of record is fed from the event log (NATS): training waits for it. */
  storeWriter?: Pick<StoreWriter, 'caughtUp'> | null;
}

export function startBackgroundWork(deps: BackgroundDeps): { jobs: JobQueue; runner: JobRunner } {
  const { config, logger, metrics, store, eventLog, changeLog, registry, core, pseudonymize, storeWriter } =
    deps;
  const storeCaughtUp = storeWriter
    ? async (ms: number) => within(storeWriter.caughtUp(await eventLog.head()), ms)
    : undefined;
  // Rolls back canaries whose online metric falls below the control's (stops routing, rejects the version).
  core
    .add(
      new CanaryGuard({
        experiments: store.experiments,
        served: store.served,
        changeLog,
        registry,
        metrics,
        logger,
      }),
    )
    .start(config.experiments.guardCheckSeconds * 1000);

  const jobs = core.add(openJobQueue(config, store, logger));
  const runner = new JobRunner({ queue: jobs, logger, leaseMs: config.jobs.leaseSeconds * 1000 });
  runner.register(
    'train',
    // A job whose trigger a model already records finishes without training (one training per trigger).
    skipTrainedTriggers(registry, (payload, ctx) =>
      runTrainingJob(
        { store, config, registry, metrics, logger: ctx.logger, pseudonymize, storeCaughtUp },
        payload,
        ctx,
      ),
    ),
  );
  core.add(runner).start();
  // Scheduled and data-volume retraining: every process running jobs runs one; the trigger keys make it
  // one job per trigger. Closed with the core, before the runner and the queue.
  core.add(
    startTrainingScheduler({ config, registry, jobs, eventLog, metrics, logger, wake: () => runner.wake() }),
  );
  return { jobs, runner };
}

/** True once `p` resolves; false if it fails (the consumer closed) or `ms` pass first. */
export async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p.then(
        () => true,
        () => false,
      ),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
