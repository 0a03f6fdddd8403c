/**
 * The change feed on PostgreSQL: the store's `events` table is the event log and `changes` the change
 * log. BIGSERIAL hands out seqs at INSERT time and concurrent transactions may commit out of order, so a
 * consumer reading `seq > position` must never pass over a row that commits later. Event appends run
 * concurrently and readers stop at the commit horizon (commit-horizon.ts); change appends, far fewer, are
 * serialized per schema by an advisory lock held until COMMIT, so there seq order is commit order.
 *
 * Consumers are `PollingConsumer`s woken by LISTEN/NOTIFY: migration 3 makes every INSERT into either
 * table notify the schema's channel at commit, and one dedicated connection per store LISTENs to it
 * (reconnecting with backoff when PostgreSQL restarts). A slow poll (`idlePollMs`, default 3 s) is the
 * safety net for notifications lost while that connection was down. Durable consumers keep their
 * position in `consumer_offsets` and hold a session-level advisory lock on a dedicated connection while
 * they run: at most one process consumes a durable name, and PostgreSQL releases the lock by itself
 * when that process dies or loses its connection.
 *
 * The logs borrow the store's pool: close them before the store.
 */
import { EventEmitter } from 'node:events';
import pg from 'pg';
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
  retryDelayMs,
  type ConsumerLock,
  type ConsumerTimings,
  type WakeSource,
} from '../polling-consumer.ts';
import { EVENT_COLUMNS, mapPgError, toEvent, type Db, type EventRow, type PostgresStore } from './store.ts';

export interface PgLogOptions extends ConsumerTimings {
  /**
   * How often the dedicated connections (LISTEN, durable locks) prove they are alive (ms, default
   * 5000). A lock connection that fails the check is dropped, and its consumer stops handling batches.
   */
  keepAliveMs?: number;
}

type LogName = 'events' | 'changes';

/**
 * Advisory-lock namespaces (first int4 key) of the logs, beside the store's (0x43616901..03): change-log
 * appends, and durable consumer names.
 */
const LOCK_CHANGES_APPEND = 0x43616c01;
const LOCK_DURABLE = 0x43616c02;

/** How soon a read that stopped at an unsettled commit horizon looks again (ms). */
const RECHECK_MS = 20;

/** The LISTEN channel of a schema; the same expression as the trigger of migration 3. */
export function logChannel(schema: string): string {
  return `cairn_log_${schema}`.slice(0, 63);
}

/** 32-bit FNV-1a as a signed int4 (advisory-lock key of a durable name). */
function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h | 0;
}

/**
 * A client for a long-lived dedicated connection, configured like the store's pool. Its application name
 * (`cairn-listen:<schema>`, `cairn-consumer:<schema>`) tells operators what the connection is for.
 */
function dedicatedClient(db: Db, role: string, schema: string): pg.Client {
  return new pg.Client({
    ...db.pool.options,
    application_name: `cairn-${role}:${schema}`.slice(0, 63),
    // TCP keepalive notices a peer that vanished without closing the socket (network partition).
    keepAlive: true,
  });
}

/** Ends a client without waiting on or failing because of a dead socket. */
function discard(client: pg.Client): void {
  client.end().catch(() => undefined);
}

/**
 * One LISTEN connection per store, shared by its logs, alive only while some consumer waits. Wakes the
 * subscribers of a log on its notifications, and every subscriber after each (re)connect, since
 * notifications sent while it was disconnected are lost.
 */
class PgListener {
  private readonly emitter = new EventEmitter();
  private subscribers = 0;
  private client: pg.Client | null = null;
  private failures = 0;
  private retry: NodeJS.Timeout | null = null;
  private check: NodeJS.Timeout | null = null;
  private readonly channel: string;

  constructor(
    private readonly db: Db,
    private readonly schema: string,
    private readonly keepAliveMs: number,
  ) {
    this.channel = logChannel(schema);
    this.emitter.setMaxListeners(0);
  }

  subscribe(log: LogName, listener: () => void): () => void {
    this.emitter.on(log, listener);
    if (this.subscribers++ === 0) this.connect();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.emitter.off(log, listener);
      if (--this.subscribers === 0) this.disconnect();
    };
  }

  /** Wakes the consumers of `log` in this process (an append through this store just committed). */
  wake(log: LogName): void {
    this.emitter.emit(log);
  }

  private connect(): void {
    this.retry = null;
    const client = dedicatedClient(this.db, 'listen', this.schema);
    this.client = client;
    const lost = () => {
      if (this.client !== client) return; // already replaced or stopped
      this.client = null;
      this.stopCheck();
      discard(client);
      this.scheduleReconnect();
    };
    client.on('error', lost);
    client.on('end', lost);
    client.on('notification', (msg) => {
      if (msg.channel !== this.channel) return;
      if (msg.payload === 'events' || msg.payload === 'changes') this.emitter.emit(msg.payload);
      else this.wakeAll();
    });
    client
      .connect()
      .then(() => client.query(`LISTEN "${this.channel}"`))
      .then(() => {
        if (this.client !== client) return;
        this.failures = 0;
        this.startCheck(client, lost);
        // Whatever was appended while nobody listened is found by one read.
        this.wakeAll();
      })
      .catch(lost);
  }

  private scheduleReconnect(): void {
    if (this.subscribers === 0 || this.retry !== null) return;
    this.failures++;
    this.retry = setTimeout(() => this.connect(), retryDelayMs(this.failures, 100, 5000));
    this.retry.unref();
  }

  /** A silently dead connection delivers nothing: prove it alive now and then, reconnect otherwise. */
  private startCheck(client: pg.Client, lost: () => void): void {
    this.stopCheck();
    this.check = setInterval(() => {
      client.query('SELECT 1').catch(lost);
    }, this.keepAliveMs);
    this.check.unref();
  }

  private stopCheck(): void {
    if (this.check !== null) clearInterval(this.check);
    this.check = null;
  }

  private disconnect(): void {
    if (this.retry !== null) clearTimeout(this.retry);
    this.retry = null;
    this.stopCheck();
    const client = this.client;
    this.client = null;
    this.failures = 0;
    if (client) discard(client);
  }

  private wakeAll(): void {
    this.emitter.emit('events');
    this.emitter.emit('changes');
  }
}

const listeners = new WeakMap<Db, PgListener>();

function listenerOf(store: PostgresStore, keepAliveMs: number): PgListener {
  let l = listeners.get(store.db);
  if (!l) {
    l = new PgListener(store.db, store.schema, keepAliveMs);
    listeners.set(store.db, l);
  }
  return l;
}

/**
 * Exclusive ownership of a durable name: a session-level advisory lock taken with
 * `pg_try_advisory_lock` on a dedicated connection. A standby keeps its connection and retries; the
 * holder proves the connection alive every `keepAliveMs`, and loses `held` as soon as it fails or
 * drops (the server has then released the lock for a standby to take).
 */
class PgDurableLock implements ConsumerLock {
  private client: pg.Client | null = null;
  private owned = false;
  private check: NodeJS.Timeout | null = null;
  private readonly key: number;

  constructor(
    private readonly db: Db,
    private readonly schema: string,
    name: string,
    private readonly keepAliveMs: number,
  ) {
    // A hash collision between two names only makes them exclusive of each other: slower, never wrong.
    this.key = hash32(`${schema}\u0000${name}`);
  }

  get held(): boolean {
    return this.owned;
  }

  async acquire(): Promise<boolean> {
    if (this.owned) return true;
    const client = await this.connected();
    let ok: boolean;
    try {
      const res = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS ok', [
        LOCK_DURABLE,
        this.key,
      ]);
      ok = res.rows[0].ok;
    } catch (e) {
      this.drop(client);
      throw mapPgError(e);
    }
    if (ok && this.client === client) {
      this.owned = true;
      this.check = setInterval(() => {
        client.query('SELECT 1').catch(() => this.drop(client));
      }, this.keepAliveMs);
      this.check.unref();
    }
    return this.owned;
  }

  async release(): Promise<void> {
    const client = this.client;
    this.client = null;
    this.owned = false;
    this.stopCheck();
    if (!client) return;
    // Ending the session releases its locks; unlocking first just hands the name over sooner.
    await client.query('SELECT pg_advisory_unlock_all()').catch(() => undefined);
    await client.end().catch(() => undefined);
  }

  private async connected(): Promise<pg.Client> {
    if (this.client) return this.client;
    const client = dedicatedClient(this.db, 'consumer', this.schema);
    client.on('error', () => this.drop(client));
    client.on('end', () => this.drop(client));
    this.client = client;
    try {
      await client.connect();
    } catch (e) {
      this.drop(client);
      throw mapPgError(e);
    }
    return client;
  }

  private drop(client: pg.Client): void {
    if (this.client !== client) return;
    this.client = null;
    this.owned = false;
    this.stopCheck();
    discard(client);
  }

  private stopCheck(): void {
    if (this.check !== null) clearInterval(this.check);
    this.check = null;
  }
}

/** Shared plumbing of the two PostgreSQL logs: wake-ups, consumers, durable bindings. */
abstract class PgLogBase<R> {
  protected readonly db: Db;
  private readonly listener: PgListener;
  private readonly wakeSource: WakeSource;
  private readonly consumers = new ConsumerSet();
  private readonly keepAliveMs: number;
  private closed = false;
  private recheck: NodeJS.Timeout | null = null;

  protected constructor(
    protected readonly store: PostgresStore,
    private readonly log: LogName,
    protected readonly options: PgLogOptions,
  ) {
    this.db = store.db;
    this.keepAliveMs = options.keepAliveMs ?? 5000;
    this.listener = listenerOf(store, this.keepAliveMs);
    this.wakeSource = { subscribe: (fn) => this.listener.subscribe(log, fn) };
  }

  abstract read(after: number, limit: number): Promise<R[]>;
  protected abstract seqOf(record: R): number;

  consume(options: ConsumeOptions, handler: BatchHandler<R>): LogConsumer {
    this.assertOpen();
    const { durable } = options;
    const key = durable === undefined ? undefined : `${this.log}:${durable}`;
    return this.consumers.start<R>({
      ...this.options,
      idlePollMs: this.options.idlePollMs ?? 3000,
      label: key === undefined ? `${this.log} private` : `${this.log} durable:${durable}`,
      read: (after, limit) => this.read(after, limit),
      seqOf: (r) => this.seqOf(r),
      handler,
      batchSize: options.batchSize,
      after: options.after,
      wake: this.wakeSource,
      durable:
        key === undefined
          ? undefined
          : {
              key,
              offsets: this.store.offsets,
              lock: new PgDurableLock(this.db, this.store.schema, key, this.keepAliveMs),
            },
    });
  }

  /** Stops every consumer of this log (the store stays open: it belongs to the caller). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.recheck !== null) clearTimeout(this.recheck);
    this.recheck = null;
    await this.consumers.closeAll();
  }

  /** Wakes this process's consumers at once, without waiting for the notification's round trip. */
  protected appended(): void {
    this.listener.wake(this.log);
  }

  /**
   * Wakes this process's consumers again shortly: a read stopped short of rows already visible because
   * an append was still in flight. Its commit notifies anyway; this covers one that rolls back.
   */
  protected recheckSoon(): void {
    if (this.recheck !== null || this.closed) return;
    this.recheck = setTimeout(() => {
      this.recheck = null;
      this.appended();
    }, RECHECK_MS);
    this.recheck.unref();
  }

  protected assertOpen(): void {
    if (this.closed) throw new CairnError('CAIRN_UNAVAILABLE', `the ${this.log} log is closed`);
  }
}

/** The event log over the store's `events` table. */
export class PgEventLog extends PgLogBase<StoredEvent> implements EventLog {
  readonly kind = 'postgres';
  private readonly pageSql: string;

  constructor(store: PostgresStore, options: PgLogOptions = {}) {
    super(store, 'events', options);
    this.pageSql = `SELECT ${EVENT_COLUMNS} FROM ${this.db.s}.events WHERE seq > $1 AND seq <= $2
      ORDER BY seq LIMIT $3`;
  }

  /** The store's append (idempotent by event id, concurrent with others); durable once it resolves. */
  async append(events: CairnEvent[]): Promise<AppendOutcome[]> {
    this.assertOpen();
    const outcomes = await this.store.events.append(events);
    if (outcomes.includes('inserted')) this.appended();
    return outcomes;
  }

  /** Up to the commit horizon: rows above it wait until every append that may still land below commits. */
  async read(after: number, limit: number): Promise<StoredEvent[]> {
    if (limit <= 0) return [];
    const horizon = this.store.eventHorizon;
    const until = await horizon.advance();
    if (horizon.unsettled) this.recheckSoon();
    if (until <= after) return [];
    const rows = await this.db.query<EventRow>(this.pageSql, [after, until, Math.floor(limit)]);
    return rows.map(toEvent);
  }

  head(): Promise<number> {
    return this.store.events.lastSeq();
  }

  /** The log is the store's table: the user's events leave it (and the store) at once. */
  async forgetUser(userId: string): Promise<void> {
    await this.store.events.deleteForUser(userId);
  }

  protected seqOf(e: StoredEvent): number {
    return e.seq;
  }
}

/** The change log over the `changes` table (JSONB). */
export class PgChangeLog extends PgLogBase<LogRecord<EntityChange>> implements ChangeLog {
  readonly kind = 'postgres';

  constructor(store: PostgresStore, options: PgLogOptions = {}) {
    super(store, 'changes', options);
  }

  /**
   * One transaction, one INSERT, under the schema's change-log advisory lock (seq order = commit
   * order, as for events). Seqs follow the order given.
   */
  async append(changes: EntityChange[]): Promise<number[]> {
    this.assertOpen();
    if (changes.length === 0) return [];
    const { s } = this.db;
    const seqs = await this.db.tx(async (c) => {
      await this.db.lock(c, LOCK_CHANGES_APPEND);
      const res = await c.query<{ seq: number }>(
        `INSERT INTO ${s}.changes (change, created_at)
         SELECT x.change, $2 FROM unnest($1::jsonb[]) WITH ORDINALITY AS x(change, ord)
         ORDER BY x.ord
         RETURNING seq`,
        [changes.map((ch) => JSON.stringify(ch)), Date.now()],
      );
      return res.rows.map((r) => r.seq);
    });
    this.appended();
    // The sequence is drawn row by row in ORDINALITY order, so ascending seqs are the order given.
    return seqs.sort((a, b) => a - b);
  }

  async read(after: number, limit: number): Promise<LogRecord<EntityChange>[]> {
    if (limit <= 0) return [];
    const rows = await this.db.query<{ seq: number; change: EntityChange }>(
      `SELECT seq, change FROM ${this.db.s}.changes WHERE seq > $1 ORDER BY seq LIMIT $2`,
      [after, Math.floor(limit)],
    );
    return rows.map((r) => ({ seq: r.seq, value: r.change }));
  }

  async head(): Promise<number> {
    const rows = await this.db.query<{ s: number }>(
      `SELECT COALESCE(MAX(seq), 0) AS s FROM ${this.db.s}.changes`,
    );
    return rows[0].s;
  }

  /** A scan of the table: erasures are rare, and user records are a small part of the log. */
  async forgetUser(userId: string): Promise<void> {
    await this.db.query(
      `DELETE FROM ${this.db.s}.changes WHERE change->>'kind' = 'user' AND change->'user'->>'id' = $1`,
      [userId],
    );
  }

  async remove(seqs: number[]): Promise<void> {
    if (seqs.length === 0) return;
    await this.db.query(`DELETE FROM ${this.db.s}.changes WHERE seq = ANY($1::int8[])`, [seqs]);
  }

  async durableFloor(): Promise<number | null> {
    const rows = await this.db.query<{ floor: number | null }>(
      `SELECT MIN(seq) AS floor FROM ${this.db.s}.consumer_offsets WHERE name LIKE 'changes:%'`,
    );
    return rows[0].floor;
  }

  protected seqOf(r: LogRecord<EntityChange>): number {
    return r.seq;
  }
}
