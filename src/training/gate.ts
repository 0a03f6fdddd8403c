/**
 * The promotion gate: a pure decision over measurements the fit worker made on ONE holdout for both
 * the challenger and the champion (fit.ts), so a challenger is never compared with a number the
 * champion earned on another, older test set. Each rule is a GateCheck kept in the model's lineage;
 * the first failed check is the reason.
 */
import type { GateCheck, GateRecord } from '../domain/types.ts';

export const GATE_METRIC = 'ndcg@10';
/** Metrics compared with the champion (besides any other metric given a tolerance in the config). */
export const COMPARED_METRICS = ['ndcg@10', 'recall@10', 'coverage@10'] as const;
/** Used for a compared metric the configured `training.gate.tolerances` do not list. */
export const DEFAULT_TOLERANCES: Readonly<Record<string, number>> = { 'recall@10': 0.05, 'coverage@10': 0.5 };

export interface GateOptions {
  /** `training.gate.tolerances`: allowed relative shortfall per metric. */
  tolerances: Readonly<Record<string, number>>;
  /** `training.autoPromoteMinRatio`: ndcg@10 tolerance is `1 − minRatio` unless listed in tolerances. */
  minRatio: number;
  minUsersScored: number;
  maxPopularityOverlap: number;
}

export interface GateInput {
  algorithm: string;
  holdout: GateRecord['holdout'];
  holdoutUsers: number;
  holdoutInteractions: number;
  /** The champion's version (null: this would be the first model). */
  champion: string | null;
  /** The challenger's metrics on the holdout (empty with holdout `none`). */
  challenger: Record<string, number>;
  /** The champion's metrics on the same holdout (null without a champion or a holdout). */
  championMetrics: Record<string, number> | null;
  /** The popularity baseline's metrics on the same holdout. */
  baseline: Record<string, number>;
  /** Non-finite (NaN, ±∞) scores the challenger produced, and how many scores were looked at. */
  nonFiniteScores: number;
  scoresChecked: number;
  /** Mean share of the challenger's top-10 also in popularity's top-10 (null: no user to compare). */
  popularityOverlap: number | null;
  /** Why the champion could not be scored (its artifact unreadable, its algorithm gone), if so. */
  championError?: string | null;
}

const fmt = (x: number) => (Number.isFinite(x) ? x.toFixed(4) : String(x));

/** Decides the gate; `passed` only when every check passed. */
export function decideGate(input: GateInput, options: GateOptions): GateRecord {
  const checks: GateCheck[] = [];
  const isPop = input.algorithm === 'pop';
  const replacing = input.champion !== null;

  if (input.holdout === 'none' && replacing) {
    checks.push({
      name: 'holdout',
      passed: false,
      detail: 'too little data to hold out a test set, and a champion already exists',
    });
  }

  checks.push({
    name: 'finite_scores',
    passed: input.nonFiniteScores === 0,
    detail:
      input.nonFiniteScores === 0
        ? `all ${input.scoresChecked} scores checked are finite`
        : `${input.nonFiniteScores} of ${input.scoresChecked} scores are NaN or infinite`,
    challenger: input.nonFiniteScores,
  });

  if (input.holdout !== 'none') {
    if (replacing && input.championError) {
      // A champion that cannot be measured must not block its replacement forever; the challenger
      // still has to beat popularity and pass the sanity checks.
      checks.push({
        name: 'champion_scored',
        passed: true,
        detail: `the champion could not be scored (${input.championError}); compared with the popularity baseline only`,
      });
    }
    if (replacing && input.championMetrics) {
      const tolerances = { ...DEFAULT_TOLERANCES, ...options.tolerances };
      const names = [
        ...COMPARED_METRICS,
        ...Object.keys(options.tolerances).filter(
          (m) => !(COMPARED_METRICS as readonly string[]).includes(m),
        ),
      ];
      for (const name of names) {
        const c = input.challenger[name];
        const ch = input.championMetrics[name];
        if (c === undefined || ch === undefined) continue;
        const tolerance =
          name === GATE_METRIC && !(name in options.tolerances)
            ? 1 - options.minRatio
            : (tolerances[name] ?? 0);
        const floor = ch * (1 - tolerance);
        const passed = c >= floor;
        checks.push({
          name,
          passed,
          detail: passed
            ? `${name} ${fmt(c)} ≥ ${fmt(floor)} (champion ${fmt(ch)} − ${pct(tolerance)})`
            : `${name} ${fmt(c)} is below the champion's ${fmt(ch)} − ${pct(tolerance)} = ${fmt(floor)} on the ${input.holdout} holdout`,
          challenger: c,
          champion: ch,
          tolerance,
        });
      }
    }
    if (!isPop) {
      const c = input.challenger[GATE_METRIC] ?? 0;
      const b = input.baseline[GATE_METRIC] ?? 0;
      const passed = c > b;
      checks.push({
        name: 'beats_popularity',
        passed,
        detail: passed
          ? `${GATE_METRIC} ${fmt(c)} beats the popularity baseline ${fmt(b)}`
          : `${GATE_METRIC} ${fmt(c)} does not beat the popularity baseline ${fmt(b)}`,
        challenger: c,
        champion: b,
      });
    }
    if (replacing) {
      const passed = input.holdoutUsers >= options.minUsersScored;
      checks.push({
        name: 'users_scored',
        passed,
        detail: passed
          ? `${input.holdoutUsers} holdout users scored (≥ ${options.minUsersScored})`
          : `only ${input.holdoutUsers} holdout users scored, fewer than the ${options.minUsersScored} needed to replace a champion`,
        challenger: input.holdoutUsers,
      });
    }
  }

  if (!isPop && input.popularityOverlap !== null) {
    const o = input.popularityOverlap;
    const passed = o <= options.maxPopularityOverlap;
    checks.push({
      name: 'not_popularity',
      passed,
      detail: passed
        ? `top-10 overlaps popularity's by ${pct(o)} on average (≤ ${pct(options.maxPopularityOverlap)})`
        : `top-10 overlaps popularity's by ${pct(o)} on average, more than ${pct(options.maxPopularityOverlap)}: a copy of popularity`,
      challenger: o,
      tolerance: options.maxPopularityOverlap,
    });
  }

  const failed = checks.find((c) => !c.passed);
  let reason: string;
  if (failed) reason = failed.detail;
  else if (!replacing)
    reason =
      input.holdout === 'none' ? 'first model (too little data to hold out a test set)' : 'first model';
  else {
    const c = input.challenger[GATE_METRIC];
    const ch = input.championMetrics?.[GATE_METRIC];
    reason =
      c !== undefined && ch !== undefined
        ? `passes ${checks.length} checks on the ${input.holdout} holdout (${GATE_METRIC} ${fmt(c)} vs the champion's ${fmt(ch)})`
        : `passes ${checks.length} checks on the ${input.holdout} holdout`;
  }
  return {
    passed: failed === undefined,
    reason,
    holdout: input.holdout,
    holdoutUsers: input.holdoutUsers,
    holdoutInteractions: input.holdoutInteractions,
    champion: input.champion,
    challengerMetrics: input.challenger,
    championMetrics: input.championMetrics ?? {},
    checks,
  };
}

function pct(x: number): string {
  return `${(x * 100).toFixed(x < 0.1 ? 1 : 0)} %`;
}
