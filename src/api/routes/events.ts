/** POST /v1/events: one event or a batch; every event is validated on its own by the ingest service. */
import type { FastifyInstance } from 'fastify';
import {
  EventAcceptedResponse,
  EventsBatchResponse,
  EventsBody,
  withErrors,
  type ErrorBodyWire,
  type EventsBodyWire,
} from '../schemas.ts';
import { eventOutcomesToWire } from '../wire.ts';
import { documentBody, rejectionStatus, type RouteContext } from './common.ts';

export function registerEventRoutes(app: FastifyInstance, { deps, schemas }: RouteContext): void {
  app.post<{ Body: EventsBodyWire }>(
    '/v1/events',
    {
      schema: {
        tags: ['events'],
        operationId: 'ingestEvents',
        summary: 'Ingest one behaviour event or a batch',
        description:
          'One event → 202 `{event_id, status}` (or the event\'s error). `{"events":[…]}` → 200 with a result per ' +
          'event in request order; valid events are stored even when others are rejected. A repeated `event_id` ' +
          'is reported as `duplicate` and never counted twice.',
        body: EventsBody,
        response: withErrors({ 200: EventsBatchResponse, 202: EventAcceptedResponse }),
      },
      config: { scope: 'ingest', swaggerTransform: documentBody(schemas.EventsBodyDoc) },
    },
    async (request, reply) => {
      const body = request.body;
      if (body.events !== undefined) {
        const outcomes = await deps.ingest.ingestEvents(request.ctx, body.events);
        return reply.code(200).send(eventOutcomesToWire(outcomes));
      }
      const outcome = (await deps.ingest.ingestEvents(request.ctx, [body]))[0];
      if (outcome === undefined) throw new Error('ingest service returned no outcome for a single event');
      if (outcome.status === 'rejected') {
        const issue = outcome.error ?? { code: 'CAIRN_VALIDATION', field: 'body', message: 'event rejected' };
        const error: ErrorBodyWire = {
          error: {
            code: issue.code,
            message: `${issue.field}: ${issue.message}`,
            details: { fields: [{ field: issue.field, message: issue.message }] },
          },
        };
        return reply.code(rejectionStatus(issue.code)).send(error);
      }
      return reply.code(202).send({ event_id: outcome.eventId, status: outcome.status });
    },
  );
}
