/**
 * POST /v1/feedback: impressions, clicks and conversions tied to a served answer by its `request_id`.
 * One entry or `{"feedback":[…]}`; each entry is validated on its own, like events.
 */
import type { FastifyInstance } from 'fastify';
import { ERROR_CODES } from '../../errors/errors.ts';
import type { FeedbackInput } from '../../experiments/contracts.ts';
import { validateFeedback, type Issue } from '../../experiments/validate.ts';
import { CairnError } from '../../errors/errors.ts';
import {
  FeedbackAcceptedResponse,
  FeedbackBatchResponse,
  FeedbackBody,
  feedbackBodyDoc,
  type FeedbackBodyWire,
} from '../experiment-schemas.ts';
import { feedbackOutcomesToWire, type FeedbackOutcome } from '../experiment-wire.ts';
import { withErrors, type ErrorBodyWire } from '../schemas.ts';
import { documentBody, type RouteContext } from './common.ts';

function rejectionStatus(code: string): number {
  const status = (ERROR_CODES as Record<string, number>)[code];
  return status !== undefined && status >= 400 && status < 500 ? status : 400;
}

export function registerFeedbackRoutes(app: FastifyInstance, { deps }: RouteContext): void {
  const { config } = deps;
  const maxBatch = config.server.maxBatchEvents;
  const skewMs = config.events.maxFutureSkewSeconds * 1000;

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
      config: { swaggerTransform: documentBody(feedbackBodyDoc(maxBatch)) },
    },
    async (request, reply) => {
      const body = request.body;
      const maxTime = Date.now() + skewMs;
      if (body.feedback === undefined) {
        const result = validateFeedback(body, maxTime);
        if (!result.ok) {
          const issue = result.issues[0];
          const error: ErrorBodyWire = {
            error: {
              code: issue.code,
              message: `${issue.field}: ${issue.message}`,
              details: { fields: result.issues.map(({ field, message }) => ({ field, message })) },
            },
          };
          return reply.code(rejectionStatus(issue.code)).send(error);
        }
        const [status] = await deps.feedback.record(request.ctx, [result.value]);
        const f = result.value;
        return reply.code(202).send({ request_id: f.requestId, item_id: f.itemId, type: f.type, status });
      }
      const raw = body.feedback;
      if (raw.length > maxBatch)
        throw new CairnError(
          'CAIRN_BATCH_TOO_LARGE',
          `a batch holds at most ${maxBatch} feedback entries, got ${raw.length}`,
          { max: maxBatch, got: raw.length },
        );
      const outcomes: FeedbackOutcome[] = new Array<FeedbackOutcome>(raw.length);
      const valid: FeedbackInput[] = [];
      const at: number[] = [];
      raw.forEach((entry, i) => {
        const result = validateFeedback(entry, maxTime);
        if (result.ok) {
          valid.push(result.value);
          at.push(i);
        } else {
          const first: Issue = result.issues[0];
          outcomes[i] = { status: 'rejected', error: first };
        }
      });
      if (valid.length > 0) {
        const stored = await deps.feedback.record(request.ctx, valid);
        stored.forEach((status, j) => (outcomes[at[j]] = { status }));
      }
      return reply.code(200).send(feedbackOutcomesToWire(outcomes));
    },
  );
}
