/** Non-personal lists: GET /v1/items/:id/similar and GET /v1/popular. */
import type { FastifyInstance } from 'fastify';
import { IdParams, SimilarResponse, withErrors, type IdParamsWire, type ListQueryWire } from '../schemas.ts';
import { listQueryToOptions as listOptions, similarToWire } from '../wire.ts';
import type { RouteContext } from './common.ts';

export function registerSimilarRoutes(app: FastifyInstance, { deps, schemas }: RouteContext): void {
  app.get<{ Params: IdParamsWire; Querystring: ListQueryWire }>(
    '/v1/items/:id/similar',
    {
      config: { scope: 'read' },
      schema: {
        tags: ['recommendations'],
        operationId: 'getSimilarItems',
        summary: 'Items similar to an item',
        params: IdParams,
        querystring: schemas.ListQuery,
        response: withErrors({ 200: SimilarResponse }),
      },
    },
    async (request) =>
      similarToWire(
        await deps.recommendations.similar(request.ctx, request.params.id, listOptions(request.query)),
      ),
  );

  app.get<{ Querystring: ListQueryWire }>(
    '/v1/popular',
    {
      config: { scope: 'read' },
      schema: {
        tags: ['recommendations'],
        operationId: 'getPopularItems',
        summary: 'Popular items, optionally in one category',
        querystring: schemas.ListQuery,
        response: withErrors({ 200: SimilarResponse }),
      },
    },
    async (request) =>
      similarToWire(await deps.recommendations.popular(request.ctx, listOptions(request.query))),
  );
}
