/**
 * The ingestion and catalog contracts (implemented in service.ts). Services speak domain types
 * (camelCase); the HTTP layer maps them to the snake_case wire format. Every call carries the
 * caller's RequestContext.
 */
import type { RequestContext } from '../domain/context.ts';
import type { Item, User } from '../domain/types.ts';

/** Per-event outcome of an ingestion call, in request order. */
export interface EventOutcome {
  index: number;
  eventId: string | null;
  status: 'accepted' | 'duplicate' | 'rejected';
  /** For rejected events: stable code and the offending field (e.g. `user_id`). */
  error?: { code: string; field: string; message: string };
}

export interface IngestService {
  /**
   * Validates each raw event on its own, makes the valid ones durable in the event log atomically and
   * reports every event. Resolves only once accepted events are durable (acknowledged = never lost).
   * Throws CAIRN_BATCH_TOO_LARGE above the configured batch size. Never throws for a bad event.
   */
  ingestEvents(ctx: RequestContext, raw: unknown[]): Promise<EventOutcome[]>;
}

export interface ItemOutcome {
  index: number;
  itemId: string | null;
  status: 'upserted' | 'rejected';
  error?: { code: string; field: string; message: string };
}

export interface CatalogService {
  /** Validates `raw` (wire format: categories, attributes, available, created_at) and upserts; throws CAIRN_VALIDATION. */
  putItem(ctx: RequestContext, id: string, raw: unknown): Promise<Item>;
  /** Batch upsert with per-item results; valid items are stored even when others are rejected. */
  putItems(ctx: RequestContext, raw: unknown[]): Promise<ItemOutcome[]>;
  /** Throws CAIRN_ITEM_NOT_FOUND. */
  getItem(ctx: RequestContext, id: string): Promise<Item>;
  /** Validates `raw` (attributes, segments, opt_out) and upserts; throws CAIRN_VALIDATION. */
  putUser(ctx: RequestContext, id: string, raw: unknown): Promise<User>;
  /** Throws CAIRN_USER_NOT_FOUND. */
  getUser(ctx: RequestContext, id: string): Promise<User>;
  /** GDPR erase of the user and everything stored about them; throws CAIRN_USER_NOT_FOUND when nothing was stored. */
  eraseUser(ctx: RequestContext, id: string): Promise<void>;
}
