/**
 * CanaryGuard on a real SQLite store (experiments, served log, feedback), change log and registry: a
 * canary whose planted CTR is below the control's by more than the margin is rolled back (stored,
 * announced, its version rejected, counted); one with too few impressions waits; one within the margin
 * keeps running.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Experiment, FeedbackRecord, ModelVersion, ServedRecord } from '../domain/types.ts';
import { createWorld, type World } from '../../test/fixtures/serving-world.ts';
import { armMetric, CanaryGuard } from './guard.ts';
import { computeResults } from './results.ts';

/** `requests` served answers of 5 items per arm, with `clicks` clicks on them. */
async function plant(
  world: World,
  experiment: Experiment,
  arm: string,
  requests: number,
  clicks: number,
  version: string,
): Promise<void> {
  const served: ServedRecord[] = [];
  const feedback: FeedbackRecord[] = [];
  for (let r = 0; r < requests; r++) {
    const requestId = `${experiment.id}-${arm}-${r}`;
    served.push({
      requestId,
      userId: `${arm}-user-${r % 40}`,
      mode: 'served',
      endpoint: 'recommendations',
      experimentId: experiment.id,
      variant: arm,
      modelVersion: version,
      source: 'personalized',
      items: Array.from({ length: 5 }, (_, p) => ({ itemId: `i${p}`, position: p, score: 1 - p / 10 })),
      at: Date.now(),
    });
    if (r < clicks) feedback.push({ requestId, itemId: 'i0', type: 'click', value: null, at: Date.now() });
  }
  await world.store.served.record(served);
  await world.store.served.addFeedback(feedback);
}

describe('CanaryGuard', () => {
  let world: World;
  let champion: ModelVersion;
  let challenger: ModelVersion;
  let guard: CanaryGuard;

  const canary = (id: string, minImpressions = 500) =>
    world.startExperiment(
      id,
      'canary',
      [
        { name: 'control', weight: 90 },
        { name: 'canary', weight: 10, modelVersion: challenger.version },
      ],
      { metric: 'ctr', margin: 0.2, minImpressions },
    );

  beforeEach(async () => {
    world = await createWorld();
    champion = await world.registerModel();
    await world.registry.promote(champion.version);
    challenger = await world.registerModel({ scrambled: true });
    guard = new CanaryGuard({
      experiments: world.store.experiments,
      served: world.store.served,
      changeLog: world.changeLog,
      registry: world.registry,
      metrics: world.metrics,
      logger: world.logger,
    });
  });
  afterEach(async () => {
    await guard.close();
    await world.close();
  });

  it('rolls back a canary whose CTR falls below the control by more than the margin', async () => {
    const e = await canary('exp-bad');
    // control: 300 requests × 5 items, 150 clicks (CTR 0.10); canary: 120 × 5, 18 clicks (CTR 0.03).
    await plant(world, e, 'control', 300, 150, champion.version);
    await plant(world, e, 'canary', 120, 18, challenger.version);
    const headBefore = await world.changeLog.head();

    const decisions = await guard.check();
    expect(decisions).toHaveLength(1);
    expect(decisions[0]).toMatchObject({
      experimentId: 'exp-bad',
      variant: 'canary',
      outcome: 'rolled_back',
    });
    expect(decisions[0].control).toBeCloseTo(0.1, 10);
    expect(decisions[0].challenger).toBeCloseTo(0.03, 10);

    const stored = (await world.store.experiments.get('exp-bad'))!;
    expect(stored.status).toBe('rolled_back');
    expect(stored.stopReason).toMatch(/canary ctr 0\.0300 is 70\.0 % below control/);
    expect(stored.stoppedAt).not.toBeNull();
    const announced = await world.changeLog.read(headBefore, 100);
    expect(announced.map((r) => r.value)).toContainEqual({ kind: 'experiment', experiment: stored });

    const rejected = await world.registry.get(challenger.version);
    expect(rejected.status).toBe('rejected');
    expect((await world.registry.get(champion.version)).status).toBe('champion');
    const rollbacks = (await world.metrics.registry.getSingleMetric('cairn_canary_rollbacks_total')!.get())
      .values;
    expect(rollbacks).toEqual([expect.objectContaining({ labels: { experiment: 'exp-bad' }, value: 1 })]);

    // Nothing left to watch: the next pass decides nothing and changes nothing.
    expect(await guard.check()).toEqual([]);
    expect(rollbacks[0].value).toBe(1);
  });

  it('waits for enough impressions in both arms', async () => {
    const e = await canary('exp-young', 1000);
    await plant(world, e, 'control', 300, 150, champion.version);
    await plant(world, e, 'canary', 120, 0, challenger.version);
    const [decision] = await guard.check();
    expect(decision.outcome).toBe('waiting');
    expect((await world.store.experiments.get('exp-young'))!.status).toBe('running');
    expect((await world.registry.get(challenger.version)).status).toBe('ready');
  });

  it('keeps a canary within the margin running', async () => {
    const e = await canary('exp-ok');
    await plant(world, e, 'control', 300, 150, champion.version);
    // CTR 0.085: 15 % below the control, inside the 20 % margin.
    await plant(world, e, 'canary', 200, 85, challenger.version);
    const [decision] = await guard.check();
    expect(decision.outcome).toBe('healthy');
    expect((await world.store.experiments.get('exp-ok'))!.status).toBe('running');
  });

  it('measures what the results report: ctr per impression, conversion rate per user', () => {
    const totals = {
      variant: 'x',
      users: 10,
      impressions: 200,
      clicks: 20,
      conversions: 5,
      clickingUsers: 5,
      convertingUsers: 3,
      revenue: 0,
      revenueSquares: 0,
    };
    const variants = [{ name: 'x', weight: 1, modelVersion: null, algorithm: null, ranker: null }];
    const [result] = computeResults({ id: 'e', variants }, [totals]).variants;
    expect(armMetric(result, 'ctr')).toBe(0.1);
    expect(armMetric(result, 'conversion_rate')).toBe(0.3);
    const [empty] = computeResults({ id: 'e', variants }, []).variants;
    expect(armMetric(empty, 'ctr')).toBeNull();
    expect(armMetric(empty, 'conversion_rate')).toBeNull();
  });
});
