/**
 * Every serving replica follows the change log with a private consumer: catalog changes update its
 * catalog view, promotions and rollbacks swap its champion, erasures drop the user from every model in
 * memory (index, id and factor rows; the registry rewrites the stored artifacts), experiment
 * changes re-route users and load or release the experiments' models. This is how a change made through
 * any replica, or by a worker, reaches every replica.
 */
import type { Item } from '../domain/types.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { ChangeLog, EntityChange, LogConsumer, LogRecord } from '../storage/ports.ts';
import type { CatalogView } from './catalog.ts';
import type { ChampionHolder } from './champion.ts';
import type { ExperimentRouter } from './experiments.ts';
import type { ModelPool } from './model-pool.ts';

/** What the follower keeps current besides the catalog and the champion (both optional). */
export interface FollowerExtras {
  /** Running experiments (re-routes users on `{kind: 'experiment'}` changes). */
  experiments?: Pick<ExperimentRouter, 'apply' | 'versions'>;
  /** Experiment models: re-synced after experiment or champion changes; erased users dropped. */
  pool?: Pick<ModelPool, 'sync' | 'models'>;
  /** Offers (src/offers/book.ts): catalog changes are applied to it as to the catalog view. */
  offers?: { upsert(items: readonly Item[]): void };
}

export class ServingFollower {
  private consumer: LogConsumer | null = null;

  constructor(
    private readonly changeLog: ChangeLog,
    private readonly catalog: CatalogView,
    private readonly champion: ChampionHolder,
    private readonly logger: Logger,
    private readonly extras: FollowerExtras = {},
  ) {}

  /** Follows changes after `after` (the position the catalog view was loaded at). */
  start(after: number): void {
    this.consumer = this.changeLog.consume({ after, batchSize: 1000 }, (batch) => this.apply(batch));
  }

  get position(): number {
    return this.consumer?.position ?? 0;
  }

  async caughtUp(seq: number): Promise<void> {
    if (this.consumer) await this.consumer.caughtUp(seq);
  }

  async close(): Promise<void> {
    await this.consumer?.close();
    this.consumer = null;
  }

  private async apply(batch: LogRecord<EntityChange>[]): Promise<void> {
    let champion: string | null = null;
    let experiments = false;
    const { experiments: router, pool } = this.extras;
    for (const { value } of batch) {
      if (value.kind === 'items') {
        this.catalog.upsert(value.items);
        this.extras.offers?.upsert(value.items);
      } else if (value.kind === 'champion') champion = value.version;
      else if (value.kind === 'erase') {
        this.champion.get()?.forgetUser(value.userId);
        for (const sm of pool?.models() ?? []) sm.forgetUser(value.userId);
      } else if (value.kind === 'experiment' && router) {
        // Applied in order at once: a stopped experiment routes nobody from here on.
        router.apply(value.experiment);
        experiments = true;
      }
    }
    // Only the newest promotion of a batch matters; loading it is awaited so the position moves only
    // once the replica serves it (a failed load is logged and leaves the current champion).
    if (champion !== null) {
      this.logger.debug({ version: champion }, 'champion announced');
      await this.champion.useVersion(champion);
    }
    // Experiment models likewise are in memory once the position moves (a failed load is remembered
    // by the pool and its arm served by the champion). A new champion may have been, or may replace,
    // a version an arm names: the pool re-syncs on that too.
    if (router && pool && (experiments || champion !== null)) await pool.sync(router.versions());
  }
}
