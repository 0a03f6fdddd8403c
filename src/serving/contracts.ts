/** The serving contract (implemented by recommender.ts): personal, session, similar and popular lists. */
import type { RequestContext } from '../domain/context.ts';
import type { ItemField, RecommendationResult, RecommendedItem } from '../domain/types.ts';

/** The catalog fields `fields=` may ask for, in the order they are documented. */
export const ITEM_FIELDS: readonly ItemField[] = ['title', 'categories', 'price', 'attributes'];

/** What every list request may add to its items. */
export interface AnswerOptions {
  /** Adds `explanation` to every item (what the score is made of, or the list it came from). */
  explain?: boolean;
  /**
   * Catalog fields to put on every item (ITEM_FIELDS); an unknown name is refused with
   * CAIRN_VALIDATION, field `fields`.
   */
  fields?: string[];
}

export interface RecommendRequest extends AnswerOptions {
  userId: string;
  k?: number;
  category?: string;
  /** Item ids never to return in this answer (e.g. already on the page). */
  exclude?: string[];
  /** The caller's session id: the unit of experiments that assign by session (else the user is). */
  sessionId?: string;
}

/**
 * An anonymous session: the items it interacted with (oldest first, newest last) stand in for a user's
 * history. They are never returned.
 */
export interface SessionRequest extends AnswerOptions {
  items: string[];
  k?: number;
  category?: string;
  exclude?: string[];
  sessionId?: string;
}

export interface ListOptions extends AnswerOptions {
  k?: number;
  category?: string;
}

export interface SimilarResult {
  requestId: string;
  itemId: string;
  modelVersion: string | null;
  source: 'personalized' | 'fallback';
  fallbackReason: string | null;
  degraded: boolean;
  items: RecommendedItem[];
}

/** Popular items are not relative to an item: same shape as SimilarResult with `itemId: null`. */
export type PopularResult = Omit<SimilarResult, 'itemId'> & { itemId: null };

export interface RecommendationService {
  /** Always answers (fallback chain); throws only CAIRN_VALIDATION for bad k/category/fields. */
  recommend(ctx: RequestContext, request: RecommendRequest): Promise<RecommendationResult>;
  /**
   * Answers for an anonymous session (`userId: null`): the champion folds the session's items in as a
   * history (`source: 'session'`), else the fallback chain on those items (`source: 'fallback'`).
   * Throws only CAIRN_VALIDATION (bad items, k, category or fields).
   */
  recommendSession(ctx: RequestContext, request: SessionRequest): Promise<RecommendationResult>;
  /** Throws CAIRN_ITEM_NOT_FOUND for an unknown item. */
  similar(ctx: RequestContext, itemId: string, options: ListOptions): Promise<SimilarResult>;
  popular(ctx: RequestContext, options: ListOptions): Promise<PopularResult>;
}
