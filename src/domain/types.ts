/**
 * Pure domain types shared by every layer. Identifiers are opaque strings supplied by the client.
 * Times are milliseconds since the Unix epoch.
 */

export type JsonObject = Record<string, unknown>;

export interface User {
  id: string;
  attributes: JsonObject;
  segments: string[];
  /** GDPR opt-out of personalization: such a user only ever gets non-personalized answers. */
  optOut: boolean;
  createdAt: number;
  updatedAt: number;
}

export interface Item {
  id: string;
  categories: string[];
  /** Free attributes, e.g. `price`, `brand`, `title`. */
  attributes: JsonObject;
  /** Unavailable items (out of stock, withdrawn) are never recommended. */
  available: boolean;
  createdAt: number;
  updatedAt: number;
}

/** A behaviour event as stored. `seq` is assigned by the store (monotonic insertion order). */
export interface CairnEvent {
  eventId: string;
  userId: string;
  itemId: string;
  type: string;
  value: number | null;
  timestamp: number;
  context: JsonObject | null;
}

export interface StoredEvent extends CairnEvent {
  seq: number;
}

/** How one event type counts in training and serving (configurable). */
export interface EventTypeSpec {
  /** Training weight; for `useValue` types the weight is `weight * value`. */
  weight: number;
  /** Weight is multiplied by the event's value (e.g. ratings). */
  useValue?: boolean;
  /** A negative type excludes the item for that user and is not a positive interaction. */
  negative?: boolean;
  /** For `useValue` types: values below this are not counted as positive interactions. */
  minValue?: number;
}

export type ModelStatus = 'training' | 'ready' | 'failed' | 'champion' | 'retired';

export interface ModelVersion {
  version: string;
  algorithm: string;
  params: JsonObject;
  status: ModelStatus;
  /** Size of the data the model was fitted on. */
  trainingData: { users: number; items: number; interactions: number; events: number; lastEventSeq: number };
  /** Offline metrics from the training pipeline's holdout evaluation, e.g. `ndcg@10`. */
  metrics: Record<string, number>;
  trainSeconds: number;
  /**
   * Artifact key in the ArtifactStore (`models/<version>.cairn`). The field keeps its old name for
   * compatibility; rows written by earlier versions hold an absolute file path, which still loads.
   */
  artifactPath: string;
  checksum: string;
  configHash: string;
  /** Version this one was promoted over (lineage for rollback). */
  parentVersion: string | null;
  createdAt: number;
  promotedAt: number | null;
  error: string | null;
}

/** A request to train a model (the payload of a `train` job). */
export interface TrainRequest {
  algorithm?: string;
  params?: Record<string, number | string | boolean>;
  /** Promote when the gates pass (default true). */
  promote?: boolean;
}

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed';

export interface Job {
  id: string;
  name: string;
  payload: JsonObject;
  status: JobStatus;
  progress: number;
  result: JsonObject | null;
  error: string | null;
  createdAt: number;
  updatedAt: number;
  /** Attempts started so far (a claim starts one). */
  attempts: number;
  maxAttempts: number;
  /** Worker holding the job while it runs (null otherwise). */
  owner: string | null;
  /** Epoch ms the owner's lease lasts until (null when not running). */
  leaseUntil: number | null;
  /** Epoch ms from which a queued job may be claimed (retry backoff). */
  runAt: number;
  /** At most one unfinished job per key (e.g. one training per trigger). */
  dedupeKey: string | null;
}

export type RecommendationSource = 'personalized' | 'fallback';

export interface RecommendedItem {
  itemId: string;
  score: number;
  reason: string;
}

export interface RecommendationResult {
  requestId: string;
  userId: string | null;
  modelVersion: string | null;
  source: RecommendationSource;
  /** Which fallback answered and why; null when personalized. */
  fallbackReason: string | null;
  /** True when a dependency was unavailable and the answer is worse than it should be. */
  degraded: boolean;
  items: RecommendedItem[];
}
