/** Pure mappings of experiments, results and feedback outcomes to the wire format (snake_case, ISO times). */
import type { Experiment } from '../domain/types.ts';
import type { Estimate, ExperimentResults, FeedbackOutcome } from '../experiments/contracts.ts';
import type { ExperimentResultsWire, ExperimentWire, FeedbackBatchWire } from './experiment-schemas.ts';
import { isoTime } from './wire.ts';

export function experimentToWire(e: Experiment): ExperimentWire {
  return {
    id: e.id,
    kind: e.kind,
    status: e.status,
    unit: e.unit,
    variants: e.variants.map((v) => ({
      name: v.name,
      weight: v.weight,
      model_version: v.modelVersion,
      algorithm: v.algorithm,
      ranker: v.ranker,
    })),
    guard:
      e.guard === null
        ? null
        : { metric: e.guard.metric, margin: e.guard.margin, min_impressions: e.guard.minImpressions },
    created_at: isoTime(e.createdAt),
    created_by: e.createdBy,
    stopped_at: e.stoppedAt === null ? null : isoTime(e.stoppedAt),
    stop_reason: e.stopReason,
  };
}

const estimate = (e: Estimate) => ({ value: e.value, low: e.low, high: e.high });

export function resultsToWire(r: ExperimentResults): ExperimentResultsWire {
  const wire: ExperimentResultsWire = {
    experiment_id: r.experimentId,
    srm_p_value: r.srmPValue,
    variants: r.variants.map((v) => ({
      name: v.name,
      users: v.users,
      impressions: v.impressions,
      clicks: v.clicks,
      conversions: v.conversions,
      ctr: estimate(v.ctr),
      conversion_rate: estimate(v.conversionRate),
      revenue_per_user: estimate(v.revenuePerUser),
      lift_vs_control: v.liftVsControl === null ? null : estimate(v.liftVsControl),
    })),
  };
  if (r.shadow)
    wire.shadow = r.shadow.map((s) => ({
      variant: s.variant,
      model_version: s.modelVersion,
      requests: s.requests,
      compared: s.compared,
      users: s.users,
      served: {
        personalized: s.served.personalized,
        items: s.served.items,
        model_versions: s.served.modelVersions,
      },
      overlap: estimate(s.overlap),
      identical: s.identical,
    }));
  return wire;
}

export function feedbackOutcomesToWire(outcomes: readonly FeedbackOutcome[]): FeedbackBatchWire {
  let accepted = 0;
  let duplicates = 0;
  let rejected = 0;
  const results = outcomes.map((o, index) => {
    if (o.status === 'rejected') {
      rejected++;
      const { code, field, message } = o.error ?? {
        code: 'CAIRN_VALIDATION',
        field: 'body',
        message: 'feedback rejected',
      };
      return { index, status: o.status, error: { code, field, message } };
    }
    if (o.status === 'accepted') accepted++;
    else duplicates++;
    return { index, status: o.status };
  });
  return { accepted, duplicates, rejected, results };
}
