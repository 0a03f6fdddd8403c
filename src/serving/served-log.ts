/**
 * The served-recommendation log as seen from the hot path: a buffered, bounded, best-effort writer.
 *
 * Every answer (and every shadow answer) is recorded so feedback can be attributed to it by request
 * id, but serving must never wait for the store nor fail because of it. Records are queued in memory
 * and written in batches (every `flushMs`, or as soon as `batchSize` are waiting); when the buffer is
 * full new records are dropped, and a batch the store refuses is dropped too (a retry would only grow
 * the backlog while the store is down). Both are counted, so an operator sees how much attribution
 * was lost: `cairn_served_log_records_total{outcome="written|dropped|failed"}`.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { ServedRecord } from '../domain/types.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { Metrics } from '../monitoring/metrics.ts';
import type { ServedLogStore } from '../storage/ports.ts';

export interface ServedLogOptions {
  /** Most records held in memory; beyond it new records are dropped (default 20,000). */
  maxBuffer?: number;
  /** Most records per store call; a full batch is flushed at once (default 500). */
  batchSize?: number;
  /**
   * Longest a record waits before it is written (default 50 ms). Short, so each batch is small: handing a
   * batch to the store (to a writer thread: a structured clone on the event loop) holds the loop ~9 µs
   * per record (CPU profile of bench:load), so at 1,000 answers/s a 200 ms batch held it ~1.7 ms.
   */
  flushMs?: number;
}

/** Where the recommender sends what it served (the writer below; tests may collect instead). */
export interface ServedLogSink {
  write(record: ServedRecord): void;
}

/** The counters of the writer, shared by every writer of one metrics registry. */
interface ServedLogMetrics {
  records: Counter<'outcome'>;
  buffered: Gauge;
}

const metricsByRegistry = new WeakMap<Registry, ServedLogMetrics>();

function servedLogMetrics(registry: Registry): ServedLogMetrics {
  let m = metricsByRegistry.get(registry);
  if (!m) {
    m = {
      records: new Counter({
        name: 'cairn_served_log_records_total',
        help: 'Served-log records by outcome: written to the store, dropped (buffer full or closed), failed (store refused the batch)',
        labelNames: ['outcome'] as const,
        registers: [registry],
      }),
      buffered: new Gauge({
        name: 'cairn_served_log_buffered_records',
        help: 'Served-log records waiting in memory to be written',
        registers: [registry],
      }),
    };
    // Export the three outcomes from the start, so a rate() over them exists before the first drop.
    for (const outcome of ['written', 'dropped', 'failed']) m.records.inc({ outcome }, 0);
    metricsByRegistry.set(registry, m);
  }
  return m;
}

export class ServedLogWriter implements ServedLogSink {
  private buffer: ServedRecord[] = [];
  private readonly maxBuffer: number;
  private readonly batchSize: number;
  private readonly timer: NodeJS.Timeout;
  private flushing: Promise<void> | null = null;
  private soon = false;
  private closed = false;
  private readonly m: ServedLogMetrics;

  constructor(
    private readonly store: Pick<ServedLogStore, 'record'>,
    metrics: Pick<Metrics, 'registry'>,
    private readonly logger: Logger,
    options: ServedLogOptions = {},
  ) {
    this.maxBuffer = Math.max(1, options.maxBuffer ?? 20_000);
    this.batchSize = Math.max(1, options.batchSize ?? 500);
    this.m = servedLogMetrics(metrics.registry);
    this.timer = setInterval(() => void this.flush(), Math.max(1, options.flushMs ?? 50));
    this.timer.unref();
  }

  /** Records waiting to be written. */
  get pending(): number {
    return this.buffer.length;
  }

  /** Queues one record; never blocks and never throws (a full buffer or a closed writer drops it). */
  write(record: ServedRecord): void {
    if (this.closed || this.buffer.length >= this.maxBuffer) {
      this.m.records.inc({ outcome: 'dropped' });
      return;
    }
    this.buffer.push(record);
    this.m.buffered.set(this.buffer.length);
    if (this.buffer.length >= this.batchSize && !this.soon) {
      // A full batch goes out without waiting for the timer, after the current request finishes.
      this.soon = true;
      setImmediate(() => {
        this.soon = false;
        void this.flush();
      });
    }
  }

  /**
   * Writes what is buffered now, batch by batch; resolves when done. One flush runs at a time (a call
   * during a flush waits for it and then writes what arrived meanwhile). Never rejects.
   */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.buffer.length === 0) return;
    const run = this.drain();
    this.flushing = run;
    try {
      await run;
    } finally {
      this.flushing = null;
    }
  }

  /** Stops the timer and writes everything still buffered; later writes are dropped. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    await this.flush();
  }

  private async drain(): Promise<void> {
    // Only what is buffered when the flush starts: records arriving meanwhile wait for the next one,
    // so a steady stream of answers cannot keep a flush (and close) running forever.
    let left = this.buffer.length;
    while (left > 0 && this.buffer.length > 0) {
      const batch = this.buffer.splice(0, Math.min(this.batchSize, left));
      left -= batch.length;
      this.m.buffered.set(this.buffer.length);
      try {
        await this.store.record(batch);
        this.m.records.inc({ outcome: 'written' }, batch.length);
      } catch (err) {
        this.m.records.inc({ outcome: 'failed' }, batch.length);
        this.logger.warn(
          { err, records: batch.length },
          'could not write served-log records; dropped them (feedback on these answers will not be attributed)',
        );
      }
    }
  }
}
