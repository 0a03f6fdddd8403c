/**
 * Every serving replica follows the change log with a private consumer: catalog changes update its
 * catalog view, promotions and rollbacks swap its champion, erasures drop the user from the champion's
 * user index (their factors are not used again; the next training forgets them entirely). This is how a
 * change made through any replica, or by a worker, reaches every replica.
 */
import type { Logger } from '../monitoring/logger.ts';
import type { ChangeLog, EntityChange, LogConsumer, LogRecord } from '../storage/ports.ts';
import type { CatalogView } from './catalog.ts';
import type { ChampionHolder } from './champion.ts';

export class ServingFollower {
  private consumer: LogConsumer | null = null;

  constructor(
    private readonly changeLog: ChangeLog,
    private readonly catalog: CatalogView,
    private readonly champion: ChampionHolder,
    private readonly logger: Logger,
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
    for (const { value } of batch) {
      if (value.kind === 'items') this.catalog.upsert(value.items);
      else if (value.kind === 'champion') champion = value.version;
      else if (value.kind === 'erase') this.champion.get()?.userIndex.delete(value.userId);
    }
    // Only the newest promotion of a batch matters; loading it is awaited so the position moves only
    // once the replica serves it (a failed load is logged and leaves the current champion).
    if (champion !== null) {
      this.logger.debug({ version: champion }, 'champion announced');
      await this.champion.useVersion(champion);
    }
  }
}
