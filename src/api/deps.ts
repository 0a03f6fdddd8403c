/**
 * What the HTTP layer needs from the rest of Cairn. `buildApp(deps)` receives these already built by a
 * composition root (src/main), so tests can build the app around a real store with `app.inject()`.
 * Services speak domain types (camelCase); routes map them to the snake_case wire format.
 */
import type { Config } from '../config/load.ts';
import type { Item, Job, ModelVersion, RecommendationResult, User } from '../domain/types.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { Metrics } from '../monitoring/metrics.ts';

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
   * Validates each raw event on its own, stores the valid ones atomically and reports every event.
   * Throws CAIRN_BATCH_TOO_LARGE above the configured batch size. Never throws for a bad event.
   */
  ingestEvents(raw: unknown[]): Promise<EventOutcome[]>;
}

export interface ItemOutcome {
  index: number;
  itemId: string | null;
  status: 'upserted' | 'rejected';
  error?: { code: string; field: string; message: string };
}

export interface CatalogService {
  /** Validates `raw` (wire format: categories, attributes, available, created_at) and upserts; throws CAIRN_VALIDATION. */
  putItem(id: string, raw: unknown): Promise<Item>;
  /** Batch upsert with per-item results; valid items are stored even when others are rejected. */
  putItems(raw: unknown[]): Promise<ItemOutcome[]>;
  /** Throws CAIRN_ITEM_NOT_FOUND. */
  getItem(id: string): Promise<Item>;
  /** Validates `raw` (attributes, segments, opt_out) and upserts; throws CAIRN_VALIDATION. */
  putUser(id: string, raw: unknown): Promise<User>;
  /** Throws CAIRN_USER_NOT_FOUND. */
  getUser(id: string): Promise<User>;
  /** GDPR erase of the user and everything stored about them; throws CAIRN_USER_NOT_FOUND when nothing was stored. */
  eraseUser(id: string): Promise<void>;
}

export interface RecommendRequest {
  userId: string;
  k?: number;
  category?: string;
  /** Item ids never to return in this answer (e.g. already on the page). */
  exclude?: string[];
  explain?: boolean;
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
  recommend(request: RecommendRequest): Promise<RecommendationResult>;
  /** Throws CAIRN_ITEM_NOT_FOUND for an unknown item. */
  similar(itemId: string, options: { k?: number; category?: string }): Promise<SimilarResult>;
  popular(options: { k?: number; category?: string }): Promise<PopularResult>;
}

export interface TrainRequest {
  algorithm?: string;
  params?: Record<string, number | string | boolean>;
  /** Promote when the gates pass (default true). */
  promote?: boolean;
}

export interface ModelService {
  list(limit?: number): Promise<ModelVersion[]>;
  /** Queues a training job; throws CAIRN_VALIDATION for an unknown algorithm or bad params. */
  train(request: TrainRequest): Promise<Job>;
  /** Throws CAIRN_MODEL_NOT_FOUND or CAIRN_MODEL_NOT_PROMOTABLE. */
  promote(version: string): Promise<ModelVersion>;
  /** Makes the previous champion the champion again; throws CAIRN_NO_PREVIOUS_MODEL. */
  rollback(): Promise<ModelVersion>;
}

export interface JobService {
  /** Throws CAIRN_JOB_NOT_FOUND. */
  get(id: string): Promise<Job>;
}

export interface HealthCheck {
  ok: boolean;
  detail?: string;
}

export interface HealthService {
  /** Ready means: store reachable and a recommendation can be answered (model or fallback). */
  ready(): Promise<{ ready: boolean; checks: Record<string, HealthCheck> }>;
}

export interface AppDeps {
  config: Readonly<Config>;
  logger: Logger;
  metrics: Metrics;
  ingest: IngestService;
  catalog: CatalogService;
  recommendations: RecommendationService;
  models: ModelService;
  jobs: JobService;
  health: HealthService;
}
