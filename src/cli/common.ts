/** Options shared by the commands that open a Cairn data directory, and how they become a config. */
import type { Command } from 'commander';
import { loadConfig, type Config, type DeepPartial } from '../config/load.ts';
import { cliContext } from '../domain/context.ts';
import { requireExistingStore } from '../main/adapters.ts';
import { createEmbedded, type Embedded } from '../main/embedded.ts';
import { createLogger } from '../monitoring/logger.ts';

/** The request context of this command run (one id for all its calls, in its log lines too). */
export const CTX = cliContext();

/**
 * Opens the data directory the way `cairn serve` would (same adapters, same consumers), for a command:
 * no job runner (a command never claims or changes other processes' jobs), logs to stderr. Read-only
 * commands refuse a store that does not exist instead of creating an empty one, and leave no snapshot.
 */
export async function openForCommand(
  config: Readonly<Config>,
  options: { readOnly?: boolean } = {},
): Promise<Embedded> {
  if (options.readOnly) requireExistingStore(config);
  return createEmbedded(config, {
    logger: createLogger(config.logging.level, { destination: process.stderr }),
    runJobs: false,
    snapshotEveryMs: 0,
    persistSnapshot: !options.readOnly,
  });
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

export function parseIntOption(name: string, min = 0): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer ≥ ${min}, got "${v}"`);
    return n;
  };
}
