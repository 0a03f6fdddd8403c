/**
 * Consumers of the change feed that keep derived state current:
 *
 * - `OnlineProjector` applies the event log and the change log to the online state (popularity, recent
 *   histories, opt-outs, catalog, cache invalidation). Embedded it is a private consumer resuming from
 *   the online state's own watermarks (restored from a snapshot, so a restart does not rescan the log);
 *   in production one durable consumer (in the worker role) writes the shared Redis state.
 * - `StoreWriter` (production) feeds the store of record from the event log: events wait in JetStream
 *   while PostgreSQL is down and land, exactly once by event id, when it is back.
 *
 * Both are at-least-once consumers with idempotent handlers (watermarks, event ids).
 */
import type { StoredEvent } from '../domain/types.ts';
import type { Logger } from '../monitoring/logger.ts';
import type {
  ChangeLog,
  EntityChange,
  EventLog,
  EventStore,
  LogConsumer,
  LogRecord,
  OnlineState,
} from '../storage/ports.ts';

/** Serializes async sections: the two logs' batches are applied one at a time (see OnlineProjector). */
class Mutex {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => undefined);
    return next;
  }
}

export interface OnlineProjectorOptions {
  online: OnlineState;
  eventLog: EventLog;
  changeLog: ChangeLog;
  logger: Logger;
  /**
   * Durable consumer names (production: one projector shared by every worker). Without them the
   * projector is private to this process and resumes from the online state's watermarks.
   */
  durable?: { events: string; changes: string };
  batchSize?: number;
  /** Called after each applied batch (e.g. to schedule a snapshot of an in-memory state). */
  onApplied?: (what: 'events' | 'changes', count: number) => void;
}

export class OnlineProjector {
  private events: LogConsumer | null = null;
  private changes: LogConsumer | null = null;
  private readonly lock = new Mutex();

  constructor(private readonly options: OnlineProjectorOptions) {}

  /** Starts both consumers (from the online state's watermarks unless durable). */
  async start(): Promise<void> {
    const { online, eventLog, changeLog, durable, batchSize } = this.options;
    const marks = durable ? { events: 0, changes: 0 } : await online.watermarks();
    this.events = eventLog.consume(
      durable ? { durable: durable.events, batchSize } : { after: marks.events, batchSize },
      (batch) => this.applyEvents(batch),
    );
    this.changes = changeLog.consume(
      durable ? { durable: durable.changes, batchSize } : { after: marks.changes, batchSize },
      (batch) => this.applyChanges(batch),
    );
  }

  /** Highest event-log seq this process's projector has applied (0 when durable and idle). */
  get eventPosition(): number {
    return this.events?.position ?? 0;
  }

  /** Highest change-log seq this process's projector has applied. */
  get changePosition(): number {
    return this.changes?.position ?? 0;
  }

  /**
   * Resolves once the events up to `seq` are applied (read-your-writes for the all-in-one process).
   * Before `start()` and after `close()` there is nothing to wait for: it resolves at once.
   */
  async eventsCaughtUp(seq: number): Promise<void> {
    if (this.events) await this.events.caughtUp(seq);
  }

  /** Like `eventsCaughtUp`, for the change log. */
  async changesCaughtUp(seq: number): Promise<void> {
    if (this.changes) await this.changes.caughtUp(seq);
  }

  async close(): Promise<void> {
    await Promise.all([this.events?.close(), this.changes?.close()]);
    this.events = null;
    this.changes = null;
  }

  private applyEvents(batch: StoredEvent[]): Promise<void> {
    return this.lock.run(async () => {
      await this.options.online.applyEvents(batch);
      this.options.onApplied?.('events', batch.length);
    });
  }

  /**
   * An erase subtracts only the events the state had applied (seq ≤ its event watermark): events the
   * projector never saw (erased from the log before it read them) were never added. Batches of the two
   * logs never interleave (mutex), so the watermark read here is the one the subtraction meets.
   */
  private applyChanges(batch: LogRecord<EntityChange>[]): Promise<void> {
    return this.lock.run(async () => {
      const { online } = this.options;
      let records = batch;
      if (batch.some((r) => r.value.kind === 'erase')) {
        const applied = (await online.watermarks()).events;
        records = batch.map((r) =>
          r.value.kind === 'erase'
            ? { seq: r.seq, value: { ...r.value, events: r.value.events.filter((e) => e.seq <= applied) } }
            : r,
        );
      }
      await online.applyChanges(records);
      this.options.onApplied?.('changes', batch.length);
    });
  }
}

export interface StoreWriterOptions {
  eventLog: EventLog;
  events: Pick<EventStore, 'appendLogged'>;
  logger: Logger;
  /** Durable consumer name shared by every worker. */
  durable?: string;
  batchSize?: number;
  /** Counts written events (inserted vs duplicate) for metrics. */
  onWritten?: (inserted: number, duplicates: number) => void;
}

/**
 * Writes the event log into the store of record. A failing write (PostgreSQL down) rejects the batch,
 * so the log delivers it again after a backoff; `appendLogged` is idempotent by event id and seq.
 */
export class StoreWriter {
  private consumer: LogConsumer | null = null;
  private failing = false;

  constructor(private readonly options: StoreWriterOptions) {}

  start(): void {
    const { eventLog, durable, batchSize, logger } = this.options;
    this.consumer = eventLog.consume(
      { durable: durable ?? 'cairn-store-writer', batchSize: batchSize ?? 1000 },
      async (batch) => {
        try {
          const outcomes = await this.options.events.appendLogged(batch);
          const inserted = outcomes.filter((o) => o === 'inserted').length;
          this.options.onWritten?.(inserted, outcomes.length - inserted);
          if (this.failing) logger.info({ events: batch.length }, 'store of record reachable again');
          this.failing = false;
        } catch (err) {
          if (!this.failing) logger.warn({ err }, 'store of record unavailable; events wait in the log');
          this.failing = true;
          throw err;
        }
      },
    );
  }

  get position(): number {
    return this.consumer?.position ?? 0;
  }

  async caughtUp(seq: number): Promise<void> {
    if (this.consumer) await this.consumer.caughtUp(seq);
  }

  async close(): Promise<void> {
    await this.consumer?.close();
    this.consumer = null;
  }
}
