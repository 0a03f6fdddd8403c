/**
 * Pure mappings between the domain (camelCase, epoch-millisecond times) and the wire format
 * (snake_case, ISO-8601 times). Small and allocation-light: they run on every response.
 */
import type {
  Item,
  ItemExplanation,
  Job,
  ModelLineage,
  ModelVersion,
  RecommendationResult,
  User,
} from '../domain/types.ts';
import { CairnError } from '../errors/errors.ts';
import type { EventOutcome, ItemOutcome } from '../ingest/contracts.ts';
import type {
  ListOptions,
  PopularResult,
  RecommendRequest,
  SessionRequest,
  SimilarResult,
} from '../serving/contracts.ts';
import type {
  EventsBatchWire,
  ItemsBatchWire,
  ItemWire,
  JobWire,
  ModelLineageWire,
  ModelWire,
  RecommendationWire,
  RecommendBodyWire,
  RecommendQueryWire,
  ListQueryWire,
  SimilarWire,
  UserWire,
} from './schemas.ts';

/** Epoch milliseconds → ISO-8601 UTC string. */
export function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}

export function itemToWire(item: Item): ItemWire {
  return {
    id: item.id,
    categories: item.categories,
    attributes: item.attributes,
    available: item.available,
    created_at: isoTime(item.createdAt),
    updated_at: isoTime(item.updatedAt),
  };
}

export function userToWire(user: User): UserWire {
  return {
    id: user.id,
    attributes: user.attributes,
    segments: user.segments,
    opt_out: user.optOut,
    created_at: isoTime(user.createdAt),
    updated_at: isoTime(user.updatedAt),
  };
}

/**
 * Last line of defence: the response serializer would write a non-finite score as `null`, which the
 * OpenAPI contract (a number) does not allow, so such an item is left out (serving never produces one).
 */
function itemsToWire(items: RecommendationResult['items']): RecommendationWire['items'] {
  const out: RecommendationWire['items'] = [];
  for (const it of items) {
    if (!Number.isFinite(it.score)) continue;
    const wire: RecommendationWire['items'][number] = {
      item_id: it.itemId,
      score: it.score,
      reason: it.reason,
    };
    // Only what was asked for is on the item (fields=, explain=true).
    if (it.title !== undefined) wire.title = it.title;
    if (it.categories !== undefined) wire.categories = [...it.categories];
    if (it.price !== undefined) wire.price = it.price;
    if (it.attributes !== undefined) wire.attributes = it.attributes;
    if (it.explanation !== undefined) wire.explanation = explanationToWire(it.explanation);
    out.push(wire);
  }
  return out;
}

function explanationToWire(
  e: ItemExplanation,
): NonNullable<RecommendationWire['items'][number]['explanation']> {
  const wire: NonNullable<RecommendationWire['items'][number]['explanation']> = {
    link: e.link,
    model: e.model,
    contributions: e.contributions.map((c) => ({ item_id: c.itemId, weight: c.weight })),
    other_weight: e.otherWeight,
  };
  if (e.list !== undefined) wire.list = e.list;
  if (e.features !== undefined) wire.features = e.features.map((f) => ({ ...f }));
  if (e.bias !== undefined) wire.bias = e.bias;
  return wire;
}

export function recommendationToWire(result: RecommendationResult): RecommendationWire {
  return {
    request_id: result.requestId,
    user_id: result.userId,
    model_version: result.modelVersion,
    source: result.source,
    fallback_reason: result.fallbackReason,
    degraded: result.degraded,
    experiment: result.experiment ?? null,
    items: itemsToWire(result.items),
  };
}

export function similarToWire(result: SimilarResult | PopularResult): SimilarWire {
  return {
    request_id: result.requestId,
    item_id: result.itemId,
    model_version: result.modelVersion,
    source: result.source,
    fallback_reason: result.fallbackReason,
    degraded: result.degraded,
    items: itemsToWire(result.items),
  };
}

/**
 * `exclude` arrives as repeated parameters and/or comma-separated lists; flattens, trims, drops
 * empties and duplicates (order kept).
 */
export function parseExclude(values: readonly string[] | undefined): string[] | undefined {
  if (values === undefined || values.length === 0) return undefined;
  const out: string[] = [];
  const seen = new Set<string>();
  for (const value of values) {
    for (const part of value.split(',')) {
      const id = part.trim();
      if (id !== '' && !seen.has(id)) {
        seen.add(id);
        out.push(id);
      }
    }
  }
  return out.length > 0 ? out : undefined;
}

/** Query of GET /v1/users/:id/recommendations → service request. */
export function recommendQueryToRequest(userId: string, query: RecommendQueryWire): RecommendRequest {
  const request: RecommendRequest = { userId };
  if (query.k !== undefined) request.k = query.k;
  if (query.category !== undefined) request.category = query.category;
  if (query.explain !== undefined) request.explain = query.explain;
  if (query.session_id !== undefined) request.sessionId = query.session_id;
  const exclude = parseExclude(query.exclude);
  if (exclude) request.exclude = exclude;
  // The same comma/repeat rules as exclude; the service checks the names (one list of them).
  const fields = parseExclude(query.fields);
  if (fields) request.fields = fields;
  return request;
}

/** Query of GET /v1/items/:id/similar and GET /v1/popular → service options. */
export function listQueryToOptions(query: ListQueryWire): ListOptions {
  const options: ListOptions = {};
  if (query.k !== undefined) options.k = query.k;
  if (query.category !== undefined) options.category = query.category;
  if (query.explain !== undefined) options.explain = query.explain;
  const fields = parseExclude(query.fields);
  if (fields) options.fields = fields;
  return options;
}

/** A POST /v1/recommendations body as a call: for a user, or for an anonymous session (`items`). */
export type RecommendCall =
  { session: false; request: RecommendRequest } | { session: true; request: SessionRequest };

/**
 * Body of POST /v1/recommendations (and each bulk entry) → service call; `k` defaults to `defaultK`.
 * Exactly one of `user_id` and `items` (CAIRN_VALIDATION otherwise: field `user_id` when neither is
 * sent, `items` when both are).
 */
export function recommendBodyToCall(body: RecommendBodyWire, defaultK: number): RecommendCall {
  if (body.user_id !== undefined && body.items !== undefined) {
    throw CairnError.validation([
      { field: 'items', message: 'send either user_id (a user) or items (an anonymous session), not both' },
    ]);
  }
  const common: Omit<RecommendRequest, 'userId'> = { k: body.k ?? defaultK };
  if (body.category !== undefined) common.category = body.category;
  if (body.explain !== undefined) common.explain = body.explain;
  if (body.session_id !== undefined) common.sessionId = body.session_id;
  const exclude = parseExclude(body.exclude);
  if (exclude) common.exclude = exclude;
  const fields = parseExclude(body.fields);
  if (fields) common.fields = fields;
  if (body.items !== undefined) return { session: true, request: { ...common, items: body.items } };
  if (body.user_id === undefined) {
    throw CairnError.validation([
      { field: 'user_id', message: 'is required (or items, for an anonymous session)' },
    ]);
  }
  return { session: false, request: { userId: body.user_id, ...common } };
}

function issueToWire(error: { code: string; field: string; message: string } | undefined) {
  return error ? { code: error.code, field: error.field, message: error.message } : undefined;
}

export function eventOutcomesToWire(outcomes: readonly EventOutcome[]): EventsBatchWire {
  let accepted = 0;
  let duplicates = 0;
  let rejected = 0;
  const results = new Array<EventsBatchWire['results'][number]>(outcomes.length);
  for (let i = 0; i < outcomes.length; i++) {
    const o = outcomes[i];
    if (o.status === 'accepted') accepted++;
    else if (o.status === 'duplicate') duplicates++;
    else rejected++;
    const error = issueToWire(o.error);
    results[i] = error
      ? { index: o.index, event_id: o.eventId, status: o.status, error }
      : { index: o.index, event_id: o.eventId, status: o.status };
  }
  return { accepted, duplicates, rejected, results };
}

export function itemOutcomesToWire(outcomes: readonly ItemOutcome[]): ItemsBatchWire {
  let upserted = 0;
  let rejected = 0;
  const results = new Array<ItemsBatchWire['results'][number]>(outcomes.length);
  for (let i = 0; i < outcomes.length; i++) {
    const o = outcomes[i];
    if (o.status === 'upserted') upserted++;
    else rejected++;
    const error = issueToWire(o.error);
    results[i] = error
      ? { index: o.index, item_id: o.itemId, status: o.status, error }
      : { index: o.index, item_id: o.itemId, status: o.status };
  }
  return { upserted, rejected, results };
}

export function modelToWire(model: ModelVersion): ModelWire {
  const t = model.trainingData;
  return {
    version: model.version,
    algorithm: model.algorithm,
    params: model.params,
    status: model.status,
    training_data: { users: t.users, items: t.items, interactions: t.interactions, events: t.events },
    metrics: model.metrics,
    train_seconds: model.trainSeconds,
    created_at: isoTime(model.createdAt),
    promoted_at: model.promotedAt === null ? null : isoTime(model.promotedAt),
    parent_version: model.parentVersion,
    error: model.error,
    lineage: model.lineage === null ? null : lineageToWire(model.lineage),
  };
}

export function lineageToWire(l: ModelLineage): ModelLineageWire {
  const gate = l.gate;
  return {
    trigger: {
      kind: l.trigger.kind,
      key: l.trigger.key,
      requested_by: l.trigger.requestedBy,
      job_id: l.trigger.jobId,
    },
    data: {
      last_event_seq: l.data.lastEventSeq,
      newest_event_at: l.data.newestEventAt > 0 ? isoTime(l.data.newestEventAt) : null,
      training_set_hash: l.data.trainingSetHash,
    },
    code: { version: l.code.version, commit: l.code.commit },
    gate: gate && {
      passed: gate.passed,
      reason: gate.reason,
      holdout: gate.holdout,
      holdout_users: gate.holdoutUsers,
      holdout_interactions: gate.holdoutInteractions,
      champion: gate.champion,
      challenger_metrics: gate.challengerMetrics,
      champion_metrics: gate.championMetrics,
      checks: gate.checks.map((c) => ({ ...c })),
    },
    drift: l.drift && {
      event_types: l.drift.eventTypes,
      item_popularity: l.drift.itemPopularity,
      score_edges: l.drift.scoreEdges,
      score_shares: l.drift.scoreShares,
    },
    audit: l.audit.map((a) => ({ at: isoTime(a.at), action: a.action, by: a.by, detail: a.detail })),
    ...(l.tuning && {
      tuning: {
        trials: l.tuning.trials.map((t) => ({ params: t.params, value: t.value })),
        metric: l.tuning.metric,
        best: l.tuning.best,
        seconds: l.tuning.seconds,
        warm_start: l.tuning.warmStart,
      },
    }),
  };
}

export function jobToWire(job: Job): JobWire {
  const wire: JobWire = {
    job_id: job.id,
    name: job.name,
    status: job.status,
    progress: job.progress,
    attempts: job.attempts,
    max_attempts: job.maxAttempts,
    created_at: isoTime(job.createdAt),
    updated_at: isoTime(job.updatedAt),
  };
  // Optional on the wire: present only when there is something to say.
  if (job.result !== null) wire.result = job.result;
  if (job.error !== null) wire.error = job.error;
  return wire;
}
