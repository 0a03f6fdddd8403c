/**
 * ExperimentRouter on a real SQLite experiment store: start-up load of the running experiments, changes
 * applied in log order (a change beats an older load), deterministic assignment by user or session,
 * shadows kept apart from routing, and a store that is down at start (retried in the background).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { systemContext, createContext } from '../domain/context.ts';
import type { Experiment, ExperimentVariant } from '../domain/types.ts';
import { assignVariant } from '../experiments/assignment.ts';
import { createLogger } from '../monitoring/logger.ts';
import { createMetrics } from '../monitoring/metrics.ts';
import type { ExperimentStore } from '../storage/ports.ts';
import { SqliteStore } from '../storage/sqlite/store.ts';
import { ExperimentRouter } from './experiments.ts';

const logger = createLogger('silent');

const variant = (name: string, weight: number, modelVersion: string | null = null): ExperimentVariant => ({
  name,
  weight,
  modelVersion,
  algorithm: null,
  ranker: null,
});

const experiment = (id: string, patch: Partial<Experiment> = {}): Experiment => ({
  id,
  kind: 'ab',
  status: 'running',
  variants: [variant('control', 50), variant('b', 50, `${id}-model`)],
  unit: 'user',
  guard: null,
  createdAt: 1000,
  createdBy: 'test',
  stoppedAt: null,
  stopReason: null,
  ...patch,
});

describe('ExperimentRouter', () => {
  let store: SqliteStore;

  beforeEach(async () => {
    store = new SqliteStore({ path: ':memory:' });
    await store.migrate();
  });
  afterEach(async () => {
    await store.close().catch(() => undefined);
  });

  it('loads the running experiments and assigns users deterministically by hash', async () => {
    const e = experiment('exp-1');
    await store.experiments.create(e);
    await store.experiments.create(experiment('old', { status: 'stopped', createdAt: 1 }));
    const router = new ExperimentRouter(store.experiments, createMetrics({ defaultMetrics: false }), logger);
    expect(await router.load()).toBe(true);
    expect(router.list().map((x) => x.id)).toEqual(['exp-1']);
    expect(router.versions()).toEqual(['exp-1-model']);
    const counts: Record<string, number> = {};
    for (let i = 0; i < 2000; i++) {
      const arm = router.assign(systemContext(), { user: `user-${i}` })!;
      expect(arm.experiment.id).toBe('exp-1');
      expect(arm.variant.name).toBe(assignVariant(e, `user-${i}`)!.name);
      counts[arm.variant.name] = (counts[arm.variant.name] ?? 0) + 1;
    }
    expect(Math.abs(counts.control / 2000 - 0.5)).toBeLessThan(0.05);
  });

  it('follows changes: a stopped experiment routes nobody, shadows never route', async () => {
    const router = new ExperimentRouter(store.experiments, createMetrics({ defaultMetrics: false }), logger);
    await router.load();
    expect(router.assign(systemContext(), { user: 'u1' })).toBeNull();
    const shadow = experiment('shadow-1', { kind: 'shadow', variants: [variant('challenger', 10, 'sv')] });
    router.apply(shadow);
    expect(router.assign(systemContext(), { user: 'u1' })).toBeNull();
    expect(router.shadows().map((x) => x.id)).toEqual(['shadow-1']);
    router.apply(experiment('exp-2'));
    expect(router.assign(systemContext(), { user: 'u1' })?.experiment.id).toBe('exp-2');
    expect(router.versions().sort()).toEqual(['exp-2-model', 'sv']);
    router.apply(experiment('exp-2', { status: 'rolled_back', stopReason: 'worse' }));
    expect(router.assign(systemContext(), { user: 'u1' })).toBeNull();
    expect(router.versions()).toEqual(['sv']);
  });

  it('the oldest routing experiment wins when two run; a change is newer than a load', async () => {
    await store.experiments.create(experiment('late', { createdAt: 2000 }));
    const router = new ExperimentRouter(store.experiments, createMetrics({ defaultMetrics: false }), logger);
    // The change log said `late` stopped before the (older) list read completed: it stays stopped.
    router.apply(experiment('late', { status: 'stopped' }));
    await router.load();
    expect(router.list()).toEqual([]);
    router.apply(experiment('b-exp', { createdAt: 500 }));
    router.apply(experiment('a-exp', { createdAt: 900 }));
    expect(router.routing()?.id).toBe('b-exp');
  });

  it('assigns by session for session-unit experiments, and keeps an assignment made upstream', () => {
    const router = new ExperimentRouter(null, createMetrics({ defaultMetrics: false }), logger);
    const e = experiment('sess', { unit: 'session' });
    router.apply(e);
    for (let i = 0; i < 50; i++) {
      const arm = router.assign(systemContext(), { user: 'same-user', session: `s${i}` })!;
      expect(arm.variant.name).toBe(assignVariant(e, `s${i}`)!.name);
    }
    const upstream = createContext({
      principal: { id: 'system', kind: 'system', scopes: ['admin'] },
      experiment: { experiment: 'sess', variant: 'b' },
    });
    for (let i = 0; i < 20; i++) expect(router.assign(upstream, { user: `x${i}` })!.variant.name).toBe('b');
  });

  it('starts empty when the store is down, and loads once it answers', async () => {
    await store.experiments.create(experiment('exp-3'));
    const down = new SqliteStore({ path: ':memory:' });
    await down.migrate();
    await down.close();
    let current: Pick<ExperimentStore, 'list'> = down.experiments;
    const router = new ExperimentRouter(
      { list: (options) => current.list(options) },
      createMetrics({ defaultMetrics: false }),
      logger,
      { retryMs: 10 },
    );
    let changes = 0;
    router.onChange(() => changes++);
    expect(await router.load()).toBe(false);
    expect(router.list()).toEqual([]);
    current = store.experiments;
    for (let i = 0; i < 300 && router.list().length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(router.list().map((x) => x.id)).toEqual(['exp-3']);
    expect(changes).toBe(1);
    await router.close();
  });
});
