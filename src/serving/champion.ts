/**
 * Holds the champion model this process serves and swaps it without a restart when the change log
 * announces a promotion or rollback (made by any process: see serving/follower.ts). A model that fails
 * to load never replaces a working one.
 */
import type { ModelVersion } from '../domain/types.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { Metrics } from '../monitoring/metrics.ts';
import type { ModelRegistry } from '../registry/registry.ts';
import { loadServingModel, type ServingModel } from './model-state.ts';

/**
 * The champion a newer one replaced, and when (this process's clock). Its cached answers may stand in
 * while the new champion's are computed (serving/recommender.ts): never after a rollback, where the
 * version replaced is the one judged bad.
 */
export interface Predecessor {
  version: string;
  replacedAt: number;
}

export class ChampionHolder {
  private current: ServingModel | null = null;
  private replaced: Predecessor | null = null;
  private loading: Promise<void> = Promise.resolve();
  /** Last load failure, reported by readiness. */
  lastError: string | null = null;

  constructor(
    private readonly registry: Pick<ModelRegistry, 'champion' | 'get' | 'load'>,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  get(): ServingModel | null {
    return this.current;
  }

  /** The previous champion when a newer version (by training time) replaced it; null otherwise. */
  predecessor(): Predecessor | null {
    return this.replaced;
  }

  /** Loads the stored champion, if any (start-up; later changes arrive through the change log). */
  async refresh(): Promise<void> {
    try {
      const mv = await this.registry.champion();
      if (mv) await this.swapTo(mv);
    } catch (err) {
      this.lastError = `could not read the champion: ${(err as Error).message}`;
      this.logger.warn({ err }, 'could not check the champion model');
    }
  }

  /** Serves `version` (announced as champion by the change log). */
  async useVersion(version: string): Promise<void> {
    if (this.current?.version.version === version) return;
    try {
      await this.swapTo(await this.registry.get(version));
    } catch (err) {
      this.lastError = `could not load model ${version}: ${(err as Error).message}`;
      this.logger.error({ err, version }, 'announced champion could not be read; keeping the current one');
    }
  }

  /** Serialised loads, so two quick promotions end on the newest. */
  private swapTo(mv: ModelVersion): Promise<void> {
    const next = this.loading.then(async () => {
      if (this.current?.version.version === mv.version) return;
      try {
        const before = this.current;
        this.current = await loadServingModel(this.registry, mv);
        // A rollback (an older version back in place) hands nothing over.
        this.replaced =
          before !== null && mv.createdAt > before.version.createdAt
            ? { version: before.version.version, replacedAt: this.now() }
            : null;
        this.lastError = null;
        this.metrics.setChampion(mv.version, mv.algorithm, mv.createdAt);
        this.logger.info({ version: mv.version, algorithm: mv.algorithm }, 'serving new champion');
      } catch (err) {
        this.lastError = `could not load model ${mv.version}: ${(err as Error).message}`;
        this.logger.error(
          { err, version: mv.version },
          'champion model failed to load; keeping the current one',
        );
      }
    });
    this.loading = next;
    return next;
  }
}
