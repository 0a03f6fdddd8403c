/** `cairn models list|promote|rollback`: the registry from the command line. */
import type { Command } from 'commander';
import { createEmbedded } from '../../main/embedded.ts';
import { createLogger } from '../../monitoring/logger.ts';
import type { ModelVersion } from '../../domain/types.ts';
import { addStoreOptions, configFrom, type StoreOptions } from '../common.ts';

interface ModelsOptions extends StoreOptions {
  json?: boolean;
}

async function withCairn<T>(
  opts: StoreOptions,
  fn: (c: Awaited<ReturnType<typeof createEmbedded>>) => Promise<T>,
): Promise<T> {
  const config = configFrom({ logLevel: 'warn', ...opts });
  const cairn = await createEmbedded(config, {
    logger: createLogger(config.logging.level, { destination: process.stderr }),
    pollMs: 0,
  });
  try {
    return await fn(cairn);
  } finally {
    await cairn.close();
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
  const models = program.command('models').description('list, promote and roll back model versions');
  addStoreOptions(
    models.command('list').description('model versions, newest first').option('--json', 'JSON output'),
  ).action((opts: ModelsOptions) =>
    withCairn(opts, async (c) => {
      const list = await c.registry.list();
      if (opts.json) process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
      else if (list.length === 0) process.stdout.write('no models yet: run `cairn train`\n');
      else process.stdout.write(`${list.map(line).join('\n')}\n`);
    }),
  );
  addStoreOptions(models.command('promote <version>').description('make a version the champion')).action(
    (version: string, opts: ModelsOptions) =>
      withCairn(opts, async (c) => {
        const m = await c.registry.promote(version);
        process.stdout.write(`champion: ${line(m)}\n`);
      }),
  );
  addStoreOptions(models.command('rollback').description('restore the previous champion')).action(
    (opts: ModelsOptions) =>
      withCairn(opts, async (c) => {
        const m = await c.registry.rollback();
        process.stdout.write(`champion: ${line(m)}\n`);
      }),
  );
}
