/** API keys: create, list, revoke. Admin only; an admin key manages its own tenant's keys. */
import type { FastifyInstance } from 'fastify';
import {
  CreatedKeyResponse,
  CreateKeyBody,
  createdKeyToWire,
  KeyResponse,
  KeysResponse,
  keyToWire,
  type CreateKeyBodyWire,
  type KeysWire,
} from '../key-schemas.ts';
import { IdParams, withErrors, type IdParamsWire } from '../schemas.ts';
import type { RouteContext } from './common.ts';

export function registerKeyRoutes(app: FastifyInstance, { deps }: RouteContext): void {
  app.post<{ Body: CreateKeyBodyWire }>(
    '/v1/keys',
    {
      schema: {
        tags: ['keys'],
        operationId: 'createKey',
        summary: 'Create an API key (the token is shown once)',
        description:
          'Answers 201 with the key and its `token`. An admin key may create keys only for its own ' +
          'tenant (403 CAIRN_FORBIDDEN naming `tenant` otherwise).',
        body: CreateKeyBody,
        response: withErrors({ 201: CreatedKeyResponse }),
      },
      config: { scope: 'admin' },
    },
    async (request, reply) => {
      const created = await deps.keys.create(request.ctx, request.body);
      return reply.code(201).send(createdKeyToWire(created));
    },
  );

  app.get<{ Reply: KeysWire }>(
    '/v1/keys',
    {
      schema: {
        tags: ['keys'],
        operationId: 'listKeys',
        summary: 'API keys, newest first, revoked ones included (never a token or its hash)',
        response: withErrors({ 200: KeysResponse }),
      },
      config: { scope: 'admin' },
    },
    async (request) => ({ keys: (await deps.keys.list(request.ctx)).map(keyToWire) }),
  );

  app.delete<{ Params: IdParamsWire }>(
    '/v1/keys/:id',
    {
      schema: {
        tags: ['keys'],
        operationId: 'revokeKey',
        summary: 'Revoke an API key',
        description:
          'Answers with the revoked key. Revoking a revoked key changes nothing. Requests with the key ' +
          'are refused within `auth.keyCacheSeconds`.',
        params: IdParams,
        response: withErrors({ 200: KeyResponse }),
      },
      config: { scope: 'admin' },
    },
    async (request) => keyToWire(await deps.keys.revoke(request.ctx, request.params.id)),
  );
}
