/**
 * The one conformance suite of the `Store` port. Every adapter runs it from an integration test:
 *
 *   describeStoreConformance('sqlite', () => openFreshSqlite(), () => removeTempDir());
 *
 * `factory` must return a fresh, empty, migrated store for each test (the suite closes it afterwards);
 * `cleanup` runs once after the whole suite (drop schemas, delete files). Assertions are about
 * behaviour the port promises, never about an adapter's internals.
 */
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CairnEvent, ModelVersion, StoredEvent } from '../../domain/types.ts';
import type { Store } from '../ports.ts';
import { RICH_JSON, sleep } from './helpers.ts';

function ev(
  eventId: string,
  userId = 'u1',
  itemId = 'i1',
  timestamp = 1_700_000_000_000,
  extra: Partial<CairnEvent> = {},
): CairnEvent {
  return { eventId, userId, itemId, type: 'view', value: null, timestamp, context: null, ...extra };
}

/** Drops `seq` so stored events compare with the events that were appended. */
function plain(e: StoredEvent): CairnEvent {
  const { seq: _seq, ...rest } = e;
  return rest;
}

async function pagesOf(iter: AsyncIterable<StoredEvent[]>): Promise<StoredEvent[][]> {
  const pages: StoredEvent[][] = [];
  for await (const page of iter) pages.push(page);
  return pages;
}

async function scanAll(
  store: Store,
  options: { afterSeq?: number; batchSize?: number; untilSeq?: number } = {},
) {
  return (await pagesOf(store.events.scan(options))).flat();
}

function model(version: string, createdAt: number, overrides: Partial<ModelVersion> = {}): ModelVersion {
  return {
    version,
    algorithm: 'als',
    params: { factors: 64, regularization: 0.01, nested: { a: [1, 2, 3] } },
    status: 'ready',
    trainingData: { users: 10, items: 20, interactions: 300, events: 320, lastEventSeq: 320 },
    metrics: { 'ndcg@10': 0.3125, 'recall@10': 0.25 },
    trainSeconds: 1.5,
    artifactPath: `/data/models/${version}.cairn`,
    checksum: 'sha256:abc',
    configHash: 'cfg1',
    parentVersion: null,
    createdAt,
    promotedAt: null,
    error: null,
    lineage: null,
    ...overrides,
  };
}

const expectCode = async (p: Promise<unknown>, code: string) => {
  await expect(p).rejects.toMatchObject({ code });
};

export function describeStoreConformance(
  name: string,
  factory: () => Promise<Store>,
  cleanup?: () => Promise<void>,
): void {
  describe(`Store conformance: ${name}`, () => {
    let store: Store;

    beforeEach(async () => {
      store = await factory();
    });

    afterEach(async () => {
      await store.close();
    });

    if (cleanup) afterAll(cleanup);

    describe('store', () => {
      it('reports its kind and answers ping', async () => {
        expect(['sqlite', 'postgres']).toContain(store.kind);
        await expect(store.ping()).resolves.toBeUndefined();
      });

      it('migrate() is idempotent and keeps data', async () => {
        await store.events.append([ev('e1')]);
        await store.items.upsert([{ id: 'i1' }]);
        await store.migrate();
        await store.migrate();
        expect(await store.events.count()).toBe(1);
        expect(await store.items.count()).toBe(1);
      });

      it('starts empty', async () => {
        expect(await store.events.count()).toBe(0);
        expect(await store.events.lastSeq()).toBe(0);
        expect(await store.items.count()).toBe(0);
        expect(await store.users.count()).toBe(0);
        expect(await store.models.list()).toEqual([]);
        expect(await store.models.champion()).toBeNull();
        expect(await scanAll(store)).toEqual([]);
      });
    });

    describe('events', () => {
      it('appends an empty batch as a no-op', async () => {
        expect(await store.events.append([])).toEqual([]);
        expect(await store.events.count()).toBe(0);
      });

      it('stores every field and assigns increasing seqs in batch order', async () => {
        const batch = [
          ev('e1', 'u1', 'i1', 1000),
          ev('e2', 'u2', 'i2', 999, { type: 'rating', value: 4.5, context: { page: 'home', pos: 3 } }),
          ev('e3', 'u1', 'i3', 1001, { type: 'purchase', value: 0 }),
        ];
        expect(await store.events.append(batch)).toEqual(['inserted', 'inserted', 'inserted']);
        const stored = await scanAll(store);
        expect(stored.map(plain)).toStrictEqual(batch);
        expect(stored[0].seq).toBeGreaterThan(0);
        expect(stored[1].seq).toBeGreaterThan(stored[0].seq);
        expect(stored[2].seq).toBeGreaterThan(stored[1].seq);
        expect(await store.events.lastSeq()).toBe(stored[2].seq);
        expect(await store.events.count()).toBe(3);
      });

      it('is idempotent across calls: a repeated event_id is a duplicate and the first write wins', async () => {
        expect(await store.events.append([ev('a'), ev('b', 'u1', 'i1', 5)])).toEqual([
          'inserted',
          'inserted',
        ]);
        const seqBefore = await store.events.lastSeq();
        const outcomes = await store.events.append([ev('b', 'u9', 'i9', 6, { value: 9 }), ev('c')]);
        expect(outcomes).toEqual(['duplicate', 'inserted']);
        expect(await store.events.count()).toBe(3);
        const stored = await scanAll(store);
        expect(stored.map((e) => e.eventId)).toEqual(['a', 'b', 'c']);
        expect(plain(stored[1])).toStrictEqual(ev('b', 'u1', 'i1', 5));
        expect(stored[2].seq).toBeGreaterThan(seqBefore);
        // A batch of only repeats changes nothing.
        expect(await store.events.append([ev('a'), ev('c')])).toEqual(['duplicate', 'duplicate']);
        expect(await store.events.count()).toBe(3);
        expect(await store.events.lastSeq()).toBe(stored[2].seq);
      });

      it('is idempotent within a batch: the first occurrence is stored, later ones are duplicates', async () => {
        const outcomes = await store.events.append([
          ev('x', 'u1', 'i1', 1),
          ev('x', 'u2', 'i2', 2),
          ev('y'),
          ev('x', 'u3', 'i3', 3),
          ev('y'),
        ]);
        expect(outcomes).toEqual(['inserted', 'duplicate', 'inserted', 'duplicate', 'duplicate']);
        expect(await store.events.count()).toBe(2);
        const stored = await scanAll(store);
        expect(stored.map(plain)).toStrictEqual([ev('x', 'u1', 'i1', 1), ev('y')]);
      });

      it('counts each event exactly once under concurrent overlapping appends', async () => {
        const ids = (from: number, to: number) =>
          Array.from({ length: to - from }, (_, i) => ev(`c${from + i}`));
        const results = await Promise.all([
          store.events.append(ids(0, 300)),
          store.events.append(ids(200, 500)),
          store.events.append(ids(100, 400)),
        ]);
        const inserted = results.flat().filter((o) => o === 'inserted').length;
        expect(inserted).toBe(500);
        expect(await store.events.count()).toBe(500);
        const stored = await scanAll(store, { batchSize: 128 });
        expect(new Set(stored.map((e) => e.eventId)).size).toBe(500);
      });

      it('stores every one of many concurrent single-event appends once, with strictly increasing seqs', async () => {
        const n = 300;
        const outcomes = await Promise.all(
          Array.from({ length: n }, (_, i) => store.events.append([ev(`s${i}`, `u${i % 7}`)])),
        );
        expect(outcomes).toEqual(Array.from({ length: n }, () => ['inserted']));
        expect(await store.events.count()).toBe(n);
        const stored = await scanAll(store, { batchSize: 64 });
        expect(new Set(stored.map((e) => e.eventId))).toEqual(new Set(outcomes.map((_, i) => `s${i}`)));
        for (let i = 1; i < n; i++) expect(stored[i].seq).toBeGreaterThan(stored[i - 1].seq);
        expect(await store.events.lastSeq()).toBe(stored[n - 1].seq);
        expect(await store.events.append([ev('after')])).toEqual(['inserted']);
        expect((await scanAll(store, { afterSeq: stored[n - 1].seq })).map((e) => e.eventId)).toEqual([
          'after',
        ]);
      });

      it('gives concurrent callers their own outcomes, in order; a shared id inserts once', async () => {
        const callers = 40;
        const batchOf = (c: number) => [
          ev(`own${c}a`, `u${c}`),
          ev('shared', `u${c}`),
          ev(`own${c}b`, `u${c}`),
        ];
        const outcomes = await Promise.all(
          Array.from({ length: callers }, (_, c) => store.events.append(batchOf(c))),
        );
        const winners = outcomes.flatMap((o, c) => (o[1] === 'inserted' ? [c] : []));
        expect(winners).toHaveLength(1);
        for (const o of outcomes) {
          expect([o[0], o[2]]).toEqual(['inserted', 'inserted']);
          expect(['inserted', 'duplicate']).toContain(o[1]);
        }
        const stored = await scanAll(store);
        expect(stored).toHaveLength(2 * callers + 1);
        expect(plain(stored.find((e) => e.eventId === 'shared')!)).toStrictEqual(batchOf(winners[0])[1]);
        // Each caller's events are stored in its order (not always next to each other: two concurrent
        // transactions may draw seqs in turn).
        const position = new Map(stored.map((e, i) => [e.eventId, i]));
        for (let c = 0; c < callers; c++) {
          const a = position.get(`own${c}a`)!;
          const b = position.get(`own${c}b`)!;
          expect(b).toBeGreaterThan(a);
          if (c === winners[0])
            expect([a < position.get('shared')!, position.get('shared')! < b]).toEqual([true, true]);
        }
      });

      it('fails only the batch at fault among concurrent appends', async () => {
        const bad = { ...ev('bad'), userId: null } as unknown as CairnEvent;
        const results = await Promise.allSettled([
          store.events.append([ev('ok1')]),
          store.events.append([ev('ok2')]),
          store.events.append([ev('n1'), bad]),
          store.events.append([ev('ok3'), ev('ok1')]),
        ]);
        expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
        expect(results[0]).toEqual({ status: 'fulfilled', value: ['inserted'] });
        expect(results[1]).toEqual({ status: 'fulfilled', value: ['inserted'] });
        expect(results[3]).toEqual({ status: 'fulfilled', value: ['inserted', 'duplicate'] });
        // Calls in flight together have no order between them (PostgreSQL commits two groups at once).
        expect((await scanAll(store)).map((e) => e.eventId).sort()).toEqual(['ok1', 'ok2', 'ok3']);
        expect(await store.events.append([ev('n1')])).toEqual(['inserted']);
      });

      it('is atomic: a batch that fails stores nothing', async () => {
        await store.events.append([ev('kept')]);
        const seq = await store.events.lastSeq();
        const bad = { ...ev('bad'), userId: null } as unknown as CairnEvent;
        await expect(store.events.append([ev('n1'), ev('kept'), ev('n2'), bad])).rejects.toBeDefined();
        expect(await store.events.count()).toBe(1);
        expect(await store.events.lastSeq()).toBe(seq);
        // Nothing of the failed batch was remembered as seen.
        expect(await store.events.append([ev('n1'), ev('n2')])).toEqual(['inserted', 'inserted']);
      });

      it('keeps null and numeric values apart', async () => {
        const values = [null, 0, -1.5, 3, 1e-9, 123456.789, 4.25];
        await store.events.append(
          values.map((value, i) => ev(`v${i}`, 'u', 'i', i, { type: 'rating', value })),
        );
        const stored = await scanAll(store);
        expect(stored.map((e) => e.value)).toStrictEqual(values);
      });

      it('round-trips context JSON and unicode identifiers exactly', async () => {
        const e = ev('évt-🔥-1', 'usér-東京', 'ïtem-𝄞', 1_700_000_000_123, {
          type: 'click',
          context: RICH_JSON,
        });
        await store.events.append([e, ev('plain', 'u', 'i', 1, { context: null })]);
        const stored = await scanAll(store);
        expect(plain(stored[0])).toStrictEqual(e);
        expect(stored[1].context).toBeNull();
        expect((await store.events.forUser('usér-東京', 5)).map(plain)).toStrictEqual([e]);
      });

      it('forUser returns newest first (timestamp, then insertion order), limited, only that user', async () => {
        await store.events.append([
          ev('a', 'u1', 'i1', 100),
          ev('b', 'u1', 'i2', 300),
          ev('c', 'u2', 'i1', 999),
          ev('d', 'u1', 'i3', 200),
          ev('e', 'u1', 'i4', 300),
          ev('f', 'u1', 'i5', 50),
        ]);
        const all = await store.events.forUser('u1', 100);
        expect(all.map((e) => e.eventId)).toEqual(['e', 'b', 'd', 'a', 'f']);
        expect((await store.events.forUser('u1', 2)).map((e) => e.eventId)).toEqual(['e', 'b']);
        expect((await store.events.forUser('u2', 10)).map((e) => e.eventId)).toEqual(['c']);
        expect(await store.events.forUser('nobody', 10)).toEqual([]);
        expect(await store.events.forUser('u1', 0)).toEqual([]);
        // Seqs of the same user's events are distinct and match the scan.
        const bySeq = new Map((await scanAll(store)).map((e) => [e.eventId, e.seq]));
        for (const e of all) expect(e.seq).toBe(bySeq.get(e.eventId));
      });

      it('scan pages in seq order, complete, honouring afterSeq (exclusive), untilSeq (inclusive) and batchSize', async () => {
        const batch = Array.from({ length: 25 }, (_, i) => ev(`s${i}`, `u${i % 3}`, `i${i}`, 1000 - i));
        await store.events.append(batch);
        const pages = await pagesOf(store.events.scan({ batchSize: 10 }));
        expect(pages.map((p) => p.length)).toEqual([10, 10, 5]);
        const all = pages.flat();
        expect(all.map((e) => e.eventId)).toEqual(batch.map((e) => e.eventId));
        for (let i = 1; i < all.length; i++) expect(all[i].seq).toBeGreaterThan(all[i - 1].seq);
        const seq = all.map((e) => e.seq);

        expect((await scanAll(store, { afterSeq: seq[4] })).map((e) => e.eventId)).toEqual(
          batch.slice(5).map((e) => e.eventId),
        );
        expect((await scanAll(store, { untilSeq: seq[14], batchSize: 4 })).map((e) => e.seq)).toEqual(
          seq.slice(0, 15),
        );
        const window = await pagesOf(store.events.scan({ afterSeq: seq[2], untilSeq: seq[9], batchSize: 3 }));
        expect(window.map((p) => p.length)).toEqual([3, 3, 1]);
        expect(window.flat().map((e) => e.seq)).toEqual(seq.slice(3, 10));
        expect(await scanAll(store, { afterSeq: seq[24] })).toEqual([]);
        expect(await scanAll(store, { afterSeq: seq[10], untilSeq: seq[10] })).toEqual([]);
        // Default page size still returns everything.
        expect((await scanAll(store)).map((e) => e.seq)).toEqual(seq);
        // Exactly full last page: no empty trailing page.
        expect((await pagesOf(store.events.scan({ batchSize: 5 }))).map((p) => p.length)).toEqual([
          5, 5, 5, 5, 5,
        ]);
      });

      it('scan stays complete across seq gaps left by deletions', async () => {
        await store.events.append(
          Array.from({ length: 30 }, (_, i) => ev(`g${i}`, i % 3 === 0 ? 'gone' : 'kept')),
        );
        expect(await store.events.deleteForUser('gone')).toBe(10);
        const pages = await pagesOf(store.events.scan({ batchSize: 7 }));
        expect(pages.map((p) => p.length)).toEqual([7, 7, 6]);
        expect(pages.flat().map((e) => e.eventId)).toEqual(
          Array.from({ length: 30 }, (_, i) => i)
            .filter((i) => i % 3 !== 0)
            .map((i) => `g${i}`),
        );
      });

      it('scan without untilSeq stops at the newest event present when it started', async () => {
        await store.events.append(Array.from({ length: 10 }, (_, i) => ev(`o${i}`)));
        const seen: string[] = [];
        let appended = false;
        for await (const page of store.events.scan({ batchSize: 3 })) {
          seen.push(...page.map((e) => e.eventId));
          if (!appended) {
            appended = true;
            await store.events.append(Array.from({ length: 5 }, (_, i) => ev(`late${i}`)));
          }
        }
        expect(seen).toEqual(Array.from({ length: 10 }, (_, i) => `o${i}`));
        expect(await store.events.count()).toBe(15);
      });

      it('lastSeq tracks the newest seq and seqs are never reused after deletion', async () => {
        await store.events.append([ev('a', 'u1'), ev('b', 'u2')]);
        const [a, b] = await scanAll(store);
        expect(await store.events.lastSeq()).toBe(b.seq);
        expect(await store.events.deleteForUser('u2')).toBe(1);
        expect(await store.events.lastSeq()).toBe(a.seq);
        await store.events.append([ev('c', 'u3')]);
        const c = (await scanAll(store)).find((e) => e.eventId === 'c')!;
        expect(c.seq).toBeGreaterThan(b.seq);
        expect(await store.events.lastSeq()).toBe(c.seq);
      });

      it('deleteForUser removes only that user’s events and reports how many', async () => {
        await store.events.append([ev('a', 'u1'), ev('b', 'u2'), ev('c', 'u1'), ev('d', 'u3')]);
        expect(await store.events.deleteForUser('u1')).toBe(2);
        expect(await store.events.deleteForUser('u1')).toBe(0);
        expect(await store.events.deleteForUser('nobody')).toBe(0);
        expect(await store.events.count()).toBe(2);
        expect(await store.events.forUser('u1', 10)).toEqual([]);
        expect((await scanAll(store)).map((e) => e.eventId)).toEqual(['b', 'd']);
        // The ids are free again only in the sense that they are gone: re-appending stores them anew.
        expect(await store.events.append([ev('a', 'u1')])).toEqual(['inserted']);
      });

      it('handles a 10,000-event batch: all stored, in order, then all duplicates on replay', async () => {
        const n = 10_000;
        const batch = Array.from({ length: n }, (_, i) =>
          ev(`big-${i}`, `u${i % 97}`, `i${i % 1013}`, 1_600_000_000_000 + i * 1000, {
            type: i % 5 === 0 ? 'rating' : 'view',
            value: i % 5 === 0 ? (i % 10) / 2 : null,
            context: i % 7 === 0 ? { i, tag: `t${i % 3}` } : null,
          }),
        );
        const outcomes = await store.events.append(batch);
        expect(outcomes.length).toBe(n);
        expect(outcomes.every((o) => o === 'inserted')).toBe(true);
        expect(await store.events.count()).toBe(n);
        const pages = await pagesOf(store.events.scan({ batchSize: 4096 }));
        expect(pages.map((p) => p.length)).toEqual([4096, 4096, n - 8192]);
        const stored = pages.flat();
        for (let i = 1; i < n; i++) {
          if (stored[i].seq <= stored[i - 1].seq) throw new Error(`seq not increasing at ${i}`);
        }
        expect(stored.map(plain)).toStrictEqual(batch);
        const last = await store.events.lastSeq();
        expect(last).toBe(stored[n - 1].seq);

        const replay = await store.events.append(batch);
        expect(replay.every((o) => o === 'duplicate')).toBe(true);
        expect(await store.events.count()).toBe(n);
        expect(await store.events.lastSeq()).toBe(last);

        // Half old, half new, interleaved.
        const mixed = Array.from({ length: n }, (_, i) => (i % 2 === 0 ? batch[i] : ev(`new-${i}`)));
        const mixedOut = await store.events.append(mixed);
        expect(mixedOut).toEqual(mixed.map((_, i) => (i % 2 === 0 ? 'duplicate' : 'inserted')));
        expect(await store.events.count()).toBe(n + n / 2);
        expect((await store.events.forUser('u5', 3)).map((e) => e.eventId)).toEqual(
          stored
            .filter((e) => e.userId === 'u5')
            .slice(-3)
            .reverse()
            .map((e) => e.eventId),
        );
      });
    });

    describe('items', () => {
      it('inserts with defaults and honours a given createdAt', async () => {
        const before = Date.now();
        const [a, b] = await store.items.upsert([
          { id: 'a' },
          { id: 'b', createdAt: 1234, categories: ['x'] },
        ]);
        const after = Date.now();
        expect(a).toMatchObject({ id: 'a', categories: [], attributes: {}, available: true });
        expect(a.createdAt).toBeGreaterThanOrEqual(before);
        expect(a.createdAt).toBeLessThanOrEqual(after);
        expect(a.updatedAt).toBe(a.createdAt);
        expect(b).toMatchObject({ id: 'b', categories: ['x'], createdAt: 1234 });
        expect(b.updatedAt).toBeGreaterThanOrEqual(before);
        expect(await store.items.get('a')).toStrictEqual(a);
        expect(await store.items.get('b')).toStrictEqual(b);
        expect(await store.items.count()).toBe(2);
      });

      it('merges partial patches: unspecified fields keep stored values, createdAt kept, updatedAt moves', async () => {
        const [first] = await store.items.upsert([
          {
            id: 'p',
            categories: ['shoes', 'sale'],
            attributes: { price: 10, brand: 'Acme' },
            available: true,
          },
        ]);
        await sleep(5);
        const [second] = await store.items.upsert([{ id: 'p', available: false }]);
        expect(second).toStrictEqual({ ...first, available: false, updatedAt: second.updatedAt });
        expect(second.updatedAt).toBeGreaterThan(first.updatedAt);
        await sleep(5);
        // A given field replaces the stored one wholesale (attributes are not deep-merged).
        const [third] = await store.items.upsert([{ id: 'p', attributes: { price: 12 } }]);
        expect(third).toStrictEqual({
          id: 'p',
          categories: ['shoes', 'sale'],
          attributes: { price: 12 },
          available: false,
          createdAt: first.createdAt,
          updatedAt: third.updatedAt,
        });
        expect(third.updatedAt).toBeGreaterThan(second.updatedAt);
        const [fourth] = await store.items.upsert([{ id: 'p', categories: [], createdAt: 42 }]);
        expect(fourth.categories).toEqual([]);
        expect(fourth.createdAt).toBe(42);
        expect(fourth.attributes).toEqual({ price: 12 });
        expect(await store.items.get('p')).toStrictEqual(fourth);
      });

      it('returns results in input order; a repeated id in one batch ends with all its fields applied', async () => {
        const out = await store.items.upsert([
          { id: 'z', categories: ['c1'] },
          { id: 'y', available: false },
          { id: 'z', attributes: { k: 1 } },
        ]);
        expect(out.map((i) => i.id)).toEqual(['z', 'y', 'z']);
        const z = await store.items.get('z');
        expect(z).toMatchObject({ categories: ['c1'], attributes: { k: 1 }, available: true });
        expect(out[0]).toStrictEqual(z);
        expect(out[2]).toStrictEqual(z);
        expect(out[1].available).toBe(false);
        expect(await store.items.count()).toBe(2);
      });

      it('is atomic: a failing batch stores nothing', async () => {
        const bad = { id: 'bad', attributes: { n: BigInt(1) } };
        await expect(store.items.upsert([{ id: 'ok' }, bad])).rejects.toBeDefined();
        expect(await store.items.get('ok')).toBeNull();
        expect(await store.items.count()).toBe(0);
      });

      it('round-trips attributes and categories exactly', async () => {
        const patch = { id: 'rich-🍮', categories: ['desserts', 'français', '日本'], attributes: RICH_JSON };
        const [stored] = await store.items.upsert([patch]);
        expect(stored.attributes).toStrictEqual(RICH_JSON);
        expect(await store.items.get('rich-🍮')).toMatchObject({
          categories: patch.categories,
          attributes: RICH_JSON,
        });
      });

      it('get returns null and getMany skips missing ids, keeping the order asked', async () => {
        await store.items.upsert([{ id: 'a' }, { id: 'b' }, { id: 'c' }]);
        expect(await store.items.get('missing')).toBeNull();
        expect((await store.items.getMany(['c', 'missing', 'a', 'c'])).map((i) => i.id)).toEqual(['c', 'a']);
        expect(await store.items.getMany([])).toEqual([]);
        expect(await store.items.getMany(['nope'])).toEqual([]);
        const many = Array.from({ length: 3000 }, (_, i) => `m${i}`);
        await store.items.upsert(many.map((id) => ({ id })));
        expect((await store.items.getMany([...many].reverse())).map((i) => i.id)).toEqual(
          [...many].reverse(),
        );
      });

      it('list pages by id (code-point order), complete and without repeats', async () => {
        const ids = ['b', 'B', 'a', 'A', 'item-10', 'item-2', 'Z', 'é', '~', '_x', '0', 'aa'];
        await store.items.upsert(ids.map((id) => ({ id })));
        const seen: string[] = [];
        let after: string | undefined;
        for (;;) {
          const page = await store.items.list({ after, limit: 5 });
          expect(page.length).toBeLessThanOrEqual(5);
          if (page.length === 0) break;
          seen.push(...page.map((i) => i.id));
          after = page[page.length - 1].id;
        }
        expect(seen).toEqual([...ids].sort());
        expect((await store.items.list({ limit: 3 })).map((i) => i.id)).toEqual([...ids].sort().slice(0, 3));
        expect(await store.items.list({ after: [...ids].sort().at(-1), limit: 10 })).toEqual([]);
        expect(await store.items.list({ limit: 0 })).toEqual([]);
        expect(await store.items.count()).toBe(ids.length);
      });
    });

    describe('users', () => {
      it('inserts with defaults, merges partial patches, keeps createdAt and moves updatedAt', async () => {
        const before = Date.now();
        const u = await store.users.upsert({ id: 'u1' });
        expect(u).toMatchObject({ id: 'u1', attributes: {}, segments: [], optOut: false });
        expect(u.createdAt).toBeGreaterThanOrEqual(before);
        expect(u.updatedAt).toBe(u.createdAt);
        await sleep(5);
        const v = await store.users.upsert({ id: 'u1', attributes: RICH_JSON, segments: ['vip', 'École'] });
        expect(v).toStrictEqual({
          id: 'u1',
          attributes: RICH_JSON,
          segments: ['vip', 'École'],
          optOut: false,
          createdAt: u.createdAt,
          updatedAt: v.updatedAt,
        });
        expect(v.updatedAt).toBeGreaterThan(u.updatedAt);
        await sleep(5);
        const w = await store.users.upsert({ id: 'u1', optOut: true });
        expect(w).toStrictEqual({ ...v, optOut: true, updatedAt: w.updatedAt });
        expect(w.updatedAt).toBeGreaterThan(v.updatedAt);
        expect(await store.users.get('u1')).toStrictEqual(w);
        expect(await store.users.get('nobody')).toBeNull();
        expect(await store.users.count()).toBe(1);
      });

      it('optedOut lists exactly the opted-out users', async () => {
        await store.users.upsert({ id: 'c', optOut: true });
        await store.users.upsert({ id: 'a', optOut: true });
        await store.users.upsert({ id: 'b' });
        expect((await store.users.optedOut()).sort()).toEqual(['a', 'c']);
        await store.users.upsert({ id: 'c', optOut: false });
        await store.users.upsert({ id: 'b', optOut: true });
        expect((await store.users.optedOut()).sort()).toEqual(['a', 'b']);
      });

      it('delete removes one user and reports whether it existed', async () => {
        await store.users.upsert({ id: 'a' });
        await store.users.upsert({ id: 'b' });
        expect(await store.users.delete('a')).toBe(true);
        expect(await store.users.delete('a')).toBe(false);
        expect(await store.users.get('a')).toBeNull();
        expect(await store.users.get('b')).not.toBeNull();
        expect(await store.users.count()).toBe(1);
      });
    });

    describe('eraseUser', () => {
      it('removes the user and all their events, leaving others intact', async () => {
        await store.users.upsert({ id: 'gone', attributes: { email: 'x@example.com' } });
        await store.users.upsert({ id: 'stay' });
        await store.events.append([ev('1', 'gone'), ev('2', 'stay'), ev('3', 'gone'), ev('4', 'stay')]);
        const removed = await store.eraseUser('gone');
        // The removed events come back, in seq order, so derived state can be corrected exactly.
        expect(removed?.map((e) => [e.eventId, e.userId])).toEqual([
          ['1', 'gone'],
          ['3', 'gone'],
        ]);
        expect(removed![0].seq).toBeLessThan(removed![1].seq);
        expect(await store.users.get('gone')).toBeNull();
        expect(await store.events.forUser('gone', 10)).toEqual([]);
        expect(await store.users.get('stay')).not.toBeNull();
        expect((await scanAll(store)).map((e) => e.eventId)).toEqual(['2', '4']);
        expect(await store.events.count()).toBe(2);
        expect(await store.users.count()).toBe(1);
        expect(await store.eraseUser('gone')).toBeNull();
      });

      it('erases a user known only from events, and answers false for an unknown one', async () => {
        await store.events.append([ev('1', 'anon'), ev('2', 'other')]);
        expect((await store.eraseUser('anon'))?.map((e) => e.eventId)).toEqual(['1']);
        expect(await store.events.count()).toBe(1);
        await store.users.upsert({ id: 'only-row' });
        expect(await store.eraseUser('only-row')).toEqual([]);
        expect(await store.eraseUser('never-seen')).toBeNull();
        expect(await store.users.count()).toBe(0);
      });
    });

    describe('models', () => {
      it('inserts and reads back every field; a repeated version is a conflict', async () => {
        const m = model('v1', 1000, { params: RICH_JSON, error: null, parentVersion: 'v0' });
        await store.models.insert(m);
        expect(await store.models.get('v1')).toStrictEqual(m);
        expect(await store.models.get('nope')).toBeNull();
        await expectCode(store.models.insert(model('v1', 2000)), 'CAIRN_CONFLICT');
        expect(await store.models.get('v1')).toStrictEqual(m);
      });

      it('update applies a partial patch and returns the result', async () => {
        await store.models.insert(model('v1', 1000, { status: 'training', artifactPath: '', checksum: '' }));
        const updated = await store.models.update('v1', {
          status: 'ready',
          metrics: { 'ndcg@10': 0.5 },
          artifactPath: '/m/v1',
          checksum: 'sha256:def',
          trainSeconds: 12.25,
        });
        expect(updated).toStrictEqual(
          model('v1', 1000, {
            metrics: { 'ndcg@10': 0.5 },
            artifactPath: '/m/v1',
            checksum: 'sha256:def',
            trainSeconds: 12.25,
          }),
        );
        expect(await store.models.get('v1')).toStrictEqual(updated);
        const failed = await store.models.update('v1', { status: 'failed', error: 'boom' });
        expect(failed).toMatchObject({ status: 'failed', error: 'boom', checksum: 'sha256:def' });
        await expectCode(store.models.update('missing', { status: 'ready' }), 'CAIRN_MODEL_NOT_FOUND');
      });

      it('lists newest first, with a limit', async () => {
        await store.models.insert(model('old', 1000));
        await store.models.insert(model('newest', 3000));
        await store.models.insert(model('mid', 2000));
        await store.models.insert(model('mid-later', 2000)); // same ms: inserted later counts as newer
        expect((await store.models.list()).map((m) => m.version)).toEqual([
          'newest',
          'mid-later',
          'mid',
          'old',
        ]);
        expect((await store.models.list(2)).map((m) => m.version)).toEqual(['newest', 'mid-later']);
        expect((await store.models.list(10)).length).toBe(4);
      });

      it('promote makes a champion, retires the previous one and records it as parent', async () => {
        await store.models.insert(model('a', 1000));
        await store.models.insert(model('b', 2000));
        expect(await store.models.champion()).toBeNull();

        const a = await store.models.promote('a', 5000);
        expect(a).toStrictEqual(
          model('a', 1000, { status: 'champion', promotedAt: 5000, parentVersion: null }),
        );
        expect(await store.models.champion()).toStrictEqual(a);

        const b = await store.models.promote('b', 6000);
        expect(b).toMatchObject({ version: 'b', status: 'champion', promotedAt: 6000, parentVersion: 'a' });
        expect(await store.models.champion()).toStrictEqual(b);
        expect(await store.models.get('a')).toMatchObject({ status: 'retired', promotedAt: 5000 });

        // Rollback: a retired model can be promoted again.
        const back = await store.models.promote('a', 7000);
        expect(back).toMatchObject({ status: 'champion', parentVersion: 'b', promotedAt: 7000 });
        expect(await store.models.get('b')).toMatchObject({ status: 'retired' });
        const champions = (await store.models.list()).filter((m) => m.status === 'champion');
        expect(champions.map((m) => m.version)).toEqual(['a']);

        // Promoting the champion again changes nothing.
        expect(await store.models.promote('a', 9999)).toStrictEqual(back);
        expect(await store.models.get('a')).toStrictEqual(back);
      });

      it('promote refuses unknown, training and failed models without changing anything', async () => {
        await store.models.insert(model('champ', 1000));
        await store.models.promote('champ', 1500);
        await store.models.insert(model('t', 2000, { status: 'training' }));
        await store.models.insert(model('f', 3000, { status: 'failed', error: 'diverged' }));
        await expectCode(store.models.promote('missing', 5000), 'CAIRN_MODEL_NOT_FOUND');
        await expectCode(store.models.promote('t', 5000), 'CAIRN_MODEL_NOT_PROMOTABLE');
        await expectCode(store.models.promote('f', 5000), 'CAIRN_MODEL_NOT_PROMOTABLE');
        expect(await store.models.champion()).toMatchObject({ version: 'champ', promotedAt: 1500 });
        expect(await store.models.get('t')).toMatchObject({ status: 'training', promotedAt: null });
      });

      it('concurrent promotions leave exactly one champion and a consistent lineage', async () => {
        await store.models.insert(model('base', 1000));
        await store.models.promote('base', 1100);
        await store.models.insert(model('x', 2000));
        await store.models.insert(model('y', 3000));
        await Promise.all([store.models.promote('x', 4000), store.models.promote('y', 4000)]);
        const all = await store.models.list();
        const champions = all.filter((m) => m.status === 'champion');
        expect(champions.length).toBe(1);
        const champ = champions[0];
        const other = champ.version === 'x' ? 'y' : 'x';
        expect(champ.parentVersion).toBe(other);
        expect(await store.models.get(other)).toMatchObject({ status: 'retired', parentVersion: 'base' });
        expect(await store.models.get('base')).toMatchObject({ status: 'retired' });
      });
    });

    describe('appendLogged and offsets', () => {
      /** An event as the event log hands it to the store writer: it already carries its log seq. */
      const logged = (seq: number, eventId: string, extra: Partial<CairnEvent> = {}): StoredEvent => ({
        ...ev(eventId, 'u1', 'i1', 1_700_000_000_000 + seq, extra),
        seq,
      });

      it('appendLogged keeps each event’s log seq and stores every field', async () => {
        expect(await store.events.appendLogged([])).toEqual([]);
        const batch = [
          logged(3, 'a', { type: 'rating', value: 4.5, context: RICH_JSON }),
          logged(7, 'b'),
          logged(12, 'c', { userId: 'u2', value: 0, context: {} }),
        ];
        expect(await store.events.appendLogged(batch)).toEqual(['inserted', 'inserted', 'inserted']);
        expect(await scanAll(store)).toStrictEqual(batch);
        expect(await scanAll(store, { afterSeq: 3, untilSeq: 7 })).toStrictEqual([batch[1]]);
        expect(await store.events.lastSeq()).toBe(12);
        expect(await store.events.count()).toBe(3);
        expect(await store.events.forUser('u2', 10)).toStrictEqual([batch[2]]);
      });

      it('appendLogged is idempotent by event id and by seq: replays are duplicates and change nothing', async () => {
        const batch = [logged(1, 'a'), logged(2, 'b')];
        expect(await store.events.appendLogged(batch)).toEqual(['inserted', 'inserted']);
        expect(await store.events.appendLogged(batch)).toEqual(['duplicate', 'duplicate']);
        expect(
          await store.events.appendLogged([
            logged(5, 'a', { itemId: 'other' }), // known id under a new seq
            logged(2, 'z'), // known seq under a new id
            logged(6, 'c'),
            logged(6, 'c'), // repeated within the batch
          ]),
        ).toEqual(['duplicate', 'duplicate', 'inserted', 'duplicate']);
        expect(await scanAll(store)).toStrictEqual([...batch, logged(6, 'c')]);
      });

      it('an ordinary append after appendLogged gets a seq above every logged one', async () => {
        await store.events.appendLogged([logged(40, 'x'), logged(41, 'y')]);
        expect(await store.events.append([ev('after-1')])).toEqual(['inserted']);
        const all = await scanAll(store);
        expect(all.map((e) => e.eventId)).toEqual(['x', 'y', 'after-1']);
        expect(all[2].seq).toBeGreaterThan(41);
      });

      it('offsets start at 0, move forward only, and are kept per name', async () => {
        expect(await store.offsets.get('events:projector')).toBe(0);
        await store.offsets.set('events:projector', 10);
        expect(await store.offsets.get('events:projector')).toBe(10);
        await store.offsets.set('events:projector', 4);
        expect(await store.offsets.get('events:projector')).toBe(10);
        await store.offsets.set('events:projector', 25);
        expect(await store.offsets.get('events:projector')).toBe(25);
        expect(await store.offsets.get('changes:projector')).toBe(0);

        await store.offsets.set('ü name ✓', 3);
        expect(await store.offsets.get('ü name ✓')).toBe(3);
        await store.offsets.set('big', 2 ** 40 + 1); // beyond int4, exact
        expect(await store.offsets.get('big')).toBe(2 ** 40 + 1);
        await Promise.all([7, 3, 9, 5, 8].map((seq) => store.offsets.set('race', seq)));
        expect(await store.offsets.get('race')).toBe(9);
        expect(await store.offsets.get('events:projector')).toBe(25);
      });
    });
  });
}
