/**
 * The canary guard: watches every running `canary` experiment and rolls it back automatically when the
 * challenger's online metric falls below the control's by more than the experiment's margin.
 *
 * Run by the worker role and the embedded role every `experiments.guardCheckSeconds`. For each running
 * canary it reads the per-variant totals of the served log and its feedback; once the control (the
 * first variant) and a challenger arm both have at least `guard.minImpressions` impressions and
 *
 *     challenger metric < control metric × (1 − guard.margin)
 *
 * (the point estimates of the experiment's results, results.ts: `ctr` = clicks / impressions,
 * `conversion_rate` = converting users / users, so the guard and `GET /v1/experiments/{id}/results`
 * never disagree), it
 *  1. stores the experiment as `rolled_back` with the reason,
 *  2. announces it on the change log (every replica stops routing users to the challenger as soon as
 *     the change arrives: they get the champion again),
 *  3. rejects the challenger's version in the registry (`canary_rolled_back`: it is never promoted
 *     without an explicit force),
 * logs at warn and counts `cairn_canary_rollbacks_total`. Stopping comes first: serving users a worse
 * model is what must end soonest; a rejection that fails is retried on the next check.
 *
 * Several workers may run the guard at once: each re-reads the experiment before stopping it, and a
 * repeated rollback of the same experiment changes nothing.
 */
import { Counter, type Registry } from 'prom-client';
import type { Experiment, ExperimentVariant } from '../domain/types.ts';
import { isCairnError } from '../errors/errors.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { Metrics } from '../monitoring/metrics.ts';
import type { ChangeLog, ExperimentStore, ServedLogStore } from '../storage/ports.ts';
import type { VariantResult } from './contracts.ts';
import { computeResults } from './results.ts';

/** The registry operation the guard needs (ModelRegistry.reject). */
export interface VersionRejecter {
  reject(
    version: string,
    by: string,
    reason: string,
    action: 'rejected' | 'canary_rolled_back',
  ): Promise<unknown>;
}

export interface CanaryGuardDeps {
  experiments: Pick<ExperimentStore, 'list' | 'get' | 'update'>;
  served: Pick<ServedLogStore, 'variantTotals'>;
  changeLog: Pick<ChangeLog, 'append'>;
  registry: VersionRejecter;
  metrics: Pick<Metrics, 'registry'>;
  logger: Logger;
  now?: () => number;
}

/** What one check decided about one canary arm. */
export interface GuardDecision {
  experimentId: string;
  variant: string;
  /** `waiting`: too few impressions yet; `healthy`: within the margin; `rolled_back`: stopped now. */
  outcome: 'waiting' | 'healthy' | 'rolled_back';
  metric: 'ctr' | 'conversion_rate';
  control: number | null;
  challenger: number | null;
  reason: string;
}

const countersByRegistry = new WeakMap<Registry, Counter<'experiment'>>();

function rollbackCounter(registry: Registry): Counter<'experiment'> {
  let c = countersByRegistry.get(registry);
  if (!c) {
    c = new Counter({
      name: 'cairn_canary_rollbacks_total',
      help: 'Canary experiments rolled back automatically by the guard (challenger below control by more than the margin)',
      labelNames: ['experiment'] as const,
      registers: [registry],
    });
    countersByRegistry.set(registry, c);
  }
  return c;
}

/** The guard's metric of one arm (null while it has no impressions, resp. no users). */
export function armMetric(result: VariantResult, metric: 'ctr' | 'conversion_rate'): number | null {
  if (metric === 'ctr') return result.impressions > 0 ? result.ctr.value : null;
  return result.users > 0 ? result.conversionRate.value : null;
}

export class CanaryGuard {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<unknown> | null = null;
  /** Versions whose rejection failed after their experiment was stopped: retried on each check. */
  private readonly pendingRejections = new Map<string, string>();
  private readonly rollbacks: Counter<'experiment'>;
  private readonly now: () => number;

  constructor(private readonly deps: CanaryGuardDeps) {
    this.rollbacks = rollbackCounter(deps.metrics.registry);
    this.now = deps.now ?? Date.now;
  }

  /** Checks every `everyMs` (the first check after one period). */
  start(everyMs: number): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      if (this.running) return;
      this.running = this.check()
        .catch((err: unknown) => this.deps.logger.warn({ err }, 'canary guard check failed'))
        .finally(() => (this.running = null));
    }, everyMs);
    this.timer.unref();
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }

  /**
   * One pass over the running canaries; returns a decision per challenger arm. Throws only when the
   * running experiments cannot be listed (the store is down): the next pass tries again.
   */
  async check(): Promise<GuardDecision[]> {
    await this.retryRejections();
    const canaries = (await this.deps.experiments.list({ status: 'running' })).filter(
      (e) => e.kind === 'canary' && e.guard !== null,
    );
    const decisions: GuardDecision[] = [];
    for (const experiment of canaries) {
      try {
        decisions.push(...(await this.checkOne(experiment)));
      } catch (err) {
        this.deps.logger.warn(
          { err, experiment: experiment.id },
          'canary guard could not check an experiment',
        );
      }
    }
    return decisions;
  }

  private async checkOne(experiment: Experiment): Promise<GuardDecision[]> {
    const guard = experiment.guard;
    if (!guard || experiment.variants.length < 2) return [];
    // Variants in the experiment's order, zeros for an arm nobody was served yet; the first is the control.
    const results = computeResults(experiment, await this.deps.served.variantTotals(experiment.id)).variants;
    const control = experiment.variants[0];
    const controlTotals = results[0];
    const controlValue = armMetric(controlTotals, guard.metric);
    const decisions: GuardDecision[] = [];
    for (let a = 1; a < experiment.variants.length; a++) {
      const arm = experiment.variants[a];
      if (!(arm.weight > 0)) continue;
      const armTotals = results[a];
      const value = armMetric(armTotals, guard.metric);
      const base = {
        experimentId: experiment.id,
        variant: arm.name,
        metric: guard.metric,
        control: controlValue,
        challenger: value,
      };
      if (controlTotals.impressions < guard.minImpressions || armTotals.impressions < guard.minImpressions) {
        decisions.push({
          ...base,
          outcome: 'waiting',
          reason: `waiting for ${guard.minImpressions} impressions per arm (control ${controlTotals.impressions}, ${arm.name} ${armTotals.impressions})`,
        });
        continue;
      }
      const c = controlValue ?? 0;
      const v = value ?? 0;
      const threshold = c * (1 - guard.margin);
      if (!(v < threshold)) {
        decisions.push({
          ...base,
          outcome: 'healthy',
          reason: `${arm.name} ${guard.metric} within the margin`,
        });
        continue;
      }
      const shortfall = c > 0 ? (c - v) / c : 0;
      const reason =
        `canary ${arm.name} ${guard.metric} ${fmt(v)} is ${pct(shortfall)} below control ${control.name}'s ` +
        `${fmt(c)} (margin ${pct(guard.margin)}; impressions ${armTotals.impressions} vs ${controlTotals.impressions})`;
      const stopped = await this.rollBack(experiment, arm, reason);
      decisions.push({ ...base, outcome: stopped ? 'rolled_back' : 'healthy', reason });
      // One rollback ends the whole experiment; the other arms need no decision.
      if (stopped) break;
    }
    return decisions;
  }

  /** Stops the experiment (store, then change log) and rejects the arm's version. False if it was no longer running. */
  private async rollBack(experiment: Experiment, arm: ExperimentVariant, reason: string): Promise<boolean> {
    const { experiments, changeLog, logger } = this.deps;
    // Another guard (or an operator) may have stopped it since the list was read.
    const current = await experiments.get(experiment.id);
    if (!current || current.status !== 'running') return false;
    const stopped = await experiments.update(experiment.id, {
      status: 'rolled_back',
      stoppedAt: this.now(),
      stopReason: reason,
    });
    await changeLog.append([{ kind: 'experiment', experiment: stopped }]);
    this.rollbacks.inc({ experiment: experiment.id });
    logger.warn(
      { experiment: experiment.id, variant: arm.name, version: arm.modelVersion, reason },
      'canary rolled back automatically: its users are served by the champion again',
    );
    if (arm.modelVersion) {
      this.pendingRejections.set(arm.modelVersion, reason);
      await this.retryRejections();
    }
    return true;
  }

  private async retryRejections(): Promise<void> {
    for (const [version, reason] of [...this.pendingRejections]) {
      try {
        await this.deps.registry.reject(version, 'system', reason, 'canary_rolled_back');
        this.pendingRejections.delete(version);
      } catch (err) {
        // A client error (unknown version, a status that cannot be rejected) will not heal by retrying.
        const permanent = isCairnError(err) && err.isClientError;
        if (permanent) this.pendingRejections.delete(version);
        this.deps.logger.error(
          { err, version },
          permanent
            ? 'could not reject the rolled-back canary version'
            : 'could not reject the rolled-back canary version; retrying on the next check',
        );
      }
    }
  }
}

const fmt = (x: number) => x.toFixed(4);
const pct = (x: number) => `${(x * 100).toFixed(1)} %`;
