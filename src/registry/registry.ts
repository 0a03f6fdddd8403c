/**
 * The model registry: versions with lineage (parent = the champion it replaced), artifacts with
 * checksums, promotion and rollback. A promotion (or rollback) is announced on the change log, which
 * every serving replica follows to hot-swap its champion (see serving/follower.ts).
 *
 * Artifacts live in an ArtifactStore under `models/<version>.cairn` (files embedded, PostgreSQL in
 * production), so any replica can load any version without a shared volume.
 */
import { randomBytes } from 'node:crypto';
import { isAbsolute } from 'node:path';
import type { ModelVersion } from '../domain/types.ts';
import { CairnError } from '../errors/errors.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { ArtifactStore, ChangeLog, ModelStore } from '../storage/ports.ts';
import { decodeVerified, encodeModel, readModelFile, type StoredModel } from './artifacts.ts';

export type RegisterInfo = Pick<
  ModelVersion,
  'algorithm' | 'params' | 'trainingData' | 'metrics' | 'trainSeconds' | 'configHash'
>;

/** The artifact key of a model version. */
export function modelArtifactKey(version: string): string {
  return `models/${version}.cairn`;
}

export class ModelRegistry {
  /**
   * @param store Model metadata (versions, lineage, champion).
   * @param artifacts Where the encoded models live, by key.
   * @param changes Where promotions are announced (null: nobody follows, e.g. offline tools).
   */
  constructor(
    private readonly store: ModelStore,
    private readonly artifacts: ArtifactStore,
    private readonly logger: Logger,
    private readonly changes: Pick<ChangeLog, 'append'> | null = null,
  ) {}

  /**
   * Stores the artifact under `models/<version>.cairn` and records a `ready` version whose
   * `artifactPath` is that key. The artifact is written first, so a recorded version always has one;
   * if recording fails, the artifact is removed again rather than left behind unreferenced.
   */
  async register(model: StoredModel, info: RegisterInfo, now = Date.now()): Promise<ModelVersion> {
    const version = newVersionId(info.algorithm, now);
    const key = modelArtifactKey(version);
    const { checksum, bytes } = await this.artifacts.put(key, encodeModel(model));
    const record: ModelVersion = {
      version,
      ...info,
      status: 'ready',
      artifactPath: key,
      checksum,
      parentVersion: null,
      createdAt: now,
      promotedAt: null,
      error: null,
      lineage: null,
    };
    try {
      await this.store.insert(record);
    } catch (err) {
      await this.artifacts
        .delete(key)
        .catch((cleanupErr: unknown) =>
          this.logger.warn({ err: cleanupErr, key }, 'could not remove the artifact of an unrecorded model'),
        );
      throw err;
    }
    this.logger.info(
      { version, algorithm: info.algorithm, bytes, metrics: info.metrics },
      'model registered',
    );
    return record;
  }

  list(limit?: number): Promise<ModelVersion[]> {
    return this.store.list(limit);
  }

  champion(): Promise<ModelVersion | null> {
    return this.store.champion();
  }

  async get(version: string): Promise<ModelVersion> {
    const mv = await this.store.get(version);
    if (!mv)
      throw new CairnError('CAIRN_MODEL_NOT_FOUND', `model version ${version} not found`, {
        field: 'version',
      });
    return mv;
  }

  /**
   * Reads a version's artifact and verifies it against the recorded checksum (CAIRN_INTERNAL on a
   * mismatch, CAIRN_NOT_FOUND when it is gone). Rows written by earlier versions of Cairn hold an
   * absolute file path instead of a key; those files are read directly, so old models keep loading.
   */
  async load(mv: ModelVersion): Promise<StoredModel> {
    if (isAbsolute(mv.artifactPath)) return readModelFile(mv.artifactPath, mv.checksum);
    return decodeVerified(await this.artifacts.get(mv.artifactPath), mv.checksum, mv.artifactPath);
  }

  /**
   * Makes `version` the champion. Refuses versions that failed or are still training, and verifies the
   * artifact loads before switching, so a promotion can never leave serving without a model.
   */
  async promote(version: string, now = Date.now()): Promise<ModelVersion> {
    const mv = await this.get(version);
    if (mv.status === 'champion') {
      // Announce again: a caller retrying after a failed announcement must reach the replicas.
      await this.announce(version);
      return mv;
    }
    if (mv.status === 'failed' || mv.status === 'training') {
      throw new CairnError(
        'CAIRN_MODEL_NOT_PROMOTABLE',
        `model ${version} is ${mv.status} and cannot be promoted`,
        {
          field: 'version',
          status: mv.status,
        },
      );
    }
    try {
      await this.load(mv);
    } catch (err) {
      throw new CairnError(
        'CAIRN_MODEL_NOT_PROMOTABLE',
        `model ${version} artifact cannot be loaded: ${(err as Error).message}`,
        {
          field: 'version',
        },
      );
    }
    const promoted = await this.store.promote(version, now);
    this.logger.info({ version, parent: promoted.parentVersion }, 'model promoted to champion');
    await this.announce(version);
    return promoted;
  }

  /** Restores the champion's parent (the model it replaced); the current champion is retired. */
  async rollback(now = Date.now()): Promise<ModelVersion> {
    const current = await this.store.champion();
    if (!current?.parentVersion) {
      throw new CairnError('CAIRN_NO_PREVIOUS_MODEL', 'there is no previous champion to roll back to');
    }
    const parent = await this.get(current.parentVersion);
    const grandParent = parent.parentVersion;
    await this.promote(parent.version, now);
    // Lineage follows the models, not the rollback: the restored model keeps its original parent.
    const restored = await this.store.update(parent.version, { parentVersion: grandParent });
    this.logger.warn({ from: current.version, to: restored.version }, 'model rolled back');
    return restored;
  }

  /**
   * The promotion is stored; if the announcement fails the caller gets the error (and retries, which
   * announces again), while replicas keep serving the previous champion meanwhile.
   */
  private async announce(version: string): Promise<void> {
    await this.changes?.append([{ kind: 'champion', version }]);
  }
}

function newVersionId(algorithm: string, now: number): string {
  const d = new Date(now).toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `${d}-${algorithm}-${randomBytes(3).toString('hex')}`;
}
