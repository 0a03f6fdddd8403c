/**
 * Chooses and opens every backend from the configuration's URLs — the only place that knows which
 * adapter implements which port. Composition roots ask for the ports their role uses and nothing else.
 *
 *   port          | embedded default (no URLs)          | production (store.url postgres://, redis.url, nats.url)
 *   store         | SQLite file in dataDir               | PostgreSQL
 *   event/change  | the store's own tables               | NATS JetStream streams
 *   online state  | memory (snapshotted to artifacts)    | Redis
 *   job queue     | the store's jobs table               | BullMQ on Redis
 *   artifacts     | files under dataDir (SQLite) or the database (PostgreSQL); `artifacts.url` file://DIR forces files
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Config } from '../config/load.ts';
import { CairnError, type FieldIssue } from '../errors/errors.ts';
import { StoreWriter } from '../ingest/consumers.ts';
import type { JobQueue } from '../jobs/contracts.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { Metrics } from '../monitoring/metrics.ts';
import { FileArtifactStore } from '../storage/files/artifacts.ts';
import { MemoryOnlineState } from '../storage/memory/online-state.ts';
import { openNatsLogs } from '../storage/nats/log.ts';
import type { ConsumerErrorInfo } from '../storage/polling-consumer.ts';
import { openStore, storeLocation } from '../storage/open.ts';
import type {
  ArtifactStore,
  ChangeLog,
  EventLog,
  OnlineState,
  OnlineStateOptions,
  Store,
} from '../storage/ports.ts';
import { PostgresArtifactStore } from '../storage/postgres/artifacts.ts';
import { PostgresJobQueue } from '../storage/postgres/job-queue.ts';
import { PgChangeLog, PgEventLog } from '../storage/postgres/log.ts';
import { PostgresStore } from '../storage/postgres/store.ts';
import { BullJobQueue } from '../storage/redis/job-queue.ts';
import { RedisOnlineState } from '../storage/redis/online-state.ts';
import { SqliteJobQueue } from '../storage/sqlite/job-queue.ts';
import { SqliteChangeLog, SqliteEventLog } from '../storage/sqlite/log.ts';
import { SqliteStore } from '../storage/sqlite/store.ts';

export type Role = 'all' | 'api' | 'worker';

export interface Backends {
  store: 'sqlite' | 'postgres';
  logs: 'store' | 'nats';
  online: 'memory' | 'redis';
  jobs: 'store' | 'bullmq';
  artifacts: 'files' | 'postgres';
}

/** Durable consumer names shared by every process of a deployment. */
export const DURABLE = {
  storeWriter: 'cairn-store-writer',
  projectorEvents: 'cairn-online-events',
  projectorChanges: 'cairn-online-changes',
} as const;

/** Key of the in-memory online state's snapshot in the artifact store. */
export const ONLINE_SNAPSHOT_KEY = 'snapshots/online-state.bin';

/** Which adapter serves each port, from the URLs alone (nothing is opened). */
export function backendsFor(config: Readonly<Config>): Backends {
  const store = storeLocation(config).kind;
  const artifactsUrl = config.artifacts.url.trim();
  return {
    store,
    logs: config.nats.url.trim() !== '' ? 'nats' : 'store',
    online: config.redis.url.trim() !== '' ? 'redis' : 'memory',
    jobs: config.redis.url.trim() !== '' ? 'bullmq' : 'store',
    artifacts: artifactsUrl === '' && store === 'postgres' ? 'postgres' : 'files',
  };
}

/**
 * The api and worker roles exist to run as many processes: each needs backends every process shares.
 * Throws CAIRN_CONFIG_INVALID naming every missing key.
 */
export function checkRole(role: Role, config: Readonly<Config>): void {
  if (role === 'all') return;
  const b = backendsFor(config);
  const issues: FieldIssue[] = [];
  if (b.store !== 'postgres')
    issues.push({
      field: 'store.url',
      message: `--role ${role} needs a postgres:// store (CAIRN_STORE_URL)`,
    });
  if (b.online !== 'redis')
    issues.push({ field: 'redis.url', message: `--role ${role} needs Redis (CAIRN_REDIS_URL)` });
  if (b.logs !== 'nats')
    issues.push({ field: 'nats.url', message: `--role ${role} needs NATS JetStream (CAIRN_NATS_URL)` });
  if (b.artifacts !== 'postgres' && config.artifacts.url.trim() !== '')
    issues.push({
      field: 'artifacts.url',
      message: `--role ${role} keeps artifacts in PostgreSQL; leave artifacts.url empty`,
    });
  if (issues.length > 0) {
    throw new CairnError(
      'CAIRN_CONFIG_INVALID',
      `invalid configuration for --role ${role}:\n${issues.map((i) => `  ${i.field}: ${i.message}`).join('\n')}`,
      { fields: issues },
    );
  }
}

/**
 * For commands that only read: fails with CAIRN_NOT_FOUND naming the path when the SQLite file does not
 * exist, instead of creating an empty store.
 */
export function requireExistingStore(config: Readonly<Config>): void {
  const where = storeLocation(config);
  if (where.kind === 'sqlite' && where.path !== ':memory:' && !existsSync(where.path)) {
    throw new CairnError(
      'CAIRN_NOT_FOUND',
      `no Cairn store at ${where.path}: pass --data DIR or --store URL of an existing store`,
      { field: 'store.url', path: where.path },
    );
  }
}

export function onlineStateOptions(config: Readonly<Config>): OnlineStateOptions {
  return {
    types: config.events.types,
    popularityHalfLifeDays: config.serving.popularityHalfLifeDays,
    historyLimit: config.serving.historyLimit,
    maxEventWeight: config.events.maxEventWeight,
    maxUserItemWeight: config.events.maxUserItemWeight,
    features: config.features,
  };
}

export async function openArtifacts(config: Readonly<Config>, store: Store): Promise<ArtifactStore> {
  const url = config.artifacts.url.trim();
  if (url.startsWith('file://')) return new FileArtifactStore({ root: resolve(url.slice('file://'.length)) });
  if (url !== '')
    throw new CairnError('CAIRN_CONFIG_INVALID', 'artifacts.url must be empty or file://DIR', {
      fields: [{ field: 'artifacts.url', message: 'must be empty or file://DIR' }],
    });
  if (store instanceof PostgresStore) return Promise.resolve(new PostgresArtifactStore(store.db));
  // Keys are `models/<version>.cairn`: the files land in dataDir/models, where earlier versions kept them.
  return Promise.resolve(new FileArtifactStore({ root: resolve(config.dataDir) }));
}

export async function openLogs(
  config: Readonly<Config>,
  store: Store,
  logger: Logger,
): Promise<{ eventLog: EventLog; changeLog: ChangeLog; close(): Promise<void> }> {
  // A failing consumer retries with backoff; one line per streak of failures says so.
  const consumerOptions = {
    onError: (err: unknown, info: ConsumerErrorInfo) => {
      if (info.failures === 1)
        logger.warn({ err, consumer: info.consumer, stage: info.stage }, 'log consumer failing; retrying');
    },
  };
  if (config.nats.url.trim() !== '') {
    const logs = await openNatsLogs({
      url: config.nats.url,
      streamPrefix: config.nats.streamPrefix,
      duplicateWindowSeconds: config.nats.duplicateWindowSeconds,
    });
    return logs;
  }
  if (store instanceof SqliteStore) {
    const eventLog = new SqliteEventLog(store, consumerOptions);
    const changeLog = new SqliteChangeLog(store, consumerOptions);
    return { eventLog, changeLog, close: () => closeAll([eventLog, changeLog]) };
  }
  if (store instanceof PostgresStore) {
    const eventLog = new PgEventLog(store, consumerOptions);
    const changeLog = new PgChangeLog(store, consumerOptions);
    return { eventLog, changeLog, close: () => closeAll([eventLog, changeLog]) };
  }
  throw new CairnError('CAIRN_INTERNAL', 'no log adapter for this store');
}

/**
 * Opens the online state. Memory: restored from its snapshot when one exists and is usable (else empty,
 * and the projector replays the logs from the start); a snapshot ahead of the logs (the store was
 * replaced) is discarded.
 */
export async function openOnlineState(
  config: Readonly<Config>,
  artifacts: ArtifactStore,
  heads: { events: number; changes: number },
  logger: Logger,
): Promise<OnlineState> {
  const options = onlineStateOptions(config);
  if (config.redis.url.trim() !== '') {
    return new RedisOnlineState({ url: config.redis.url, keyPrefix: config.redis.keyPrefix, ...options });
  }
  if (await artifacts.exists(ONLINE_SNAPSHOT_KEY)) {
    try {
      const state = MemoryOnlineState.restore(await artifacts.get(ONLINE_SNAPSHOT_KEY), options);
      const marks = await state.watermarks();
      if (marks.events <= heads.events && marks.changes <= heads.changes) {
        logger.info({ watermarks: marks }, 'online state restored from its snapshot');
        return state;
      }
      logger.warn({ watermarks: marks, heads }, 'online-state snapshot is ahead of the logs; rebuilding');
    } catch (err) {
      logger.warn({ err }, 'online-state snapshot unusable; rebuilding from the logs');
    }
  }
  return new MemoryOnlineState(options);
}

export function openJobQueue(config: Readonly<Config>, store: Store, logger: Logger): JobQueue {
  const options = { backoffBaseMs: config.jobs.backoffSeconds * 1000, maxAttempts: config.jobs.maxAttempts };
  if (config.redis.url.trim() !== '') {
    // Connection errors surface on the calls that fail; the background ones are worth a (throttled) line.
    let lastLogged = 0;
    return new BullJobQueue({
      url: config.redis.url,
      prefix: `${config.redis.keyPrefix}bull`,
      ...options,
      onError: (err) => {
        const now = Date.now();
        if (now - lastLogged < 10_000) return;
        lastLogged = now;
        logger.warn({ err }, 'job queue (Redis) connection error');
      },
    });
  }
  if (store instanceof SqliteStore) return new SqliteJobQueue(store, options);
  if (store instanceof PostgresStore) return new PostgresJobQueue(store, options);
  throw new CairnError('CAIRN_INTERNAL', 'no job queue adapter for this store');
}

export { openStore };

/** Store, artifacts and logs, and a stack that closes them (and what is added) in reverse. */
export interface Base {
  store: Store;
  artifacts: ArtifactStore;
  eventLog: EventLog;
  changeLog: ChangeLog;
  /** Registers something to close before everything opened so far. */
  add<T extends { close(): Promise<void> }>(resource: T): T;
  close(): Promise<void>;
}

/** The ports every process role opens: the base plus the online state. */
export interface Core extends Base {
  online: OnlineState;
  /** Log heads when the online state was opened. */
  heads: { events: number; changes: number };
}

/**
 * Opens store, artifacts and logs, in that order (what a command that writes or trains needs); on
 * failure closes what was opened. Resources registered later with `add` close first.
 */
export async function openBase(config: Readonly<Config>, logger: Logger): Promise<Base> {
  const stack: { close(): Promise<void> }[] = [];
  const add = <T extends { close(): Promise<void> }>(resource: T): T => {
    stack.unshift(resource);
    return resource;
  };
  const close = () => closeAll(stack.splice(0));
  try {
    const store = add(await openStore(config));
    const artifacts = add(await openArtifacts(config, store));
    const { eventLog, changeLog } = add(await openLogs(config, store, logger));
    return { store, artifacts, eventLog, changeLog, add, close };
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }
}

/** The base plus the online state (restored from its snapshot when it lives in memory). */
export async function openCore(config: Readonly<Config>, logger: Logger): Promise<Core> {
  const base = await openBase(config, logger);
  try {
    const heads = { events: await base.eventLog.head(), changes: await base.changeLog.head() };
    const online = base.add(await openOnlineState(config, base.artifacts, heads, logger));
    return { ...base, online, heads };
  } catch (err) {
    await base.close().catch(() => undefined);
    throw err;
  }
}

/** The store writer of a deployment whose event log is NATS, counting what it writes. */
export function startStoreWriter(core: Core, logger: Logger, metrics: Metrics): StoreWriter {
  const writer = new StoreWriter({
    eventLog: core.eventLog,
    events: core.store.events,
    logger,
    durable: DURABLE.storeWriter,
    onWritten: (inserted, duplicates) => {
      metrics.eventsStored.inc({ outcome: 'inserted' }, inserted);
      metrics.eventsStored.inc({ outcome: 'duplicate' }, duplicates);
    },
  });
  writer.start();
  return core.add(writer);
}

/** Closes every resource, even when some fail; rethrows the first failure. */
export async function closeAll(
  resources: readonly ({ close(): Promise<void> } | null | undefined)[],
): Promise<void> {
  let first: Error | null = null;
  for (const r of resources) {
    if (!r) continue;
    try {
      await r.close();
    } catch (err) {
      first ??= err instanceof Error ? err : new Error('close failed', { cause: err });
    }
  }
  if (first !== null) throw first;
}
