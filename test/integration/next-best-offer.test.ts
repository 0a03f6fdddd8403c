/**
 * Next-best-offer over HTTP (`app.inject`) on the real embedded service (SQLite, memory online state):
 * offers PUT through the catalog API, the decision's contact policy fed by the impressions it records
 * itself (event log → projector → online state), 4xx on bad input, and `cairn serve --demo`'s offers.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type Config, type DeepPartial } from '../../src/config/load.ts';
import { seedDemo } from '../../src/main/demo.ts';
import { createEmbedded, type Embedded } from '../../src/main/embedded.ts';
import { createLogger } from '../../src/monitoring/logger.ts';

interface Answer {
  request_id: string;
  user_id: string;
  model_version: string | null;
  source: string;
  degraded: boolean;
  items: { item_id: string; probability: number; value: number; expected_value: number; reason: string }[];
  excluded?: { item_id: string; rule: string; detail: string }[];
}

async function open(overrides: DeepPartial<Config>): Promise<{ cairn: Embedded; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-nbo-'));
  const config = loadConfig({
    env: {},
    overrides: {
      dataDir: dir,
      store: { url: '' },
      training: { threads: 1 },
      // These tests are about decisions: a loaded machine (parallel test files) must not turn them into
      // back-pressure 503s (tested in src/api/back-pressure.test.ts).
      server: { maxEventLoopDelayMs: 0 },
      ...overrides,
    },
  });
  return { cairn: await createEmbedded(config, { logger: createLogger('silent'), snapshotEveryMs: 0 }), dir };
}

describe('next-best-offer over HTTP', () => {
  let cairn: Embedded;
  let dir: string;

  beforeAll(async () => {
    ({ cairn, dir } = await open({ offers: { explore: false, maxPerUserPerDay: 3 } }));
  });
  afterAll(async () => {
    await cairn?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const nbo = async (query: string, requestId?: string) => {
    const res = await cairn.app.inject({
      method: 'GET',
      url: `/v1/users/shopper/next-best-offer${query}`,
      headers: requestId ? { 'x-request-id': requestId } : {},
    });
    return { status: res.statusCode, body: res.json<Answer>() };
  };

  it('recorded impressions make the caps bite on the next calls', async () => {
    const put = await cairn.app.inject({
      method: 'POST',
      url: '/v1/items',
      payload: {
        items: [
          {
            id: 'gold-card',
            attributes: { title: 'Gold card', offer: { value: 10, policy: { maxImpressions: 1 } } },
          },
          { id: 'voucher', attributes: { offer: { value: 5 } } },
          { id: 'plain', attributes: { title: 'not an offer' } },
        ],
      },
    });
    expect(put.statusCode).toBe(200);

    const first = await nbo('?explain=true');
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({
      user_id: 'shopper',
      source: 'decision',
      degraded: false,
      model_version: null,
    });
    expect(first.body.items.map((i) => i.item_id)).toEqual(['gold-card']);
    const [top] = first.body.items;
    expect(top.expected_value).toBeCloseTo(top.probability * top.value, 12);
    expect(first.body.excluded).toEqual([]);
    // The impression went through the event log into the user's history.
    const history = await cairn.online.recentEvents('shopper', 10);
    expect(history.map((e) => [e.itemId, e.type])).toEqual([['gold-card', 'impression']]);

    const second = await nbo('?explain=true&k=2');
    expect(second.status, JSON.stringify(second.body)).toBe(200);
    expect(second.body.items.map((i) => i.item_id)).toEqual(['voucher']);
    expect(second.body.excluded).toEqual([
      expect.objectContaining({ item_id: 'gold-card', rule: 'frequency_cap' }),
    ]);

    // A retried request (same request id) records nothing twice.
    const retried = await nbo('', 'retry-1');
    expect(retried.body.items.map((i) => i.item_id)).toEqual(['voucher']);
    await nbo('', 'retry-1');
    const impressions = (await cairn.online.recentEvents('shopper', 50)).filter(
      (e) => e.type === 'impression',
    );
    expect(impressions).toHaveLength(3);

    // 3 impressions in 24 hours: the global cap.
    const capped = await nbo('?explain=true');
    expect(capped.body.items).toEqual([]);
    expect(capped.body.excluded).toEqual(
      expect.arrayContaining([expect.objectContaining({ item_id: 'voucher', rule: 'global_cap' })]),
    );
  });

  it('a dismissal suppresses the offer', async () => {
    const events = await cairn.app.inject({
      method: 'POST',
      url: '/v1/events',
      payload: { user_id: 'other', item_id: 'gold-card', type: 'dismiss' },
    });
    expect(events.statusCode).toBe(202);
    const res = await cairn.app.inject({
      method: 'GET',
      url: '/v1/users/other/next-best-offer?explain=true&k=5',
    });
    const body = res.json<Answer>();
    expect(body.items.map((i) => i.item_id)).toEqual(['voucher']);
    expect(body.excluded).toEqual([expect.objectContaining({ item_id: 'gold-card', rule: 'suppressed' })]);
  });

  it('answers 4xx naming the field for a bad query or offer attribute', async () => {
    for (const [query, field] of [
      ['?k=0', 'k'],
      ['?k=abc', 'k'],
      ['?channel=', 'channel'],
      ['?explain=maybe', 'explain'],
    ]) {
      const res = await nbo(query);
      expect(res.status, query).toBe(400);
      const error = (
        res.body as unknown as { error: { code: string; details: { fields: { field: string }[] } } }
      ).error;
      expect(error.code).toBe('CAIRN_VALIDATION');
      expect(error.details.fields[0].field).toBe(field);
    }
    const put = await cairn.app.inject({
      method: 'PUT',
      url: '/v1/items/bad-offer',
      payload: { attributes: { offer: { value: -1, channels: 'web' } } },
    });
    expect(put.statusCode).toBe(400);
    const fields = put.json<{ error: { code: string; details: { fields: { field: string }[] } } }>().error;
    expect(fields.code).toBe('CAIRN_VALIDATION');
    expect(fields.details.fields.map((f) => f.field)).toEqual([
      'attributes.offer.value',
      'attributes.offer.channels',
    ]);
    const batch = await cairn.app.inject({
      method: 'POST',
      url: '/v1/items',
      payload: { items: [{ id: 'bad2', attributes: { offer: { value: 1, end: 'soon' } } }] },
    });
    expect(
      batch.json<{ results: { status: string; error?: { field: string } }[] }>().results[0],
    ).toMatchObject({
      status: 'rejected',
      error: { field: 'attributes.offer.end' },
    });
  });

  it('is in the OpenAPI document', async () => {
    const doc = (await cairn.app.inject({ method: 'GET', url: '/openapi.json' })).json<{
      paths: Record<string, unknown>;
    }>();
    expect(doc.paths['/v1/users/{id}/next-best-offer']).toBeDefined();
  });
});

describe('cairn serve --demo offers', () => {
  let cairn: Embedded;
  let dir: string;

  beforeAll(async () => {
    ({ cairn, dir } = await open({ training: { threads: 1, algorithm: 'als' } }));
    const seeded = await seedDemo(cairn, { users: 150, items: 60, events: 6000, seed: 9, categories: 4 });
    expect(seeded.offers).toBe(10);
    expect(seeded.modelVersion).not.toBeNull();
  }, 120_000);
  afterAll(async () => {
    await cairn?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('answers a decision on the first start, ordered by expected value, with exclusions explained', async () => {
    // A user the champion knows: their taste shapes the probabilities.
    const champion = cairn.champion.get()!;
    const user = champion.userIds[0];
    const res = await cairn.app.inject({
      method: 'GET',
      url: `/v1/users/${user}/next-best-offer?k=5&channel=web&explain=true`,
    });
    expect(res.statusCode).toBe(200);
    const body = res.json<Answer>();
    expect(body.items.length).toBeGreaterThan(0);
    expect(body.model_version).toBe(champion.version.version);
    for (let i = 1; i < body.items.length; i++)
      expect(body.items[i - 1].expected_value).toBeGreaterThanOrEqual(body.items[i].expected_value);
    for (const it of body.items) {
      expect(it.probability).toBeGreaterThanOrEqual(0);
      expect(it.probability).toBeLessThanOrEqual(1);
      expect(it.value).toBeGreaterThan(0);
    }
    // The email-only demo offer is never shown on the web.
    expect(body.excluded!.map((e) => e.rule)).toContain('channel');
    const anonymous = await cairn.app.inject({ method: 'GET', url: '/v1/users/brand-new/next-best-offer' });
    expect(anonymous.json<Answer>().items).toHaveLength(1);
  });
});
