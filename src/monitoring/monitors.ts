/**
 * The model monitors a composition root starts: the freshness monitor (every role) and, where the event
 * log is consumed (roles all and worker), the drift monitor, which follows the champion the freshness
 * monitor sees. Both are wired to the process's metrics here, so a root adds one call.
 */
import type { Config } from '../config/load.ts';
import type { ModelRegistry } from '../registry/registry.ts';
import type { EventLog } from '../storage/ports.ts';
import { DriftMonitor } from './drift-monitor.ts';
import { FreshnessMonitor, type ServedChampion } from './freshness.ts';
import type { Logger } from './logger.ts';
import type { Metrics } from './metrics.ts';

export interface Monitors {
  freshness: FreshnessMonitor;
  /** Null in roles that do not consume the event log (api). */
  drift: DriftMonitor | null;
  close(): Promise<void>;
}

export interface MonitorDeps {
  config: Readonly<Config>;
  logger: Logger;
  metrics: Metrics;
  registry: Pick<ModelRegistry, 'champion' | 'list' | 'load'>;
  /** The champion this process serves (roles all and api). */
  served?: ServedChampion;
  /** The event log, in roles that consume it: enables the drift monitor. */
  eventLog?: Pick<EventLog, 'head' | 'consume'>;
}

/**
 * Starts the monitors: the first registry check is awaited (it never throws: an unreachable registry is
 * reported, not fatal); the drift reference loads in the background (it reads the champion's artifact).
 */
export async function startMonitors(deps: MonitorDeps): Promise<Monitors> {
  const { config, logger, metrics, registry } = deps;
  const freshness = new FreshnessMonitor({
    registry,
    logger,
    intervalSeconds: config.monitoring.freshnessCheckSeconds,
    maxModelAgeSeconds: config.serving.maxModelAgeSeconds,
    served: deps.served,
  });
  metrics.watchFreshness(() => freshness.gauges());
  let drift: DriftMonitor | null = null;
  if (deps.eventLog) {
    const d = new DriftMonitor({
      eventLog: deps.eventLog,
      registry,
      logger,
      window: config.monitoring.driftWindow,
      types: config.events.types,
    });
    drift = d;
    metrics.watchDrift(() => d.values());
    freshness.onChampionChange((champion) => {
      void d.useChampion(champion);
    });
  }
  await freshness.start();
  return {
    freshness,
    drift,
    async close() {
      freshness.close();
      await drift?.close();
    },
  };
}
