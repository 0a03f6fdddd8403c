/** `cairn models list|show|promote|rollback`: the registry from the command line. */
import { userInfo } from 'node:os';
import type { Command } from 'commander';
import type { ModelVersion } from '../../domain/types.ts';
import { closeAll, openArtifacts, openLogs, openStore } from '../../main/adapters.ts';
import { createLogger } from '../../monitoring/logger.ts';
import { ModelRegistry } from '../../registry/registry.ts';
import { addStoreOptions, configFrom, CTX, requireStore, type StoreOptions } from '../common.ts';
import { formatModelCard } from './model-card.ts';

interface ModelsOptions extends StoreOptions {
  json?: boolean;
  force?: boolean;
  reason?: string;
}

/** Who the audit trail names for a command-line promotion: the CLI principal and the OS user. */
function cliPrincipal(): string {
  try {
    return `${CTX.principal.id}:${userInfo().username}`;
  } catch {
    return CTX.principal.id;
  }
}

/**
 * Opens only what the registry needs: the store (never created by these commands), the artifact store
 * (to verify a promoted model loads) and the change log (to announce promotions to every replica).
 */
async function withRegistry<T>(opts: StoreOptions, fn: (registry: ModelRegistry) => Promise<T>): Promise<T> {
  const config = configFrom({ logLevel: 'warn', ...opts });
  await requireStore(config);
  const logger = createLogger(config.logging.level, { destination: process.stderr }).child({
    request_id: CTX.requestId,
  });
  const store = await openStore(config);
  const opened: { close(): Promise<void> }[] = [store];
  try {
    const artifacts = await openArtifacts(config, store);
    opened.unshift(artifacts);
    const logs = await openLogs(config, store, logger);
    opened.unshift(logs);
    return await fn(new ModelRegistry(store.models, artifacts, logger, logs.changeLog));
  } finally {
    await closeAll(opened);
  }
}

function line(m: ModelVersion): string {
  const ndcg = m.metrics['ndcg@10'];
  return [
    m.version.padEnd(34),
    m.algorithm.padEnd(8),
    m.status.padEnd(9),
    `${m.trainingData.interactions} interactions`.padEnd(22),
    ndcg === undefined ? '' : `ndcg@10=${ndcg.toFixed(4)}`,
    new Date(m.createdAt).toISOString(),
  ].join(' ');
}

export function registerModels(program: Command): void {
  const models = program.command('models').description('list, show, promote and roll back model versions');
  addStoreOptions(
    models.command('list').description('model versions, newest first').option('--json', 'JSON output'),
  ).action((opts: ModelsOptions) =>
    withRegistry(opts, async (registry) => {
      const list = await registry.list();
      if (opts.json) process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
      else if (list.length === 0) process.stdout.write('no models yet: run `cairn train`\n');
      else process.stdout.write(`${list.map(line).join('\n')}\n`);
    }),
  );
  addStoreOptions(
    models
      .command('show <version>')
      .description('the model card: lineage, data snapshot, code, metrics, gate checks, audit')
      .option('--json', 'JSON output (the stored version)'),
  ).action((version: string, opts: ModelsOptions) =>
    withRegistry(opts, async (registry) => {
      const m = await registry.get(version);
      process.stdout.write(opts.json ? `${JSON.stringify(m, null, 2)}\n` : formatModelCard(m));
    }),
  );
  addStoreOptions(
    models
      .command('promote <version>')
      .description('make a version the champion')
      .option('--force', 'promote a version that failed its gate (recorded in its audit trail)')
      .option('--reason <text>', 'why (kept in the audit trail)'),
  ).action((version: string, opts: ModelsOptions) =>
    withRegistry(opts, async (registry) => {
      const m = await registry.promote(version, {
        by: cliPrincipal(),
        force: opts.force === true,
        reason: opts.reason,
      });
      process.stdout.write(`champion: ${line(m)}\n`);
    }),
  );
  addStoreOptions(models.command('rollback').description('restore the previous champion')).action(
    (opts: ModelsOptions) =>
      withRegistry(opts, async (registry) => {
        const m = await registry.rollback({ by: cliPrincipal() });
        process.stdout.write(`champion: ${line(m)}\n`);
      }),
  );
}
