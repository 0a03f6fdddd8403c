/**
 * TypeBox schemas for every request and response of the HTTP API (wire format: snake_case).
 *
 * Two kinds live here:
 * - request schemas (params, querystrings, bodies) are compiled by `validation.ts` with TypeBox's
 *   TypeCompiler, so they may only use native TypeBox types (no `Type.Unsafe`, no `format`);
 * - response schemas drive fast-json-stringify and the OpenAPI document, so they may use the
 *   response-only helpers below (`Nullable`, `StringEnum`, `FreeObject`) which serialize faster than
 *   `anyOf` unions.
 * Schemas that depend on the configuration (k bounds, batch sizes) are built by `buildSchemas(config)`.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import type { Config } from '../config/load.ts';

/* ------------------------------------------------------------------ response-only helpers */

/** `T | null` as a JSON-schema type array (fast for fast-json-stringify; @fastify/swagger turns it into `nullable`). Response-only. */
export function Nullable<T extends TSchema & { type: string }>(schema: T) {
  return Type.Unsafe<Static<T> | null>({ ...schema, type: [schema.type, 'null'] });
}

/** A string restricted to a few values (`enum`), serialized as a plain string. Response-only. */
export function StringEnum<const T extends readonly string[]>(
  values: T,
  options: { description?: string } = {},
) {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...options });
}

/** A free-form JSON object (client attributes, params, job results). Response-only. */
export function FreeObject<V = unknown>(
  options: { description?: string; additionalProperties?: TSchema } = {},
) {
  const { additionalProperties, ...rest } = options;
  return Type.Unsafe<Record<string, V>>({
    type: 'object',
    additionalProperties: additionalProperties ?? true,
    ...rest,
  });
}

/** An ISO-8601 UTC timestamp on the wire (domain times are epoch milliseconds). */
export const IsoTime = Type.String({ format: 'date-time', description: 'ISO-8601 UTC timestamp' });

/* ------------------------------------------------------------------ errors */

export const ErrorBody = Type.Object(
  {
    error: Type.Object({
      code: Type.String({
        description: 'Stable error code (`CAIRN_…`); clients should branch on it, not on the message',
      }),
      message: Type.String(),
      details: Type.Optional(
        Type.Unknown({
          description: 'Structured details; for validation errors `{"fields":[{"field","message"}]}`',
        }),
      ),
    }),
  },
  { description: 'Error' },
);
export type ErrorBodyWire = Static<typeof ErrorBody>;

/** Adds the error body for every 4xx/5xx answer to a route's response map. */
export function withErrors<R extends Record<number, TSchema>>(responses: R) {
  return { ...responses, '4xx': ErrorBody, '5xx': ErrorBody };
}

/* ------------------------------------------------------------------ params */

const Id = Type.String({ minLength: 1, maxLength: 512 });
export const IdParams = Type.Object({ id: Id });
export type IdParamsWire = Static<typeof IdParams>;
export const VersionParams = Type.Object({ version: Type.String({ minLength: 1, maxLength: 256 }) });
export type VersionParamsWire = Static<typeof VersionParams>;

/* ------------------------------------------------------------------ catalog */

export const ItemResponse = Type.Object({
  id: Type.String(),
  categories: Type.Array(Type.String()),
  attributes: FreeObject({ description: 'Free attributes, e.g. price, brand, title' }),
  available: Type.Boolean({ description: 'Unavailable items are never recommended' }),
  created_at: IsoTime,
  updated_at: IsoTime,
});
export type ItemWire = Static<typeof ItemResponse>;

export const UserResponse = Type.Object({
  id: Type.String(),
  attributes: FreeObject(),
  segments: Type.Array(Type.String()),
  opt_out: Type.Boolean({ description: 'Opted out of personalization: only non-personalized answers' }),
  created_at: IsoTime,
  updated_at: IsoTime,
});
export type UserWire = Static<typeof UserResponse>;

/** Timestamps accepted on input: ISO-8601 string or epoch milliseconds (documentation only). */
const TimeInputDoc = Type.Union([
  Type.String({ format: 'date-time', description: 'ISO-8601 timestamp' }),
  Type.Integer({ description: 'Unix epoch milliseconds' }),
]);

/** Documents the item fields; the catalog service validates them (so every rule lives in one place). */
export const ItemBodyDoc = Type.Object({
  categories: Type.Optional(Type.Array(Type.String())),
  attributes: Type.Optional(FreeObject()),
  available: Type.Optional(Type.Boolean({ default: true })),
  created_at: Type.Optional(TimeInputDoc),
});

export const UserBodyDoc = Type.Object({
  attributes: Type.Optional(FreeObject()),
  segments: Type.Optional(Type.Array(Type.String())),
  opt_out: Type.Optional(Type.Boolean({ default: false })),
});

/** Validation for PUT bodies: any JSON object (the service checks the fields). */
export const AnyObjectBody = Type.Object({});

const ItemIssue = Type.Object({ code: Type.String(), field: Type.String(), message: Type.String() });

export const ItemsBatchResponse = Type.Object({
  upserted: Type.Integer(),
  rejected: Type.Integer(),
  results: Type.Array(
    Type.Object({
      index: Type.Integer(),
      item_id: Nullable(Type.String()),
      status: StringEnum(['upserted', 'rejected'] as const),
      error: Type.Optional(ItemIssue),
    }),
  ),
});
export type ItemsBatchWire = Static<typeof ItemsBatchResponse>;

/* ------------------------------------------------------------------ events */

export const EventDoc = Type.Object({
  event_id: Type.Optional(
    Type.String({ description: 'Client id for idempotency: a repeated event_id is never counted twice' }),
  ),
  user_id: Type.String(),
  item_id: Type.String(),
  type: Type.String({ description: 'One of the configured event types (view, click, purchase, rating, …)' }),
  value: Type.Optional(Type.Number({ description: 'e.g. the rating for `rating` events' })),
  timestamp: Type.Optional(TimeInputDoc),
  context: Type.Optional(FreeObject()),
});

/** Validation for POST /v1/events: an object, and `events` an array when present; events are checked one by one by the service. */
export const EventsBody = Type.Object({ events: Type.Optional(Type.Array(Type.Unknown())) });
export type EventsBodyWire = Static<typeof EventsBody>;

export const EventAcceptedResponse = Type.Object({
  event_id: Nullable(Type.String()),
  status: StringEnum(['accepted', 'duplicate'] as const),
});
export type EventAcceptedWire = Static<typeof EventAcceptedResponse>;

export const EventsBatchResponse = Type.Object({
  accepted: Type.Integer(),
  duplicates: Type.Integer(),
  rejected: Type.Integer(),
  results: Type.Array(
    Type.Object({
      index: Type.Integer(),
      event_id: Nullable(Type.String()),
      status: StringEnum(['accepted', 'duplicate', 'rejected'] as const),
      error: Type.Optional(ItemIssue),
    }),
  ),
});
export type EventsBatchWire = Static<typeof EventsBatchResponse>;

/* ------------------------------------------------------------------ recommendations */

const Source = StringEnum(['personalized', 'fallback'] as const, {
  description: '`personalized` when the champion model answered, else `fallback`',
});

const RecommendationSource = StringEnum(['personalized', 'fallback', 'session'] as const, {
  description:
    '`personalized` when the champion model answered for the user, `session` when it answered for an ' +
    'anonymous session from its items, else `fallback`',
});

/**
 * `explain=true`: what one item's place in the answer is made of. The `features` shape is the one the
 * trained ranker's explanations use too (per-feature contributions that sum, with `bias`, to its score).
 */
export const ExplanationResponse = Type.Object(
  {
    link: StringEnum(
      [
        'personal',
        'session',
        'similar_to_recent',
        'similar',
        'category_popular',
        'popular',
        'cold_start',
      ] as const,
      { description: 'The link of the answer chain that produced the item' },
    ),
    model: Nullable(
      Type.String({ description: 'Algorithm of the model behind the score; null for plain lists' }),
    ),
    contributions: Type.Array(
      Type.Object({
        item_id: Type.String({ description: 'A history (or session, or seed) item' }),
        weight: Type.Number({ description: "Its share (0..1) of the item's positive evidence" }),
      }),
      { description: 'The items behind the score, largest share first (at most 10)' },
    ),
    other_weight: Type.Number({ description: 'Share of the evidence from history items not listed' }),
    list: Type.Optional(
      Type.String({ description: 'The list a fallback item came from: `popular`, `category:<name>`' }),
    ),
    features: Type.Optional(
      Type.Array(
        Type.Object({
          name: Type.String(),
          value: Nullable(Type.Number()),
          contribution: Type.Number(),
        }),
        {
          description:
            "A ranker's per-feature contributions, summing with `bias` to the item's ranking score",
        },
      ),
    ),
    bias: Type.Optional(Type.Number({ description: 'What the ranker scores before any feature' })),
  },
  { description: 'Present with explain=true' },
);

export const RecommendedItemResponse = Type.Object({
  item_id: Type.String(),
  score: Type.Number(),
  reason: Type.String({ description: 'Why this item: the history item, seed or list behind it' }),
  title: Type.Optional(Nullable(Type.String({ description: 'With fields=title' }))),
  categories: Type.Optional(Type.Array(Type.String(), { description: 'With fields=categories' })),
  price: Type.Optional(Nullable(Type.Number({ description: 'With fields=price' }))),
  attributes: Type.Optional(FreeObject({ description: 'With fields=attributes: as stored' })),
  explanation: Type.Optional(ExplanationResponse),
});

/** The experiment arm that served an answer. */
const ExperimentArm = Nullable(
  Type.Object(
    {
      id: Type.String({ description: 'Experiment id' }),
      variant: Type.String({ description: 'Variant (arm) the user is assigned to' }),
    },
    { description: 'The experiment arm that served this answer; null when no experiment routes the user' },
  ),
);

export const RecommendationResponse = Type.Object({
  request_id: Type.String({ description: 'Id of this answer; send it back with feedback' }),
  user_id: Nullable(Type.String({ description: 'null for an anonymous session' })),
  model_version: Nullable(Type.String()),
  source: RecommendationSource,
  fallback_reason: Nullable(
    Type.String({
      description:
        'Which fallback answered and why; null when personalized (or `variant_model_unavailable`: the ' +
        "experiment arm's model is not loaded and the champion answered for it). `deadline`: the request's " +
        'time budget (server.requestTimeoutMs) ran out before the model scored; popular items answered',
    }),
  ),
  degraded: Type.Boolean({
    description: 'A dependency was unavailable; the answer is worse than it should be',
  }),
  experiment: ExperimentArm,
  items: Type.Array(RecommendedItemResponse),
});
export type RecommendationWire = Static<typeof RecommendationResponse>;

export const BulkRecommendationsResponse = Type.Object({
  results: Type.Array(
    Type.Object(
      {
        request_id: Type.Optional(Type.String()),
        user_id: Nullable(Type.String()),
        model_version: Type.Optional(Nullable(Type.String())),
        source: Type.Optional(RecommendationSource),
        fallback_reason: Type.Optional(Nullable(Type.String())),
        degraded: Type.Optional(Type.Boolean()),
        experiment: Type.Optional(ExperimentArm),
        items: Type.Optional(Type.Array(RecommendedItemResponse)),
        error: Type.Optional(
          Type.Object({
            code: Type.String(),
            message: Type.String(),
            details: Type.Optional(Type.Unknown()),
          }),
        ),
      },
      {
        description:
          'In request order: a recommendation, or `user_id` and `error` when that one request was rejected',
      },
    ),
  ),
});
export type BulkRecommendationsWire = Static<typeof BulkRecommendationsResponse>;

export const SimilarResponse = Type.Object({
  request_id: Type.String(),
  item_id: Nullable(Type.String({ description: 'The seed item; null for popular' })),
  model_version: Nullable(Type.String()),
  source: Source,
  fallback_reason: Nullable(Type.String()),
  degraded: Type.Boolean(),
  items: Type.Array(RecommendedItemResponse),
});
export type SimilarWire = Static<typeof SimilarResponse>;

/* ------------------------------------------------------------------ models and jobs */

const MetricMap = (description: string) =>
  FreeObject<number>({ description, additionalProperties: Type.Number() });

export const GateCheckResponse = Type.Object({
  name: Type.String({
    description:
      '`ndcg@10`, `recall@10`, `coverage@10`, `beats_popularity`, `finite_scores`, `not_popularity`, `users_scored`, `holdout`, `champion_scored`',
  }),
  passed: Type.Boolean(),
  detail: Type.String(),
  challenger: Type.Optional(Type.Number()),
  champion: Type.Optional(
    Type.Number({ description: "The champion's value (the baseline's for `beats_popularity`)" }),
  ),
  tolerance: Type.Optional(Type.Number({ description: 'Allowed relative shortfall (or the limit)' })),
});

export const GateRecordResponse = Type.Object({
  passed: Type.Boolean(),
  reason: Type.String({ description: 'The first failed check, or why it passed' }),
  holdout: StringEnum(['fresh', 'random', 'none'] as const, {
    description:
      '`fresh`: interactions newer than the champion (neither model saw them); `random`: per-user random holdout, champion configuration refitted; `none`: too little data',
  }),
  holdout_users: Type.Integer(),
  holdout_interactions: Type.Integer(),
  champion: Nullable(Type.String({ description: 'The champion compared against' })),
  challenger_metrics: MetricMap('Challenger on the holdout'),
  champion_metrics: MetricMap('Champion on the same holdout'),
  checks: Type.Array(GateCheckResponse),
});

export const DriftReferenceResponse = Type.Object({
  event_types: MetricMap('Share of events per type in the training snapshot'),
  item_popularity: Type.Array(Type.Number(), {
    description: 'Share of positive interactions per popularity bucket (best first; last: unseen items)',
  }),
  score_edges: Type.Array(Type.Number()),
  score_shares: Type.Array(Type.Number()),
});

export const ModelAuditResponse = Type.Object({
  at: IsoTime,
  action: StringEnum([
    'registered',
    'promoted',
    'force_promoted',
    'rejected',
    'rolled_back',
    'canary_rolled_back',
  ] as const),
  by: Type.String({ description: 'Principal id (`system` for automatic decisions)' }),
  detail: Type.String(),
});

export const ModelLineageResponse = Type.Object({
  trigger: Type.Object({
    kind: StringEnum(['manual', 'schedule', 'data_volume', 'cli', 'demo'] as const),
    key: Nullable(Type.String()),
    requested_by: Nullable(Type.String()),
    job_id: Nullable(Type.String()),
  }),
  data: Type.Object({
    last_event_seq: Type.Integer({ description: 'Event-log watermark of the training snapshot' }),
    newest_event_at: Nullable(IsoTime),
    training_set_hash: Type.String({ description: 'sha256 of the training matrix and its id spaces' }),
  }),
  code: Type.Object({ version: Type.String(), commit: Nullable(Type.String()) }),
  gate: Type.Union([GateRecordResponse, Type.Null()]),
  drift: Type.Union([DriftReferenceResponse, Type.Null()]),
  audit: Type.Array(ModelAuditResponse),
  tuning: Type.Optional(
    Type.Object(
      {
        trials: Type.Array(
          Type.Object({
            params: Type.Record(Type.String(), Type.Union([Type.Number(), Type.String(), Type.Boolean()])),
            value: Nullable(Type.Number()),
          }),
        ),
        metric: Type.String(),
        best: Type.Number(),
        seconds: Type.Number(),
        warm_start: Nullable(Type.String({ description: 'Version whose params were the first trial' })),
      },
      { description: 'Self-tuning search on a validation part of the training data (training.tuneTrials)' },
    ),
  ),
});
export type ModelLineageWire = Static<typeof ModelLineageResponse>;

export const PromoteBody = Type.Object(
  {
    force: Type.Optional(
      Type.Boolean({ description: 'Required to promote a `rejected` version (recorded)' }),
    ),
    reason: Type.Optional(Type.String({ maxLength: 1000, description: 'Why (kept in the audit trail)' })),
  },
  { additionalProperties: false },
);
export type PromoteBodyWire = Static<typeof PromoteBody>;

export const ModelResponse = Type.Object({
  version: Type.String(),
  algorithm: Type.String(),
  params: FreeObject({ description: 'Hyper-parameters the model was fitted with' }),
  status: StringEnum(['training', 'ready', 'failed', 'champion', 'retired', 'rejected'] as const),
  training_data: Type.Object({
    users: Type.Integer(),
    items: Type.Integer(),
    interactions: Type.Integer(),
    events: Type.Integer(),
  }),
  metrics: FreeObject<number>({
    description: 'Offline holdout metrics, e.g. `ndcg@10`',
    additionalProperties: Type.Number(),
  }),
  train_seconds: Type.Number(),
  created_at: IsoTime,
  promoted_at: Nullable(IsoTime),
  parent_version: Nullable(Type.String({ description: 'The champion this one was promoted over' })),
  error: Nullable(Type.String({ description: 'Why training failed (status `failed`)' })),
  lineage: Type.Union([ModelLineageResponse, Type.Null()], {
    description:
      'Where the version came from and what was decided about it (null on rows from before lineage)',
  }),
});
export type ModelWire = Static<typeof ModelResponse>;

export const ModelsResponse = Type.Object({ models: Type.Array(ModelResponse) });
export type ModelsWire = Static<typeof ModelsResponse>;

export const ModelsQuery = Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })) });
export type ModelsQueryWire = Static<typeof ModelsQuery>;

export const TrainBody = Type.Object(
  {
    algorithm: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'Default: config' })),
    params: Type.Optional(
      Type.Record(Type.String(), Type.Union([Type.Number(), Type.String(), Type.Boolean()]), {
        description: 'Hyper-parameter overrides, e.g. {"factors": 64}',
      }),
    ),
    promote: Type.Optional(Type.Boolean({ description: 'Promote when the gates pass (default true)' })),
  },
  { additionalProperties: false },
);
export type TrainBodyWire = Static<typeof TrainBody>;

const JobStatus = StringEnum(['queued', 'running', 'succeeded', 'failed'] as const);

export const TrainAcceptedResponse = Type.Object({ job_id: Type.String(), status: JobStatus });
export type TrainAcceptedWire = Static<typeof TrainAcceptedResponse>;

export const JobResponse = Type.Object({
  job_id: Type.String(),
  name: Type.String(),
  status: JobStatus,
  progress: Type.Number({ minimum: 0, maximum: 1 }),
  result: Type.Optional(FreeObject()),
  error: Type.Optional(Type.String()),
  attempts: Type.Integer({
    minimum: 0,
    description: 'Attempts started (a worker that died mid-job counts one)',
  }),
  max_attempts: Type.Integer({ minimum: 1 }),
  created_at: IsoTime,
  updated_at: IsoTime,
});
export type JobWire = Static<typeof JobResponse>;

/* ------------------------------------------------------------------ health */

export const LiveResponse = Type.Object({ status: StringEnum(['ok'] as const) });

export const ReadyResponse = Type.Object({
  status: StringEnum(['ready', 'not_ready'] as const),
  checks: FreeObject<{ ok: boolean; detail?: string; status?: 'ok' | 'stale' | 'degraded' }>({
    description:
      'One entry per dependency, e.g. store, model. `status` (model check): `stale` past ' +
      'serving.maxModelAgeSeconds, `degraded` after a failed training or model load, else `ok`',
    additionalProperties: Type.Object({
      ok: Type.Boolean(),
      detail: Type.Optional(Type.String()),
      status: Type.Optional(StringEnum(['ok', 'stale', 'degraded'] as const)),
    }),
  }),
});
export type ReadyWire = Static<typeof ReadyResponse>;

/* ------------------------------------------------------------------ configuration-dependent schemas */

/** Schemas whose bounds come from the configuration (k, batch sizes). */
export function buildSchemas(config: Readonly<Config>) {
  const { defaultK, maxK } = config.serving;
  const k = (withDefault: boolean) =>
    Type.Integer({
      minimum: 1,
      maximum: maxK,
      description: `Number of items (1..${maxK})`,
      ...(withDefault ? { default: defaultK } : {}),
    });
  const category = Type.String({ minLength: 1, maxLength: 256, description: 'Only items of this category' });

  const sessionId = Type.String({
    minLength: 1,
    maxLength: 512,
    description: 'Session id: the unit of experiments that assign by session',
  });

  const fields = Type.Array(Type.String({ maxLength: 64 }), {
    maxItems: 16,
    description:
      'Catalog fields to add to each item: title, categories, price, attributes (comma-separated or repeated ' +
      'in a query); an unknown one is refused (CAIRN_VALIDATION, field `fields`)',
  });
  const explain = (withDefault: boolean) =>
    Type.Boolean({
      description: "Adds each item's `explanation`: what its score is made of, or the list it came from",
      ...(withDefault ? { default: false } : {}),
    });

  const RecommendQuery = Type.Object({
    k: Type.Optional(k(true)),
    session_id: Type.Optional(sessionId),
    category: Type.Optional(category),
    explain: Type.Optional(explain(true)),
    fields: Type.Optional(fields),
    exclude: Type.Optional(
      Type.Array(Type.String(), {
        maxItems: 1000,
        description: 'Item ids never to return: comma-separated (exclude=a,b) or repeated',
      }),
    ),
  });

  const RecommendBody = Type.Object(
    {
      user_id: Type.Optional(
        Type.String({ minLength: 1, maxLength: 512, description: 'The user; or send `items` instead' }),
      ),
      items: Type.Optional(
        Type.Array(Type.String({ minLength: 1, maxLength: 512 }), {
          minItems: 1,
          maxItems: config.serving.historyLimit,
          description:
            'An anonymous session instead of a user: the item ids it interacted with, oldest first. They ' +
            'are never returned; the answer has `user_id: null` and `source: session` when the model ' +
            'answered. Not together with `user_id`',
        }),
      ),
      k: Type.Optional(k(false)),
      category: Type.Optional(category),
      exclude: Type.Optional(Type.Array(Type.String(), { maxItems: 1000 })),
      explain: Type.Optional(explain(false)),
      fields: Type.Optional(fields),
      session_id: Type.Optional(sessionId),
    },
    { additionalProperties: false },
  );

  const BulkBody = Type.Object(
    { requests: Type.Array(RecommendBody, { minItems: 1, maxItems: 1000 }) },
    { additionalProperties: false },
  );

  const ListQuery = Type.Object({
    k: Type.Optional(k(true)),
    category: Type.Optional(category),
    explain: Type.Optional(explain(false)),
    fields: Type.Optional(fields),
  });

  const EventsBodyDoc = Type.Union([
    EventDoc,
    Type.Object({ events: Type.Array(EventDoc, { maxItems: config.server.maxBatchEvents }) }),
  ]);

  const ItemsBody = Type.Object({ items: Type.Array(Type.Unknown()) });
  const ItemsBodyDoc = Type.Object({
    items: Type.Array(Type.Object({ id: Type.String(), ...ItemBodyDoc.properties }), {
      maxItems: config.server.maxBatchItems,
    }),
  });

  return { RecommendQuery, RecommendBody, BulkBody, ListQuery, EventsBodyDoc, ItemsBody, ItemsBodyDoc };
}

export type ApiSchemas = ReturnType<typeof buildSchemas>;
export type RecommendQueryWire = Static<ApiSchemas['RecommendQuery']>;
export type RecommendBodyWire = Static<ApiSchemas['RecommendBody']>;
export type BulkBodyWire = Static<ApiSchemas['BulkBody']>;
export type ListQueryWire = Static<ApiSchemas['ListQuery']>;
export type ItemsBodyWire = Static<ApiSchemas['ItemsBody']>;
