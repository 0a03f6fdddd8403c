/**
 * This replica's in-memory view of the catalog that serving filters with (availability, categories,
 * titles): loaded at start from the online state (which the projector keeps current) and then kept
 * current by the change-log follower, so business rules never wait on a round trip. Items known only
 * from events (never PUT) count as available, uncategorised.
 */
import type { Item } from '../domain/types.ts';
import type { OnlineState } from '../storage/ports.ts';

interface ItemMeta {
  available: boolean;
  categories: readonly string[];
  title: string | null;
}

export class CatalogView {
  private readonly items = new Map<string, ItemMeta>();
  /** Increments on every change, so derived masks know when to rebuild. */
  version = 0;

  async load(online: Pick<OnlineState, 'items'>, pageSize = 5000): Promise<void> {
    let after: string | undefined;
    for (;;) {
      const page = await online.items(after, pageSize);
      this.upsert(page);
      if (page.length < pageSize) break;
      after = page[page.length - 1].id;
    }
  }

  upsert(items: readonly Item[]): void {
    for (const item of items) {
      const title = item.attributes.title;
      this.items.set(item.id, {
        available: item.available,
        categories: item.categories,
        title: typeof title === 'string' && title.length > 0 ? title : null,
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

  /** A human label for reasons: the title when known, else the id. */
  label(id: string): string {
    const title = this.items.get(id)?.title;
    return title ? `“${title}”` : id;
  }

  /** Whether any item carries this category (to tell an unknown category from an empty one). */
  hasCategory(category: string): boolean {
    for (const meta of this.items.values()) if (meta.categories.includes(category)) return true;
    return false;
  }
}
