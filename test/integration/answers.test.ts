/**
 * Answers a product team can use, on real backends:
 * - the recommender over the Redis online state (`CAIRN_TEST_REDIS_URL`, default redis://127.0.0.1:6379,
 *   keys under a random prefix deleted afterwards): cold start from segments read back from Redis (user
 *   records and per-segment item counts folded by the adapter), anonymous sessions, fields;
 * - the embedded service over HTTP (createEmbedded, demo data, a trained ALS champion): a session body,
 *   `fields=`, `explain=true`, an attribute cold start after PUT /v1/users, and validation errors.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getAlgorithm } from '../../src/algorithms/index.ts';
import { csrFromCoo } from '../../src/algorithms/sparse.ts';
import { loadConfig } from '../../src/config/load.ts';
import { systemContext } from '../../src/domain/context.ts';
import type { Item, ModelVersion, StoredEvent, User } from '../../src/domain/types.ts';
import { onlineStateOptions } from '../../src/main/adapters.ts';
import { seedDemo } from '../../src/main/demo.ts';
import { createEmbedded, type Embedded } from '../../src/main/embedded.ts';
import { createLogger } from '../../src/monitoring/logger.ts';
import { createMetrics } from '../../src/monitoring/metrics.ts';
import { CatalogView } from '../../src/serving/catalog.ts';
import { ServingModel } from '../../src/serving/model-state.ts';
import { PopularList } from '../../src/serving/popular.ts';
import { Recommender } from '../../src/serving/recommender.ts';
import { RedisOnlineState } from '../../src/storage/redis/online-state.ts';

const REDIS_URL = process.env.CAIRN_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const ctx = systemContext();

describe('answers over the Redis online state', () => {
  const prefix = `cairn-test:answers:${randomBytes(4).toString('hex')}:`;
  const config = loadConfig({ env: {}, overrides: { serving: { cacheTtlSeconds: 0 } } });
  let online: RedisOnlineState;
  let recommender: Recommender;
  const now = Date.now();
  let seq = 0;
  let changeSeq = 0;
  const event = (userId: string, itemId: string): StoredEvent => ({
    seq: ++seq,
    eventId: `e${seq}`,
    userId,
    itemId,
    type: 'purchase',
    value: null,
    timestamp: now - 1000 + seq,
    context: null,
  });
  const user = (id: string, segments: string[], attributes: Record<string, unknown> = {}): User => ({
    id,
    segments,
    attributes,
    optOut: false,
    createdAt: 1,
    updatedAt: 1,
  });
  const item = (id: string, categories: string[]): Item => ({
    id,
    categories,
    attributes: { title: `Title ${id}`, price: 5 },
    available: true,
    createdAt: 1,
    updatedAt: 1,
  });

  beforeAll(async () => {
    online = await RedisOnlineState.open({
      ...onlineStateOptions(config),
      url: REDIS_URL,
      keyPrefix: prefix,
    });
    // Two clusters of four items (a*, b*), each bought by its own 12 regular users; `gift` is bought by
    // 6 users of segment vip only, so it is less popular than the clusters' heads.
    const items = [
      ...['a0', 'a1', 'a2', 'a3'].map((id) => item(id, ['A'])),
      ...['b0', 'b1', 'b2', 'b3'].map((id) => item(id, ['B'])),
      item('gift', ['Gifts']),
    ];
    const regulars = Array.from({ length: 24 }, (_, u) => user(`r${u}`, ['regular']));
    const vips = Array.from({ length: 6 }, (_, u) => user(`v${u}`, ['vip']));
    await online.applyChanges([
      { seq: ++changeSeq, value: { kind: 'items', items } },
      ...[...regulars, ...vips].map((u) => ({ seq: ++changeSeq, value: { kind: 'user' as const, user: u } })),
    ]);
    const events: StoredEvent[] = [];
    const rows: number[] = [];
    const cols: number[] = [];
    regulars.forEach((u, r) => {
      const cluster = r % 2 === 0 ? 'a' : 'b';
      for (const i of [0, 1, 2, 3]) {
        if ((r + i) % 4 === 3) continue; // 3 of the 4 items of their cluster
        events.push(event(u.id, `${cluster}${i}`));
        rows.push(r);
        cols.push((cluster === 'a' ? 0 : 4) + i);
      }
    });
    for (const v of vips) events.push(event(v.id, 'gift'));
    await online.applyEvents(events);

    // A champion fitted on the regulars' purchases (items 0..7 = a0..a3, b0..b3).
    const itemIds = ['a0', 'a1', 'a2', 'a3', 'b0', 'b1', 'b2', 'b3'];
    const params = { factors: 4, iterations: 8, regularization: 0.05, alpha: 4 };
    const fitted = await getAlgorithm('als').fit(csrFromCoo(regulars.length, 8, rows, cols, null), params, {
      threads: 1,
      seed: 3,
    });
    const version = {
      version: 'v-answers',
      algorithm: 'als',
      status: 'champion',
      lineage: null,
    } as unknown as ModelVersion;
    const champion = new ServingModel(
      version,
      fitted,
      regulars.map((u) => u.id),
      itemIds,
      seq,
    );
    const catalog = new CatalogView();
    await catalog.load(online);
    recommender = new Recommender({
      config,
      online,
      catalog,
      popular: new PopularList(online, 1000, 0),
      metrics: createMetrics({ defaultMetrics: false }),
      logger: createLogger('silent'),
      champion: () => champion,
    });
  });

  afterAll(async () => {
    await online?.close();
    const client = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await client.connect();
    try {
      let cursor = '0';
      do {
        const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
        if (keys.length > 0) await client.del(...keys);
        cursor = next;
      } while (cursor !== '0');
    } finally {
      await client.quit();
    }
  });

  it('ranks the favourite of a cold user’s segment first, from the segment counts Redis folded', async () => {
    await online.applyChanges([
      { seq: ++changeSeq, value: { kind: 'user', user: user('new-vip', ['vip']) } },
    ]);
    expect(await online.userMeta('new-vip')).toEqual({ segments: ['vip'], attributes: {} });
    const answer = await recommender.recommend(ctx, { userId: 'new-vip', k: 3, explain: true });
    expect(answer).toMatchObject({ source: 'fallback', fallbackReason: 'cold_start_user', degraded: false });
    expect(answer.items[0]).toMatchObject({
      itemId: 'gift',
      reason: 'Popular with customers in segment vip',
    });
    expect(answer.items[0].explanation).toMatchObject({ link: 'cold_start' });
    // Someone unknown to the online state gets the plain popular list, where `gift` is not first.
    const anyone = await recommender.recommend(ctx, { userId: 'stranger', k: 3 });
    expect(anyone.items[0].itemId).not.toBe('gift');
  });

  it('answers a session from its items, without them, and labels a session the model does not know', async () => {
    const answer = await recommender.recommendSession(ctx, { items: ['a0', 'a1'], k: 2, fields: ['title'] });
    expect(answer).toMatchObject({ userId: null, source: 'session', fallbackReason: null });
    // The model's own answer: the rest of cluster A first, never the session's items.
    expect(['a2', 'a3']).toContain(answer.items[0].itemId);
    expect(answer.items.map((i) => i.itemId)).not.toContain('a0');
    expect(answer.items.map((i) => i.itemId)).not.toContain('a1');
    expect(answer.items[0].reason).toMatch(/^Because you viewed “Title a[01]”/);
    expect(answer.items[0].title).toBe(`Title ${answer.items[0].itemId}`);
    const unknown = await recommender.recommendSession(ctx, { items: ['gift'], k: 2 });
    expect(unknown).toMatchObject({ source: 'fallback', fallbackReason: 'history_not_in_model' });
    expect(unknown.items.map((i) => i.itemId)).not.toContain('gift');
  });
});

describe('answers over HTTP (embedded service)', () => {
  let dir: string;
  let cairn: Embedded;
  /* eslint-disable @typescript-eslint/no-explicit-any -- response bodies are poked into freely */
  const get = async (url: string): Promise<{ status: number; body: any }> => {
    const res = await cairn.app.inject({ method: 'GET', url });
    return { status: res.statusCode, body: JSON.parse(res.body) };
  };
  const post = async (url: string, payload: object): Promise<{ status: number; body: any }> => {
    const res = await cairn.app.inject({ method: 'POST', url, payload });
    return { status: res.statusCode, body: JSON.parse(res.body) };
  };
  /* eslint-enable @typescript-eslint/no-explicit-any */

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-answers-'));
    const config = loadConfig({
      env: {},
      overrides: { dataDir: dir, store: { url: '' }, training: { threads: 1, algorithm: 'als' } },
    });
    cairn = await createEmbedded(config, { logger: createLogger('silent'), snapshotEveryMs: 0 });
    const seeded = await seedDemo(cairn, { users: 150, items: 60, events: 6000, seed: 5, categories: 4 });
    expect(seeded.modelVersion).not.toBeNull();
  }, 120_000);

  afterAll(async () => {
    await cairn?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('answers a session body with fields and explanations, never returning its items', async () => {
    const popular = await get('/v1/popular?k=3');
    const session = popular.body.items.map((i: { item_id: string }) => i.item_id);
    const res = await post('/v1/recommendations', {
      items: session,
      k: 5,
      fields: ['title', 'price'],
      explain: true,
    });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ user_id: null, source: 'session', fallback_reason: null });
    expect(res.body.items).toHaveLength(5);
    for (const it of res.body.items) {
      expect(session).not.toContain(it.item_id);
      expect(typeof it.title).toBe('string');
      expect(typeof it.price).toBe('number');
      expect(it).not.toHaveProperty('attributes');
      expect(it.explanation.link).toBe('session');
      expect(session).toContain(it.explanation.contributions[0].item_id);
    }
  });

  it('GET with fields=…&explain=true, on similar and popular too; an unknown field is a 400 on `fields`', async () => {
    const rec = await get(
      '/v1/users/demo-user-1/recommendations?k=3&fields=categories,attributes&explain=true',
    );
    expect(rec.status).toBe(200);
    for (const it of rec.body.items) {
      expect(Array.isArray(it.categories)).toBe(true);
      expect(it.attributes).toHaveProperty('title');
      expect(it.explanation).toHaveProperty('link');
    }
    const plain = await get('/v1/users/demo-user-1/recommendations?k=3');
    for (const it of plain.body.items) expect(Object.keys(it).sort()).toEqual(['item_id', 'reason', 'score']);
    const seed = rec.body.items[0].item_id;
    const similar = await get(`/v1/items/${encodeURIComponent(seed)}/similar?k=2&fields=title`);
    expect(similar.body.items[0]).toHaveProperty('title');
    const pop = await get('/v1/popular?k=2&fields=price&explain=true');
    expect(pop.body.items[0]).toMatchObject({ explanation: { link: 'popular', list: 'popular' } });
    for (const url of [
      '/v1/users/demo-user-1/recommendations?fields=title,colour',
      '/v1/popular?fields=secret',
      `/v1/items/${encodeURIComponent(seed)}/similar?fields=x`,
    ]) {
      const bad = await get(url);
      expect([url, bad.status]).toEqual([url, 400]);
      expect(bad.body.error).toMatchObject({
        code: 'CAIRN_VALIDATION',
        details: { fields: [{ field: 'fields' }] },
      });
    }
    const both = await post('/v1/recommendations', { user_id: 'demo-user-1', items: [seed] });
    expect(both.status).toBe(400);
    expect(both.body.error.details.fields[0].field).toBe('items');
  });

  it('ranks a new user by the attribute they declared (PUT /v1/users)', async () => {
    const items = await cairn.online.items(undefined, 1000);
    const category = items[items.length - 1].categories[0];
    const put = await cairn.app.inject({
      method: 'PUT',
      url: '/v1/users/fresh-fan',
      payload: { attributes: { favorite_category: category } },
    });
    expect(put.statusCode).toBeLessThan(300);
    // The user record reaches the online state through the change feed: poll until it answers.
    let body: { fallback_reason: string; items: { item_id: string; reason: string }[] } | null = null;
    for (let tries = 0; tries < 100; tries++) {
      body = (await get('/v1/users/fresh-fan/recommendations?k=3&fields=categories')).body;
      if (body!.items[0]?.reason.startsWith('Matches')) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(body!.fallback_reason).toBe('cold_start_user');
    expect(body!.items[0].reason).toBe(`Matches your interest in ${category}`);
  });
});
