/**
 * Pure domain types shared by every layer. Identifiers are opaque strings supplied by the client.
 * Times are milliseconds since the Unix epoch.
 */
import type { Scope } from './context.ts';

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
  /**
   * Events of this type with a value below this are rejected at ingestion (CAIRN_VALIDATION, field
   * `value`); for `useValue` types, a stored value below it (accepted earlier) is not a positive interaction.
   */
  minValue?: number;
  /** Events of this type with a value above this are rejected at ingestion (e.g. a 0–10 rating scale). */
  maxValue?: number;
  /** The item was only shown (an impression): not counted as seen by the user. */
  shownOnly?: boolean;
}

/**
 * `rejected`: trained and stored but failed its promotion gate (or was rolled back by a canary guard);
 * promoting it needs an explicit `force`, which is recorded in its lineage.
 */
export type ModelStatus = 'training' | 'ready' | 'failed' | 'champion' | 'retired' | 'rejected';

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
  /** Where the model came from and what was decided about it (null on rows written before lineage). */
  lineage: ModelLineage | null;
}

/** What started a training. */
export type TrainTriggerKind = 'manual' | 'schedule' | 'data_volume' | 'cli' | 'demo';

export interface TrainTrigger {
  kind: TrainTriggerKind;
  /** The trigger's identity (e.g. the cron fire time, or the event watermark crossed); one job per key. */
  key: string | null;
}

/** One check of a promotion gate. */
export interface GateCheck {
  /** e.g. `ndcg@10`, `recall@10`, `coverage@10`, `finite_scores`, `not_popularity`, `users_scored`. */
  name: string;
  passed: boolean;
  detail: string;
  challenger?: number;
  champion?: number;
  /** Allowed relative shortfall against the champion (0.02 = 2 % worse still passes). */
  tolerance?: number;
}

export interface GateRecord {
  passed: boolean;
  /** One-line summary: the first failed check, or why it passed. */
  reason: string;
  /**
   * `fresh`: interactions newer than the champion's training data, which neither model saw;
   * `random`: a random per-user holdout (no champion, or too few fresh interactions) on which the
   * champion's configuration was refitted; `none`: too little data to hold anything out.
   */
  holdout: 'fresh' | 'random' | 'none';
  holdoutUsers: number;
  holdoutInteractions: number;
  /** The champion compared against (null for a first model). */
  champion: string | null;
  challengerMetrics: Record<string, number>;
  championMetrics: Record<string, number>;
  checks: GateCheck[];
}

/** Reference distributions of the training snapshot, against which live drift (PSI) is measured. */
export interface DriftReference {
  /** Share of events per event type. */
  eventTypes: Record<string, number>;
  /**
   * Items ranked by training popularity are cut into buckets of equal item count (best first);
   * `itemPopularity[b]` is the share of the snapshot's positive interactions on bucket b's items, and
   * a last bucket stands for items the snapshot never saw (near zero in the reference). Each item's
   * bucket is stored in the model artifact's `extra.popularityBuckets` (aligned with its item ids).
   */
  itemPopularity: number[];
  /** Upper edges of the score histogram (quantiles of the reference scores) and the share per bin. */
  scoreEdges: number[];
  scoreShares: number[];
}

export interface ModelAuditEntry {
  at: number;
  action: 'registered' | 'promoted' | 'force_promoted' | 'rejected' | 'rolled_back' | 'canary_rolled_back';
  /** Principal id (`system` for automatic decisions). */
  by: string;
  detail: string;
}

export interface ModelLineage {
  trigger: TrainTrigger & { requestedBy: string | null; jobId: string | null };
  data: {
    /** Event-log watermark of the training snapshot (events with seq ≤ it). */
    lastEventSeq: number;
    newestEventAt: number;
    /** sha256 of the training matrix (user ids, item ids, entries): same data ⇒ same hash. */
    trainingSetHash: string;
  };
  code: { version: string; commit: string | null };
  gate: GateRecord | null;
  drift: DriftReference | null;
  audit: ModelAuditEntry[];
  /**
   * The self-tuning search that chose the model's parameters (`training.tuneTrials` > 0): every trial
   * in order with its validation value (null: the trial failed), the metric, the best value, the
   * search's wall time, and the champion version whose parameters were tried first (null: none).
   */
  tuning?: ModelTuning;
}

/** A hyper-parameter search recorded in a model's lineage. */
export interface ModelTuning {
  trials: { params: Record<string, number | string | boolean>; value: number | null }[];
  /** `name@k` on the validation part carved from the training part. */
  metric: string;
  best: number;
  seconds: number;
  warmStart: string | null;
}

/** A request to train a model (the payload of a `train` job). */
export interface TrainRequest {
  algorithm?: string;
  params?: Record<string, number | string | boolean>;
  /** Promote when the gates pass (default true). */
  promote?: boolean;
  /** What started it (default manual). */
  trigger?: TrainTrigger;
  /** Principal id of whoever asked (set by the model service). */
  requested_by?: string;
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

/** `session`: the champion answered for an anonymous session from the items it was sent. */
export type RecommendationSource = 'personalized' | 'fallback' | 'session';

/** Catalog fields a client may ask to have on each recommended item (`fields=`). */
export type ItemField = 'title' | 'categories' | 'price' | 'attributes';

/**
 * Why one item is in an answer (`explain=true`). `contributions` are the history (or session) items
 * behind a model's score; `list` names the list a fallback item came from; `features` are per-feature
 * contributions of a ranker (cold-start ranking today, the trained ranker later).
 */
export interface ItemExplanation {
  /** The link of the answer chain that produced the item. */
  link:
    'personal' | 'session' | 'similar_to_recent' | 'similar' | 'category_popular' | 'popular' | 'cold_start';
  /** Algorithm of the model behind the score; null for lists that are no model's. */
  model: string | null;
  /** History items by their share of the item's positive evidence, largest first (at most 10 listed). */
  contributions: { itemId: string; weight: number }[];
  /** Share of the evidence from history items not listed (contributions' weights + this = 1 when any). */
  otherWeight: number;
  /** The list a fallback item came from: `popular` or `category:<name>`. */
  list?: string;
  /** A ranker's per-feature contributions; with `bias` they sum to the item's ranking score. */
  features?: { name: string; value: number | null; contribution: number }[];
  bias?: number;
}

export interface RecommendedItem {
  itemId: string;
  score: number;
  reason: string;
  /** Present when asked for with `fields=` (null when the item has no such value). */
  title?: string | null;
  categories?: readonly string[];
  price?: number | null;
  attributes?: JsonObject;
  /** Present with `explain=true`. */
  explanation?: ItemExplanation;
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
  /** The experiment arm that served this answer (null when no experiment runs). */
  experiment?: { id: string; variant: string } | null;
}

/* ------------------------------------------------------------------------------------------------
 * Experiments, served log and feedback.
 * ---------------------------------------------------------------------------------------------- */

export interface ExperimentVariant {
  name: string;
  /** Relative share of users (any non-negative numbers; normalised over the variants). */
  weight: number;
  /** Serve this model version (null: the champion). */
  modelVersion: string | null;
  /** Algorithm named at creation; resolved to its newest servable version into `modelVersion`. */
  algorithm: string | null;
  /** Second-stage ranker on/off (null: as configured). */
  ranker: boolean | null;
}

/**
 * `ab`: users split by weight between variants, every variant served. `canary`: an `ab` whose
 * challenger arm is watched by a guard that stops it (and rejects the version) when its online metric
 * falls below the control's by `guard.margin`. `shadow`: the champion is served to everyone; the
 * variant's model also scores a share of requests (`weight` % of them), logged and compared, never served.
 */
export type ExperimentKind = 'ab' | 'canary' | 'shadow';
export type ExperimentStatus = 'running' | 'stopped' | 'rolled_back';

export interface Experiment {
  id: string;
  kind: ExperimentKind;
  status: ExperimentStatus;
  variants: ExperimentVariant[];
  /** Hash users (default) or sessions (the request's `session_id`) into variants. */
  unit: 'user' | 'session';
  guard: { metric: 'ctr' | 'conversion_rate'; margin: number; minImpressions: number } | null;
  createdAt: number;
  createdBy: string;
  stoppedAt: number | null;
  stopReason: string | null;
}

export interface ServedItem {
  itemId: string;
  /** 0-based position in the answer. */
  position: number;
  score: number;
}

/** The served log's endpoint of user recommendations (the answers a ranker learns from). */
export const RECOMMENDATIONS_ENDPOINT = 'recommendations';

/** One answer as served (mode `served`) or as the shadow model would have answered (`shadow`). */
export interface ServedRecord {
  requestId: string;
  userId: string;
  mode: 'served' | 'shadow';
  /** `recommendations` (RECOMMENDATIONS_ENDPOINT) or `next_best_offer`. */
  endpoint: string;
  experimentId: string | null;
  variant: string | null;
  modelVersion: string | null;
  source: RecommendationSource;
  items: ServedItem[];
  at: number;
}

export type FeedbackType = 'impression' | 'click' | 'conversion';

export interface FeedbackRecord {
  requestId: string;
  itemId: string;
  type: FeedbackType;
  /** Revenue of a conversion (optional). */
  value: number | null;
  at: number;
}

/** Per-variant totals an experiment's results are computed from. */
export interface VariantTotals {
  variant: string;
  /** Distinct units (users) served under the variant. */
  users: number;
  /** Served items counted as seen (impression feedback, or every served item of a request without any). */
  impressions: number;
  clicks: number;
  conversions: number;
  /** Users with at least one click / conversion. */
  clickingUsers: number;
  convertingUsers: number;
  /** Sum and sum of squares over users of each user's revenue (for a mean with an interval). */
  revenue: number;
  revenueSquares: number;
}

/* ------------------------------------------------------------------------------------------------
 * Access control and audit.
 * ---------------------------------------------------------------------------------------------- */

/** An API key as stored: never the secret, only its SHA-256 (hex). */
export interface ApiKeyRecord {
  /** Public part of the key (`ck_…`), shown in lists and logs; the secret follows it in the token. */
  id: string;
  secretHash: string;
  tenant: string;
  scopes: Scope[];
  /** Operator's label ("checkout-service"). */
  name: string;
  createdAt: number;
  createdBy: string;
  revokedAt: number | null;
  revokedBy: string | null;
}

/** One security-relevant action. `subject` never holds a user id in clear (a keyed hash instead). */
export interface AuditRecord {
  seq: number;
  at: number;
  action: 'key_created' | 'key_revoked' | 'user_erased';
  /** Principal id that acted (API key id, `cli`, `anonymous`, `system`). */
  principal: string;
  subject: string;
  details: Record<string, unknown>;
}
