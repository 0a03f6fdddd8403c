/**
 * The conformance suite of the `ExperimentStore` and `ServedLogStore` ports (`store.experiments`,
 * `store.served`). Every Store adapter runs it from an integration test:
 *
 *   describeExperimentsConformance('sqlite', () => openFreshSqlite(), () => removeTempDir());
 *
 * `factory` returns a fresh, empty, migrated store per test (closed by the suite afterwards).
 */
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Experiment, FeedbackRecord, ServedRecord, VariantTotals } from '../../domain/types.ts';
import type { Store } from '../ports.ts';

const T0 = 1_700_000_000_000;

function experiment(id: string, overrides: Partial<Experiment> = {}): Experiment {
  return {
    id,
    kind: 'ab',
    status: 'running',
    variants: [
      { name: 'control', weight: 50, modelVersion: null, algorithm: null, ranker: null },
      { name: 'challenger', weight: 50, modelVersion: 'v2', algorithm: 'als', ranker: false },
    ],
    unit: 'user',
    guard: null,
    createdAt: T0,
    createdBy: 'anonymous',
    stoppedAt: null,
    stopReason: null,
    ...overrides,
  };
}

function served(
  requestId: string,
  userId: string,
  variant: string | null,
  itemIds: string[],
  overrides: Partial<ServedRecord> = {},
): ServedRecord {
  return {
    requestId,
    userId,
    mode: 'served',
    endpoint: 'user_recommendations',
    experimentId: variant === null ? null : 'exp',
    variant,
    modelVersion: 'v1',
    source: 'personalized',
    items: itemIds.map((itemId, position) => ({ itemId, position, score: 1 - position / 10 })),
    at: T0,
    ...overrides,
  };
}

function fb(
  requestId: string,
  itemId: string,
  type: FeedbackRecord['type'],
  value: number | null = null,
): FeedbackRecord {
  return { requestId, itemId, type, value, at: T0 + 1000 };
}

const byVariant = (totals: VariantTotals[]) => new Map(totals.map((t) => [t.variant, t]));

export function describeExperimentsConformance(
  name: string,
  factory: () => Promise<Store>,
  cleanup?: () => Promise<void>,
): void {
  describe(`Experiments and served-log conformance: ${name}`, () => {
    let store: Store;

    beforeEach(async () => {
      store = await factory();
    });
    afterEach(async () => {
      await store.close();
    });
    if (cleanup) afterAll(cleanup);

    describe('experiments', () => {
      it('creates and reads back every field; a repeated id is a conflict', async () => {
        const e = experiment('exp-1', {
          kind: 'canary',
          guard: { metric: 'ctr', margin: 0.1, minImpressions: 1000 },
          unit: 'session',
          createdBy: 'cli',
        });
        await store.experiments.create(e);
        expect(await store.experiments.get('exp-1')).toEqual(e);
        expect(await store.experiments.get('nope')).toBeNull();
        await expect(store.experiments.create(experiment('exp-1', { kind: 'shadow' }))).rejects.toMatchObject(
          { code: 'CAIRN_CONFLICT' },
        );
      });

      it('lists newest first (creation order breaks ties) and filters by status', async () => {
        await store.experiments.create(experiment('a', { createdAt: T0, status: 'stopped' }));
        await store.experiments.create(experiment('b', { createdAt: T0 + 10, kind: 'shadow' }));
        await store.experiments.create(experiment('c', { createdAt: T0 + 10, status: 'stopped' }));
        await store.experiments.create(experiment('d', { createdAt: T0 + 5 }));
        expect((await store.experiments.list()).map((e) => e.id)).toEqual(['c', 'b', 'd', 'a']);
        expect((await store.experiments.list({ status: 'stopped' })).map((e) => e.id)).toEqual(['c', 'a']);
        expect((await store.experiments.list({ status: 'running' })).map((e) => e.id)).toEqual(['b', 'd']);
        expect(await store.experiments.list({ status: 'rolled_back' })).toEqual([]);
      });

      it('update applies a partial patch and returns the result; unknown ids are CAIRN_NOT_FOUND', async () => {
        await store.experiments.create(experiment('exp'));
        const next = await store.experiments.update('exp', {
          status: 'stopped',
          stoppedAt: T0 + 99,
          stopReason: 'enough data',
        });
        expect(next).toEqual({
          ...experiment('exp'),
          status: 'stopped',
          stoppedAt: T0 + 99,
          stopReason: 'enough data',
        });
        expect(await store.experiments.get('exp')).toEqual(next);
        await expect(store.experiments.update('nope', { status: 'stopped' })).rejects.toMatchObject({
          code: 'CAIRN_NOT_FOUND',
        });
      });

      it('allows one running experiment that routes users; shadows run beside it', async () => {
        await store.experiments.create(experiment('ab-1'));
        await store.experiments.create(experiment('shadow-1', { kind: 'shadow' }));
        await store.experiments.create(experiment('shadow-2', { kind: 'shadow' }));
        await expect(store.experiments.create(experiment('ab-2'))).rejects.toMatchObject({
          code: 'CAIRN_CONFLICT',
        });
        await expect(
          store.experiments.create(experiment('canary', { kind: 'canary' })),
        ).rejects.toMatchObject({ code: 'CAIRN_CONFLICT' });
        await store.experiments.update('ab-1', { status: 'rolled_back' });
        await store.experiments.create(experiment('ab-2'));
        expect((await store.experiments.list({ status: 'running' })).map((e) => e.id).sort()).toEqual([
          'ab-2',
          'shadow-1',
          'shadow-2',
        ]);
      });
    });

    describe('served log', () => {
      it('records and reads back every field, idempotent by (request id, mode): the first write wins', async () => {
        const answer = served('r1', 'ü-user 東京', 'control', ['i1', 'i2', 'i3'], {
          items: [
            { itemId: 'i1', position: 0, score: 0.125 },
            { itemId: 'ï2', position: 1, score: -3.5 },
          ],
          source: 'fallback',
          modelVersion: null,
        });
        await store.served.record([answer]);
        await store.served.record([{ ...answer, userId: 'someone-else', items: [] }]);
        expect(await store.served.get('r1')).toEqual(answer);
        expect(await store.served.get('r1', 'served')).toEqual(answer);
        expect(await store.served.get('r1', 'shadow')).toBeNull();
        expect(await store.served.get('unknown')).toBeNull();
        await store.served.record([]);
      });

      it('keeps the served and the shadow answer of one request apart; get without a mode is the served one', async () => {
        const shadow = served('r1', 'u1', null, ['s1'], {
          mode: 'shadow',
          experimentId: 'sh',
          variant: 'challenger',
          modelVersion: 'v9',
        });
        await store.served.record([shadow]);
        expect(await store.served.get('r1')).toEqual(shadow);
        const answer = served('r1', 'u1', null, ['a1', 'a2']);
        await store.served.record([answer]);
        expect(await store.served.get('r1')).toEqual(answer);
        expect(await store.served.get('r1', 'shadow')).toEqual(shadow);
      });

      it('lists newest first with experiment and mode filters and a limit', async () => {
        await store.served.record([
          served('r1', 'u1', 'control', ['a'], { at: T0 + 1 }),
          served('r2', 'u2', 'challenger', ['a'], { at: T0 + 3 }),
          served('r3', 'u3', null, ['a'], { at: T0 + 2 }),
          served('r2', 'u2', 'challenger', ['b'], { at: T0 + 4, mode: 'shadow' }),
        ]);
        const ids = (records: ServedRecord[]) => records.map((r) => `${r.requestId}/${r.mode}`);
        expect(ids(await store.served.list({ limit: 10 }))).toEqual([
          'r2/shadow',
          'r2/served',
          'r3/served',
          'r1/served',
        ]);
        expect(ids(await store.served.list({ experimentId: 'exp', mode: 'served', limit: 10 }))).toEqual([
          'r2/served',
          'r1/served',
        ]);
        expect(ids(await store.served.list({ mode: 'shadow', limit: 10 }))).toEqual(['r2/shadow']);
        expect(ids(await store.served.list({ limit: 2 }))).toEqual(['r2/shadow', 'r2/served']);
        expect(await store.served.list({ limit: 0 })).toEqual([]);
      });

      it('stores feedback idempotently by (request, item, type), across calls and within a batch', async () => {
        expect(
          await store.served.addFeedback([
            fb('r1', 'i1', 'click'),
            fb('r1', 'i1', 'conversion', 12.5),
            fb('r1', 'i1', 'click'),
            fb('unknown-request', 'i1', 'click'),
          ]),
        ).toEqual(['inserted', 'inserted', 'duplicate', 'inserted']);
        expect(
          await store.served.addFeedback([fb('r1', 'i1', 'conversion', 99), fb('r1', 'i2', 'click')]),
        ).toEqual(['duplicate', 'inserted']);
        expect(await store.served.addFeedback([])).toEqual([]);
      });

      it('withOutcomes: served answers of the endpoint with a click or conversion, newest first, each with all its feedback', async () => {
        await store.served.record([
          served('r1', 'u1', null, ['a', 'b'], { at: T0 + 1 }),
          served('r2', 'u2', null, ['a', 'c'], { at: T0 + 3 }),
          served('r3', 'u3', null, ['b'], { at: T0 + 2 }),
          served('r4', 'u4', null, ['a'], { at: T0 + 4 }),
          served('r5', 'u5', null, ['a'], { at: T0 + 5, endpoint: 'next_best_offer' }),
          served('r2', 'u2', null, ['z'], { at: T0 + 6, mode: 'shadow' }),
        ]);
        await store.served.addFeedback([
          fb('r1', 'b', 'conversion', 9.5),
          fb('r1', 'a', 'impression'),
          fb('r1', 'b', 'impression'),
          fb('r2', 'c', 'click'),
          fb('r3', 'b', 'impression'), // an impression alone is no outcome
          fb('r5', 'a', 'click'), // another endpoint
          fb('r9', 'a', 'click'), // never served
        ]);
        const answers = await store.served.withOutcomes({ endpoint: 'user_recommendations', limit: 10 });
        expect(answers.map((a) => `${a.served.requestId}/${a.served.mode}`)).toEqual([
          'r2/served',
          'r1/served',
        ]);
        expect(answers[0].served).toEqual(served('r2', 'u2', null, ['a', 'c'], { at: T0 + 3 }));
        expect(answers[0].feedback).toEqual([fb('r2', 'c', 'click')]);
        expect(answers[1].feedback).toEqual([
          fb('r1', 'a', 'impression'),
          fb('r1', 'b', 'conversion', 9.5),
          fb('r1', 'b', 'impression'),
        ]);
        const newest = await store.served.withOutcomes({ endpoint: 'user_recommendations', limit: 1 });
        expect(newest.map((a) => [a.served.requestId, a.feedback.length])).toEqual([['r2', 1]]);
        // Pages: after the last answer of the previous page (ties on `at` broken by request id).
        await store.served.record([
          served('r6', 'u6', null, ['d'], { at: T0 + 3 }),
          served('r7', 'u7', null, ['d'], { at: T0 + 3 }),
        ]);
        await store.served.addFeedback([fb('r6', 'd', 'click'), fb('r7', 'd', 'conversion')]);
        const pages: string[][] = [];
        let before: { at: number; requestId: string } | undefined;
        for (;;) {
          const page = await store.served.withOutcomes({
            endpoint: 'user_recommendations',
            limit: 2,
            before,
          });
          if (page.length === 0) break;
          pages.push(page.map((a) => a.served.requestId));
          before = page[page.length - 1].served;
        }
        expect(pages).toEqual([
          ['r7', 'r6'],
          ['r2', 'r1'],
        ]);
        expect(await store.served.withOutcomes({ endpoint: 'user_recommendations', limit: 0 })).toEqual([]);
        expect(
          (await store.served.withOutcomes({ endpoint: 'next_best_offer', limit: 10 })).map(
            (a) => a.served.requestId,
          ),
        ).toEqual(['r5']);
      });
    });

    describe('variantTotals', () => {
      it('computes users, impressions, clicks, conversions and revenue per variant as specified', async () => {
        await store.served.record([
          // control: u1 twice, u2 once
          served('c1', 'u1', 'control', ['a', 'b', 'c', 'd']),
          served('c2', 'u1', 'control', ['a', 'b']),
          served('c3', 'u2', 'control', ['a', 'b', 'c']),
          // challenger: u3, u4 (no feedback at all), and a shadow answer that never counts
          served('h1', 'u3', 'challenger', ['x', 'y', 'z']),
          served('h2', 'u4', 'challenger', ['x', 'y']),
          served('h1', 'u3', 'challenger', ['q', 'q2', 'q3', 'q4', 'q5'], { mode: 'shadow' }),
          // another experiment and a request outside any experiment
          served('o1', 'u1', 'control', ['a'], { experimentId: 'other' }),
          served('n1', 'u1', null, ['a', 'b']),
        ]);
        await store.served.addFeedback([
          // c1: two impressions reported → counts 2 impressions instead of its 4 items
          fb('c1', 'a', 'impression'),
          fb('c1', 'b', 'impression'),
          fb('c1', 'a', 'click'),
          fb('c1', 'a', 'conversion', 10),
          // c2: no impression feedback → its 2 served items; a click and a conversion without value
          fb('c2', 'b', 'click'),
          fb('c2', 'b', 'conversion'),
          // c3: a conversion worth 4
          fb('c3', 'c', 'conversion', 4),
          // h1: two clicks, a conversion worth 7
          fb('h1', 'x', 'click'),
          fb('h1', 'y', 'click'),
          fb('h1', 'y', 'conversion', 7),
          // never counted: unknown request, other experiment, no experiment
          fb('zzz', 'a', 'click'),
          fb('o1', 'a', 'click'),
          fb('n1', 'a', 'conversion', 1000),
        ]);
        const totals = await store.served.variantTotals('exp');
        expect(totals.map((t) => t.variant).sort()).toEqual(['challenger', 'control']);
        const t = byVariant(totals);
        expect(t.get('control')).toEqual({
          variant: 'control',
          users: 2,
          impressions: 2 + 2 + 3,
          clicks: 2,
          conversions: 3,
          clickingUsers: 1,
          convertingUsers: 2,
          revenue: 14,
          revenueSquares: 10 * 10 + 4 * 4,
        });
        expect(t.get('challenger')).toEqual({
          variant: 'challenger',
          users: 2,
          impressions: 5,
          clicks: 2,
          conversions: 1,
          clickingUsers: 1,
          convertingUsers: 1,
          revenue: 7,
          revenueSquares: 49,
        });
        expect(await store.served.variantTotals('nothing-served')).toEqual([]);
      });

      it('counts feedback that arrived before its request was recorded, once the request is known', async () => {
        await store.served.addFeedback([fb('late', 'a', 'click'), fb('late', 'a', 'conversion', 2.5)]);
        expect(await store.served.variantTotals('exp')).toEqual([]);
        await store.served.record([served('late', 'u9', 'control', ['a', 'b'])]);
        expect(byVariant(await store.served.variantTotals('exp')).get('control')).toMatchObject({
          users: 1,
          impressions: 2,
          clicks: 1,
          conversions: 1,
          revenue: 2.5,
          revenueSquares: 6.25,
        });
      });
    });

    describe('deleteForUser', () => {
      it('removes the user’s served and shadow records and their feedback, leaving others intact', async () => {
        await store.served.record([
          served('r1', 'gone', 'control', ['a']),
          served('r1', 'gone', 'control', ['b'], { mode: 'shadow' }),
          served('r2', 'gone', 'challenger', ['a']),
          served('r3', 'stays', 'control', ['a']),
        ]);
        await store.served.addFeedback([fb('r1', 'a', 'click'), fb('r3', 'a', 'click')]);
        expect(await store.served.deleteForUser('gone')).toBe(3);
        expect(await store.served.get('r1')).toBeNull();
        expect(await store.served.get('r1', 'shadow')).toBeNull();
        expect(await store.served.get('r2')).toBeNull();
        expect(await store.served.get('r3')).not.toBeNull();
        expect(await store.served.variantTotals('exp')).toEqual([
          expect.objectContaining({ variant: 'control', users: 1, clicks: 1 }),
        ]);
        // The erased user's feedback is gone: a new answer under the same request id has none.
        await store.served.record([served('r1', 'new', 'challenger', ['a'])]);
        expect(byVariant(await store.served.variantTotals('exp')).get('challenger')).toMatchObject({
          clicks: 0,
        });
        expect(await store.served.deleteForUser('nobody')).toBe(0);
      });
    });
  });
}
