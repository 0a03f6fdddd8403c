/**
 * The drift monitor on a real SQLite store and event log (temp directory) and a real registry with a
 * champion whose lineage carries a drift reference and whose artifact carries its popularity buckets:
 * live events like the training snapshot read as no drift, a shifted window as the exact PSI of the
 * shift, the window's start point, and no sample without a reference.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { getAlgorithm } from '../algorithms/index.ts';
import { csrFromCoo } from '../algorithms/sparse.ts';
import type { CairnEvent, DriftReference, ModelVersion } from '../domain/types.ts';
import { ModelRegistry } from '../registry/registry.ts';
import { FileArtifactStore } from '../storage/files/artifacts.ts';
import { SqliteEventLog } from '../storage/sqlite/log.ts';
import { SqliteStore } from '../storage/sqlite/store.ts';
import { buildDriftReference, psi, psiByKey } from './drift.ts';
import { DriftMonitor, MIN_DRIFT_SAMPLE } from './drift-monitor.ts';
import { createLogger } from './logger.ts';
import { createMetrics } from './metrics.ts';

const logger = createLogger('silent');
const TYPES = {
  view: { weight: 1 },
  purchase: { weight: 5 },
  click: { weight: 2 },
  dislike: { weight: 0, negative: true },
};
const ITEMS = Array.from({ length: 20 }, (_, i) => `i${i}`);
/** Training popularity: item i was interacted with 20 − i times. */
const ITEM_COUNTS = ITEMS.map((_, i) => 20 - i);
const BUCKETS = 4;

let seq = 0;
function ev(type: string, itemId: string, user = 'u'): CairnEvent {
  seq++;
  return {
    eventId: `e${seq}`,
    userId: user,
    itemId,
    type,
    value: null,
    timestamp: 1_700_000_000_000 + seq,
    context: null,
  };
}

/** Events exactly like the snapshot: item i (20 − i) times, every fifth one a purchase (210 events). */
function likeSnapshot(): CairnEvent[] {
  const out: CairnEvent[] = [];
  let k = 0;
  ITEMS.forEach((item, i) => {
    for (let j = 0; j < ITEM_COUNTS[i]; j++) out.push(ev(k++ % 5 === 4 ? 'purchase' : 'view', item));
  });
  return out;
}

describe('DriftMonitor', () => {
  let dir: string;
  let store: SqliteStore;
  let eventLog: SqliteEventLog;
  let artifacts: FileArtifactStore;
  let registry: ModelRegistry;
  let reference: DriftReference;
  let monitor: DriftMonitor | null;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-drift-'));
    store = new SqliteStore({ path: join(dir, 'cairn.db') });
    await store.migrate();
    eventLog = new SqliteEventLog(store);
    artifacts = new FileArtifactStore({ root: dir });
    registry = new ModelRegistry(store.models, artifacts, logger);
    monitor = null;
  });

  afterEach(async () => {
    await monitor?.close();
    await eventLog.close();
    await store.close();
    await artifacts.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** Registers and promotes a champion trained up to `lastEventSeq`, with or without drift data. */
  async function champion(lastEventSeq: number, withReference = true): Promise<ModelVersion> {
    const built = buildDriftReference({
      typeCounts: { view: 168, purchase: 42 },
      itemCounts: ITEM_COUNTS,
      scores: [0.1, 0.2, 0.3],
      buckets: BUCKETS,
    });
    reference = built.reference;
    const params = { factors: 2, iterations: 1 };
    const fitted = await getAlgorithm('als').fit(
      csrFromCoo(
        1,
        ITEMS.length,
        ITEMS.map(() => 0),
        ITEMS.map((_, i) => i),
        null,
      ),
      params,
      { threads: 1, seed: 1 },
    );
    const mv = await registry.register(
      {
        artifact: fitted.toArtifact(),
        userIds: ['u'],
        itemIds: ITEMS,
        extra: withReference ? { popularityBuckets: built.popularityBuckets } : {},
      },
      {
        algorithm: 'als',
        params,
        trainingData: { users: 1, items: ITEMS.length, interactions: 210, events: 210, lastEventSeq },
        metrics: {},
        trainSeconds: 0,
        configHash: 'test',
      },
    );
    if (withReference)
      await store.models.update(mv.version, {
        lineage: {
          trigger: { kind: 'manual', key: null, requestedBy: null, jobId: null },
          data: { lastEventSeq, newestEventAt: 0, trainingSetHash: 'x' },
          code: { version: 'test', commit: null },
          gate: null,
          drift: reference,
          audit: [],
        },
      });
    return registry.promote(mv.version);
  }

  const start = (window: number) => {
    monitor = new DriftMonitor({ eventLog, registry, logger, window, types: TYPES });
    return monitor;
  };

  it('reads live events like the snapshot as no drift, and a shifted window as its exact PSI', async () => {
    await eventLog.append(likeSnapshot()); // the training data itself (seq ≤ 210)
    const mv = await champion(await eventLog.head());
    const m = start(300);
    const metrics = createMetrics({ defaultMetrics: false });
    metrics.watchDrift(() => m.values());
    await m.useChampion(mv);
    expect(m.referenceVersion).toBe(mv.version);
    expect(m.sampleSize).toBe(0); // nothing after the snapshot yet
    expect(m.values()).toEqual({ event_types: null, item_popularity: null });

    await eventLog.append(likeSnapshot());
    await m.caughtUp(await eventLog.head());
    expect(m.sampleSize).toBe(210);
    const same = m.values();
    expect(same.event_types).toBeCloseTo(0, 12);
    expect(same.item_popularity).toBeCloseTo(0, 12);

    // 300 clicks on items the model never saw push the whole window out: all "click", all unseen.
    await eventLog.append(Array.from({ length: 300 }, (_, i) => ev('click', `new-${i % 7}`)));
    await m.caughtUp(await eventLog.head());
    expect(m.sampleSize).toBe(300);
    const shifted = m.values();
    expect(shifted.event_types).toBeCloseTo(psiByKey(reference.eventTypes, { click: 300 }), 10);
    expect(shifted.item_popularity).toBeCloseTo(psi(reference.itemPopularity, [0, 0, 0, 0, 300]), 10);
    expect(shifted.event_types).toBeGreaterThan(0.25);
    expect(shifted.item_popularity).toBeGreaterThan(0.25);

    const text = await metrics.registry.metrics();
    expect(text).toMatch(/^cairn_drift_psi\{dimension="event_types"\} \d/m);
    expect(text).toMatch(/^cairn_drift_psi\{dimension="item_popularity"\} \d/m);
  });

  it('counts every event in the type mix but only positive interactions in item popularity', async () => {
    const mv = await champion(0);
    const m = start(1000);
    await m.useChampion(mv);
    // The head bucket only, plus as many dislikes (negative: no popularity) on the tail.
    const events = [
      ...Array.from({ length: 150 }, () => ev('view', 'i0')),
      ...Array.from({ length: 150 }, () => ev('dislike', 'i19')),
    ];
    await eventLog.append(events);
    await m.caughtUp(await eventLog.head());
    const v = m.values();
    expect(v.event_types).toBeCloseTo(psiByKey(reference.eventTypes, { view: 150, dislike: 150 }), 10);
    expect(v.item_popularity).toBeCloseTo(psi(reference.itemPopularity, [150, 0, 0, 0, 0]), 10);
  });

  it('starts at max(champion watermark, head − window), and again when the champion changes', async () => {
    await eventLog.append(Array.from({ length: 500 }, (_, i) => ev('view', ITEMS[i % 20])));
    const first = await champion(100);
    const m = start(200);
    await m.useChampion(first);
    await m.caughtUp(await eventLog.head());
    expect(m.sampleSize).toBe(200); // head − window = 300 > 100
    expect(m.position).toBe(500);

    const second = await champion(450);
    await m.useChampion(second);
    await m.caughtUp(await eventLog.head());
    expect(m.referenceVersion).toBe(second.version);
    expect(m.sampleSize).toBe(50); // only what the new champion did not see
    expect(m.values().event_types).toBeNull(); // fewer than MIN_DRIFT_SAMPLE

    await eventLog.append(Array.from({ length: MIN_DRIFT_SAMPLE - 50 }, () => ev('view', 'i0')));
    await m.caughtUp(await eventLog.head());
    expect(m.values().event_types).not.toBeNull();
  });

  it('measures nothing for a champion without a drift reference, or without a champion', async () => {
    await eventLog.append(likeSnapshot());
    const mv = await champion(0, false);
    const m = start(300);
    const metrics = createMetrics({ defaultMetrics: false });
    metrics.watchDrift(() => m.values());
    await m.useChampion(mv);
    expect(m.referenceVersion).toBeNull();
    expect(m.position).toBe(0);
    expect(m.values()).toEqual({ event_types: null, item_popularity: null });
    expect(await metrics.registry.metrics()).not.toMatch(/^cairn_drift_psi\{/m);

    const withRef = await champion(0);
    await m.useChampion(withRef);
    await m.caughtUp(await eventLog.head());
    expect(m.values().event_types).not.toBeNull();
    await m.useChampion(null);
    expect(m.referenceVersion).toBeNull();
    expect(m.values().event_types).toBeNull();
  });
});
