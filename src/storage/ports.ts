/**
 * Storage ports, split by access pattern. Adapters (sqlite/, postgres/) implement them and own their
 * connections; nothing driver-specific leaks through these interfaces. Every adapter passes the one
 * conformance suite in conformance/.
 */
import type { CairnEvent, Item, Job, JsonObject, ModelVersion, StoredEvent, User } from '../domain/types.ts';

/** Result of appending one event: `false` means its event_id was already stored (never counted twice). */
export type AppendOutcome = 'inserted' | 'duplicate';

export interface EventStore {
  /**
   * Appends events atomically (all or nothing for the call) and reports per event whether it was new.
   * Idempotent by `eventId`: a repeated id, within the batch or across calls, is a `duplicate`.
   */
  append(events: CairnEvent[]): Promise<AppendOutcome[]>;
  /** A user's events, newest first (by timestamp, then insertion order). */
  forUser(userId: string, limit: number): Promise<StoredEvent[]>;
  /**
   * All events in insertion order, in pages, starting after `afterSeq` (for training and backfills).
   * `afterSeq` is exclusive, `untilSeq` inclusive; without `untilSeq` the scan stops at `lastSeq()` as it
   * was when the scan started (a snapshot that terminates under live ingestion). Pages are never empty.
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
}

export interface JobStore {
  create(job: Job): Promise<void>;
  update(id: string, patch: Partial<Omit<Job, 'id'>>): Promise<Job>;
  get(id: string): Promise<Job | null>;
  /** Jobs left `queued` or `running` by a process that died (to fail or resume on start). */
  unfinished(): Promise<Job[]>;
}

export interface Store {
  readonly kind: 'sqlite' | 'postgres';
  readonly events: EventStore;
  readonly items: ItemStore;
  readonly users: UserStore;
  readonly models: ModelStore;
  readonly jobs: JobStore;
  /** Creates or upgrades the schema; safe to call on every start. */
  migrate(): Promise<void>;
  /** Cheap round trip for readiness checks. */
  ping(): Promise<void>;
  /**
   * GDPR erase: removes the user and all their events in one transaction.
   * Returns false when nothing was stored for the user.
   */
  eraseUser(userId: string): Promise<boolean>;
  close(): Promise<void>;
}
