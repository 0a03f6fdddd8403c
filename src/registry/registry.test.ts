/**
 * The registry over real adapters: an in-memory SQLite ModelStore and a files ArtifactStore in a temp
 * directory (test/integration/artifacts.test.ts runs it on PostgreSQL too).
 */
import { mkdir, mkdtemp, readFile, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { GateRecord, ModelLineage, ModelVersion } from '../domain/types.ts';
import { createLogger } from '../monitoring/logger.ts';
import { FileArtifactStore } from '../storage/files/artifacts.ts';
import { SqliteStore } from '../storage/sqlite/store.ts';
import { encodeModel, sha256, type StoredModel } from './artifacts.ts';
import { ModelRegistry, modelArtifactKey, type RegisterInfo } from './registry.ts';

const logger = createLogger('silent');

const model = (seed: number): StoredModel => ({
  artifact: {
    algorithm: 'als',
    formatVersion: 1,
    params: { factors: 2 },
    meta: { nUsers: 2, nItems: 3 },
    arrays: { userFactors: new Float32Array([seed, 2, 3, 4]), itemFactors: new Float32Array(6).fill(seed) },
  },
  userIds: ['u1', 'u2'],
  itemIds: ['a', 'b', 'c'],
  extra: { lastEventSeq: seed },
});

const info: RegisterInfo = {
  algorithm: 'als',
  params: { factors: 2 },
  trainingData: { users: 2, items: 3, interactions: 4, events: 4, lastEventSeq: 4 },
  metrics: { 'ndcg@10': 0.5 },
  trainSeconds: 0.1,
  configHash: 'cfg',
};

const gate = (passed: boolean, reason: string): GateRecord => ({
  passed,
  reason,
  holdout: 'random',
  holdoutUsers: 50,
  holdoutInteractions: 120,
  champion: null,
  challengerMetrics: { 'ndcg@10': 0.2 },
  championMetrics: {},
  checks: [{ name: 'ndcg@10', passed, detail: reason }],
});

const lineage = (g: GateRecord | null, requestedBy: string | null = 'key-ops'): ModelLineage => ({
  trigger: { kind: 'manual', key: null, requestedBy, jobId: 'job-1' },
  data: { lastEventSeq: 4, newestEventAt: 1000, trainingSetHash: 'abc' },
  code: { version: '0.1.0', commit: null },
  gate: g,
  drift: null,
  audit: [],
});

describe('ModelRegistry', () => {
  let dir: string;
  let store: SqliteStore;
  let artifacts: FileArtifactStore;
  let registry: ModelRegistry;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-registry-'));
    store = new SqliteStore({ path: ':memory:' });
    await store.migrate();
    artifacts = new FileArtifactStore({ root: join(dir, 'data') });
    registry = new ModelRegistry(store.models, artifacts, logger);
  });

  afterEach(async () => {
    await store.close();
    await artifacts.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('registers under models/<version>.cairn and records the key, not a path', async () => {
    const mv = await registry.register(model(1), info, Date.UTC(2024, 0, 2, 3, 4, 5));
    expect(mv.version).toMatch(/^20240102-030405-als-[0-9a-f]{6}$/);
    expect(mv.artifactPath).toBe(`models/${mv.version}.cairn`);
    expect(mv.artifactPath).toBe(modelArtifactKey(mv.version));
    expect(mv.status).toBe('ready');
    expect(await artifacts.list('models/')).toEqual([mv.artifactPath]);
    const bytes = await artifacts.get(mv.artifactPath);
    expect(mv.checksum).toBe(sha256(bytes));
    expect(await store.models.get(mv.version)).toEqual(mv);
    // The files adapter puts the key where earlier versions wrote `${dataDir}/models/<version>.cairn`.
    expect((await readFile(join(dir, 'data', 'models', `${mv.version}.cairn`))).equals(bytes)).toBe(true);

    const loaded = await registry.load(mv);
    expect(Array.from(loaded.artifact.arrays.userFactors)).toEqual([1, 2, 3, 4]);
    expect(loaded.itemIds).toEqual(['a', 'b', 'c']);
    expect(loaded.extra).toEqual({ lastEventSeq: 1 });
  });

  it('verifies the checksum on load, and refuses to promote a damaged or missing artifact', async () => {
    const mv = await registry.register(model(1), info);
    const bytes = await artifacts.get(mv.artifactPath);
    bytes[bytes.length - 1] ^= 0xff;
    await artifacts.put(mv.artifactPath, bytes);
    await expect(registry.load(mv)).rejects.toMatchObject({ code: 'CAIRN_INTERNAL' });
    await expect(registry.promote(mv.version)).rejects.toMatchObject({ code: 'CAIRN_MODEL_NOT_PROMOTABLE' });

    await artifacts.delete(mv.artifactPath);
    await expect(registry.load(mv)).rejects.toMatchObject({ code: 'CAIRN_NOT_FOUND' });
    await expect(registry.promote(mv.version)).rejects.toMatchObject({ code: 'CAIRN_MODEL_NOT_PROMOTABLE' });
    expect(await registry.champion()).toBeNull();
  });

  it('still loads and promotes rows from earlier versions that hold an absolute file path', async () => {
    const legacyPath = join(dir, 'old-data', 'models', '20230101-000000-als-abcdef.cairn');
    const bytes = encodeModel(model(7));
    await mkdir(join(dir, 'old-data', 'models'), { recursive: true });
    await writeFile(legacyPath, bytes);
    const legacy: ModelVersion = {
      version: '20230101-000000-als-abcdef',
      ...info,
      status: 'ready',
      artifactPath: legacyPath,
      checksum: sha256(bytes),
      parentVersion: null,
      createdAt: 1,
      promotedAt: null,
      error: null,
      lineage: null,
    };
    await store.models.insert(legacy);

    expect((await registry.load(legacy)).extra).toEqual({ lastEventSeq: 7 });
    const promoted = await registry.promote(legacy.version);
    expect(promoted.status).toBe('champion');
    // Nothing was copied into the artifact store: the file is read where it is.
    expect(await artifacts.list('')).toEqual([]);

    bytes[bytes.length - 1] ^= 0xff;
    await writeFile(legacyPath, bytes);
    await expect(registry.load(legacy)).rejects.toMatchObject({ code: 'CAIRN_INTERNAL' });
  });

  it('promotes with a champion announcement, and rolls back to the parent keeping lineage', async () => {
    const seen: string[] = [];
    registry = new ModelRegistry(store.models, artifacts, logger, {
      append: (changes) => {
        for (const c of changes) if (c.kind === 'champion') seen.push(c.version);
        return Promise.resolve(changes.map((_, i) => seen.length + i));
      },
    });
    const first = await registry.register(model(1), info, 1000);
    const second = await registry.register(model(2), info, 2000);
    await registry.promote(first.version, 3000);
    const promoted = await registry.promote(second.version, 4000);
    expect(promoted).toMatchObject({ status: 'champion', parentVersion: first.version, promotedAt: 4000 });
    // Promoting the champion again changes nothing but announces it again (a retry after a failed
    // announcement must reach the replicas; followers ignore a version they already serve).
    const again = await registry.promote(second.version, 4500);
    expect(again).toMatchObject({ status: 'champion', promotedAt: 4000 });
    expect(seen).toEqual([first.version, second.version, second.version]);

    const restored = await registry.rollback(5000);
    expect(restored).toMatchObject({ version: first.version, status: 'champion', parentVersion: null });
    expect((await registry.get(second.version)).status).toBe('retired');
    expect(seen).toEqual([first.version, second.version, second.version, first.version]);
    await expect(registry.rollback(6000)).rejects.toMatchObject({ code: 'CAIRN_NO_PREVIOUS_MODEL' });
    await expect(registry.get('nope')).rejects.toMatchObject({ code: 'CAIRN_MODEL_NOT_FOUND' });
  });

  it('removes the artifact again when the version cannot be recorded', async () => {
    await store.close(); // the metadata store fails every call from here on
    await expect(registry.register(model(1), info)).rejects.toThrow();
    expect(await artifacts.list('')).toEqual([]);
  });

  it('registers lineage with its audit trail; a rejected version needs force, which is recorded', async () => {
    const champ = await registry.register(
      model(1),
      { ...info, lineage: lineage(gate(true, 'first model')) },
      1000,
    );
    expect(champ.lineage?.audit).toEqual([
      { at: 1000, action: 'registered', by: 'key-ops', detail: 'manual training (job job-1)' },
    ]);
    await registry.promote(champ.version, { by: 'system', now: 1500, reason: 'first model' });
    const bad = await registry.register(
      model(2),
      { ...info, status: 'rejected', lineage: lineage(gate(false, 'ndcg@10 0.1 is below the champion')) },
      2000,
    );
    expect(bad.status).toBe('rejected');
    expect(bad.lineage?.audit.map((a) => [a.action, a.by, a.detail])).toEqual([
      ['registered', 'key-ops', 'manual training (job job-1)'],
      ['rejected', 'system', 'ndcg@10 0.1 is below the champion'],
    ]);
    expect(await store.models.get(bad.version)).toEqual(bad);

    const refused = await registry.promote(bad.version, { by: 'alice' }).catch((e: unknown) => e);
    expect(refused).toMatchObject({
      code: 'CAIRN_MODEL_NOT_PROMOTABLE',
      details: { field: 'version', status: 'rejected', reason: 'ndcg@10 0.1 is below the champion' },
    });
    expect((await registry.champion())?.version).toBe(champ.version);

    const forced = await registry.promote(bad.version, {
      by: 'alice',
      force: true,
      reason: 'hotfix',
      now: 3000,
    });
    expect(forced).toMatchObject({ status: 'champion', parentVersion: champ.version, promotedAt: 3000 });
    expect(forced.lineage?.audit.at(-1)).toEqual({
      at: 3000,
      action: 'force_promoted',
      by: 'alice',
      detail: `forced over its rejection (ndcg@10 0.1 is below the champion), replacing ${champ.version}: hotfix`,
    });
    expect(await registry.get(bad.version)).toEqual(forced);
    expect((await registry.get(champ.version)).lineage?.audit.map((a) => a.action)).toEqual([
      'registered',
      'promoted',
    ]);

    // Rolling back records on both versions who did it.
    const restored = await registry.rollback({ by: 'bob', reason: 'conversions dropped', now: 4000 });
    expect(restored.version).toBe(champ.version);
    expect(restored.lineage?.audit.at(-1)).toMatchObject({ action: 'promoted', by: 'bob', at: 4000 });
    expect(restored.lineage?.audit.at(-1)?.detail).toMatch(
      /restored by a rollback from .*: conversions dropped/,
    );
    expect((await registry.get(bad.version)).lineage?.audit.at(-1)).toEqual({
      at: 4000,
      action: 'rolled_back',
      by: 'bob',
      detail: `rolled back to ${champ.version}: conversions dropped`,
    });
  });

  it('reject(): rolls a champion back to its parent first, then marks it rejected (idempotent)', async () => {
    const a = await registry.register(model(1), { ...info, lineage: lineage(gate(true, 'ok')) }, 1000);
    const b = await registry.register(model(2), { ...info, lineage: lineage(gate(true, 'ok')) }, 2000);
    await registry.promote(a.version, 1500);
    await registry.promote(b.version, 2500);
    const rejected = await registry.reject(
      b.version,
      'canary-guard',
      'ctr 20 % below control',
      'canary_rolled_back',
      3000,
    );
    expect(rejected.status).toBe('rejected');
    expect(rejected.lineage?.audit.slice(-2).map((x) => x.action)).toEqual([
      'rolled_back',
      'canary_rolled_back',
    ]);
    expect(rejected.lineage?.audit.at(-1)).toEqual({
      at: 3000,
      action: 'canary_rolled_back',
      by: 'canary-guard',
      detail: 'ctr 20 % below control',
    });
    expect((await registry.champion())?.version).toBe(a.version);
    expect(await registry.reject(b.version, 'x', 'again', 'rejected')).toEqual(rejected);
    // Promoting it again needs force, and the refusal names the canary's reason.
    await expect(registry.promote(b.version)).rejects.toMatchObject({
      code: 'CAIRN_MODEL_NOT_PROMOTABLE',
      details: { reason: 'ctr 20 % below control' },
    });
    // A champion without a parent cannot be rejected: serving would be left without a model.
    await expect(registry.reject(a.version, 'x', 'y', 'rejected')).rejects.toMatchObject({
      code: 'CAIRN_NO_PREVIOUS_MODEL',
    });
    expect((await registry.champion())?.version).toBe(a.version);
  });

  it('recordFailure(): a failed version without artifact, visible and never promotable', async () => {
    const failed = await registry.recordFailure({
      algorithm: 'als',
      params: { factors: 2 },
      error: 'training needs at least 10 positive interactions',
      lineage: {
        ...lineage(null, null),
        trigger: { kind: 'schedule', key: '2024-01-01T00:00', requestedBy: null, jobId: 'j9' },
      },
      now: 5000,
    });
    expect(failed).toMatchObject({
      status: 'failed',
      artifactPath: '',
      checksum: '',
      error: 'training needs at least 10 positive interactions',
      createdAt: 5000,
    });
    expect(failed.lineage?.trigger.kind).toBe('schedule');
    expect(failed.lineage?.audit).toEqual([
      {
        at: 5000,
        action: 'registered',
        by: 'system',
        detail: 'schedule training failed: training needs at least 10 positive interactions',
      },
    ]);
    expect((await registry.list())[0]).toEqual(failed);
    expect(await artifacts.list('')).toEqual([]);
    await expect(registry.promote(failed.version, { force: true })).rejects.toMatchObject({
      code: 'CAIRN_MODEL_NOT_PROMOTABLE',
    });
  });
});
