/** The model-management contract (implemented by service.ts): registry reads, training, promotion. */
import type { RequestContext } from '../domain/context.ts';
import type { Job, ModelVersion, TrainRequest } from '../domain/types.ts';

/** Options of a promotion asked for by a caller. */
export interface PromoteRequest {
  /** Needed to promote a `rejected` version; recorded (with the caller and the reason) in its audit. */
  force?: boolean;
  reason?: string;
}

export interface ModelService {
  list(ctx: RequestContext, limit?: number): Promise<ModelVersion[]>;
  /** One version with its full lineage (the model card); throws CAIRN_MODEL_NOT_FOUND. */
  getModel(ctx: RequestContext, version: string): Promise<ModelVersion>;
  /**
   * Queues a training job; throws CAIRN_VALIDATION for an unknown algorithm or bad params. An identical
   * request (same algorithm, resolved params and promote flag) while one is unfinished returns that job.
   */
  train(ctx: RequestContext, request: TrainRequest): Promise<Job>;
  /**
   * Promotes as the context's principal. Throws CAIRN_MODEL_NOT_FOUND, or CAIRN_MODEL_NOT_PROMOTABLE
   * (failed, training, or rejected without `force`).
   */
  promote(ctx: RequestContext, version: string, request?: PromoteRequest): Promise<ModelVersion>;
  /** Makes the previous champion the champion again; throws CAIRN_NO_PREVIOUS_MODEL. */
  rollback(ctx: RequestContext): Promise<ModelVersion>;
}
