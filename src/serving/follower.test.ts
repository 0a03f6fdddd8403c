/**
 * ServingFollower over the smallest real setup: a SQLite change log, a ModelRegistry over the same
 * in-memory SQLite store and a files ArtifactStore in a temp directory, and tiny ALS models actually
 * fitted here (the registry announces promotions on the change log, as in production).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { getAlgorithm } from '../algorithms/index.ts';
import { csrFromCoo } from '../algorithms/sparse.ts';
import type { Experiment, Item, ModelVersion } from '../domain/types.ts';
import { createLogger } from '../monitoring/logger.ts';
import { createMetrics } from '../monitoring/metrics.ts';
import { ModelRegistry, type RegisterInfo } from '../registry/registry.ts';
import { FileArtifactStore } from '../storage/files/artifacts.ts';
import { SqliteChangeLog } from '../storage/sqlite/log.ts';
import { SqliteStore } from '../storage/sqlite/store.ts';
import { CatalogView } from './catalog.ts';
import { ChampionHolder } from './champion.ts';
import { ExperimentRouter } from './experiments.ts';
import { ServingFollower } from './follower.ts';
import { ModelPool } from './model-pool.ts';

const logger = createLogger('silent');
const PARAMS = { factors: 2, iterations: 2, regularization: 0.1, alpha: 1 };

/** Fits a 2-factor ALS model on `userIds` × 3 items and registers it. */
async function registerModel(registry: ModelRegistry, userIds: string[], now: number): Promise<ModelVersion> {
  const itemIds = ['a', 'b', 'c'];
  const rows = userIds.flatMap((_, u) => [u, u]);
  const cols = userIds.flatMap((_, u) => [u % 3, (u + 1) % 3]);
  const train = csrFromCoo(userIds.length, itemIds.length, rows, cols, null);
  const model = await getAlgorithm('als').fit(train, PARAMS, { threads: 1, seed: 7 });
  const info: RegisterInfo = {
    algorithm: 'als',
    params: PARAMS,
    trainingData: {
      users: userIds.length,
      items: 3,
      interactions: rows.length,
      events: rows.length,
      lastEventSeq: 0,
    },
    metrics: {},
    trainSeconds: 0,
    configHash: 'test',
  };
  return registry.register(
    { artifact: model.toArtifact(), userIds, itemIds, extra: { lastEventSeq: 0 } },
    info,
    now,
  );
}

const item = (id: string, patch: Partial<Item> = {}): Item => ({
  id,
  categories: [],
  attributes: {},
  available: true,
  createdAt: 1,
  updatedAt: 1,
  ...patch,
});

describe('ServingFollower', () => {
  let dir: string;
  let store: SqliteStore;
  let changeLog: SqliteChangeLog;
  let artifacts: FileArtifactStore;
  let registry: ModelRegistry;
  let catalog: CatalogView;
  let champion: ChampionHolder;
  let follower: ServingFollower;

  /** Waits until the follower has applied everything in the change log. */
  const settled = async () => follower.caughtUp(await changeLog.head());

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-follower-'));
    store = new SqliteStore({ path: ':memory:' });
    await store.migrate();
    changeLog = new SqliteChangeLog(store, { idlePollMs: 20, retryBaseMs: 5, onError: () => {} });
    artifacts = new FileArtifactStore({ root: dir });
    registry = new ModelRegistry(store.models, artifacts, logger, changeLog);
    catalog = new CatalogView();
    champion = new ChampionHolder(registry, createMetrics({ defaultMetrics: false }), logger);
    follower = new ServingFollower(changeLog, catalog, champion, logger);
  });

  afterEach(async () => {
    await follower.close();
    await changeLog.close();
    await store.close();
    await artifacts.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('applies catalog changes to the catalog view', async () => {
    follower.start(0);
    await changeLog.append([
      { kind: 'items', items: [item('a', { categories: ['shoes'], attributes: { title: 'Boots' } })] },
      { kind: 'items', items: [item('b', { available: false })] },
    ]);
    await settled();
    expect(follower.position).toBe(2);
    expect(catalog.inCategory('a', 'shoes')).toBe(true);
    expect(catalog.label('a')).toBe('“Boots”');
    expect(catalog.isAvailable('b')).toBe(false);

    await changeLog.append([{ kind: 'items', items: [item('b', { available: true })] }]);
    await settled();
    expect(catalog.isAvailable('b')).toBe(true);
  });

  it('starts after the position the catalog was loaded at', async () => {
    await changeLog.append([{ kind: 'items', items: [item('old', { available: false })] }]);
    follower.start(1);
    await changeLog.append([{ kind: 'items', items: [item('new', { available: false })] }]);
    await settled();
    expect(catalog.has('old')).toBe(false);
    expect(catalog.isAvailable('new')).toBe(false);
  });

  it('swaps the champion on promotion and rollback, and keeps it when an announced one cannot load', async () => {
    const first = await registerModel(registry, ['u1', 'u2', 'u3'], 1000);
    const second = await registerModel(registry, ['u4', 'u5'], 2000);
    follower.start(0);
    expect(champion.get()).toBeNull();

    await registry.promote(first.version);
    await settled();
    expect(champion.get()?.version.version).toBe(first.version);
    expect([...champion.get()!.userIndex.keys()]).toEqual(['u1', 'u2', 'u3']);

    await registry.promote(second.version);
    await settled();
    expect(champion.get()?.version.version).toBe(second.version);

    await registry.rollback();
    await settled();
    expect(champion.get()?.version.version).toBe(first.version);

    // A version nobody can load: the replica keeps serving, says why, and the follower moves on.
    await changeLog.append([{ kind: 'champion', version: 'missing' }]);
    await settled();
    expect(champion.get()?.version.version).toBe(first.version);
    expect(champion.lastError).toMatch(/missing/);
    expect(follower.position).toBe(await changeLog.head());
  });

  it('loads only the newest of several promotions in one batch', async () => {
    const first = await registerModel(registry, ['u1'], 1000);
    const second = await registerModel(registry, ['u2'], 2000);
    const loads: string[] = [];
    const counting = new ChampionHolder(
      {
        champion: () => registry.champion(),
        get: (v) => registry.get(v),
        load: (mv) => {
          loads.push(mv.version);
          return registry.load(mv);
        },
      },
      createMetrics({ defaultMetrics: false }),
      logger,
    );
    follower = new ServingFollower(changeLog, catalog, counting, logger);
    await changeLog.append([
      { kind: 'champion', version: first.version },
      { kind: 'champion', version: second.version },
    ]);
    follower.start(0);
    await settled();
    expect(loads).toEqual([second.version]);
    expect(counting.get()?.version.version).toBe(second.version);
  });

  it('drops an erased user from the champion’s user index', async () => {
    const mv = await registerModel(registry, ['u1', 'u2', 'u3'], 1000);
    await registry.promote(mv.version);
    follower.start(0);
    await settled();
    const served = champion.get()!;
    expect(served.userIndex.has('u2')).toBe(true);

    await changeLog.append([{ kind: 'erase', userId: 'u2', events: [] }]);
    await settled();
    expect(champion.get()).toBe(served); // same model, not reloaded (the reload would bring the user back)
    expect(served.userIndex.has('u2')).toBe(false);
    expect([...served.userIndex.keys()]).toEqual(['u1', 'u3']);
  });

  it('routes by experiment changes, loads and releases their models, and erases users from them too', async () => {
    const champ = await registerModel(registry, ['u1', 'u2'], 1000);
    const challenger = await registerModel(registry, ['u1', 'u2', 'u3'], 2000);
    await registry.promote(champ.version);
    await champion.refresh();
    const router = new ExperimentRouter(null, createMetrics({ defaultMetrics: false }), logger);
    const pool = new ModelPool(registry, () => champion.get(), logger);
    follower = new ServingFollower(changeLog, catalog, champion, logger, { experiments: router, pool });
    follower.start(await changeLog.head());
    const experiment: Experiment = {
      id: 'exp-f',
      kind: 'canary',
      status: 'running',
      variants: [
        { name: 'control', weight: 1, modelVersion: null, algorithm: null, ranker: null },
        { name: 'canary', weight: 1, modelVersion: challenger.version, algorithm: null, ranker: null },
      ],
      unit: 'user',
      guard: { metric: 'ctr', margin: 0.1, minImpressions: 10 },
      createdAt: 1,
      createdBy: 'test',
      stoppedAt: null,
      stopReason: null,
    };
    await changeLog.append([{ kind: 'experiment', experiment }]);
    await settled();
    // In memory by the time the position moved past the change.
    expect(router.routing()?.id).toBe('exp-f');
    const loaded = pool.get(challenger.version)!;
    expect(loaded.version.version).toBe(challenger.version);

    await changeLog.append([{ kind: 'erase', userId: 'u3', events: [] }]);
    await settled();
    expect(loaded.userIndex.has('u3')).toBe(false);

    await changeLog.append([
      { kind: 'experiment', experiment: { ...experiment, status: 'rolled_back', stopReason: 'worse' } },
    ]);
    await settled();
    expect(router.routing()).toBeNull();
    expect(pool.get(challenger.version)).toBeNull();
    expect(pool.models()).toEqual([]);
  });
});
