/**
 * Erasing users from fitted models (forget.ts) for every algorithm, and ModelRegistry.forgetUsers over
 * real adapters: an in-memory SQLite ModelStore and a files ArtifactStore in a temp directory.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ALGORITHM_NAMES, getAlgorithm, loadArtifact, resolveParams } from '../algorithms/index.ts';
import { csrFromCoo } from '../algorithms/sparse.ts';
import type { FittedModel } from '../algorithms/types.ts';
import { createLogger } from '../monitoring/logger.ts';
import { FileArtifactStore } from '../storage/files/artifacts.ts';
import { SqliteStore } from '../storage/sqlite/store.ts';
import { encodeModel, type StoredModel } from './artifacts.ts';
import { USER_ROW_ARRAYS, userRows, withoutUsers } from './forget.ts';
import { createPseudonymizer } from '../security/pseudonym.ts';
import { forgetErasedSince } from '../training/erasure-race.ts';
import { ModelRegistry, type RegisterInfo } from './registry.ts';

const USERS = 6;
const ITEMS = 5;

/** A small interaction matrix where every user has 2-3 items. */
function matrix() {
  const rows: number[] = [];
  const cols: number[] = [];
  for (let u = 0; u < USERS; u++) {
    for (let k = 0; k < 2 + (u % 2); k++) {
      rows.push(u);
      cols.push((u + k * 2) % ITEMS);
    }
  }
  return csrFromCoo(USERS, ITEMS, rows, cols, null);
}

async function fitted(name: (typeof ALGORITHM_NAMES)[number]): Promise<StoredModel> {
  const spec = getAlgorithm(name);
  const params = resolveParams(spec, name === 'als' || name === 'bpr' ? { factors: 4, iterations: 3 } : {});
  const model = await spec.fit(matrix(), params, { threads: 1, seed: 7 });
  return {
    artifact: model.toArtifact(),
    userIds: Array.from({ length: USERS }, (_, u) => `user-${u}`),
    itemIds: Array.from({ length: ITEMS }, (_, i) => `item-${i}`),
    extra: { lastEventSeq: 42 },
  };
}

/** Scores of training user `u` of `model` for a fixed history. */
function scores(model: FittedModel, u: number): Float32Array {
  const out = new Float32Array(ITEMS);
  model.scoreUser(u, { items: Int32Array.of(1), weights: Float32Array.of(1) }, out);
  return out;
}

describe('withoutUsers', () => {
  for (const name of ALGORITHM_NAMES) {
    it(`${name}: drops the ids and rows of the erased users; everyone else scores as before`, async () => {
      const before = await fitted(name);
      const after = withoutUsers(before, new Set(['user-1', 'user-4', 'not-in-the-model']))!;
      expect(after).not.toBeNull();
      expect(after.userIds).toEqual(['user-0', 'user-2', 'user-3', 'user-5']);
      expect(after.artifact.meta.users).toBe(USERS - 2);
      expect(after.itemIds).toEqual(before.itemIds);
      expect(after.extra).toEqual(before.extra);
      // Through the encoded bytes, as the registry stores it: nothing of the erased ids is left.
      const bytes = encodeModel(after);
      expect(bytes.includes('user-1')).toBe(false);
      expect(bytes.includes('user-4')).toBe(false);
      const rowArrays = USER_ROW_ARRAYS.filter((a) => before.artifact.arrays[a] !== undefined);
      if (name === 'als' || name === 'bpr') expect(rowArrays).toEqual(['userFactors']);
      for (const { name: array, width } of userRows(before.artifact, USERS)) {
        expect(after.artifact.arrays[array].length).toBe((USERS - 2) * width);
      }
      const original = loadArtifact(before.artifact);
      const pruned = loadArtifact(after.artifact);
      expect(pruned.nUsers).toBe(USERS - 2);
      after.userIds.forEach((id, u) => {
        expect(scores(pruned, u), id).toEqual(scores(original, before.userIds.indexOf(id)));
      });
    });
  }

  it('answers null when none of the users is in the model (nothing to rewrite)', async () => {
    expect(withoutUsers(await fitted('als'), new Set(['someone-else']))).toBeNull();
  });

  it('refuses a user-row array that is not whole rows (a damaged artifact)', async () => {
    const model = await fitted('als');
    const broken = {
      ...model,
      artifact: { ...model.artifact, arrays: { ...model.artifact.arrays, userFactors: new Float32Array(7) } },
    };
    expect(() => withoutUsers(broken, new Set(['user-0']))).toThrow(/not a row per each/);
  });
});

const logger = createLogger('silent');

const info: RegisterInfo = {
  algorithm: 'als',
  params: { factors: 4 },
  trainingData: { users: USERS, items: ITEMS, interactions: 15, events: 15, lastEventSeq: 42 },
  metrics: {},
  trainSeconds: 0.1,
  configHash: 'cfg',
};

describe('ModelRegistry.forgetUsers', () => {
  let dir: string;
  let store: SqliteStore;
  let artifacts: FileArtifactStore;
  let registry: ModelRegistry;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-forget-'));
    store = new SqliteStore({ path: ':memory:' });
    await store.migrate();
    artifacts = new FileArtifactStore({ root: dir });
    registry = new ModelRegistry(store.models, artifacts, logger);
  });

  afterEach(async () => {
    await store.close();
    await artifacts.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** Every stored artifact file's bytes. */
  async function files(): Promise<Buffer[]> {
    const names = await readdir(join(dir, 'models'));
    return Promise.all(names.map((n) => readFile(join(dir, 'models', n))));
  }

  it('rewrites every artifact holding the user under a new key, verifiable, and deletes the old bytes', async () => {
    const als = await registry.register(await fitted('als'), info);
    const pop = await registry.register(await fitted('pop'), { ...info, algorithm: 'pop' });
    await registry.promote(als.version);
    expect((await files()).filter((b) => b.includes('user-3'))).toHaveLength(2);

    const outcome = await registry.forgetUsers(['user-3']);
    expect(outcome).toEqual({ rewritten: 2, failed: [] });
    expect((await files()).some((b) => b.includes('user-3'))).toBe(false);
    expect(await artifacts.list('models/')).toHaveLength(2);
    for (const version of [als.version, pop.version]) {
      const mv = await registry.get(version);
      expect(mv.artifactPath).not.toBe(version === als.version ? als.artifactPath : pop.artifactPath);
      const loaded = await registry.load(mv); // checksum verified against the updated row
      expect(loaded.userIds).not.toContain('user-3');
      expect(loaded.userIds).toHaveLength(USERS - 1);
    }
    // The champion stays the champion, and is still promotable material.
    expect((await registry.champion())?.version).toBe(als.version);
    // Idempotent: nothing left to rewrite.
    expect(await registry.forgetUsers(['user-3'])).toEqual({ rewritten: 0, failed: [] });
  });

  it('an erase during a training: the users erased since it began reading leave its new version', async () => {
    const pseudonymize = createPseudonymizer('k');
    const older = await registry.register(await fitted('als'), info, 1_000);
    const readingSince = 2_000;
    // Erased before the training read (not in its data either) and during it, audited by pseudonym.
    await store.audit.append({
      at: 1_500,
      action: 'user_erased',
      principal: 'p',
      subject: pseudonymize('user-1'),
      details: {},
    });
    await store.audit.append({
      at: 2_500,
      action: 'user_erased',
      principal: 'p',
      subject: pseudonymize('user-4'),
      details: {},
    });
    const fresh = await registry.register(await fitted('als'), info, 3_000);

    const dropped = await forgetErasedSince({ audit: store.audit, registry, pseudonymize }, readingSince, [
      'user-0',
      'user-1',
      'user-4',
    ]);
    expect(dropped).toEqual(['user-4']);
    expect((await registry.load(await registry.get(fresh.version))).userIds).not.toContain('user-4');
    // Versions registered before the training began were the erase's own business, not this check's.
    expect((await registry.load(await registry.get(older.version))).userIds).toContain('user-4');
    // Nothing erased since: nothing read beyond the audit log, nothing rewritten.
    expect(
      await forgetErasedSince({ audit: store.audit, registry, pseudonymize }, 5_000, ['user-0']),
    ).toEqual([]);
  });

  it('leaves versions without an artifact (failed trainings) alone', async () => {
    await registry.recordFailure({
      algorithm: 'als',
      params: {},
      error: 'boom',
      lineage: {
        trigger: { kind: 'manual', key: null, requestedBy: null, jobId: null },
        data: { lastEventSeq: 0, newestEventAt: 0, trainingSetHash: '' },
        code: { version: '0', commit: null },
        gate: null,
        drift: null,
        audit: [],
      },
    });
    expect(await registry.forgetUsers(['user-0'])).toEqual({ rewritten: 0, failed: [] });
  });

  it('concurrent erasures of different users both take effect (no lost update)', async () => {
    const als = await registry.register(await fitted('als'), info);
    const outcomes = await Promise.all([
      registry.forgetUsers(['user-0']),
      registry.forgetUsers(['user-5']),
      registry.forgetUsers(['user-2']),
    ]);
    expect(outcomes.map((o) => o.rewritten)).toEqual([1, 1, 1]);
    const loaded = await registry.load(await registry.get(als.version));
    expect(loaded.userIds).toEqual(['user-1', 'user-3', 'user-4']);
    expect(await artifacts.list('models/')).toHaveLength(1);
  });

  it('reports an artifact it cannot read instead of failing the other versions', async () => {
    const broken = await registry.register(await fitted('als'), info);
    const fine = await registry.register(await fitted('pop'), { ...info, algorithm: 'pop' });
    await artifacts.put(broken.artifactPath, Buffer.from('damaged'));
    const outcome = await registry.forgetUsers(['user-1']);
    expect(outcome.rewritten).toBe(1);
    expect(outcome.failed.map((f) => f.version)).toEqual([broken.version]);
    expect((await registry.load(await registry.get(fine.version))).userIds).not.toContain('user-1');
  });

  it('replaceArtifact switches only from the artifact the caller read', async () => {
    const mv = await registry.register(await fitted('pop'), { ...info, algorithm: 'pop' });
    const next = { artifactPath: 'models/other.cairn', checksum: 'c2' };
    expect(
      await store.models.replaceArtifact(mv.version, { artifactPath: 'models/x', checksum: 'c' }, next),
    ).toBe(false);
    expect(await store.models.replaceArtifact(mv.version, mv, next)).toBe(true);
    expect(await store.models.replaceArtifact(mv.version, mv, next)).toBe(false);
    expect(await store.models.get(mv.version)).toMatchObject(next);
  });
});
