/**
 * Storage ports, split by access pattern. Adapters (sqlite/, postgres/) implement them and own their
 * connections; nothing driver-specific leaks through these interfaces. Every adapter passes the one
 * conformance suite in conformance/.
 */
import type {
  ApiKeyRecord,
  AuditRecord,
  CairnEvent,
  EventTypeSpec,
  Experiment,
  FeedbackRecord,
  Item,
  JsonObject,
  ModelVersion,
  ServedRecord,
  StoredEvent,
  User,
  VariantTotals,
} from '../domain/types.ts';
import type { ItemFeatureState, UserMeta } from '../features/definitions.ts';

/** Result of appending one event: `false` means its event_id was already stored (never counted twice). */
export type AppendOutcome = 'inserted' | 'duplicate';

export interface EventStore {
  /**
   * Appends events atomically (all or nothing for the call) and reports per event whether it was new.
   * Idempotent by `eventId`: a repeated id, within the batch or across calls, is a `duplicate`.
   * Concurrent calls may share one transaction (group commit, storage/group-commit.ts); each call's
   * events get ascending seqs in its order, and a call that fails alone fails without the others. Calls
   * in flight together have no order between them, and where two transactions append at once
   * (PostgreSQL) their seqs may interleave.
   */
  append(events: CairnEvent[]): Promise<AppendOutcome[]>;
  /**
   * Stores events that already carry their event-log seq (the production store-writer consuming the
   * NATS stream): each keeps its `seq`, so store seqs equal log seqs and model watermarks mean the same
   * thing everywhere. Idempotent by `eventId` (and by seq): replays are `duplicate`.
   */
  appendLogged(events: StoredEvent[]): Promise<AppendOutcome[]>;
  /** A user's events, newest first (by timestamp, then insertion order). */
  forUser(userId: string, limit: number): Promise<StoredEvent[]>;
  /**
   * All events in insertion order, in pages, starting after `afterSeq` (for training and backfills).
   * `afterSeq` is exclusive, `untilSeq` inclusive; without `untilSeq` the scan stops where it could when it
   * started (a snapshot that terminates under live ingestion): at `lastSeq()` where appends commit one at a
   * time, below any seq still committing where they run concurrently (PostgreSQL), so that no event can
   * later appear at or below the scan's end. Pages are never empty.
   */
  scan(options: { afterSeq?: number; batchSize?: number; untilSeq?: number }): AsyncIterable<StoredEvent[]>;
  count(): Promise<number>;
  /**
   * Highest assigned sequence number, 0 when empty. It is the highest among the events stored now (erasing
   * the newest events lowers it), and seqs are never reused, so a later append always gets a higher one.
   */
  lastSeq(): Promise<number>;
  deleteForUser(userId: string): Promise<number>;
}

export interface ItemPatch {
  id: string;
  categories?: string[];
  attributes?: JsonObject;
  available?: boolean;
  createdAt?: number;
}

export interface ItemStore {
  /** Inserts or replaces the given fields of each item; unspecified fields keep their stored values. */
  upsert(items: ItemPatch[]): Promise<Item[]>;
  get(id: string): Promise<Item | null>;
  /** The stored items among `ids`, in the order asked; missing ids are skipped, repeated ids returned once. */
  getMany(ids: string[]): Promise<Item[]>;
  /** Pages through items ordered by id; `after` is the last id of the previous page. */
  list(options: { after?: string; limit: number }): Promise<Item[]>;
  count(): Promise<number>;
}

export interface UserPatch {
  id: string;
  attributes?: JsonObject;
  segments?: string[];
  optOut?: boolean;
}

export interface UserStore {
  upsert(user: UserPatch): Promise<User>;
  get(id: string): Promise<User | null>;
  /** Ids of users that opted out of personalization. */
  optedOut(): Promise<string[]>;
  delete(id: string): Promise<boolean>;
  count(): Promise<number>;
}

export interface ModelStore {
  insert(model: ModelVersion): Promise<void>;
  update(version: string, patch: Partial<Omit<ModelVersion, 'version'>>): Promise<ModelVersion>;
  get(version: string): Promise<ModelVersion | null>;
  /** Newest first. */
  list(limit?: number): Promise<ModelVersion[]>;
  champion(): Promise<ModelVersion | null>;
  /**
   * Makes `version` the champion atomically: the current champion (if any) becomes `retired`
   * and `version` records it as its parent.
   */
  promote(version: string, at: number): Promise<ModelVersion>;
  /**
   * Points `version` at a rewritten artifact (an erasure rewrote it) only if it still points at `from`:
   * false when another writer replaced it first (the caller starts over from the newer artifact).
   */
  replaceArtifact(
    version: string,
    from: Pick<ModelVersion, 'artifactPath' | 'checksum'>,
    to: Pick<ModelVersion, 'artifactPath' | 'checksum'>,
  ): Promise<boolean>;
}

export interface ExperimentStore {
  /**
   * Throws CAIRN_CONFLICT when the id exists, or when it would be a second `running` experiment that
   * routes users (kind `ab` or `canary`; the database allows one, shadows are not limited).
   */
  create(experiment: Experiment): Promise<void>;
  get(id: string): Promise<Experiment | null>;
  /** Newest first; `status` filters. */
  list(options?: { status?: Experiment['status'] }): Promise<Experiment[]>;
  /** Throws CAIRN_NOT_FOUND when absent. */
  update(id: string, patch: Partial<Omit<Experiment, 'id'>>): Promise<Experiment>;
}

/**
 * What was served (and what a shadow model would have served), and the feedback that followed, so
 * clicks and conversions are attributed to answers by request id.
 */
export interface ServedLogStore {
  /** Idempotent by (requestId, mode): a repeat is ignored. */
  record(records: ServedRecord[]): Promise<void>;
  get(requestId: string, mode?: ServedRecord['mode']): Promise<ServedRecord | null>;
  /**
   * Stores feedback; idempotent by (requestId, itemId, type). Feedback whose request was never served
   * is stored too (the answer may be recorded later), but counts only once its request is known.
   */
  addFeedback(records: FeedbackRecord[]): Promise<('inserted' | 'duplicate')[]>;
  /** Per-variant totals of an experiment's served (mode `served`) answers and their feedback. */
  variantTotals(experimentId: string): Promise<VariantTotals[]>;
  /** Served and shadow answers of an experiment, newest first (for comparisons and tests). */
  list(options: {
    experimentId?: string;
    mode?: ServedRecord['mode'];
    limit: number;
  }): Promise<ServedRecord[]>;
  /**
   * Served answers (mode `served`) of `endpoint` that have at least one click or conversion, newest first
   * (by `at`, then request id), at most `limit`, each with all of its feedback (by item, then type): the
   * logged queries a ranker learns from. `before`: only answers after that one in this order (the last
   * answer of the previous page).
   */
  withOutcomes(options: {
    endpoint: string;
    limit: number;
    before?: Pick<ServedRecord, 'at' | 'requestId'>;
  }): Promise<ServedWithFeedback[]>;
  /** GDPR: removes the user's served records (and their feedback). */
  deleteForUser(userId: string): Promise<number>;
}

/** A served answer and the feedback attributed to it. */
export interface ServedWithFeedback {
  served: ServedRecord;
  feedback: FeedbackRecord[];
}

/** API keys (used from the default tenant's store: keys are a deployment's, each bound to a tenant). */
export interface ApiKeyStore {
  /** Fails with CAIRN_CONFLICT when the id exists. */
  insert(key: ApiKeyRecord): Promise<void>;
  get(id: string): Promise<ApiKeyRecord | null>;
  /** Every key, newest first, revoked ones included; only `tenant`'s when given. */
  list(options?: { tenant?: string }): Promise<ApiKeyRecord[]>;
  /** Marks the key revoked (idempotent: a second revoke keeps the first time); null when unknown. */
  revoke(id: string, at: number, by: string): Promise<ApiKeyRecord | null>;
}

/** Append-only audit trail of security-relevant actions. */
export interface AuditStore {
  append(record: Omit<AuditRecord, 'seq'>): Promise<AuditRecord>;
  /** Newest first. */
  list(options?: { action?: AuditRecord['action']; limit?: number }): Promise<AuditRecord[]>;
}

/** Small deployment settings Cairn generates once and must keep (e.g. the log-hash key). */
export interface SettingsStore {
  get(key: string): Promise<string | null>;
  /** Stores `value` unless the key exists; returns the stored value either way (first writer wins). */
  putIfAbsent(key: string, value: string): Promise<string>;
}

/** Where each durable consumer of a log stands (the SQL logs keep them beside their tables). */
export interface ConsumerOffsets {
  get(name: string): Promise<number>;
  /** Moves the position forward only: a lower `seq` than stored is ignored. */
  set(name: string, seq: number): Promise<void>;
}

export interface Store {
  readonly kind: 'sqlite' | 'postgres';
  readonly events: EventStore;
  readonly items: ItemStore;
  readonly users: UserStore;
  readonly models: ModelStore;
  readonly experiments: ExperimentStore;
  readonly served: ServedLogStore;
  readonly keys: ApiKeyStore;
  readonly audit: AuditStore;
  readonly settings: SettingsStore;
  /** Creates or upgrades the schema; safe to call on every start. */
  migrate(): Promise<void>;
  /** Durable positions of named consumers of the store's own logs (SQL log adapters use them). */
  readonly offsets: ConsumerOffsets;
  /** Cheap round trip for readiness checks. */
  ping(): Promise<void>;
  /**
   * GDPR erase: removes the user and all their events in one transaction, and returns the events it
   * removed (in seq order), so derived state can be corrected exactly by what was actually deleted.
   * Returns null when nothing was stored for the user.
   */
  eraseUser(userId: string): Promise<StoredEvent[] | null>;
  /**
   * After an erase: makes sure the deleted rows do not linger in the database's files (SQLite: zeroed
   * pages are checkpointed and the WAL truncated; PostgreSQL: the touched tables are vacuumed).
   */
  purgeErased(): Promise<void>;
  close(): Promise<void>;
}

/* ------------------------------------------------------------------------------------------------
 * The change feed. Two ordered, durable, replayable logs: behaviour events, and entity changes
 * (catalog, users, erasures, champion promotions). Embedded, the store's own tables are the logs
 * (with an in-process notify, and PostgreSQL LISTEN/NOTIFY across processes); in production they are
 * NATS JetStream streams, and an idempotent consumer feeds the store of record from the event log.
 * Serving state is a consumer of both logs, with its own watermarks. Every adapter passes
 * conformance/log.conformance.ts.
 * ---------------------------------------------------------------------------------------------- */

/** A change every replica must see, in log order. */
export type EntityChange =
  | { kind: 'items'; items: Item[] }
  | { kind: 'user'; user: User }
  | {
      /**
       * GDPR erase. `events` are the erased user's events (no user id), so that state derived from
       * them (popularity) is subtracted exactly instead of rebuilt by a full scan. The consumer that
       * applies the erase passes only events it had applied (seq ≤ its event watermark).
       */
      kind: 'erase';
      userId: string;
      events: Pick<StoredEvent, 'seq' | 'itemId' | 'type' | 'value' | 'timestamp'>[];
    }
  | { kind: 'champion'; version: string }
  /** An experiment was created or changed state (every replica routes users by the running ones). */
  | { kind: 'experiment'; experiment: Experiment };

export interface LogRecord<T> {
  seq: number;
  value: T;
}

export interface ConsumeOptions {
  /**
   * Durable consumer name: its position survives restarts and is shared by every process consuming
   * under that name (each record is handled by one of them; after a crash, the SQL logs deliver again
   * what was handled within about a second before it: they store the position at most once a second and
   * on close).
   * Without it the consumer is private to this process and starts after `after`.
   */
  durable?: string;
  /** Exclusive start for a private consumer (default 0: from the beginning). */
  after?: number;
  /** Largest batch handed to the handler (default 1000; SQLite's logs 250: see SQLITE_CONSUME_BATCH). */
  batchSize?: number;
}

/** A running consumer. Delivery is at least once, in log order; handlers must be idempotent. */
export interface LogConsumer {
  /**
   * Highest seq whose batch the handler completed. Starts at the start point: `after` for a private
   * consumer, the stored position for a durable one (so `caughtUp(head)` resolves at once when there
   * is nothing new).
   */
  readonly position: number;
  /**
   * Resolves once `position ≥ seq` (immediately if already there); rejects with CAIRN_UNAVAILABLE if
   * the consumer is closed first.
   */
  caughtUp(seq: number): Promise<void>;
  /** Stops after the batch in progress; resolves when stopped. */
  close(): Promise<void>;
}

/**
 * A batch handler. A batch is acknowledged when it resolves; when it rejects, the consumer waits (with
 * backoff) and delivers the same records again, so nothing is skipped while a dependency is down.
 */
export type BatchHandler<R> = (records: R[]) => Promise<void>;

export interface EventLog {
  readonly kind: string;
  /**
   * Appends events durably (resolved = durable, safe to acknowledge to the client) and reports per event
   * whether it is new. Idempotent by `eventId`: a repeat is a `duplicate` and gets no new seq. (A NATS
   * stream recognizes repeats within its duplicate window; the store of record beyond it.)
   */
  append(events: CairnEvent[]): Promise<AppendOutcome[]>;
  /**
   * Events with `seq > after`, ascending, at most `limit`, never passing over a seq that may still
   * commit: a reader that moves its position to the last one returned misses nothing.
   */
  read(after: number, limit: number): Promise<StoredEvent[]>;
  /** Highest seq in the log (0 when empty). */
  head(): Promise<number>;
  consume(options: ConsumeOptions, handler: BatchHandler<StoredEvent>): LogConsumer;
  /** GDPR: drops the user's events from the log itself where the log keeps its own copy. */
  forgetUser(userId: string): Promise<void>;
  close(): Promise<void>;
}

export interface ChangeLog {
  readonly kind: string;
  /** Appends durably, in order; returns the seq of each change. */
  append(changes: EntityChange[]): Promise<number[]>;
  read(after: number, limit: number): Promise<LogRecord<EntityChange>[]>;
  head(): Promise<number>;
  consume(options: ConsumeOptions, handler: BatchHandler<LogRecord<EntityChange>>): LogConsumer;
  /** GDPR: removes the user's `user` records (their attributes) from the log, at erase time. */
  forgetUser(userId: string): Promise<void>;
  /**
   * GDPR: removes records for good (the `erase` records, once every consumer that needs their user id
   * applied them: see security/erasure.ts). Unknown or already removed seqs are ignored.
   */
  remove(seqs: number[]): Promise<void>;
  /**
   * Lowest position among the durable consumers of this log (null when it has none): every record at or
   * below it was applied by all of them.
   */
  durableFloor(): Promise<number | null>;
  close(): Promise<void>;
}

/* ------------------------------------------------------------------------------------------------
 * Online state: what serving reads on every request, kept current by the change-feed consumer.
 * Embedded: memory (snapshotted to the artifact store so a restart resumes, not rescans). Production:
 * Redis, shared by every API replica. Every adapter passes conformance/online-state.conformance.ts.
 * ---------------------------------------------------------------------------------------------- */

export interface PopularEntry {
  itemId: string;
  /** Decayed weighted interactions as of `now`. */
  score: number;
}

export interface OnlineWatermarks {
  /** Highest event-log seq applied. */
  events: number;
  /** Highest change-log seq applied. */
  changes: number;
}

export interface OnlineStateOptions {
  /** Weight of each event type (the training weights: no train/serve skew). */
  types: Readonly<Record<string, EventTypeSpec>>;
  popularityHalfLifeDays: number;
  /** Newest events kept per user. */
  historyLimit: number;
  /** Config `events.maxEventWeight`: one event adds at most this to popularity (absent: no limit). */
  maxEventWeight?: number;
  /** Config `events.maxUserItemWeight`: one user holds at most this of one item's popularity. */
  maxUserItemWeight?: number;
  /** Config `features` (item feature states, features/item-state.ts); absent: FEATURE_DEFAULTS. */
  features?: { halfLivesDays: readonly number[]; maxSegmentsPerItem: number };
}

export interface OnlineState {
  readonly kind: string;
  /**
   * Applies events in log order: time-decayed item popularity (positive interactions), the user's
   * bounded recent history, and drops the user's cached answers. Events with `seq ≤ watermarks.events`
   * are skipped, so a replayed batch changes nothing.
   */
  applyEvents(events: StoredEvent[]): Promise<void>;
  /**
   * Applies entity changes in log order: items → catalog, user → opt-out flag, segments and attributes,
   * erase → the user's history, flag, segments, attributes and cache are dropped and their events'
   * popularity subtracted and taken back out of their items' feature states (`unfoldItemEvent`), champion → nothing to store (but the watermark moves). Records with `seq ≤ watermarks.changes` are skipped.
   */
  applyChanges(records: LogRecord<EntityChange>[]): Promise<void>;
  watermarks(): Promise<OnlineWatermarks>;
  /** The user's newest events, newest first (by timestamp, then seq), at most `limit`. */
  recentEvents(userId: string, limit: number): Promise<StoredEvent[]>;
  optedOut(userId: string): Promise<boolean>;
  /** Items by popularity at `now`, best first, from rank `offset` (0-based), at most `count`. */
  popular(offset: number, count: number, now: number): Promise<PopularEntry[]>;
  /** Decayed popularity of each id at `now` (0 for unknown ids), in the order asked. */
  popularity(itemIds: string[], now: number): Promise<number[]>;
  /** Number of items with popularity. */
  popularCount(): Promise<number>;
  /** Catalog entries ordered by id, after `after`, at most `limit` (to load a replica's catalog view). */
  items(after: string | undefined, limit: number): Promise<Item[]>;
  /**
   * Feature states of the given items (null when the item has no events), in the order asked. `applyEvents`
   * folds every applied event into its item's state with features/item-state.ts `foldItemEvent` (segments:
   * the acting user's stored segments at that moment). The states are for reading only: a caller must not
   * modify them (the memory adapter hands out its own, copying before it next folds into one).
   */
  itemFeatures(itemIds: string[]): Promise<(ItemFeatureState | null)[]>;
  /** The user's segments and attributes as last PUT (null when unknown or erased). */
  userMeta(userId: string): Promise<UserMeta | null>;
  /**
   * Cached answer for the user under `key` (null when absent, expired, or dropped by a newer event or
   * user record of theirs).
   */
  cacheGet(userId: string, key: string): Promise<string | null>;
  /**
   * A token that changes whenever the user's cached answers are dropped (an event of theirs applied, a
   * new record of theirs — its segments and attributes feed the cold-start and ranked answers —, an
   * erase). Read it before the reads an answer is computed from and pass it to `cacheSet`: an answer
   * computed from a history that has since moved on is then not stored, so a cached answer is always
   * one the current history would give, and a hit needs no history read. A version never comes back
   * for another history, not even after `clear()` (a process may keep what a history gave under it).
   */
  cacheVersion(userId: string): Promise<string>;
  /** Stores `value` under `key`; with `version`, only if the user's cache version is still that one. */
  cacheSet(userId: string, key: string, value: string, ttlMs: number, version?: string): Promise<void>;
  /** Forgets everything (tests, rebuilds). */
  clear(): Promise<void>;
  close(): Promise<void>;
}

/* ------------------------------------------------------------------------------------------------
 * Artifact store: model files by key (`models/<version>.cairn`), never by absolute path. Embedded:
 * files under dataDir. Production: PostgreSQL (chunked bytea), so replicas need no shared volume.
 * Every adapter passes conformance/artifacts.conformance.ts.
 * ---------------------------------------------------------------------------------------------- */

export interface ArtifactStore {
  readonly kind: string;
  /**
   * Stores `bytes` under `key` atomically (readers see the old or the new bytes, never a mix). The bytes
   * must not change until it resolves (they are hashed and written a part at a time).
   */
  put(key: string, bytes: Uint8Array): Promise<{ checksum: string; bytes: number }>;
  /** The bytes under `key`; throws CAIRN_NOT_FOUND when absent. */
  get(key: string): Promise<Buffer>;
  exists(key: string): Promise<boolean>;
  /** False when nothing was stored under `key`. */
  delete(key: string): Promise<boolean>;
  /** Keys starting with `prefix`, sorted. */
  list(prefix: string): Promise<string[]>;
  close(): Promise<void>;
}
