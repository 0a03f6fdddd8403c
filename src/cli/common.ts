/** Options shared by the commands that open a Cairn data directory, and how they become a config. */
import type { Command } from 'commander';
import { loadConfig, type Config, type DeepPartial } from '../config/load.ts';
import { cliContext } from '../domain/context.ts';
import { CairnError } from '../errors/errors.ts';
import { OnlineProjector } from '../ingest/consumers.ts';
import { openBase, openCore, requireExistingStore, type Base } from '../main/adapters.ts';
import { startServing } from '../main/serving.ts';
import { createLogger, type Logger } from '../monitoring/logger.ts';
import { createMetrics, type Metrics } from '../monitoring/metrics.ts';
import { ModelRegistry } from '../registry/registry.ts';
import type { Recommender } from '../serving/recommender.ts';
import { MemoryOnlineState } from '../storage/memory/online-state.ts';
import { storeLocation } from '../storage/open.ts';
import { PostgresStore } from '../storage/postgres/store.ts';
import { parseNumberOption } from './commands/eval-data.ts';

/** The request context of this command run (one id for all its calls, in its log lines too). */
export const CTX = cliContext();

/**
 * For commands that must not create a store: `requireExistingStore` (the SQLite file), and for PostgreSQL
 * the same question asked of the schema — does it hold Cairn's migrations table? — without creating it.
 */
export async function requireStore(config: Readonly<Config>): Promise<void> {
  requireExistingStore(config);
  const where = storeLocation(config);
  if (where.kind !== 'postgres') return;
  const probe = new PostgresStore({ url: where.url, schema: where.schema, maxConnections: 1 });
  try {
    const [row] = await probe.db.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [
      `${probe.db.s}.schema_migrations`,
    ]);
    if (row?.t == null) {
      throw new CairnError(
        'CAIRN_NOT_FOUND',
        `no Cairn store in PostgreSQL schema "${where.schema}": pass --store URL and store.schema of an existing store`,
        { field: 'store.schema', schema: where.schema },
      );
    }
  } finally {
    await probe.close();
  }
}

/** What a command that writes or trains opens: store, artifacts, logs and the registry — no serving. */
export interface CommandBase extends Base {
  config: Readonly<Config>;
  logger: Logger;
  metrics: Metrics;
  registry: ModelRegistry;
}

/** Logs go to stderr (stdout is the command's answer), tagged with the command's request id. */
function commandLogger(config: Readonly<Config>): Logger {
  return createLogger(config.logging.level, { destination: process.stderr }).child({
    request_id: CTX.requestId,
  });
}

/**
 * Opens only the ports a writing command uses. Commands that only read, or only change what a store
 * already holds, pass `existingStore`: a store that does not exist is an error naming the path instead
 * of a new empty store.
 */
export async function openForCommand(
  config: Readonly<Config>,
  options: { existingStore?: boolean } = {},
): Promise<CommandBase> {
  if (options.existingStore) await requireStore(config);
  const logger = commandLogger(config);
  const base = await openBase(config, logger);
  const registry = new ModelRegistry(base.store.models, base.artifacts, logger, base.changeLog);
  return { ...base, config, logger, metrics: createMetrics({ defaultMetrics: false }), registry };
}

/**
 * What `cairn recommend` needs: the serving side over the online state, brought up to date first
 * (an in-memory state is restored from its snapshot and catches up from the logs; it is not written
 * back). No HTTP, no jobs.
 */
export async function openServingForCommand(config: Readonly<Config>): Promise<{
  recommender: Recommender;
  close(): Promise<void>;
}> {
  await requireStore(config);
  const logger = commandLogger(config);
  const core = await openCore(config, logger);
  try {
    if (core.online instanceof MemoryOnlineState) {
      const projector = core.add(
        new OnlineProjector({
          online: core.online,
          eventLog: core.eventLog,
          changeLog: core.changeLog,
          logger,
        }),
      );
      await projector.start();
      await projector.eventsCaughtUp(core.heads.events);
      await projector.changesCaughtUp(core.heads.changes);
    }
    const registry = new ModelRegistry(core.store.models, core.artifacts, logger, null);
    const serving = core.add(
      await startServing({
        config,
        logger,
        metrics: createMetrics({ defaultMetrics: false }),
        registry,
        online: core.online,
        changeLog: core.changeLog,
      }),
    );
    return { recommender: serving.recommender, close: () => core.close() };
  } catch (err) {
    await core.close().catch(() => undefined);
    throw err;
  }
}

export interface StoreOptions {
  data?: string;
  config?: string;
  store?: string;
  logLevel?: string;
}

export function addStoreOptions(cmd: Command): Command {
  return cmd
    .option('--data <dir>', 'data directory (SQLite file, model artifacts)')
    .option('--config <file>', 'JSON configuration file (else CAIRN_CONFIG)')
    .option('--store <url>', 'system of record: sqlite://PATH or postgres://… (else CAIRN_STORE_URL)')
    .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent');
}

export function configFrom(options: StoreOptions, extra: DeepPartial<Config> = {}): Readonly<Config> {
  const overrides: DeepPartial<Config> = { ...extra };
  if (options.data) overrides.dataDir = options.data;
  if (options.store) overrides.store = { ...(extra.store ?? {}), url: options.store };
  if (options.logLevel) overrides.logging = { level: options.logLevel };
  return loadConfig({ file: options.config, overrides });
}

/** Commander parser of an integer flag: a bad value is a CAIRN_VALIDATION error naming the flag. */
export function parseIntOption(name: string, min = 0): (v: string) => number {
  return parseNumberOption(name, { integer: true, min });
}
