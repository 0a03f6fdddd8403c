/**
 * The per-replica experiment router: which experiments run, which arm a unit (user or session) is in,
 * and which model versions the running experiments need in memory.
 *
 * It loads the running experiments from the store at start and then follows `{kind: 'experiment'}`
 * changes through the serving follower, so an experiment created, stopped or rolled back through any
 * process reaches every replica in log order. A replica must start while the store is down: it then
 * routes nobody (everyone gets the champion) until the change log tells it otherwise, and keeps
 * retrying the load in the background.
 *
 * Assignment is by hash (experiments/assignment.ts): deterministic on every replica without storing
 * assignments.
 */
import { Counter, type Registry } from 'prom-client';
import type { RequestContext } from '../domain/context.ts';
import type { Experiment, ExperimentVariant } from '../domain/types.ts';
import { assignVariant } from '../experiments/assignment.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { Metrics } from '../monitoring/metrics.ts';
import type { ExperimentStore } from '../storage/ports.ts';

/** The arm a request is served under. */
export interface Arm {
  experiment: Experiment;
  variant: ExperimentVariant;
}

const countersByRegistry = new WeakMap<Registry, Counter<'experiment' | 'variant'>>();

function assignmentCounter(registry: Registry): Counter<'experiment' | 'variant'> {
  let c = countersByRegistry.get(registry);
  if (!c) {
    c = new Counter({
      name: 'cairn_experiment_assignments_total',
      help: 'Recommendation requests served under an experiment arm, by experiment and variant',
      labelNames: ['experiment', 'variant'] as const,
      registers: [registry],
    });
    countersByRegistry.set(registry, c);
  }
  return c;
}

export interface ExperimentRouterOptions {
  /** First retry of a failed start-up load (doubles up to 30 s). Default 1 s. */
  retryMs?: number;
}

export class ExperimentRouter {
  private readonly running = new Map<string, Experiment>();
  /** Experiments the change log spoke about: newer than any load that started before it. */
  private readonly announced = new Set<string>();
  private readonly listeners: (() => void)[] = [];
  private readonly assignments: Counter<'experiment' | 'variant'>;
  private retry: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly store: Pick<ExperimentStore, 'list'> | null,
    metrics: Pick<Metrics, 'registry'>,
    private readonly logger: Logger,
    private readonly options: ExperimentRouterOptions = {},
  ) {
    this.assignments = assignmentCounter(metrics.registry);
  }

  /**
   * Loads the running experiments from the store. Never throws: when the store is unreachable the
   * router starts empty and retries in the background (changes from the log apply meanwhile).
   * Resolves true when the load succeeded.
   */
  async load(): Promise<boolean> {
    const ok = await this.tryLoad();
    if (!ok) this.scheduleRetry(this.options.retryMs ?? 1000);
    return ok;
  }

  private async tryLoad(): Promise<boolean> {
    if (!this.store) return true;
    try {
      const list = await this.store.list({ status: 'running' });
      let changed = false;
      for (const e of list) {
        // The change log is newer than a list read before the change arrived: it wins.
        if (this.announced.has(e.id) || e.status !== 'running') continue;
        this.running.set(e.id, e);
        changed = true;
      }
      if (changed) this.changed();
      if (this.running.size > 0)
        this.logger.info({ experiments: [...this.running.keys()] }, 'routing by running experiments');
      return true;
    } catch (err) {
      this.logger.warn(
        { err },
        'could not load the running experiments; routing nobody until the store or the change log answers',
      );
      return false;
    }
  }

  /** Applies an experiment change from the change log (created, stopped, rolled back). */
  apply(experiment: Experiment): void {
    this.announced.add(experiment.id);
    const before = this.running.get(experiment.id);
    if (experiment.status === 'running') this.running.set(experiment.id, experiment);
    else this.running.delete(experiment.id);
    if (before && experiment.status !== 'running') {
      this.logger.info(
        { experiment: experiment.id, status: experiment.status, reason: experiment.stopReason },
        'experiment ended; its users go back to the champion',
      );
    }
    this.changed();
  }

  /** Called after any change of the running set (the model pool re-syncs on it). */
  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  /** Running experiments (every kind). */
  list(): Experiment[] {
    return [...this.running.values()];
  }

  /**
   * The experiment that routes users (`ab` or `canary`). The experiment service admits one at a time;
   * should two ever run (e.g. created on two replicas at once), the oldest keeps routing so a user's
   * arm does not change under them.
   */
  routing(): Experiment | null {
    let best: Experiment | null = null;
    for (const e of this.running.values()) {
      if (e.kind === 'shadow') continue;
      if (!best || e.createdAt < best.createdAt || (e.createdAt === best.createdAt && e.id < best.id))
        best = e;
    }
    return best;
  }

  /** Running shadow experiments: their models score live requests without being served. */
  shadows(): Experiment[] {
    return [...this.running.values()].filter((e) => e.kind === 'shadow');
  }

  /**
   * The arm of the routing experiment the request's unit (user, or session for `unit: 'session'`) belongs to (null: no experiment, or every weight 0).
   * A context that already carries an assignment to a running experiment keeps it (it was made
   * upstream, e.g. by a caller that routes a whole page). Pure: `served(arm)` counts an answer under it.
   */
  assign(ctx: RequestContext, units: { user: string; session?: string }): Arm | null {
    const experiment = this.routing();
    if (!experiment) return null;
    // A session-unit experiment without a session id falls back to the user (still deterministic).
    const unitId = experiment.unit === 'session' && units.session ? units.session : units.user;
    let variant: ExperimentVariant | null = null;
    if (ctx.experiment?.experiment === experiment.id)
      variant = experiment.variants.find((v) => v.name === ctx.experiment?.variant) ?? null;
    variant ??= assignVariant(experiment, unitId);
    if (!variant) return null;
    return { experiment, variant };
  }

  /** Counts one answer served under `arm` (`cairn_experiment_assignments_total`). */
  served(arm: Arm): void {
    this.assignments.inc({ experiment: arm.experiment.id, variant: arm.variant.name });
  }

  /** Model versions named by the running experiments (the model pool keeps these in memory). */
  versions(): string[] {
    const out = new Set<string>();
    for (const e of this.running.values())
      for (const v of e.variants) if (v.modelVersion && v.weight > 0) out.add(v.modelVersion);
    return [...out];
  }

  close(): Promise<void> {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    return Promise.resolve();
  }

  private scheduleRetry(ms: number): void {
    if (this.closed || this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = null;
      void this.tryLoad().then((ok) => {
        if (!ok) this.scheduleRetry(Math.min(ms * 2, 30_000));
      });
    }, ms);
    this.retry.unref();
  }

  private changed(): void {
    for (const l of this.listeners) {
      try {
        l();
      } catch (err) {
        this.logger.error({ err }, 'experiment change listener failed');
      }
    }
  }
}
