/**
 * Shadow scoring helpers: which requests a shadow model also scores, how its answer compares with what
 * was served, and the metrics of both. The scoring itself runs in the recommender (off the response
 * path); nothing here is ever served.
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import type { ExperimentVariant } from '../domain/types.ts';
import { unitHash } from '../experiments/assignment.ts';

export { overlapAtK } from '../experiments/results.ts';

export interface ShadowMetrics {
  /** Shadow scorings by experiment and outcome (scored, unavailable, error). */
  requests: Counter<'experiment' | 'outcome'>;
  /** Overlap@k of the shadow answer with the served one. */
  overlap: Histogram<'experiment'>;
}

const byRegistry = new WeakMap<Registry, ShadowMetrics>();

/** The shadow metrics of a registry (created once per registry). */
export function shadowMetrics(registry: Registry): ShadowMetrics {
  let m = byRegistry.get(registry);
  if (!m) {
    m = {
      requests: new Counter({
        name: 'cairn_shadow_requests_total',
        help: 'Live requests also scored by a shadow model, by experiment and outcome (scored, unavailable, error)',
        labelNames: ['experiment', 'outcome'] as const,
        registers: [registry],
      }),
      overlap: new Histogram({
        name: 'cairn_shadow_overlap_ratio',
        help: 'Share of the served top-k that the shadow model would also have served (overlap@k)',
        labelNames: ['experiment'] as const,
        buckets: [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1],
        registers: [registry],
      }),
    };
    byRegistry.set(registry, m);
  }
  return m;
}

/**
 * Whether the shadow variant scores this request: `weight` is the percentage of requests (≥ 100: all).
 * Hashed from the request id, so the decision is reproducible and independent between variants.
 */
export function shadowSampled(experimentId: string, variant: ExperimentVariant, requestId: string): boolean {
  if (!(variant.weight > 0)) return false;
  return unitHash(`${experimentId}/shadow/${variant.name}`, requestId) * 100 < variant.weight;
}
