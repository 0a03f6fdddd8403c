/**
 * The serving side as the composition roots build it (startServing), on a real SQLite store, change
 * log, registry and memory online state, with tiny ALS models fitted here: experiment routing from the
 * store and the change log, arms answered by their own model, the served log, shadow scoring that is
 * logged and never served, and a replica that starts while the experiment store is down.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { systemContext } from '../domain/context.ts';
import type { ModelVersion, RecommendationResult } from '../domain/types.ts';
import { assignVariant } from '../experiments/assignment.ts';
import { SqliteStore } from '../storage/sqlite/store.ts';
import { createWorld, startWorldServing, USER_IDS, type World } from '../../test/fixtures/serving-world.ts';
import type { Serving } from './serving.ts';

type DeepPartialConfig = Parameters<typeof createWorld>[0];

async function metricValues(world: World, name: string) {
  const metric = world.metrics.registry.getSingleMetric(name);
  if (!metric) return [];
  return (await metric.get()).values;
}

describe('startServing with experiments', () => {
  let world: World;
  let serving: Serving;
  let champion: ModelVersion;
  let challenger: ModelVersion;

  const settle = async () => serving.follower.caughtUp(await world.changeLog.head());
  const recommend = (user: string, requestId: string, k = 3): Promise<RecommendationResult> =>
    serving.recommender.recommend(systemContext(requestId), { userId: user, k });
  /** Lets the shadow scorings (setImmediate) run, then writes the served log. */
  const drain = async () => {
    await new Promise((r) => setImmediate(r));
    await serving.servedLog!.flush();
  };

  const open = async (overrides: DeepPartialConfig = {}) => {
    world = await createWorld(overrides);
    champion = await world.registerModel();
    await world.registry.promote(champion.version);
    challenger = await world.registerModel({ scrambled: true });
    serving = await startWorldServing(world, {
      experiments: world.store.experiments,
      served: world.store.served,
    });
  };

  afterEach(async () => {
    await serving?.close();
    await world?.close();
  });

  describe('with the answer cache on', () => {
    beforeEach(() => open());

    it('answers without an experiment carry experiment null and are recorded in the served log', async () => {
      const answer = await recommend('u0', 'req-plain');
      expect(answer.source).toBe('personalized');
      expect(answer.modelVersion).toBe(champion.version);
      expect(answer.experiment).toBeNull();
      await drain();
      const record = await world.store.served.get('req-plain', 'served');
      expect(record).toMatchObject({
        requestId: 'req-plain',
        userId: 'u0',
        mode: 'served',
        endpoint: 'recommendations',
        experimentId: null,
        variant: null,
        modelVersion: champion.version,
        source: 'personalized',
      });
      expect(record!.items).toEqual(
        answer.items.map((it, position) => ({ itemId: it.itemId, position, score: it.score })),
      );
      const written = await metricValues(world, 'cairn_served_log_records_total');
      expect(written.find((v) => v.labels.outcome === 'written')?.value).toBe(1);
    });

    it("routes each user to its arm, answers with the arm's model and never serves one arm's cached answer to another", async () => {
      // Champion answers for everyone first: these fill the cache under the champion's key.
      const before = new Map<string, RecommendationResult>();
      for (const u of USER_IDS) before.set(u, await recommend(u, `before-${u}`));

      const experiment = await world.startExperiment('exp-ab', 'ab', [
        { name: 'control', weight: 50 },
        { name: 'challenger', weight: 50, modelVersion: challenger.version },
      ]);
      await settle();
      expect(serving.pool.get(challenger.version)?.version.version).toBe(challenger.version);

      const arms = { control: 0, challenger: 0 };
      let differing = 0;
      for (const u of USER_IDS) {
        const arm = assignVariant(experiment, u)!.name as 'control' | 'challenger';
        arms[arm]++;
        const answer = await recommend(u, `ab-${u}`);
        expect(answer.experiment).toEqual({ id: 'exp-ab', variant: arm });
        expect(answer.source).toBe('personalized');
        expect(answer.fallbackReason).toBeNull();
        if (arm === 'control') {
          expect(answer.modelVersion).toBe(champion.version);
          expect(answer.items).toEqual(before.get(u)!.items);
        } else {
          expect(answer.modelVersion).toBe(challenger.version);
          if (JSON.stringify(answer.items) !== JSON.stringify(before.get(u)!.items)) differing++;
        }
      }
      expect(arms.control).toBeGreaterThan(5);
      expect(arms.challenger).toBeGreaterThan(5);
      // The scrambled challenger really ranks differently (so the checks above can tell them apart).
      expect(differing).toBeGreaterThan(arms.challenger / 2);

      await drain();
      const records = await world.store.served.list({ experimentId: 'exp-ab', mode: 'served', limit: 1000 });
      expect(records).toHaveLength(USER_IDS.length);
      for (const r of records)
        expect(r.modelVersion).toBe(r.variant === 'control' ? champion.version : challenger.version);
      const assigned = await metricValues(world, 'cairn_experiment_assignments_total');
      expect(assigned.reduce((sum, v) => sum + v.value, 0)).toBe(USER_IDS.length);

      // Stopped: every challenger user gets the champion's answer again, not their cached challenger one.
      await world.store.experiments.update('exp-ab', { status: 'stopped', stoppedAt: Date.now() });
      await world.changeLog.append([
        { kind: 'experiment', experiment: (await world.store.experiments.get('exp-ab'))! },
      ]);
      await settle();
      expect(serving.pool.models()).toHaveLength(0);
      for (const u of USER_IDS) {
        const answer = await recommend(u, `after-${u}`);
        expect(answer.experiment).toBeNull();
        expect(answer.modelVersion).toBe(champion.version);
        expect(answer.items).toEqual(before.get(u)!.items);
      }
    });

    it('serves an arm whose model cannot be loaded with the champion and says so', async () => {
      await world.startExperiment('exp-broken', 'ab', [
        { name: 'control', weight: 0 },
        { name: 'broken', weight: 100, modelVersion: 'no-such-version' },
      ]);
      await settle();
      expect(serving.pool.miss('no-such-version')).toBe('failed');
      const answer = await recommend('u5', 'req-broken');
      expect(answer).toMatchObject({
        source: 'personalized',
        modelVersion: champion.version,
        fallbackReason: 'variant_model_unavailable',
        degraded: false,
        experiment: { id: 'exp-broken', variant: 'broken' },
      });
      expect(answer.items.length).toBe(3);
    });
  });

  describe('with opted-out users', () => {
    beforeEach(() => open());

    it('keeps an opted-out user out of every experiment', async () => {
      await world.startExperiment('exp-all', 'ab', [
        { name: 'control', weight: 0 },
        { name: 'challenger', weight: 100, modelVersion: challenger.version },
      ]);
      await settle();
      const user = { id: 'u7', attributes: {}, segments: [], optOut: true, createdAt: 1, updatedAt: 1 };
      await world.online.applyChanges([{ seq: 1, value: { kind: 'user', user } }]);
      const out = await recommend('u7', 'req-opted-out');
      expect(out).toMatchObject({
        source: 'fallback',
        fallbackReason: 'opt_out',
        experiment: null,
        modelVersion: champion.version,
      });
      const inside = await recommend('u8', 'req-inside');
      expect(inside.experiment).toEqual({ id: 'exp-all', variant: 'challenger' });
      await drain();
      expect((await world.store.served.get('req-opted-out'))?.variant).toBeNull();
      const assigned = await metricValues(world, 'cairn_experiment_assignments_total');
      expect(assigned.reduce((sum, v) => sum + v.value, 0)).toBe(1);
    });
  });

  describe('with the answer cache off', () => {
    beforeEach(() => open({ serving: { cacheTtlSeconds: 0 } }));

    it('shadow answers are logged under the same request id and never served', async () => {
      const reference = new Map<string, RecommendationResult>();
      for (const u of USER_IDS) reference.set(u, await recommend(u, `ref-${u}`));

      await world.startExperiment('exp-shadow', 'shadow', [
        { name: 'challenger', weight: 100, modelVersion: challenger.version },
      ]);
      await settle();

      let shadowOnlyItems = 0;
      for (const u of USER_IDS) {
        const answer = await recommend(u, `shadow-${u}`);
        // Served exactly as without the shadow: the champion's answer, no experiment arm.
        expect(answer.modelVersion).toBe(champion.version);
        expect(answer.experiment).toBeNull();
        expect(answer.items).toEqual(reference.get(u)!.items);
        await drain();
        const shadow = await world.store.served.get(`shadow-${u}`, 'shadow');
        expect(shadow).toMatchObject({
          requestId: `shadow-${u}`,
          userId: u,
          mode: 'shadow',
          experimentId: 'exp-shadow',
          variant: 'challenger',
          modelVersion: challenger.version,
        });
        const served = new Set(answer.items.map((i) => i.itemId));
        for (const it of shadow!.items) if (!served.has(it.itemId)) shadowOnlyItems++;
        const record = await world.store.served.get(`shadow-${u}`, 'served');
        expect(record!.items.map((i) => i.itemId)).toEqual(answer.items.map((i) => i.itemId));
      }
      // The shadow model ranks differently, and none of its own picks was ever served.
      expect(shadowOnlyItems).toBeGreaterThan(USER_IDS.length / 2);

      const requests = await metricValues(world, 'cairn_shadow_requests_total');
      expect(requests.find((v) => v.labels.outcome === 'scored')?.value).toBe(USER_IDS.length);
      const overlap = await metricValues(world, 'cairn_shadow_overlap_ratio');
      const count = overlap.find(
        (v) => (v as { metricName?: string }).metricName === 'cairn_shadow_overlap_ratio_count',
      );
      expect(count?.value).toBe(USER_IDS.length);
    });

    it('a shadow weight samples that share of requests', async () => {
      await world.startExperiment('exp-half', 'shadow', [
        { name: 'challenger', weight: 25, modelVersion: challenger.version },
      ]);
      await settle();
      let n = 0;
      for (let r = 0; r < 400; r++) await recommend(USER_IDS[r % USER_IDS.length], `half-${r}`);
      await drain();
      n = (await world.store.served.list({ experimentId: 'exp-half', mode: 'shadow', limit: 1000 })).length;
      expect(n).toBeGreaterThan(60);
      expect(n).toBeLessThan(140);
    });
  });
});

describe('startServing while the experiment store is down', () => {
  let world: World;
  let serving: Serving;

  afterEach(async () => {
    await serving?.close();
    await world?.close();
  });

  it('starts routing nobody, then follows experiments from the change log', async () => {
    world = await createWorld();
    const champion = await world.registerModel();
    await world.registry.promote(champion.version);
    const challenger = await world.registerModel({ scrambled: true });
    const down = new SqliteStore({ path: ':memory:' });
    await down.migrate();
    await down.close();
    serving = await startWorldServing(world, { experiments: down.experiments, served: world.store.served });
    expect(serving.experiments.list()).toEqual([]);
    const before = await serving.recommender.recommend(systemContext('r1'), { userId: 'u1', k: 3 });
    expect(before.experiment).toBeNull();

    await world.startExperiment('exp-late', 'ab', [
      { name: 'control', weight: 0 },
      { name: 'challenger', weight: 100, modelVersion: challenger.version },
    ]);
    await serving.follower.caughtUp(await world.changeLog.head());
    const after = await serving.recommender.recommend(systemContext('r2'), { userId: 'u1', k: 3 });
    expect(after.experiment).toEqual({ id: 'exp-late', variant: 'challenger' });
    expect(after.modelVersion).toBe(challenger.version);
  });
});
