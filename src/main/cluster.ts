/**
 * The `api` role over several processes (config `server.processes`): Node's cluster module. The
 * supervisor (the process `cairn serve` started) opens no backend; it forks the processes, which all
 * listen on the one port (the supervisor accepts connections and hands them out in turn), restarts a
 * process that dies (at most `MAX_RESTARTS` within `RESTART_WINDOW_MS`, then it gives up and exits 1),
 * and on SIGTERM/SIGINT stops them all and exits when they have.
 *
 * Metrics: a scrape reaches one process, so that process asks the supervisor, which gathers every
 * process's registry (prom-client's cluster aggregation: counters and histograms summed, each gauge as
 * its `aggregator` says) and answers with the text for the whole role.
 */
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import {
  METRICS_REPLY,
  METRICS_REQUEST,
  type MetricsReply,
  type MetricsRequest,
} from '../monitoring/cluster-metrics.ts';
import type { Logger } from '../monitoring/logger.ts';

const MAX_RESTARTS = 10;
const RESTART_WINDOW_MS = 60_000;

/**
 * Runs the supervisor until it is told to stop; resolves with the exit code. `fork` options are the
 * current command (the same `cairn serve` arguments and environment).
 */
export function superviseProcesses(processes: number, logger: Logger): Promise<number> {
  const aggregator = new AggregatorRegistry();
  const restarts: number[] = [];
  let stopping = false;
  return new Promise((resolve) => {
    const fork = (): Worker => {
      const worker = cluster.fork();
      worker.on('message', (message: MetricsRequest) => {
        if (message?.type !== METRICS_REQUEST) return;
        aggregator.clusterMetrics().then(
          (text) =>
            worker.send({
              type: METRICS_REPLY,
              id: message.id,
              text,
              contentType: aggregator.contentType,
            } satisfies MetricsReply),
          (err: unknown) =>
            worker.send({ type: METRICS_REPLY, id: message.id, error: String(err) } satisfies MetricsReply),
        );
      });
      return worker;
    };
    const finish = (code: number) => {
      if (Object.keys(cluster.workers ?? {}).length === 0) resolve(code);
    };
    cluster.on('exit', (worker, code, signal) => {
      if (stopping) return finish(0);
      const now = Date.now();
      while (restarts.length > 0 && now - restarts[0] > RESTART_WINDOW_MS) restarts.shift();
      if (restarts.length >= MAX_RESTARTS) {
        logger.error(
          { pid: worker.process.pid, code, signal, restarts: restarts.length },
          `api processes keep dying (${MAX_RESTARTS} restarts within a minute): stopping`,
        );
        stopping = true;
        for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
        return finish(1);
      }
      restarts.push(now);
      logger.warn({ pid: worker.process.pid, code, signal }, 'an api process exited; starting another');
      fork();
    });
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'stopping the api processes');
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
      finish(0);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    for (let i = 0; i < processes; i++) fork();
    logger.info({ processes }, 'api processes started');
  });
}
