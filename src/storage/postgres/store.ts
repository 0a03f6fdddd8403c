/**
 * Production system of record on PostgreSQL (node-postgres Pool). All tables live in one configurable
 * schema, so several deployments or test runs can share a database. Batches travel as arrays or one JSON
 * document: a 10,000-event append is a single INSERT round trip.
 */
import pg from 'pg';
import type { PoolClient } from 'pg';
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
import { definedFields, foldItemPatches, scanBounds } from '../shared.ts';
import { CommitHorizon } from './commit-horizon.ts';
import { Db, mapPgError } from './db.ts';
import { PgExperiments, PgServedLog } from './experiments.ts';
import { POSTGRES_MIGRATIONS } from './migrations.ts';
import { PgApiKeys, PgAudit, PgSettings } from './security.ts';

// The sub-stores' shared connection wrapper, re-exported for the modules that import it from here.
export { Db, mapPgError };

export interface PostgresStoreOptions {
  /** `postgres://user:pass@host:port/db`. */
  url: string;
  /** Schema holding Cairn's tables; must match `^[a-z_][a-z0-9_]*$`. */
  schema?: string;
  /** Pool size (connections). */
  maxConnections?: number;
  /** Fail a request that waits this long for a connection (ms). */
  connectionTimeoutMs?: number;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]*$/;

/**
 * Advisory-lock namespaces (first int4 key); the second key is a hash of the schema, so deployments
 * sharing a database do not block each other.
 */
const LOCK_MIGRATE = 0x43616901;
/** Held by every writer of `events` from its first statement (shared by appends; see commit-horizon.ts). */
export const LOCK_APPEND = 0x43616902;
const LOCK_PROMOTE = 0x43616903;

/**
 * Event-append transactions one store runs at once. Appends do not wait for one another (readers stop at
 * the commit horizon instead), so a second transaction lets PostgreSQL insert on a second core while the
 * first commits; groups still form from what queues while both run.
 */
const APPEND_TRANSACTIONS = 2;

/** Times an append is retried after PostgreSQL broke a deadlock by aborting it (40P01). */
const DEADLOCK_RETRIES = 3;

const INT8_OID = 20;

/** BIGINT (seq, counts, ms timestamps) arrives as a string; every value Cairn stores fits a double exactly. */
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary'): unknown =>
    oid === INT8_OID && format !== 'binary'
      ? (v: string) => Number(v)
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/** 32-bit FNV-1a as a signed int4. */
function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h | 0;
}

export interface EventRow {
  seq: number;
  event_id: string;
  user_id: string;
  item_id: string;
  type: string;
  value: number | null;
  ts: number;
  context: JsonObject | null;
}

interface ItemRow {
  id: string;
  categories: string[];
  attributes: JsonObject;
  available: boolean;
  created_at: number;
  updated_at: number;
}

interface UserRow {
  id: string;
  attributes: JsonObject;
  segments: string[];
  opt_out: boolean;
  created_at: number;
  updated_at: number;
}

interface ModelRow {
  version: string;
  algorithm: string;
  params: JsonObject;
  status: string;
  training_data: ModelVersion['trainingData'];
  metrics: Record<string, number>;
  train_seconds: number;
  artifact_path: string;
  checksum: string;
  config_hash: string;
  parent_version: string | null;
  created_at: number;
  promoted_at: number | null;
  error: string | null;
  lineage: ModelVersion['lineage'];
}

export const EVENT_COLUMNS = 'seq, event_id, user_id, item_id, type, value, ts, context';
const ITEM_COLUMNS = 'id, categories, attributes, available, created_at, updated_at';
const USER_COLUMNS = 'id, attributes, segments, opt_out, created_at, updated_at';
const MODEL_COLUMNS =
  'version, algorithm, params, status, training_data, metrics, train_seconds, artifact_path, checksum, config_hash, parent_version, created_at, promoted_at, error, lineage';

export const toEvent = (r: EventRow): StoredEvent => ({
  seq: r.seq,
  eventId: r.event_id,
  userId: r.user_id,
  itemId: r.item_id,
  type: r.type,
  value: r.value,
  timestamp: r.ts,
  context: r.context,
});

export const toItem = (r: ItemRow): Item => ({
  id: r.id,
  categories: r.categories,
  attributes: r.attributes,
  available: r.available,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

export const toUser = (r: UserRow): User => ({
  id: r.id,
  attributes: r.attributes,
  segments: r.segments,
  optOut: r.opt_out,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

const toModel = (r: ModelRow): ModelVersion => ({
  version: r.version,
  algorithm: r.algorithm,
  params: r.params,
  status: r.status as ModelVersion['status'],
  trainingData: r.training_data,
  metrics: r.metrics,
  trainSeconds: r.train_seconds,
  artifactPath: r.artifact_path,
  checksum: r.checksum,
  configHash: r.config_hash,
  parentVersion: r.parent_version,
  createdAt: r.created_at,
  promotedAt: r.promoted_at,
  error: r.error,
  lineage: r.lineage,
});

/** Values for `$1..$14` in MODEL_COLUMNS order (JSON columns as text, cast by the statement). */
const modelValues = (m: ModelVersion): unknown[] => [
  m.version,
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
  m.lineage === null ? null : JSON.stringify(m.lineage),
];

/** PostgreSQL implementation of every storage port. */
export class PostgresStore implements Store {
  readonly kind = 'postgres' as const;
  readonly events: EventStore;
  /** How far the `events` table can be read without passing over a row still to commit. */
  readonly eventHorizon: CommitHorizon;
  readonly items: ItemStore;
  readonly users: UserStore;
  readonly models: ModelStore;
  readonly experiments: ExperimentStore;
  readonly served: ServedLogStore;
  readonly keys: PgApiKeys;
  readonly audit: PgAudit;
  readonly settings: PgSettings;
  readonly offsets: ConsumerOffsets;
  readonly schema: string;
  /** Pool and schema, for the sibling adapters of this folder (logs, job queue, artifacts). */
  readonly db: Db;
  private closed = false;

  constructor(options: PostgresStoreOptions) {
    const schema = options.schema ?? 'public';
    // The name is spliced into SQL, so it is checked here too, not only by the config schema.
    if (!SCHEMA_NAME.test(schema)) {
      throw new CairnError('CAIRN_CONFIG_INVALID', `invalid PostgreSQL schema name "${schema}"`, {
        fields: [{ field: 'store.schema', message: 'must match ^[a-z_][a-z0-9_]*$' }],
      });
    }
    this.schema = schema;
    const pool = new pg.Pool({
      connectionString: options.url,
      max: options.maxConnections ?? 10,
      connectionTimeoutMillis: options.connectionTimeoutMs ?? 10_000,
      idleTimeoutMillis: 30_000,
      application_name: 'cairn',
      types,
    });
    // An idle connection dropped by the server emits 'error' on the pool; without a listener Node would
    // crash the process. The next query gets a fresh connection or a mapped CAIRN_UNAVAILABLE error.
    pool.on('error', () => undefined);
    this.db = new Db(pool, `"${schema}"`, hash32(schema));
    this.eventHorizon = new CommitHorizon(this.db, 'events', LOCK_APPEND);
    this.events = new PgEvents(this.db, this.eventHorizon);
    this.items = new PgItems(this.db);
    this.users = new PgUsers(this.db);
    this.models = new PgModels(this.db);
    this.experiments = new PgExperiments(this.db);
    this.served = new PgServedLog(this.db);
    this.keys = new PgApiKeys(this.db);
    this.audit = new PgAudit(this.db);
    this.settings = new PgSettings(this.db);
    this.offsets = new PgOffsets(this.db);
  }

  /**
   * Applies pending migrations in one transaction under an advisory lock, so several processes may start
   * at once: the first applies them, the others wait and then find nothing to do.
   */
  async migrate(): Promise<void> {
    const { s } = this.db;
    await this.db.tx(async (c) => {
      await this.db.lock(c, LOCK_MIGRATE);
      // Check first: CREATE SCHEMA IF NOT EXISTS still needs CREATE on the database, which a
      // least-privilege role given an existing schema does not have.
      const exists = await c.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [this.schema]);
      if (exists.rowCount === 0) await c.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
      await c.query(`CREATE TABLE IF NOT EXISTS ${s}.schema_migrations (
        version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`);
      const applied = new Set(
        (await c.query<{ version: number }>(`SELECT version FROM ${s}.schema_migrations`)).rows.map(
          (r) => r.version,
        ),
      );
      for (const m of POSTGRES_MIGRATIONS) {
        if (applied.has(m.version)) continue;
        await c.query(m.sql(s));
        await c.query(`INSERT INTO ${s}.schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`, [
          m.version,
          m.name,
          Date.now(),
        ]);
      }
    });
  }

  async ping(): Promise<void> {
    await this.db.query('SELECT 1');
  }

  /**
   * Vacuums the tables an erase touches (outside any transaction, as VACUUM must be), so the dead
   * tuples of the erased rows become free space instead of waiting for autovacuum. Their bytes stay in
   * that free space (and in pg_wal and backups) until overwritten: PostgreSQL has no secure delete.
   * SKIP_LOCKED: a table another VACUUM holds is left to it.
   */
  async purgeErased(): Promise<void> {
    const { s } = this.db;
    const tables = ['events', 'users', 'served', 'feedback', 'changes', 'artifacts', 'artifact_chunks'];
    await this.db.query(`VACUUM (SKIP_LOCKED) ${tables.map((t) => `${s}.${t}`).join(', ')}`);
  }

  async eraseUser(userId: string): Promise<StoredEvent[] | null> {
    const { s } = this.db;
    return this.db.tx(async (c) => {
      const events = await c.query<EventRow>(
        `DELETE FROM ${s}.events WHERE user_id = $1 RETURNING ${EVENT_COLUMNS}`,
        [userId],
      );
      const users = await c.query(`DELETE FROM ${s}.users WHERE id = $1`, [userId]);
      if (events.rows.length + (users.rowCount ?? 0) === 0) return null;
      return events.rows.map(toEvent).sort((a, b) => a.seq - b.seq);
    });
  }

  /** Ends the pool (idempotent). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.db.pool.end();
  }
}

/** Runs `attempt` again when PostgreSQL aborted it to break a deadlock (40P01), up to DEADLOCK_RETRIES times. */
async function retryDeadlocks<T>(attempt: () => Promise<T>): Promise<T> {
  for (let retries = 0; ; retries++) {
    try {
      return await attempt();
    } catch (e) {
      const code = (e as { code?: unknown } | null)?.code;
      if (code !== '40P01' || retries >= DEADLOCK_RETRIES) throw e;
    }
  }
}

class PgEvents implements EventStore {
  private readonly insertSql: string;
  /** Concurrent appends share transactions: one commit per group, not per call, two groups at once. */
  private readonly group = new GroupCommit<CairnEvent, AppendOutcome>({
    commit: (e) => this.insert(e),
    concurrency: APPEND_TRANSACTIONS,
  });

  constructor(
    private readonly db: Db,
    private readonly horizon: CommitHorizon,
  ) {
    // ORDER BY ord: seqs follow the batch order. ON CONFLICT DO NOTHING + RETURNING tells which were new.
    this.insertSql = `
      INSERT INTO ${db.s}.events (event_id, user_id, item_id, type, value, ts, context)
      SELECT e.event_id, e.user_id, e.item_id, e.type, e.value, e.ts, e.context
      FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::int8[], $7::jsonb[])
        WITH ORDINALITY AS e(event_id, user_id, item_id, type, value, ts, context, ord)
      ORDER BY e.ord
      ON CONFLICT (event_id) DO NOTHING
      RETURNING event_id`;
  }

  async append(events: CairnEvent[]): Promise<AppendOutcome[]> {
    if (events.length === 0) return [];
    return this.group.submit(events);
  }

  /**
   * One transaction, one INSERT (for a whole group of appends). Appends of this and other processes run
   * side by side: each holds the append lock in its shared form, which tells readers a writer is in
   * flight, and readers stop at the commit horizon (commit-horizon.ts) rather than at the highest seq, so
   * seq 11 committing before seq 10 never lets a reader pass over 10. Two appends that share event ids in
   * different orders can deadlock on the unique index; PostgreSQL aborts one, which is retried.
   */
  private async insert(events: CairnEvent[]): Promise<AppendOutcome[]> {
    // Only first occurrences go to the database; later repeats in the batch are duplicates by definition.
    const first = new Map<string, number>();
    const n = events.length;
    const ids: string[] = [];
    const users: string[] = [];
    const items: string[] = [];
    const kinds: string[] = [];
    const values: (number | null)[] = [];
    const times: number[] = [];
    const contexts: (string | null)[] = [];
    for (let i = 0; i < n; i++) {
      const e = events[i];
      if (first.has(e.eventId)) continue;
      first.set(e.eventId, i);
      ids.push(e.eventId);
      users.push(e.userId);
      items.push(e.itemId);
      kinds.push(e.type);
      values.push(e.value ?? null);
      times.push(e.timestamp);
      contexts.push(e.context === null || e.context === undefined ? null : JSON.stringify(e.context));
    }
    const params = [ids, users, items, kinds, values, times, contexts];
    const inserted = await retryDeadlocks(() =>
      this.db.tx(async (c) => {
        await this.db.lockShared(c, LOCK_APPEND); // before the INSERT draws a seq
        const res = await c.query<{ event_id: string }>({
          name: 'cairn_events_append',
          text: this.insertSql,
          values: params,
        });
        return new Set(res.rows.map((r) => r.event_id));
      }),
    );
    const out = new Array<AppendOutcome>(n);
    for (let i = 0; i < n; i++) {
      const id = events[i].eventId;
      out[i] = first.get(id) === i && inserted.has(id) ? 'inserted' : 'duplicate';
    }
    return out;
  }

  /**
   * Keeps each event's log seq: seqs come from the log, and one consumer writes them in log order. ON
   * CONFLICT without a target covers both the event id and the seq. The append lock, exclusive here and
   * taken first, keeps the sequence's move below from racing an ordinary append's draw and shows this
   * writer to the commit horizon.
   */
  async appendLogged(events: StoredEvent[]): Promise<AppendOutcome[]> {
    if (events.length === 0) return [];
    const { s } = this.db;
    const res = await this.db.tx(async (c) => {
      await this.db.lock(c, LOCK_APPEND);
      const inserted = await c.query<{ event_id: string }>(
        `INSERT INTO ${s}.events (seq, event_id, user_id, item_id, type, value, ts, context)
       SELECT e.seq, e.event_id, e.user_id, e.item_id, e.type, e.value, e.ts, e.context
       FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::float8[], $7::int8[],
         $8::jsonb[]) WITH ORDINALITY AS e(seq, event_id, user_id, item_id, type, value, ts, context, ord)
       ORDER BY e.ord
       ON CONFLICT DO NOTHING
       RETURNING event_id`,
        [
          events.map((e) => e.seq),
          events.map((e) => e.eventId),
          events.map((e) => e.userId),
          events.map((e) => e.itemId),
          events.map((e) => e.type),
          events.map((e) => e.value ?? null),
          events.map((e) => e.timestamp),
          events.map((e) =>
            e.context === null || e.context === undefined ? null : JSON.stringify(e.context),
          ),
        ],
      );
      // Explicit seqs do not move the BIGSERIAL counter: move it past them (never back), so an ordinary
      // append on this schema later can never collide with a logged seq.
      await c.query(
        `SELECT setval(pg_get_serial_sequence('${s}.events', 'seq'),
           GREATEST((SELECT last_value FROM ${s}.events_seq_seq), $1::bigint))`,
        [events.reduce((m, e) => Math.max(m, e.seq), 0)],
      );
      return inserted.rows;
    });
    const inserted = new Set(res.map((r) => r.event_id));
    const seen = new Set<string>();
    return events.map((e) => {
      const first = !seen.has(e.eventId);
      seen.add(e.eventId);
      return first && inserted.has(e.eventId) ? 'inserted' : 'duplicate';
    });
  }

  async forUser(userId: string, limit: number): Promise<StoredEvent[]> {
    if (limit <= 0) return [];
    const rows = await this.db.query<EventRow>(
      `SELECT ${EVENT_COLUMNS} FROM ${this.db.s}.events WHERE user_id = $1 ORDER BY ts DESC, seq DESC LIMIT $2`,
      [userId, Math.floor(limit)],
    );
    return rows.map(toEvent);
  }

  /**
   * Keyset pages by seq. Without `untilSeq` the scan stops at the commit horizon when it started (the
   * newest seq below which nothing more can commit): a consistent snapshot that terminates under live
   * ingestion, and that a later `scan({ afterSeq })` from its end continues without a gap.
   */
  async *scan(options: {
    afterSeq?: number;
    batchSize?: number;
    untilSeq?: number;
  }): AsyncIterable<StoredEvent[]> {
    const { afterSeq, batchSize, untilSeq } = scanBounds(options);
    const until = untilSeq ?? (await this.horizon.advance());
    const sql = `SELECT ${EVENT_COLUMNS} FROM ${this.db.s}.events WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3`;
    let cursor = afterSeq;
    while (cursor < until) {
      const rows = await this.db.query<EventRow>(sql, [cursor, until, batchSize]);
      if (rows.length === 0) return;
      yield rows.map(toEvent);
      cursor = rows[rows.length - 1].seq;
      if (rows.length < batchSize) return;
    }
  }

  async count(): Promise<number> {
    const rows = await this.db.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${this.db.s}.events`);
    return rows[0].n;
  }

  /** Highest seq among stored events (0 when empty); BIGSERIAL never hands out a seq twice. */
  async lastSeq(): Promise<number> {
    const rows = await this.db.query<{ s: number }>(
      `SELECT COALESCE(MAX(seq), 0) AS s FROM ${this.db.s}.events`,
    );
    return rows[0].s;
  }

  async deleteForUser(userId: string): Promise<number> {
    const rows = await this.db.query<{ seq: number }>(
      `DELETE FROM ${this.db.s}.events WHERE user_id = $1 RETURNING seq`,
      [userId],
    );
    return rows.length;
  }
}

class PgItems implements ItemStore {
  constructor(private readonly db: Db) {}

  /**
   * Two statements in one transaction, because ON CONFLICT DO UPDATE cannot tell "field not given" from
   * the default a new row gets: (1) create missing rows with defaults, (2) lock every row in id order
   * (no deadlock between overlapping batches) and (3) UPDATE only the given fields. Step 3 reads the
   * latest committed row, so concurrent partial patches of one item never undo each other.
   */
  async upsert(items: ItemPatch[]): Promise<Item[]> {
    if (items.length === 0) return [];
    const { s } = this.db;
    const folded = foldItemPatches(items);
    const now = Date.now();
    const doc = JSON.stringify(
      folded.map((p) => ({
        id: p.id,
        categories: p.categories ?? null,
        attributes: p.attributes ?? null,
        available: p.available ?? null,
        created_at: p.createdAt ?? null,
      })),
    );
    const ids = folded.map((p) => p.id);
    const rows = await this.db.tx(async (c) => {
      await c.query(
        `INSERT INTO ${s}.items (id, categories, attributes, available, created_at, updated_at)
         SELECT x.id, '{}', '{}', true, COALESCE(x.created_at, $2), $2
         FROM jsonb_to_recordset($1::jsonb) AS x(id text, created_at bigint)
         ORDER BY x.id COLLATE "C"
         ON CONFLICT (id) DO NOTHING`,
        [doc, now],
      );
      await c.query(`SELECT 1 FROM ${s}.items WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE`, [ids]);
      const res = await c.query<ItemRow>(
        `UPDATE ${s}.items AS t SET
           categories = CASE WHEN x.categories IS NULL THEN t.categories
                             ELSE ARRAY(SELECT jsonb_array_elements_text(x.categories)) END,
           attributes = COALESCE(x.attributes, t.attributes),
           available = COALESCE(x.available, t.available),
           created_at = COALESCE(x.created_at, t.created_at),
           updated_at = $2
         FROM jsonb_to_recordset($1::jsonb)
           AS x(id text, categories jsonb, attributes jsonb, available boolean, created_at bigint)
         WHERE t.id = x.id
         RETURNING t.id, t.categories, t.attributes, t.available, t.created_at, t.updated_at`,
        [doc, now],
      );
      return res.rows;
    });
    const byId = new Map(rows.map((r) => [r.id, toItem(r)]));
    // A batch naming one id twice reports the final state at both positions.
    return items.map((p) => byId.get(p.id)!);
  }

  async get(id: string): Promise<Item | null> {
    const rows = await this.db.query<ItemRow>(
      `SELECT ${ITEM_COLUMNS} FROM ${this.db.s}.items WHERE id = $1`,
      [id],
    );
    return rows.length > 0 ? toItem(rows[0]) : null;
  }

  /** Existing items among `ids`, in the order asked (missing ids skipped, repeats once). */
  async getMany(ids: string[]): Promise<Item[]> {
    if (ids.length === 0) return [];
    const rows = await this.db.query<ItemRow>(
      `SELECT ${ITEM_COLUMNS} FROM ${this.db.s}.items WHERE id = ANY($1::text[])`,
      [ids],
    );
    const found = new Map(rows.map((r) => [r.id, toItem(r)]));
    const out: Item[] = [];
    for (const id of new Set(ids)) {
      const item = found.get(id);
      if (item) out.push(item);
    }
    return out;
  }

  async list(options: { after?: string; limit: number }): Promise<Item[]> {
    if (options.limit <= 0) return [];
    const limit = Math.floor(options.limit);
    const { s } = this.db;
    const rows =
      options.after === undefined
        ? await this.db.query<ItemRow>(`SELECT ${ITEM_COLUMNS} FROM ${s}.items ORDER BY id LIMIT $1`, [limit])
        : await this.db.query<ItemRow>(
            `SELECT ${ITEM_COLUMNS} FROM ${s}.items WHERE id > $1 ORDER BY id LIMIT $2`,
            [options.after, limit],
          );
    return rows.map(toItem);
  }

  async count(): Promise<number> {
    const rows = await this.db.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${this.db.s}.items`);
    return rows[0].n;
  }
}

class PgUsers implements UserStore {
  constructor(private readonly db: Db) {}

  async upsert(user: UserPatch): Promise<User> {
    const { s } = this.db;
    // One row, so parameters can say "not given" directly: NULL keeps the stored value.
    const rows = await this.db.query<UserRow>(
      `INSERT INTO ${s}.users AS u (id, attributes, segments, opt_out, created_at, updated_at)
       VALUES ($1, COALESCE($2::jsonb, '{}'), COALESCE($3::text[], '{}'), COALESCE($4::boolean, false), $5, $5)
       ON CONFLICT (id) DO UPDATE SET
         attributes = COALESCE($2::jsonb, u.attributes),
         segments = COALESCE($3::text[], u.segments),
         opt_out = COALESCE($4::boolean, u.opt_out),
         updated_at = $5
       RETURNING ${USER_COLUMNS}`,
      [
        user.id,
        user.attributes === undefined ? null : JSON.stringify(user.attributes),
        user.segments ?? null,
        user.optOut ?? null,
        Date.now(),
      ],
    );
    return toUser(rows[0]);
  }

  async get(id: string): Promise<User | null> {
    const rows = await this.db.query<UserRow>(
      `SELECT ${USER_COLUMNS} FROM ${this.db.s}.users WHERE id = $1`,
      [id],
    );
    return rows.length > 0 ? toUser(rows[0]) : null;
  }

  /** Sorted by id. */
  async optedOut(): Promise<string[]> {
    const rows = await this.db.query<{ id: string }>(
      `SELECT id FROM ${this.db.s}.users WHERE opt_out ORDER BY id`,
    );
    return rows.map((r) => r.id);
  }

  async delete(id: string): Promise<boolean> {
    const rows = await this.db.query<{ id: string }>(
      `DELETE FROM ${this.db.s}.users WHERE id = $1 RETURNING id`,
      [id],
    );
    return rows.length > 0;
  }

  async count(): Promise<number> {
    const rows = await this.db.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${this.db.s}.users`);
    return rows[0].n;
  }
}

class PgModels implements ModelStore {
  private readonly updateSql: string;

  constructor(private readonly db: Db) {
    this.updateSql = `UPDATE ${db.s}.models SET algorithm = $2, params = $3::jsonb, status = $4,
      training_data = $5::jsonb, metrics = $6::jsonb, train_seconds = $7, artifact_path = $8, checksum = $9,
      config_hash = $10, parent_version = $11, created_at = $12, promoted_at = $13, error = $14,
      lineage = $15::jsonb
      WHERE version = $1`;
  }

  async insert(model: ModelVersion): Promise<void> {
    await this.db.query(
      `INSERT INTO ${this.db.s}.models (${MODEL_COLUMNS})
       VALUES ($1, $2, $3::jsonb, $4, $5::jsonb, $6::jsonb, $7, $8, $9, $10, $11, $12, $13, $14, $15::jsonb)`,
      modelValues(model),
    );
  }

  /** Throws CAIRN_MODEL_NOT_FOUND for an unknown version. */
  async update(version: string, patch: Partial<Omit<ModelVersion, 'version'>>): Promise<ModelVersion> {
    return this.db.tx(async (c) => {
      const current = await this.locked(c, version);
      const next: ModelVersion = { ...current, ...definedFields(patch), version };
      await c.query(this.updateSql, modelValues(next));
      return next;
    });
  }

  async get(version: string): Promise<ModelVersion | null> {
    const rows = await this.db.query<ModelRow>(
      `SELECT ${MODEL_COLUMNS} FROM ${this.db.s}.models WHERE version = $1`,
      [version],
    );
    return rows.length > 0 ? toModel(rows[0]) : null;
  }

  /** Newest first; the serial id breaks ties between models created in the same millisecond. */
  async list(limit?: number): Promise<ModelVersion[]> {
    const rows = await this.db.query<ModelRow>(
      `SELECT ${MODEL_COLUMNS} FROM ${this.db.s}.models ORDER BY created_at DESC, id DESC LIMIT $1`,
      [limit === undefined ? null : Math.max(0, Math.floor(limit))],
    );
    return rows.map(toModel);
  }

  async champion(): Promise<ModelVersion | null> {
    const rows = await this.db.query<ModelRow>(
      `SELECT ${MODEL_COLUMNS} FROM ${this.db.s}.models WHERE status = 'champion'`,
    );
    return rows.length > 0 ? toModel(rows[0]) : null;
  }

  /**
   * Serialized per schema by an advisory lock, so two concurrent promotions chain (the second retires the
   * first) instead of racing on "who is the champion". Throws CAIRN_MODEL_NOT_FOUND, or
   * CAIRN_MODEL_NOT_PROMOTABLE unless the model is `ready` or `retired`; promoting the champion returns
   * it unchanged.
   */
  async promote(version: string, at: number): Promise<ModelVersion> {
    const { s } = this.db;
    return this.db.tx(async (c) => {
      await this.db.lock(c, LOCK_PROMOTE);
      const target = await this.locked(c, version);
      if (target.status === 'champion') return target;
      // `rejected` is promotable here: the registry asks for `force` before it gets this far.
      if (target.status !== 'ready' && target.status !== 'retired' && target.status !== 'rejected') {
        throw new CairnError('CAIRN_MODEL_NOT_PROMOTABLE', `model ${version} is ${target.status}`, {
          version,
          status: target.status,
        });
      }
      const previous = await c.query<{ version: string }>(
        `UPDATE ${s}.models SET status = 'retired' WHERE status = 'champion' RETURNING version`,
      );
      const next: ModelVersion = {
        ...target,
        status: 'champion',
        promotedAt: at,
        parentVersion: previous.rows.length > 0 ? previous.rows[0].version : null,
      };
      await c.query(this.updateSql, modelValues(next));
      return next;
    });
  }

  async replaceArtifact(
    version: string,
    from: Pick<ModelVersion, 'artifactPath' | 'checksum'>,
    to: Pick<ModelVersion, 'artifactPath' | 'checksum'>,
  ): Promise<boolean> {
    const rows = await this.db.query(
      `UPDATE ${this.db.s}.models SET artifact_path = $2, checksum = $3
       WHERE version = $1 AND artifact_path = $4 AND checksum = $5 RETURNING 1`,
      [version, to.artifactPath, to.checksum, from.artifactPath, from.checksum],
    );
    return rows.length === 1;
  }

  private async locked(c: PoolClient, version: string): Promise<ModelVersion> {
    const res = await c.query<ModelRow>(
      `SELECT ${MODEL_COLUMNS} FROM ${this.db.s}.models WHERE version = $1 FOR UPDATE`,
      [version],
    );
    if (res.rows.length === 0) throw new CairnError('CAIRN_MODEL_NOT_FOUND', `model ${version} not found`);
    return toModel(res.rows[0]);
  }
}

class PgOffsets implements ConsumerOffsets {
  constructor(private readonly db: Db) {}

  async get(name: string): Promise<number> {
    const rows = await this.db.query<{ seq: number }>(
      `SELECT seq FROM ${this.db.s}.consumer_offsets WHERE name = $1`,
      [name],
    );
    return rows.length > 0 ? rows[0].seq : 0;
  }

  async set(name: string, seq: number): Promise<void> {
    await this.db.query(
      `INSERT INTO ${this.db.s}.consumer_offsets AS o (name, seq, updated_at) VALUES ($1, $2, $3)
       ON CONFLICT (name) DO UPDATE SET seq = GREATEST(o.seq, EXCLUDED.seq), updated_at = EXCLUDED.updated_at`,
      [name, seq, Date.now()],
    );
  }
}
