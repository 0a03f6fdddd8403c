/** Helpers shared by the route modules. */
import type { TSchema } from '@sinclair/typebox';
import type { SwaggerTransform } from '@fastify/swagger';
import type { FastifyRequest, preValidationHookHandler } from 'fastify';
import { ERROR_CODES } from '../../errors/errors.ts';
import type { AppDeps } from '../deps.ts';
import type { ApiSchemas } from '../schemas.ts';

/** What each route module receives. */
export interface RouteContext {
  deps: AppDeps;
  schemas: ApiSchemas;
}

/**
 * Shows `doc` as the request body in the OpenAPI document while the route validates a looser schema
 * (used where fields are validated per entry by a service, so one bad entry doesn't reject a batch).
 */
export function documentBody(doc: TSchema): SwaggerTransform {
  return ({ schema, url }) => ({ schema: { ...schema, body: doc }, url });
}

/** For routes whose body is optional: a missing (or empty JSON) body validates as `{}`. */
export const emptyBodyAsObject: preValidationHookHandler = (request: FastifyRequest, _reply, done) => {
  if (request.body === undefined || request.body === null) request.body = {};
  done();
};

/** Status for a rejected single entry (event, feedback): its code's own 4xx status, else 400. */
export function rejectionStatus(code: string): number {
  const status = (ERROR_CODES as Record<string, number>)[code];
  return status !== undefined && status >= 400 && status < 500 ? status : 400;
}
