/** Model registry and jobs: list, model card, train, promote (with force), rollback; job status. */
import type { FastifyInstance } from 'fastify';
import type { TrainRequest } from '../../domain/types.ts';
import {
  IdParams,
  JobResponse,
  ModelResponse,
  ModelsQuery,
  ModelsResponse,
  PromoteBody,
  TrainAcceptedResponse,
  TrainBody,
  VersionParams,
  withErrors,
  type IdParamsWire,
  type ModelsQueryWire,
  type ModelsWire,
  type PromoteBodyWire,
  type TrainBodyWire,
  type VersionParamsWire,
} from '../schemas.ts';
import { jobToWire, modelToWire } from '../wire.ts';
import { emptyBodyAsObject, type RouteContext } from './common.ts';

export function registerModelRoutes(app: FastifyInstance, { deps }: RouteContext): void {
  app.get<{ Querystring: ModelsQueryWire }>(
    '/v1/models',
    {
      config: { scope: 'read' },
      schema: {
        tags: ['models'],
        operationId: 'listModels',
        summary: 'Model versions, newest first',
        querystring: ModelsQuery,
        response: withErrors({ 200: ModelsResponse }),
      },
    },
    async (request): Promise<ModelsWire> => ({
      models: (await deps.models.list(request.ctx, request.query.limit)).map(modelToWire),
    }),
  );

  app.post<{ Body: TrainBodyWire }>(
    '/v1/models/train',
    {
      config: { scope: 'admin' },
      schema: {
        tags: ['models'],
        operationId: 'trainModel',
        summary: 'Queue a training job',
        description: 'Answers 202 with the job id; poll GET /v1/jobs/{id}. The body is optional.',
        body: TrainBody,
        response: withErrors({ 202: TrainAcceptedResponse }),
      },
      preValidation: emptyBodyAsObject,
    },
    async (request, reply) => {
      const body = request.body;
      const train: TrainRequest = {};
      if (body.algorithm !== undefined) train.algorithm = body.algorithm;
      if (body.params !== undefined) train.params = body.params;
      if (body.promote !== undefined) train.promote = body.promote;
      const job = await deps.models.train(request.ctx, train);
      return reply.code(202).send({ job_id: job.id, status: job.status });
    },
  );

  app.get<{ Params: VersionParamsWire }>(
    '/v1/models/:version',
    {
      config: { scope: 'read' },
      schema: {
        tags: ['models'],
        operationId: 'getModel',
        summary: 'One model version with its lineage (model card)',
        description:
          'Trigger, data snapshot (event watermark, training-set hash), code version, metrics, the gate ' +
          'decision with every check, the drift reference and the audit trail.',
        params: VersionParams,
        response: withErrors({ 200: ModelResponse }),
      },
    },
    async (request) => modelToWire(await deps.models.getModel(request.ctx, request.params.version)),
  );

  app.post<{ Params: VersionParamsWire; Body: PromoteBodyWire }>(
    '/v1/models/:version/promote',
    {
      config: { scope: 'admin' },
      schema: {
        tags: ['models'],
        operationId: 'promoteModel',
        summary: 'Make a model version the champion',
        description:
          'A `rejected` version (failed its gate) needs `{"force": true}`; the forced promotion is recorded ' +
          'in its audit trail with the caller and `reason`. Otherwise 409 CAIRN_MODEL_NOT_PROMOTABLE. ' +
          'The body is optional.',
        params: VersionParams,
        body: PromoteBody,
        response: withErrors({ 200: ModelResponse }),
      },
      preValidation: emptyBodyAsObject,
    },
    async (request) => {
      const { force, reason } = request.body;
      return modelToWire(await deps.models.promote(request.ctx, request.params.version, { force, reason }));
    },
  );

  app.post(
    '/v1/models/rollback',
    {
      config: { scope: 'admin' },
      schema: {
        tags: ['models'],
        operationId: 'rollbackModel',
        summary: 'Make the previous champion the champion again',
        response: withErrors({ 200: ModelResponse }),
      },
    },
    async (request) => modelToWire(await deps.models.rollback(request.ctx)),
  );

  app.get<{ Params: IdParamsWire }>(
    '/v1/jobs/:id',
    {
      config: { scope: 'read' },
      schema: {
        tags: ['jobs'],
        operationId: 'getJob',
        summary: 'Status of a background job',
        params: IdParams,
        response: withErrors({ 200: JobResponse }),
      },
    },
    async (request) => jobToWire(await deps.jobs.get(request.ctx, request.params.id)),
  );
}
