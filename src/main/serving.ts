/**
 * The serving side of a process (roles `all` and `api`): champion, catalog view, popular list and the
 * recommender, fed by the change log (never by in-process callbacks). Shared by the composition roots.
 */
import type { Config } from '../config/load.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { Metrics } from '../monitoring/metrics.ts';
import type { ModelRegistry } from '../registry/registry.ts';
import { CatalogView } from '../serving/catalog.ts';
import { ChampionHolder } from '../serving/champion.ts';
import { ServingFollower } from '../serving/follower.ts';
import { PopularList } from '../serving/popular.ts';
import { Recommender } from '../serving/recommender.ts';
import type { ChangeLog, OnlineState } from '../storage/ports.ts';

export interface Serving {
  catalogView: CatalogView;
  champion: ChampionHolder;
  popular: PopularList;
  recommender: Recommender;
  follower: ServingFollower;
  close(): Promise<void>;
}

export interface ServingDeps {
  config: Readonly<Config>;
  logger: Logger;
  metrics: Metrics;
  registry: ModelRegistry;
  online: OnlineState;
  changeLog: ChangeLog;
}

/**
 * Builds and starts the serving side: reads the online state's change watermark FIRST, then loads the
 * catalog view from it and the champion from the registry, then follows the change log from that
 * watermark (a change applied between the two reads is applied twice, which upserts make harmless).
 */
export async function startServing(deps: ServingDeps): Promise<Serving> {
  const { config, logger, metrics, registry, online, changeLog } = deps;
  const from = (await online.watermarks()).changes;
  const catalogView = new CatalogView();
  await catalogView.load(online);
  const champion = new ChampionHolder(registry, metrics, logger);
  await champion.refresh();
  const popular = new PopularList(online);
  const recommender = new Recommender({
    config,
    online,
    catalog: catalogView,
    popular,
    metrics,
    logger,
    champion: () => champion.get(),
  });
  const follower = new ServingFollower(changeLog, catalogView, champion, logger);
  follower.start(from);
  return {
    catalogView,
    champion,
    popular,
    recommender,
    follower,
    close: () => follower.close(),
  };
}
