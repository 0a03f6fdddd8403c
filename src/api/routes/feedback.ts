/**
 * POST /v1/feedback: impressions, clicks and conversions tied to a served answer by its `request_id`.
 * One entry or `{"feedback":[…]}`; each entry is validated on its own, like events.
 */
import type { FastifyInstance } from 'fastify';
import {
  FeedbackAcceptedResponse,
  FeedbackBatchResponse,
  FeedbackBody,
  feedbackBodyDoc,
  type FeedbackBodyWire,
} from '../experiment-schemas.ts';
import { feedbackOutcomesToWire } from '../experiment-wire.ts';
import { withErrors, type ErrorBodyWire } from '../schemas.ts';
import { documentBody, rejectionStatus, type RouteContext } from './common.ts';

export function registerFeedbackRoutes(app: FastifyInstance, { deps }: RouteContext): void {
  const maxBatch = deps.config.server.maxBatchEvents;

  app.post<{ Body: FeedbackBodyWire }>(
    '/v1/feedback',
    {
      schema: {
        tags: ['feedback'],
        operationId: 'recordFeedback',
        summary: 'Tie impressions, clicks and conversions to a served recommendation',
        description:
          'One entry → 202 `{request_id, item_id, type, status}` (or its error). `{"feedback":[…]}` → 200 ' +
          'with a result per entry in request order. A repeated (request_id, item_id, type) is `duplicate`. ' +
          'Feedback for a request not (yet) in the served log is kept and counts once it is. Events that ' +
          'carry `request_id` are attributed the same way (see `experiments.outcomes`).',
        body: FeedbackBody,
        response: withErrors({ 200: FeedbackBatchResponse, 202: FeedbackAcceptedResponse }),
      },
      config: { scope: 'ingest', swaggerTransform: documentBody(feedbackBodyDoc(maxBatch)) },
    },
    async (request, reply) => {
      const body = request.body;
      if (body.feedback !== undefined) {
        const outcomes = await deps.feedback.record(request.ctx, body.feedback);
        return reply.code(200).send(feedbackOutcomesToWire(outcomes));
      }
      const outcome = (await deps.feedback.record(request.ctx, [body]))[0];
      if (outcome === undefined) throw new Error('feedback service returned no outcome for one entry');
      if (outcome.status === 'rejected' || outcome.feedback === null) {
        const issue = outcome.error ?? {
          code: 'CAIRN_VALIDATION',
          field: 'body',
          message: 'feedback rejected',
        };
        const error: ErrorBodyWire = {
          error: {
            code: issue.code,
            message: `${issue.field}: ${issue.message}`,
            details: { fields: [{ field: issue.field, message: issue.message }] },
          },
        };
        return reply.code(rejectionStatus(issue.code)).send(error);
      }
      const f = outcome.feedback;
      return reply
        .code(202)
        .send({ request_id: f.requestId, item_id: f.itemId, type: f.type, status: outcome.status });
    },
  );
}
