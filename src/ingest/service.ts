/**
 * The ingestion and catalog services behind `POST /v1/events`, `/v1/items` and `/v1/users`. They speak
 * domain types; routes (src/api) map them to and from the snake_case wire format.
 *
 * Ingestion validates each event on its own (one bad event never sinks a batch), stores all valid ones
 * in ONE atomic `append` (so a crash never leaves half a batch), and relies on the store's idempotency
 * by event id: a retried batch reports `duplicate` for what was already stored and counts nothing twice.
 */
import type { CatalogService, EventOutcome, IngestService, ItemOutcome } from '../api/deps.ts';
import type { Config } from '../config/load.ts';
import type { CairnEvent, Item, User } from '../domain/types.ts';
import { CairnError } from '../errors/errors.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { Metrics } from '../monitoring/metrics.ts';
import type { ItemPatch, Store } from '../storage/ports.ts';
import { createEventValidator, parseItem, parseUser, validateId, validateItem } from './validate.ts';

export interface IngestServiceOptions {
  store: Pick<Store, 'events'>;
  config: Readonly<Config>;
  metrics: Metrics;
  logger: Logger;
  /**
   * Called with the newly stored events (not duplicates) before `ingestEvents` resolves, so serving can
   * react at once and a client reading right after its write sees it. A failing hook is logged and never
   * fails the request: the events are already durably stored.
   */
  onEvents?: (events: CairnEvent[]) => void | Promise<void>;
  /** Server clock in epoch ms (tests pin it). */
  now?: () => number;
  /**
   * Earliest accepted event time (default 2000-01-01, see validate.ts). Bulk imports of older public data
   * sets (MovieLens 100k is from 1997–98) relax it; the HTTP API keeps the default.
   */
  minTimestamp?: number;
}

/** Builds the ingestion service. */
export function createIngestService(options: IngestServiceOptions): IngestService {
  const { store, config, metrics, logger, onEvents } = options;
  const now = options.now ?? Date.now;
  const validator = createEventValidator({ ...config.events, minTimestamp: options.minTimestamp });
  const maxBatch = config.server.maxBatchEvents;
  const knownTypes: ReadonlySet<string> = new Set(Object.keys(config.events.types));

  return {
    async ingestEvents(raw: unknown[]): Promise<EventOutcome[]> {
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

      const accepted: CairnEvent[] = [];
      if (valid.length > 0) {
        const appended = await store.events.append(valid);
        if (appended.length !== valid.length) {
          // A store breaking this contract would make us misreport events; refuse loudly.
          throw new CairnError(
            'CAIRN_INTERNAL',
            `event store answered ${appended.length} outcomes for ${valid.length} events`,
          );
        }
        for (let j = 0; j < valid.length; j++) {
          const inserted = appended[j] === 'inserted';
          if (inserted) accepted.push(valid[j]);
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

      if (onEvents && accepted.length > 0) {
        try {
          await onEvents(accepted);
        } catch (err) {
          logger.error({ err, events: accepted.length }, 'onEvents hook failed; events are stored');
        }
      }
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

export interface CatalogServiceOptions {
  store: Pick<Store, 'items' | 'users' | 'eraseUser'>;
  config: Readonly<Config>;
  logger: Logger;
  /** Called with the stored items after each upsert (serving's in-memory catalog view). Failures are logged. */
  onItemsChanged?: (items: Item[]) => void | Promise<void>;
  /** Called after a user was erased from the store, so in-memory state can forget them. Failures are logged. */
  onUserErased?: (userId: string) => void | Promise<void>;
}

/** Builds the catalog service (items and users). */
export function createCatalogService(options: CatalogServiceOptions): CatalogService {
  const { store, config, logger, onItemsChanged, onUserErased } = options;
  const maxBatch = config.server.maxBatchItems;

  const itemsChanged = async (items: Item[]) => {
    if (!onItemsChanged || items.length === 0) return;
    try {
      await onItemsChanged(items);
    } catch (err) {
      logger.error({ err, items: items.length }, 'onItemsChanged hook failed; items are stored');
    }
  };

  return {
    async putItem(id: string, raw: unknown): Promise<Item> {
      const patch = parseItem(raw, id);
      const [item] = await store.items.upsert([patch]);
      await itemsChanged([item]);
      return item;
    },

    async putItems(raw: unknown[]): Promise<ItemOutcome[]> {
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
        await itemsChanged(stored);
      }
      return outcomes;
    },

    async getItem(id: string): Promise<Item> {
      const item = validateId(id).ok ? await store.items.get(id) : null;
      if (!item) throw new CairnError('CAIRN_ITEM_NOT_FOUND', `item "${id}" not found`, { item_id: id });
      return item;
    },

    async putUser(id: string, raw: unknown): Promise<User> {
      return store.users.upsert(parseUser(raw, id));
    },

    async getUser(id: string): Promise<User> {
      const user = validateId(id).ok ? await store.users.get(id) : null;
      if (!user) throw new CairnError('CAIRN_USER_NOT_FOUND', `user "${id}" not found`, { user_id: id });
      return user;
    },

    async eraseUser(id: string): Promise<void> {
      const erased = validateId(id).ok && (await store.eraseUser(id));
      if (!erased)
        throw new CairnError('CAIRN_USER_NOT_FOUND', `nothing is stored for user "${id}"`, { user_id: id });
      logger.info({ userId: id }, 'user erased');
      if (!onUserErased) return;
      try {
        await onUserErased(id);
      } catch (err) {
        logger.error({ err, userId: id }, 'onUserErased hook failed; the user is erased from the store');
      }
    },
  };
}

/** The id of a rejected entry when that id itself was valid, so the client can correlate the rejection. */
function entryId(raw: unknown): string | null {
  if (typeof raw !== 'object' || raw === null) return null;
  const result = validateId((raw as { id?: unknown }).id);
  return result.ok ? result.value : null;
}
