/**
 * Recommendations: GET /v1/users/:id/recommendations (the hot path), POST /v1/recommendations and
 * POST /v1/recommendations/bulk.
 */
import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { createContext, type RequestContext } from '../../domain/context.ts';
import { TimeSlicer } from '../../domain/cooperative.ts';
import type { RecommendationResult } from '../../domain/types.ts';
import { isCairnError } from '../../errors/errors.ts';
import {
  BulkRecommendationsResponse,
  IdParams,
  RecommendationResponse,
  withErrors,
  type BulkBodyWire,
  type BulkRecommendationsWire,
  type IdParamsWire,
  type RecommendBodyWire,
  type RecommendQueryWire,
} from '../schemas.ts';
import { recommendationToWire, recommendBodyToCall, recommendQueryToRequest } from '../wire.ts';
import type { RouteContext } from './common.ts';

/** Bulk requests in flight at once: enough to overlap store reads, few enough not to starve other requests. */
const BULK_CONCURRENCY = 8;
/** The schema of one slot of the bulk answer (slots are serialized one by one, see the route). */
const BULK_SLOT = BulkRecommendationsResponse.properties.results.items;

/**
 * Maps `fn` over `inputs` with at most `limit` calls in flight; results keep input order. With a
 * `slicer`, each call first awaits its turn, so calls that are synchronous CPU work (scoring against an
 * in-process model) are spread over loop turns instead of blocking the loop for the whole map.
 */
export async function mapLimited<T, R>(
  inputs: readonly T[],
  limit: number,
  fn: (input: T, index: number) => Promise<R>,
  slicer?: Pick<TimeSlicer, 'turn'>,
): Promise<R[]> {
  const results = new Array<R>(inputs.length);
  let next = 0;
  const worker = async () => {
    while (next < inputs.length) {
      const i = next++;
      if (slicer) await slicer.turn();
      results[i] = await fn(inputs[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, inputs.length) }, worker));
  return results;
}

export function registerRecommendationRoutes(app: FastifyInstance, { deps, schemas }: RouteContext): void {
  const defaultK = deps.config.serving.defaultK;

  app.get<{ Params: IdParamsWire; Querystring: RecommendQueryWire }>(
    '/v1/users/:id/recommendations',
    {
      config: { scope: 'read' },
      schema: {
        tags: ['recommendations'],
        operationId: 'getUserRecommendations',
        summary: 'Recommendations for a user',
        description:
          'Always answers: the champion model when it can, else the fallback chain (similar to recent → for a ' +
          'user with no events, popular items ranked by their segments and attributes → category popular → ' +
          'global popular). `source`, `fallback_reason` and `degraded` say which answered and why; each ' +
          "item's `reason` says why that item. `fields=title,categories,price,attributes` adds catalog fields, " +
          '`explain=true` an `explanation` per item. ' +
          "A user in a running A/B or canary experiment is answered by their arm's model: `experiment` names " +
          'the arm and `model_version` the model that answered. Send `request_id` back with feedback.',
        params: IdParams,
        querystring: schemas.RecommendQuery,
        response: withErrors({ 200: RecommendationResponse }),
      },
    },
    async (request) =>
      recommendationToWire(
        await deps.recommendations.recommend(
          request.ctx,
          recommendQueryToRequest(request.params.id, request.query),
        ),
      ),
  );

  app.post<{ Body: RecommendBodyWire }>(
    '/v1/recommendations',
    {
      config: { scope: 'read' },
      schema: {
        tags: ['recommendations'],
        operationId: 'recommend',
        summary: 'Recommendations for a user, or for an anonymous session (request in the body)',
        description:
          'With `user_id`: as GET /v1/users/{id}/recommendations. With `items` instead (no `user_id`): an ' +
          'anonymous session, answered from the items it viewed: the champion folds them in as a new ' +
          "user's history (`source: session`, `user_id: null`, each item's reason names the session item it " +
          'is closest to); when the model knows none of them, similar items, then popular items of their ' +
          'categories, then popular items (`source: fallback` with its `fallback_reason`). The items sent ' +
          'are never returned. `fields` adds catalog fields to each item; `explain` adds its explanation.',
        body: schemas.RecommendBody,
        response: withErrors({ 200: RecommendationResponse }),
      },
    },
    async (request) => recommendationToWire(await recommendFor(request.ctx, request.body)),
  );

  /** One body: a user's recommendations, or an anonymous session's. */
  function recommendFor(ctx: RequestContext, body: RecommendBodyWire): Promise<RecommendationResult> {
    const call = recommendBodyToCall(body, defaultK);
    return call.session
      ? deps.recommendations.recommendSession(ctx, call.request)
      : deps.recommendations.recommend(ctx, call.request);
  }

  app.post<{ Body: BulkBodyWire }>(
    '/v1/recommendations/bulk',
    {
      config: { scope: 'read' },
      schema: {
        tags: ['recommendations'],
        operationId: 'recommendBulk',
        summary: 'Recommendations for up to 1000 users',
        description:
          'Results in request order. A request the service rejects (e.g. an unknown category) gets `user_id` and ' +
          '`error` in its slot instead of failing the whole call.',
        body: schemas.BulkBody,
        response: withErrors({ 200: BulkRecommendationsResponse }),
      },
    },
    async (request, reply) => {
      const slots = await mapLimited(
        request.body.requests,
        BULK_CONCURRENCY,
        async (entry, index) =>
          // Off the JS heap: 1,000 slots of ~30 kB held until sent would otherwise be copied by every
          // young-generation GC while the rest are computed.
          Buffer.from(reply.serializeInput(await bulkSlot(request.ctx, entry, index), BULK_SLOT)),
        new TimeSlicer(),
      );
      // 1,000 answers of k=200 are ~30 MB of JSON: each slot is serialized inside the time slices above
      // and the body is streamed as the socket drains, instead of one serialization and one write that
      // would block the loop for hundreds of ms.
      return reply.type('application/json; charset=utf-8').send(Readable.from(bulkBody(slots)));
    },
  );

  /** One slot of a bulk answer: the recommendation, or the client's own mistake in that request. */
  async function bulkSlot(
    parent: RequestContext,
    entry: BulkBodyWire['requests'][number],
    index: number,
  ): Promise<BulkRecommendationsWire['results'][number]> {
    // Each answer gets its own id, derived from the call's so logs and feedback tie back to it.
    const ctx = createContext({ ...parent, requestId: `${parent.requestId}.${index}` });
    let result: RecommendationResult;
    try {
      result = await recommendFor(ctx, entry);
    } catch (e) {
      // Only the client's own mistakes are reported per entry; anything else fails the call (500).
      if (isCairnError(e) && e.isClientError) {
        return {
          user_id: entry.user_id ?? null,
          error: { code: e.code, message: e.message, details: e.details ?? null },
        };
      }
      throw e;
    }
    return recommendationToWire(result);
  }
}

/**
 * `{"results":[…]}` around slots already serialized, chunk by chunk (never built as one string), in time
 * slices too: a socket that drains as fast as it is written (a local client) completes every write within
 * one loop turn otherwise.
 */
async function* bulkBody(slots: readonly Buffer[]): AsyncGenerator<string | Buffer> {
  const slicer = new TimeSlicer();
  yield '{"results":[';
  for (let i = 0; i < slots.length; i++) {
    await slicer.turn();
    if (i > 0) yield ',';
    yield slots[i];
  }
  yield ']}';
}
