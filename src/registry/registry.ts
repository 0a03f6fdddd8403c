/**
 * The model registry: versions with lineage (parent = the champion it replaced; trigger, data snapshot,
 * code, gate decision, drift reference and an audit trail in `lineage`), artifacts with checksums,
 * promotion, rejection and rollback. A promotion (or rollback) is announced on the change log, which
 * every serving replica follows to hot-swap its champion (see serving/follower.ts).
 *
 * A `rejected` version (failed its gate, or stopped by a canary guard) is promoted only with `force`,
 * and the forced promotion is recorded with who asked and why.
 *
 * Artifacts live in an ArtifactStore under `models/<version>.cairn` (files embedded, PostgreSQL in
 * production), so any replica can load any version without a shared volume.
 */
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import type { JsonObject, ModelAuditEntry, ModelLineage, ModelVersion } from '../domain/types.ts';
import { CairnError } from '../errors/errors.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { ArtifactStore, ChangeLog, ModelStore } from '../storage/ports.ts';
import { decodeVerifiedSliced, encodeModelSliced, readModelFile, type StoredModel } from './artifacts.ts';
import { withoutUsers } from './forget.ts';

export type RegisterInfo = Pick<
  ModelVersion,
  'algorithm' | 'params' | 'trainingData' | 'metrics' | 'trainSeconds' | 'configHash'
> & {
  /** `rejected` registers a version that failed its gate (default `ready`). */
  status?: 'ready' | 'rejected';
  /** Where it came from; the registry appends the `registered` (and `rejected`) audit entries. */
  lineage?: ModelLineage | null;
};

/** Options of a promotion. */
export interface PromoteOptions {
  /** Principal id of whoever promotes (`system` for the pipeline's automatic promotion). */
  by?: string;
  /** Required to promote a `rejected` version; recorded as a `force_promoted` audit entry. */
  force?: boolean;
  /** Why (kept in the audit entry). */
  reason?: string;
  now?: number;
}

/** Options of a rollback. */
export interface RollbackOptions {
  by?: string;
  reason?: string;
  now?: number;
}

/** A training attempt that failed for good, recorded as a `failed` version without artifact. */
export interface FailureInfo {
  algorithm: string;
  params: JsonObject;
  error: string;
  /** Lineage as far as it is known (at least the trigger); the audit entry is appended here. */
  lineage: ModelLineage;
  trainingData?: ModelVersion['trainingData'];
  configHash?: string;
  now?: number;
}

/** The artifact key of a model version. */
export function modelArtifactKey(version: string): string {
  return `models/${version}.cairn`;
}

/** What `forgetUsers` did: artifacts rewritten, and versions whose artifact could not be read. */
export interface ForgetOutcome {
  rewritten: number;
  failed: { version: string; error: string }[];
}

/** Tries per version when other writers keep replacing its artifact (concurrent erasures). */
const FORGET_ATTEMPTS = 5;

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
    const { checksum, bytes } = await this.artifacts.put(key, await encodeModelSliced(model));
    const { status = 'ready', lineage = null, ...fields } = info;
    const record: ModelVersion = {
      version,
      ...fields,
      status,
      artifactPath: key,
      checksum,
      parentVersion: null,
      createdAt: now,
      promotedAt: null,
      error: null,
      lineage: lineage && {
        ...lineage,
        audit: [
          ...lineage.audit,
          {
            at: now,
            action: 'registered',
            by: lineage.trigger.requestedBy ?? 'system',
            detail: `${lineage.trigger.kind} training${lineage.trigger.jobId ? ` (job ${lineage.trigger.jobId})` : ''}`,
          },
          ...(status === 'rejected'
            ? [
                {
                  at: now,
                  action: 'rejected',
                  by: 'system',
                  detail: lineage.gate?.reason ?? 'failed its promotion gate',
                } satisfies ModelAuditEntry,
              ]
            : []),
        ],
      },
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
      { version, algorithm: info.algorithm, bytes, metrics: info.metrics, status },
      'model registered',
    );
    return record;
  }

  /**
   * Records a training attempt that failed for good (permanent error, or out of attempts) as a
   * `failed` version with no artifact (empty `artifactPath` and `checksum`), so the registry, the model
   * card and the freshness check can show that the last training failed, and why.
   */
  async recordFailure(info: FailureInfo): Promise<ModelVersion> {
    const now = info.now ?? Date.now();
    const record: ModelVersion = {
      version: newVersionId(info.algorithm, now),
      algorithm: info.algorithm,
      params: info.params,
      status: 'failed',
      trainingData: info.trainingData ?? {
        users: 0,
        items: 0,
        interactions: 0,
        events: 0,
        lastEventSeq: info.lineage.data.lastEventSeq,
      },
      metrics: {},
      trainSeconds: 0,
      artifactPath: '',
      checksum: '',
      configHash: info.configHash ?? '',
      parentVersion: null,
      createdAt: now,
      promotedAt: null,
      error: info.error,
      lineage: {
        ...info.lineage,
        audit: [
          ...info.lineage.audit,
          {
            at: now,
            action: 'registered',
            by: info.lineage.trigger.requestedBy ?? 'system',
            detail: `${info.lineage.trigger.kind} training failed: ${info.error}`,
          },
        ],
      },
    };
    await this.store.insert(record);
    this.logger.warn({ version: record.version, error: info.error }, 'training failure recorded');
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
    return decodeVerifiedSliced(await this.artifacts.get(mv.artifactPath), mv.checksum, mv.artifactPath);
  }

  /**
   * Makes `version` the champion. Refuses versions that failed or are still training, and `rejected`
   * ones unless `force` is set (CAIRN_MODEL_NOT_PROMOTABLE, details `status` and the rejection `reason`);
   * verifies the artifact loads before switching, so a promotion can never leave serving without a
   * model. Appends a `promoted` (or `force_promoted`) audit entry. A number is taken as `now`.
   */
  async promote(version: string, options: PromoteOptions | number = {}): Promise<ModelVersion> {
    const opts: PromoteOptions = typeof options === 'number' ? { now: options } : options;
    const now = opts.now ?? Date.now();
    const by = opts.by ?? 'system';
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
    const forced = mv.status === 'rejected';
    if (forced && opts.force !== true) {
      const reason = rejectionReason(mv);
      throw new CairnError(
        'CAIRN_MODEL_NOT_PROMOTABLE',
        `model ${version} was rejected (${reason}); promoting it needs force`,
        { field: 'version', status: mv.status, reason },
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
    const stored = await this.store.promote(version, now);
    const promoted = await this.audit(stored, {
      at: now,
      action: forced ? 'force_promoted' : 'promoted',
      by,
      detail:
        (forced ? `forced over its rejection (${rejectionReason(mv)})` : 'promoted to champion') +
        (stored.parentVersion ? `, replacing ${stored.parentVersion}` : '') +
        (opts.reason ? `: ${opts.reason}` : ''),
    });
    this.logger.info({ version, parent: promoted.parentVersion, by, forced }, 'model promoted to champion');
    await this.announce(version);
    return promoted;
  }

  /**
   * Restores the champion's parent (the model it replaced); the current champion is retired. Both get
   * an audit entry. A number is taken as `now`.
   */
  async rollback(options: RollbackOptions | number = {}): Promise<ModelVersion> {
    const opts: RollbackOptions = typeof options === 'number' ? { now: options } : options;
    const now = opts.now ?? Date.now();
    const by = opts.by ?? 'system';
    const current = await this.store.champion();
    if (!current?.parentVersion) {
      throw new CairnError('CAIRN_NO_PREVIOUS_MODEL', 'there is no previous champion to roll back to');
    }
    const parent = await this.get(current.parentVersion);
    const grandParent = parent.parentVersion;
    const why = opts.reason ? `: ${opts.reason}` : '';
    await this.promote(parent.version, {
      by,
      now,
      reason: `restored by a rollback from ${current.version}${why}`,
    });
    // Lineage follows the models, not the rollback: the restored model keeps its original parent.
    const restored = await this.store.update(parent.version, { parentVersion: grandParent });
    const retired = await this.store.get(current.version);
    if (retired) {
      await this.audit(retired, {
        at: now,
        action: 'rolled_back',
        by,
        detail: `rolled back to ${parent.version}${why}`,
      });
    }
    this.logger.warn({ from: current.version, to: restored.version, by }, 'model rolled back');
    return restored;
  }

  /**
   * Marks `version` rejected with an audit entry (`rejected`, or `canary_rolled_back` when a canary
   * guard stopped it). A champion is first rolled back to its parent, so serving never loses its model
   * (CAIRN_NO_PREVIOUS_MODEL when it has none: nothing changes). Rejecting a rejected version is a
   * no-op; a version that failed or is training cannot be rejected (CAIRN_CONFLICT).
   */
  async reject(
    version: string,
    by: string,
    reason: string,
    action: 'rejected' | 'canary_rolled_back',
    now = Date.now(),
  ): Promise<ModelVersion> {
    const mv = await this.get(version);
    if (mv.status === 'rejected') return mv;
    if (mv.status === 'failed' || mv.status === 'training') {
      throw new CairnError('CAIRN_CONFLICT', `model ${version} is ${mv.status} and cannot be rejected`, {
        field: 'version',
        status: mv.status,
      });
    }
    if (mv.status === 'champion') await this.rollback({ by, now, reason: `${action}: ${reason}` });
    const current = await this.get(version);
    const rejected = await this.store.update(version, { status: 'rejected' });
    const entry: ModelAuditEntry = { at: now, action, by, detail: reason };
    this.logger.warn({ version, by, action, reason, was: current.status }, 'model rejected');
    return this.audit(rejected, entry);
  }

  /**
   * GDPR: rewrites every stored artifact that holds one of `userIds` without them (their ids and rows:
   * see forget.ts). The new bytes go under a fresh key, the version is switched to it only if its
   * artifact is still the one read (another erasure may have replaced it: then it starts over from that
   * one), and the old bytes are deleted. Artifacts without the users are left alone. A version whose
   * artifact cannot be read is reported in `failed` (never served either) instead of failing the rest.
   * `createdSince` limits it to versions registered at or after that time.
   */
  async forgetUsers(
    userIds: readonly string[],
    options: { createdSince?: number } = {},
  ): Promise<ForgetOutcome> {
    const erased = new Set(userIds);
    const outcome: ForgetOutcome = { rewritten: 0, failed: [] };
    const since = options.createdSince ?? -Infinity;
    for (const { version, createdAt } of await this.store.list()) {
      if (createdAt < since) continue;
      try {
        if (await this.forgetIn(version, erased)) outcome.rewritten++;
      } catch (err) {
        if (err instanceof CairnError && err.code === 'CAIRN_UNAVAILABLE') throw err;
        outcome.failed.push({ version, error: (err as Error).message });
      }
    }
    return outcome;
  }

  /** One version's artifact without the users; false when it held none of them (or has no artifact). */
  private async forgetIn(version: string, erased: ReadonlySet<string>): Promise<boolean> {
    for (let attempt = 0; attempt < FORGET_ATTEMPTS; attempt++) {
      const mv = await this.store.get(version);
      if (!mv || mv.artifactPath === '') return false;
      let model: StoredModel;
      try {
        model = await this.load(mv);
      } catch (err) {
        // Replaced (and its old bytes deleted) between the two reads: read the row again.
        if (err instanceof CairnError && err.code === 'CAIRN_NOT_FOUND') continue;
        throw err;
      }
      const pruned = withoutUsers(model, erased);
      if (!pruned) return false;
      const key = `models/${version}.${randomBytes(4).toString('hex')}.cairn`;
      const { checksum } = await this.artifacts.put(key, await encodeModelSliced(pruned));
      if (await this.store.replaceArtifact(version, mv, { artifactPath: key, checksum })) {
        await this.deleteArtifact(mv.artifactPath);
        return true;
      }
      await this.artifacts.delete(key);
    }
    throw new CairnError(
      'CAIRN_CONFLICT',
      `model ${version}: its artifact kept changing while erasing users`,
    );
  }

  /** Deletes replaced bytes: a key, or the file of a row written before artifacts had keys. */
  private async deleteArtifact(path: string): Promise<void> {
    if (isAbsolute(path)) await rm(path, { force: true });
    else await this.artifacts.delete(path);
  }

  /**
   * The promotion is stored; if the announcement fails the caller gets the error (and retries, which
   * announces again), while replicas keep serving the previous champion meanwhile.
   */
  private async announce(version: string): Promise<void> {
    await this.changes?.append([{ kind: 'champion', version }]);
  }

  /** Appends to the version's audit trail (rows from before lineage have none to append to). */
  private async audit(mv: ModelVersion, entry: ModelAuditEntry): Promise<ModelVersion> {
    const fresh = (await this.store.get(mv.version)) ?? mv;
    if (!fresh.lineage) return fresh;
    return this.store.update(mv.version, {
      lineage: { ...fresh.lineage, audit: [...fresh.lineage.audit, entry] },
    });
  }
}

/** Why a rejected version was rejected: its latest rejection entry, else its gate's reason. */
function rejectionReason(mv: ModelVersion): string {
  const audit = mv.lineage?.audit ?? [];
  for (let i = audit.length - 1; i >= 0; i--) {
    const a = audit[i];
    if (a.action === 'rejected' || a.action === 'canary_rolled_back') return a.detail;
  }
  return mv.lineage?.gate?.reason ?? 'rejected';
}

function newVersionId(algorithm: string, now: number): string {
  const d = new Date(now).toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `${d}-${algorithm}-${randomBytes(3).toString('hex')}`;
}
