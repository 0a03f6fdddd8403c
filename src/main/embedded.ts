/**
 * Composition root of the all-in-one process (`cairn serve`, role `all`): the only place that builds
 * adapters and wires services. Tests and benchmarks build the same thing, so what they measure is
 * what runs.
 */
import { join, resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../api/app.ts';
import type { Config } from '../config/load.ts';
import { createCatalogService, createIngestService } from '../ingest/service.ts';
import { InProcessQueue } from '../jobs/queue.ts';
import { createLogger, type Logger } from '../monitoring/logger.ts';
import { createMetrics, type Metrics } from '../monitoring/metrics.ts';
import { ModelRegistry } from '../registry/registry.ts';
import { CatalogView } from '../serving/catalog.ts';
import { ChampionHolder } from '../serving/champion.ts';
import { PopularityTracker } from '../serving/popularity.ts';
import { Recommender } from '../serving/recommender.ts';
import { openStore } from '../storage/open.ts';
import type { EventStore, Store } from '../storage/ports.ts';
import { runTrainingJob } from '../training/pipeline.ts';
import { ModelManagement } from '../training/service.ts';
import { Health } from './health.ts';

export interface Embedded {
  config: Readonly<Config>;
  logger: Logger;
  metrics: Metrics;
  store: Store;
  app: FastifyInstance;
  queue: InProcessQueue;
  registry: ModelRegistry;
  champion: ChampionHolder;
  popularity: PopularityTracker;
  catalogView: CatalogView;
  health: Health;
  recommender: Recommender;
  ingest: ReturnType<typeof createIngestService>;
  catalog: ReturnType<typeof createCatalogService>;
  models: ModelManagement;
  close(): Promise<void>;
}

export interface EmbeddedOptions {
  logger?: Logger;
  /** How often to look for a champion promoted by another process (0: never). */
  pollMs?: number;
}

export async function createEmbedded(
  config: Readonly<Config>,
  options: EmbeddedOptions = {},
): Promise<Embedded> {
  const logger = options.logger ?? createLogger(config.logging.level);
  const metrics = createMetrics();
  const store = await openStore(config);
  try {
    const catalogView = new CatalogView();
    await catalogView.load(store.items);
    const popularity = new PopularityTracker(config.events.types, config.serving.popularityHalfLifeDays);
    await warmPopularity(store.events, popularity);

    const registry = new ModelRegistry(store.models, resolve(join(config.dataDir, 'models')), logger);
    const champion = new ChampionHolder(registry, metrics, logger);
    await champion.start(options.pollMs ?? 5000);

    const queue = new InProcessQueue(store.jobs, logger);
    queue.register('train', (payload, ctx) =>
      runTrainingJob({ store, config, registry, metrics, logger: ctx.logger }, payload, ctx),
    );

    const ingest = createIngestService({
      store,
      config,
      metrics,
      logger,
      onEvents: (events) => popularity.add(events),
    });
    const catalog = createCatalogService({
      store,
      config,
      logger,
      onItemsChanged: (items) => catalogView.upsert(items),
      onUserErased: (userId) => {
        // The erased user's events are gone from the store; forget them in memory too.
        champion.get()?.userIndex.delete(userId);
        popularity.clear();
        void warmPopularity(store.events, popularity).catch((err: unknown) =>
          logger.error({ err }, 'could not rebuild popularity after an erase'),
        );
      },
    });
    const recommender = new Recommender({
      config,
      events: store.events,
      users: store.users,
      catalog: catalogView,
      popularity,
      metrics,
      logger,
      champion: () => champion.get(),
    });
    const models = new ModelManagement(config, registry, queue);
    const health = new Health(store, champion, popularity);
    const app = await buildApp({
      config,
      logger,
      metrics,
      ingest,
      catalog,
      recommendations: recommender,
      models,
      jobs: queue,
      health,
    });
    await queue.recover();

    let closed = false;
    return {
      config,
      logger,
      metrics,
      store,
      app,
      queue,
      registry,
      champion,
      popularity,
      catalogView,
      health,
      recommender,
      ingest,
      catalog,
      models,
      async close() {
        if (closed) return;
        closed = true;
        champion.stop();
        await app.close();
        await queue.close();
        await store.close();
      },
    };
  } catch (err) {
    await store.close().catch(() => undefined);
    throw err;
  }
}

/** Rebuilds the online popularity counters from the event log (start-up, after an erase). */
export async function warmPopularity(events: EventStore, popularity: PopularityTracker): Promise<void> {
  for await (const page of events.scan({ batchSize: 10_000 })) popularity.add(page);
}
