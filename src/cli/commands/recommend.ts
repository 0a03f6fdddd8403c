/** `cairn recommend USER`: what the service would answer for a user, from the command line. */
import type { Command } from 'commander';
import {
  addStoreOptions,
  configFrom,
  CTX,
  openServingForCommand,
  parseIntOption,
  type StoreOptions,
} from '../common.ts';

interface RecommendOptions extends StoreOptions {
  k?: number;
  category?: string;
  json?: boolean;
}

export function registerRecommend(program: Command): void {
  addStoreOptions(
    program
      .command('recommend <user>')
      .description('recommend items for a user with the current champion (and the fallback chain)')
      .option('--k <n>', 'number of items', parseIntOption('k', 1))
      .option('--category <name>', 'only items of this category')
      .option('--json', 'print the response as JSON'),
  ).action(async (user: string, opts: RecommendOptions) => {
    const config = configFrom({ logLevel: 'warn', ...opts });
    const cairn = await openServingForCommand(config);
    try {
      const r = await cairn.recommender.recommend(CTX, { userId: user, k: opts.k, category: opts.category });
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
        return;
      }
      process.stdout.write(
        `user ${user}: ${r.source}${r.fallbackReason ? ` (${r.fallbackReason})` : ''}, model ${r.modelVersion ?? 'none'}${r.degraded ? ', DEGRADED' : ''}\n`,
      );
      r.items.forEach((it, i) =>
        process.stdout.write(
          `${String(i + 1).padStart(3)}. ${it.itemId.padEnd(16)} ${it.score.toFixed(4).padStart(10)}  ${it.reason}\n`,
        ),
      );
    } finally {
      await cairn.close();
    }
  });
}
