/**
 * This replica's in-memory view of the catalog that serving filters with (availability, categories,
 * titles) and answers with (`fields=`: title, categories, price, attributes): loaded at start from the online state (which the projector keeps current) and then kept
 * current by the change-log follower, so business rules never wait on a round trip. Items known only
 * from events (never PUT) count as available, uncategorised.
 */
import type { Item, ItemField, JsonObject } from '../domain/types.ts';
import type { ItemMeta as RankingItemMeta } from '../features/definitions.ts';
import { itemMetaOf } from '../features/ranking.ts';
import type { OnlineState } from '../storage/ports.ts';

interface ItemMeta {
  available: boolean;
  categories: readonly string[];
  title: string | null;
  price: number | null;
  /**
   * The attributes object as stored (the item's own, not a copy): what `fields=attributes` answers and
   * cold-start matching reads. Ingestion bounds it (64 KiB per item), and an item with no attributes
   * shares one empty object.
   */
  attributes: Readonly<JsonObject>;
  /** What the ranker's features read (features/ranking.ts `itemMetaOf`, as training reads the catalog). */
  ranking: RankingItemMeta;
}

const NO_ATTRIBUTES: Readonly<JsonObject> = Object.freeze({});

/** The fields of one item a client asked for (`fields=`); absent ones are null (never omitted). */
export interface ItemFields {
  title?: string | null;
  categories?: readonly string[];
  price?: number | null;
  attributes?: Readonly<JsonObject>;
}

export class CatalogView {
  private readonly items = new Map<string, ItemMeta>();
  /** Increments on every change, so derived masks know when to rebuild. */
  version = 0;

  /**
   * Loads the catalog from the online state in pages; `also` sees every page too (views kept beside this
   * one, e.g. the offer book, are filled by the same scan).
   */
  async load(
    online: Pick<OnlineState, 'items'>,
    pageSize = 5000,
    also?: (page: readonly Item[]) => void,
  ): Promise<void> {
    let after: string | undefined;
    for (;;) {
      const page = await online.items(after, pageSize);
      this.upsert(page);
      also?.(page);
      if (page.length < pageSize) break;
      after = page[page.length - 1].id;
    }
  }

  upsert(items: readonly Item[]): void {
    for (const item of items) {
      const { title, price } = item.attributes;
      this.items.set(item.id, {
        available: item.available,
        categories: item.categories,
        title: typeof title === 'string' && title.length > 0 ? title : null,
        price: typeof price === 'number' && Number.isFinite(price) ? price : null,
        attributes: Object.keys(item.attributes).length > 0 ? item.attributes : NO_ATTRIBUTES,
        ranking: itemMetaOf(item),
      });
    }
    if (items.length > 0) this.version++;
  }

  has(id: string): boolean {
    return this.items.has(id);
  }

  isAvailable(id: string): boolean {
    return this.items.get(id)?.available ?? true;
  }

  categories(id: string): readonly string[] {
    return this.items.get(id)?.categories ?? [];
  }

  inCategory(id: string, category: string): boolean {
    return this.items.get(id)?.categories.includes(category) ?? false;
  }

  /** The item as the ranking features see it (null for items known only from events). */
  rankingMeta(id: string): RankingItemMeta | null {
    return this.items.get(id)?.ranking ?? null;
  }

  /** The item's attributes as stored (empty for items known only from events). */
  attributes(id: string): Readonly<JsonObject> {
    return this.items.get(id)?.attributes ?? NO_ATTRIBUTES;
  }

  /**
   * The asked catalog fields of one item; an item not in the catalog (known from events only) has null
   * title and price, no categories and no attributes.
   */
  fields(id: string, fields: readonly ItemField[]): ItemFields {
    const meta = this.items.get(id);
    const out: ItemFields = {};
    for (const f of fields) {
      if (f === 'title') out.title = meta?.title ?? null;
      else if (f === 'categories') out.categories = meta?.categories ?? [];
      else if (f === 'price') out.price = meta?.price ?? null;
      else out.attributes = meta?.attributes ?? NO_ATTRIBUTES;
    }
    return out;
  }

  /** A human label for reasons: the title when known, else the id. */
  label(id: string): string {
    const title = this.items.get(id)?.title;
    return title ? `“${title}”` : id;
  }

  /** Every catalog item's content tokens (features/content-retriever.ts), for the content index. */
  *contentEntries(): Iterable<{ id: string; tokens: readonly string[] }> {
    for (const [id, meta] of this.items) yield { id, tokens: meta.ranking.tokens ?? [] };
  }

  /** Whether any item carries this category (to tell an unknown category from an empty one). */
  hasCategory(category: string): boolean {
    for (const meta of this.items.values()) if (meta.categories.includes(category)) return true;
    return false;
  }
}
