/**
 * Composition root of an API replica (`cairn serve --role api`): HTTP, serving and publishing to the
 * logs — nothing else. Run as many as the traffic needs, on PostgreSQL, Redis and NATS JetStream:
 *
 * - events are acknowledged once durable in the JetStream stream (PostgreSQL may be down meanwhile);
 * - recommendations read the shared online state in Redis and this replica's champion and catalog
 *   view, which follow the change log (promotions, catalog changes made anywhere reach every replica);
 * - training requests go to the BullMQ queue that workers consume.
 */
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../api/app.ts';
import type { Config } from '../config/load.ts';
import { createFeedbackService } from '../experiments/feedback.ts';
import { createExperimentService } from '../experiments/service.ts';
import { createCatalogService, createIngestService } from '../ingest/service.ts';
import { createJobService } from '../jobs/runner.ts';
import { createLogger, type Logger } from '../monitoring/logger.ts';
import { inCluster, shareMetrics } from '../monitoring/cluster-metrics.ts';
import { createMetrics, type Metrics } from '../monitoring/metrics.ts';
import { startMonitors } from '../monitoring/monitors.ts';
import { OfferDecider } from '../offers/service.ts';
import { ModelRegistry } from '../registry/registry.ts';
import { ModelManagement } from '../training/service.ts';
import { DEFAULT_TENANT } from '../domain/context.ts';
import { checkBind } from '../security/bind.ts';
import { createErasureFollowUp } from '../security/erasure.ts';
import { pseudonymizerFor } from '../security/pseudonym.ts';
import type { Store } from '../storage/ports.ts';
import { checkRole, openCore, openJobQueue } from './adapters.ts';
import { fallbackCheck, Health, modelCheck, pingCheck } from './health.ts';
import { startServing, type Serving } from './serving.ts';
import { apiDeps, aroundTenants, openTenants, type TenantServices } from './tenancy.ts';

export interface ApiProcess {
  config: Readonly<Config>;
  logger: Logger;
  metrics: Metrics;
  app: FastifyInstance;
  health: Health;
  /** The default tenant's serving (champion, catalog view, recommender). */
  serving: Serving;
  close(): Promise<void>;
}

/** One tenant's part of an API replica. */
interface ApiTenant {
  metrics: Metrics;
  health: Health;
  serving: Serving;
  services: TenantServices;
  store: Store;
  pseudonymize: (id: string) => string;
  close(): Promise<void>;
}

export async function createApi(
  config: Readonly<Config>,
  options: { logger?: Logger } = {},
): Promise<ApiProcess> {
  checkRole('api', config);
  checkBind(config);
  const logger = options.logger ?? createLogger(config.logging.level);
  const tenants = await openTenants(config, logger, createApiTenant);
  // One of `server.processes` processes: its metrics count toward the role's (src/main/cluster.ts).
  if (inCluster()) shareMetrics(tenants.main.metrics.registry);
  return aroundTenants(tenants, async () => ({
    config,
    logger,
    metrics: tenants.main.metrics,
    app: await buildApp(apiDeps(tenants, config, logger, (t) => t.services)),
    health: tenants.main.health,
    serving: tenants.main.serving,
  }));
}

async function createApiTenant(
  tenant: string,
  config: Readonly<Config>,
  logger: Logger,
  deploymentPseudonymizer?: (id: string) => string,
): Promise<ApiTenant> {
  const metrics = createMetrics({ defaultMetrics: tenant === DEFAULT_TENANT });
  const core = await openCore(config, logger);
  try {
    const { store, artifacts, eventLog, changeLog, online } = core;
    const registry = new ModelRegistry(store.models, artifacts, logger, changeLog);
    const serving = core.add(
      await startServing({
        config,
        logger,
        metrics,
        registry,
        online,
        changeLog,
        experiments: store.experiments,
        served: store.served,
      }),
    );
    metrics.watchLogs(
      { events: () => eventLog.head(), changes: () => changeLog.head() },
      { serving_follower: () => serving.follower.position },
    );
    // Freshness only: an API replica does not consume the event log, so drift is measured by workers.
    const monitors = core.add(
      await startMonitors({ config, logger, metrics, registry, served: serving.champion }),
    );
    const jobs = core.add(openJobQueue(config, store, logger));

    const note = ' (recommendations keep answering; writes that need it fail with 503)';
    const health = new Health([
      // Reported, not required: while Redis is down the replica still answers every recommendation (from
      // the popular list it last read, labelled degraded), so taking every replica out of rotation at once
      // would turn a degraded service into none.
      fallbackCheck(() => online.popularCount(), false),
      pingCheck('event_log', false, () => eventLog.head(), ' (ingestion answers 503 until it is back)'),
      pingCheck('store', false, () => store.ping(), note),
      modelCheck(serving.champion, monitors.freshness),
    ]);
    metrics.watchReadiness(() => health.ready());
    const pseudonymize = deploymentPseudonymizer ?? (await pseudonymizerFor(config, store.settings));
    const erasure = createErasureFollowUp({ registry, store, pseudonymize, logger });
    const ingest = createIngestService({ eventLog, config, metrics, logger });
    return {
      metrics,
      health,
      serving,
      store,
      pseudonymize,
      services: {
        ingest,
        catalog: createCatalogService({ store, changeLog, eventLog, config, logger, erasure }),
        recommendations: serving.recommender,
        offers: new OfferDecider({
          config,
          book: serving.offerBook,
          online,
          champion: () => serving.champion.get(),
          recorder: ingest,
          metrics,
          logger,
        }),
        models: new ModelManagement(config, registry, jobs),
        jobs: createJobService(jobs),
        experiments: createExperimentService({ store, changeLog, logger }),
        feedback: createFeedbackService({
          served: store.served,
          maxBatch: config.server.maxBatchEvents,
          maxFutureSkewMs: config.events.maxFutureSkewSeconds * 1000,
        }),
      },
      close: () => core.close(),
    };
  } catch (err) {
    await core.close().catch(() => undefined);
    throw err;
  }
}
