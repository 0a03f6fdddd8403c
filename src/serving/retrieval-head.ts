/**
 * The popular head with its trending and category scores (features/head-retrievers.ts) for the ranker's
 * head retrievers, kept per process: rebuilt from the popular list's head and the online state's item
 * feature states (one round trip for the whole head) at most every `refreshMs`, so a ranked request
 * reads nothing for it. While a rebuild runs, the previous head answers; the first request waits for it.
 */
import type { FeatureConfig } from '../features/definitions.ts';
import { buildHead, HEAD_REFRESH_MS, HEAD_SIZE, type RetrievalHead } from '../features/head-retrievers.ts';
import type { OnlineState } from '../storage/ports.ts';
import type { CatalogView } from './catalog.ts';
import type { PopularList } from './popular.ts';

export class RetrievalHeadCache {
  private head: RetrievalHead | null = null;
  private builtAt = -Infinity;
  private building: Promise<RetrievalHead> | null = null;

  constructor(
    private readonly deps: {
      popular: Pick<PopularList, 'top'>;
      online: Pick<OnlineState, 'itemFeatures'>;
      catalog: Pick<CatalogView, 'has' | 'categories'>;
      features: FeatureConfig;
      /** Index of the popularity retriever's half-life in `features.halfLivesDays`. */
      popIndex: number;
      refreshMs?: number;
    },
  ) {}

  /** The head as of at most `refreshMs` before `now` (or the previous one while it is rebuilt). */
  async get(now: number): Promise<RetrievalHead> {
    if (this.head && now - this.builtAt < (this.deps.refreshMs ?? HEAD_REFRESH_MS)) return this.head;
    this.building ??= this.build(now).finally(() => (this.building = null));
    if (this.head) {
      this.building.catch(() => {}); // the previous head keeps answering; the next request tries again
      return this.head;
    }
    return this.building;
  }

  private async build(now: number): Promise<RetrievalHead> {
    const { popular, online, catalog, features, popIndex } = this.deps;
    const ids = (await popular.top(HEAD_SIZE, now, (id) => catalog.has(id))).map((e) => e.itemId);
    const states = await online.itemFeatures(ids);
    const head = buildHead(
      ids.map((id, i) => ({ id, state: states[i], categories: catalog.categories(id) })),
      now,
      features,
      popIndex,
    );
    this.head = head;
    this.builtAt = now;
    return head;
  }
}
