/**
 * Readiness: critical vs reported checks, timeouts, start-up, and the details of the model and fallback
 * checks. The model check runs against a real ChampionHolder over a ModelRegistry (in-memory SQLite
 * store, files artifact store in a temp directory) and a tiny ALS model fitted here.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { getAlgorithm } from '../algorithms/index.ts';
import { csrFromCoo } from '../algorithms/sparse.ts';
import { CairnError } from '../errors/errors.ts';
import { FreshnessMonitor } from '../monitoring/freshness.ts';
import type { HealthCheck } from '../monitoring/health.ts';
import { createLogger } from '../monitoring/logger.ts';
import { createMetrics } from '../monitoring/metrics.ts';
import { ModelRegistry } from '../registry/registry.ts';
import { ChampionHolder } from '../serving/champion.ts';
import { FileArtifactStore } from '../storage/files/artifacts.ts';
import { MemoryOnlineState } from '../storage/memory/online-state.ts';
import { SqliteStore } from '../storage/sqlite/store.ts';
import { fallbackCheck, Health, modelCheck, pingCheck, trainingCheck, type NamedCheck } from './health.ts';

const logger = createLogger('silent');

const check = (name: string, critical: boolean, result: HealthCheck): NamedCheck => ({
  name,
  critical,
  run: () => Promise.resolve(result),
});

describe('Health', () => {
  it('is ready when every critical check passes, whatever the others say', async () => {
    const health = new Health([
      check('store', true, { ok: true }),
      check('postgres', false, { ok: false, detail: 'unreachable: down' }),
    ]);
    expect(await health.ready()).toEqual({
      ready: true,
      checks: { store: { ok: true }, postgres: { ok: false, detail: 'unreachable: down' } },
    });
  });

  it('is not ready when a critical check fails or throws', async () => {
    const failing = new Health([
      check('store', true, { ok: false, detail: 'x' }),
      check('other', false, { ok: true }),
    ]);
    expect((await failing.ready()).ready).toBe(false);

    const throwing = new Health([
      { name: 'store', critical: true, run: () => Promise.reject(new Error('connection refused')) },
    ]);
    expect(await throwing.ready()).toEqual({
      ready: false,
      checks: { store: { ok: false, detail: 'unreachable: connection refused' } },
    });
  });

  it('times a hanging check out instead of hanging readiness', async () => {
    const hanging: NamedCheck = {
      name: 'redis',
      critical: true,
      run: () => new Promise<HealthCheck>(() => {}),
    };
    const health = new Health([hanging, check('store', true, { ok: true })], 30);
    const started = Date.now();
    const result = await health.ready();
    expect(Date.now() - started).toBeLessThan(1000);
    expect(result).toEqual({
      ready: false,
      checks: { redis: { ok: false, detail: 'no answer within 30 ms' }, store: { ok: true } },
    });

    // The same hang on a reported check leaves the process ready.
    const reported = new Health([{ ...hanging, critical: false }], 30);
    expect((await reported.ready()).ready).toBe(true);
  });

  it('is not ready while starting, and says why', async () => {
    const health = new Health([check('store', true, { ok: true })]);
    health.starting = 'seeding demo data';
    expect(await health.ready()).toEqual({
      ready: false,
      checks: { store: { ok: true }, startup: { ok: false, detail: 'seeding demo data' } },
    });
    health.starting = null;
    expect((await health.ready()).ready).toBe(true);
  });
});

describe('pingCheck', () => {
  it('passes when the probe resolves and names the failure (with the note) when it rejects', async () => {
    expect(await pingCheck('store', true, () => Promise.resolve(1)).run()).toEqual({ ok: true });
    const down = pingCheck(
      'store',
      false,
      () => Promise.reject(new CairnError('CAIRN_UNAVAILABLE', 'database down')),
      '; serving continues',
    );
    expect(down.critical).toBe(false);
    expect(await down.run()).toEqual({ ok: false, detail: 'unreachable: database down; serving continues' });
  });
});

describe('modelCheck', () => {
  let dir: string;
  let store: SqliteStore;
  let artifacts: FileArtifactStore;
  let registry: ModelRegistry;
  let champion: ChampionHolder;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-health-'));
    store = new SqliteStore({ path: ':memory:' });
    await store.migrate();
    artifacts = new FileArtifactStore({ root: dir });
    registry = new ModelRegistry(store.models, artifacts, logger);
    champion = new ChampionHolder(registry, createMetrics({ defaultMetrics: false }), logger);
  });

  afterEach(async () => {
    await store.close();
    await artifacts.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('is never critical and says what answers: nothing trained, a failed load, the champion', async () => {
    const model = modelCheck(champion);
    expect(model.name).toBe('model');
    expect(model.critical).toBe(false);
    expect(await model.run()).toEqual({
      ok: true,
      status: 'ok',
      detail: 'no trained model yet: answers come from the popular fallback',
    });

    await champion.useVersion('20240101-000000-als-abcdef');
    expect(await model.run()).toEqual({
      ok: true,
      status: 'degraded',
      detail: expect.stringMatching(
        /^fallback only: could not load model 20240101-000000-als-abcdef: /,
      ) as string,
    });

    const params = { factors: 2, iterations: 1 };
    const fitted = await getAlgorithm('als').fit(csrFromCoo(2, 2, [0, 1], [0, 1], null), params, {
      threads: 1,
      seed: 1,
    });
    const mv = await registry.register(
      { artifact: fitted.toArtifact(), userIds: ['u1', 'u2'], itemIds: ['a', 'b'], extra: {} },
      {
        algorithm: 'als',
        params,
        trainingData: { users: 2, items: 2, interactions: 2, events: 2, lastEventSeq: 2 },
        metrics: {},
        trainSeconds: 0,
        configHash: 'test',
      },
    );
    await registry.promote(mv.version);
    await champion.refresh();
    expect(await model.run()).toEqual({ ok: true, status: 'ok', detail: `serving ${mv.version} (als)` });
  });

  /** Registers a tiny model created at `createdAt` and promotes it. */
  async function promoteModel(createdAt: number) {
    const params = { factors: 2, iterations: 1 };
    const fitted = await getAlgorithm('als').fit(csrFromCoo(2, 2, [0, 1], [0, 1], null), params, {
      threads: 1,
      seed: 1,
    });
    const mv = await registry.register(
      { artifact: fitted.toArtifact(), userIds: ['u1', 'u2'], itemIds: ['a', 'b'], extra: {} },
      {
        algorithm: 'als',
        params,
        trainingData: { users: 2, items: 2, interactions: 2, events: 2, lastEventSeq: 2 },
        metrics: { 'ndcg@10': 0.3 },
        trainSeconds: 0,
        configHash: 'test',
      },
      createdAt,
    );
    await registry.promote(mv.version);
    await champion.refresh();
    return mv;
  }

  const freshnessFor = (maxModelAgeSeconds: number) =>
    new FreshnessMonitor({ registry, logger, intervalSeconds: 3600, maxModelAgeSeconds, served: champion });

  it('reports the served champion stale past serving.maxModelAgeSeconds, and ok within it', async () => {
    // Created a minute ago: older than a 5 s limit, younger than an hour's.
    const mv = await promoteModel(Date.now() - 60_000);
    const tight = freshnessFor(5);
    await tight.check();
    const stale = await modelCheck(champion, tight).run();
    expect(stale).toMatchObject({ ok: true, status: 'stale' });
    expect(stale.detail).toMatch(
      new RegExp(
        `^serving ${mv.version} \\(als\\), 1m old; champion ${mv.version} is 1m old \\(limit 5s\\)$`,
      ),
    );

    const loose = freshnessFor(3600);
    await loose.check();
    expect(await modelCheck(champion, loose).run()).toMatchObject({ ok: true, status: 'ok' });

    // Never critical: a stale model keeps the process ready.
    const health = new Health([modelCheck(champion, tight)]);
    const ready = await health.ready();
    expect(ready.ready).toBe(true);
    expect(ready.checks.model.status).toBe('stale');
  });

  it('reports degraded after a failed training (the failed row the pipeline records), ok after a new model', async () => {
    await promoteModel(Date.now() - 1000);
    const freshness = freshnessFor(0);
    const model = modelCheck(champion, freshness);
    await freshness.check();
    expect(await model.run()).toMatchObject({ status: 'ok' });

    // What the pipeline's registry.recordFailure stores when a training fails for good.
    await store.models.insert({
      version: 'failed-1',
      algorithm: 'als',
      params: {},
      status: 'failed',
      trainingData: { users: 0, items: 0, interactions: 0, events: 0, lastEventSeq: 0 },
      metrics: {},
      trainSeconds: 0,
      artifactPath: '',
      checksum: '',
      configHash: 'test',
      parentVersion: null,
      createdAt: Date.now(),
      promotedAt: null,
      error: 'CAIRN_NOT_ENOUGH_DATA: 3 positive interactions, need 10',
      lineage: null,
    });
    await freshness.check();
    const degraded = await model.run();
    expect(degraded).toMatchObject({ ok: true, status: 'degraded' });
    expect(degraded.detail).toContain('last training failed at ');
    expect(degraded.detail).toContain('CAIRN_NOT_ENOUGH_DATA: 3 positive interactions, need 10');
    expect(await trainingCheck(freshness).run()).toMatchObject({ ok: true, status: 'degraded' });

    await promoteModel(Date.now() + 1000);
    await freshness.check();
    expect(await model.run()).toMatchObject({ status: 'ok' });
    expect(await trainingCheck(freshness).run()).toMatchObject({ ok: true, status: 'ok' });
  });
});

describe('fallbackCheck', () => {
  it('is critical, counts the items with popularity, and fails only when the count cannot be read', async () => {
    const online = new MemoryOnlineState({
      types: { view: { weight: 1 } },
      popularityHalfLifeDays: 7,
      historyLimit: 5,
    });
    const fallback = fallbackCheck(() => online.popularCount());
    expect(fallback).toMatchObject({ name: 'fallback', critical: true });
    expect(await fallback.run()).toEqual({ ok: true, detail: 'no events yet: popular lists are empty' });

    await online.applyEvents(
      ['a', 'b', 'a'].map((itemId, i) => ({
        seq: i + 1,
        eventId: `e${i}`,
        userId: 'u',
        itemId,
        type: 'view',
        value: null,
        timestamp: 1_700_000_000_000,
        context: null,
      })),
    );
    expect(await fallback.run()).toEqual({ ok: true, detail: '2 items with popularity' });

    await online.close(); // a closed state refuses every read
    const health = new Health([fallback]);
    const result = await health.ready();
    expect(result.ready).toBe(false);
    expect(result.checks.fallback.ok).toBe(false);
    expect(result.checks.fallback.detail).toMatch(/^unreachable: /);
  });
});
