/**
 * Popularity poisoning, replayed against the real embedded service (SQLite, memory online state) through
 * HTTP (`app.inject`), as reported in issue #9:
 *
 * 1. one anonymous `{"type":"rating","value":1e308}` on an id outside the catalog (an XSS payload) put it
 *    at the top of the popular list every new and opted-out user receives;
 * 2. another turned a score into `null` on the wire (the OpenAPI says number) and `Infinity` in the CLI;
 * 3. 300 purchases of an id outside the catalog reached #2;
 * 4. and one user can send 1,000 purchases of one catalog item.
 *
 * What must hold: the absurd rating is refused with a 4xx naming `value`; an id outside the catalog is
 * never listed (but counted, so it lists once it is PUT); one user moves an item by at most
 * `events.maxUserItemWeight`; every score of every answer is a finite number.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type Config } from '../../src/config/load.ts';
import { compareIds } from '../../src/features/popularity.ts';
import { seedDemo } from '../../src/main/demo.ts';
import { createEmbedded, type Embedded } from '../../src/main/embedded.ts';
import { createLogger } from '../../src/monitoring/logger.ts';

const XSS = '<img src=x onerror=alert(1)>';

interface Entry {
  item_id: string;
  score: number;
  reason: string;
}
interface Answer {
  source: string;
  fallback_reason: string | null;
  items: Entry[];
}

describe('poisoning resistance of the embedded service', () => {
  let cairn: Embedded;
  let config: Readonly<Config>;
  let dir: string;
  /** Catalog item ids and the categories they are in. */
  let catalog: Map<string, string[]>;
  let categories: string[];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-poison-'));
    config = loadConfig({
      env: {},
      overrides: { dataDir: dir, store: { url: '' }, training: { threads: 1, algorithm: 'als' } },
    });
    cairn = await createEmbedded(config, { logger: createLogger('silent'), snapshotEveryMs: 0 });
    const seeded = await seedDemo(cairn, { users: 150, items: 60, events: 6000, seed: 9, categories: 4 });
    expect(seeded.modelVersion).not.toBeNull();
    catalog = new Map((await cairn.online.items(undefined, 1000)).map((i) => [i.id, i.categories]));
    categories = [...new Set([...catalog.values()].flat())].sort();
    expect(categories.length).toBeGreaterThan(1);
  }, 120_000);

  afterAll(async () => {
    await cairn?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const get = async <T>(url: string): Promise<{ status: number; body: T; text: string }> => {
    const res = await cairn.app.inject({ method: 'GET', url });
    return { status: res.statusCode, body: res.json<T>(), text: res.body };
  };
  const post = async (url: string, payload: unknown) => {
    const res = await cairn.app.inject({ method: 'POST', url, payload: payload as object });
    return { status: res.statusCode, body: res.json<Record<string, unknown>>() };
  };
  const events = async (list: object[]) => {
    const res = await post('/v1/events', { events: list });
    expect(res.status).toBe(200);
    return res.body as {
      accepted: number;
      rejected: number;
      results: { status: string; error?: { field: string } }[];
    };
  };
  const purchases = (n: number, user: (i: number) => string, itemId: string) =>
    Array.from({ length: n }, (_, i) => ({ user_id: user(i), item_id: itemId, type: 'purchase' }));

  /** Every popular list a newcomer can get: global, and per category (everything is in the catalog). */
  const popularLists = async (): Promise<Record<string, Entry[]>> => {
    const lists: Record<string, Entry[]> = {};
    for (const c of [null, ...categories]) {
      const url = c === null ? '/v1/popular?k=100' : `/v1/popular?k=100&category=${encodeURIComponent(c)}`;
      const { status, body } = await get<Answer>(url);
      expect(status).toBe(200);
      lists[c ?? '(all)'] = body.items;
    }
    return lists;
  };

  /** `after` is `before` with `bumped` added to `itemId`'s score (scores compared loosely: they decay). */
  function expectBumped(before: Entry[], after: Entry[], itemId: string | null, bumped: number): void {
    const expected = before
      .map((e) => ({ ...e, score: e.item_id === itemId ? e.score + bumped : e.score }))
      .sort((a, b) => b.score - a.score || compareIds(a.item_id, b.item_id));
    expect(after.map((e) => e.item_id)).toEqual(expected.map((e) => e.item_id));
    after.forEach((e, i) =>
      expect(Math.abs(e.score - expected[i].score)).toBeLessThan(1e-4 * expected[i].score),
    );
  }

  it('refuses the 1e308 rating with a 4xx naming `value`, alone or in a batch, and stores nothing', async () => {
    const before = await cairn.store.events.count();
    const attack = { user_id: 'anon-1', item_id: XSS, type: 'rating', value: 1e308 };
    const single = await post('/v1/events', attack);
    expect(single.status).toBeGreaterThanOrEqual(400);
    expect(single.status).toBeLessThan(500);
    const error = single.body.error as { code: string; details: { fields: { field: string }[] } };
    expect(error.code).toBe('CAIRN_VALIDATION');
    expect(error.details.fields.map((f) => f.field)).toEqual(['value']);
    // Also on a catalog item, and just outside the rating scale.
    const batch = await events([
      { ...attack, item_id: [...catalog.keys()][0] },
      { ...attack, value: 11 },
      { ...attack, value: -1 },
      { ...attack, type: 'view', value: 1e308 },
    ]);
    expect(batch.rejected).toBe(4);
    expect(batch.results.map((r) => r.error?.field)).toEqual(['value', 'value', 'value', 'value']);
    expect(await cairn.store.events.count()).toBe(before);
    expect(await cairn.online.popularity([XSS], Date.now())).toEqual([0]);
  });

  it('never lists an id outside the catalog, however many events it gets; it counts once it is PUT', async () => {
    const before = await popularLists();
    // 300 purchases from 300 anonymous users, 300 from one, and the largest ratings the scale allows.
    await events(purchases(300, (i) => `anon-${i}`, XSS));
    await events(purchases(300, () => 'anon-hoarder', XSS));
    await events(
      Array.from({ length: 50 }, (_, i) => ({
        user_id: `rater-${i}`,
        item_id: XSS,
        type: 'rating',
        value: 10,
      })),
    );
    expect((await cairn.online.popular(0, 1, Date.now()))[0].itemId).toBe(XSS); // counted, at the top
    const after = await popularLists();
    for (const key of Object.keys(before)) expectBumped(before[key], after[key], null, 0);

    // What a newcomer and an opted-out user receive: no trace of the payload anywhere in the answer.
    const put = await cairn.app.inject({
      method: 'PUT',
      url: '/v1/users/opted-out',
      payload: { opt_out: true },
    });
    expect(put.statusCode).toBe(200);
    for (const url of [
      '/v1/users/newcomer/recommendations?k=50',
      '/v1/users/opted-out/recommendations?k=50',
      `/v1/users/newcomer/recommendations?k=50&category=${encodeURIComponent(categories[0])}`,
      '/v1/popular?k=100',
    ]) {
      const { status, text } = await get<Answer>(url);
      expect(status).toBe(200);
      expect(text).not.toContain('onerror');
    }

    // An id the catalog learns later counts with everything it got before.
    const late = 'late-arrival';
    await events(purchases(40, (i) => `fan-${i}`, late));
    expect((await get<Answer>('/v1/popular?k=100')).body.items.map((e) => e.item_id)).not.toContain(late);
    const added = await cairn.app.inject({
      method: 'PUT',
      url: `/v1/items/${late}`,
      payload: { categories: [categories[0]], available: true },
    });
    expect(added.statusCode).toBe(200);
    const listed = (await get<Answer>('/v1/popular?k=3')).body.items;
    expect(listed[0].item_id).toBe(late);
    expect(listed[0].score).toBeCloseTo(40 * 8, 3);
    // And drops out again once it is no longer available.
    await cairn.app.inject({ method: 'PUT', url: `/v1/items/${late}`, payload: { available: false } });
    expect((await get<Answer>('/v1/popular?k=100')).body.items.map((e) => e.item_id)).not.toContain(late);
  });

  it("moves a catalog item by at most maxUserItemWeight for one user's 1,000 purchases, and erase undoes it", async () => {
    const cap = config.events.maxUserItemWeight;
    const before = await popularLists();
    // A mid-ranked item of some category: 1,000 purchases (8 each) would lift it to the top uncapped.
    const global = before['(all)'];
    const target = global[Math.floor(global.length / 2)].item_id;
    const category = catalog.get(target)![0];
    const at = Date.now();
    const [scoreBefore] = await cairn.online.popularity([target], at);
    const sent = await events(purchases(1000, () => 'hoarder', target));
    expect(sent.accepted).toBe(1000);
    const [scoreAfter] = await cairn.online.popularity([target], at);
    // Exactly the cap at the purchases' time; read at `at`, a moment earlier, it is larger by 2^(Δ/H) − 1,
    // about 1e-7 per 10 ms under a 7-day half-life.
    expect(scoreAfter - scoreBefore).toBeGreaterThanOrEqual(cap);
    expect(scoreAfter - scoreBefore).toBeLessThanOrEqual(cap * (1 + 1e-6));
    const after = await popularLists();
    expectBumped(before['(all)'], after['(all)'], target, cap);
    expectBumped(before[category], after[category], target, cap);
    for (const c of categories.filter((c) => c !== category)) expectBumped(before[c], after[c], null, 0);

    const erased = await cairn.app.inject({
      method: 'DELETE',
      url: '/v1/users/hoarder',
      headers: { 'content-type': 'application/json' }, // a key-less write must say JSON (CSRF guard)
    });
    expect(erased.statusCode).toBe(204);
    const [scoreErased] = await cairn.online.popularity([target], at);
    expect(Math.abs(scoreErased - scoreBefore)).toBeLessThanOrEqual(1e-9 * scoreBefore);
  });

  it('answers every request with finite scores only', async () => {
    const urls = [
      '/v1/popular?k=100',
      ...categories.map((c) => `/v1/popular?k=100&category=${encodeURIComponent(c)}`),
      ...Array.from({ length: 20 }, (_, u) => `/v1/users/u${u}/recommendations?k=20`),
      '/v1/users/newcomer/recommendations?k=20',
      '/v1/users/opted-out/recommendations?k=20',
      ...[...catalog.keys()].slice(0, 10).map((id) => `/v1/items/${encodeURIComponent(id)}/similar?k=20`),
    ];
    let personalized = 0;
    for (const url of urls) {
      const { status, body } = await get<Answer>(url);
      expect(status, url).toBe(200);
      expect(body.items.length, url).toBeGreaterThan(0);
      for (const e of body.items) expect(Number.isFinite(e.score), `${url}: ${JSON.stringify(e)}`).toBe(true);
      if (body.source === 'personalized') personalized++;
    }
    expect(personalized).toBeGreaterThan(10); // the model's own scores were among those checked
    const bulk = await post('/v1/recommendations/bulk', {
      requests: Array.from({ length: 10 }, (_, u) => ({ user_id: `u${u + 20}`, k: 10 })),
    });
    expect(bulk.status).toBe(200);
    for (const r of bulk.body.results as { items: Entry[] }[])
      for (const e of r.items) expect(Number.isFinite(e.score)).toBe(true);
  });
});
