/**
 * Composition root of the all-in-one process (`cairn serve`, role `all`, the embedded default): the
 * HTTP API, serving, the change-feed consumers and the job runner in one process, on whatever backends
 * the configuration names (SQLite, memory and files by default). Tests and benchmarks build the same
 * thing, so what they measure is what runs.
 *
 * Data flow, the same as in production, only in one process:
 *   ingest → event log ─┬→ projector → online state → recommender
 *                       └→ (NATS only) store writer → store of record
 *   catalog/users/erase/promotions → store → change log → projector + serving follower
 */
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../api/app.ts';
import type { Config } from '../config/load.ts';
import { OnlineProjector } from '../ingest/consumers.ts';
import type { ExperimentService, FeedbackService } from '../experiments/contracts.ts';
import { createFeedbackService, FEEDBACK_DURABLE, FeedbackProjector } from '../experiments/feedback.ts';
import { createExperimentService } from '../experiments/service.ts';
import type { CatalogService, IngestService } from '../ingest/contracts.ts';
import { createCatalogService, createIngestService, type ReadYourWrites } from '../ingest/service.ts';
import type { JobQueue, JobService } from '../jobs/contracts.ts';
import { createJobService, type JobRunner } from '../jobs/runner.ts';
import { createLogger, type Logger } from '../monitoring/logger.ts';
import { createMetrics, type Metrics } from '../monitoring/metrics.ts';
import { startMonitors, type Monitors } from '../monitoring/monitors.ts';
import { OfferDecider } from '../offers/service.ts';
import { ModelRegistry } from '../registry/registry.ts';
import type { CatalogView } from '../serving/catalog.ts';
import type { ChampionHolder } from '../serving/champion.ts';
import type { Recommender } from '../serving/recommender.ts';
import type { KeyService } from '../security/contracts.ts';
import { checkBind } from '../security/bind.ts';
import { createErasureFollowUp, startErasureSweeper } from '../security/erasure.ts';
import { pseudonymizerFor } from '../security/pseudonym.ts';
import { MemoryOnlineState } from '../storage/memory/online-state.ts';
import type { ArtifactStore, ChangeLog, EventLog, OnlineState, Store } from '../storage/ports.ts';
import { parseSchedule } from '../training/scheduler.ts';
import { ModelManagement } from '../training/service.ts';
import { DEFAULT_TENANT } from '../domain/context.ts';
import {
  backendsFor,
  DURABLE,
  ONLINE_SNAPSHOT_KEY,
  openCore,
  startStoreWriter,
  type Backends,
} from './adapters.ts';
import { fallbackCheck, Health, modelCheck, pingCheck } from './health.ts';
import { startBackgroundWork, within } from './background.ts';
import { startServing, type Serving } from './serving.ts';
import { apiDeps, aroundTenants, openTenants, type TenantServices } from './tenancy.ts';

/** One tenant's runtime: its backends and services (everything but the HTTP server). */
export interface EmbeddedTenant {
  tenant: string;
  config: Readonly<Config>;
  backends: Backends;
  logger: Logger;
  metrics: Metrics;
  store: Store;
  eventLog: EventLog;
  changeLog: ChangeLog;
  online: OnlineState;
  artifacts: ArtifactStore;
  jobs: JobQueue;
  jobService: JobService;
  runner: JobRunner;
  registry: ModelRegistry;
  champion: ChampionHolder;
  catalogView: CatalogView;
  health: Health;
  recommender: Recommender;
  /** The next-best-offer decision (records served offers through `ingest`). */
  offers: OfferDecider;
  ingest: IngestService;
  catalog: CatalogService;
  models: ModelManagement;
  projector: OnlineProjector;
  experiments: ExperimentService;
  feedback: FeedbackService;
  /** Turns events carrying a `request_id` into feedback (private consumer of the event log). */
  feedbackProjector: FeedbackProjector;
  /** Freshness (registry polled) and drift (private event-log consumer) monitors. */
  monitors: Monitors;
  /** Keyed hash of user ids for logs and audit records (security/pseudonym.ts). */
  pseudonymize: (id: string) => string;
  /** Writes the in-memory online state's snapshot now (no-op for a shared online state). */
  snapshot(): Promise<void>;
  close(): Promise<void>;
}

/**
 * The all-in-one service: the default tenant's runtime (its fields, for callers that know no tenants),
 * every tenant's runtime, and the HTTP app whose services dispatch on the caller's tenant.
 */
export interface Embedded extends EmbeddedTenant {
  app: FastifyInstance;
  tenants: ReadonlyMap<string, EmbeddedTenant>;
  keys: KeyService;
}

export interface EmbeddedOptions {
  logger?: Logger;
  /** How often the in-memory online state is snapshotted when it changed (ms; 0: only on close). */
  snapshotEveryMs?: number;
  /** Longest wait of a write for its own projection (read-your-writes), ms. */
  readYourWritesMs?: number;
}

export async function createEmbedded(
  config: Readonly<Config>,
  options: EmbeddedOptions = {},
): Promise<Embedded> {
  checkBind(config); // before anything is opened
  const logger = options.logger ?? createLogger(config.logging.level);
  parseSchedule(config.training.schedule); // an invalid cron fails start-up before anything is opened
  const tenants = await openTenants(config, logger, (tenant, tenantConfig, tenantLogger, pseudonymize) =>
    createTenantRuntime(tenant, tenantConfig, { ...options, logger: tenantLogger, pseudonymize }),
  );
  return aroundTenants(tenants, async () => {
    const deps = apiDeps(tenants, config, logger, servicesOf);
    return { ...tenants.main, app: await buildApp(deps), tenants: tenants.all, keys: deps.keys };
  });
}

/** A tenant runtime's services as the HTTP layer calls them. */
function servicesOf(t: EmbeddedTenant): TenantServices {
  return {
    ingest: t.ingest,
    catalog: t.catalog,
    recommendations: t.recommender,
    offers: t.offers,
    models: t.models,
    jobs: t.jobService,
    experiments: t.experiments,
    feedback: t.feedback,
  };
}

/** Builds one tenant's backends, consumers, background work and services (its config already namespaced). */
async function createTenantRuntime(
  tenant: string,
  config: Readonly<Config>,
  options: EmbeddedOptions & { logger: Logger; pseudonymize?: (id: string) => string },
): Promise<EmbeddedTenant> {
  const { logger } = options;
  // Process-wide metrics (HTTP, event loop, process) are the default tenant's; the others count their own.
  const metrics = createMetrics({ defaultMetrics: tenant === DEFAULT_TENANT });
  const backends = backendsFor(config);
  const core = await openCore(config, logger);
  try {
    const { store, artifacts, eventLog, changeLog, online, heads } = core;
    // Change-log position of the online-state snapshot on disk (a restart resumes from it, so erase records
    // after it must stay); none written yet: a restart replays the logs, which hold no erased data.
    let persistedChanges =
      online instanceof MemoryOnlineState && (await artifacts.exists(ONLINE_SNAPSHOT_KEY))
        ? (await online.watermarks()).changes
        : Number.POSITIVE_INFINITY;
    // With the logs in NATS, the store of record is a consumer like any other.
    const storeWriter = backends.logs === 'nats' ? startStoreWriter(core, logger, metrics) : null;

    // A private projector (memory state) resumes from the state's watermarks; a shared one (Redis) is
    // one durable consumer for the whole deployment.
    const privateState = online instanceof MemoryOnlineState;
    let serving: Serving | null = null;
    let dirty = false;
    const projector = new OnlineProjector({
      online,
      eventLog,
      changeLog,
      logger,
      durable: privateState
        ? undefined
        : { events: DURABLE.projectorEvents, changes: DURABLE.projectorChanges },
      onApplied: () => {
        dirty = true;
        // This process's own cached popular head is stale now (events add popularity, an erase subtracts
        // it); other replicas refresh within a second.
        serving?.popular.invalidate();
      },
    });
    await projector.start();
    core.add(projector);
    if (privateState) {
      // Start-up: apply what the snapshot did not have yet (everything on a fresh store). The target is
      // capped by the current head: records erased since `heads` was read will never be delivered.
      await settle(
        () => projector.eventPosition,
        () => eventLog.head(),
        heads.events,
      );
      await settle(
        () => projector.changePosition,
        () => changeLog.head(),
        heads.changes,
      );
    }

    const registry = new ModelRegistry(store.models, artifacts, logger, changeLog);
    serving = core.add(
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
    const s = serving;

    metrics.watchLogs(
      { events: () => eventLog.head(), changes: () => changeLog.head() },
      {
        projector_events: () => projector.eventPosition,
        projector_changes: () => projector.changePosition,
        serving_follower: () => s.follower.position,
        ...(storeWriter ? { store_writer: () => storeWriter.position } : {}),
      },
    );

    const monitors = core.add(
      await startMonitors({ config, logger, metrics, registry, served: s.champion, eventLog }),
    );

    // One key per deployment (the default tenant's store): the same pseudonym in every log line.
    const pseudonymize = options.pseudonymize ?? (await pseudonymizerFor(config, store.settings));
    const { jobs, runner } = startBackgroundWork({
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

    const rywMs = options.readYourWritesMs ?? 2000;
    const readYourWrites: ReadYourWrites | undefined = privateState
      ? {
          events: async () => bounded(projector.eventsCaughtUp(await eventLog.head()), rywMs),
          changes: (seq) =>
            bounded(Promise.all([projector.changesCaughtUp(seq), s.follower.caughtUp(seq)]), rywMs),
        }
      : undefined;
    const ingest = createIngestService({ eventLog, config, metrics, logger, readYourWrites });
    const offers = new OfferDecider({
      config,
      book: s.offerBook,
      online,
      champion: () => s.champion.get(),
      recorder: ingest,
      metrics,
      logger,
    });
    const erasure = createErasureFollowUp({ registry, store, pseudonymize, logger });
    const catalog = createCatalogService({
      store,
      changeLog,
      eventLog,
      config,
      logger,
      readYourWrites,
      erasure,
    });
    core.add(
      startErasureSweeper({
        config,
        store,
        changeLog,
        logger,
        holdbacks: privateState ? [() => Promise.resolve(persistedChanges)] : [],
      }),
    );
    const models = new ModelManagement(config, registry, jobs, () => runner.wake());
    const experiments = createExperimentService({ store, changeLog, logger, readYourWrites });
    const feedback = createFeedbackService({
      served: store.served,
      maxBatch: config.server.maxBatchEvents,
      maxFutureSkewMs: config.events.maxFutureSkewSeconds * 1000,
    });
    // Events carrying a request id become feedback: a durable consumer (its position survives restarts,
    // so a start never rescans the log; feedback is idempotent, so a replayed batch changes nothing).
    const feedbackProjector = core.add(
      new FeedbackProjector({ eventLog, served: store.served, config, logger, durable: FEEDBACK_DURABLE }),
    );
    feedbackProjector.start();
    const health = new Health([
      pingCheck('store', true, () => store.ping()),
      fallbackCheck(() => online.popularCount()),
      modelCheck(s.champion, monitors.freshness),
    ]);
    metrics.watchReadiness(() => health.ready());

    const snapshot = async () => {
      if (!(online instanceof MemoryOnlineState) || !dirty) return;
      dirty = false;
      try {
        // Read before the snapshot is taken: the snapshot holds at least this much.
        const marks = await online.watermarks();
        await artifacts.put(ONLINE_SNAPSHOT_KEY, await online.snapshotInSlices());
        persistedChanges = marks.changes;
      } catch (err) {
        dirty = true;
        logger.warn({ err }, 'could not write the online-state snapshot');
      }
    };
    const every = options.snapshotEveryMs ?? 60_000;
    const timer = privateState && every > 0 ? setInterval(() => void snapshot(), every) : null;
    timer?.unref();

    let closed = false;
    return {
      tenant,
      config,
      backends,
      logger,
      metrics,
      store,
      eventLog,
      changeLog,
      online,
      artifacts,
      jobs,
      jobService: createJobService(jobs),
      runner,
      registry,
      champion: s.champion,
      catalogView: s.catalogView,
      health,
      recommender: s.recommender,
      offers,
      ingest,
      catalog,
      models,
      projector,
      experiments,
      feedback,
      feedbackProjector,
      monitors,
      snapshot,
      pseudonymize,
      async close() {
        if (closed) return;
        closed = true;
        if (timer) clearInterval(timer);
        // Stop the work that changes state before the snapshot of it, then close the rest.
        await runner.close();
        await projector.close();
        await snapshot();
        await core.close();
      },
    };
  } catch (err) {
    await core.close().catch(() => undefined);
    throw err;
  }
}

/**
 * Waits for `p` at most `ms`; never fails (the write is durable either way: this only bounds
 * read-your-writes, and a consumer closing at shutdown must not turn an accepted write into an error).
 */
async function bounded(p: Promise<unknown>, ms: number): Promise<void> {
  await within(p, ms);
}

/** Polls until a consumer's position reaches `target` (or the log's head, if that is lower now). */
async function settle(position: () => number, head: () => Promise<number>, target: number): Promise<void> {
  while (position() < target) {
    if (position() >= (await head())) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}
