/**
 * Answers a product team can use, on a real serving world (test/fixtures/serving-world.ts: an ALS model
 * fitted on a clustered shop, the memory online state fed with real events and user records): anonymous
 * sessions, cold start from segments and attributes, catalog fields, a reason about each item, and
 * `explain=true` breakdowns.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CLUSTERS,
  createWorld,
  item,
  ITEM_IDS,
  PER_CLUSTER,
  type World,
} from '../../test/fixtures/serving-world.ts';
import { systemContext } from '../domain/context.ts';
import type { Item, RecommendedItem, StoredEvent, User } from '../domain/types.ts';
import { isCairnError } from '../errors/errors.ts';
import { CatalogView } from './catalog.ts';
import { ChampionHolder } from './champion.ts';
import { PopularList } from './popular.ts';
import { Recommender } from './recommender.ts';

const ctx = systemContext();
const ids = (items: { itemId: string }[]) => items.map((i) => i.itemId);
const clusterOf = (id: string) => Math.floor(Number(id.slice(1)) / PER_CLUSTER);

/** Every item of the fixture, titled, priced and categorised by cluster (`c0`..`c3`). */
const CATALOG: Item[] = ITEM_IDS.map((id) =>
  item(id, {
    categories: [`c${clusterOf(id)}`],
    attributes: { title: `Title ${id}`, price: 10 + clusterOf(id), brand: 'Acme' },
  }),
);

let seq = 1_000_000;
function event(userId: string, itemId: string, type = 'purchase', at = Date.now()): StoredEvent {
  seq++;
  return { seq, eventId: `x${seq}`, userId, itemId, type, value: null, timestamp: at, context: null };
}

function user(id: string, segments: string[], attributes: Record<string, unknown> = {}): User {
  return { id, segments, attributes, optOut: false, createdAt: 1, updatedAt: 1 };
}

let changeSeq = 0;
async function putUsers(world: World, users: User[]): Promise<void> {
  await world.online.applyChanges(users.map((u) => ({ seq: ++changeSeq, value: { kind: 'user', user: u } })));
}

async function validationField(p: Promise<unknown>): Promise<string | null> {
  try {
    await p;
  } catch (e) {
    if (isCairnError(e) && e.code === 'CAIRN_VALIDATION')
      return (e.details as { fields: { field: string }[] }).fields[0].field;
    throw e;
  }
  return null;
}

describe('Recommender answers', () => {
  let world: World;
  let recommender: Recommender;
  let catalog: CatalogView;

  beforeEach(async () => {
    changeSeq = 0;
    world = await createWorld({ serving: { cacheTtlSeconds: 0 } });
    await world.registry.promote((await world.registerModel()).version);
    const champion = new ChampionHolder(world.registry, world.metrics, world.logger);
    await champion.refresh();
    catalog = new CatalogView();
    catalog.upsert(CATALOG);
    recommender = new Recommender({
      config: world.config,
      online: world.online,
      catalog,
      // refreshMs 0: every read sees the events a test just applied.
      popular: new PopularList(world.online, 1000, 0),
      metrics: world.metrics,
      logger: world.logger,
      champion: () => champion.get(),
    });
  });

  afterEach(() => world.close());

  describe('anonymous sessions', () => {
    it('folds the session items into the champion, never returns them, and names the closest one', async () => {
      const session = ['i0', 'i1'];
      const answer = await recommender.recommendSession(ctx, { items: session, k: 4 });
      expect(answer).toMatchObject({
        userId: null,
        source: 'session',
        fallbackReason: null,
        degraded: false,
      });
      expect(answer.modelVersion).not.toBeNull();
      expect(answer.items).toHaveLength(4);
      for (const it of answer.items) expect(session).not.toContain(it.itemId);
      // The model's own answer for a cluster-0 session is the rest of cluster 0.
      expect(answer.items.map((i) => clusterOf(i.itemId))).toEqual([0, 0, 0, 0]);
      for (const it of answer.items) expect(it.reason).toMatch(/^Because you viewed “Title i[01]”/);
      // `exclude` is honoured on top of the session's own items.
      const fewer = await recommender.recommendSession(ctx, {
        items: session,
        k: 4,
        exclude: [answer.items[0].itemId],
      });
      expect(ids(fewer.items)).not.toContain(answer.items[0].itemId);
    });

    it('falls back, labelled, when the model knows none of the items: their categories, then popular', async () => {
      catalog.upsert([item('new-1', { categories: ['c2'] }), item('new-2', { categories: ['c2'] })]);
      const answer = await recommender.recommendSession(ctx, { items: ['new-1', 'new-2'], k: 8 });
      expect(answer).toMatchObject({
        userId: null,
        source: 'fallback',
        fallbackReason: 'history_not_in_model',
      });
      expect(ids(answer.items)).not.toContain('new-1');
      expect(ids(answer.items)).not.toContain('new-2');
      // Popular in the session's category first: all of cluster 2's items, then global popular.
      expect(answer.items.slice(0, PER_CLUSTER).every((i) => clusterOf(i.itemId) === 2)).toBe(true);
      expect(answer.items[0].reason).toMatch(/^Popular in c2/);
      expect(answer.items.slice(PER_CLUSTER).every((i) => i.reason.startsWith('Popular '))).toBe(true);
      expect(answer.items).toHaveLength(8);
    });

    it('refuses a session without items or with too many, naming the field', async () => {
      expect(await validationField(recommender.recommendSession(ctx, { items: [] }))).toBe('items');
      const tooMany = Array.from({ length: world.config.serving.historyLimit + 1 }, (_, i) => `i${i}`);
      expect(await validationField(recommender.recommendSession(ctx, { items: tooMany }))).toBe('items');
      expect(await validationField(recommender.recommendSession(ctx, { items: ['a', ''] }))).toBe('items[1]');
    });
  });

  describe('reasons and explanations', () => {
    /** A user who bought one item of cluster 0 and one of cluster 1. */
    async function mixedUser(): Promise<string> {
      await world.online.applyEvents([event('mixed', 'i0'), event('mixed', `i${PER_CLUSTER}`)]);
      return 'mixed';
    }

    it('gives each item the history item behind it, not one reason for the whole list', async () => {
      const answer = await recommender.recommend(ctx, { userId: await mixedUser(), k: 8 });
      expect(answer.source).toBe('personalized');
      const named = answer.items.map((it) => /Because you purchased “Title (i\d+)”/.exec(it.reason)?.[1]);
      expect(named.every((n) => n !== undefined)).toBe(true);
      expect(new Set(named).size).toBe(2);
      // Each item is explained by the history item of its own cluster.
      answer.items.forEach((it, r) => expect(clusterOf(named[r]!)).toBe(clusterOf(it.itemId)));
    });

    it('explain=true lists the contributions, largest first, summing to 1 with the rest', async () => {
      const userId = await mixedUser();
      const plain = await recommender.recommend(ctx, { userId, k: 6 });
      expect(plain.items.every((it) => it.explanation === undefined)).toBe(true);
      const explained = await recommender.recommend(ctx, { userId, k: 6, explain: true });
      expect(ids(explained.items)).toEqual(ids(plain.items));
      for (const it of explained.items) {
        const e = it.explanation!;
        expect(e).toMatchObject({ link: 'personal', model: 'als' });
        expect(e.contributions.length).toBeGreaterThan(0);
        const weights = e.contributions.map((c) => c.weight);
        expect(weights).toEqual([...weights].sort((a, b) => b - a));
        expect(weights.reduce((a, b) => a + b, 0) + e.otherWeight).toBeCloseTo(1, 6);
        // The reason names the largest contribution.
        expect(it.reason).toContain(`Title ${e.contributions[0].itemId}`);
      }
    });

    it('explains fallback items by the list they came from, and similar items by their seed', async () => {
      const cold = await recommender.recommend(ctx, { userId: 'nobody', k: 3, explain: true });
      expect(cold.fallbackReason).toBe('cold_start_user');
      for (const it of cold.items)
        expect(it.explanation).toEqual({
          link: 'popular',
          model: null,
          contributions: [],
          otherWeight: 0,
          list: 'popular',
        });
      const inCategory = await recommender.popular(ctx, { k: 2, category: 'c1', explain: true });
      expect(inCategory.items[0].explanation).toMatchObject({
        link: 'category_popular',
        list: 'category:c1',
      });
      const similar = await recommender.similar(ctx, 'i0', { k: 2, explain: true });
      expect(similar.items[0].explanation).toMatchObject({
        link: 'similar',
        model: 'als',
        contributions: [{ itemId: 'i0', weight: 1 }],
      });
    });
  });

  describe('fields', () => {
    it('adds only the asked catalog fields, on every kind of answer', async () => {
      const has = (items: RecommendedItem[], fields: string[]) =>
        items.every(
          (it) =>
            fields.every((f) => f in it) &&
            !['attributes', 'categories'].some((f) => !fields.includes(f) && f in it),
        );
      const rec = await recommender.recommend(ctx, { userId: 'u0', k: 3, fields: ['title', 'price'] });
      expect(has(rec.items, ['title', 'price'])).toBe(true);
      const first = rec.items[0];
      expect(first.title).toBe(`Title ${first.itemId}`);
      expect(first.price).toBe(10 + clusterOf(first.itemId));
      const session = await recommender.recommendSession(ctx, {
        items: ['i0'],
        k: 2,
        fields: ['categories'],
      });
      expect(session.items[0].categories).toEqual([`c${clusterOf(session.items[0].itemId)}`]);
      const similar = await recommender.similar(ctx, 'i0', { k: 2, fields: ['attributes'] });
      expect(similar.items[0].attributes).toMatchObject({ brand: 'Acme' });
      const popular = await recommender.popular(ctx, {
        k: 2,
        fields: ['title', 'categories', 'price', 'attributes'],
      });
      expect(has(popular.items, ['title', 'categories', 'price', 'attributes'])).toBe(true);
      const plain = await recommender.popular(ctx, { k: 2 });
      expect(plain.items.every((it) => !('title' in it))).toBe(true);
    });

    it('an item known only from events has null title and price', async () => {
      const field = await recommender.recommend(ctx, { userId: 'u0', k: 1, fields: ['title'] });
      expect(field.items[0].title).not.toBeNull();
      const bare = new CatalogView();
      expect(bare.fields('ghost', ['title', 'price', 'categories', 'attributes'])).toEqual({
        title: null,
        price: null,
        categories: [],
        attributes: {},
      });
    });

    it('refuses an unknown field with CAIRN_VALIDATION on `fields`', async () => {
      expect(
        await validationField(recommender.recommend(ctx, { userId: 'u0', fields: ['title', 'colour'] })),
      ).toBe('fields');
      expect(await validationField(recommender.popular(ctx, { fields: ['secret'] }))).toBe('fields');
      expect(await validationField(recommender.similar(ctx, 'i0', { fields: ['__proto__'] }))).toBe('fields');
      expect(await validationField(recommender.recommendSession(ctx, { items: ['i0'], fields: [''] }))).toBe(
        'fields',
      );
    });
  });

  describe('cold start from segments and attributes', () => {
    /**
     * `hit` is bought by 30 ordinary users, `vip-pick` by 8 users of segment vip, `drama` (category Drama)
     * by 5 ordinary users: globally hit > vip-pick > the fixture's items (6 each) > drama.
     */
    async function segmentedShop(): Promise<void> {
      catalog.upsert([
        item('hit', { categories: ['General'] }),
        item('vip-pick', { categories: ['General'] }),
        item('drama', { categories: ['Drama'] }),
      ]);
      const vips = Array.from({ length: 8 }, (_, i) => user(`vip${i}`, ['vip']));
      const regulars = Array.from({ length: 30 }, (_, i) => user(`reg${i}`, ['regular']));
      await putUsers(world, [...vips, ...regulars]);
      await world.online.applyEvents([
        ...regulars.map((u) => event(u.id, 'hit')),
        ...vips.map((u) => event(u.id, 'vip-pick')),
        ...regulars.slice(0, 5).map((u) => event(u.id, 'drama')),
      ]);
    }

    it("ranks the segment's favourite first for a new user of that segment, saying why", async () => {
      await segmentedShop();
      await putUsers(world, [user('new-vip', ['vip']), user('new-plain', [])]);
      const answer = await recommender.recommend(ctx, { userId: 'new-vip', k: 3, explain: true });
      expect(answer).toMatchObject({ source: 'fallback', fallbackReason: 'cold_start_user' });
      expect(answer.items[0]).toMatchObject({
        itemId: 'vip-pick',
        reason: 'Popular with customers in segment vip',
      });
      const features = answer.items[0].explanation!.features!;
      expect(answer.items[0].explanation).toMatchObject({ link: 'cold_start', list: 'popular', bias: 0 });
      expect(features.map((f) => f.name)).toEqual(['popularity', 'segment_lift:vip', 'attribute_match']);
      // The contributions (and a bias of 0) sum to the ranking score.
      expect(features.reduce((a, f) => a + f.contribution, 0)).toBeCloseTo(answer.items[0].score, 9);
      // A user with nothing to rank by gets the global list, as before.
      const plain = await recommender.recommend(ctx, { userId: 'new-plain', k: 3 });
      expect(plain.items[0]).toMatchObject({ itemId: 'hit' });
      expect(plain.items[0].reason).toMatch(/^Popular /);
    });

    it('ranks items matching the user attributes first: category or same-key attribute', async () => {
      await segmentedShop();
      await putUsers(world, [user('fan', [], { favorite_genre: 'drama' })]);
      const answer = await recommender.recommend(ctx, { userId: 'fan', k: 3 });
      expect(answer.fallbackReason).toBe('cold_start_user');
      expect(answer.items[0]).toMatchObject({ itemId: 'drama', reason: 'Matches your interest in Drama' });
      // The request's exclusions and category still hold.
      const excluded = await recommender.recommend(ctx, { userId: 'fan', k: 3, exclude: ['drama'] });
      expect(ids(excluded.items)).not.toContain('drama');
    });

    it('is not used for a user with events, nor for an erased user', async () => {
      await segmentedShop();
      await putUsers(world, [user('u0', ['vip'])]);
      const known = await recommender.recommend(ctx, { userId: 'u0', k: 3 });
      expect(known.source).toBe('personalized');
      expect(ids(known.items)).not.toContain('vip-pick');
      await putUsers(world, [user('gone', ['vip'])]);
      await world.online.applyChanges([
        { seq: ++changeSeq, value: { kind: 'erase', userId: 'gone', events: [] } },
      ]);
      const erased = await recommender.recommend(ctx, { userId: 'gone', k: 1 });
      expect(erased.items[0].itemId).toBe('hit');
    });
  });

  it('the clusters of the fixture are what the tests above assume', () => {
    expect(ITEM_IDS).toHaveLength(CLUSTERS * PER_CLUSTER);
  });
});
