/** `cairn serve`: the HTTP service. Role `all` (default) runs everything in one process. */
import type { Command } from 'commander';
import { createEmbedded } from '../../main/embedded.ts';
import { seedDemo } from '../../main/demo.ts';
import { createLogger } from '../../monitoring/logger.ts';
import { addStoreOptions, configFrom, parseIntOption, type StoreOptions } from '../common.ts';

interface ServeOptions extends StoreOptions {
  role: string;
  port?: number;
  host?: string;
  demo?: boolean;
}

export function registerServe(program: Command): void {
  addStoreOptions(
    program
      .command('serve')
      .description('run the recommendation service (all-in-one by default)')
      .option('--role <role>', 'all | api | worker', 'all')
      .option('--port <n>', 'HTTP port (else CAIRN_SERVER_PORT, default 8080)', parseIntOption('port'))
      .option('--host <host>', 'address to listen on (else CAIRN_SERVER_HOST, default 127.0.0.1)')
      .option('--demo', 'on an empty store, generate demo data and train a first model'),
  ).action(async (opts: ServeOptions) => {
    if (opts.role !== 'all') {
      throw new Error(`--role ${opts.role}: only the all-in-one role is available in this version`);
    }
    const server: Record<string, unknown> = {};
    if (opts.port !== undefined) server.port = opts.port;
    if (opts.host !== undefined) server.host = opts.host;
    const config = configFrom(opts, { server });
    const logger = createLogger(config.logging.level);
    const cairn = await createEmbedded(config, { logger });
    if (opts.demo) cairn.health.starting = 'seeding demo data and training the first model';
    const address = await cairn.app.listen({ host: config.server.host, port: config.server.port });
    logger.info({ address, store: cairn.store.kind, docs: `${address}/docs` }, 'Cairn is listening');

    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'shutting down');
      cairn.close().then(
        () => process.exit(0),
        (err: unknown) => {
          logger.error({ err }, 'error while shutting down');
          process.exit(1);
        },
      );
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));

    if (opts.demo) {
      try {
        const r = await seedDemo(cairn);
        if (r.seeded) logger.info(r, 'demo data ready');
      } catch (err) {
        logger.error({ err }, 'demo seeding failed');
      } finally {
        cairn.health.starting = null;
      }
    }
  });
}
