/**
 * The ingestion and catalog services behind `POST /v1/events`, `/v1/items` and `/v1/users`. They speak
 * domain types; routes (src/api) map them to and from the snake_case wire format.
 *
 * Ingestion validates each event on its own (one bad event never sinks a batch), makes all valid ones
 * durable in the event log in one `append` (the store's table embedded, a JetStream stream in
 * production) and relies on the log's idempotency by event id: a retried batch reports `duplicate` for
 * what was already stored and counts nothing twice. Nothing else is told directly: serving state and
 * the store of record are consumers of the log.
 *
 * Catalog and user writes go to the store of record and then to the change log, which every replica
 * follows (catalog view, opt-outs, erasures).
 */
import type { CatalogService, EventOutcome, IngestService, ItemOutcome } from './contracts.ts';
import type { Config } from '../config/load.ts';
import type { RequestContext } from '../domain/context.ts';
import { yieldToLoop } from '../domain/cooperative.ts';
import type { CairnEvent, Item, User } from '../domain/types.ts';
import { CairnError } from '../errors/errors.ts';
import { interactionWeight } from '../features/interactions.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { Metrics } from '../monitoring/metrics.ts';
import type { ChangeLog, EntityChange, EventLog, ItemPatch, Store } from '../storage/ports.ts';
import { createEventValidator, parseItem, parseUser, validateId, validateItem } from './validate.ts';

/**
 * Read-your-writes for a process that also projects the logs (the all-in-one role): after a write,
 * wait (bounded, by the implementation) until this process's projector applied it, so a client reading
 * right after its write sees it. Production API replicas pass none: the projector runs in the worker.
 */
export interface ReadYourWrites {
  /** Resolves once the event log up to its current head is applied (or the wait timed out). */
  events(): Promise<void>;
  /** Resolves once the change with this seq is applied (or the wait timed out). */
  changes(seq: number): Promise<void>;
}

export interface IngestServiceOptions {
  eventLog: Pick<EventLog, 'append'>;
  config: Readonly<Config>;
  metrics: Metrics;
  logger: Logger;
  readYourWrites?: ReadYourWrites;
  /** Server clock in epoch ms (tests pin it). */
  now?: () => number;
  /**
   * Earliest accepted event time (default 2000-01-01, see validate.ts). Bulk imports of older public data
   * sets (MovieLens 100k is from 1997–98) relax it; the HTTP API keeps the default.
   */
  minTimestamp?: number;
}

/** Events validated between two turns of the event loop (about a millisecond of work). */
export const VALIDATE_CHUNK = 500;

/** Builds the ingestion service. */
export function createIngestService(options: IngestServiceOptions): IngestService {
  const { eventLog, config, metrics, logger, readYourWrites } = options;
  const now = options.now ?? Date.now;
  const validator = createEventValidator({ ...config.events, minTimestamp: options.minTimestamp });
  const maxBatch = config.server.maxBatchEvents;
  const knownTypes: ReadonlySet<string> = new Set(Object.keys(config.events.types));

  return {
    async ingestEvents(_ctx: RequestContext, raw: unknown[]): Promise<EventOutcome[]> {
      if (!Array.isArray(raw)) {
        throw CairnError.validation([{ field: 'events', message: 'must be an array of events' }]);
      }
      if (raw.length > maxBatch) {
        throw new CairnError(
          'CAIRN_BATCH_TOO_LARGE',
          `a batch holds at most ${maxBatch} events, got ${raw.length}`,
          {
            max: maxBatch,
            got: raw.length,
          },
        );
      }
      const at = now(); // one clock read per batch: the same "now" for every event in it
      const outcomes: EventOutcome[] = new Array<EventOutcome>(raw.length);
      const valid: CairnEvent[] = [];
      const validIndex: number[] = [];
      for (let i = 0; i < raw.length; i++) {
        // A 10k batch validates for tens of ms: give the loop a turn between chunks.
        if (i > 0 && i % VALIDATE_CHUNK === 0) await yieldToLoop();
        const result = validator.validate(raw[i], at);
        if (result.ok) {
          valid.push(result.event);
          validIndex.push(i);
        } else {
          const first = result.issues[0];
          outcomes[i] = {
            index: i,
            eventId: result.eventId,
            status: 'rejected',
            error: { code: first.code, field: first.field, message: first.message },
          };
        }
      }

      let accepted = 0;
      if (valid.length > 0) {
        const appended = await eventLog.append(valid);
        if (appended.length !== valid.length) {
          // A store breaking this contract would make us misreport events; refuse loudly.
          throw new CairnError(
            'CAIRN_INTERNAL',
            `event store answered ${appended.length} outcomes for ${valid.length} events`,
          );
        }
        for (let j = 0; j < valid.length; j++) {
          const inserted = appended[j] === 'inserted';
          if (inserted) accepted++;
          outcomes[validIndex[j]] = {
            index: validIndex[j],
            eventId: valid[j].eventId,
            status: inserted ? 'accepted' : 'duplicate',
          };
        }
      }

      countOutcomes(metrics, knownTypes, raw, outcomes, valid, validIndex);
      if (outcomes.length - valid.length > 0) {
        logger.debug({ received: raw.length, rejected: raw.length - valid.length }, 'events rejected');
      }

      if (accepted > 0) await readYourWrites?.events();
      return outcomes;
    },
  };
}

/**
 * Increments `cairn_events_ingested_total{type,status}` once per label pair rather than once per
 * event (a 10k batch would otherwise pay 10k label lookups). The `type` label is the event's type when
 * it is configured and `unknown` otherwise, so a client sending garbage types cannot blow up the
 * series cardinality.
 */
function countOutcomes(
  metrics: Metrics,
  knownTypes: ReadonlySet<string>,
  raw: unknown[],
  outcomes: EventOutcome[],
  valid: CairnEvent[],
  validIndex: number[],
): void {
  const counts = new Map<string, number>();
  const bump = (key: string) => counts.set(key, (counts.get(key) ?? 0) + 1);
  for (let j = 0; j < valid.length; j++) bump(`${valid[j].type}\u0000${outcomes[validIndex[j]].status}`);
  for (let i = 0; i < outcomes.length; i++) {
    if (outcomes[i].status !== 'rejected') continue;
    const type = (raw[i] as { type?: unknown } | null)?.type;
    bump(`${typeof type === 'string' && knownTypes.has(type) ? type : 'unknown'}\u0000rejected`);
  }
  for (const [key, n] of counts) {
    const [type, status] = key.split('\u0000');
    metrics.eventsIngested.inc({ type, status }, n);
  }
}

/**
 * What an erase does beyond the store, the logs and the served log: the model artifacts, the audit
 * record, the database files (security/erasure.ts; wired by the composition roots).
 */
export interface ErasureFollowUp {
  /**
   * Called once the erase is stored and announced (also for a repeated erase that found nothing left,
   * with `events` 0, so a retry finishes what a failed attempt left).
   */
  erased(ctx: RequestContext, userId: string, events: number): Promise<void>;
}

export interface CatalogServiceOptions {
  store: Pick<Store, 'items' | 'users' | 'eraseUser' | 'served'>;
  /**
   * Where the stored changes are announced to every replica and the online state; an erase also removes
   * the user's own records from it.
   */
  changeLog: Pick<ChangeLog, 'append' | 'forgetUser'>;
  /** The event log, so an erase also drops the user's events from it where it keeps its own copy. */
  eventLog: Pick<EventLog, 'forgetUser'>;
  config: Readonly<Config>;
  logger: Logger;
  readYourWrites?: ReadYourWrites;
  /** Model artifacts, audit and file hygiene of an erase (none: offline tools). */
  erasure?: ErasureFollowUp;
}

/** Builds the catalog service (items and users). */
export function createCatalogService(options: CatalogServiceOptions): CatalogService {
  const { store, changeLog, eventLog, config, logger, readYourWrites, erasure } = options;
  const maxBatch = config.server.maxBatchItems;

  /** Drops the user from both logs' own copies, then tells every consumer to forget them. */
  const announceErase = async (userId: string, events: EraseEvents): Promise<void> => {
    await eventLog.forgetUser(userId);
    await changeLog.forgetUser(userId);
    const [seq] = await changeLog.append([{ kind: 'erase', userId, events }]);
    await readYourWrites?.changes(seq);
  };

  /**
   * The store holds the change; announcing it can still fail (change log unreachable). The write is
   * then reported as failed (503) so the client retries: upserts are idempotent, and the retry announces.
   */
  const announce = async (items: Item[]) => {
    if (items.length === 0) return;
    const [seq] = await changeLog.append([{ kind: 'items', items }]);
    await readYourWrites?.changes(seq);
  };

  return {
    async putItem(_ctx: RequestContext, id: string, raw: unknown): Promise<Item> {
      const patch = parseItem(raw, id);
      const [item] = await store.items.upsert([patch]);
      await announce([item]);
      return item;
    },

    async putItems(_ctx: RequestContext, raw: unknown[]): Promise<ItemOutcome[]> {
      if (!Array.isArray(raw)) {
        throw CairnError.validation([{ field: 'items', message: 'must be an array of items' }]);
      }
      if (raw.length > maxBatch) {
        throw new CairnError(
          'CAIRN_BATCH_TOO_LARGE',
          `a batch holds at most ${maxBatch} items, got ${raw.length}`,
          {
            max: maxBatch,
            got: raw.length,
          },
        );
      }
      const outcomes: ItemOutcome[] = new Array<ItemOutcome>(raw.length);
      // Entries for the same id are merged in request order (later fields win) into one patch: a store
      // may not touch one row twice in one statement (PostgreSQL's ON CONFLICT refuses), and the result
      // is what applying the entries one after another would give.
      const patches = new Map<string, ItemPatch>();
      const valid: { index: number; id: string }[] = [];
      for (let i = 0; i < raw.length; i++) {
        const result = validateItem(raw[i]);
        if (result.ok) {
          const patch = result.value;
          const previous = patches.get(patch.id);
          // validateItem only sets the fields present in the body, so a spread merges them.
          patches.set(patch.id, previous ? { ...previous, ...patch } : patch);
          valid.push({ index: i, id: patch.id });
        } else {
          const first = result.issues[0];
          outcomes[i] = {
            index: i,
            itemId: entryId(raw[i]),
            status: 'rejected',
            error: { code: first.code, field: first.field, message: first.message },
          };
        }
      }
      if (patches.size > 0) {
        const stored = await store.items.upsert([...patches.values()]);
        for (const { index, id } of valid) outcomes[index] = { index, itemId: id, status: 'upserted' };
        await announce(stored);
      }
      return outcomes;
    },

    async getItem(_ctx: RequestContext, id: string): Promise<Item> {
      const item = validateId(id).ok ? await store.items.get(id) : null;
      if (!item) throw new CairnError('CAIRN_ITEM_NOT_FOUND', `item "${id}" not found`, { item_id: id });
      return item;
    },

    async putUser(_ctx: RequestContext, id: string, raw: unknown): Promise<User> {
      const user = await store.users.upsert(parseUser(raw, id));
      const [seq] = await changeLog.append([{ kind: 'user', user }]);
      await readYourWrites?.changes(seq);
      return user;
    },

    async getUser(_ctx: RequestContext, id: string): Promise<User> {
      const user = validateId(id).ok ? await store.users.get(id) : null;
      if (!user) throw new CairnError('CAIRN_USER_NOT_FOUND', `user "${id}" not found`, { user_id: id });
      return user;
    },

    /**
     * Deletes user and events from the store (which returns the deleted events: their popularity
     * contributions travel with the erase, without the user id on them), from the event log's own copy
     * and the user's records from the change log, then announces the erase so every online state and
     * replica forgets the user and subtracts exactly what they added; the follow-up rewrites the model
     * artifacts and records the erasure in the audit log. The erase record itself names the user until
     * every consumer applied it (security/erasure.ts removes it then).
     */
    async eraseUser(ctx: RequestContext, id: string): Promise<void> {
      if (!validateId(id).ok)
        throw new CairnError('CAIRN_USER_NOT_FOUND', `nothing is stored for user "${id}"`, { user_id: id });
      // The store returns exactly what it deleted (in the same transaction), so an event accepted for
      // this user a moment before is either deleted and subtracted, or neither.
      const erased = await store.eraseUser(id);
      // What was recommended to the user (the served log) and the feedback on it go too.
      const servedErased = await store.served.deleteForUser(id);
      if (!erased && servedErased === 0) {
        // Nothing stored (any more). A previous erase may have deleted the user and then failed to
        // announce it (change log unreachable, 503): announcing again, without events, makes the
        // client's retry finish the job everywhere. Popularity already subtracted stays subtracted.
        await announceErase(id, []);
        await erasure?.erased(ctx, id, 0);
        throw new CairnError('CAIRN_USER_NOT_FOUND', `nothing is stored for user "${id}"`, { user_id: id });
      }
      const events = (erased ?? [])
        .filter((e) => interactionWeight(config.events.types, e).weight > 0)
        .map((e) => ({ seq: e.seq, itemId: e.itemId, type: e.type, value: e.value, timestamp: e.timestamp }));
      await announceErase(id, events);
      await erasure?.erased(ctx, id, erased?.length ?? 0);
      // The request id, not the user id, goes to the log: erased ids must not linger in log files.
      logger.info({ request_id: ctx.requestId }, 'user erased');
    },
  };
}

type EraseEvents = Extract<EntityChange, { kind: 'erase' }>['events'];

/** The id of a rejected entry when that id itself was valid, so the client can correlate the rejection. */
function entryId(raw: unknown): string | null {
  if (typeof raw !== 'object' || raw === null) return null;
  const result = validateId((raw as { id?: unknown }).id);
  return result.ok ? result.value : null;
}
