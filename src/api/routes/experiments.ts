/** Experiments: create, list, show, stop, results. */
import type { FastifyInstance } from 'fastify';
import {
  CreateExperimentBody,
  CreateExperimentDoc,
  ExperimentResponse,
  ExperimentResultsResponse,
  ExperimentsResponse,
  StopExperimentBody,
  type CreateExperimentBodyWire,
  type ExperimentsWire,
  type StopExperimentBodyWire,
} from '../experiment-schemas.ts';
import { experimentToWire, resultsToWire } from '../experiment-wire.ts';
import { IdParams, withErrors, type IdParamsWire } from '../schemas.ts';
import { documentBody, emptyBodyAsObject, type RouteContext } from './common.ts';

export function registerExperimentRoutes(app: FastifyInstance, { deps }: RouteContext): void {
  app.post<{ Body: CreateExperimentBodyWire }>(
    '/v1/experiments',
    {
      schema: {
        tags: ['experiments'],
        operationId: 'createExperiment',
        summary: 'Start an A/B test, a canary or a shadow run',
        description:
          'Answers 201 with the experiment. At most one `ab` or `canary` experiment runs at a time ' +
          '(409 CAIRN_CONFLICT names the running one); shadows run beside it. Users are assigned by a ' +
          'hash of their id (or session id), the same on every replica.',
        body: CreateExperimentBody,
        response: withErrors({ 201: ExperimentResponse }),
      },
      config: { scope: 'admin', swaggerTransform: documentBody(CreateExperimentDoc) },
    },
    async (request, reply) => {
      const experiment = await deps.experiments.createFromWire(request.ctx, request.body);
      return reply.code(201).send(experimentToWire(experiment));
    },
  );

  app.get(
    '/v1/experiments',
    {
      config: { scope: 'read' },
      schema: {
        tags: ['experiments'],
        operationId: 'listExperiments',
        summary: 'Experiments, newest first',
        response: withErrors({ 200: ExperimentsResponse }),
      },
    },
    async (request): Promise<ExperimentsWire> => ({
      experiments: (await deps.experiments.list(request.ctx)).map(experimentToWire),
    }),
  );

  app.get<{ Params: IdParamsWire }>(
    '/v1/experiments/:id',
    {
      config: { scope: 'read' },
      schema: {
        tags: ['experiments'],
        operationId: 'getExperiment',
        summary: 'One experiment',
        params: IdParams,
        response: withErrors({ 200: ExperimentResponse }),
      },
    },
    async (request) => experimentToWire(await deps.experiments.get(request.ctx, request.params.id)),
  );

  app.post<{ Params: IdParamsWire; Body: StopExperimentBodyWire }>(
    '/v1/experiments/:id/stop',
    {
      config: { scope: 'admin' },
      schema: {
        tags: ['experiments'],
        operationId: 'stopExperiment',
        summary: 'Stop an experiment: every user gets the champion again',
        description: 'The body (`{"reason"}`) is optional. Stopping a stopped experiment changes nothing.',
        params: IdParams,
        body: StopExperimentBody,
        response: withErrors({ 200: ExperimentResponse }),
      },
      preValidation: emptyBodyAsObject,
    },
    async (request) =>
      experimentToWire(await deps.experiments.stop(request.ctx, request.params.id, request.body.reason)),
  );

  app.get<{ Params: IdParamsWire }>(
    '/v1/experiments/:id/results',
    {
      config: { scope: 'read' },
      schema: {
        tags: ['experiments'],
        operationId: 'experimentResults',
        summary: 'Per-variant results with 95 % intervals and a sample-ratio-mismatch check',
        description:
          'Counts come from the served-recommendation log and the feedback tied to it by `request_id` ' +
          '(POST /v1/feedback, or events carrying `request_id`).',
        params: IdParams,
        response: withErrors({ 200: ExperimentResultsResponse }),
      },
    },
    async (request) => resultsToWire(await deps.experiments.results(request.ctx, request.params.id)),
  );
}
