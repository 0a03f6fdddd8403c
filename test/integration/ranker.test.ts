/**
 * The trained ranker over HTTP, on the embedded service (SQLite store, demo data, a trained ALS champion):
 * a model version carrying a ranker in its artifact's `extra.ranker` (the champion's own ALS artifact plus
 * a LambdaMART model trained here on RankingFeatures columns where trending decides) is registered
 * through the ModelRegistry and promoted over HTTP; the serving replica hot-swaps to it and ranks with
 * it: explained answers (feature contributions summing with the bias to each score), the ranker metric,
 * and an experiment arm with `ranker: false` answered by the CF ranking of the same model.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { trainLambdaMart } from '../../src/algorithms/gbdt.ts';
import { Rng } from '../../src/algorithms/random.ts';
import { loadConfig } from '../../src/config/load.ts';
import { featureConfigOf } from '../../src/features/item-state.ts';
import { storedRanker, type StoredRanker } from '../../src/features/ranker-artifact.ts';
import { RankingFeatures } from '../../src/features/ranking.ts';
import { seedDemo } from '../../src/main/demo.ts';
import { createEmbedded, type Embedded } from '../../src/main/embedded.ts';
import { createLogger } from '../../src/monitoring/logger.ts';

/* eslint-disable @typescript-eslint/no-explicit-any -- response bodies are poked into freely */
describe('the trained ranker over HTTP (embedded service)', () => {
  let dir: string;
  let cairn: Embedded;
  let rankedVersion: string;
  /** The CF answer of the ALS champion (before the ranked version), for a few users. */
  const cf = new Map<string, string[]>();
  /** Users the ALS champion answers personally (the first few of the demo's). */
  const USERS: string[] = [];

  const get = async (url: string): Promise<{ status: number; body: any }> => {
    const res = await cairn.app.inject({ method: 'GET', url });
    return { status: res.statusCode, body: JSON.parse(res.body) };
  };
  const post = async (url: string, payload: object): Promise<{ status: number; body: any }> => {
    const res = await cairn.app.inject({ method: 'POST', url, payload });
    return { status: res.statusCode, body: JSON.parse(res.body) };
  };
  const ids = (body: { items: { item_id: string }[] }): string[] => body.items.map((i) => i.item_id);
  async function until<T>(read: () => Promise<T>, done: (v: T) => boolean): Promise<T> {
    let v = await read();
    for (let tries = 0; tries < 200 && !done(v); tries++) {
      await new Promise((r) => setTimeout(r, 25));
      v = await read();
    }
    return v;
  }

  /** LambdaMART on the RankingFeatures columns; only `item_trending` (and a little the ALS rank) decide. */
  function trainRanker(): StoredRanker {
    const { config } = cairn;
    const retrievers = ['als', 'pop', 'similar'];
    const fc = featureConfigOf({ types: config.events.types, features: config.features });
    const names = new RankingFeatures({ config: fc, retrievers }).names;
    const nf = names.length;
    const trending = names.indexOf('item_trending');
    const rank = names.indexOf('retriever_als_rank');
    const rows = 4000;
    const features = new Float32Array(rows * nf).fill(Number.NaN);
    const labels = new Float32Array(rows);
    const rng = new Rng(5);
    for (let r = 0; r < rows; r++) {
      const t = rng.float() * 3;
      const k = 1 + rng.int(200);
      features[r * nf + trending] = t;
      features[r * nf + rank] = k;
      labels[r] = (t > 1.2 ? 2 : 0) + (k <= 20 ? 1 : 0);
    }
    const model = trainLambdaMart(
      {
        nFeatures: nf,
        features,
        labels,
        groups: Int32Array.from({ length: rows / 20 + 1 }, (_, q) => q * 20),
      },
      null,
      { trees: 40, leaves: 8, minDataInLeaf: 10, featureFraction: 1, earlyStoppingRounds: 0 },
      { featureNames: names },
    );
    return storedRanker(model, { names }, retrievers, fc, 200, {});
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-ranker-'));
    const config = loadConfig({
      env: {},
      overrides: {
        dataDir: dir,
        store: { url: '' },
        training: { threads: 1, algorithm: 'als' },
        serving: { cacheTtlSeconds: 0 },
        // The demo's champion must answer with its CF ranking (the baseline below): no trained ranker.
        ranking: { train: false },
      },
    });
    cairn = await createEmbedded(config, { logger: createLogger('silent'), snapshotEveryMs: 0 });
    const seeded = await seedDemo(cairn, { users: 150, items: 60, events: 6000, seed: 5, categories: 4 });
    expect(seeded.modelVersion).not.toBeNull();
    for (let n = 1; n <= 150 && USERS.length < 4; n++) {
      const res = await get(`/v1/users/u${n}/recommendations?k=8`);
      if (res.body.source !== 'personalized' || res.body.items.length < 8) continue;
      USERS.push(`u${n}`);
      cf.set(`u${n}`, ids(res.body));
    }
    expect(USERS).toHaveLength(4);
    // A version carrying a ranker: the champion's own artifact plus `extra.ranker`, registered as the
    // training pipeline registers, then promoted over HTTP.
    const champion = (await cairn.registry.champion())!;
    const stored = await cairn.registry.load(champion);
    const mv = await cairn.registry.register(
      { ...stored, extra: { ...stored.extra, ranker: trainRanker() } },
      {
        algorithm: champion.algorithm,
        params: champion.params,
        trainingData: champion.trainingData,
        metrics: champion.metrics,
        trainSeconds: 0,
        configHash: champion.configHash,
      },
    );
    rankedVersion = mv.version;
    const promoted = await post(`/v1/models/${mv.version}/promote`, {});
    expect(promoted.status).toBe(200);
    // The serving replica follows the change log and hot-swaps.
    await until(
      () => get(`/v1/users/${USERS[0]}/recommendations?k=8`),
      (r) => r.body.model_version === rankedVersion,
    );
  }, 120_000);

  afterAll(async () => {
    await cairn?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('ranks with the promoted version’s ranker: scores and explanations are its own', async () => {
    let differs = 0;
    for (const u of USERS) {
      const res = await get(`/v1/users/${u}/recommendations?k=8&explain=true`);
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({
        model_version: rankedVersion,
        source: 'personalized',
        degraded: false,
      });
      const items = res.body.items as any[];
      expect(items).toHaveLength(8);
      for (let r = 0; r < items.length; r++) {
        const e = items[r].explanation;
        expect(e.model).toBe('lambdamart');
        expect(e.features.length).toBeLessThanOrEqual(15);
        const sum =
          (e.features as { contribution: number }[]).reduce((a, f) => a + f.contribution, 0) + e.bias;
        expect(sum).toBeCloseTo(items[r].score, 4);
        if (r > 0) expect(items[r].score).toBeLessThanOrEqual(items[r - 1].score);
        expect(typeof items[r].reason).toBe('string');
      }
      // Seen items stay out, as in the CF answer.
      const history = await cairn.online.recentEvents(u, 1000);
      const seen = new Set(history.map((e) => e.itemId));
      for (const id of ids(res.body)) expect(seen.has(id)).toBe(false);
      if (ids(res.body).join() !== cf.get(u)!.join()) differs++;
    }
    expect(differs).toBeGreaterThan(0);
    const metrics = await cairn.app.inject({ method: 'GET', url: '/metrics' });
    expect(metrics.body).toMatch(/cairn_ranker_requests_total\{outcome="ranked"\} [1-9]/);
    expect(metrics.body).toMatch(/cairn_ranker_duration_seconds_count [1-9]/);
  });

  it('an experiment arm with ranker: false is answered by the same model’s CF ranking', async () => {
    const created = await post('/v1/experiments', {
      id: 'no-ranker',
      variants: [
        { name: 'cf-a', weight: 1, ranker: false },
        { name: 'cf-b', weight: 1, ranker: false },
      ],
    });
    expect(created.status).toBe(201);
    for (const u of USERS) {
      const res = await until(
        () => get(`/v1/users/${u}/recommendations?k=8`),
        (r) => r.body.experiment != null,
      );
      expect(res.body.experiment.id).toBe('no-ranker');
      expect(res.body.model_version).toBe(rankedVersion);
      expect(ids(res.body)).toEqual(cf.get(u));
    }
  });
});
