/** The model-management service behind `/v1/models`: registry reads, training jobs, promotion, rollback. */
import { getAlgorithm, resolveParams } from '../algorithms/index.ts';
import type { ModelService, TrainRequest } from '../api/deps.ts';
import type { Config } from '../config/load.ts';
import type { Job, ModelVersion } from '../domain/types.ts';
import { CairnError } from '../errors/errors.ts';
import type { InProcessQueue } from '../jobs/queue.ts';
import type { ModelRegistry } from '../registry/registry.ts';

export class ModelManagement implements ModelService {
  constructor(
    private readonly config: Readonly<Config>,
    private readonly registry: ModelRegistry,
    private readonly queue: InProcessQueue,
  ) {}

  list(limit?: number): Promise<ModelVersion[]> {
    return this.registry.list(limit);
  }

  async train(request: TrainRequest): Promise<Job> {
    validateTrainRequest(this.config, request);
    return this.queue.enqueue('train', request);
  }

  promote(version: string): Promise<ModelVersion> {
    return this.registry.promote(version);
  }

  rollback(): Promise<ModelVersion> {
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
