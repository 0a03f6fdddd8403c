/** The model-management service behind `/v1/models`: registry reads, training jobs, promotion, rollback. */
import { getAlgorithm, resolveParams } from '../algorithms/index.ts';
import type { Config } from '../config/load.ts';
import type { RequestContext } from '../domain/context.ts';
import type { Job, ModelVersion, TrainRequest } from '../domain/types.ts';
import { CairnError } from '../errors/errors.ts';
import type { JobQueue } from '../jobs/contracts.ts';
import type { ModelRegistry } from '../registry/registry.ts';
import type { ModelService } from './contracts.ts';

export class ModelManagement implements ModelService {
  constructor(
    private readonly config: Readonly<Config>,
    private readonly registry: ModelRegistry,
    private readonly jobs: Pick<JobQueue, 'enqueue'>,
    /** Told after a job was queued (a runner in this process can start at once instead of polling). */
    private readonly onQueued: () => void = () => undefined,
  ) {}

  list(_ctx: RequestContext, limit?: number): Promise<ModelVersion[]> {
    return this.registry.list(limit);
  }

  async train(ctx: RequestContext, request: TrainRequest): Promise<Job> {
    validateTrainRequest(this.config, request);
    const job = await this.jobs.enqueue(
      'train',
      { ...request, requested_by: ctx.principal.id },
      {
        maxAttempts: this.config.jobs.maxAttempts,
      },
    );
    this.onQueued();
    return job;
  }

  promote(_ctx: RequestContext, version: string): Promise<ModelVersion> {
    return this.registry.promote(version);
  }

  rollback(_ctx: RequestContext): Promise<ModelVersion> {
    return this.registry.rollback();
  }
}

/** Fails fast (before queueing) on an unknown algorithm or a bad hyper-parameter. */
export function validateTrainRequest(config: Readonly<Config>, request: TrainRequest): void {
  const algorithm = request.algorithm ?? config.training.algorithm;
  let spec;
  try {
    spec = getAlgorithm(algorithm);
  } catch {
    throw CairnError.validation([{ field: 'algorithm', message: `unknown algorithm "${algorithm}"` }]);
  }
  try {
    resolveParams(spec, { ...(config.training.params[algorithm] ?? {}), ...(request.params ?? {}) });
  } catch (err) {
    throw CairnError.validation([{ field: 'params', message: (err as Error).message }]);
  }
}
