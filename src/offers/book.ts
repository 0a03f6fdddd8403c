/**
 * This replica's offers: the catalog items whose attributes carry a valid `offer`, loaded at start
 * from the online state's catalog and kept current by the serving follower (`items` change records),
 * like the catalog view, so a decision never waits on a round trip for the offer list.
 *
 * An item stored before offers were validated may carry an `offer` that does not pass today's rules:
 * it is not an offer (logged once per change), never half-read.
 */
import type { Item } from '../domain/types.ts';
import { parseIsoTime } from '../ingest/validate.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { OfferEntry } from './policy.ts';
import { validateOffer } from './validate.ts';

export class OfferBook {
  private readonly entries = new Map<string, OfferEntry>();
  /** Ids in id order, rebuilt lazily after a change (decisions iterate offers in a stable order). */
  private list: OfferEntry[] | null = null;

  constructor(private readonly logger?: Pick<Logger, 'warn'>) {}

  /** Applies catalog changes: an item with a valid offer is (re)entered, any other item leaves the book. */
  upsert(items: readonly Item[]): void {
    for (const item of items) {
      const raw = item.attributes.offer;
      if (raw === undefined) {
        if (this.entries.delete(item.id)) this.list = null;
        continue;
      }
      const parsed = validateOffer(raw, parseIsoTime);
      if (!parsed.ok) {
        if (this.entries.delete(item.id)) this.list = null;
        this.logger?.warn(
          { item_id: item.id, field: parsed.issues[0].field, message: parsed.issues[0].message },
          'stored item carries an invalid offer; it is not offered',
        );
        continue;
      }
      const title = item.attributes.title;
      this.entries.set(item.id, {
        itemId: item.id,
        offer: parsed.offer,
        available: item.available,
        categories: item.categories,
        title: typeof title === 'string' && title.length > 0 ? title : null,
      });
      this.list = null;
    }
  }

  has(itemId: string): boolean {
    return this.entries.has(itemId);
  }

  get(itemId: string): OfferEntry | undefined {
    return this.entries.get(itemId);
  }

  get size(): number {
    return this.entries.size;
  }

  /** Every offer, by item id. */
  all(): readonly OfferEntry[] {
    this.list ??= [...this.entries.values()].sort((a, b) =>
      a.itemId < b.itemId ? -1 : a.itemId > b.itemId ? 1 : 0,
    );
    return this.list;
  }
}
