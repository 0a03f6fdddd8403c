/**
 * The serving side of a process (roles `all` and `api`): champion, catalog view, popular list, the
 * running experiments and their models, the served-log writer and the recommender, fed by the change
 * log (never by in-process callbacks). Shared by the composition roots.
 */
import type { Config } from '../config/load.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { Metrics } from '../monitoring/metrics.ts';
import { OfferBook } from '../offers/book.ts';
import type { ModelRegistry } from '../registry/registry.ts';
import { CatalogView } from '../serving/catalog.ts';
import { ChampionHolder } from '../serving/champion.ts';
import { ExperimentRouter } from '../serving/experiments.ts';
import { ServingFollower } from '../serving/follower.ts';
import { ModelPool } from '../serving/model-pool.ts';
import { PopularList } from '../serving/popular.ts';
import { Recommender } from '../serving/recommender.ts';
import { ServedLogWriter } from '../serving/served-log.ts';
import type { ChangeLog, ExperimentStore, OnlineState, ServedLogStore } from '../storage/ports.ts';

export interface Serving {
  catalogView: CatalogView;
  /** This replica's offers (catalog items with an `offer`), kept current like the catalog view. */
  offerBook: OfferBook;
  champion: ChampionHolder;
  popular: PopularList;
  recommender: Recommender;
  follower: ServingFollower;
  experiments: ExperimentRouter;
  pool: ModelPool;
  /** Null when `experiments.servedLog` is off or no served-log store was given. */
  servedLog: ServedLogWriter | null;
  close(): Promise<void>;
}

export interface ServingDeps {
  config: Readonly<Config>;
  logger: Logger;
  metrics: Metrics;
  registry: ModelRegistry;
  online: OnlineState;
  changeLog: ChangeLog;
  /** Where the running experiments are read at start (null: only from the change log). */
  experiments?: Pick<ExperimentStore, 'list'> | null;
  /** Where served answers are recorded (null: not recorded). */
  served?: Pick<ServedLogStore, 'record'> | null;
}

/**
 * Builds and starts the serving side: reads the online state's change watermark FIRST, then loads the
 * catalog view from it and the champion from the registry, then follows the change log from that
 * watermark (a change applied between the two reads is applied twice, which upserts make harmless).
 * The running experiments are read after the watermark too, so a change between the two is applied
 * after the read; a store that is down leaves the router empty (retrying) instead of failing start-up.
 */
export async function startServing(deps: ServingDeps): Promise<Serving> {
  const { config, logger, metrics, registry, online, changeLog } = deps;
  const from = (await online.watermarks()).changes;
  const catalogView = new CatalogView();
  const offerBook = new OfferBook(logger);
  await catalogView.load(online, 5000, (page) => offerBook.upsert(page));
  const champion = new ChampionHolder(registry, metrics, logger);
  await champion.refresh();
  const experiments = new ExperimentRouter(deps.experiments ?? null, metrics, logger);
  const pool = new ModelPool(registry, () => champion.get(), logger);
  // A router that loads late (store down at start) brings its experiments' models in then.
  experiments.onChange(() => void pool.sync(experiments.versions()));
  await experiments.load();
  await pool.sync(experiments.versions());
  const servedLog =
    config.experiments.servedLog && deps.served ? new ServedLogWriter(deps.served, metrics, logger) : null;
  const popular = new PopularList(online);
  // Read the popular head once now, so an online-state outage before the first fallback still has a
  // last-known list to answer from (a failure here only means there is none yet).
  await popular.top(1, Date.now(), () => true).catch(() => undefined);
  const recommender = new Recommender({
    config,
    online,
    catalog: catalogView,
    popular,
    metrics,
    logger,
    champion: () => champion.get(),
    predecessor: () => champion.predecessor(),
    experiments,
    pool,
    servedLog,
  });
  const follower = new ServingFollower(changeLog, catalogView, champion, logger, {
    experiments,
    pool,
    offers: offerBook,
  });
  follower.start(from);
  return {
    catalogView,
    offerBook,
    champion,
    popular,
    recommender,
    follower,
    experiments,
    pool,
    servedLog,
    async close() {
      await recommender.close();
      await follower.close();
      await experiments.close();
      // What was served until now still reaches the store (it closes after serving).
      await servedLog?.close();
      await pool.close();
    },
  };
}
