/**
 * Embedded system of record on SQLite (better-sqlite3). The driver is synchronous; the async port is
 * honoured by `async` methods, and each call is short (one page, one batch), so the event loop is only
 * held for the duration of one statement or transaction.
 */
import Database from 'better-sqlite3';
import { CairnError } from '../../errors/errors.ts';
import type { CairnEvent, Item, JsonObject, ModelVersion, StoredEvent, User } from '../../domain/types.ts';
import type {
  AppendOutcome,
  ConsumerOffsets,
  EventStore,
  ExperimentStore,
  ItemPatch,
  ItemStore,
  ModelStore,
  ServedLogStore,
  Store,
  UserPatch,
  UserStore,
} from '../ports.ts';
import { GroupCommit } from '../group-commit.ts';
import { definedFields, scanBounds } from '../shared.ts';
import { configureConnection, configureForLookups, type Db } from './db.ts';
import { SqliteEventIndex, type SqliteEventIndexOptions } from './event-index.ts';
import { SqliteExperiments, SqliteServedLog } from './experiments.ts';
import { ServedLogThread } from './served-log-thread.ts';
import { SQLITE_MIGRATIONS } from './migrations.ts';
import { SqliteApiKeys, SqliteAudit, SqliteSettings } from './security.ts';

export type { Db };

/**
 * Prepares a statement on first use: statements name tables, so they can only be compiled after
 * `migrate()` has created them.
 */
export function lazy<T>(make: () => T): () => T {
  let value: T | undefined;
  return () => (value ??= make());
}

export interface SqliteStoreOptions {
  /** File path, or `:memory:` for a private in-memory database. */
  path: string;
  /** How long a writer waits for another process's lock before failing (ms). */
  busyTimeoutMs?: number;
  /**
   * `full` (default): a commit returns once the WAL is synced, so an acknowledged write survives power
   * loss. `normal`: survives a process crash only; an OS crash may lose the last commits (never corrupts).
   */
  synchronous?: 'full' | 'normal';
  /** When the event lookups are merged (sqlite/event-index.ts); the defaults suit every store size. */
  eventIndex?: SqliteEventIndexOptions;
}

export interface EventRow {
  seq: number;
  event_id: string;
  user_id: string;
  item_id: string;
  type: string;
  value: number | null;
  ts: number;
  context: string | null;
}

interface ItemRow {
  id: string;
  categories: string;
  attributes: string;
  available: number;
  created_at: number;
  updated_at: number;
}

interface UserRow {
  id: string;
  attributes: string;
  segments: string;
  opt_out: number;
  created_at: number;
  updated_at: number;
}

interface ModelRow {
  version: string;
  algorithm: string;
  params: string;
  status: string;
  training_data: string;
  metrics: string;
  train_seconds: number;
  artifact_path: string;
  checksum: string;
  config_hash: string;
  parent_version: string | null;
  created_at: number;
  promoted_at: number | null;
  error: string | null;
  lineage: string | null;
}

/** Upsert parameters: `null` means "not given" (COALESCE keeps the stored value or the default). */
interface ItemParams {
  id: string;
  categories: string | null;
  attributes: string | null;
  available: number | null;
  createdAt: number | null;
  now: number;
}

interface UserParams {
  id: string;
  attributes: string | null;
  segments: string | null;
  optOut: number | null;
  now: number;
}

export const EVENT_COLUMNS = 'seq, event_id, user_id, item_id, type, value, ts, context';

export function toEvent(r: EventRow): StoredEvent {
  return {
    seq: r.seq,
    eventId: r.event_id,
    userId: r.user_id,
    itemId: r.item_id,
    type: r.type,
    value: r.value,
    timestamp: r.ts,
    context: r.context === null ? null : (JSON.parse(r.context) as JsonObject),
  };
}

export function toItem(r: ItemRow): Item {
  return {
    id: r.id,
    categories: JSON.parse(r.categories) as string[],
    attributes: JSON.parse(r.attributes) as JsonObject,
    available: r.available === 1,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

export function toUser(r: UserRow): User {
  return {
    id: r.id,
    attributes: JSON.parse(r.attributes) as JsonObject,
    segments: JSON.parse(r.segments) as string[],
    optOut: r.opt_out === 1,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

function toModel(r: ModelRow): ModelVersion {
  return {
    version: r.version,
    algorithm: r.algorithm,
    params: JSON.parse(r.params) as JsonObject,
    status: r.status as ModelVersion['status'],
    trainingData: JSON.parse(r.training_data) as ModelVersion['trainingData'],
    metrics: JSON.parse(r.metrics) as Record<string, number>,
    trainSeconds: r.train_seconds,
    artifactPath: r.artifact_path,
    checksum: r.checksum,
    configHash: r.config_hash,
    parentVersion: r.parent_version,
    createdAt: r.created_at,
    promotedAt: r.promoted_at,
    error: r.error,
    lineage: r.lineage === null ? null : (JSON.parse(r.lineage) as ModelVersion['lineage']),
  };
}

function modelParams(m: ModelVersion): unknown[] {
  return [
    m.algorithm,
    JSON.stringify(m.params),
    m.status,
    JSON.stringify(m.trainingData),
    JSON.stringify(m.metrics),
    m.trainSeconds,
    m.artifactPath,
    m.checksum,
    m.configHash,
    m.parentVersion,
    m.createdAt,
    m.promotedAt,
    m.error,
    jsonOrNull(m.lineage),
    m.version,
  ];
}

function jsonOrNull(v: unknown): string | null {
  return v === undefined || v === null ? null : JSON.stringify(v);
}

/** Translates driver errors into Cairn codes where the caller can act on them; others pass through. */
export function mapError(e: unknown): unknown {
  if (e instanceof CairnError) return e;
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_') || code === 'SQLITE_LOCKED') {
      return new CairnError('CAIRN_UNAVAILABLE', 'database is locked by another writer', undefined, {
        cause: e,
      });
    }
    if (code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE') {
      return new CairnError('CAIRN_CONFLICT', (e as Error).message, undefined, { cause: e });
    }
  }
  return e;
}

/** Runs `fn` and rethrows its error mapped to a Cairn code. */
export function guarded<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw mapError(e);
  }
}

/** SQLite implementation of every storage port. */
export class SqliteStore implements Store {
  readonly kind = 'sqlite' as const;
  readonly events: EventStore;
  private readonly sqliteEvents: SqliteEvents;
  /** The event lookups' merged runs and tail (adapter tests wait for merges through it). */
  get eventIndex(): SqliteEventIndex {
    return this.sqliteEvents.index;
  }
  readonly items: ItemStore;
  readonly users: UserStore;
  readonly models: ModelStore;
  readonly experiments: ExperimentStore;
  readonly served: ServedLogStore;
  readonly keys: SqliteApiKeys;
  readonly audit: SqliteAudit;
  readonly settings: SqliteSettings;
  readonly offsets: ConsumerOffsets;
  /** The connection, for the sibling adapters of this folder (logs, job queue) that share the file. */
  readonly db: Db;
  /** Writes served records on a thread of its own (a file database), else null. */
  private readonly servedThread: ServedLogThread | null;

  constructor(options: SqliteStoreOptions) {
    this.db = new Database(options.path);
    try {
      configureConnection(this.db, {
        synchronous: options.synchronous === 'normal' ? 'NORMAL' : 'FULL',
        busyTimeoutMs: options.busyTimeoutMs ?? 5000,
      });
      this.db.pragma('foreign_keys = ON');
      configureForLookups(this.db);
    } catch (e) {
      this.db.close();
      throw mapError(e);
    }
    this.events = this.sqliteEvents = new SqliteEvents(this.db, options.eventIndex);
    this.items = new SqliteItems(this.db);
    this.users = new SqliteUsers(this.db);
    this.models = new SqliteModels(this.db);
    this.experiments = new SqliteExperiments(this.db, guarded);
    this.servedThread =
      options.path === ':memory:' || options.path === ''
        ? null
        : new ServedLogThread({ path: options.path, busyTimeoutMs: options.busyTimeoutMs ?? 5000 });
    this.served = new SqliteServedLog(this.db, guarded, this.servedThread);
    this.keys = new SqliteApiKeys(this.db, guarded);
    this.audit = new SqliteAudit(this.db, guarded);
    this.settings = new SqliteSettings(this.db, guarded);
    this.offsets = new SqliteOffsets(this.db);
  }

  async migrate(): Promise<void> {
    const db = this.db;
    guarded(() =>
      // IMMEDIATE: two processes starting at once serialize here instead of both applying migrations.
      db
        .transaction(() => {
          db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`);
          const applied = new Set(
            db.prepare<[], number>('SELECT version FROM schema_migrations').pluck().all(),
          );
          const record = db.prepare(
            'INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)',
          );
          for (const m of SQLITE_MIGRATIONS) {
            if (applied.has(m.version)) continue;
            db.exec(m.sql);
            record.run(m.version, m.name, Date.now());
          }
        })
        .immediate(),
    );
    return Promise.resolve();
  }

  async ping(): Promise<void> {
    guarded(() => this.db.prepare('SELECT 1').get());
    return Promise.resolve();
  }

  async eraseUser(userId: string): Promise<StoredEvent[] | null> {
    const db = this.db;
    const result = guarded(() =>
      db
        .transaction(() => {
          const events = this.sqliteEvents.index.deleteUser<EventRow>(EVENT_COLUMNS, userId);
          const users = db.prepare('DELETE FROM users WHERE id = ?').run(userId).changes;
          return events.length + users > 0 ? events.map(toEvent).sort((a, b) => a.seq - b.seq) : null;
        })
        .immediate(),
    );
    return Promise.resolve(result);
  }

  /**
   * Copies the zeroed pages into the database file and truncates the WAL, whose older frames still hold
   * the rows as they were before the erase. CAIRN_UNAVAILABLE when a reader (another process) keeps the
   * checkpoint from finishing: the caller tries again later.
   */
  async purgeErased(): Promise<void> {
    const [result] = guarded(() => this.db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number }[]);
    if (result?.busy) throw new CairnError('CAIRN_UNAVAILABLE', 'WAL checkpoint blocked by a reader');
    return Promise.resolve();
  }

  async close(): Promise<void> {
    await this.sqliteEvents.index.close();
    await this.servedThread?.close();
    if (this.db.open) this.db.close();
  }
}

class SqliteEvents implements EventStore {
  /** The event-id and user lookups (no indexes on `events`: see event-index.ts). */
  readonly index: SqliteEventIndex;
  private readonly insert;
  private readonly page;
  private readonly maxSeq;
  private readonly total;
  private readonly appendTx;
  private readonly group;
  private readonly insertLogged;
  private readonly appendLoggedTx;

  constructor(
    private readonly db: Db,
    indexOptions?: SqliteEventIndexOptions,
  ) {
    this.index = new SqliteEventIndex(db, indexOptions);
    this.insert = lazy(() =>
      db.prepare<[string, string, string, string, number | null, number, string | null]>(
        'INSERT INTO events (event_id, user_id, item_id, type, value, ts, context) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
    );
    this.page = lazy(() =>
      db.prepare<[number, number, number], EventRow>(
        `SELECT ${EVENT_COLUMNS} FROM events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?`,
      ),
    );
    this.maxSeq = lazy(() => db.prepare<[], number>('SELECT COALESCE(MAX(seq), 0) FROM events').pluck());
    this.total = lazy(() => db.prepare<[], number>('SELECT COUNT(*) FROM events').pluck());
    this.insertLogged = lazy(() =>
      db.prepare<[number, string, string, string, string, number | null, number, string | null]>(
        `INSERT INTO events (seq, event_id, user_id, item_id, type, value, ts, context)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (seq) DO NOTHING`,
      ),
    );
    this.appendLoggedTx = db.transaction((events: StoredEvent[]): AppendOutcome[] => {
      this.index.beginAppend();
      return events.map((e) => {
        if (this.index.isDuplicate(e.eventId)) return 'duplicate';
        const r = this.insertLogged().run(
          e.seq,
          e.eventId,
          e.userId,
          e.itemId,
          e.type,
          e.value ?? null,
          e.timestamp,
          contextJson(e),
        );
        if (r.changes !== 1) return 'duplicate'; // the seq is taken: a replay
        this.index.inserted(e.eventId, e.seq);
        return 'inserted';
      });
    });
    // One transaction per call: all-or-nothing, and one commit per batch instead of one per event.
    this.appendTx = db.transaction((events: CairnEvent[]): AppendOutcome[] => {
      const insert = this.insert();
      const index = this.index;
      index.beginAppend();
      const out = new Array<AppendOutcome>(events.length);
      for (let i = 0; i < events.length; i++) {
        const e = events[i];
        // A repeat (from an earlier call or earlier in this batch) is found by the index.
        if (index.isDuplicate(e.eventId)) {
          out[i] = 'duplicate';
          continue;
        }
        const r = insert.run(
          e.eventId,
          e.userId,
          e.itemId,
          e.type,
          e.value ?? null,
          e.timestamp,
          contextJson(e),
        );
        index.inserted(e.eventId, Number(r.lastInsertRowid));
        out[i] = 'inserted';
      }
      return out;
    });
    // The commit is synchronous, so nothing can arrive while it runs: a group is instead the appends of
    // one event-loop turn (requests read while the previous commit held the loop), one fsync for all.
    // While the event lookups merge, the next group waits until the last one's share of the merge is done.
    this.group = new GroupCommit<CairnEvent, AppendOutcome>({
      commit: (events) => this.indexed(() => this.appendTx.immediate(events)),
      start: (run) => this.index.whenPaid(run),
    });
  }

  /** Runs an append transaction and tells the index whether it committed. */
  private indexed(tx: () => AppendOutcome[]): AppendOutcome[] {
    let out: AppendOutcome[];
    try {
      out = tx();
    } catch (e) {
      this.index.rolledBack();
      throw mapError(e);
    }
    this.index.committed();
    return out;
  }

  async append(events: CairnEvent[]): Promise<AppendOutcome[]> {
    if (events.length === 0) return Promise.resolve([]);
    return this.group.submit(events);
  }

  async appendLogged(events: StoredEvent[]): Promise<AppendOutcome[]> {
    if (events.length === 0) return [];
    await new Promise<void>((resolve) => this.index.whenPaid(resolve));
    return this.indexed(() => this.appendLoggedTx.immediate(events));
  }

  async forUser(userId: string, limit: number): Promise<StoredEvent[]> {
    if (limit <= 0) return Promise.resolve([]);
    return Promise.resolve(
      guarded(() => this.index.forUser<EventRow>(EVENT_COLUMNS, userId, Math.floor(limit)).map(toEvent)),
    );
  }

  /**
   * Pages by seq (keyset, so each page is an index range). Without `untilSeq` the scan stops at the
   * newest event present when it started: a consistent snapshot that terminates under live ingestion.
   */
  async *scan(options: {
    afterSeq?: number;
    batchSize?: number;
    untilSeq?: number;
  }): AsyncIterable<StoredEvent[]> {
    const { afterSeq, batchSize, untilSeq } = scanBounds(options);
    const until = untilSeq ?? (await this.lastSeq());
    let cursor = afterSeq;
    while (cursor < until) {
      const rows = guarded(() => this.page().all(cursor, until, batchSize));
      if (rows.length === 0) return;
      yield rows.map(toEvent);
      cursor = rows[rows.length - 1].seq;
      if (rows.length < batchSize) return;
    }
  }

  async count(): Promise<number> {
    return Promise.resolve(guarded(() => this.total().get() ?? 0));
  }

  /** Highest seq among stored events (0 when empty). Seqs are never reused, so it never repeats a value. */
  async lastSeq(): Promise<number> {
    return Promise.resolve(guarded(() => this.maxSeq().get() ?? 0));
  }

  async deleteForUser(userId: string): Promise<number> {
    const db = this.db;
    return Promise.resolve(
      guarded(() =>
        db.transaction(() => this.index.deleteUser<EventRow>(EVENT_COLUMNS, userId).length).immediate(),
      ),
    );
  }
}

function contextJson(e: CairnEvent): string | null {
  return e.context === null || e.context === undefined ? null : JSON.stringify(e.context);
}

class SqliteItems implements ItemStore {
  private readonly upsertOne;
  private readonly byId;
  private readonly byIds;
  private readonly pageFirst;
  private readonly pageAfter;
  private readonly total;
  private readonly upsertTx;

  constructor(db: Db) {
    this.upsertOne = lazy(() =>
      db.prepare<ItemParams, ItemRow>(
        `INSERT INTO items (id, categories, attributes, available, created_at, updated_at)
       VALUES (@id, COALESCE(@categories, '[]'), COALESCE(@attributes, '{}'), COALESCE(@available, 1),
         COALESCE(@createdAt, @now), @now)
       ON CONFLICT (id) DO UPDATE SET
         categories = COALESCE(@categories, categories),
         attributes = COALESCE(@attributes, attributes),
         available = COALESCE(@available, available),
         created_at = COALESCE(@createdAt, created_at),
         updated_at = @now
       RETURNING *`,
      ),
    );
    this.byId = lazy(() => db.prepare<[string], ItemRow>('SELECT * FROM items WHERE id = ?'));
    // One JSON parameter instead of N placeholders: no limit on the number of ids.
    this.byIds = lazy(() =>
      db.prepare<[string], ItemRow>('SELECT * FROM items WHERE id IN (SELECT value FROM json_each(?))'),
    );
    this.pageFirst = lazy(() => db.prepare<[number], ItemRow>('SELECT * FROM items ORDER BY id LIMIT ?'));
    this.pageAfter = lazy(() =>
      db.prepare<[string, number], ItemRow>('SELECT * FROM items WHERE id > ? ORDER BY id LIMIT ?'),
    );
    this.total = lazy(() => db.prepare<[], number>('SELECT COUNT(*) FROM items').pluck());
    this.upsertTx = db.transaction((patches: ItemPatch[]): Item[] => {
      const now = Date.now();
      const latest = new Map<string, Item>();
      for (const p of patches) {
        const row = this.upsertOne().get({
          id: p.id,
          categories: jsonOrNull(p.categories),
          attributes: jsonOrNull(p.attributes),
          available: p.available === undefined ? null : p.available ? 1 : 0,
          createdAt: p.createdAt ?? null,
          now,
        })!;
        latest.set(p.id, toItem(row));
      }
      // A batch naming one id twice reports the final state at both positions (same as PostgreSQL).
      return patches.map((p) => latest.get(p.id)!);
    });
  }

  async upsert(items: ItemPatch[]): Promise<Item[]> {
    if (items.length === 0) return Promise.resolve([]);
    return Promise.resolve(guarded(() => this.upsertTx.immediate(items)));
  }

  async get(id: string): Promise<Item | null> {
    const row = guarded(() => this.byId().get(id));
    return Promise.resolve(row ? toItem(row) : null);
  }

  /** Existing items among `ids`, in the order asked (missing ids skipped, repeats once). */
  async getMany(ids: string[]): Promise<Item[]> {
    if (ids.length === 0) return Promise.resolve([]);
    const found = new Map<string, Item>();
    for (const row of guarded(() => this.byIds().all(JSON.stringify(ids)))) found.set(row.id, toItem(row));
    const out: Item[] = [];
    for (const id of new Set(ids)) {
      const item = found.get(id);
      if (item) out.push(item);
    }
    return Promise.resolve(out);
  }

  async list(options: { after?: string; limit: number }): Promise<Item[]> {
    if (options.limit <= 0) return Promise.resolve([]);
    const limit = Math.floor(options.limit);
    const rows = guarded(() =>
      options.after === undefined ? this.pageFirst().all(limit) : this.pageAfter().all(options.after, limit),
    );
    return Promise.resolve(rows.map(toItem));
  }

  async count(): Promise<number> {
    return Promise.resolve(guarded(() => this.total().get() ?? 0));
  }
}

class SqliteUsers implements UserStore {
  private readonly upsertOne;
  private readonly byId;
  private readonly optedOutIds;
  private readonly remove;
  private readonly total;

  constructor(db: Db) {
    this.upsertOne = lazy(() =>
      db.prepare<UserParams, UserRow>(
        `INSERT INTO users (id, attributes, segments, opt_out, created_at, updated_at)
       VALUES (@id, COALESCE(@attributes, '{}'), COALESCE(@segments, '[]'), COALESCE(@optOut, 0), @now, @now)
       ON CONFLICT (id) DO UPDATE SET
         attributes = COALESCE(@attributes, attributes),
         segments = COALESCE(@segments, segments),
         opt_out = COALESCE(@optOut, opt_out),
         updated_at = @now
       RETURNING *`,
      ),
    );
    this.byId = lazy(() => db.prepare<[string], UserRow>('SELECT * FROM users WHERE id = ?'));
    this.optedOutIds = lazy(() =>
      db.prepare<[], string>('SELECT id FROM users WHERE opt_out = 1 ORDER BY id').pluck(),
    );
    this.remove = lazy(() => db.prepare<[string]>('DELETE FROM users WHERE id = ?'));
    this.total = lazy(() => db.prepare<[], number>('SELECT COUNT(*) FROM users').pluck());
  }

  async upsert(user: UserPatch): Promise<User> {
    const row = guarded(() =>
      this.upsertOne().get({
        id: user.id,
        attributes: jsonOrNull(user.attributes),
        segments: jsonOrNull(user.segments),
        optOut: user.optOut === undefined ? null : user.optOut ? 1 : 0,
        now: Date.now(),
      }),
    )!;
    return Promise.resolve(toUser(row));
  }

  async get(id: string): Promise<User | null> {
    const row = guarded(() => this.byId().get(id));
    return Promise.resolve(row ? toUser(row) : null);
  }

  /** Sorted by id. */
  async optedOut(): Promise<string[]> {
    return Promise.resolve(guarded(() => this.optedOutIds().all()));
  }

  async delete(id: string): Promise<boolean> {
    return Promise.resolve(guarded(() => this.remove().run(id).changes) > 0);
  }

  async count(): Promise<number> {
    return Promise.resolve(guarded(() => this.total().get() ?? 0));
  }
}

const MODEL_COLUMNS =
  'version, algorithm, params, status, training_data, metrics, train_seconds, artifact_path, checksum, config_hash, parent_version, created_at, promoted_at, error, lineage';

class SqliteModels implements ModelStore {
  private readonly insertOne;
  private readonly updateOne;
  private readonly byVersion;
  private readonly newest;
  private readonly newestLimited;
  private readonly current;
  private readonly setStatus;
  private readonly promoteTx;
  private readonly updateTx;
  private readonly swapArtifact;

  constructor(db: Db) {
    this.swapArtifact = lazy(() =>
      db.prepare<[string, string, string, string, string]>(
        `UPDATE models SET artifact_path = ?, checksum = ?
         WHERE version = ? AND artifact_path = ? AND checksum = ?`,
      ),
    );
    this.insertOne = lazy(() =>
      db.prepare(
        `INSERT INTO models (algorithm, params, status, training_data, metrics, train_seconds, artifact_path,
         checksum, config_hash, parent_version, created_at, promoted_at, error, lineage, version)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
    );
    this.updateOne = lazy(() =>
      db.prepare(
        `UPDATE models SET algorithm = ?, params = ?, status = ?, training_data = ?, metrics = ?, train_seconds = ?,
         artifact_path = ?, checksum = ?, config_hash = ?, parent_version = ?, created_at = ?, promoted_at = ?,
         error = ?, lineage = ?
       WHERE version = ?`,
      ),
    );
    this.byVersion = lazy(() =>
      db.prepare<[string], ModelRow>(`SELECT ${MODEL_COLUMNS} FROM models WHERE version = ?`),
    );
    // Newest first; the row id breaks ties between models created in the same millisecond.
    this.newest = lazy(() =>
      db.prepare<[], ModelRow>(`SELECT ${MODEL_COLUMNS} FROM models ORDER BY created_at DESC, id DESC`),
    );
    this.newestLimited = lazy(() =>
      db.prepare<[number], ModelRow>(
        `SELECT ${MODEL_COLUMNS} FROM models ORDER BY created_at DESC, id DESC LIMIT ?`,
      ),
    );
    this.current = lazy(() =>
      db.prepare<[], ModelRow>(`SELECT ${MODEL_COLUMNS} FROM models WHERE status = 'champion'`),
    );
    this.setStatus = lazy(() =>
      db.prepare<[string, string]>('UPDATE models SET status = ? WHERE version = ?'),
    );

    this.updateTx = db.transaction(
      (version: string, patch: Partial<Omit<ModelVersion, 'version'>>): ModelVersion => {
        const row = this.byVersion().get(version);
        if (!row) throw new CairnError('CAIRN_MODEL_NOT_FOUND', `model ${version} not found`);
        const next: ModelVersion = { ...toModel(row), ...definedFields(patch), version };
        this.updateOne().run(...modelParams(next));
        return next;
      },
    );

    this.promoteTx = db.transaction((version: string, at: number): ModelVersion => {
      const row = this.byVersion().get(version);
      if (!row) throw new CairnError('CAIRN_MODEL_NOT_FOUND', `model ${version} not found`);
      const target = toModel(row);
      if (target.status === 'champion') return target;
      // `rejected` is promotable here: the registry asks for `force` before it gets this far.
      if (target.status !== 'ready' && target.status !== 'retired' && target.status !== 'rejected') {
        throw new CairnError('CAIRN_MODEL_NOT_PROMOTABLE', `model ${version} is ${target.status}`, {
          version,
          status: target.status,
        });
      }
      const previous = this.current().get();
      // Retire first: the unique index allows one champion at any moment, even inside the transaction.
      if (previous) this.setStatus().run('retired', previous.version);
      const next: ModelVersion = {
        ...target,
        status: 'champion',
        promotedAt: at,
        parentVersion: previous ? previous.version : null,
      };
      this.updateOne().run(...modelParams(next));
      return next;
    });
  }

  async insert(model: ModelVersion): Promise<void> {
    guarded(() => this.insertOne().run(...modelParams(model)));
    return Promise.resolve();
  }

  /** Throws CAIRN_MODEL_NOT_FOUND for an unknown version. */
  async update(version: string, patch: Partial<Omit<ModelVersion, 'version'>>): Promise<ModelVersion> {
    return Promise.resolve(guarded(() => this.updateTx.immediate(version, patch)));
  }

  async get(version: string): Promise<ModelVersion | null> {
    const row = guarded(() => this.byVersion().get(version));
    return Promise.resolve(row ? toModel(row) : null);
  }

  async list(limit?: number): Promise<ModelVersion[]> {
    const rows = guarded(() =>
      limit === undefined ? this.newest().all() : this.newestLimited().all(Math.max(0, Math.floor(limit))),
    );
    return Promise.resolve(rows.map(toModel));
  }

  async champion(): Promise<ModelVersion | null> {
    const row = guarded(() => this.current().get());
    return Promise.resolve(row ? toModel(row) : null);
  }

  /**
   * Throws CAIRN_MODEL_NOT_FOUND, or CAIRN_MODEL_NOT_PROMOTABLE unless the model is `ready` or `retired`
   * (a rollback re-promotes a retired one). Promoting the champion returns it unchanged.
   */
  async promote(version: string, at: number): Promise<ModelVersion> {
    return Promise.resolve(guarded(() => this.promoteTx.immediate(version, at)));
  }

  async replaceArtifact(
    version: string,
    from: Pick<ModelVersion, 'artifactPath' | 'checksum'>,
    to: Pick<ModelVersion, 'artifactPath' | 'checksum'>,
  ): Promise<boolean> {
    const changes = guarded(
      () =>
        this.swapArtifact().run(to.artifactPath, to.checksum, version, from.artifactPath, from.checksum)
          .changes,
    );
    return Promise.resolve(changes === 1);
  }
}

class SqliteOffsets implements ConsumerOffsets {
  private readonly read;
  private readonly write;

  constructor(db: Db) {
    this.read = lazy(() =>
      db.prepare<[string], number>('SELECT seq FROM consumer_offsets WHERE name = ?').pluck(),
    );
    this.write = lazy(() =>
      db.prepare<[string, number, number]>(
        `INSERT INTO consumer_offsets (name, seq, updated_at) VALUES (?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET seq = MAX(seq, excluded.seq), updated_at = excluded.updated_at`,
      ),
    );
  }

  async get(name: string): Promise<number> {
    return Promise.resolve(guarded(() => this.read().get(name) ?? 0));
  }

  async set(name: string, seq: number): Promise<void> {
    guarded(() => this.write().run(name, seq, Date.now()));
    return Promise.resolve();
  }
}
