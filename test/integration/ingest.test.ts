/**
 * The ingestion and catalog services against the real stores: SQLite in a temporary directory and
 * PostgreSQL in a throw-away schema (`CAIRN_TEST_POSTGRES_URL`, default the local test database).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { EventOutcome } from '../../src/api/deps.ts';
import { loadConfig, type Config, type DeepPartial } from '../../src/config/load.ts';
import type { CairnEvent, Item, StoredEvent } from '../../src/domain/types.ts';
import { CairnError } from '../../src/errors/errors.ts';
import { createCatalogService, createIngestService } from '../../src/ingest/service.ts';
import { createLogger, type Logger } from '../../src/monitoring/logger.ts';
import { createMetrics, type Metrics } from '../../src/monitoring/metrics.ts';
import { openStore } from '../../src/storage/open.ts';
import type { Store } from '../../src/storage/ports.ts';

const PG_URL = process.env.CAIRN_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

interface Backend {
  name: string;
  overrides(): DeepPartial<Config>;
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

/** Reads every stored event in seq order. */
async function allEvents(store: Store): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  for await (const page of store.events.scan({ batchSize: 5000 })) out.push(...page);
  return out;
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

describe.each([sqliteBackend(), postgresBackend()])('ingestion and catalog on $name', (backend) => {
  let store: Store;
  let config: Readonly<Config>;
  const logger: Logger = createLogger('silent');

  beforeAll(async () => {
    config = loadConfig({ env: {}, overrides: { ...backend.overrides(), logging: { level: 'silent' } } });
    store = await openStore(config);
  });

  afterAll(async () => {
    await store?.close();
    await backend.cleanup();
  });

  describe('events', () => {
    let metrics: Metrics;
    let hooked: CairnEvent[][];
    let ingest: ReturnType<typeof createIngestService>;

    beforeEach(() => {
      metrics = createMetrics({ defaultMetrics: false });
      hooked = [];
      ingest = createIngestService({
        store,
        config,
        metrics,
        logger,
        onEvents: (events) => void hooked.push(events),
      });
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
      const first = await ingest.ingestEvents(batch);
      expect(first.map((o) => o.status)).toEqual(['accepted', 'accepted', 'accepted', 'accepted']);
      expect(first.map((o) => o.index)).toEqual([0, 1, 2, 3]);
      expect(first[0].eventId).toBe('idem-1');
      expect(await store.events.count()).toBe(before + 4);
      expect(hooked).toHaveLength(1);
      expect(hooked[0].map((e) => e.eventId)).toEqual(first.map((o) => o.eventId));

      const second = await ingest.ingestEvents(batch);
      expect(second.map((o) => o.status)).toEqual(['duplicate', 'duplicate', 'duplicate', 'duplicate']);
      expect(second.map((o) => o.eventId)).toEqual(first.map((o) => o.eventId));
      expect(await store.events.count()).toBe(before + 4);
      expect(hooked).toHaveLength(1); // nothing new, no hook call

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
      const out = await ingest.ingestEvents([
        { event_id: 'twice-1', user_id: 'twice-u', item_id: 'a', type: 'view', timestamp: T0 },
        { event_id: 'twice-1', user_id: 'twice-u', item_id: 'b', type: 'click', timestamp: T0 },
        { user_id: 'twice-u', item_id: 'c', type: 'view', timestamp: T0 + 5 },
        { user_id: 'twice-u', item_id: 'c', type: 'view', timestamp: T0 + 5 },
      ]);
      expect(out.map((o) => o.status)).toEqual(['accepted', 'duplicate', 'accepted', 'duplicate']);
      expect(await store.events.count()).toBe(before + 2);
      const stored = await store.events.forUser('twice-u', 10);
      expect(stored.map((e) => e.itemId).sort()).toEqual(['a', 'c']);
    });

    it('keeps events without an id or timestamp distinct (random ids)', async () => {
      const before = await store.events.count();
      const e = { user_id: 'rand-u', item_id: 'x', type: 'view' };
      const out = [...(await ingest.ingestEvents([e, e])), ...(await ingest.ingestEvents([e]))];
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
      const out = await ingest.ingestEvents(batch);
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
      expect(hooked.flat().map((e) => e.eventId)).toEqual(['mix-1', 'mix-8']);

      expect(await metricValue(metrics, { type: 'view', status: 'accepted' })).toBe(1);
      expect(await metricValue(metrics, { type: 'purchase', status: 'accepted' })).toBe(1);
      // Unknown types and non-objects are labelled `unknown`; known types keep their label.
      expect(await metricValue(metrics, { type: 'unknown', status: 'rejected' })).toBe(2);
      expect(await metricValue(metrics, { type: 'view', status: 'rejected' })).toBe(3);
      expect(await metricValue(metrics, { type: 'rating', status: 'rejected' })).toBe(1);
      expect(await metricValue(metrics, { type: 'click', status: 'rejected' })).toBe(1);
      expect(await metricValue(metrics, { type: 'teleport', status: 'rejected' })).toBe(0);
    });

    it('stores nothing and calls no hook when every event is invalid', async () => {
      const before = await store.events.count();
      const out = await ingest.ingestEvents([{ user_id: 'x' }, null]);
      expect(out.map((o) => o.status)).toEqual(['rejected', 'rejected']);
      expect(await store.events.count()).toBe(before);
      expect(hooked).toHaveLength(0);
      expect(await ingest.ingestEvents([])).toEqual([]);
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
      const out = await ingest.ingestEvents(batch);
      expect(out).toHaveLength(10_000);
      expect(out.every((o, i) => o.status === 'accepted' && o.index === i && o.eventId === `big-${i}`)).toBe(
        true,
      );
      expect(await store.events.count()).toBe(before + 10_000);
      const added: StoredEvent[] = [];
      for await (const page of store.events.scan({ afterSeq: beforeSeq, batchSize: 4000 }))
        added.push(...page);
      expect(added.map((e) => e.eventId)).toEqual(batch.map((e) => e.event_id));
      expect(hooked[0]).toHaveLength(10_000);
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
      const err = await caught(ingest.ingestEvents(batch));
      expect(err.code).toBe('CAIRN_BATCH_TOO_LARGE');
      expect(err.status).toBe(413);
      expect(err.details).toEqual({ max, got: max + 1 });
      expect(await store.events.count()).toBe(before);
      expect(await store.events.forUser('over-u', 1)).toEqual([]);
      expect(hooked).toHaveLength(0);

      const small = createIngestService({
        store,
        config: loadConfig({ env: {}, overrides: { server: { maxBatchEvents: 2 } } }),
        metrics,
        logger,
      });
      expect((await caught(small.ingestEvents([{}, {}, {}]))).details).toEqual({ max: 2, got: 3 });
      expect(await small.ingestEvents([{}, {}])).toHaveLength(2);
    });

    it('stamps events without a timestamp with the server clock, and lets imports accept old times', async () => {
      const clock = Date.UTC(2024, 5, 1);
      const old = Date.UTC(1997, 8, 20);
      const raw = [
        { event_id: 'clock-1', user_id: 'clock-u', item_id: 'i', type: 'view' },
        { event_id: 'clock-2', user_id: 'clock-u', item_id: 'i', type: 'rating', value: 5, timestamp: old },
      ];
      const live = createIngestService({ store, config, metrics, logger, now: () => clock });
      const out = await live.ingestEvents(raw);
      expect(out.map((o) => [o.status, o.error?.code ?? null])).toEqual([
        ['accepted', null],
        ['rejected', 'CAIRN_TIMESTAMP_OUT_OF_RANGE'],
      ]);
      const importer = createIngestService({
        store,
        config,
        metrics,
        logger,
        now: () => clock,
        minTimestamp: 0,
      });
      expect((await importer.ingestEvents(raw)).map((o) => o.status)).toEqual(['duplicate', 'accepted']);
      expect((await store.events.forUser('clock-u', 5)).map((e) => [e.eventId, e.timestamp])).toEqual([
        ['clock-1', clock],
        ['clock-2', old],
      ]);
    });

    it('a failing onEvents hook is logged and does not fail the request', async () => {
      const lines: string[] = [];
      const sink = new Writable({
        write(chunk: Buffer, _enc, done) {
          lines.push(chunk.toString());
          done();
        },
      });
      const failing = createIngestService({
        store,
        config,
        metrics,
        logger: createLogger('error', { destination: sink }),
        onEvents: () => Promise.reject(new Error('cache is down')),
      });
      const out = await failing.ingestEvents([
        { event_id: 'hook-1', user_id: 'hook-u', item_id: 'i', type: 'view', timestamp: T0 },
      ]);
      expect(out[0].status).toBe('accepted');
      expect((await store.events.forUser('hook-u', 5)).map((e) => e.eventId)).toEqual(['hook-1']);
      expect(lines.join('')).toContain('cache is down');
    });
  });

  describe('catalog', () => {
    let changed: Item[][];
    let erased: string[];
    let catalog: ReturnType<typeof createCatalogService>;

    beforeEach(() => {
      changed = [];
      erased = [];
      catalog = createCatalogService({
        store,
        config,
        logger,
        onItemsChanged: (items) => void changed.push(items),
        onUserErased: (id) => void erased.push(id),
      });
    });

    it('upserts items partially: absent fields keep their stored values', async () => {
      const created = await catalog.putItem('sku-1', {
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
      expect(changed).toEqual([[created]]);

      const updated = await catalog.putItem('sku-1', { available: false });
      expect(updated).toMatchObject({
        id: 'sku-1',
        categories: ['shoes', 'sale'],
        attributes: { price: 59.9, title: 'Trail runner' },
        available: false,
        createdAt: Date.UTC(2024, 0, 1),
      });
      const fetched = await catalog.getItem('sku-1');
      expect(fetched).toMatchObject({
        categories: ['shoes', 'sale'],
        available: false,
        attributes: { price: 59.9, title: 'Trail runner' },
      });

      await catalog.putItem('sku-1', { attributes: { price: 49.9 } });
      expect((await catalog.getItem('sku-1')).attributes).toEqual({ price: 49.9 });
      expect((await catalog.getItem('sku-1')).categories).toEqual(['shoes', 'sale']);
    });

    it('refuses an invalid item with every issue and stores nothing', async () => {
      const err = await caught(
        catalog.putItem('sku-bad', {
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
      expect((await caught(catalog.getItem('sku-bad'))).code).toBe('CAIRN_ITEM_NOT_FOUND');
      expect(changed).toEqual([]);
    });

    it('batch-upserts items with per-item outcomes and merges repeats of one id', async () => {
      const out = await catalog.putItems([
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
      expect(await catalog.getItem('b-1')).toMatchObject({ categories: ['a'], available: false });
      expect(await catalog.getItem('b-3')).toMatchObject({ categories: ['c'], available: true });
      expect((await caught(catalog.getItem('b-2'))).code).toBe('CAIRN_ITEM_NOT_FOUND');
      expect(
        changed
          .flat()
          .map((i) => i.id)
          .sort(),
      ).toEqual(['b-1', 'b-3']);

      const tooMany = Array.from({ length: config.server.maxBatchItems + 1 }, (_, i) => ({
        id: `many-${i}`,
      }));
      const err = await caught(catalog.putItems(tooMany));
      expect(err.code).toBe('CAIRN_BATCH_TOO_LARGE');
      expect(err.details).toEqual({ max: config.server.maxBatchItems, got: config.server.maxBatchItems + 1 });
      expect((await caught(catalog.getItem('many-0'))).code).toBe('CAIRN_ITEM_NOT_FOUND');
    });

    it('upserts and reads users', async () => {
      const u = await catalog.putUser('cat-u1', {
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
      await catalog.putUser('cat-u1', { opt_out: true });
      expect(await catalog.getUser('cat-u1')).toMatchObject({
        attributes: { country: 'FR' },
        segments: ['vip'],
        optOut: true,
      });
      expect((await caught(catalog.getUser('cat-nobody'))).code).toBe('CAIRN_USER_NOT_FOUND');
      const err = await caught(catalog.putUser('cat-u2', { opt_out: 'yes', segment: ['x'] }));
      expect(err.code).toBe('CAIRN_VALIDATION');
      expect((await caught(catalog.getUser('cat-u2'))).code).toBe('CAIRN_USER_NOT_FOUND');
    });

    it("erases a user and their events and leaves everyone else's", async () => {
      const ingest = createIngestService({
        store,
        config,
        metrics: createMetrics({ defaultMetrics: false }),
        logger,
      });
      await catalog.putUser('gdpr-a', { segments: ['x'] });
      await catalog.putUser('gdpr-b', {});
      const events = [
        ...Array.from({ length: 5 }, (_, i) => ({
          event_id: `gdpr-a-${i}`,
          user_id: 'gdpr-a',
          item_id: `i${i}`,
          type: 'view',
          timestamp: T0 + i,
        })),
        ...Array.from({ length: 3 }, (_, i) => ({
          event_id: `gdpr-b-${i}`,
          user_id: 'gdpr-b',
          item_id: `i${i}`,
          type: 'click',
          timestamp: T0 + i,
        })),
        { event_id: 'gdpr-c-0', user_id: 'gdpr-c', item_id: 'i0', type: 'view', timestamp: T0 },
      ];
      await ingest.ingestEvents(events);
      const before = await store.events.count();

      await catalog.eraseUser('gdpr-a');
      expect(erased).toEqual(['gdpr-a']);
      expect(await store.events.forUser('gdpr-a', 100)).toEqual([]);
      expect((await caught(catalog.getUser('gdpr-a'))).code).toBe('CAIRN_USER_NOT_FOUND');
      expect(await store.events.count()).toBe(before - 5);
      expect((await store.events.forUser('gdpr-b', 100)).map((e) => e.eventId).sort()).toEqual([
        'gdpr-b-0',
        'gdpr-b-1',
        'gdpr-b-2',
      ]);
      expect((await catalog.getUser('gdpr-b')).id).toBe('gdpr-b');
      expect((await allEvents(store)).some((e) => e.userId === 'gdpr-a')).toBe(false);

      // A user known only from events is erasable; a second erase finds nothing.
      await catalog.eraseUser('gdpr-c');
      expect(await store.events.forUser('gdpr-c', 10)).toEqual([]);
      const again = await caught(catalog.eraseUser('gdpr-a'));
      expect(again.code).toBe('CAIRN_USER_NOT_FOUND');
      expect(erased).toEqual(['gdpr-a', 'gdpr-c']);
    });
  });
});
