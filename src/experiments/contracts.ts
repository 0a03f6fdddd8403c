/**
 * The experiments contract (implemented by service.ts): A/B tests, canaries and shadow runs, the
 * feedback that attributes clicks and conversions to served answers, and the results with intervals.
 */
import type { RequestContext } from '../domain/context.ts';
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
  ctr: Estimate;
  conversionRate: Estimate;
  revenuePerUser: Estimate;
  /** Relative difference to the control (first variant) of the conversion rate; null for the control. */
  liftVsControl: Estimate | null;
}

export interface ExperimentResults {
  experimentId: string;
  /** p-value of a chi-square test of users per variant against the weights (small: sample-ratio mismatch). */
  srmPValue: number | null;
  variants: VariantResult[];
}

export interface ExperimentService {
  /** Throws CAIRN_VALIDATION (field named), CAIRN_CONFLICT (id exists, or another experiment routes users). */
  create(ctx: RequestContext, request: CreateExperimentRequest): Promise<Experiment>;
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

export interface FeedbackService {
  /** Validated like events (CAIRN_VALIDATION with the field); repeats are `duplicate`. */
  record(ctx: RequestContext, feedback: FeedbackInput[]): Promise<('accepted' | 'duplicate')[]>;
}
