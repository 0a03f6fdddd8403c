/**
 * The training pipeline's self-tuning end to end: a real SQLite store and registry, the fit run in its
 * worker thread, the search recorded in the registered version's lineage and warm-started from the
 * champion's parameters.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { getAlgorithm } from '../algorithms/index.ts';
import { loadConfig, type Config, type DeepPartial } from '../config/load.ts';
import type { CairnEvent } from '../domain/types.ts';
import type { JobContext } from '../jobs/queue.ts';
import { createLogger } from '../monitoring/logger.ts';
import { createMetrics } from '../monitoring/metrics.ts';
import { ModelRegistry } from '../registry/registry.ts';
import { FileArtifactStore } from '../storage/files/artifacts.ts';
import { SqliteStore } from '../storage/sqlite/store.ts';
import { createPseudonymizer } from '../security/pseudonym.ts';
import { runTrainingJob, tuningInput } from './pipeline.ts';

const logger = createLogger('silent');

/** Two taste groups: 120 users with 12 of the 30 items of their group each. */
function events(): CairnEvent[] {
  const out: CairnEvent[] = [];
  let n = 0;
  for (let u = 0; u < 120; u++) {
    const base = u % 2 === 0 ? 0 : 30;
    for (let j = 0; j < 12; j++) {
      out.push({
        eventId: `e${++n}`,
        userId: `u${u}`,
        itemId: `i${base + ((u * 7 + j * 11) % 30)}`,
        type: 'view',
        value: null,
        timestamp: 1_700_000_000_000 + n * 1000,
        context: null,
      });
    }
  }
  return out;
}

describe('training with self-tuning', () => {
  let dir: string;
  let store: SqliteStore;
  let artifacts: FileArtifactStore;
  let registry: ModelRegistry;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-pipeline-'));
    store = new SqliteStore({ path: join(dir, 'cairn.db') });
    await store.migrate();
    artifacts = new FileArtifactStore({ root: dir });
    registry = new ModelRegistry(store.models, artifacts, logger);
    await store.events.append(events());
  });

  afterEach(async () => {
    await store.close();
    await artifacts.close();
    await rm(dir, { recursive: true, force: true });
  });

  const train = (
    training: DeepPartial<Config['training']>,
    jobId: string,
    storeCaughtUp?: (ms: number) => Promise<boolean>,
  ) => {
    const config = loadConfig({
      env: {},
      overrides: { training: { algorithm: 'itemknn', threads: 1, ...training } },
    });
    const ctx: JobContext = {
      jobId,
      attempt: 1,
      progress: () => undefined,
      signal: new AbortController().signal,
      logger,
    };
    const pseudonymize = createPseudonymizer('pipeline-test');
    return runTrainingJob(
      { store, config, registry, metrics: createMetrics(), logger, pseudonymize, storeCaughtUp },
      {},
      ctx,
    );
  };

  it('records the search in the lineage; the next training starts from the champion’s parameters', async () => {
    const first = await train({ tuneTrials: 3, tuneBudgetSeconds: 1e6 }, 'j1');
    const v1 = await registry.get(first.version as string);
    const t1 = v1.lineage!.tuning!;
    expect(t1.trials).toHaveLength(3);
    expect(t1.metric).toBe('ndcg@10');
    expect(t1.warmStart).toBeNull();
    const defaults = getAlgorithm('itemknn').defaults;
    expect(t1.trials[0].params).toMatchObject({ neighbors: defaults.neighbors, shrink: defaults.shrink });
    expect(t1.best).toBe(Math.max(...t1.trials.map((t) => t.value ?? -1)));
    // The version carries the chosen parameters.
    const winner = t1.trials.find((t) => t.value === t1.best)!;
    expect(v1.params).toMatchObject(winner.params);
    expect(first.params).toEqual(v1.params);
    expect(first.outcome).toBe('promoted');

    // Next training, a zero budget: exactly one trial, the champion's parameters.
    const second = await train({ tuneTrials: 5, tuneBudgetSeconds: 0 }, 'j2');
    const t2 = (await registry.get(second.version as string)).lineage!.tuning!;
    expect(t2.warmStart).toBe(v1.version);
    expect(t2.trials).toHaveLength(1);
    expect(t2.trials[0].params).toMatchObject(
      Object.fromEntries(Object.keys(t2.trials[0].params).map((k) => [k, v1.params[k]])),
    );
  }, 60_000);

  it('learns the ranker from the logged answers with clicks too, and reports them in the version', async () => {
    // 30 answers served to even users, each showing five items of the other group (never interacted
    // with) and clicked on one; 10 more without an outcome, and one for a user the store never saw.
    const at = 1_700_000_000_000 + 500_000;
    const shown = (u: number) => [1, 2, 3, 4, 5].map((j) => `i${30 + ((u + j) % 30)}`);
    await store.served.record(
      Array.from({ length: 41 }, (_, n) => ({
        requestId: `r${n}`,
        userId: n === 40 ? 'stranger' : `u${(n % 60) * 2}`,
        mode: 'served' as const,
        endpoint: 'recommendations',
        experimentId: null,
        variant: null,
        modelVersion: null,
        source: 'fallback' as const,
        items: shown(n).map((itemId, position) => ({ itemId, position, score: 1 })),
        at: at + n,
      })),
    );
    await store.served.addFeedback(
      [...Array.from({ length: 30 }, (_, n) => n), 40].map((n) => ({
        requestId: `r${n}`,
        itemId: shown(n)[n % 5],
        type: 'click' as const,
        value: null,
        at: at + n + 1,
      })),
    );
    const out = await train({ algorithm: 'als' }, 'j1');
    const m = (await registry.get(out.version as string)).metrics;
    expect(m.ranker_logged_queries + (m.ranker_logged_valid_queries ?? 0)).toBe(30);
    expect(m.ranker_logged_unknown).toBe(1);
    expect(m.ranker_logged_leaked).toBe(0);
  }, 60_000);

  it('waits for the store writer before reading the store; trains on what it holds if it waits in vain', async () => {
    // Events the log acknowledged but the store writer has not written yet (NATS deployments).
    const late = events()
      .slice(0, 240)
      .map((e, n) => ({ ...e, eventId: `late${n}`, userId: `late-${e.userId}` }));
    const written = await train({}, 'j1', async () => {
      await store.events.append(late);
      return true;
    });
    const seqOf = async (out: { version?: unknown }) =>
      (await registry.get(out.version as string)).lineage!.data.lastEventSeq;
    expect(await seqOf(written)).toBe(events().length + late.length);
    let asked = 0;
    const behind = await train({}, 'j2', (ms) => {
      asked = ms;
      return Promise.resolve(false);
    });
    expect(asked).toBeGreaterThan(0);
    expect(await seqOf(behind)).toBe(events().length + late.length);
  }, 60_000);

  it('tunes nothing by default', async () => {
    const out = await train({}, 'j1');
    expect((await registry.get(out.version as string)).lineage!.tuning).toBeUndefined();
  }, 60_000);
});

describe('tuningInput', () => {
  it('fixes requested parameters and configured keys outside the space; the champion only if same algorithm', () => {
    const config = loadConfig({ env: {}, overrides: { training: { tuneTrials: 4, tuneBudgetSeconds: 30 } } });
    const space = getAlgorithm('als').space;
    const champ = { version: 'v3', algorithm: 'als', params: { factors: 32 } };
    const t = tuningInput(config, space, 'als', { factors: 48, cgSteps: 4 }, { alpha: 2 }, champ)!;
    expect(t.fixed).toEqual({ cgSteps: 4, alpha: 2 });
    expect(t.defaults.factors).toBe(48);
    expect(t.warmStart).toEqual({ version: 'v3', params: { factors: 32 } });
    expect(t).toMatchObject({ trials: 4, budgetSeconds: 30, metric: { name: 'ndcg', k: 10 } });
    expect(tuningInput(config, space, 'als', {}, {}, { ...champ, algorithm: 'bpr' })!.warmStart).toBeNull();
    const off = loadConfig({ env: {} });
    expect(tuningInput(off, space, 'als', {}, {}, champ)).toBeNull();
  });
});
