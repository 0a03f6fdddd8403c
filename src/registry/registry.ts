/**
 * The model registry: versions with lineage (parent = the champion it replaced), artifacts with
 * checksums, promotion and rollback. Promotion emits `champion` so serving in this process hot-swaps
 * at once; other processes notice through the store (see serving/champion.ts).
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import type { ModelVersion } from '../domain/types.ts';
import { CairnError } from '../errors/errors.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { ModelStore } from '../storage/ports.ts';
import { readModelFile, writeModelFile, type StoredModel } from './artifacts.ts';

export type RegisterInfo = Pick<
  ModelVersion,
  'algorithm' | 'params' | 'trainingData' | 'metrics' | 'trainSeconds' | 'configHash'
>;

export interface RegistryEvents {
  champion: [ModelVersion];
}

export class ModelRegistry extends EventEmitter<RegistryEvents> {
  constructor(
    private readonly store: ModelStore,
    private readonly modelsDir: string,
    private readonly logger: Logger,
  ) {
    super();
  }

  /** Writes the artifact and records a `ready` version. */
  async register(model: StoredModel, info: RegisterInfo, now = Date.now()): Promise<ModelVersion> {
    const version = newVersionId(info.algorithm, now);
    const artifactPath = join(this.modelsDir, `${version}.cairn`);
    const { checksum, bytes } = await writeModelFile(artifactPath, model);
    const record: ModelVersion = {
      version,
      ...info,
      status: 'ready',
      artifactPath,
      checksum,
      parentVersion: null,
      createdAt: now,
      promotedAt: null,
      error: null,
    };
    await this.store.insert(record);
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

  /** Reads and verifies a version's artifact. */
  async load(mv: ModelVersion): Promise<StoredModel> {
    return readModelFile(mv.artifactPath, mv.checksum);
  }

  /**
   * Makes `version` the champion. Refuses versions that failed or are still training, and verifies the
   * artifact loads before switching, so a promotion can never leave serving without a model.
   */
  async promote(version: string, now = Date.now()): Promise<ModelVersion> {
    const mv = await this.get(version);
    if (mv.status === 'champion') return mv;
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
    this.emit('champion', promoted);
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
}

function newVersionId(algorithm: string, now: number): string {
  const d = new Date(now).toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `${d}-${algorithm}-${randomBytes(3).toString('hex')}`;
}
