/**
 * `cairn serve`: runs one process role.
 *   all    — everything in one process (the embedded default; also runs against PostgreSQL, Redis, NATS)
 *   api    — HTTP API and serving replica (needs PostgreSQL, Redis and NATS JetStream)
 *   worker — change-feed consumers and training jobs, with an ops server for probes and metrics
 */
import cluster from 'node:cluster';
import type { Command } from 'commander';
import type { FastifyInstance } from 'fastify';
import { CairnError } from '../../errors/errors.ts';
import { backendsFor, checkRole, type Role } from '../../main/adapters.ts';
import { createApi } from '../../main/api.ts';
import { superviseProcesses } from '../../main/cluster.ts';
import { seedDemo } from '../../main/demo.ts';
import { createEmbedded } from '../../main/embedded.ts';
import { createWorker } from '../../main/worker.ts';
import { createLogger, type Logger } from '../../monitoring/logger.ts';
import { checkBind } from '../../security/bind.ts';
import { addStoreOptions, configFrom, parseIntOption, type StoreOptions } from '../common.ts';

interface ServeOptions extends StoreOptions {
  role: string;
  processes?: number;
  port?: number;
  host?: string;
  demo?: boolean;
}

const ROLES: readonly Role[] = ['all', 'api', 'worker'];

export function registerServe(program: Command): void {
  addStoreOptions(
    program
      .command('serve')
      .description('run the recommendation service (all-in-one by default)')
      .option('--role <role>', 'all | api | worker', 'all')
      .option('--port <n>', 'HTTP port (else CAIRN_SERVER_PORT, default 8080)', parseIntOption('port'))
      .option('--host <host>', 'address to listen on (else CAIRN_SERVER_HOST, default 127.0.0.1)')
      .option(
        '--processes <n>',
        'role api: this many processes share the port (else CAIRN_SERVER_PROCESSES, default 1)',
        parseIntOption('processes'),
      )
      .option('--demo', 'on an empty store, generate demo data and train a first model (role all)'),
  ).action(async (opts: ServeOptions) => {
    const role = opts.role as Role;
    if (!ROLES.includes(role)) {
      throw CairnError.validation([{ field: 'role', message: `must be one of ${ROLES.join(', ')}` }]);
    }
    if (opts.demo && role !== 'all') {
      throw CairnError.validation([{ field: 'demo', message: '--demo seeds the all-in-one role only' }]);
    }
    const server: Record<string, unknown> = {};
    if (opts.port !== undefined) server.port = opts.port;
    if (opts.host !== undefined) server.host = opts.host;
    if (opts.processes !== undefined) server.processes = opts.processes;
    const config = configFrom(opts, { server });
    checkRole(role, config);
    checkBind(config); // before anything is opened: a refused bind leaves no store or file behind
    if (config.server.processes > 1 && role !== 'api') {
      throw new CairnError('CAIRN_CONFIG_INVALID', 'only the api role runs as several processes', {
        fields: [{ field: 'server.processes', message: `must be 1 for role ${role} (its state is its own)` }],
      });
    }
    const logger = createLogger(config.logging.level).child({ role });
    if (config.server.processes > 1 && cluster.isPrimary) {
      // The supervisor opens nothing: each forked process runs this command as a single api process.
      process.exit(await superviseProcesses(config.server.processes, logger));
    }

    let proc: { app: FastifyInstance; close(): Promise<void> };
    let afterListen: () => Promise<void> = () => Promise.resolve();
    if (role === 'api') proc = await createApi(config, { logger });
    else if (role === 'worker') proc = await createWorker(config, { logger });
    else {
      const cairn = await createEmbedded(config, { logger });
      proc = cairn;
      if (opts.demo) {
        cairn.health.starting = 'seeding demo data and training the first model';
        afterListen = async () => {
          try {
            const r = await seedDemo(cairn);
            if (r.seeded) logger.info(r, 'demo data ready');
          } catch (err) {
            logger.error({ err }, 'demo seeding failed');
          } finally {
            cairn.health.starting = null;
          }
        };
      }
    }
    let address: string;
    try {
      address = await proc.app.listen({ host: config.server.host, port: config.server.port });
    } catch (err) {
      // Port taken, say: close what was opened, or its connections and timers keep the process alive.
      await proc.close().catch(() => undefined);
      throw err;
    }
    logger.info(
      { address, backends: backendsFor(config), docs: role === 'worker' ? undefined : `${address}/docs` },
      'Cairn is listening',
    );
    handleSignals(proc, logger);
    await afterListen();
  });
}

function handleSignals(proc: { close(): Promise<void> }, logger: Logger): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    proc.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'error while shutting down');
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
}
