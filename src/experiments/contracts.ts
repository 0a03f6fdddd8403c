/**
 * The experiments contract (implemented by service.ts): A/B tests, canaries and shadow runs, the
 * feedback that attributes clicks and conversions to served answers, and the results with intervals.
 */
import type { RequestContext } from '../domain/context.ts';
import type { ErrorCode } from '../errors/errors.ts';
import type { Experiment, ExperimentKind, FeedbackType } from '../domain/types.ts';

export interface VariantRequest {
  name: string;
  weight: number;
  modelVersion?: string;
  algorithm?: string;
  ranker?: boolean;
}

export interface CreateExperimentRequest {
  id: string;
  kind?: ExperimentKind;
  unit?: Experiment['unit'];
  variants: VariantRequest[];
  guard?: Partial<NonNullable<Experiment['guard']>>;
}

/** A rate or mean with its 95 % interval. */
export interface Estimate {
  value: number;
  low: number;
  high: number;
}

export interface VariantResult {
  name: string;
  users: number;
  impressions: number;
  clicks: number;
  conversions: number;
  /** Clicks / impressions (Wilson interval). */
  ctr: Estimate;
  /**
   * Converting users / users (Wilson interval): per user, the unit of randomization, so the
   * observations are independent (per-impression rates would understate the variance).
   */
  conversionRate: Estimate;
  /** Mean over users of each user's conversion value (normal interval). */
  revenuePerUser: Estimate;
  /**
   * Relative difference to the control (first variant) of the conversion rate; null for the control
   * (and when either arm has no users yet).
   */
  liftVsControl: Estimate | null;
}

/**
 * How a shadow variant compared with what was served, over the newest shadow answers (a bounded
 * sample: `requests` of them) whose served answer is in the log.
 */
export interface ShadowResult {
  variant: string;
  modelVersion: string | null;
  /** Shadow answers examined (the newest ones, at most the sample size). */
  requests: number;
  /** Of those, how many had their served answer logged (the rest cannot be compared). */
  compared: number;
  /** Distinct users among the compared requests. */
  users: number;
  /** What the champion (or the arm that served) answered on the compared requests. */
  served: {
    /** Served answers that were personalized (the shadow only scores personalized answers). */
    personalized: number;
    items: number;
    /** Model versions that served them, with counts. */
    modelVersions: Record<string, number>;
  };
  /** Mean overlap@k (share of the served top-k the shadow also had in its top-k), with a 95 % interval. */
  overlap: Estimate;
  /** Share of compared requests where the shadow's top-k equals the served one as a set. */
  identical: number;
}

export interface ExperimentResults {
  experimentId: string;
  /** p-value of a chi-square test of users per variant against the weights (small: sample-ratio mismatch). */
  srmPValue: number | null;
  variants: VariantResult[];
  /** Shadow experiments only: the comparison of each shadow variant with the served answers. */
  shadow?: ShadowResult[];
}

export interface ExperimentService {
  /** Throws CAIRN_VALIDATION (field named), CAIRN_CONFLICT (id exists, or another experiment routes users). */
  create(ctx: RequestContext, request: CreateExperimentRequest): Promise<Experiment>;
  /**
   * `create` from the wire format (snake_case JSON as sent to `POST /v1/experiments` or in a file given
   * to `cairn experiments create`); unknown or malformed fields are CAIRN_VALIDATION naming them.
   */
  createFromWire(ctx: RequestContext, raw: unknown): Promise<Experiment>;
  /** Throws CAIRN_NOT_FOUND. */
  get(ctx: RequestContext, id: string): Promise<Experiment>;
  list(ctx: RequestContext): Promise<Experiment[]>;
  /** Stops routing users by it; throws CAIRN_NOT_FOUND. */
  stop(ctx: RequestContext, id: string, reason?: string): Promise<Experiment>;
  results(ctx: RequestContext, id: string): Promise<ExperimentResults>;
}

export interface FeedbackInput {
  requestId: string;
  itemId: string;
  type: FeedbackType;
  value?: number;
  timestamp?: number;
}

/** Per-entry outcome of a feedback call, in request order. */
export interface FeedbackOutcome {
  status: 'accepted' | 'duplicate' | 'rejected';
  /** The entry as validated (null when it was rejected). */
  feedback: FeedbackInput | null;
  /** For rejected entries: stable code and the offending field (e.g. `request_id`). */
  error?: { code: ErrorCode; field: string; message: string };
}

export interface FeedbackService {
  /**
   * Validates each raw wire entry (`request_id`, `item_id`, `type`, `value?`, `timestamp?`) on its own,
   * like events: a bad entry is `rejected` with its code and field and never rejects the others; a
   * repeated (request, item, type) is `duplicate`. Throws CAIRN_BATCH_TOO_LARGE above the batch size.
   */
  record(ctx: RequestContext, raw: unknown[]): Promise<FeedbackOutcome[]>;
}
