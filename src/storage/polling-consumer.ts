/**
 * The consumer loop shared by the SQL logs (SQLite and PostgreSQL tables), which have no push delivery
 * of their own: read a page after the position, hand it to the handler, advance, and when caught up wait
 * for a wake-up (an in-process notify, LISTEN/NOTIFY, a head poll) or, as a safety net, a poll interval.
 *
 * Guarantees, matching `LogConsumer` in ports.ts:
 * - at least once, in log order: a batch that fails is delivered again, exactly the same records, after a
 *   capped exponential backoff; nothing is ever skipped;
 * - durable consumers keep their position in `ConsumerOffsets` and run only while they hold the name's
 *   `ConsumerLock` (at most one active consumer per name across processes); a standby polls for the lock
 *   and takes over from the stored position when the active one stops or dies. The position is stored
 *   at most every `persistEveryMs` and within that long of a batch, and on close (each store is a
 *   durable write: one per batch cost the embedded service a synced SQLite commit per single-event POST
 *   it projected); a takeover after a crash replays at most that much again, as at least once allows;
 * - backend failures (database down, lock connection lost) never escape: they are reported to `onError`
 *   and retried, so a consumer never crashes its process.
 */
import { yieldToLoop } from '../domain/cooperative.ts';
import { CairnError } from '../errors/errors.ts';
import type { BatchHandler, ConsumerOffsets, LogConsumer } from './ports.ts';

/** Something that signals "the log may have grown": an in-process emitter, LISTEN/NOTIFY, a head poll. */
export interface WakeSource {
  /** Calls `listener` whenever new records may be readable; returns the function that unsubscribes. */
  subscribe(listener: () => void): () => void;
}

/**
 * Exclusive ownership of a durable consumer name across processes (a lease row, an advisory lock).
 * The consumer calls `acquire` until it succeeds, checks `held` before each batch, and `release`s on close.
 */
export interface ConsumerLock {
  /** Tries to become (or stay) the one active consumer of the name; true when held. May throw when the backend is unreachable. */
  acquire(): Promise<boolean>;
  /** False once ownership is lost (lease expired or taken over, lock connection dropped) or released. */
  readonly held: boolean;
  /** Gives ownership up so a standby can take over at once. Idempotent; never throws. */
  release(): Promise<void>;
}

/** Where a durable consumer keeps its position, and the lock that makes it the only active one. */
export interface DurableBinding {
  /** Key of the position in `offsets` (the adapter namespaces it per log, e.g. `events:serving`). */
  key: string;
  offsets: ConsumerOffsets;
  lock: ConsumerLock;
}

/** What went wrong, for logs and metrics; the consumer itself retries. */
export interface ConsumerErrorInfo {
  /** Consumer label, e.g. `events durable:serving` or `changes private`. */
  consumer: string;
  stage: 'read' | 'handle' | 'commit' | 'lock';
  /** Consecutive failures so far (1 for the first). */
  failures: number;
  /** Delay before the next attempt (ms). */
  retryInMs: number;
}

/** Timing and reporting knobs the SQL log adapters pass through to every consumer they start. */
export interface ConsumerTimings {
  /** Safety-net poll while caught up, in case a wake-up was missed (ms). */
  idlePollMs?: number;
  /** How often a standby durable consumer retries to take the name's lock (ms, default 1000). */
  lockRetryMs?: number;
  /** First retry delay after a failure (ms, default 250); doubles per consecutive failure. */
  retryBaseMs?: number;
  /** Cap of the retry delay (ms, default 30 000). */
  retryMaxMs?: number;
  /**
   * A durable consumer stores its position at most this often (ms, default 1000), and within this long
   * of handling a batch; on close at once.
   */
  persistEveryMs?: number;
  /**
   * Told about every failure (handler rejection, unreachable database, lost lock). Storage cannot log;
   * the composition root wires its logger and metrics here. Without it, the first failure of each streak
   * becomes a process warning (`warnOnFailure`), so a stuck consumer is never silent.
   */
  onError?: (error: unknown, info: ConsumerErrorInfo) => void;
}

/** The default `onError`: one process warning per streak of failures, not one per retry. */
export function warnOnFailure(error: unknown, info: ConsumerErrorInfo): void {
  if (info.failures !== 1) return;
  const message = error instanceof Error ? error.message : String(error);
  process.emitWarning(`${info.consumer}: ${info.stage} failed (${message}); retrying with backoff`, {
    code: 'CAIRN_CONSUMER_RETRY',
  });
}

export interface PollingConsumerOptions<R> extends ConsumerTimings {
  /** Label used in error reports. */
  label: string;
  /** Records with seq > `after`, ascending, at most `limit`. */
  read(after: number, limit: number): Promise<R[]>;
  seqOf(record: R): number;
  handler: BatchHandler<R>;
  /** Largest batch handed to the handler (default 1000). */
  batchSize?: number;
  /** Exclusive start of a private consumer (default 0); ignored when `durable` is given. */
  after?: number;
  durable?: DurableBinding;
  wake?: WakeSource;
  /** Called once the consumer has stopped (the owning log forgets it). */
  onStopped?: () => void;
}

/** Default of `ConsumeOptions.batchSize`. */
export const DEFAULT_CONSUME_BATCH = 1000;

/**
 * Delay before retry number `failures` (≥ 1): `baseMs · 2^(failures−1)`, capped at `maxMs`. The
 * consumer spreads it by ±20% so replicas that failed together do not retry in lockstep.
 */
export function retryDelayMs(failures: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.min(30, Math.max(0, failures - 1)));
}

interface Waiter {
  seq: number;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/**
 * A consumer's position and the callers waiting for it (`LogConsumer.position` / `caughtUp`), shared by
 * every consumer implementation: the position only moves forward, each move resolves the waiters it
 * reaches, and closing rejects the rest with CAIRN_UNAVAILABLE.
 */
export class ConsumerPosition {
  private pos: number;
  private waiters: Waiter[] = [];
  private closed = false;

  constructor(
    private readonly label: string,
    start: number,
  ) {
    this.pos = start;
  }

  get value(): number {
    return this.pos;
  }

  /** Whether someone waits for a seq beyond the position. */
  get awaited(): boolean {
    return this.waiters.some((w) => w.seq > this.pos);
  }

  /**
   * Resolves once the position reaches `seq`; rejects if closed first, or at once when `refuse` (the
   * consumer is stopping: no new wait may start) and the position is short.
   */
  wait(seq: number, refuse = false): Promise<void> {
    if (this.pos >= seq) return Promise.resolve();
    if (this.closed || refuse) return Promise.reject(this.closedError(seq));
    return new Promise<void>((resolve, reject) => this.waiters.push({ seq, resolve, reject }));
  }

  /** Moves the position to `seq` (never back) and resolves the waiters it reaches. */
  advance(seq: number): void {
    if (seq <= this.pos) return;
    this.pos = seq;
    if (this.waiters.length === 0) return;
    const still: Waiter[] = [];
    for (const w of this.waiters) {
      if (w.seq <= seq) w.resolve();
      else still.push(w);
    }
    this.waiters = still;
  }

  /** Rejects every waiter and all later waits short of the position. */
  close(): void {
    this.closed = true;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(this.closedError(w.seq));
  }

  private closedError(seq: number): CairnError {
    return new CairnError(
      'CAIRN_UNAVAILABLE',
      `consumer ${this.label} closed at position ${this.pos} before reaching ${seq}`,
    );
  }
}

/** A `LogConsumer` over any readable, seq-ordered source. Starts at construction. */
export class PollingConsumer<R> implements LogConsumer {
  private readonly at: ConsumerPosition;
  /** Where the next read starts; below `pos` only after a durable takeover reloaded an older offset. */
  private cursor: number;
  /** Highest position stored in `offsets` by this consumer (durable only). */
  private persisted = 0;
  /** When the position was last stored (or a store of it failed: then it is due again after the backoff). */
  private persistedAt = -Infinity;
  /** Whether the durable position was loaded since the lock was (re)acquired. */
  private loaded = false;
  /** A batch whose handler failed: delivered again as is, never re-read, so retries see the same records. */
  private pending: R[] | null = null;
  private failures = 0;
  /** Bumped by every wake-up, so one arriving during a read is not lost. */
  private signals = 0;
  private closing = false;
  private sleeper: { timer: NodeJS.Timeout; resolve: () => void; wakeable: boolean } | null = null;
  private readonly batchSize: number;
  private readonly done: Promise<void>;

  constructor(private readonly options: PollingConsumerOptions<R>) {
    this.batchSize = Math.max(1, Math.floor(options.batchSize ?? DEFAULT_CONSUME_BATCH));
    this.at = new ConsumerPosition(
      options.label,
      options.durable ? 0 : Math.max(0, Math.floor(options.after ?? 0)),
    );
    this.cursor = this.at.value;
    this.done = this.run();
  }

  /**
   * Highest seq whose batch the handler completed. Starts at the start point: `after` for a private
   * consumer; for a durable one 0, then the stored position as soon as it holds the name.
   */
  get position(): number {
    return this.at.value;
  }

  caughtUp(seq: number): Promise<void> {
    return this.at.wait(seq, this.closing);
  }

  /** Stops after the batch in progress (its position is still stored); resolves when stopped. */
  close(): Promise<void> {
    if (!this.closing) {
      this.closing = true;
      this.interrupt(true);
    }
    return this.done;
  }

  private async run(): Promise<void> {
    const unsubscribe = this.options.wake?.subscribe(() => {
      this.signals++;
      this.interrupt(false);
    });
    try {
      while (!this.closing) {
        try {
          await this.step();
        } catch (e) {
          // step() handles every expected failure itself; this only keeps a bug (a throwing `seqOf`, a
          // broken source) from ending the loop silently: it is reported and retried like a read.
          await this.fail('read', e);
        }
        // Over a synchronous source (SQLite) a step settles in microtasks alone: without a turn of the loop
        // here, a backlog of many batches (a 10,000-event POST is forty of SQLite's) would be read and
        // handled back to back while every request waits.
        await yieldToLoop();
      }
    } finally {
      unsubscribe?.();
      await this.stop();
    }
  }

  /** One turn of the loop. Never throws: every failure becomes a report and a backoff. */
  private async step(): Promise<void> {
    const { durable } = this.options;
    if (durable) {
      if (!durable.lock.held) {
        // Not (or no longer) the active consumer: whatever was pending belongs to the new owner now.
        this.pending = null;
        this.loaded = false;
        let acquired: boolean;
        try {
          acquired = await durable.lock.acquire();
        } catch (e) {
          return this.fail('lock', e);
        }
        if (!acquired) return this.sleep(this.options.lockRetryMs ?? 1000, false);
        this.failures = 0;
      }
      if (!this.loaded) {
        try {
          // Another process may have advanced the name while this one was standing by.
          this.cursor = await durable.offsets.get(durable.key);
        } catch (e) {
          return this.fail('lock', e);
        }
        this.persisted = this.cursor;
        this.loaded = true;
        this.at.advance(this.cursor);
      }
      if (this.persisted < this.cursor && this.persistDue() && !(await this.persist())) return;
    }

    let batch = this.pending;
    if (batch === null) {
      const seen = this.signals;
      try {
        batch = await this.options.read(this.cursor, this.batchSize);
      } catch (e) {
        return this.fail('read', e);
      }
      if (batch.length === 0) {
        this.failures = 0;
        let wait = this.options.idlePollMs ?? 5000;
        if (durable && this.persisted < this.cursor) {
          // Caught up with a position not stored yet: stored once due, not at every catch-up (under a
          // trickle of events that is every batch); the wait ends by then at the latest.
          if (this.persistDue()) {
            if (!(await this.persist())) return;
          } else wait = Math.min(wait, this.persistDueInMs());
        }
        // A wake-up that arrived while reading means there may already be more: read again at once.
        if (this.signals === seen) await this.sleep(wait, true);
        return;
      }
    }
    if (this.closing || (durable && !durable.lock.held)) return;

    try {
      await this.options.handler(batch);
    } catch (e) {
      this.pending = batch;
      return this.fail('handle', e);
    }
    this.pending = null;
    this.failures = 0;
    this.cursor = this.options.seqOf(batch[batch.length - 1]);
    this.at.advance(this.cursor);
    if (durable && this.persistDue()) await this.persist();
  }

  /** Whether the position should be stored now (see `persistEveryMs`). */
  private persistDue(): boolean {
    return this.persistDueInMs() === 0;
  }

  private persistDueInMs(): number {
    return Math.max(0, this.persistedAt + (this.options.persistEveryMs ?? 1000) - Date.now());
  }

  /** Stores the cursor of a durable consumer; false (after a backoff) when the store is unreachable. */
  private async persist(): Promise<boolean> {
    const { durable } = this.options;
    if (!durable) return true;
    const seq = this.cursor;
    try {
      await durable.offsets.set(durable.key, seq);
      this.persistedAt = Date.now();
    } catch (e) {
      this.persistedAt = -Infinity; // due again as soon as the backoff ends
      // The batch stays handled (position advanced); only the stored position lags and is retried first
      // thing next turn. A crash meanwhile replays at most the batches since the last stored position.
      await this.fail('commit', e);
      return false;
    }
    this.persisted = Math.max(this.persisted, seq);
    return true;
  }

  private async fail(stage: ConsumerErrorInfo['stage'], error: unknown): Promise<void> {
    this.failures++;
    const base = retryDelayMs(
      this.failures,
      this.options.retryBaseMs ?? 250,
      this.options.retryMaxMs ?? 30_000,
    );
    const retryInMs = Math.round(base * (0.8 + 0.4 * Math.random()));
    try {
      (this.options.onError ?? warnOnFailure)(error, {
        consumer: this.options.label,
        stage,
        failures: this.failures,
        retryInMs,
      });
    } catch {
      // A throwing reporter must not stop the consumer.
    }
    // Backoff is for a failing dependency to recover: new appends do not cut it short.
    await this.sleep(retryInMs, false);
  }

  /** Waits `ms`, or less when closed (or woken, if `wakeable`). */
  private sleep(ms: number, wakeable: boolean): Promise<void> {
    if (this.closing) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.sleeper = null;
        resolve();
      }, ms);
      this.sleeper = { timer, resolve, wakeable };
    });
  }

  private interrupt(force: boolean): void {
    const s = this.sleeper;
    if (s && (force || s.wakeable)) {
      clearTimeout(s.timer);
      this.sleeper = null;
      s.resolve();
    }
  }

  private async stop(): Promise<void> {
    const { durable } = this.options;
    if (durable) {
      // Store the final position before giving the name up, so the next owner starts exactly there.
      // Offsets only move forward, so storing after the lock was lost cannot move another owner back.
      if (this.loaded && this.persisted < this.cursor) {
        try {
          await durable.offsets.set(durable.key, this.cursor);
        } catch (e) {
          this.report('commit', e);
        }
      }
      await durable.lock.release().catch((e: unknown) => this.report('lock', e));
    }
    this.at.close();
    this.options.onStopped?.();
  }

  private report(stage: ConsumerErrorInfo['stage'], error: unknown): void {
    try {
      (this.options.onError ?? warnOnFailure)(error, {
        consumer: this.options.label,
        stage,
        failures: 1,
        retryInMs: 0,
      });
    } catch {
      // see fail()
    }
  }
}

/** The consumers a log started, so that closing the log stops them all. */
export class ConsumerSet {
  private readonly live = new Set<LogConsumer>();

  /** Starts a `PollingConsumer` and tracks it until it stops. */
  start<R>(options: PollingConsumerOptions<R>): LogConsumer {
    const consumer: LogConsumer = new PollingConsumer<R>({
      ...options,
      onStopped: () => {
        this.live.delete(consumer);
        options.onStopped?.();
      },
    });
    this.live.add(consumer);
    return consumer;
  }

  async closeAll(): Promise<void> {
    const all = [...this.live];
    this.live.clear();
    await Promise.all(all.map((c) => c.close()));
  }
}
