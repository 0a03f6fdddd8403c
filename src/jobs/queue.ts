/**
 * What a job handler sees: its context (progress, cancellation, logger) and how it tells a permanent
 * failure from a retryable one. The queue itself is the `JobQueue` port (contracts.ts) with one adapter
 * per backend, and `JobRunner` (runner.ts) drives handlers against it; this file holds no I/O so that
 * handlers (the training pipeline) depend on these few types only.
 */
import type { JsonObject } from '../domain/types.ts';
import { isCairnError } from '../errors/errors.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { JobName, JobPayloads } from './contracts.ts';

/** Thrown (or a CairnError with a 4xx code) to fail a job without retrying it. */
export class PermanentJobError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PermanentJobError';
  }
}

/**
 * True when retrying cannot help: a PermanentJobError, or a CairnError the caller caused (4xx: bad input,
 * not enough data). Anything else (a backend outage, a crash) is worth another attempt.
 */
export function isPermanent(err: unknown): boolean {
  return err instanceof PermanentJobError || (isCairnError(err) && err.isClientError);
}

export interface JobContext {
  jobId: string;
  /** The attempt running now (1 for the first). */
  attempt: number;
  /**
   * Reports progress 0..1. Cheap to call often: the runner persists the latest value with its next
   * heartbeat, at most every `progressIntervalMs`.
   */
  progress(fraction: number): void;
  /**
   * Aborted when the runner stops (shutdown) or loses the job's lease (another worker took it over):
   * the handler should stop promptly, its result would be discarded.
   */
  signal: AbortSignal;
  logger: Logger;
}

export type JobHandler<N extends JobName> = (payload: JobPayloads[N], ctx: JobContext) => Promise<JsonObject>;
