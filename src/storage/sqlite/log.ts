/**
 * The embedded change feed: the SQLite store's own tables are the logs. The `events` table is the event
 * log (its AUTOINCREMENT seq is the log seq) and the `changes` table the change log. SQLite has a single
 * writer and assigns seqs inside the write transaction, so seq order is commit order and a consumer
 * reading `seq > position` never passes over a row that commits later.
 *
 * Consumers are `PollingConsumer`s. Appends through this process wake them at once (an in-process
 * emitter shared by every log on the same connection); appends by other processes on the same file are
 * noticed by a cheap poll of the head (`headPollMs`). Durable consumers keep their position in
 * `consumer_offsets` and hold a lease row in `consumer_leases` (migration 3) while they run, so at most
 * one process consumes a durable name at a time.
 *
 * The logs borrow the store's connection: close them before the store.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Statement } from 'better-sqlite3';
import { CairnError } from '../../errors/errors.ts';
import type { CairnEvent, StoredEvent } from '../../domain/types.ts';
import type {
  AppendOutcome,
  BatchHandler,
  ChangeLog,
  ConsumeOptions,
  EntityChange,
  EventLog,
  LogConsumer,
  LogRecord,
} from '../ports.ts';
import {
  ConsumerSet,
  type ConsumerLock,
  type ConsumerTimings,
  type WakeSource,
} from '../polling-consumer.ts';
import { withoutSync } from './db.ts';
import { EVENT_COLUMNS, guarded, lazy, toEvent, type Db, type EventRow, type SqliteStore } from './store.ts';

export interface SqliteLogOptions extends ConsumerTimings {
  /** How often to look for appends made by other processes on the same file (ms, default 500). */
  headPollMs?: number;
  /**
   * Lease of a durable consumer name (ms, default 15 000), renewed every third of it. A process that
   * dies holding a name blocks it for at most this long.
   */
  leaseMs?: number;
}

type LogName = 'events' | 'changes';

/** One emitter per connection: every log object on it wakes every consumer on it. */
const emitters = new WeakMap<Db, EventEmitter>();

function emitterOf(db: Db): EventEmitter {
  let e = emitters.get(db);
  if (!e) {
    e = new EventEmitter();
    e.setMaxListeners(0); // one listener per consumer; any number is legitimate
    emitters.set(db, e);
  }
  return e;
}

/**
 * Wakes the consumers of one log: at once for appends through this connection, and after at most
 * `pollMs` for appends through any other connection (another process) on the same file. The head poll
 * runs only while someone listens.
 */
class SqliteWake implements WakeSource {
  private readonly listeners = new Set<() => void>();
  private readonly emitter: EventEmitter;
  private timer: NodeJS.Timeout | null = null;
  private lastHead = -1;

  constructor(
    db: Db,
    private readonly log: LogName,
    private readonly head: () => number,
    private readonly pollMs: number,
  ) {
    this.emitter = emitterOf(db);
  }

  /** Called after a committed append through this connection. */
  notify(): void {
    this.emitter.emit(this.log);
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    this.emitter.on(this.log, listener);
    if (this.timer === null) {
      this.lastHead = this.readHead();
      this.timer = setInterval(() => this.poll(), this.pollMs);
      this.timer.unref(); // a consumer waiting for data must not keep the process alive
    }
    return () => {
      this.emitter.off(this.log, listener);
      this.listeners.delete(listener);
      if (this.listeners.size === 0 && this.timer !== null) {
        clearInterval(this.timer);
        this.timer = null;
      }
    };
  }

  private poll(): void {
    const head = this.readHead();
    if (head === this.lastHead || head < 0) return;
    // Any change wakes: a higher head is an append, a lower one an erasure (spurious but harmless).
    this.lastHead = head;
    for (const l of [...this.listeners]) l();
  }

  private readHead(): number {
    try {
      return this.head();
    } catch {
      // Database busy or closed: the consumers' own reads report it; the poll just tries again.
      return -1;
    }
  }
}

/**
 * Exclusive ownership of a durable name by a lease row, renewed by a timer while held. `held` also
 * turns false by itself shortly before the lease runs out, so a process whose event loop stalls (or
 * whose renewals fail) stops handling batches before a standby may take over. Claims and renewals are
 * committed without an fsync (`withoutSync`): a renewal runs on the event loop every `leaseMs / 3`, and a
 * synced one held the loop 0.1–7 ms, up to ~66 ms while the served-log thread wrote (bench:load); a
 * renewal lost to an OS crash only lets the lease run out sooner.
 */
class SqliteLease implements ConsumerLock {
  private until = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly holder = randomUUID();

  constructor(
    private readonly statements: LeaseStatements,
    private readonly name: string,
    private readonly leaseMs: number,
  ) {}

  get held(): boolean {
    // A tenth of the lease as margin against the time between this check and the end of the batch.
    return Date.now() < this.until - this.leaseMs / 10;
  }

  async acquire(): Promise<boolean> {
    const ok = this.claim();
    if (ok && this.timer === null) {
      this.timer = setInterval(() => {
        try {
          if (!this.claim()) this.stopRenewing(); // taken over after our lease ran out
        } catch {
          // Busy or closed: keep the old expiry; `held` turns false by itself when it passes.
        }
      }, this.leaseMs / 3);
      this.timer.unref();
    }
    return Promise.resolve(ok);
  }

  async release(): Promise<void> {
    this.stopRenewing();
    try {
      this.statements.release().run(this.name, this.holder);
    } catch {
      // Closed or busy: the lease then simply runs out.
    }
    return Promise.resolve();
  }

  /** Takes or renews the lease when it is free, ours, or expired. Throws mapped driver errors. */
  private claim(): boolean {
    const now = Date.now();
    const until = now + this.leaseMs;
    const changes = guarded(() =>
      this.statements.claim({ name: this.name, holder: this.holder, until, now }),
    );
    this.until = changes === 1 ? until : 0;
    return changes === 1;
  }

  private stopRenewing(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.until = 0;
  }
}

interface LeaseParams {
  name: string;
  holder: string;
  until: number;
  now: number;
}

interface LeaseStatements {
  /** Takes or renews a lease, committed without an fsync; the rows changed (1: held). */
  claim: (params: LeaseParams) => number;
  release: () => Statement<[string, string]>;
}

const leaseStatements = new WeakMap<Db, LeaseStatements>();

function leaseStatementsOf(db: Db): LeaseStatements {
  let st = leaseStatements.get(db);
  if (!st) {
    // The UPSERT changes a row only when the name is free, already ours, or its lease ran out.
    const claim = lazy(() =>
      db.prepare<LeaseParams>(
        `INSERT INTO consumer_leases (name, holder, until) VALUES (@name, @holder, @until)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
         WHERE consumer_leases.holder = excluded.holder OR consumer_leases.until <= @now`,
      ),
    );
    st = {
      claim: (params) => withoutSync(db, () => claim().run(params).changes),
      release: lazy(() =>
        db.prepare<[string, string]>('DELETE FROM consumer_leases WHERE name = ? AND holder = ?'),
      ),
    };
    leaseStatements.set(db, st);
  }
  return st;
}

/**
 * A consumer's default batch here. Over SQLite a batch is read and handled in one go on the event loop (the
 * reads are synchronous; the loop turns between batches): a 1,000-event batch read and applied to the
 * online state held it 14–24 ms, a 250-event one a quarter of that (`npm run bench:train-loop`, 10,000-event
 * POSTs beside the probes: probe p50 10–12 → 2.3 ms, the same events/s).
 */
export const SQLITE_CONSUME_BATCH = 250;

/** Shared plumbing of the two SQLite logs: wake-ups, consumers, durable bindings. */
abstract class SqliteLogBase<R> {
  protected readonly db: Db;
  protected readonly wake: SqliteWake;
  private readonly consumers = new ConsumerSet();
  private closed = false;

  protected constructor(
    protected readonly store: SqliteStore,
    private readonly log: LogName,
    protected readonly options: SqliteLogOptions,
  ) {
    this.db = store.db;
    this.wake = new SqliteWake(this.db, log, () => this.headNow(), options.headPollMs ?? 500);
  }

  protected abstract headNow(): number;
  abstract read(after: number, limit: number): Promise<R[]>;
  protected abstract seqOf(record: R): number;

  consume(options: ConsumeOptions, handler: BatchHandler<R>): LogConsumer {
    this.assertOpen();
    const { durable } = options;
    const key = durable === undefined ? undefined : `${this.log}:${durable}`;
    return this.consumers.start<R>({
      ...this.options,
      label: key === undefined ? `${this.log} private` : `${this.log} durable:${durable}`,
      read: (after, limit) => this.read(after, limit),
      seqOf: (r) => this.seqOf(r),
      handler,
      batchSize: options.batchSize ?? SQLITE_CONSUME_BATCH,
      after: options.after,
      wake: this.wake,
      durable:
        key === undefined
          ? undefined
          : {
              key,
              offsets: this.store.offsets,
              lock: new SqliteLease(leaseStatementsOf(this.db), key, this.options.leaseMs ?? 15_000),
            },
    });
  }

  /** Stops every consumer of this log (the store stays open: it belongs to the caller). */
  async close(): Promise<void> {
    this.closed = true;
    await this.consumers.closeAll();
  }

  protected assertOpen(): void {
    if (this.closed) throw new CairnError('CAIRN_UNAVAILABLE', `the ${this.log} log is closed`);
  }
}

/** The event log over the store's `events` table. */
export class SqliteEventLog extends SqliteLogBase<StoredEvent> implements EventLog {
  readonly kind = 'sqlite';
  private readonly page;
  private readonly maxSeq;

  constructor(store: SqliteStore, options: SqliteLogOptions = {}) {
    super(store, 'events', options);
    const db = this.db;
    this.page = lazy(() =>
      db.prepare<[number, number], EventRow>(
        `SELECT ${EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?`,
      ),
    );
    this.maxSeq = lazy(() => db.prepare<[], number>('SELECT COALESCE(MAX(seq), 0) FROM events').pluck());
  }

  /** The store's append: one transaction, idempotent by event id; wakes this process's consumers. */
  async append(events: CairnEvent[]): Promise<AppendOutcome[]> {
    this.assertOpen();
    const outcomes = await this.store.events.append(events);
    if (outcomes.includes('inserted')) this.wake.notify();
    return outcomes;
  }

  async read(after: number, limit: number): Promise<StoredEvent[]> {
    if (limit <= 0) return Promise.resolve([]);
    return Promise.resolve(guarded(() => this.page().all(after, Math.floor(limit)).map(toEvent)));
  }

  async head(): Promise<number> {
    return Promise.resolve(guarded(() => this.headNow()));
  }

  /** The log is the store's table: the user's events leave it (and the store) at once. */
  async forgetUser(userId: string): Promise<void> {
    await this.store.events.deleteForUser(userId);
  }

  protected headNow(): number {
    return this.maxSeq().get() ?? 0;
  }

  protected seqOf(e: StoredEvent): number {
    return e.seq;
  }
}

interface ChangeRow {
  seq: number;
  change: string;
}

/** The change log over the `changes` table (JSON text, AUTOINCREMENT seq). */
export class SqliteChangeLog extends SqliteLogBase<LogRecord<EntityChange>> implements ChangeLog {
  readonly kind = 'sqlite';
  private readonly page;
  private readonly maxSeq;
  private readonly appendTx;

  constructor(store: SqliteStore, options: SqliteLogOptions = {}) {
    super(store, 'changes', options);
    const db = this.db;
    this.page = lazy(() =>
      db.prepare<[number, number], ChangeRow>(
        'SELECT seq, change FROM changes WHERE seq > ? ORDER BY seq LIMIT ?',
      ),
    );
    this.maxSeq = lazy(() => db.prepare<[], number>('SELECT COALESCE(MAX(seq), 0) FROM changes').pluck());
    const insert = lazy(() =>
      db
        .prepare<[string, number], number>(
          'INSERT INTO changes (change, created_at) VALUES (?, ?) RETURNING seq',
        )
        .pluck(),
    );
    // One transaction per call: all or nothing, consecutive seqs in the order given.
    this.appendTx = db.transaction((changes: EntityChange[]): number[] => {
      const now = Date.now();
      return changes.map((c) => insert().get(JSON.stringify(c), now)!);
    });
  }

  async append(changes: EntityChange[]): Promise<number[]> {
    this.assertOpen();
    if (changes.length === 0) return Promise.resolve([]);
    const seqs = guarded(() => this.appendTx.immediate(changes));
    this.wake.notify();
    return Promise.resolve(seqs);
  }

  async read(after: number, limit: number): Promise<LogRecord<EntityChange>[]> {
    if (limit <= 0) return Promise.resolve([]);
    return Promise.resolve(
      guarded(() =>
        this.page()
          .all(after, Math.floor(limit))
          .map((r) => ({ seq: r.seq, value: JSON.parse(r.change) as EntityChange })),
      ),
    );
  }

  async head(): Promise<number> {
    return Promise.resolve(guarded(() => this.headNow()));
  }

  /** A scan of the table: erasures are rare, and user records are a small part of the log. */
  async forgetUser(userId: string): Promise<void> {
    guarded(() =>
      this.db
        .prepare(
          `DELETE FROM changes
           WHERE json_extract(change, '$.kind') = 'user' AND json_extract(change, '$.user.id') = ?`,
        )
        .run(userId),
    );
    return Promise.resolve();
  }

  async remove(seqs: number[]): Promise<void> {
    if (seqs.length === 0) return Promise.resolve();
    guarded(() =>
      this.db
        .prepare('DELETE FROM changes WHERE seq IN (SELECT value FROM json_each(?))')
        .run(JSON.stringify(seqs)),
    );
    return Promise.resolve();
  }

  async durableFloor(): Promise<number | null> {
    return Promise.resolve(
      guarded(() =>
        this.db
          .prepare<[], number | null>(`SELECT MIN(seq) FROM consumer_offsets WHERE name LIKE 'changes:%'`)
          .pluck()
          .get(),
      ) ?? null,
    );
  }

  protected headNow(): number {
    return this.maxSeq().get() ?? 0;
  }

  protected seqOf(r: LogRecord<EntityChange>): number {
    return r.seq;
  }
}
