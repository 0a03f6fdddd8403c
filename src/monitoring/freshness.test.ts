/**
 * The freshness monitor over a real registry (SQLite store in a temp directory): what counts as the last
 * success and the last failure, staleness against the age limit, the gauges it feeds, the champion
 * listener, and the last known state kept (and marked not current) while the store is unreachable.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ModelStatus, ModelVersion } from '../domain/types.ts';
import { ModelRegistry } from '../registry/registry.ts';
import { FileArtifactStore } from '../storage/files/artifacts.ts';
import { SqliteStore } from '../storage/sqlite/store.ts';
import { FRESHNESS_LIST_LIMIT, FreshnessMonitor, formatSeconds, summarize } from './freshness.ts';
import { createLogger } from './logger.ts';
import { createMetrics } from './metrics.ts';

const logger = createLogger('silent');
const T0 = Date.UTC(2024, 0, 1);
const HOUR = 3_600_000;

let n = 0;
function row(status: ModelStatus, createdAt: number, extra: Partial<ModelVersion> = {}): ModelVersion {
  n++;
  return {
    version: `v${String(n).padStart(3, '0')}-${status}`,
    algorithm: 'als',
    params: {},
    status,
    trainingData: { users: 1, items: 1, interactions: 1, events: 1, lastEventSeq: 1 },
    metrics: status === 'failed' ? {} : { 'ndcg@10': 0.25, 'recall@10': 0.4 },
    trainSeconds: 1,
    artifactPath: `models/v${n}.cairn`,
    checksum: 'x',
    configHash: 'h',
    parentVersion: null,
    createdAt,
    promotedAt: null,
    error: status === 'failed' ? 'CAIRN_NOT_ENOUGH_DATA: too few interactions' : null,
    lineage: null,
    ...extra,
  };
}

describe('summarize', () => {
  it('counts ready, champion, retired and rejected as successes; the newest finished row decides "last failed"', () => {
    const champion = row('champion', T0);
    const rejected = row('rejected', T0 + HOUR);
    const failed = row('failed', T0 + 2 * HOUR);
    const training = row('training', T0 + 3 * HOUR);
    const s = summarize(champion, [training, failed, rejected, champion], T0 + 4 * HOUR);
    expect(s.lastSuccess).toEqual({ version: rejected.version, status: 'rejected', at: T0 + HOUR });
    expect(s.lastFailure).toEqual({ version: failed.version, at: T0 + 2 * HOUR, error: failed.error });
    expect(s.lastTrainingFailed).toBe(true);

    // A successful training after the failure clears "last failed" but keeps the failure's time.
    const retrained = row('ready', T0 + 5 * HOUR);
    const after = summarize(champion, [retrained, training, failed, rejected, champion], T0 + 6 * HOUR);
    expect(after.lastTrainingFailed).toBe(false);
    expect(after.lastSuccess?.version).toBe(retrained.version);
    expect(after.lastFailure?.version).toBe(failed.version);
  });

  it('falls back to the champion as the last success when the newest rows are all failures', () => {
    const champion = row('champion', T0);
    const failures = Array.from({ length: 3 }, (_, i) => row('failed', T0 + (3 - i) * HOUR));
    const s = summarize(champion, failures, T0 + 4 * HOUR);
    expect(s.lastSuccess).toEqual({ version: champion.version, status: 'champion', at: T0 });
    expect(s.lastFailure?.at).toBe(T0 + 3 * HOUR);
    expect(s.lastTrainingFailed).toBe(true);
    expect(summarize(null, [], T0)).toMatchObject({
      lastSuccess: null,
      lastFailure: null,
      lastTrainingFailed: false,
    });
  });
});

describe('formatSeconds', () => {
  it('prints the two largest units', () => {
    expect(formatSeconds(0)).toBe('0s');
    expect(formatSeconds(59.6)).toBe('1m');
    expect(formatSeconds(90_061)).toBe('1d 1h');
    expect(formatSeconds(3_725)).toBe('1h 2m');
    expect(formatSeconds(8 * 86_400)).toBe('8d');
  });
});

describe('FreshnessMonitor', () => {
  let dir: string;
  let store: SqliteStore;
  let artifacts: FileArtifactStore;
  let registry: ModelRegistry;
  let now: number;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-freshness-'));
    store = new SqliteStore({ path: join(dir, 'cairn.db') });
    await store.migrate();
    artifacts = new FileArtifactStore({ root: dir });
    registry = new ModelRegistry(store.models, artifacts, logger);
    now = T0 + 10 * HOUR;
  });

  afterEach(async () => {
    await store.close().catch(() => undefined);
    await artifacts.close();
    await rm(dir, { recursive: true, force: true });
  });

  const monitor = (maxModelAgeSeconds: number) =>
    new FreshnessMonitor({ registry, logger, intervalSeconds: 3600, maxModelAgeSeconds, now: () => now });

  async function insertChampion(createdAt: number): Promise<ModelVersion> {
    const mv = row('ready', createdAt);
    await store.models.insert(mv);
    return store.models.promote(mv.version, createdAt);
  }

  it('reports ok, then stale once the champion is older than the limit (0: never), with its age', async () => {
    const champion = await insertChampion(T0);
    const m = monitor(12 * 3600);
    await m.check();
    expect(m.state()).toMatchObject({ current: true, checkedAt: now, lastTrainingFailed: false });
    expect(m.state().champion?.version).toBe(champion.version);
    expect(m.assess()).toEqual({ status: 'ok', ageSeconds: 10 * 3600, reasons: [] });

    now = T0 + 13 * HOUR;
    const stale = m.assess();
    expect(stale.status).toBe('stale');
    expect(stale.reasons).toEqual([`champion ${champion.version} is 13h old (limit 12h)`]);
    expect(m.gauges().stale).toBe(true);

    expect(monitor(0).assess().status).toBe('ok'); // never checked, no champion, no limit
    const unlimited = monitor(0);
    await unlimited.check();
    expect(unlimited.assess().status).toBe('ok');
    expect(unlimited.gauges().stale).toBe(false);
  });

  it('is degraded after a failed training, ok again after a success, and stale wins over degraded', async () => {
    await insertChampion(T0);
    const m = monitor(24 * 3600);
    const failed = row('failed', T0 + 9 * HOUR);
    await store.models.insert(failed);
    await m.check();
    const degraded = m.assess();
    expect(degraded.status).toBe('degraded');
    expect(degraded.reasons).toEqual([
      `last training failed at ${new Date(T0 + 9 * HOUR).toISOString()}: ${failed.error}`,
    ]);
    expect(m.gauges()).toMatchObject({
      lastFailed: true,
      lastFailureAt: T0 + 9 * HOUR,
      lastSuccessAt: T0,
      stale: false,
    });

    now = T0 + 30 * HOUR;
    const both = m.assess();
    expect(both.status).toBe('stale');
    expect(both.reasons).toHaveLength(2);

    await store.models.insert(row('rejected', T0 + 29 * HOUR));
    await m.check();
    expect(m.state().lastTrainingFailed).toBe(false);
    expect(m.gauges()).toMatchObject({ lastFailed: false, lastSuccessAt: T0 + 29 * HOUR });
  });

  it('finds the last success behind more failures than it reads, through the champion', async () => {
    await insertChampion(T0);
    for (let i = 1; i <= FRESHNESS_LIST_LIMIT + 5; i++)
      await store.models.insert(row('failed', T0 + i * 60_000));
    const m = monitor(0);
    await m.check();
    expect(m.state().lastSuccess?.at).toBe(T0);
    expect(m.state().lastFailure?.at).toBe(T0 + (FRESHNESS_LIST_LIMIT + 5) * 60_000);
  });

  it('prefers the served champion for age and quality', async () => {
    await insertChampion(T0);
    const served = row('champion', T0 + 9 * HOUR, { metrics: { 'ndcg@10': 0.5, broken: Number.NaN } });
    const m = new FreshnessMonitor({
      registry,
      logger,
      intervalSeconds: 3600,
      maxModelAgeSeconds: 2 * 3600,
      served: { get: () => ({ version: served }), lastError: null },
      now: () => now,
    });
    await m.check();
    expect(m.assess()).toEqual({ status: 'ok', ageSeconds: 3600, reasons: [] });
    expect(m.gauges().quality).toEqual({ 'ndcg@10': 0.5 });
  });

  it('is degraded when the served champion failed to load', async () => {
    const m = new FreshnessMonitor({
      registry,
      logger,
      intervalSeconds: 3600,
      maxModelAgeSeconds: 0,
      served: { get: () => null, lastError: 'could not load model x: checksum mismatch' },
      now: () => now,
    });
    await m.check();
    expect(m.assess()).toEqual({
      status: 'degraded',
      ageSeconds: null,
      reasons: ['could not load model x: checksum mismatch'],
    });
  });

  it('tells listeners when the champion changes, once per change', async () => {
    const m = monitor(0);
    const seen: (string | null)[] = [];
    m.onChampionChange((mv) => {
      seen.push(mv?.version ?? null);
    });
    await m.check();
    expect(seen).toEqual([]); // none before, none now
    const first = await insertChampion(T0);
    await m.check();
    await m.check();
    const second = await insertChampion(T0 + HOUR);
    await m.check();
    expect(seen).toEqual([first.version, second.version]);
  });

  it('keeps the last known state while the registry is unreachable, and says it is not current', async () => {
    await insertChampion(T0);
    await store.models.insert(row('failed', T0 + HOUR));
    const metrics = createMetrics({ defaultMetrics: false });
    const m = monitor(0);
    metrics.watchFreshness(() => m.gauges());
    await m.check();
    const checkedAt = now;

    await store.close();
    now += HOUR;
    const state = await m.check();
    expect(state.current).toBe(false);
    expect(state.error).toBeTruthy();
    expect(state.checkedAt).toBe(checkedAt);
    expect(state.lastTrainingFailed).toBe(true);
    const assessed = m.assess();
    expect(assessed.status).toBe('degraded');
    expect(assessed.reasons[1]).toMatch(
      new RegExp(`^training state as of ${new Date(checkedAt).toISOString()} \\(registry unreachable: `),
    );

    const text = await metrics.registry.metrics();
    expect(text).toContain('cairn_training_last_failed 1');
    expect(text).toContain(`cairn_training_state_checked_timestamp_seconds ${checkedAt / 1000}`);
    expect(text).toContain(`cairn_training_last_success_timestamp_seconds ${T0 / 1000}`);
    expect(text).toContain(`cairn_training_last_failure_timestamp_seconds ${(T0 + HOUR) / 1000}`);
    expect(text).toContain('cairn_model_stale 0');
    expect(text).toContain('cairn_model_quality{metric="ndcg@10"} 0.25');
  });

  it('exposes no freshness samples before the first answer of the registry', async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    const m = monitor(60);
    metrics.watchFreshness(() => m.gauges());
    const text = await metrics.registry.metrics();
    for (const name of [
      'cairn_model_stale',
      'cairn_training_last_failed',
      'cairn_training_last_success_timestamp_seconds',
      'cairn_model_quality',
    ])
      expect(text).not.toMatch(new RegExp(`^${name}[ {]`, 'm'));
  });

  it('polls on its own once started, until closed', async () => {
    const m = new FreshnessMonitor({ registry, logger, intervalSeconds: 0.02, maxModelAgeSeconds: 0 });
    await m.start();
    expect(m.state().champion).toBeNull();
    const champion = await insertChampion(Date.now());
    const changed = new Promise<string | null>((resolve) =>
      m.onChampionChange((mv) => resolve(mv?.version ?? null)),
    );
    expect(await changed).toBe(champion.version);
    m.close();
  });
});
