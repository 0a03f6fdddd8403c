/**
 * TypeBox schemas of the experiment and feedback endpoints (wire format: snake_case). Request bodies
 * are validated field by field by the experiments layer (src/experiments/validate.ts and the service),
 * so every rule lives in one place; the `*Doc` schemas document them in OpenAPI.
 */
import { Type, type Static } from '@sinclair/typebox';
import { FreeObject, IsoTime, Nullable, StringEnum } from './schemas.ts';

const ExperimentKind = StringEnum(['ab', 'canary', 'shadow'] as const, {
  description:
    '`ab`: users split by weight, every variant served; `canary`: an ab test whose challenger is ' +
    'rolled back automatically when its online metric falls behind the control by the guard margin; ' +
    '`shadow`: the champion serves everyone, the variant model also scores `weight` % of requests (logged, never served)',
});

const VariantDoc = Type.Object({
  name: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' }),
  weight: Type.Number({
    minimum: 0,
    description: 'Relative share of users (shadow: percentage of requests scored, 0 < w ≤ 100)',
  }),
  model_version: Type.Optional(
    Type.String({ description: 'Serve this model version (default: the champion)' }),
  ),
  algorithm: Type.Optional(
    Type.String({ description: 'Serve the newest ready or champion version of this algorithm' }),
  ),
  ranker: Type.Optional(
    Type.Boolean({
      description:
        'Second-stage ranker: true forces it where the model carries one, false bypasses it (default: config ranking.enabled)',
    }),
  ),
});

const GuardDoc = Type.Object({
  metric: Type.Optional(StringEnum(['ctr', 'conversion_rate'] as const, { description: 'Default ctr' })),
  margin: Type.Optional(
    Type.Number({ minimum: 0, maximum: 1, description: 'Relative shortfall tolerated (default 0.1)' }),
  ),
  min_impressions: Type.Optional(
    Type.Integer({ minimum: 1, description: 'Impressions per arm before the guard judges (default 1000)' }),
  ),
});

/** Documents POST /v1/experiments (validated by the experiments layer). */
export const CreateExperimentDoc = Type.Object({
  id: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' }),
  kind: Type.Optional(ExperimentKind),
  unit: Type.Optional(
    StringEnum(['user', 'session'] as const, {
      description: 'Hash users (default) or sessions (`session_id` of the request) into variants',
    }),
  ),
  variants: Type.Array(VariantDoc, { minItems: 1, maxItems: 10 }),
  guard: Type.Optional(GuardDoc),
});

/** Validation of the create body: a JSON object (its fields are checked by the experiments layer). */
export const CreateExperimentBody = Type.Object({});
export type CreateExperimentBodyWire = Static<typeof CreateExperimentBody>;

export const StopExperimentBody = Type.Object(
  { reason: Type.Optional(Type.String({ maxLength: 1000, description: 'Why it was stopped' })) },
  { additionalProperties: false },
);
export type StopExperimentBodyWire = Static<typeof StopExperimentBody>;

export const ExperimentResponse = Type.Object({
  id: Type.String(),
  kind: ExperimentKind,
  status: StringEnum(['running', 'stopped', 'rolled_back'] as const, {
    description: '`rolled_back`: stopped by a canary guard',
  }),
  unit: StringEnum(['user', 'session'] as const),
  variants: Type.Array(
    Type.Object({
      name: Type.String(),
      weight: Type.Number(),
      model_version: Nullable(Type.String({ description: 'null: the champion serves this variant' })),
      algorithm: Nullable(Type.String()),
      ranker: Nullable(Type.Boolean()),
    }),
  ),
  guard: Nullable(
    Type.Object({
      metric: StringEnum(['ctr', 'conversion_rate'] as const),
      margin: Type.Number(),
      min_impressions: Type.Integer(),
    }),
  ),
  created_at: IsoTime,
  created_by: Type.String(),
  stopped_at: Nullable(IsoTime),
  stop_reason: Nullable(Type.String()),
});
export type ExperimentWire = Static<typeof ExperimentResponse>;

export const ExperimentsResponse = Type.Object({ experiments: Type.Array(ExperimentResponse) });
export type ExperimentsWire = Static<typeof ExperimentsResponse>;

const Estimate = Type.Object(
  { value: Type.Number(), low: Type.Number(), high: Type.Number() },
  { description: 'Point estimate with its 95 % interval' },
);

export const ExperimentResultsResponse = Type.Object({
  experiment_id: Type.String(),
  srm_p_value: Nullable(
    Type.Number({
      description:
        'Chi-square test of users per variant against the weights; a small value (< 0.001) means ' +
        'assignment or logging is broken and the results cannot be trusted',
    }),
  ),
  variants: Type.Array(
    Type.Object({
      name: Type.String(),
      users: Type.Integer(),
      impressions: Type.Integer(),
      clicks: Type.Integer(),
      conversions: Type.Integer(),
      ctr: Type.Object(Estimate.properties, { description: 'Clicks / impressions (Wilson interval)' }),
      conversion_rate: Type.Object(Estimate.properties, {
        description: 'Converting users / users (Wilson interval)',
      }),
      revenue_per_user: Type.Object(Estimate.properties, {
        description: 'Mean conversion value per user (normal interval)',
      }),
      lift_vs_control: Nullable(
        Type.Object(Estimate.properties, {
          description:
            'Relative difference of the conversion rate to the first variant (delta method on the log ratio); null for the control',
        }),
      ),
    }),
  ),
  shadow: Type.Optional(
    Type.Array(
      Type.Object({
        variant: Type.String(),
        model_version: Nullable(Type.String()),
        requests: Type.Integer({ description: 'Newest shadow answers examined' }),
        compared: Type.Integer({ description: 'Of those, with their served answer logged' }),
        users: Type.Integer(),
        served: Type.Object({
          personalized: Type.Integer(),
          items: Type.Integer(),
          model_versions: FreeObject<number>({ additionalProperties: Type.Integer() }),
        }),
        overlap: Type.Object(Estimate.properties, {
          description: 'Mean overlap@k of the shadow answer with the served one',
        }),
        identical: Type.Number({ description: 'Share of compared answers with the same top-k' }),
      }),
      { description: 'Shadow experiments: how each shadow model compared with what was served' },
    ),
  ),
});
export type ExperimentResultsWire = Static<typeof ExperimentResultsResponse>;

/* ------------------------------------------------------------------ feedback */

export const FeedbackDoc = Type.Object({
  request_id: Type.String({ description: 'The `request_id` of the recommendation answer' }),
  item_id: Type.String(),
  type: StringEnum(['impression', 'click', 'conversion'] as const),
  value: Type.Optional(Type.Number({ minimum: 0, description: 'Revenue of a conversion' })),
  timestamp: Type.Optional(
    Type.Union([Type.String({ format: 'date-time' }), Type.Integer({ description: 'Unix epoch ms' })]),
  ),
});

/** Validation: an object, and `feedback` an array when present (entries are checked one by one). */
export const FeedbackBody = Type.Object({ feedback: Type.Optional(Type.Array(Type.Unknown())) });
export type FeedbackBodyWire = Static<typeof FeedbackBody>;

export function feedbackBodyDoc(maxBatch: number) {
  return Type.Union([
    FeedbackDoc,
    Type.Object({ feedback: Type.Array(FeedbackDoc, { maxItems: maxBatch }) }),
  ]);
}

const Issue = Type.Object({ code: Type.String(), field: Type.String(), message: Type.String() });

export const FeedbackAcceptedResponse = Type.Object({
  request_id: Type.String(),
  item_id: Type.String(),
  type: Type.String(),
  status: StringEnum(['accepted', 'duplicate'] as const),
});
export type FeedbackAcceptedWire = Static<typeof FeedbackAcceptedResponse>;

export const FeedbackBatchResponse = Type.Object({
  accepted: Type.Integer(),
  duplicates: Type.Integer(),
  rejected: Type.Integer(),
  results: Type.Array(
    Type.Object({
      index: Type.Integer(),
      status: StringEnum(['accepted', 'duplicate', 'rejected'] as const),
      error: Type.Optional(Issue),
    }),
  ),
});
export type FeedbackBatchWire = Static<typeof FeedbackBatchResponse>;
