/**
 * Metrics of a role run as several processes (src/main/cluster.ts): each process registers its
 * registry with prom-client's cluster aggregation, and the process a scrape reaches asks the supervisor
 * for the role's metrics, gathered from every process (counters and histograms summed, each gauge as its
 * `aggregator` says).
 */
import cluster from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';

export const METRICS_REQUEST = 'cairn:metrics-request';
export const METRICS_REPLY = 'cairn:metrics-reply';

export interface MetricsRequest {
  type: typeof METRICS_REQUEST;
  id: number;
}
export interface MetricsReply {
  type: typeof METRICS_REPLY;
  id: number;
  text?: string;
  contentType?: string;
  error?: string;
}

/** Whether this process is one of a supervised role's processes (not the supervisor, not alone). */
export function inCluster(): boolean {
  return cluster.isWorker;
}

/**
 * In a supervised process: registers `registry` as what this process contributes to the role's
 * metrics (answered to the supervisor's gathering by prom-client itself).
 */
export function shareMetrics(registry: Registry): void {
  AggregatorRegistry.setRegistries([registry]);
  // Constructing one installs prom-client's listener that answers the supervisor's gathering.
  new AggregatorRegistry();
}

let nextRequest = 1;

/** In a supervised process: the metrics of every process of the role, gathered by the supervisor. */
export function clusterMetrics(timeoutMs = 5000): Promise<{ text: string; contentType: string }> {
  const id = nextRequest++;
  return new Promise((resolve, reject) => {
    const onMessage = (message: MetricsReply) => {
      if (message?.type !== METRICS_REPLY || message.id !== id) return;
      clearTimeout(timer);
      process.off('message', onMessage);
      if (message.error !== undefined || message.text === undefined) reject(new Error(message.error));
      else resolve({ text: message.text, contentType: message.contentType ?? 'text/plain' });
    };
    const timer = setTimeout(() => {
      process.off('message', onMessage);
      reject(new Error('the supervisor did not answer with the metrics in time'));
    }, timeoutMs);
    process.on('message', onMessage);
    process.send!({ type: METRICS_REQUEST, id } satisfies MetricsRequest);
  });
}
