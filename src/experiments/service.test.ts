/**
 * The experiment and feedback services on a private in-memory SQLite store and its change log (the
 * real adapters, no server needed): validation, the one-routing-experiment rule, announcements,
 * results, and the event → feedback projector.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../config/load.ts';
import { systemContext } from '../domain/context.ts';
import type { ModelVersion, ServedRecord } from '../domain/types.ts';
import { CairnError } from '../errors/errors.ts';
import { createLogger } from '../monitoring/logger.ts';
import { SqliteChangeLog, SqliteEventLog } from '../storage/sqlite/log.ts';
import { SqliteStore } from '../storage/sqlite/store.ts';
import type { CreateExperimentRequest, ExperimentService } from './contracts.ts';
import { createFeedbackService, FeedbackProjector, feedbackFromEvent } from './feedback.ts';
import { createExperimentService } from './service.ts';

const ctx = systemContext('test');
const logger = createLogger('silent');
const T0 = 1_700_000_000_000;

function model(
  version: string,
  status: ModelVersion['status'],
  algorithm = 'als',
  createdAt = T0,
): ModelVersion {
  return {
    version,
    algorithm,
    params: {},
    status,
    trainingData: { users: 1, items: 1, interactions: 1, events: 1, lastEventSeq: 1 },
    metrics: {},
    trainSeconds: 1,
    artifactPath: `models/${version}.cairn`,
    checksum: 'x',
    configHash: 'c',
    parentVersion: null,
    createdAt,
    promotedAt: null,
    error: null,
    lineage: null,
  };
}

let store: SqliteStore;
let changeLog: SqliteChangeLog;
let service: ExperimentService;

beforeEach(async () => {
  store = new SqliteStore({ path: ':memory:' });
  await store.migrate();
  changeLog = new SqliteChangeLog(store);
  await store.models.insert(model('v-champ', 'champion', 'als', T0));
  await store.models.insert(model('v-als-old', 'ready', 'als', T0 + 1));
  await store.models.insert(model('v-als-new', 'ready', 'als', T0 + 2));
  await store.models.insert(model('v-als-rejected', 'rejected', 'als', T0 + 3));
  await store.models.insert(model('v-failed', 'failed', 'bpr', T0 + 4));
  await store.models.insert(model('v-training', 'training', 'ease', T0 + 5));
  service = createExperimentService({ store, changeLog, logger, now: () => T0 + 100 });
});

afterEach(async () => {
  await changeLog.close();
  await store.close();
});

const ab = (id = 'exp-1', extra: Partial<CreateExperimentRequest> = {}): CreateExperimentRequest => ({
  id,
  variants: [
    { name: 'control', weight: 50 },
    { name: 'challenger', weight: 50, modelVersion: 'v-als-old' },
  ],
  ...extra,
});

async function fieldsOf(p: Promise<unknown>): Promise<string[]> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(CairnError);
    expect((e as CairnError).code).toBe('CAIRN_VALIDATION');
    return ((e as CairnError).details as { fields: { field: string }[] }).fields.map((f) => f.field);
  }
  throw new Error('expected a validation error');
}

const announced = async () => (await changeLog.read(0, 100)).map((r) => r.value);

describe('create', () => {
  it('stores a running A/B test with defaults, then announces it on the change log', async () => {
    const e = await service.create(ctx, ab());
    expect(e).toEqual({
      id: 'exp-1',
      kind: 'ab',
      status: 'running',
      unit: 'user',
      variants: [
        { name: 'control', weight: 50, modelVersion: null, algorithm: null, ranker: null },
        { name: 'challenger', weight: 50, modelVersion: 'v-als-old', algorithm: null, ranker: null },
      ],
      guard: null,
      createdAt: T0 + 100,
      createdBy: 'system',
      stoppedAt: null,
      stopReason: null,
    });
    expect(await store.experiments.get('exp-1')).toEqual(e);
    expect(await announced()).toEqual([{ kind: 'experiment', experiment: e }]);
    expect(await service.get(ctx, 'exp-1')).toEqual(e);
    expect(await service.list(ctx)).toEqual([e]);
  });

  it('resolves an algorithm to its newest ready or champion version', async () => {
    const e = await service.create(ctx, {
      id: 'alg',
      variants: [
        { name: 'a', weight: 1 },
        { name: 'b', weight: 1, algorithm: 'als', ranker: false },
      ],
    });
    expect(e.variants[1]).toEqual({
      name: 'b',
      weight: 1,
      modelVersion: 'v-als-new',
      algorithm: 'als',
      ranker: false,
    });
  });

  it('accepts arms that force the ranker on or off, and keeps the choice', async () => {
    const e = await service.create(ctx, {
      id: 'ranker-ab',
      variants: [
        { name: 'cf', weight: 1, ranker: false },
        { name: 'ranked', weight: 1, ranker: true },
        { name: 'config', weight: 1 },
      ],
    });
    expect(e.variants.map((v) => v.ranker)).toEqual([false, true, null]);
  });

  it('reports every invalid field at once', async () => {
    expect(
      await fieldsOf(
        service.create(ctx, {
          id: 'bad id!',
          kind: 'nope' as 'ab',
          unit: 'device' as 'user',
          variants: [
            { name: 'x', weight: -1 },
            { name: 'x', weight: Number.NaN, ranker: 'yes' as unknown as boolean },
            { name: '', weight: 1, modelVersion: 'missing' },
            { name: 'f', weight: 1, modelVersion: 'v-failed' },
            { name: 't', weight: 1, modelVersion: 'v-training' },
            { name: 'g', weight: 1, algorithm: 'bpr' },
            { name: 'h', weight: 1, algorithm: 'als', modelVersion: 'v-champ' },
          ],
        }),
      ),
    ).toEqual([
      'id',
      'kind',
      'unit',
      'variants[0].weight',
      'variants[1].name',
      'variants[1].weight',
      'variants[1].ranker',
      'variants[2].name',
      'variants[2].model_version',
      'variants[3].model_version',
      'variants[4].model_version',
      'variants[5].algorithm',
      'variants[6].model_version',
    ]);
    expect(await fieldsOf(service.create(ctx, { id: 'one', variants: [{ name: 'a', weight: 1 }] }))).toEqual([
      'variants',
    ]);
    const eleven = Array.from({ length: 11 }, (_, i) => ({ name: `v${i}`, weight: 1 }));
    expect(await fieldsOf(service.create(ctx, { id: 'many', variants: eleven }))).toEqual(['variants']);
    expect(
      await fieldsOf(
        service.create(ctx, {
          id: 'zero',
          variants: [
            { name: 'a', weight: 0 },
            { name: 'b', weight: 0 },
          ],
        }),
      ),
    ).toEqual(['variants']);
    expect(await fieldsOf(service.create(ctx, ab('g', { guard: { margin: 0.2 } })))).toEqual(['guard']);
    // A rejected version can still be tried in an experiment (it is not promoted by that).
    await service.create(ctx, {
      id: 'rej',
      variants: [
        { name: 'a', weight: 1 },
        { name: 'b', weight: 1, modelVersion: 'v-als-rejected' },
      ],
    });
  });

  it('canary: two variants, the second names a version; the guard gets defaults', async () => {
    expect(
      await fieldsOf(
        service.create(ctx, {
          id: 'c',
          kind: 'canary',
          variants: [
            { name: 'a', weight: 90 },
            { name: 'b', weight: 10 },
          ],
        }),
      ),
    ).toEqual(['variants[1].model_version']);
    expect(
      await fieldsOf(
        service.create(ctx, { ...ab('c'), kind: 'canary', guard: { margin: 1.5, minImpressions: 0 } }),
      ),
    ).toEqual(['guard.margin', 'guard.min_impressions']);
    const e = await service.create(ctx, { ...ab('c'), kind: 'canary', guard: { metric: 'conversion_rate' } });
    expect(e.guard).toEqual({ metric: 'conversion_rate', margin: 0.1, minImpressions: 1000 });
  });

  it('shadow: one variant with a model version and a weight in (0, 100]', async () => {
    expect(
      await fieldsOf(service.create(ctx, { id: 's', kind: 'shadow', variants: [{ name: 'a', weight: 10 }] })),
    ).toEqual(['variants[0].model_version']);
    expect(
      await fieldsOf(
        service.create(ctx, {
          id: 's',
          kind: 'shadow',
          variants: [{ name: 'a', weight: 150, modelVersion: 'v-champ' }],
        }),
      ),
    ).toEqual(['variants[0].weight']);
    expect(await fieldsOf(service.create(ctx, { ...ab('s'), kind: 'shadow' }))).toEqual([
      'variants',
      'variants[0].model_version',
    ]);
    const e = await service.create(ctx, {
      id: 's',
      kind: 'shadow',
      variants: [{ name: 'shadow', weight: 25, algorithm: 'als' }],
    });
    expect(e.variants[0].modelVersion).toBe('v-als-new');
  });

  it('allows one running A/B or canary at a time, naming it; shadows run beside it', async () => {
    await service.create(ctx, ab('first'));
    await expect(service.create(ctx, ab('second'))).rejects.toMatchObject({
      code: 'CAIRN_CONFLICT',
      details: { running: 'first' },
    });
    await expect(service.create(ctx, { ...ab('canary'), kind: 'canary' })).rejects.toMatchObject({
      code: 'CAIRN_CONFLICT',
    });
    await service.create(ctx, {
      id: 'sh',
      kind: 'shadow',
      variants: [{ name: 'x', weight: 5, modelVersion: 'v-als-new' }],
    });
    await service.stop(ctx, 'first', 'done');
    await service.create(ctx, ab('second'));
  });

  it('a repeated create with the same definition announces again; a different one is a conflict', async () => {
    const e = await service.create(ctx, ab());
    expect(await service.create(ctx, ab())).toEqual(e);
    expect((await announced()).length).toBe(2);
    await expect(
      service.create(ctx, {
        ...ab(),
        variants: [
          { name: 'control', weight: 1 },
          { name: 'b', weight: 1 },
        ],
      }),
    ).rejects.toMatchObject({ code: 'CAIRN_CONFLICT', details: { experiment_id: 'exp-1' } });
  });
});

describe('stop', () => {
  it('stops with a reason and announces it; stopping again changes nothing but announces again', async () => {
    await service.create(ctx, ab());
    const stopped = await service.stop(ctx, 'exp-1', 'winner found');
    expect(stopped).toMatchObject({ status: 'stopped', stoppedAt: T0 + 100, stopReason: 'winner found' });
    expect(await service.stop(ctx, 'exp-1')).toEqual(stopped);
    const changes = await announced();
    expect(changes.slice(1)).toEqual([
      { kind: 'experiment', experiment: stopped },
      { kind: 'experiment', experiment: stopped },
    ]);
    await expect(service.stop(ctx, 'nope')).rejects.toMatchObject({ code: 'CAIRN_NOT_FOUND' });
    await expect(service.get(ctx, 'nope')).rejects.toMatchObject({ code: 'CAIRN_NOT_FOUND' });
    await expect(service.results(ctx, 'nope')).rejects.toMatchObject({ code: 'CAIRN_NOT_FOUND' });
  });
});

const answer = (
  requestId: string,
  userId: string,
  variant: string | null,
  extra: Partial<ServedRecord> = {},
): ServedRecord => ({
  requestId,
  userId,
  mode: 'served',
  endpoint: 'recommendations',
  experimentId: variant === null ? null : 'exp-1',
  variant,
  modelVersion: 'v-champ',
  source: 'personalized',
  items: ['a', 'b', 'c', 'd'].map((itemId, position) => ({ itemId, position, score: 1 })),
  at: T0,
  ...extra,
});

describe('results', () => {
  it('computes per-variant estimates, SRM and lift from the served log and feedback', async () => {
    await service.create(ctx, ab());
    const records: ServedRecord[] = [];
    for (let u = 0; u < 400; u++)
      records.push(answer(`r${u}`, `u${u}`, u % 2 === 0 ? 'control' : 'challenger'));
    await store.served.record(records);
    const feedback = createFeedbackService({ served: store.served, maxBatch: 10_000 });
    // control: 20 of 200 users convert (10 %); challenger: 60 of 200 (30 %), each worth 5.
    const fb = records
      .filter((r, u) =>
        r.variant === 'control' ? u % 20 === 0 : u % 20 === 1 || u % 20 === 3 || u % 20 === 5,
      )
      .flatMap((r) => [
        { request_id: r.requestId, item_id: 'a', type: 'click' },
        { request_id: r.requestId, item_id: 'a', type: 'conversion', value: 5 },
      ]);
    const statuses = async () => new Set((await feedback.record(ctx, fb)).map((o) => o.status));
    expect(await statuses()).toEqual(new Set(['accepted']));
    expect(await statuses()).toEqual(new Set(['duplicate']));

    const results = await service.results(ctx, 'exp-1');
    expect(results.experimentId).toBe('exp-1');
    expect(results.srmPValue).toBeCloseTo(1, 10);
    const [control, challenger] = results.variants;
    expect(control).toMatchObject({
      name: 'control',
      users: 200,
      impressions: 800,
      clicks: 20,
      conversions: 20,
    });
    expect(challenger).toMatchObject({
      name: 'challenger',
      users: 200,
      impressions: 800,
      clicks: 60,
      conversions: 60,
    });
    expect(control.conversionRate.value).toBeCloseTo(0.1, 12);
    expect(challenger.conversionRate.value).toBeCloseTo(0.3, 12);
    expect(challenger.ctr.value).toBeCloseTo(60 / 800, 12);
    expect(challenger.revenuePerUser.value).toBeCloseTo(1.5, 12);
    expect(control.liftVsControl).toBeNull();
    expect(challenger.liftVsControl!.value).toBeCloseTo(2, 10);
    expect(challenger.liftVsControl!.low).toBeGreaterThan(0);
  });

  it('gives zeros for variants nobody was served yet', async () => {
    await service.create(ctx, ab());
    const results = await service.results(ctx, 'exp-1');
    expect(results.srmPValue).toBeNull();
    expect(results.variants.map((v) => [v.name, v.users, v.liftVsControl])).toEqual([
      ['control', 0, null],
      ['challenger', 0, null],
    ]);
  });

  it('compares shadow answers with the served ones', async () => {
    await service.create(ctx, {
      id: 'sh',
      kind: 'shadow',
      variants: [{ name: 'next', weight: 100, modelVersion: 'v-als-new' }],
    });
    await store.served.record([
      answer('q1', 'u1', null),
      { ...answer('q1', 'u1', 'next', { experimentId: 'sh', mode: 'shadow', modelVersion: 'v-als-new' }) },
      answer('q2', 'u2', null),
      {
        ...answer('q2', 'u2', 'next', { experimentId: 'sh', mode: 'shadow', modelVersion: 'v-als-new' }),
        items: ['a', 'x', 'y', 'z'].map((itemId, position) => ({ itemId, position, score: 1 })),
      },
      answer('q3', 'u3', 'next', { experimentId: 'sh', mode: 'shadow' }), // its served answer was not logged
    ]);
    const results = await service.results(ctx, 'sh');
    expect(results.variants).toEqual([]);
    expect(results.srmPValue).toBeNull();
    expect(results.shadow).toEqual([
      {
        variant: 'next',
        modelVersion: 'v-als-new',
        requests: 3,
        compared: 2,
        users: 2,
        served: { personalized: 2, items: 8, modelVersions: { 'v-champ': 2 } },
        overlap: expect.objectContaining({ value: (1 + 0.25) / 2 }),
        identical: 0.5,
      },
    ]);
  });
});

describe('feedback', () => {
  it('validates each entry on its own and refuses oversized batches', async () => {
    const feedback = createFeedbackService({ served: store.served, maxBatch: 2 });
    const [bad, good] = await feedback.record(ctx, [
      { request_id: '', item_id: 'i', type: 'like', value: -1 },
      { request_id: 'r-ok', item_id: 'i', type: 'click' },
    ]);
    // The first problem is the entry's error; a bad entry never rejects the others.
    expect(bad).toMatchObject({ status: 'rejected', feedback: null, error: { field: 'request_id' } });
    expect(good).toMatchObject({ status: 'accepted', feedback: { requestId: 'r-ok', type: 'click' } });
    const [future] = await feedback.record(ctx, [
      { request_id: 'r1', item_id: 'i', type: 'click', timestamp: Date.now() + 3_600_000 },
    ]);
    expect(future).toMatchObject({ status: 'rejected', error: { code: 'CAIRN_TIMESTAMP_OUT_OF_RANGE' } });
    const three = Array.from({ length: 3 }, (_, i) => ({ request_id: `r${i}`, item_id: 'i', type: 'click' }));
    await expect(feedback.record(ctx, three)).rejects.toMatchObject({ code: 'CAIRN_BATCH_TOO_LARGE' });
  });

  it('maps events carrying a request id to feedback by the configured outcomes', () => {
    const outcomes = { click: 'click', purchase: 'conversion' } as const;
    const e = { itemId: 'i1', type: 'purchase', value: 12.5, timestamp: T0, context: { request_id: 'r1' } };
    expect(feedbackFromEvent(e, outcomes)).toEqual({
      requestId: 'r1',
      itemId: 'i1',
      type: 'conversion',
      value: 12.5,
      at: T0,
    });
    expect(feedbackFromEvent({ ...e, type: 'click' }, outcomes)).toMatchObject({
      type: 'click',
      value: null,
    });
    expect(feedbackFromEvent({ ...e, value: -3 }, outcomes)).toMatchObject({ value: null });
    expect(feedbackFromEvent({ ...e, type: 'view' }, outcomes)).toBeNull();
    expect(feedbackFromEvent({ ...e, type: 'toString' }, outcomes)).toBeNull();
    expect(feedbackFromEvent({ ...e, context: null }, outcomes)).toBeNull();
    expect(feedbackFromEvent({ ...e, context: { request_id: 7 } }, outcomes)).toBeNull();
  });

  it('the projector turns logged events with a request id into feedback, idempotently', async () => {
    const config = loadConfig({ env: {} });
    const eventLog = new SqliteEventLog(store);
    await store.served.record([answer('r1', 'u1', 'control')]);
    await eventLog.append([
      {
        eventId: 'e1',
        userId: 'u1',
        itemId: 'a',
        type: 'click',
        value: null,
        timestamp: T0,
        context: { request_id: 'r1' },
      },
      {
        eventId: 'e2',
        userId: 'u1',
        itemId: 'a',
        type: 'purchase',
        value: 30,
        timestamp: T0,
        context: { request_id: 'r1' },
      },
      {
        eventId: 'e3',
        userId: 'u1',
        itemId: 'b',
        type: 'view',
        value: null,
        timestamp: T0,
        context: { request_id: 'r1' },
      },
      { eventId: 'e4', userId: 'u1', itemId: 'b', type: 'click', value: null, timestamp: T0, context: null },
    ]);
    const run = async () => {
      const projector = new FeedbackProjector({ eventLog, served: store.served, config, logger });
      projector.start();
      await projector.caughtUp(await eventLog.head());
      await projector.close();
    };
    await run();
    await run(); // a replay from the start changes nothing
    const totals = await store.served.variantTotals('exp-1');
    expect(totals).toEqual([
      expect.objectContaining({ variant: 'control', clicks: 1, conversions: 1, revenue: 30, impressions: 4 }),
    ]);
    await eventLog.close();
  });
});
