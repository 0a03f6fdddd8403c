/** The model-management contract (implemented by service.ts): registry reads, training, promotion. */
import type { RequestContext } from '../domain/context.ts';
import type { Job, ModelVersion, TrainRequest } from '../domain/types.ts';

export interface ModelService {
  list(ctx: RequestContext, limit?: number): Promise<ModelVersion[]>;
  /** Queues a training job; throws CAIRN_VALIDATION for an unknown algorithm or bad params. */
  train(ctx: RequestContext, request: TrainRequest): Promise<Job>;
  /** Throws CAIRN_MODEL_NOT_FOUND or CAIRN_MODEL_NOT_PROMOTABLE. */
  promote(ctx: RequestContext, version: string): Promise<ModelVersion>;
  /** Makes the previous champion the champion again; throws CAIRN_NO_PREVIOUS_MODEL. */
  rollback(ctx: RequestContext): Promise<ModelVersion>;
}
