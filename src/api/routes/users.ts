/** Users: PUT /v1/users/:id, GET /v1/users/:id, DELETE /v1/users/:id (GDPR erase). */
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import {
  AnyObjectBody,
  IdParams,
  UserBodyDoc,
  UserResponse,
  withErrors,
  type IdParamsWire,
} from '../schemas.ts';
import { userToWire } from '../wire.ts';
import { documentBody, type RouteContext } from './common.ts';

export function registerUserRoutes(app: FastifyInstance, { deps }: RouteContext): void {
  app.put<{ Params: IdParamsWire; Body: Record<string, unknown> }>(
    '/v1/users/:id',
    {
      schema: {
        tags: ['users'],
        operationId: 'putUser',
        summary: 'Create or replace a user',
        params: IdParams,
        body: AnyObjectBody,
        response: withErrors({ 200: UserResponse }),
      },
      config: { scope: 'ingest', swaggerTransform: documentBody(UserBodyDoc) },
    },
    async (request) => userToWire(await deps.catalog.putUser(request.ctx, request.params.id, request.body)),
  );

  app.get<{ Params: IdParamsWire }>(
    '/v1/users/:id',
    {
      config: { scope: 'read' },
      schema: {
        tags: ['users'],
        operationId: 'getUser',
        summary: 'Get a user',
        params: IdParams,
        response: withErrors({ 200: UserResponse }),
      },
    },
    async (request) => userToWire(await deps.catalog.getUser(request.ctx, request.params.id)),
  );

  app.delete<{ Params: IdParamsWire }>(
    '/v1/users/:id',
    {
      config: { scope: 'admin' },
      schema: {
        tags: ['users'],
        operationId: 'eraseUser',
        summary: 'Erase a user everywhere (GDPR)',
        description: 'Deletes the user, their events and everything derived from them.',
        params: IdParams,
        response: withErrors({ 204: Type.Null({ description: 'Erased' }) }),
      },
    },
    async (request, reply) => {
      await deps.catalog.eraseUser(request.ctx, request.params.id);
      return reply.code(204).send();
    },
  );
}
