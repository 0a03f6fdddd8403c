/** Catalog items: PUT /v1/items/:id, POST /v1/items (batch), GET /v1/items/:id. */
import type { FastifyInstance } from 'fastify';
import { CairnError } from '../../errors/errors.ts';
import {
  AnyObjectBody,
  IdParams,
  ItemBodyDoc,
  ItemResponse,
  ItemsBatchResponse,
  withErrors,
  type IdParamsWire,
  type ItemsBodyWire,
} from '../schemas.ts';
import { itemOutcomesToWire, itemToWire } from '../wire.ts';
import { documentBody, type RouteContext } from './common.ts';

export function registerItemRoutes(app: FastifyInstance, { deps, schemas }: RouteContext): void {
  const maxBatch = deps.config.server.maxBatchItems;

  app.put<{ Params: IdParamsWire; Body: Record<string, unknown> }>(
    '/v1/items/:id',
    {
      schema: {
        tags: ['items'],
        operationId: 'putItem',
        summary: 'Create or replace an item',
        params: IdParams,
        body: AnyObjectBody,
        response: withErrors({ 200: ItemResponse }),
      },
      config: { scope: 'ingest', swaggerTransform: documentBody(ItemBodyDoc) },
    },
    async (request) => itemToWire(await deps.catalog.putItem(request.ctx, request.params.id, request.body)),
  );

  app.post<{ Body: ItemsBodyWire }>(
    '/v1/items',
    {
      schema: {
        tags: ['items'],
        operationId: 'putItems',
        summary: 'Create or replace items in bulk',
        description: `Up to ${maxBatch} items, each with its \`id\`; a result per item in request order. Valid items are stored even when others are rejected.`,
        body: schemas.ItemsBody,
        response: withErrors({ 200: ItemsBatchResponse }),
      },
      config: { scope: 'ingest', swaggerTransform: documentBody(schemas.ItemsBodyDoc) },
    },
    async (request) => {
      const items = request.body.items;
      if (items.length > maxBatch) {
        throw new CairnError('CAIRN_BATCH_TOO_LARGE', `at most ${maxBatch} items per request`, {
          max: maxBatch,
          received: items.length,
        });
      }
      return itemOutcomesToWire(await deps.catalog.putItems(request.ctx, items));
    },
  );

  app.get<{ Params: IdParamsWire }>(
    '/v1/items/:id',
    {
      config: { scope: 'read' },
      schema: {
        tags: ['items'],
        operationId: 'getItem',
        summary: 'Get an item',
        params: IdParams,
        response: withErrors({ 200: ItemResponse }),
      },
    },
    async (request) => itemToWire(await deps.catalog.getItem(request.ctx, request.params.id)),
  );
}
