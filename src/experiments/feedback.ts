/**
 * Feedback: clicks, conversions and impressions tied to a served answer by its request id.
 *
 * Two ways in:
 * - `POST /v1/feedback` → `FeedbackService.record`, stored directly in the served log's feedback table
 *   (idempotent by request, item and type);
 * - behaviour events that carry the answer's `request_id` (ingest keeps it in `context.request_id`)
 *   → `FeedbackProjector`, a consumer of the event log that maps event types to feedback types with
 *   `experiments.outcomes` (e.g. purchase → conversion, with the event's value as revenue).
 * Either way, feedback counts in results once its request's served answer is in the log.
 */
import type { Config } from '../config/load.ts';
import type { RequestContext } from '../domain/context.ts';
import type { FeedbackRecord, FeedbackType, StoredEvent } from '../domain/types.ts';
import { TimeSlicer } from '../domain/cooperative.ts';
import { CairnError } from '../errors/errors.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { EventLog, LogConsumer, ServedLogStore } from '../storage/ports.ts';
import type { FeedbackOutcome, FeedbackService } from './contracts.ts';
import { validateFeedback } from './validate.ts';

/** Entries validated between two looks at the clock, and stored per write. */
const SLICE_UNIT = 256;
const WRITE_CHUNK = 500;

/** Durable consumer name of the feedback projector (production: one per deployment, in the workers). */
export const FEEDBACK_DURABLE = 'cairn-feedback';

export interface FeedbackServiceOptions {
  served: Pick<ServedLogStore, 'addFeedback'>;
  /** Largest batch accepted (`server.maxBatchEvents`). */
  maxBatch: number;
  /** Feedback timestamped further than this into the future is rejected (`events.maxFutureSkewSeconds`). */
  maxFutureSkewMs?: number;
  now?: () => number;
}

/** Builds the feedback service. */
export function createFeedbackService(options: FeedbackServiceOptions): FeedbackService {
  const now = options.now ?? Date.now;
  const skew = options.maxFutureSkewMs ?? 300_000;
  return {
    async record(_ctx: RequestContext, raw: unknown[]): Promise<FeedbackOutcome[]> {
      if (raw.length > options.maxBatch)
        throw new CairnError(
          'CAIRN_BATCH_TOO_LARGE',
          `a batch holds at most ${options.maxBatch} feedback entries, got ${raw.length}`,
          { max: options.maxBatch, got: raw.length },
        );
      const at = now();
      const outcomes: FeedbackOutcome[] = [];
      const records: FeedbackRecord[] = [];
      const stored: number[] = [];
      // A 10,000-entry batch costs ~0.5 s of validation and inserts: done in slices and chunks, so the
      // event loop keeps answering other requests meanwhile (entries are independent and idempotent).
      const slicer = new TimeSlicer();
      for (let i = 0; i < raw.length; i++) {
        if (i % SLICE_UNIT === 0) await slicer.turn();
        const result = validateFeedback(raw[i], at + skew);
        if (!result.ok) {
          outcomes.push({ status: 'rejected', feedback: null, error: result.issues[0] });
          continue;
        }
        const f = result.value;
        outcomes.push({ status: 'accepted', feedback: f });
        stored.push(i);
        records.push({
          requestId: f.requestId,
          itemId: f.itemId,
          type: f.type,
          value: f.value ?? null,
          at: f.timestamp ?? at,
        });
      }
      for (let c = 0; c < records.length; c += WRITE_CHUNK) {
        await slicer.turn();
        const written = await options.served.addFeedback(records.slice(c, c + WRITE_CHUNK));
        written.forEach((o, j) => {
          if (o === 'duplicate') outcomes[stored[c + j]].status = 'duplicate';
        });
      }
      return outcomes;
    },
  };
}

/**
 * The feedback an event stands for, or null: it must carry a string `context.request_id` and its type
 * must be one of the configured outcomes. A conversion keeps the event's value as revenue when it is a
 * finite number ≥ 0.
 */
export function feedbackFromEvent(
  event: Pick<StoredEvent, 'itemId' | 'type' | 'value' | 'timestamp' | 'context'>,
  outcomes: Readonly<Record<string, FeedbackType>>,
): FeedbackRecord | null {
  const requestId = event.context?.request_id;
  if (typeof requestId !== 'string' || requestId.length === 0) return null;
  const type = Object.hasOwn(outcomes, event.type) ? outcomes[event.type] : undefined;
  if (type === undefined) return null;
  const value =
    type === 'conversion' &&
    typeof event.value === 'number' &&
    Number.isFinite(event.value) &&
    event.value >= 0
      ? event.value
      : null;
  return { requestId, itemId: event.itemId, type, value, at: event.timestamp };
}

export interface FeedbackProjectorOptions {
  eventLog: Pick<EventLog, 'consume'>;
  served: Pick<ServedLogStore, 'addFeedback'>;
  config: Readonly<Pick<Config, 'experiments'>>;
  logger: Logger;
  /**
   * Durable consumer name (production: FEEDBACK_DURABLE, shared by the workers). Without it the
   * consumer is private and starts from the beginning of the log: feedback is idempotent, so a
   * replay changes nothing.
   */
  durable?: string;
  batchSize?: number;
}

/**
 * Turns events carrying a request id into feedback. At least once, idempotent (the feedback key); a
 * failing store write rejects the batch, which the log delivers again after a backoff.
 */
export class FeedbackProjector {
  private consumer: LogConsumer | null = null;
  private failing = false;

  constructor(private readonly options: FeedbackProjectorOptions) {}

  start(): void {
    const { eventLog, durable, batchSize, logger, served, config } = this.options;
    const outcomes = config.experiments.outcomes;
    this.consumer = eventLog.consume(
      durable ? { durable, batchSize: batchSize ?? 1000 } : { after: 0, batchSize: batchSize ?? 1000 },
      async (batch) => {
        const records: FeedbackRecord[] = [];
        for (const e of batch) {
          const f = feedbackFromEvent(e, outcomes);
          if (f) records.push(f);
        }
        if (records.length === 0) return;
        try {
          await served.addFeedback(records);
          if (this.failing) logger.info('feedback store reachable again');
          this.failing = false;
        } catch (err) {
          if (!this.failing) logger.warn({ err }, 'could not store feedback from events; retrying');
          this.failing = true;
          throw err;
        }
      },
    );
  }

  /** Highest event-log seq handled. */
  get position(): number {
    return this.consumer?.position ?? 0;
  }

  /** Resolves once events up to `seq` are handled. */
  async caughtUp(seq: number): Promise<void> {
    if (this.consumer) await this.consumer.caughtUp(seq);
  }

  async close(): Promise<void> {
    await this.consumer?.close();
    this.consumer = null;
  }
}
