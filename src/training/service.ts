/** The model-management service behind `/v1/models`: registry reads, training jobs, promotion, rollback. */
import { createHash } from 'node:crypto';
import { getAlgorithm, resolveParams } from '../algorithms/index.ts';
import type { Params } from '../algorithms/types.ts';
import type { Config } from '../config/load.ts';
import type { RequestContext } from '../domain/context.ts';
import type { Job, ModelVersion, TrainRequest } from '../domain/types.ts';
import { CairnError } from '../errors/errors.ts';
import type { JobQueue } from '../jobs/contracts.ts';
import type { ModelRegistry } from '../registry/registry.ts';
import type { ModelService, PromoteRequest } from './contracts.ts';

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

  getModel(_ctx: RequestContext, version: string): Promise<ModelVersion> {
    return this.registry.get(version);
  }

  /**
   * Queues a training (trigger `manual` unless the request names one). Identical unfinished requests
   * share one job (`dedupeKey` `train:manual:<hash>` of the algorithm, resolved params and promote
   * flag), so a retried or doubled POST never trains twice.
   */
  async train(ctx: RequestContext, request: TrainRequest): Promise<Job> {
    const resolved = validateTrainRequest(this.config, request);
    const promote = request.promote !== false;
    // HTTP callers cannot name a trigger (the route builds the request); in-process callers (the demo
    // seeding) may, and get their own dedupe space.
    const trigger = request.trigger ?? { kind: 'manual', key: null };
    const payload: TrainRequest = { ...request, trigger, requested_by: ctx.principal.id };
    const job = await this.jobs.enqueue(
      'train',
      { ...payload },
      {
        maxAttempts: this.config.jobs.maxAttempts,
        dedupeKey: `train:${trigger.kind}:${requestHash(resolved.algorithm, resolved.params, promote)}`,
      },
    );
    this.onQueued();
    return job;
  }

  promote(ctx: RequestContext, version: string, request: PromoteRequest = {}): Promise<ModelVersion> {
    return this.registry.promote(version, {
      by: ctx.principal.id,
      force: request.force === true,
      reason: request.reason,
    });
  }

  rollback(ctx: RequestContext): Promise<ModelVersion> {
    return this.registry.rollback({ by: ctx.principal.id });
  }
}

/** Stable hash of what a training request asks for (params in key order). */
export function requestHash(algorithm: string, params: Params, promote: boolean): string {
  const sorted = Object.keys(params)
    .sort()
    .map((k) => [k, params[k]]);
  return createHash('sha256')
    .update(JSON.stringify([algorithm, sorted, promote]))
    .digest('hex')
    .slice(0, 24);
}

/**
 * Fails fast (before queueing) on an unknown algorithm or a bad hyper-parameter; returns the algorithm
 * and its resolved params.
 */
export function validateTrainRequest(
  config: Readonly<Config>,
  request: TrainRequest,
): { algorithm: string; params: Params } {
  const algorithm = request.algorithm ?? config.training.algorithm;
  let spec;
  try {
    spec = getAlgorithm(algorithm);
  } catch {
    throw CairnError.validation([{ field: 'algorithm', message: `unknown algorithm "${algorithm}"` }]);
  }
  try {
    return {
      algorithm,
      params: resolveParams(spec, {
        ...(config.training.params[algorithm] ?? {}),
        ...(request.params ?? {}),
      }),
    };
  } catch (err) {
    throw CairnError.validation([{ field: 'params', message: (err as Error).message }]);
  }
}
