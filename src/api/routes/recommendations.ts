/**
 * Recommendations: GET /v1/users/:id/recommendations (the hot path), POST /v1/recommendations and
 * POST /v1/recommendations/bulk.
 */
import type { FastifyInstance } from 'fastify';
import { createContext } from '../../domain/context.ts';
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
import { recommendationToWire, recommendBodyToRequest, recommendQueryToRequest } from '../wire.ts';
import type { RouteContext } from './common.ts';

/** Bulk requests in flight at once: enough to overlap store reads, few enough not to starve other requests. */
const BULK_CONCURRENCY = 8;

/** Maps `fn` over `inputs` with at most `limit` calls in flight; results keep input order. */
export async function mapLimited<T, R>(
  inputs: readonly T[],
  limit: number,
  fn: (input: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(inputs.length);
  let next = 0;
  const worker = async () => {
    while (next < inputs.length) {
      const i = next++;
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
      schema: {
        tags: ['recommendations'],
        operationId: 'getUserRecommendations',
        summary: 'Recommendations for a user',
        description:
          'Always answers: the champion model when it can, else the fallback chain (similar to recent → category ' +
          'popular → global popular). `source`, `fallback_reason` and `degraded` say which answered and why. ' +
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
      schema: {
        tags: ['recommendations'],
        operationId: 'recommend',
        summary: 'Recommendations for a user (request in the body)',
        body: schemas.RecommendBody,
        response: withErrors({ 200: RecommendationResponse }),
      },
    },
    async (request) =>
      recommendationToWire(
        await deps.recommendations.recommend(request.ctx, recommendBodyToRequest(request.body, defaultK)),
      ),
  );

  app.post<{ Body: BulkBodyWire }>(
    '/v1/recommendations/bulk',
    {
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
    async (request): Promise<BulkRecommendationsWire> => {
      const results = await mapLimited(request.body.requests, BULK_CONCURRENCY, async (entry, index) => {
        let result: RecommendationResult;
        // Each answer gets its own id, derived from the call's so logs and feedback tie back to it.
        const ctx = createContext({ ...request.ctx, requestId: `${request.ctx.requestId}.${index}` });
        try {
          result = await deps.recommendations.recommend(ctx, recommendBodyToRequest(entry, defaultK));
        } catch (e) {
          // Only the client's own mistakes are reported per entry; anything else fails the call (500).
          if (isCairnError(e) && e.isClientError) {
            return {
              user_id: entry.user_id,
              error: { code: e.code, message: e.message, details: e.details ?? null },
            };
          }
          throw e;
        }
        return recommendationToWire(result);
      });
      return { results };
    },
  );
}
