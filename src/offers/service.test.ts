import { describe, expect, it } from 'vitest';
import { Rng } from '../algorithms/random.ts';
import type { FittedModel, UserHistory } from '../algorithms/types.ts';
import { loadConfig, type Config, type DeepPartial } from '../config/load.ts';
import { systemContext } from '../domain/context.ts';
import type { Item, ModelVersion, StoredEvent } from '../domain/types.ts';
import type { ItemFeatureState } from '../features/definitions.ts';
import { createLogger } from '../monitoring/logger.ts';
import { ServingModel } from '../serving/model-state.ts';
import { OfferBook } from './book.ts';
import type { OfferStateReader } from './contracts.ts';
import { impressionEventId, OfferDecider, type OfferServiceDeps } from './service.ts';

const DAY = 86_400_000;
const NOW = Date.UTC(2025, 0, 10);
const logger = createLogger('silent');

const item = (id: string, offer: Record<string, unknown>, extra: Partial<Item> = {}): Item => ({
  id,
  categories: [],
  attributes: { offer },
  available: true,
  createdAt: 0,
  updatedAt: 0,
  ...extra,
});

const state = (
  counts: Record<string, number>,
  segments: Record<string, Record<string, number>> = {},
): ItemFeatureState => ({ firstSeen: 0, lastSeen: 0, counts, decayed: [], reference: 0, segments });

let seq = 0;
const ev = (itemId: string, type: string, ageDays = 0): StoredEvent => ({
  eventId: `e${++seq}`,
  seq,
  userId: 'u1',
  itemId,
  type,
  value: null,
  timestamp: NOW - ageDays * DAY,
  context: null,
});

interface Fake {
  events?: StoredEvent[];
  optedOut?: boolean;
  segments?: string[];
  states?: Record<string, ItemFeatureState>;
  historyDown?: boolean;
  statsDown?: boolean;
}

function online(f: Fake): OfferStateReader {
  return {
    recentEvents: () =>
      f.historyDown
        ? Promise.reject(new Error('down'))
        : Promise.resolve([...(f.events ?? [])].sort((a, b) => b.timestamp - a.timestamp)),
    optedOut: () => Promise.resolve(f.optedOut ?? false),
    userMeta: () => Promise.resolve(f.segments ? { segments: f.segments, attributes: {} } : null),
    itemFeatures: (ids) =>
      f.statsDown
        ? Promise.reject(new Error('down'))
        : Promise.resolve(ids.map((id) => f.states?.[id] ?? null)),
  };
}

function decider(
  items: Item[],
  fake: Fake,
  overrides: DeepPartial<Config> = {},
  extra: Partial<OfferServiceDeps> = {},
): OfferDecider {
  const config = loadConfig({
    env: {},
    overrides: { ...overrides, offers: { explore: false, ...overrides.offers } },
  });
  const book = new OfferBook();
  book.upsert(items);
  return new OfferDecider({
    config,
    book,
    online: online(fake),
    champion: () => null,
    logger,
    now: () => NOW,
    rng: new Rng(1),
    ...extra,
  });
}

const ctx = systemContext('req-1');

describe('next-best-offer decision', () => {
  it('orders eligible offers by probability × value × levers', async () => {
    const items = [
      item('cheap', { value: 5 }),
      item('pricey', { value: 100 }),
      item('levered', { value: 20, lever: 2 }, { categories: ['promo'] }),
    ];
    const states = {
      cheap: state({ view: 1000, purchase: 400 }),
      pricey: state({ view: 1000, purchase: 10 }),
      levered: state({ view: 1000, purchase: 50 }),
    };
    const d = decider(items, { states }, { offers: { categoryLevers: { promo: 1.5 } } });
    const r = await d.nextBestOffer(ctx, { userId: 'u1', k: 3 });
    const p = (c: number) => (1 + c) / 1010; // Beta(1, 9) prior, 1000 exposures
    const expected = [
      { itemId: 'cheap', ev: p(400) * 5 },
      { itemId: 'levered', ev: p(50) * 20 * 2 * 1.5 },
      { itemId: 'pricey', ev: p(10) * 100 },
    ].sort((a, b) => b.ev - a.ev);
    expect(r.items.map((i) => i.itemId)).toEqual(expected.map((e) => e.itemId));
    for (const [i, e] of expected.entries()) expect(r.items[i].expectedValue).toBeCloseTo(e.ev, 12);
    expect(r.items.find((i) => i.itemId === 'cheap')!.probability).toBeCloseTo(p(400), 12);
    expect(r.source).toBe('decision');
    expect(r.degraded).toBe(false);
    expect(r.excluded).toBeUndefined();
  });

  it('uses the most favourable of the user segments, shrunk towards the offer', async () => {
    const items = [item('a', { value: 10 }), item('b', { value: 10 })];
    const states = {
      a: state(
        { view: 1000, purchase: 100 },
        { gold: { view: 500, purchase: 150 }, silver: { view: 500, purchase: 10 } },
      ),
      b: state({ view: 1000, purchase: 200 }),
    };
    const gold = await decider(items, { states, segments: ['silver', 'gold'] }).nextBestOffer(ctx, {
      userId: 'u1',
      k: 2,
    });
    expect(gold.items.map((i) => i.itemId)).toEqual(['a', 'b']);
    expect(gold.items[0].reason).toContain('segment gold');
    const none = await decider(items, { states, segments: ['bronze'] }).nextBestOffer(ctx, {
      userId: 'u1',
      k: 2,
    });
    expect(none.items.map((i) => i.itemId)).toEqual(['b', 'a']);
    expect(none.items[1].reason).toContain('overall');
  });

  it('explains every excluded offer with its rule', async () => {
    const items = [
      item('ok', { value: 1 }),
      item('gone', { value: 1 }, { available: false }),
      item('later', { value: 1, start: NOW + DAY }),
      item('sold', { value: 1, inventory: 0 }),
      item('broke', { value: 50, budget: 10 }),
      item('email', { value: 1, channels: ['email'] }),
      item('gold', { value: 1, segments: ['gold'] }),
      item('bought', { value: 1 }),
      item('capped', { value: 1, policy: { maxImpressions: 1 } }),
    ];
    const events = [ev('bought', 'purchase', 3), ev('capped', 'impression', 2)];
    const r = await decider(items, { events, segments: ['silver'] }).nextBestOffer(ctx, {
      userId: 'u1',
      channel: 'web',
      k: 5,
      explain: true,
    });
    expect(r.items.map((i) => i.itemId)).toEqual(['ok']);
    expect(Object.fromEntries(r.excluded!.map((e) => [e.itemId, e.rule]))).toEqual({
      gone: 'unavailable',
      later: 'window',
      sold: 'inventory',
      broke: 'budget',
      email: 'channel',
      gold: 'segment',
      bought: 'suppressed',
      capped: 'frequency_cap',
    });
    for (const e of r.excluded!) expect(e.detail.length).toBeGreaterThan(0);
  });

  it('the global daily cap bounds how many offers are answered', async () => {
    const items = ['a', 'b', 'c'].map((id) => item(id, { value: 1 }));
    const events = [ev('a', 'impression', 0.5)];
    const d = decider(items, { events }, { offers: { maxPerUserPerDay: 2 } });
    const r = await d.nextBestOffer(ctx, { userId: 'u1', k: 3, explain: true });
    expect(r.items).toHaveLength(1);
    // The other two made the top 3 but not today's allowance.
    expect(r.excluded!.map((e) => e.rule)).toEqual(['global_cap', 'global_cap']);
    const full = decider(
      items,
      { events: [...events, ev('b', 'impression', 0.1)] },
      { offers: { maxPerUserPerDay: 2 } },
    );
    const none = await full.nextBestOffer(ctx, { userId: 'u1', k: 3, explain: true });
    expect(none.items).toEqual([]);
    expect(none.excluded!.map((e) => e.rule)).toEqual(['global_cap', 'global_cap', 'global_cap']);
  });

  it('records served offers as impressions with ids derived from the request, and the cap bites next time', async () => {
    const items = [item('a', { value: 1, policy: { maxImpressions: 1 } }), item('b', { value: 1 })];
    const recorded: Record<string, unknown>[] = [];
    const fake: Fake = { events: [] };
    const d = decider(
      items,
      fake,
      {},
      {
        recorder: {
          ingestEvents: (_ctx, raw) => {
            recorded.push(...(raw as Record<string, unknown>[]));
            return Promise.resolve(
              raw.map((_, index) => ({ index, eventId: null, status: 'accepted' as const })),
            );
          },
        },
      },
    );
    const first = await d.nextBestOffer(ctx, { userId: 'u1', k: 1 });
    expect(first.items.map((i) => i.itemId)).toEqual(['a']);
    expect(recorded).toEqual([
      expect.objectContaining({
        event_id: impressionEventId('req-1', 'a'),
        user_id: 'u1',
        item_id: 'a',
        type: 'impression',
        timestamp: NOW,
      }),
    ]);
    expect(impressionEventId('req-1', 'a')).not.toBe(impressionEventId('req-2', 'a'));
    // The projector would now hold the impression in the user's history.
    fake.events = [ev('a', 'impression', 0)];
    const second = await d.nextBestOffer(systemContext('req-2'), { userId: 'u1', k: 1, explain: true });
    expect(second.items.map((i) => i.itemId)).toEqual(['b']);
    expect(second.excluded).toEqual([expect.objectContaining({ itemId: 'a', rule: 'frequency_cap' })]);
  });

  it('a rejected or failed recording still answers, labelled degraded', async () => {
    const items = [item('a', { value: 1 })];
    const rejecting = decider(
      items,
      {},
      {},
      {
        recorder: {
          ingestEvents: (_c, raw) =>
            Promise.resolve(
              raw.map((_, index) => ({
                index,
                eventId: null,
                status: 'rejected' as const,
                error: { code: 'CAIRN_UNKNOWN_EVENT_TYPE', field: 'type', message: 'x' },
              })),
            ),
        },
      },
    );
    const r = await rejecting.nextBestOffer(ctx, { userId: 'u1' });
    expect(r.items).toHaveLength(1);
    expect(r.degraded).toBe(true);
    const off = decider(
      items,
      {},
      { offers: { recordImpressions: false } },
      {
        recorder: { ingestEvents: () => Promise.reject(new Error('must not be called')) },
      },
    );
    expect((await off.nextBestOffer(ctx, { userId: 'u1' })).degraded).toBe(false);
  });

  it('without the contact history no offer is shown; without statistics priors decide', async () => {
    const items = [item('a', { value: 1 }), item('b', { value: 2 })];
    const down = await decider(items, { historyDown: true }).nextBestOffer(ctx, { userId: 'u1' });
    expect(down).toMatchObject({ items: [], degraded: true });
    const priors = await decider(items, { statsDown: true }).nextBestOffer(ctx, { userId: 'u1', k: 2 });
    expect(priors.degraded).toBe(true);
    expect(priors.items.map((i) => i.itemId)).toEqual(['b', 'a']);
    expect(priors.items[0].probability).toBeCloseTo(0.1, 12);
  });

  it('opted-out users get non-personal estimates and no segment-targeted offers', async () => {
    const items = [item('a', { value: 1 }), item('gold', { value: 1, segments: ['gold'] })];
    const states = { a: state({ view: 100, purchase: 5 }, { gold: { view: 50, purchase: 40 } }) };
    const r = await decider(items, { optedOut: true, segments: ['gold'], states }).nextBestOffer(ctx, {
      userId: 'u1',
      k: 2,
      explain: true,
    });
    expect(r.items.map((i) => i.itemId)).toEqual(['a']);
    expect(r.items[0].probability).toBeCloseTo(6 / 110, 12); // overall, not the gold segment
    expect(r.items[0].reason).toMatch(/^Non-personal estimate/);
    expect(r.excluded).toEqual([expect.objectContaining({ itemId: 'gold', rule: 'opt_out' })]);
    expect(r.modelVersion).toBeNull();
  });

  it('rejects a bad k or channel with the field named', async () => {
    const d = decider([item('a', { value: 1 })], {});
    for (const [request, field] of [
      [{ k: 0 }, 'k'],
      [{ k: 1.5 }, 'k'],
      [{ k: 10_000 }, 'k'],
      [{ channel: '  ' }, 'channel'],
    ] as const) {
      await expect(d.nextBestOffer(ctx, { userId: 'u1', ...request })).rejects.toMatchObject({
        code: 'CAIRN_VALIDATION',
        details: { fields: [expect.objectContaining({ field })] },
      });
    }
  });
});

describe('personal affinity from the champion', () => {
  /** A model that scores item i as `scores[i]` for every user (and records what it was asked). */
  const model = (scores: number[]): FittedModel =>
    ({
      algorithm: 'als',
      params: {},
      nUsers: 1,
      nItems: scores.length,
      scoreUser(_u: number, _h: UserHistory, out: Float32Array) {
        out.set(scores);
      },
      scoreItems(_u: number, _h: UserHistory, items: Int32Array, out: Float32Array) {
        for (let j = 0; j < items.length; j++) out[j] = scores[items[j]];
      },
      similarItems: () => false,
      toArtifact: () => {
        throw new Error('unused');
      },
    }) as unknown as FittedModel;

  it('multiplies by exp(γz)/mean exp(γz): taste reorders equal offers, the mean factor is 1', async () => {
    const items = ['o1', 'o2', 'o3'].map((id) => item(id, { value: 1 }));
    const sm = new ServingModel(
      { version: 'v7' } as ModelVersion,
      model([-1, 1, 3]),
      ['u1'],
      ['o1', 'o2', 'o3', 'x'],
      1e9,
    );
    const d = decider(items, {}, { offers: { affinityStrength: 0.5 } }, { champion: () => sm });
    const r = await d.nextBestOffer(ctx, { userId: 'u1', k: 3 });
    expect(r.modelVersion).toBe('v7');
    expect(r.items.map((i) => i.itemId)).toEqual(['o3', 'o2', 'o1']);
    const z = [-1, 0, 1].map((v) => v * Math.sqrt(3 / 2)); // (s − 1) / std, std = sqrt(8/3)
    const f = z.map((v) => Math.exp(0.5 * v));
    const norm = 3 / f.reduce((a, b) => a + b);
    const byId = Object.fromEntries(r.items.map((i) => [i.itemId, i.probability]));
    expect(byId.o1 / 0.1).toBeCloseTo(f[0] * norm, 5);
    expect(byId.o3 / 0.1).toBeCloseTo(f[2] * norm, 5);
    expect((byId.o1 + byId.o2 + byId.o3) / 3).toBeCloseTo(0.1, 6);
    expect(r.items[0].reason).toContain('your history fits');

    const unknownUser = await d.nextBestOffer(ctx, { userId: 'stranger', k: 3 });
    expect(unknownUser.modelVersion).toBeNull();
    for (const i of unknownUser.items) expect(i.probability).toBeCloseTo(0.1, 12);
  });
});

describe('exploration (Thompson sampling, seeded)', () => {
  const share = async (states: Record<string, ItemFeatureState>, explore: boolean, n = 2000) => {
    const items = [item('known', { value: 10 }), item('new', { value: 10 })];
    const d = decider(items, { states }, { offers: { explore } }, { rng: new Rng(42) });
    let picked = 0;
    for (let i = 0; i < n; i++) {
      const r = await d.nextBestOffer(ctx, { userId: 'u1', k: 1 });
      if (r.items[0].itemId === 'new') picked++;
    }
    return picked / n;
  };
  const known = state({ impression: 2000, purchase: 300 }); // 15 %

  it('tries an offer with little data sometimes, although its mean is lower', async () => {
    // Prior Beta(1, 9): mean 10 % < 15 %, yet P(draw > 0.15) = 0.85^9 ≈ 0.23.
    const s = await share({ known }, true);
    expect(s).toBeGreaterThan(0.15);
    expect(s).toBeLessThan(0.32);
    expect(await share({ known }, false, 50)).toBe(0);
  });

  it('converges to the better offer as data comes in', async () => {
    expect(await share({ known, new: state({ impression: 2000, purchase: 200 }) }, true)).toBeLessThan(0.01);
    expect(await share({ known, new: state({ impression: 2000, purchase: 400 }) }, true)).toBeGreaterThan(
      0.99,
    );
  });

  it('says when an estimate rests on little data', async () => {
    const d = decider([item('new', { value: 1 })], {}, { offers: { explore: true } });
    expect((await d.nextBestOffer(ctx, { userId: 'u1' })).items[0].reason).toMatch(/^Exploring/);
  });
});
