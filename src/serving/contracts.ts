/** The serving contract (implemented by recommender.ts): personal, similar and popular lists. */
import type { RequestContext } from '../domain/context.ts';
import type { RecommendationResult } from '../domain/types.ts';

export interface RecommendRequest {
  userId: string;
  k?: number;
  category?: string;
  /** Item ids never to return in this answer (e.g. already on the page). */
  exclude?: string[];
  explain?: boolean;
  /** The caller's session id: the unit of experiments that assign by session (else the user is). */
  sessionId?: string;
}

export interface SimilarResult {
  requestId: string;
  itemId: string;
  modelVersion: string | null;
  source: 'personalized' | 'fallback';
  fallbackReason: string | null;
  degraded: boolean;
  items: { itemId: string; score: number; reason: string }[];
}

/** Popular items are not relative to an item: same shape as SimilarResult with `itemId: null`. */
export type PopularResult = Omit<SimilarResult, 'itemId'> & { itemId: null };

export interface RecommendationService {
  /** Always answers (fallback chain); throws only CAIRN_VALIDATION for bad k/category. */
  recommend(ctx: RequestContext, request: RecommendRequest): Promise<RecommendationResult>;
  /** Throws CAIRN_ITEM_NOT_FOUND for an unknown item. */
  similar(
    ctx: RequestContext,
    itemId: string,
    options: { k?: number; category?: string },
  ): Promise<SimilarResult>;
  popular(ctx: RequestContext, options: { k?: number; category?: string }): Promise<PopularResult>;
}
