/**
 * The ingestion and catalog services against the real stores and their logs: SQLite in a temporary
 * directory and PostgreSQL in a throw-away schema (`CAIRN_TEST_POSTGRES_URL`, default the local test
 * database). Ingestion writes to the event log (the store's own table on both backends), the catalog to
 * the store and then the change log; the tests read back what each log holds.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig, type Config, type DeepPartial } from '../../src/config/load.ts';
import { systemContext } from '../../src/domain/context.ts';
import type { StoredEvent } from '../../src/domain/types.ts';
import { CairnError } from '../../src/errors/errors.ts';
import type { EventOutcome } from '../../src/ingest/contracts.ts';
import { createCatalogService, createIngestService } from '../../src/ingest/service.ts';
import { createLogger, type Logger } from '../../src/monitoring/logger.ts';
import { createMetrics, type Metrics } from '../../src/monitoring/metrics.ts';
import { openStore } from '../../src/storage/open.ts';
import type { ChangeLog, EntityChange, EventLog, Store } from '../../src/storage/ports.ts';
import { PgChangeLog, PgEventLog } from '../../src/storage/postgres/log.ts';
import { PostgresStore } from '../../src/storage/postgres/store.ts';
import { SqliteChangeLog, SqliteEventLog } from '../../src/storage/sqlite/log.ts';
import { SqliteStore } from '../../src/storage/sqlite/store.ts';

const PG_URL = process.env.CAIRN_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

interface Logs {
  eventLog: EventLog;
  changeLog: ChangeLog;
}

interface Backend {
  name: string;
  overrides(): DeepPartial<Config>;
  /** The backend's own logs over `store` (the embedded wiring: the store's tables are the logs). */
  logs(store: Store): Logs;
  cleanup(): Promise<void>;
}

function sqliteBackend(): Backend {
  let dir = '';
  return {
    name: 'sqlite',
    overrides() {
      dir = mkdtempSync(join(tmpdir(), 'cairn-ingest-'));
      return { dataDir: dir };
    },
    logs(store) {
      if (!(store instanceof SqliteStore)) throw new Error(`expected a SQLite store, got ${store.kind}`);
      return { eventLog: new SqliteEventLog(store), changeLog: new SqliteChangeLog(store) };
    },
    cleanup() {
      if (dir) rmSync(dir, { recursive: true, force: true });
      return Promise.resolve();
    },
  };
}

function postgresBackend(): Backend {
  const schema = `cairn_test_${randomBytes(6).toString('hex')}`;
  return {
    name: 'postgres',
    overrides: () => ({ store: { url: PG_URL, schema } }),
    logs(store) {
      if (!(store instanceof PostgresStore))
        throw new Error(`expected a PostgreSQL store, got ${store.kind}`);
      return { eventLog: new PgEventLog(store), changeLog: new PgChangeLog(store) };
    },
    async cleanup() {
      const client = new pg.Client({ connectionString: PG_URL });
      await client.connect();
      try {
        await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      } finally {
        await client.end();
      }
    },
  };
}

const T0 = Date.UTC(2024, 0, 15, 12, 0, 0);
const ctx = systemContext('ingest-test');

/** Reads every stored event in seq order. */
async function allEvents(store: Store): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  for await (const page of store.events.scan({ batchSize: 5000 })) out.push(...page);
  return out;
}

/** Every record of a log after `after` (pages of 1000, so no test depends on one read's limit). */
async function logAfter(log: Pick<EventLog, 'read'>, after: number): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  for (;;) {
    const page = await log.read(out.length > 0 ? out[out.length - 1].seq : after, 1000);
    if (page.length === 0) return out;
    out.push(...page);
  }
}

function metricValue(metrics: Metrics, labels: { type: string; status: string }): Promise<number> {
  return metrics.eventsIngested
    .get()
    .then(
      (m) =>
        m.values.find((v) => v.labels.type === labels.type && v.labels.status === labels.status)?.value ?? 0,
    );
}

async function caught(p: Promise<unknown>): Promise<CairnError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(CairnError);
    return e as CairnError;
  }
  throw new Error('expected a CairnError');
}

/** A logger writing JSON lines into `lines` (to assert what reaches the logs). */
function capturingLogger(level: string, lines: string[]): Logger {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return createLogger(level, { destination: sink });
}

describe.each([sqliteBackend(), postgresBackend()])('ingestion and catalog on $name', (backend) => {
  let store: Store;
  let eventLog: EventLog;
  let changeLog: ChangeLog;
  let config: Readonly<Config>;
  const logger: Logger = createLogger('silent');

  beforeAll(async () => {
    config = loadConfig({ env: {}, overrides: { ...backend.overrides(), logging: { level: 'silent' } } });
    store = await openStore(config);
    ({ eventLog, changeLog } = backend.logs(store));
  });

  afterAll(async () => {
    // The logs borrow the store's connection: close them first.
    await eventLog?.close();
    await changeLog?.close();
    await store?.close();
    await backend.cleanup();
  });

  describe('events', () => {
    let metrics: Metrics;
    let ingest: ReturnType<typeof createIngestService>;
    /** The event log's head before the test: what a test appended is `logAfter(eventLog, head)`. */
    let head: number;

    beforeEach(async () => {
      metrics = createMetrics({ defaultMetrics: false });
      ingest = createIngestService({ eventLog, config, metrics, logger });
      head = await eventLog.head();
    });

    it('is idempotent: the same batch twice stores it once', async () => {
      const before = await store.events.count();
      const batch = [
        { event_id: 'idem-1', user_id: 'idem-u1', item_id: 'i1', type: 'view', timestamp: T0 },
        {
          event_id: 'idem-2',
          user_id: 'idem-u1',
          item_id: 'i2',
          type: 'rating',
          value: 4,
          timestamp: T0 + 1,
        },
        // No event_id but a timestamp: the derived id makes the retry a duplicate too.
        { user_id: 'idem-u2', item_id: 'i1', type: 'purchase', timestamp: '2024-01-15T12:00:00.002Z' },
        {
          user_id: 'idem-u2',
          item_id: 'i3',
          type: 'click',
          timestamp: T0 + 3,
          context: { page: 'home', pos: [1, 2] },
        },
      ];
      const first = await ingest.ingestEvents(ctx, batch);
      expect(first.map((o) => o.status)).toEqual(['accepted', 'accepted', 'accepted', 'accepted']);
      expect(first.map((o) => o.index)).toEqual([0, 1, 2, 3]);
      expect(first[0].eventId).toBe('idem-1');
      expect(await store.events.count()).toBe(before + 4);
      // The log holds them once each, in request order: that is what every consumer will see.
      expect((await logAfter(eventLog, head)).map((e) => e.eventId)).toEqual(first.map((o) => o.eventId));
      const logHead = await eventLog.head();

      const second = await ingest.ingestEvents(ctx, batch);
      expect(second.map((o) => o.status)).toEqual(['duplicate', 'duplicate', 'duplicate', 'duplicate']);
      expect(second.map((o) => o.eventId)).toEqual(first.map((o) => o.eventId));
      expect(await store.events.count()).toBe(before + 4);
      expect(await eventLog.head()).toBe(logHead); // a duplicate gets no new seq

      expect(await metricValue(metrics, { type: 'view', status: 'accepted' })).toBe(1);
      expect(await metricValue(metrics, { type: 'view', status: 'duplicate' })).toBe(1);
      expect(await metricValue(metrics, { type: 'click', status: 'duplicate' })).toBe(1);

      // Stored with normalised fields: ISO time as ms, the context as given.
      const u2 = await store.events.forUser('idem-u2', 10);
      expect(u2.map((e) => [e.itemId, e.type, e.timestamp])).toEqual([
        ['i3', 'click', T0 + 3],
        ['i1', 'purchase', T0 + 2],
      ]);
      expect(u2[0].context).toEqual({ page: 'home', pos: [1, 2] });
      expect(u2[1].value).toBeNull();
      expect((await store.events.forUser('idem-u1', 10)).find((e) => e.eventId === 'idem-2')?.value).toBe(4);
    });

    it('counts a repeated event_id within one batch once', async () => {
      const before = await store.events.count();
      const out = await ingest.ingestEvents(ctx, [
        { event_id: 'twice-1', user_id: 'twice-u', item_id: 'a', type: 'view', timestamp: T0 },
        { event_id: 'twice-1', user_id: 'twice-u', item_id: 'b', type: 'click', timestamp: T0 },
        { user_id: 'twice-u', item_id: 'c', type: 'view', timestamp: T0 + 5 },
        { user_id: 'twice-u', item_id: 'c', type: 'view', timestamp: T0 + 5 },
      ]);
      expect(out.map((o) => o.status)).toEqual(['accepted', 'duplicate', 'accepted', 'duplicate']);
      expect(await store.events.count()).toBe(before + 2);
      const stored = await store.events.forUser('twice-u', 10);
      expect(stored.map((e) => e.itemId).sort()).toEqual(['a', 'c']);
      // The first of the repeated id wins, in the log as in the store.
      expect((await logAfter(eventLog, head)).map((e) => e.itemId)).toEqual(['a', 'c']);
    });

    it('keeps events without an id or timestamp distinct (random ids)', async () => {
      const before = await store.events.count();
      const e = { user_id: 'rand-u', item_id: 'x', type: 'view' };
      const out = [...(await ingest.ingestEvents(ctx, [e, e])), ...(await ingest.ingestEvents(ctx, [e]))];
      expect(out.map((o) => o.status)).toEqual(['accepted', 'accepted', 'accepted']);
      expect(new Set(out.map((o) => o.eventId)).size).toBe(3);
      expect(await store.events.count()).toBe(before + 3);
    });

    it('stores the valid events of a mixed batch and rejects the rest with code and field', async () => {
      const before = await allEvents(store);
      const batch: unknown[] = [
        { event_id: 'mix-1', user_id: 'mix-u', item_id: 'i1', type: 'view', timestamp: T0 },
        { event_id: 'mix-2', user_id: 'mix-u', item_id: 'i2', type: 'teleport', timestamp: T0 },
        { event_id: 'mix-3', user_id: '', item_id: 'i3', type: 'view', timestamp: T0 },
        { event_id: 'mix-4', user_id: 'mix-u', item_id: 'i4', type: 'rating', timestamp: T0 },
        {
          event_id: 'mix-5',
          user_id: 'mix-u',
          item_id: 'i5',
          type: 'view',
          timestamp: Date.now() + 3_600_000,
        },
        'not an event',
        {
          event_id: 'mix-7',
          user_id: 'mix-u',
          item_id: 'i7',
          type: 'click',
          timestamp: T0 + 7,
          colour: 'red',
        },
        {
          event_id: 'mix-8',
          user_id: 'mix-u',
          item_id: 'i8',
          type: 'purchase',
          value: 19.99,
          timestamp: T0 + 8,
        },
        {
          event_id: 'mix-9',
          user_id: 'mix-u',
          item_id: 'i9',
          type: 'view',
          context: { blob: 'x'.repeat(9000) },
        },
      ];
      const out = await ingest.ingestEvents(ctx, batch);
      const summary = out.map((o: EventOutcome) => [
        o.index,
        o.status,
        o.error?.code ?? null,
        o.error?.field ?? null,
      ]);
      expect(summary).toEqual([
        [0, 'accepted', null, null],
        [1, 'rejected', 'CAIRN_UNKNOWN_EVENT_TYPE', 'type'],
        [2, 'rejected', 'CAIRN_VALIDATION', 'user_id'],
        [3, 'rejected', 'CAIRN_VALIDATION', 'value'],
        [4, 'rejected', 'CAIRN_TIMESTAMP_OUT_OF_RANGE', 'timestamp'],
        [5, 'rejected', 'CAIRN_VALIDATION', '(root)'],
        [6, 'rejected', 'CAIRN_UNKNOWN_FIELD', 'colour'],
        [7, 'accepted', null, null],
        [8, 'rejected', 'CAIRN_VALIDATION', 'context'],
      ]);
      expect(out[1].eventId).toBe('mix-2');
      expect(out[5].eventId).toBeNull();
      for (const o of out.filter((x) => x.status === 'rejected'))
        expect(o.error?.message.length).toBeGreaterThan(0);

      // Exactly the two valid events were added, with their fields intact; nothing else changed.
      const after = await allEvents(store);
      expect(after.slice(0, before.length)).toEqual(before);
      const added = after.slice(before.length);
      expect(added.map(({ seq: _seq, ...e }) => e)).toEqual([
        {
          eventId: 'mix-1',
          userId: 'mix-u',
          itemId: 'i1',
          type: 'view',
          value: null,
          timestamp: T0,
          context: null,
        },
        {
          eventId: 'mix-8',
          userId: 'mix-u',
          itemId: 'i8',
          type: 'purchase',
          value: 19.99,
          timestamp: T0 + 8,
          context: null,
        },
      ]);
      // Consumers of the log see the same two events, seqs included.
      expect(await logAfter(eventLog, head)).toEqual(added);

      expect(await metricValue(metrics, { type: 'view', status: 'accepted' })).toBe(1);
      expect(await metricValue(metrics, { type: 'purchase', status: 'accepted' })).toBe(1);
      // Unknown types and non-objects are labelled `unknown`; known types keep their label.
      expect(await metricValue(metrics, { type: 'unknown', status: 'rejected' })).toBe(2);
      expect(await metricValue(metrics, { type: 'view', status: 'rejected' })).toBe(3);
      expect(await metricValue(metrics, { type: 'rating', status: 'rejected' })).toBe(1);
      expect(await metricValue(metrics, { type: 'click', status: 'rejected' })).toBe(1);
      expect(await metricValue(metrics, { type: 'teleport', status: 'rejected' })).toBe(0);
    });

    it('stores nothing and appends nothing to the log when every event is invalid', async () => {
      const before = await store.events.count();
      const out = await ingest.ingestEvents(ctx, [{ user_id: 'x' }, null]);
      expect(out.map((o) => o.status)).toEqual(['rejected', 'rejected']);
      expect(await store.events.count()).toBe(before);
      expect(await eventLog.head()).toBe(head);
      expect(await ingest.ingestEvents(ctx, [])).toEqual([]);
      expect(await eventLog.head()).toBe(head);
    });

    it('accepts a batch of 10,000 events in request order', async () => {
      const beforeSeq = await store.events.lastSeq();
      const before = await store.events.count();
      const batch = Array.from({ length: 10_000 }, (_, i) => ({
        event_id: `big-${i}`,
        user_id: `big-u${i % 97}`,
        item_id: `big-i${(i * 31) % 1000}`,
        type: i % 10 === 0 ? 'rating' : 'view',
        ...(i % 10 === 0 ? { value: 1 + (i % 5) } : {}),
        timestamp: T0 + i,
      }));
      const out = await ingest.ingestEvents(ctx, batch);
      expect(out).toHaveLength(10_000);
      expect(out.every((o, i) => o.status === 'accepted' && o.index === i && o.eventId === `big-${i}`)).toBe(
        true,
      );
      expect(await store.events.count()).toBe(before + 10_000);
      const added: StoredEvent[] = [];
      for await (const page of store.events.scan({ afterSeq: beforeSeq, batchSize: 4000 }))
        added.push(...page);
      expect(added.map((e) => e.eventId)).toEqual(batch.map((e) => e.event_id));
      // One append: consecutive, increasing seqs in request order.
      const logged = await logAfter(eventLog, head);
      expect(logged.map((e) => e.eventId)).toEqual(batch.map((e) => e.event_id));
      expect(logged.every((e, i) => i === 0 || e.seq > logged[i - 1].seq)).toBe(true);
      expect(await metricValue(metrics, { type: 'view', status: 'accepted' })).toBe(9000);
      expect(await metricValue(metrics, { type: 'rating', status: 'accepted' })).toBe(1000);
    });

    it('refuses a batch above server.maxBatchEvents with CAIRN_BATCH_TOO_LARGE and stores nothing', async () => {
      const before = await store.events.count();
      const max = config.server.maxBatchEvents;
      const batch = Array.from({ length: max + 1 }, (_, i) => ({
        event_id: `over-${i}`,
        user_id: 'over-u',
        item_id: 'i',
        type: 'view',
      }));
      const err = await caught(ingest.ingestEvents(ctx, batch));
      expect(err.code).toBe('CAIRN_BATCH_TOO_LARGE');
      expect(err.status).toBe(413);
      expect(err.details).toEqual({ max, got: max + 1 });
      expect(await store.events.count()).toBe(before);
      expect(await store.events.forUser('over-u', 1)).toEqual([]);
      expect(await eventLog.head()).toBe(head);

      const small = createIngestService({
        eventLog,
        config: loadConfig({ env: {}, overrides: { server: { maxBatchEvents: 2 } } }),
        metrics,
        logger,
      });
      expect((await caught(small.ingestEvents(ctx, [{}, {}, {}]))).details).toEqual({ max: 2, got: 3 });
      expect(await small.ingestEvents(ctx, [{}, {}])).toHaveLength(2);
    });

    it('stamps events without a timestamp with the server clock, and lets imports accept old times', async () => {
      const clock = Date.UTC(2024, 5, 1);
      const old = Date.UTC(1997, 8, 20);
      const raw = [
        { event_id: 'clock-1', user_id: 'clock-u', item_id: 'i', type: 'view' },
        { event_id: 'clock-2', user_id: 'clock-u', item_id: 'i', type: 'rating', value: 5, timestamp: old },
      ];
      const live = createIngestService({ eventLog, config, metrics, logger, now: () => clock });
      const out = await live.ingestEvents(ctx, raw);
      expect(out.map((o) => [o.status, o.error?.code ?? null])).toEqual([
        ['accepted', null],
        ['rejected', 'CAIRN_TIMESTAMP_OUT_OF_RANGE'],
      ]);
      const importer = createIngestService({
        eventLog,
        config,
        metrics,
        logger,
        now: () => clock,
        minTimestamp: 0,
      });
      expect((await importer.ingestEvents(ctx, raw)).map((o) => o.status)).toEqual(['duplicate', 'accepted']);
      expect((await store.events.forUser('clock-u', 5)).map((e) => [e.eventId, e.timestamp])).toEqual([
        ['clock-1', clock],
        ['clock-2', old],
      ]);
    });

    it('fails the call, reporting nothing as accepted, when the event log is unavailable', async () => {
      // A log that was closed refuses appends, as one whose server went away does: the client must get
      // an error (and retry), never an `accepted` for an event that is not durable.
      const { eventLog: gone, changeLog: unused } = backend.logs(store);
      await gone.close();
      await unused.close();
      const down = createIngestService({ eventLog: gone, config, metrics, logger });
      const err = await caught(
        down.ingestEvents(ctx, [
          { event_id: 'down-1', user_id: 'down-u', item_id: 'i', type: 'view', timestamp: T0 },
        ]),
      );
      expect(err.code).toBe('CAIRN_UNAVAILABLE');
      expect(err.status).toBe(503);
      expect(await store.events.forUser('down-u', 5)).toEqual([]);
      expect(await eventLog.head()).toBe(head);
      expect(await metricValue(metrics, { type: 'view', status: 'accepted' })).toBe(0);

      // The same event through a working log is then accepted (the retry the client makes).
      const out = await ingest.ingestEvents(ctx, [
        { event_id: 'down-1', user_id: 'down-u', item_id: 'i', type: 'view', timestamp: T0 },
      ]);
      expect(out[0].status).toBe('accepted');
    });

    it('waits for read-your-writes only when it accepted something', async () => {
      const waits: string[] = [];
      const ryw = createIngestService({
        eventLog,
        config,
        metrics,
        logger,
        readYourWrites: {
          events: () => {
            waits.push('events');
            return Promise.resolve();
          },
          changes: () => Promise.reject(new Error('ingestion never waits for the change log')),
        },
      });
      const e = { event_id: 'ryw-1', user_id: 'ryw-u', item_id: 'i', type: 'view', timestamp: T0 };
      await ryw.ingestEvents(ctx, [e]);
      expect(waits).toEqual(['events']);
      await ryw.ingestEvents(ctx, [e]); // duplicate: nothing new to wait for
      await ryw.ingestEvents(ctx, [{ user_id: 'ryw-u' }]); // rejected
      expect(waits).toEqual(['events']);
    });
  });

  describe('catalog', () => {
    let catalog: ReturnType<typeof createCatalogService>;
    let lines: string[];
    /** The change log's head before the test. */
    let changesHead: number;
    /** What the test announced on the change log, in log order. */
    const announced = async (): Promise<EntityChange[]> =>
      (await changeLog.read(changesHead, 1000)).map((r) => r.value);

    beforeEach(async () => {
      lines = [];
      catalog = createCatalogService({
        store,
        changeLog,
        eventLog,
        config,
        logger: capturingLogger('info', lines),
      });
      changesHead = await changeLog.head();
    });

    it('upserts items partially: absent fields keep their stored values', async () => {
      const created = await catalog.putItem(ctx, 'sku-1', {
        categories: ['shoes', 'sale'],
        attributes: { price: 59.9, title: 'Trail runner' },
        available: true,
        created_at: '2024-01-01T00:00:00Z',
      });
      expect(created).toMatchObject({
        id: 'sku-1',
        categories: ['shoes', 'sale'],
        attributes: { price: 59.9, title: 'Trail runner' },
        available: true,
        createdAt: Date.UTC(2024, 0, 1),
      });
      expect(await announced()).toEqual([{ kind: 'items', items: [created] }]);

      const updated = await catalog.putItem(ctx, 'sku-1', { available: false });
      expect(updated).toMatchObject({
        id: 'sku-1',
        categories: ['shoes', 'sale'],
        attributes: { price: 59.9, title: 'Trail runner' },
        available: false,
        createdAt: Date.UTC(2024, 0, 1),
      });
      const fetched = await catalog.getItem(ctx, 'sku-1');
      expect(fetched).toMatchObject({
        categories: ['shoes', 'sale'],
        available: false,
        attributes: { price: 59.9, title: 'Trail runner' },
      });

      const repriced = await catalog.putItem(ctx, 'sku-1', { attributes: { price: 49.9 } });
      expect((await catalog.getItem(ctx, 'sku-1')).attributes).toEqual({ price: 49.9 });
      expect((await catalog.getItem(ctx, 'sku-1')).categories).toEqual(['shoes', 'sale']);

      // Each write announced the whole stored item (not the patch), so a replica needs no store read.
      const changes = await announced();
      expect(changes).toEqual([
        { kind: 'items', items: [created] },
        { kind: 'items', items: [updated] },
        { kind: 'items', items: [repriced] },
      ]);
      expect(changes[2]).toEqual({ kind: 'items', items: [await catalog.getItem(ctx, 'sku-1')] });
    });

    it('refuses an invalid item with every issue, stores and announces nothing', async () => {
      const err = await caught(
        catalog.putItem(ctx, 'sku-bad', {
          categories: [''],
          attributes: { price: -1 },
          available: 'no',
          brand: 'x',
        }),
      );
      expect(err.code).toBe('CAIRN_VALIDATION');
      expect((err.details as { fields: { field: string }[] }).fields.map((f) => f.field)).toEqual([
        'brand',
        'categories[0]',
        'attributes.price',
        'available',
      ]);
      expect((await caught(catalog.getItem(ctx, 'sku-bad'))).code).toBe('CAIRN_ITEM_NOT_FOUND');
      expect(await announced()).toEqual([]);
    });

    it('batch-upserts items with per-item outcomes and merges repeats of one id', async () => {
      const out = await catalog.putItems(ctx, [
        { id: 'b-1', categories: ['a'], available: true },
        { id: 'b-2', attributes: { price: 'free' } },
        { id: 'b-3', categories: ['c'] },
        { id: 'b-1', available: false },
        { categories: ['no id'] },
      ]);
      expect(
        out.map((o) => [o.index, o.itemId, o.status, o.error?.code ?? null, o.error?.field ?? null]),
      ).toEqual([
        [0, 'b-1', 'upserted', null, null],
        [1, 'b-2', 'rejected', 'CAIRN_VALIDATION', 'attributes.price'],
        [2, 'b-3', 'upserted', null, null],
        [3, 'b-1', 'upserted', null, null],
        [4, null, 'rejected', 'CAIRN_VALIDATION', 'id'],
      ]);
      const b1 = await catalog.getItem(ctx, 'b-1');
      const b3 = await catalog.getItem(ctx, 'b-3');
      expect(b1).toMatchObject({ categories: ['a'], available: false });
      expect(b3).toMatchObject({ categories: ['c'], available: true });
      expect((await caught(catalog.getItem(ctx, 'b-2'))).code).toBe('CAIRN_ITEM_NOT_FOUND');
      // One announcement for the batch: each valid id once, as stored after the merge; b-2 not at all.
      const changes = await announced();
      expect(changes).toHaveLength(1);
      const [change] = changes;
      expect(change.kind).toBe('items');
      const items = change.kind === 'items' ? change.items : [];
      expect([...items].sort((x, y) => x.id.localeCompare(y.id))).toEqual([b1, b3]);

      // A batch whose entries are all rejected announces nothing.
      const none = await catalog.putItems(ctx, [{ id: 'b-4', available: 'maybe' }, 'not an item']);
      expect(none.map((o) => o.status)).toEqual(['rejected', 'rejected']);

      const tooMany = Array.from({ length: config.server.maxBatchItems + 1 }, (_, i) => ({
        id: `many-${i}`,
      }));
      const err = await caught(catalog.putItems(ctx, tooMany));
      expect(err.code).toBe('CAIRN_BATCH_TOO_LARGE');
      expect(err.details).toEqual({ max: config.server.maxBatchItems, got: config.server.maxBatchItems + 1 });
      expect((await caught(catalog.getItem(ctx, 'many-0'))).code).toBe('CAIRN_ITEM_NOT_FOUND');
      expect(await announced()).toEqual(changes);
    });

    it('upserts and reads users, announcing each stored user', async () => {
      const u = await catalog.putUser(ctx, 'cat-u1', {
        attributes: { country: 'FR' },
        segments: ['vip'],
        opt_out: false,
      });
      expect(u).toMatchObject({
        id: 'cat-u1',
        attributes: { country: 'FR' },
        segments: ['vip'],
        optOut: false,
      });
      const optedOut = await catalog.putUser(ctx, 'cat-u1', { opt_out: true });
      expect(await catalog.getUser(ctx, 'cat-u1')).toMatchObject({
        attributes: { country: 'FR' },
        segments: ['vip'],
        optOut: true,
      });
      expect(optedOut).toEqual(await catalog.getUser(ctx, 'cat-u1'));
      expect((await caught(catalog.getUser(ctx, 'cat-nobody'))).code).toBe('CAIRN_USER_NOT_FOUND');
      const err = await caught(catalog.putUser(ctx, 'cat-u2', { opt_out: 'yes', segment: ['x'] }));
      expect(err.code).toBe('CAIRN_VALIDATION');
      expect((await caught(catalog.getUser(ctx, 'cat-u2'))).code).toBe('CAIRN_USER_NOT_FOUND');
      // The opt-out travels to every replica with the merged record; the invalid write not at all.
      expect(await announced()).toEqual([
        { kind: 'user', user: u },
        { kind: 'user', user: optedOut },
      ]);
    });

    it("erases a user and their events, leaves everyone else's, and announces what to subtract", async () => {
      const ingest = createIngestService({
        eventLog,
        config,
        metrics: createMetrics({ defaultMetrics: false }),
        logger,
      });
      const ua = await catalog.putUser(ctx, 'gdpr-a', { segments: ['x'] });
      const ub = await catalog.putUser(ctx, 'gdpr-b', {});
      const events = [
        ...Array.from({ length: 5 }, (_, i) => ({
          event_id: `gdpr-a-${i}`,
          user_id: 'gdpr-a',
          item_id: `i${i}`,
          type: i === 4 ? 'rating' : 'view',
          ...(i === 4 ? { value: 3 } : {}),
          timestamp: T0 + i,
        })),
        // Not a positive interaction: it never added popularity, so the erase has nothing to subtract for it.
        { event_id: 'gdpr-a-dislike', user_id: 'gdpr-a', item_id: 'i9', type: 'dislike', timestamp: T0 + 9 },
        ...Array.from({ length: 3 }, (_, i) => ({
          event_id: `gdpr-b-${i}`,
          user_id: 'gdpr-b',
          item_id: `i${i}`,
          type: 'click',
          timestamp: T0 + i,
        })),
        { event_id: 'gdpr-c-0', user_id: 'gdpr-c', item_id: 'i0', type: 'view', timestamp: T0 },
      ];
      expect((await ingest.ingestEvents(ctx, events)).every((o) => o.status === 'accepted')).toBe(true);
      const before = await store.events.count();
      const stored = (id: string) => store.events.forUser(id, 100);
      const positive = (e: StoredEvent) => ({
        seq: e.seq,
        itemId: e.itemId,
        type: e.type,
        value: e.value,
        timestamp: e.timestamp,
      });
      const aEvents = (await stored('gdpr-a')).filter((e) => e.type !== 'dislike').map(positive);
      const cEvents = (await stored('gdpr-c')).map(positive);
      expect(aEvents).toHaveLength(5);

      await catalog.eraseUser(ctx, 'gdpr-a');
      expect(await stored('gdpr-a')).toEqual([]);
      expect((await caught(catalog.getUser(ctx, 'gdpr-a'))).code).toBe('CAIRN_USER_NOT_FOUND');
      expect(await store.events.count()).toBe(before - 6);
      expect((await stored('gdpr-b')).map((e) => e.eventId).sort()).toEqual([
        'gdpr-b-0',
        'gdpr-b-1',
        'gdpr-b-2',
      ]);
      expect((await catalog.getUser(ctx, 'gdpr-b')).id).toBe('gdpr-b');
      expect((await allEvents(store)).some((e) => e.userId === 'gdpr-a')).toBe(false);
      // The event log forgot them too: a consumer replaying it never sees the erased user again.
      expect((await logAfter(eventLog, 0)).some((e) => e.userId === 'gdpr-a')).toBe(false);

      // A user known only from events is erasable. A second erase finds nothing (404) but announces the
      // erasure again without events: it completes an earlier erase whose announcement failed.
      await catalog.eraseUser(ctx, 'gdpr-c');
      expect(await stored('gdpr-c')).toEqual([]);
      const again = await caught(catalog.eraseUser(ctx, 'gdpr-a'));
      expect(again.code).toBe('CAIRN_USER_NOT_FOUND');
      expect((await caught(catalog.eraseUser(ctx, ''))).code).toBe('CAIRN_USER_NOT_FOUND');

      const bySeq = (list: { seq: number }[]) => [...list].sort((x, y) => x.seq - y.seq);
      const changes = await announced();
      // The erased user's own record (their attributes) left the change log; everyone else's stays.
      expect(changes.map((c) => c.kind)).toEqual(['user', 'erase', 'erase', 'erase']);
      expect(changes[3]).toEqual({ kind: 'erase', userId: 'gdpr-a', events: [] });
      expect(changes[0]).toEqual({ kind: 'user', user: ub });
      expect(ua.id).toBe('gdpr-a');
      const [eraseA, eraseC] = changes.slice(1, 3);
      if (eraseA.kind !== 'erase' || eraseC.kind !== 'erase') throw new Error('expected two erasures');
      // The erasure carries the positive events with their seqs (what a projector applied), and no user
      // id on them: only the change itself names the user.
      expect(eraseA.userId).toBe('gdpr-a');
      expect(bySeq(eraseA.events)).toEqual(bySeq(aEvents));
      for (const e of eraseA.events)
        expect(Object.keys(e).sort()).toEqual(['itemId', 'seq', 'timestamp', 'type', 'value']);
      expect(eraseC).toEqual({ kind: 'erase', userId: 'gdpr-c', events: cEvents });

      // The logs get the request id, never the erased user's id.
      const logged = lines.join('');
      expect(logged).toContain('user erased');
      expect(logged).toContain('"request_id":"ingest-test"');
      expect(logged).not.toContain('gdpr-a');
      expect(logged).not.toContain('gdpr-c');
    });

    it('waits for read-your-writes on the seq it announced', async () => {
      const waited: number[] = [];
      const ryw = createCatalogService({
        store,
        changeLog,
        eventLog,
        config,
        logger,
        readYourWrites: {
          events: () => Promise.reject(new Error('the catalog never waits for the event log')),
          changes: (seq) => {
            waited.push(seq);
            return Promise.resolve();
          },
        },
      });
      await ryw.putItem(ctx, 'ryw-item', { categories: ['x'] });
      await ryw.putItems(ctx, [{ id: 'ryw-item-2' }]);
      await ryw.putUser(ctx, 'ryw-user', {});
      await ryw.eraseUser(ctx, 'ryw-user');
      await caught(ryw.putItem(ctx, 'ryw-bad', { available: 'no' }));
      expect(waited).toHaveLength(4);
      // The erased user's record (third) left the log with the erase.
      expect((await changeLog.read(changesHead, 1000)).map((r) => r.seq)).toEqual([
        waited[0],
        waited[1],
        waited[3],
      ]);
    });
  });
});
