/**
 * From stored totals to experiment results (pure): per-variant estimates with 95 % intervals, the
 * sample-ratio-mismatch p-value, the lift of each arm over the control, and the shadow comparison.
 */
import type { Experiment, ServedRecord, VariantTotals } from '../domain/types.ts';
import type { Estimate, ExperimentResults, ShadowResult, VariantResult } from './contracts.ts';
import { meanInterval, relativeLift, srmPValue, wilson } from './stats.ts';

const ZERO: Omit<VariantTotals, 'variant'> = {
  users: 0,
  impressions: 0,
  clicks: 0,
  conversions: 0,
  clickingUsers: 0,
  convertingUsers: 0,
  revenue: 0,
  revenueSquares: 0,
};

/**
 * Results of an `ab` or `canary` experiment from its per-variant totals. Variants come in the
 * experiment's order (a variant nobody was served yet has zeros); the first is the control. The SRM
 * test compares users per variant with the weights; the lift is on the per-user conversion rate.
 */
export function computeResults(
  experiment: Pick<Experiment, 'id' | 'variants'>,
  totals: readonly VariantTotals[],
): ExperimentResults {
  const byName = new Map(totals.map((t) => [t.variant, t]));
  const rows = experiment.variants.map((v) => ({ ...ZERO, ...byName.get(v.name), variant: v.name }));
  const control = rows[0];
  const variants: VariantResult[] = rows.map((t, i) => ({
    name: t.variant,
    users: t.users,
    impressions: t.impressions,
    clicks: t.clicks,
    conversions: t.conversions,
    ctr: wilson(t.clicks, t.impressions),
    conversionRate: wilson(t.convertingUsers, t.users),
    revenuePerUser: meanInterval(t.revenue, t.revenueSquares, t.users),
    liftVsControl:
      i === 0 || control === undefined
        ? null
        : relativeLift(
            { successes: t.convertingUsers, trials: t.users },
            { successes: control.convertingUsers, trials: control.users },
          ),
  }));
  return {
    experimentId: experiment.id,
    srmPValue: srmPValue(
      rows.map((r) => r.users),
      experiment.variants.map((v) => v.weight),
    ),
    variants,
  };
}

/** |shadow top-k ∩ served top-k| / k with k the served answer's length; null for an empty answer. */
export function overlapAtK(served: readonly string[], shadow: readonly string[]): number | null {
  const k = served.length;
  if (k === 0) return null;
  const top = new Set(shadow.slice(0, k));
  let hits = 0;
  for (const id of served) if (top.has(id)) hits++;
  return hits / k;
}

/**
 * Compares one shadow variant's logged answers with the answers served for the same requests. `pairs`
 * are the shadow answers examined, each with its served answer (null when it was not logged).
 */
export function summarizeShadow(
  variant: Experiment['variants'][number],
  pairs: readonly { shadow: ServedRecord; served: ServedRecord | null }[],
): ShadowResult {
  let compared = 0;
  let personalized = 0;
  let items = 0;
  let identical = 0;
  let sum = 0;
  let sumSquares = 0;
  let scored = 0;
  const users = new Set<string>();
  const modelVersions: Record<string, number> = {};
  for (const { shadow, served } of pairs) {
    if (!served) continue;
    compared++;
    users.add(served.userId);
    if (served.source === 'personalized') personalized++;
    items += served.items.length;
    const version = served.modelVersion ?? 'none';
    modelVersions[version] = (modelVersions[version] ?? 0) + 1;
    const servedIds = served.items.map((i) => i.itemId);
    const overlap = overlapAtK(
      servedIds,
      shadow.items.map((i) => i.itemId),
    );
    if (overlap === null) continue;
    scored++;
    sum += overlap;
    sumSquares += overlap * overlap;
    if (overlap === 1) identical++;
  }
  return {
    variant: variant.name,
    modelVersion: variant.modelVersion,
    requests: pairs.length,
    compared,
    users: users.size,
    served: { personalized, items, modelVersions },
    // A share lives in [0, 1]; the normal interval of a small sample can reach past either end.
    overlap: clampInterval(meanInterval(sum, sumSquares, scored), 0, 1),
    identical: scored > 0 ? identical / scored : 0,
  };
}

function clampInterval(i: Estimate, lo: number, hi: number): Estimate {
  return { value: i.value, low: Math.max(lo, i.low), high: Math.min(hi, i.high) };
}
