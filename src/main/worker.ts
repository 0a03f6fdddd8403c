/**
 * Composition root of a worker (`cairn serve --role worker`): the consumers that keep derived state
 * current and the job runner — no public API (an ops server answers health probes and metrics).
 *
 * - store writer: event log (JetStream) → PostgreSQL, idempotent by event id; while PostgreSQL is down
 *   events wait in the stream and land when it is back;
 * - projector: event and change logs → the shared online state in Redis (one durable consumer for the
 *   deployment: several workers share it, each record applied once);
 * - job runner: claims training jobs with a lease; a worker that dies mid-job loses its lease and
 *   another takes the job over.
 */
import type { FastifyInstance } from 'fastify';
import { buildOpsApp } from '../api/app.ts';
import type { Config } from '../config/load.ts';
import { FEEDBACK_DURABLE, FeedbackProjector } from '../experiments/feedback.ts';
import { OnlineProjector } from '../ingest/consumers.ts';
import type { JobRunner } from '../jobs/runner.ts';
import { createLogger, type Logger } from '../monitoring/logger.ts';
import { createMetrics, type Metrics } from '../monitoring/metrics.ts';
import { startMonitors } from '../monitoring/monitors.ts';
import { ModelRegistry } from '../registry/registry.ts';
import { parseSchedule } from '../training/scheduler.ts';
import { DEFAULT_TENANT } from '../domain/context.ts';
import { checkBind } from '../security/bind.ts';
import { startErasureSweeper } from '../security/erasure.ts';
import { pseudonymizerFor } from '../security/pseudonym.ts';
import type { Store } from '../storage/ports.ts';
import { checkRole, DURABLE, openCore, startStoreWriter } from './adapters.ts';
import { startBackgroundWork } from './background.ts';
import { Health, pingCheck, trainingCheck } from './health.ts';
import { aroundTenants, openTenants, opsDeps } from './tenancy.ts';

export interface WorkerProcess {
  config: Readonly<Config>;
  logger: Logger;
  metrics: Metrics;
  app: FastifyInstance;
  health: Health;
  runner: JobRunner;
  close(): Promise<void>;
}

export async function createWorker(
  config: Readonly<Config>,
  options: { logger?: Logger } = {},
): Promise<WorkerProcess> {
  checkRole('worker', config);
  checkBind(config);
  parseSchedule(config.training.schedule); // an invalid cron fails start-up before anything is opened
  const logger = options.logger ?? createLogger(config.logging.level);
  const tenants = await openTenants(config, logger, createWorkerTenant);
  return aroundTenants(tenants, () => ({
    config,
    logger,
    metrics: tenants.main.metrics,
    app: buildOpsApp(opsDeps(tenants, config, logger)),
    health: tenants.main.health,
    runner: tenants.main.runner,
  }));
}

/** One tenant's consumers and job runner. */
interface WorkerTenant {
  metrics: Metrics;
  health: Health;
  runner: JobRunner;
  store: Store;
  pseudonymize: (id: string) => string;
  close(): Promise<void>;
}

async function createWorkerTenant(
  tenant: string,
  config: Readonly<Config>,
  logger: Logger,
  deploymentPseudonymizer?: (id: string) => string,
): Promise<WorkerTenant> {
  const metrics = createMetrics({ defaultMetrics: tenant === DEFAULT_TENANT });
  const core = await openCore(config, logger);
  try {
    const { store, artifacts, eventLog, changeLog, online } = core;
    const storeWriter = startStoreWriter(core, logger, metrics);
    const projector = new OnlineProjector({
      online,
      eventLog,
      changeLog,
      logger,
      durable: { events: DURABLE.projectorEvents, changes: DURABLE.projectorChanges },
    });
    await projector.start();
    core.add(projector);
    // Events carrying a request id become feedback (one durable consumer for the deployment).
    core
      .add(
        new FeedbackProjector({ eventLog, served: store.served, config, logger, durable: FEEDBACK_DURABLE }),
      )
      .start();

    metrics.watchLogs(
      { events: () => eventLog.head(), changes: () => changeLog.head() },
      {
        store_writer: () => storeWriter.position,
        projector_events: () => projector.eventPosition,
        projector_changes: () => projector.changePosition,
      },
    );

    const registry = new ModelRegistry(store.models, artifacts, logger, changeLog);
    const monitors = core.add(await startMonitors({ config, logger, metrics, registry, eventLog }));
    const pseudonymize = deploymentPseudonymizer ?? (await pseudonymizerFor(config, store.settings));
    const { runner } = startBackgroundWork({
      config,
      logger,
      metrics,
      store,
      eventLog,
      changeLog,
      registry,
      core,
      pseudonymize,
      storeWriter,
    });

    const health = new Health([
      pingCheck('event_log', true, () => eventLog.head()),
      pingCheck('online_state', true, () => online.watermarks()),
      pingCheck('store', false, () => store.ping(), ' (events wait in the log until it is back)'),
      trainingCheck(monitors.freshness),
    ]);
    metrics.watchReadiness(() => health.ready());
    // Removes erase records once every durable consumer (this deployment's projector and writers) is past them.
    core.add(startErasureSweeper({ config, store, changeLog, logger }));
    return { metrics, health, runner, store, pseudonymize, close: () => core.close() };
  } catch (err) {
    await core.close().catch(() => undefined);
    throw err;
  }
}
