/**
 * Holds the champion model this process serves and swaps it without a restart: immediately when this
 * process promotes (registry event), and within `pollMs` when another process does (the store is the
 * source of truth). A model that fails to load never replaces a working one.
 */
import { loadArtifact } from '../algorithms/index.ts';
import type { ModelVersion } from '../domain/types.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { Metrics } from '../monitoring/metrics.ts';
import type { ModelRegistry } from '../registry/registry.ts';
import { ServingModel } from './model-state.ts';

export class ChampionHolder {
  private current: ServingModel | null = null;
  private timer: NodeJS.Timeout | null = null;
  private loading: Promise<void> | null = null;
  /** Last load failure, reported by readiness. */
  lastError: string | null = null;

  constructor(
    private readonly registry: ModelRegistry,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
  ) {
    registry.on('champion', (mv) => void this.swapTo(mv));
  }

  get(): ServingModel | null {
    return this.current;
  }

  /** Loads the stored champion (if any) and starts watching for changes. */
  async start(pollMs = 5000): Promise<void> {
    await this.refresh();
    if (pollMs > 0) {
      this.timer = setInterval(() => void this.refresh(), pollMs);
      this.timer.unref();
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  async refresh(): Promise<void> {
    try {
      const mv = await this.registry.champion();
      if (mv && mv.version !== this.current?.version.version) await this.swapTo(mv);
    } catch (err) {
      this.logger.warn({ err }, 'could not check the champion model');
    }
  }

  private async swapTo(mv: ModelVersion): Promise<void> {
    // Serialise loads so two quick promotions end on the newest.
    const prev = this.loading ?? Promise.resolve();
    const next = prev.then(async () => {
      if (this.current?.version.version === mv.version) return;
      try {
        const stored = await this.registry.load(mv);
        const model = loadArtifact(stored.artifact);
        const lastEventSeq = typeof stored.extra.lastEventSeq === 'number' ? stored.extra.lastEventSeq : 0;
        this.current = new ServingModel(mv, model, stored.userIds, stored.itemIds, lastEventSeq);
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
    await next;
  }
}
