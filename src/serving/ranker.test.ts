/**
 * The online second stage on a real serving path: an ALS champion fitted on a clustered shop and loaded
 * through the registry (ChampionHolder), whose artifact carries a LambdaMART ranker trained here with
 * trainLambdaMart on RankingFeatures columns where trending decides relevance (and the ALS score adds
 * a little); the memory online state is fed with real events: old purchases inside each cluster, and a
 * crowd's views of two items of other clusters just now (so they trend).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { trainLambdaMart } from '../algorithms/gbdt.ts';
import { getAlgorithm } from '../algorithms/index.ts';
import { Rng } from '../algorithms/random.ts';
import { csrFromCoo } from '../algorithms/sparse.ts';
import type { FittedModel } from '../algorithms/types.ts';
import { loadConfig, type Config, type DeepPartial } from '../config/load.ts';
import { systemContext } from '../domain/context.ts';
import type { Experiment, Item, StoredEvent } from '../domain/types.ts';
import { featureConfigOf } from '../features/item-state.ts';
import { storedRanker, type StoredRanker } from '../features/ranker-artifact.ts';
import { RankingFeatures } from '../features/ranking.ts';
import { createLogger } from '../monitoring/logger.ts';
import { createMetrics, type Metrics } from '../monitoring/metrics.ts';
import { ModelRegistry } from '../registry/registry.ts';
import { FileArtifactStore } from '../storage/files/artifacts.ts';
import { MemoryOnlineState } from '../storage/memory/online-state.ts';
import { SqliteStore } from '../storage/sqlite/store.ts';
import { CatalogView } from './catalog.ts';
import { ChampionHolder } from './champion.ts';
import { ExperimentRouter } from './experiments.ts';
import { PopularList } from './popular.ts';
import { OTHER_FEATURES } from './ranker.ts';
import { Recommender, type RecommenderDeps } from './recommender.ts';
import { countLoopTurns } from '../../test/fixtures/loop-turns.ts';
import { onlineView } from '../../test/fixtures/serving-world.ts';

const CLUSTERS = 4;
const PER_CLUSTER = 10;
const N_ITEMS = CLUSTERS * PER_CLUSTER;
const N_USERS = 60;
const ITEM_IDS = Array.from({ length: N_ITEMS }, (_, i) => `i${i}`);
const USER_IDS = Array.from({ length: N_USERS }, (_, u) => `u${u}`);
/** Items of clusters 2 and 3 that a crowd viewed just now: trending. */
const TRENDING = ['i25', 'i35'];
const DAY = 86_400_000;
const NOW = Date.UTC(2025, 0, 15, 12);
const clusterOf = (id: string) => Math.floor(Number(id.slice(1)) / PER_CLUSTER);
const ctx = systemContext();

/** User u's purchases: 4 of the 10 items of their cluster. */
function historyOf(u: number): number[] {
  const base = (u % CLUSTERS) * PER_CLUSTER;
  const start = Math.floor(u / CLUSTERS) % PER_CLUSTER;
  return [0, 1, 2, 3].map((o) => base + ((start + o) % PER_CLUSTER));
}

const RETRIEVERS = ['als', 'pop', 'similar'];

/**
 * A ranker on the RankingFeatures columns of `config`: every column missing but two, `item_trending`
 * (relevance 2 above 5) and `second` (default `retriever_als_score`: relevance 1 above 0.2), so
 * trending decides.
 */
function trainRanker(
  config: Readonly<Config>,
  retrievers = RETRIEVERS,
  second = 'retriever_als_score',
): StoredRanker {
  const fc = featureConfigOf({ types: config.events.types, features: config.features });
  const names = new RankingFeatures({ config: fc, retrievers }).names;
  const nf = names.length;
  const trending = names.indexOf('item_trending');
  const als = names.indexOf(second);
  const queries = 200;
  const per = 20;
  const rows = queries * per;
  const features = new Float32Array(rows * nf).fill(Number.NaN);
  const labels = new Float32Array(rows);
  const groups = Int32Array.from({ length: queries + 1 }, (_, q) => q * per);
  const rng = new Rng(11);
  for (let r = 0; r < rows; r++) {
    const t = rng.float() < 0.1 ? Number.NaN : rng.float() * 30;
    const s = rng.float() * 0.5;
    features[r * nf + trending] = t;
    features[r * nf + als] = s;
    labels[r] = (t > 5 ? 2 : 0) + (s > 0.2 ? 1 : 0);
  }
  const model = trainLambdaMart(
    { nFeatures: nf, features, labels, groups },
    null,
    { trees: 30, leaves: 4, minDataInLeaf: 5, learningRate: 0.3, featureFraction: 1, earlyStoppingRounds: 0 },
    { featureNames: names },
  );
  return storedRanker(model, { names }, retrievers, fc, 200, { 'ndcg@10': 1 });
}

interface Setup {
  config: Readonly<Config>;
  online: MemoryOnlineState;
  catalog: CatalogView;
  metrics: Metrics;
  champion: ChampionHolder;
  registry: ModelRegistry;
  recommender(options?: {
    config?: Readonly<Config>;
    online?: RecommenderDeps['online'];
    experiment?: Experiment;
    /** The recommender's clock (default: NOW). */
    now?: () => number;
  }): Recommender;
}

let dir: string;
let store: SqliteStore;
let artifacts: FileArtifactStore;
let online: MemoryOnlineState;
let fitted: FittedModel | null = null;

async function setup(
  ranker: StoredRanker | ((config: Readonly<Config>) => StoredRanker | undefined),
  overrides: DeepPartial<Config> = {},
): Promise<Setup> {
  dir = await mkdtemp(join(tmpdir(), 'cairn-ranker-'));
  const config = loadConfig({
    env: {},
    overrides: { dataDir: dir, serving: { cacheTtlSeconds: 0 }, ...overrides },
  });
  const logger = createLogger('silent');
  const metrics = createMetrics({ defaultMetrics: false });
  store = new SqliteStore({ path: ':memory:' });
  await store.migrate();
  artifacts = new FileArtifactStore({ root: dir });
  const registry = new ModelRegistry(store.models, artifacts, logger);
  online = new MemoryOnlineState({
    types: config.events.types,
    popularityHalfLifeDays: config.serving.popularityHalfLifeDays,
    historyLimit: config.serving.historyLimit,
    maxEventWeight: config.events.maxEventWeight,
    features: config.features,
  });
  const events: StoredEvent[] = [];
  let seq = 0;
  const add = (userId: string, itemId: string, type: string, timestamp: number) =>
    events.push({
      seq: ++seq,
      eventId: `e${seq}`,
      userId,
      itemId,
      type,
      value: null,
      timestamp,
      context: null,
    });
  const rows: number[] = [];
  const cols: number[] = [];
  for (let u = 0; u < N_USERS; u++) {
    historyOf(u).forEach((i, o) => {
      add(USER_IDS[u], ITEM_IDS[i], 'purchase', NOW - (40 - o * 5 - (u % 5)) * DAY);
      rows.push(u);
      cols.push(i);
    });
  }
  // The crowd (not in the model) views the trending items over the last hours.
  for (let c = 0; c < 30; c++)
    for (const id of TRENDING) add(`crowd${c}`, id, 'view', NOW - (c + 1) * 60_000);
  await online.applyEvents(events);
  fitted ??= await getAlgorithm('als').fit(
    csrFromCoo(N_USERS, N_ITEMS, rows, cols, null),
    { factors: 8, iterations: 8, regularization: 0.05, alpha: 4 },
    { threads: 1, seed: 7 },
  );
  const stored = typeof ranker === 'function' ? ranker(config) : ranker;
  const mv = await registry.register(
    {
      artifact: fitted.toArtifact(),
      userIds: USER_IDS,
      itemIds: ITEM_IDS,
      extra: { lastEventSeq: 0, ...(stored ? { ranker: stored } : {}) },
    },
    {
      algorithm: 'als',
      params: {},
      trainingData: {
        users: N_USERS,
        items: N_ITEMS,
        interactions: rows.length,
        events: rows.length,
        lastEventSeq: 0,
      },
      metrics: {},
      trainSeconds: 0,
      configHash: 'test',
    },
    NOW,
  );
  await registry.promote(mv.version);
  const champion = new ChampionHolder(registry, metrics, logger);
  await champion.refresh();
  const catalog = new CatalogView();
  catalog.upsert(
    ITEM_IDS.map((id): Item => ({
      id,
      categories: [`c${clusterOf(id)}`],
      attributes: { title: `Title ${id}`, price: 10 + clusterOf(id) },
      available: true,
      createdAt: 1,
      updatedAt: 1,
    })),
  );
  const popular = new PopularList(online, 1000, 0, () => NOW);
  return {
    config,
    online,
    catalog,
    metrics,
    champion,
    registry,
    recommender(options = {}) {
      let experiments: ExperimentRouter | null = null;
      if (options.experiment) {
        experiments = new ExperimentRouter(store.experiments, metrics, logger);
        experiments.apply(options.experiment);
      }
      return new Recommender({
        config: options.config ?? config,
        online: options.online ?? online,
        catalog,
        popular,
        metrics,
        logger,
        champion: () => champion.get(),
        experiments,
        now: options.now ?? (() => NOW),
      });
    },
  };
}

afterEach(async () => {
  await online?.close();
  await store?.close();
  await artifacts?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const ids = (items: { itemId: string }[]) => items.map((i) => i.itemId);

async function rankerOutcomes(metrics: Metrics): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const v of (await metrics.rankerRequests.get()).values) out[String(v.labels.outcome)] = v.value;
  return out;
}

/** u0's answer with ranking off by config (the CF ranking). */
async function cfOf(s: Setup): Promise<string[]> {
  const off = loadConfig({
    env: {},
    overrides: { dataDir: dir, serving: { cacheTtlSeconds: 0 }, ranking: { enabled: false } },
  });
  return ids((await s.recommender({ config: off }).recommend(ctx, { userId: 'u0', k: 6 })).items);
}

function armExperiment(ranker: boolean): Experiment {
  return {
    id: 'ranker-exp',
    kind: 'ab',
    status: 'running',
    variants: [{ name: 'only', weight: 1, modelVersion: null, algorithm: null, ranker }],
    unit: 'user',
    guard: null,
    createdAt: NOW,
    createdBy: 'test',
    stoppedAt: null,
    stopReason: null,
  };
}

describe('the trained ranker online', () => {
  let s: Setup;
  /** The CF answer for u0 (ranking off by config). */
  let cf: string[];

  beforeEach(async () => {
    s = await setup(trainRanker);
    const off = loadConfig({
      env: {},
      overrides: { dataDir: dir, serving: { cacheTtlSeconds: 0 }, ranking: { enabled: false } },
    });
    cf = ids((await s.recommender({ config: off }).recommend(ctx, { userId: 'u0', k: 6 })).items);
  });

  it('ranks the candidates by the ranker: the trending items first, unlike the CF order', async () => {
    expect(s.champion.get()?.ranker).not.toBeNull();
    // The CF model answers mostly from u0's cluster, never with the trending items first.
    expect(cf.slice(0, 4).map(clusterOf)).toEqual([0, 0, 0, 0]);
    const answer = await s.recommender().recommend(ctx, { userId: 'u0', k: 6 });
    expect(answer).toMatchObject({ source: 'personalized', fallbackReason: null, degraded: false });
    expect(new Set(ids(answer.items).slice(0, 2))).toEqual(new Set(TRENDING));
    expect(ids(answer.items)).not.toEqual(cf);
    // Then the user's own cluster, by the ALS score the ranker also reads; seen items never.
    expect(answer.items.slice(2).map((i) => clusterOf(i.itemId))).toEqual([0, 0, 0, 0]);
    for (const i of historyOf(0)) expect(ids(answer.items)).not.toContain(ITEM_IDS[i]);
    for (let r = 1; r < answer.items.length; r++)
      expect(answer.items[r].score).toBeLessThanOrEqual(answer.items[r - 1].score);
    // Reasons from the feature that lifted each item: trending, else the model's own reason.
    expect(answer.items[0].reason).toBe('Trending this week');
    expect(answer.items[1].reason).toBe('Trending this week');
    for (const it of answer.items.slice(2)) expect(it.reason).toMatch(/^Because you purchased “Title i\d+”/);
    expect(await rankerOutcomes(s.metrics)).toMatchObject({ ranked: 1, disabled: 1 });
    expect(
      (await s.metrics.rankerDuration.get()).values.find((v) => v.metricName?.endsWith('_count'))?.value,
    ).toBe(1);
  });

  it('explains each item by its feature contributions, which sum with the bias to its score', async () => {
    const answer = await s.recommender().recommend(ctx, { userId: 'u0', k: 6, explain: true });
    for (const it of answer.items) {
      const e = it.explanation!;
      expect(e.link).toBe('personal');
      expect(e.model).toBe('lambdamart');
      expect(e.features!.length).toBeGreaterThan(0);
      expect(e.features!.length).toBeLessThanOrEqual(15);
      const sum = e.features!.reduce((a, f) => a + f.contribution, 0) + e.bias!;
      expect(sum).toBeCloseTo(it.score, 4);
      const abs = e.features!.filter((f) => f.name !== OTHER_FEATURES).map((f) => Math.abs(f.contribution));
      expect(abs).toEqual([...abs].sort((a, b) => b - a));
      // The history items behind the ALS score are still listed.
      expect(e.contributions.length).toBeGreaterThan(0);
    }
    const trending = answer.items[0].explanation!.features!.find((f) => f.name === 'item_trending');
    expect(trending?.value).toBeGreaterThan(5);
    expect(trending?.contribution).toBeGreaterThan(0);
  });

  it('is bypassed by an arm with ranker: false, and forced by an arm with ranker: true', async () => {
    const bypass = await s
      .recommender({ experiment: armExperiment(false) })
      .recommend(ctx, { userId: 'u0', k: 6 });
    expect(bypass.experiment).toEqual({ id: 'ranker-exp', variant: 'only' });
    expect(ids(bypass.items)).toEqual(cf);
    const off = loadConfig({
      env: {},
      overrides: { dataDir: dir, serving: { cacheTtlSeconds: 0 }, ranking: { enabled: false } },
    });
    const forced = await s
      .recommender({ config: off, experiment: armExperiment(true) })
      .recommend(ctx, { userId: 'u0', k: 6 });
    expect(new Set(ids(forced.items).slice(0, 2))).toEqual(new Set(TRENDING));
  });

  it('answers with the CF ranking when the item-state read fails (not degraded)', async () => {
    const failing = onlineView(s.online, {
      itemFeatures: () => Promise.reject(new Error('connection reset')),
    });
    const answer = await s.recommender({ online: failing }).recommend(ctx, { userId: 'u0', k: 6 });
    expect(answer).toMatchObject({ source: 'personalized', degraded: false, fallbackReason: null });
    expect(ids(answer.items)).toEqual(cf);
    expect(await rankerOutcomes(s.metrics)).toMatchObject({ error: 1 });
  });

  it('keys cached answers by whether the ranker ranked', async () => {
    const cached = loadConfig({ env: {}, overrides: { dataDir: dir, serving: { cacheTtlSeconds: 60 } } });
    const cachedOff = loadConfig({
      env: {},
      overrides: { dataDir: dir, serving: { cacheTtlSeconds: 60 }, ranking: { enabled: false } },
    });
    const ranked = await s.recommender({ config: cached }).recommend(ctx, { userId: 'u0', k: 6 });
    expect(new Set(ids(ranked.items).slice(0, 2))).toEqual(new Set(TRENDING));
    // Same user, model version, k: the CF answer is not the cached ranked one (and vice versa).
    expect(
      ids((await s.recommender({ config: cachedOff }).recommend(ctx, { userId: 'u0', k: 6 })).items),
    ).toEqual(cf);
    expect(
      ids((await s.recommender({ config: cached }).recommend(ctx, { userId: 'u0', k: 6 })).items),
    ).toEqual(ids(ranked.items));
    const hits = (await s.metrics.recommendationCache.get()).values.find((v) => v.labels.outcome === 'hit');
    expect(hits?.value).toBe(1);
  });
});

describe('a ranked answer computed again in the background', () => {
  it('gives the event loop turns between its parts, and stores the answer a request computes while requests run between them', async () => {
    const s = await setup(trainRanker);
    // Few candidates: some come from other retrievers than the model's own list, so their model score
    // is read from the model's full-catalog scores (which other requests overwrite between the turns).
    const config = loadConfig({
      env: {},
      overrides: { dataDir: dir, serving: { cacheTtlSeconds: 60 }, ranking: { candidates: 6 } },
    });
    const turns = countLoopTurns();
    /** Turns counted when the background task read the user's cache version, and when it stored. */
    const marks: { read?: number; stored?: number } = {};
    let background = false;
    const online = onlineView(s.online, {
      cacheVersion: (user) => {
        if (background && user === 'u0') marks.read ??= turns.count;
        return s.online.cacheVersion(user);
      },
      cacheSet: async (user, key, value, ttlMs, version) => {
        await s.online.cacheSet(user, key, value, ttlMs, version);
        if (background && user === 'u0') marks.stored = turns.count;
      },
    });
    let clock = NOW;
    const r = s.recommender({ config, online, now: () => clock });
    const first = await r.recommend(ctx, { userId: 'u0', k: 6 });
    clock += 61_000; // past the answer's TTL (45–60 s), inside its stale window
    background = true;
    const stale = await r.recommend(ctx, { userId: 'u0', k: 6 });
    expect(ids(stale.items)).toEqual(ids(first.items));
    // Between its turns, other users' answers are computed (explained: never from the cache), on the
    // model's and the stage's shared buffers.
    for (let i = 0; i < 200 && marks.stored === undefined; i++) {
      await new Promise((resolve) => setImmediate(resolve));
      if (marks.stored === undefined)
        await r.recommend(ctx, { userId: `u${1 + (i % 5)}`, k: 6, explain: true });
    }
    turns.stop();
    await r.close();
    // Without the turns the whole ranked answer runs in one (the memory online state answers at once):
    // one after its reads, one per retriever list, after the model's list, the merge, the signals, the
    // features and the scoring.
    expect(marks.stored! - marks.read!).toBeGreaterThanOrEqual(8);
    background = false;
    const fresh = await r.recommend(ctx, { userId: 'u0', k: 6 });
    // The stored answer is the one computed alone: same items, scores and reasons.
    expect(fresh.items).toEqual(first.items);
    expect(
      (await s.metrics.recommendationCache.get()).values.find((v) => v.labels.outcome === 'hit')?.value,
    ).toBe(1);
  });
});

describe('reasons', () => {
  it('words a category lift for people', async () => {
    const s = await setup((config) => trainRanker(config, RETRIEVERS, 'user_category_share'));
    const answer = await s.recommender().recommend(ctx, { userId: 'u0', k: 6 });
    expect(new Set(ids(answer.items).slice(0, 2))).toEqual(new Set(TRENDING));
    // u0 bought in c0 only: the c0 items are lifted by the user's category share.
    for (const it of answer.items.slice(2)) {
      expect(clusterOf(it.itemId)).toBe(0);
      expect(it.reason).toBe('Because you often choose c0');
    }
  });
});

describe('head retrievers', () => {
  it('draw the trending items, which the model does not propose, into the candidates', async () => {
    // Four candidates only: the model's own top four for u0 are all of u0's cluster (c0).
    const small = { ranking: { candidates: 4 } };
    const withHead = await setup((config) => trainRanker(config, ['als', 'trending']), small);
    expect((await cfOf(withHead)).slice(0, 4).map(clusterOf)).toEqual([0, 0, 0, 0]);
    const answer = await withHead.recommender().recommend(ctx, { userId: 'u0', k: 4 });
    expect(await rankerOutcomes(withHead.metrics)).toMatchObject({ ranked: 1 });
    // Candidates: round-robin of the model's list and the trending list; the ranker's trending column
    // puts the trending ones first.
    expect(new Set(ids(answer.items).slice(0, 2))).toEqual(new Set(TRENDING));
    // The same ranker over the model alone never sees them with four candidates.
    const modelOnly = await setup((config) => trainRanker(config, ['als']), small);
    const plain = await modelOnly.recommender().recommend(ctx, { userId: 'u0', k: 4 });
    expect(ids(plain.items).filter((id) => TRENDING.includes(id))).toEqual([]);
  });

  it('draw the popular items of the user’s categories into the candidates', async () => {
    const s = await setup((config) => trainRanker(config, ['trending', 'category']), {
      ranking: { candidates: 6 },
    });
    const answer = await s.recommender().recommend(ctx, { userId: 'u0', k: 6 });
    expect(new Set(ids(answer.items).slice(0, 2))).toEqual(new Set(TRENDING));
    const bought = new Set([0, 1, 2, 3].map((i) => ITEM_IDS[i]));
    // No model list: the rest came from the category list (u0 bought in c0 only), never an item u0 bought.
    for (const it of answer.items.slice(2)) {
      expect(clusterOf(it.itemId)).toBe(0);
      expect(bought.has(it.itemId)).toBe(false);
    }
    expect(answer.items.length).toBe(6);
  });
});

describe('content retriever', () => {
  it('proposes a catalog item nobody has touched yet, sharing category and attributes with the recent ones', async () => {
    const small = { ranking: { candidates: 4 } };
    const withContent = await setup((config) => trainRanker(config, ['als', 'content']), small);
    // u0 bought i0..i3 (cluster c0); they and a brand-new item share a series; other c0 items do not.
    const series = (id: string, categories: string[]): Item => ({
      id,
      categories,
      attributes: { title: `Title ${id}`, series: 's0' },
      available: true,
      createdAt: NOW,
      updatedAt: NOW,
    });
    withContent.catalog.upsert([
      ...[0, 1, 2, 3].map((i) => series(ITEM_IDS[i], ['c0'])),
      series('fresh', ['c0']),
    ]);
    const answer = await withContent.recommender().recommend(ctx, { userId: 'u0', k: 4 });
    expect(await rankerOutcomes(withContent.metrics)).toMatchObject({ ranked: 1 });
    expect(ids(answer.items)).toContain('fresh');

    const modelOnly = await setup((config) => trainRanker(config, ['als']), small);
    modelOnly.catalog.upsert([series('fresh', ['c0'])]);
    const plain = await modelOnly.recommender().recommend(ctx, { userId: 'u0', k: 4 });
    expect(ids(plain.items)).not.toContain('fresh');
  });
});

describe('a ranker that cannot rank here', () => {
  it('is not used when its feature names do not match this process: the CF ranking answers', async () => {
    const s = await setup((config) => {
      const r = trainRanker(config);
      const renamed = r.featureNames.map((n) => (n === 'item_trending' ? 'item_trending_v0' : n));
      return { ...r, featureNames: renamed, model: { ...r.model, featureNames: renamed } };
    });
    const off = loadConfig({
      env: {},
      overrides: { dataDir: dir, serving: { cacheTtlSeconds: 0 }, ranking: { enabled: false } },
    });
    const cf = ids((await s.recommender({ config: off }).recommend(ctx, { userId: 'u0', k: 6 })).items);
    const answer = await s.recommender().recommend(ctx, { userId: 'u0', k: 6 });
    expect(answer).toMatchObject({ source: 'personalized', degraded: false });
    expect(ids(answer.items)).toEqual(cf);
    expect(await rankerOutcomes(s.metrics)).toMatchObject({ unusable: 1 });
  });

  it('is not used when it names a retriever this process does not provide', async () => {
    const s = await setup((config) => trainRanker(config, ['als', 'itemknn']));
    const answer = await s.recommender().recommend(ctx, { userId: 'u0', k: 6 });
    expect(ids(answer.items)).toEqual(await cfOf(s));
    expect(await rankerOutcomes(s.metrics)).toMatchObject({ unusable: 1 });
  });

  it('a malformed stored ranker does not stop the version from serving', async () => {
    const s = await setup((config) => ({ ...trainRanker(config), formatVersion: 9 as 1 }));
    expect(s.champion.get()).not.toBeNull();
    expect(s.champion.get()?.ranker).toBeNull();
    expect(s.champion.get()?.rankerError).toMatch(/ranker\.formatVersion/);
    const answer = await s.recommender().recommend(ctx, { userId: 'u0', k: 6 });
    expect(answer.source).toBe('personalized');
    expect(await rankerOutcomes(s.metrics)).toMatchObject({ unusable: 1 });
  });

  it('a model version without a ranker is answered by the CF ranking, also for an arm asking for one', async () => {
    const s = await setup(() => undefined);
    const answer = await s
      .recommender({ experiment: armExperiment(true) })
      .recommend(ctx, { userId: 'u0', k: 6 });
    expect(ids(answer.items)).toEqual(await cfOf(s));
    expect(await rankerOutcomes(s.metrics)).toMatchObject({ no_ranker: 1 });
  });
});
