/**
 * Prometheus metrics (prom-client). Each process owns one registry, built once by its composition root
 * and passed to whoever records; nothing uses the global default registry (tests build many apps).
 * A gauge's `aggregator` says how it combines across the processes of one role (src/main/cluster.ts;
 * counters and histograms are summed).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { DriftReference } from '../domain/types.ts';
import { histogram, psi } from './drift.ts';

export interface Metrics {
  readonly registry: Registry;
  readonly httpRequestDuration: Histogram<'method' | 'route' | 'status_code'>;
  readonly eventsIngested: Counter<'type' | 'status'>;
  /** Events the store writer wrote from the event log into the store of record. */
  readonly eventsStored: Counter<'outcome'>;
  readonly recommendationsServed: Counter<'endpoint' | 'source' | 'fallback_reason'>;
  readonly recommendationDuration: Histogram<'endpoint'>;
  /** Personalized answers served from the online state's cache (hit) or computed (miss). */
  readonly recommendationCache: Counter<'outcome'>;
  /**
   * Expired cached answers asked to be computed again in the background, by outcome: queued, duplicate
   * (already waiting or running), dropped (too many waiting, or shutting down).
   */
  readonly answerRefreshes: Counter<'outcome'>;
  /**
   * Personalized answers computed with a ranker wanted, by outcome: ranked, disabled (config or arm),
   * no_ranker (the model has none), unusable (its features or retrievers do not match), no_candidates,
   * error (online state failed while ranking: the CF ranking answered).
   */
  readonly rankerRequests: Counter<'outcome'>;
  /** Time of the ranking stage (candidates, feature read, vectors, scoring, reasons). */
  readonly rankerDuration: Histogram;
  readonly modelInfo: Gauge<'version' | 'algorithm'>;
  readonly modelCreatedSeconds: Gauge;
  readonly modelAgeSeconds: Gauge;
  readonly trainingDuration: Histogram<'algorithm' | 'status'>;
  /** Training jobs by outcome (promoted, not_promoted, rejected, failed) and trigger kind. */
  readonly trainingOutcomes: Counter<'outcome' | 'trigger'>;
  /**
   * Records the scores of a personalized answer of the champion `version`; `cairn_drift_psi{dimension=
   * "scores"}` compares the newest `window` of them with the model's training reference.
   */
  observeServedScores(version: string, reference: DriftReference | null, scores: readonly number[]): void;
  /** Records the champion the process serves: sets the info gauge and the age clock. */
  setChampion(version: string, algorithm: string, createdAtMs: number): void;
  /**
   * Exposes, at every scrape, the head seq of each log and the position of each consumer this process
   * runs. A consumer's lag is `max(cairn_log_head_seq{log}) - max by (consumer)
   * (cairn_log_consumer_position)`: the max picks the process that holds a durable consumer (a standby
   * worker's position stays behind).
   */
  watchLogs(heads: Record<string, () => Promise<number>>, positions: Record<string, () => number>): void;
  /**
   * Exposes, at every scrape, the champion's quality and staleness and the last training outcomes read
   * by the freshness monitor (monitoring/freshness.ts); nothing is exposed until this is called.
   */
  watchFreshness(read: () => FreshnessGauges): void;
  /**
   * Exposes, at every scrape, `cairn_drift_psi{dimension}` of the live event-type mix and item
   * popularity (monitoring/drift-monitor.ts); a null value means "no sample" (no reference yet).
   */
  watchDrift(read: () => Partial<Record<'event_types' | 'item_popularity', number | null>>): void;
  /**
   * Exposes readiness at every scrape: `cairn_ready` (0/1) and `cairn_health_check_ok{check}` (0/1), so
   * an alert can say a process is out of rotation (and which dependency) without a blackbox prober.
   */
  watchReadiness(read: () => Promise<{ ready: boolean; checks: Record<string, { ok: boolean }> }>): void;
}

/** The freshness gauges' values; null means "unknown" and exposes no sample. */
export interface FreshnessGauges {
  /** Champion older than serving.maxModelAgeSeconds (null without a champion). */
  stale: boolean | null;
  /** The champion's holdout metrics, e.g. `ndcg@10`. */
  quality: Record<string, number>;
  /** Creation time (ms) of the newest successfully trained model. */
  lastSuccessAt: number | null;
  /** Time (ms) of the newest failed training. */
  lastFailureAt: number | null;
  /** The newest finished training failed. */
  lastFailed: boolean | null;
  /** Time (ms) the registry was last read successfully. */
  checkedAt: number | null;
}

export function createMetrics(options: { defaultMetrics?: boolean; scoreWindow?: number } = {}): Metrics {
  const registry = new Registry();
  const scores = new ServedScores(options.scoreWindow ?? 10_000);
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'cairn_process_' });

  let championCreatedAt: number | null = null;
  let freshness: (() => FreshnessGauges) | null = null;
  let drift: () => Partial<Record<string, number | null>> = () => ({});
  let readiness: (() => Promise<{ ready: boolean; checks: Record<string, { ok: boolean }> }>) | null = null;
  let logHeads: Record<string, () => Promise<number>> = {};
  let consumerPositions: Record<string, () => number> = {};
  const modelInfo = new Gauge({
    name: 'cairn_model_info',
    aggregator: 'max',
    help: 'The champion model served by this process (value 1)',
    labelNames: ['version', 'algorithm'] as const,
    registers: [registry],
  });
  const modelCreatedSeconds = new Gauge({
    name: 'cairn_model_created_timestamp_seconds',
    aggregator: 'max',
    help: 'Creation time of the served champion model (Unix seconds)',
    registers: [registry],
  });

  new Gauge({
    name: 'cairn_drift_psi',
    aggregator: 'average',
    help: 'Population stability index of a live distribution against the champion training snapshot (dimension: event_types, item_popularity, scores)',
    labelNames: ['dimension'] as const,
    registers: [registry],
    collect() {
      const value = scores.psi();
      if (value !== null) this.set({ dimension: 'scores' }, value);
      else this.remove({ dimension: 'scores' });
      const live = drift();
      for (const dimension of ['event_types', 'item_popularity']) {
        const v = live[dimension];
        if (v !== null && v !== undefined && Number.isFinite(v)) this.set({ dimension }, v);
        else this.remove({ dimension });
      }
    },
  });

  registerFreshnessGauges(registry, () => freshness?.() ?? null);
  registerReadinessGauges(registry, () => readiness);

  // Computed at scrape time; registered for every process, empty until watchLogs is called.
  registerLogGauges(
    registry,
    () => logHeads,
    () => consumerPositions,
  );

  return {
    registry,
    httpRequestDuration: new Histogram({
      name: 'cairn_http_request_duration_seconds',
      help: 'HTTP request latency by route',
      labelNames: ['method', 'route', 'status_code'] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    eventsIngested: new Counter({
      name: 'cairn_events_ingested_total',
      help: 'Events received, by type and outcome (accepted, duplicate, rejected)',
      labelNames: ['type', 'status'] as const,
      registers: [registry],
    }),
    eventsStored: new Counter({
      name: 'cairn_events_stored_total',
      help: 'Events written from the event log into the store of record (inserted, or duplicate on replay)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    recommendationsServed: new Counter({
      name: 'cairn_recommendations_total',
      help: 'Recommendation answers, by endpoint, source and fallback reason',
      labelNames: ['endpoint', 'source', 'fallback_reason'] as const,
      registers: [registry],
    }),
    recommendationDuration: new Histogram({
      name: 'cairn_recommendation_duration_seconds',
      help: 'Time to compute one recommendation answer (excluding HTTP)',
      labelNames: ['endpoint'] as const,
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
      registers: [registry],
    }),
    rankerRequests: new Counter({
      name: 'cairn_ranker_requests_total',
      help: 'Personalized answers by second-stage ranker outcome (ranked, disabled, no_ranker, unusable, no_candidates, error)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    rankerDuration: new Histogram({
      name: 'cairn_ranker_duration_seconds',
      help: 'Time of the second-stage ranking of one answer (candidates, features, scoring, reasons)',
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
      registers: [registry],
    }),
    recommendationCache: new Counter({
      name: 'cairn_recommendation_cache_total',
      help: 'Personalized and cold-start recommendation answers (the cached ones) by cache outcome (hit, stale: served while computed again, handover: the replaced champion’s answer served while the new one’s is computed, miss)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    answerRefreshes: new Counter({
      name: 'cairn_answer_refresh_total',
      help: 'Expired cached answers asked to be computed again in the background, by outcome (queued, duplicate, dropped)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    modelInfo,
    modelCreatedSeconds,
    modelAgeSeconds: new Gauge({
      name: 'cairn_model_age_seconds',
      aggregator: 'max',
      help: 'Age of the served champion model; absent until a model is served',
      registers: [registry],
      collect() {
        if (championCreatedAt !== null) this.set((Date.now() - championCreatedAt) / 1000);
      },
    }),
    trainingDuration: new Histogram({
      name: 'cairn_training_duration_seconds',
      help: 'Wall time of training jobs',
      labelNames: ['algorithm', 'status'] as const,
      buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800],
      registers: [registry],
    }),
    trainingOutcomes: new Counter({
      name: 'cairn_training_outcomes_total',
      help: 'Training jobs by outcome (promoted, not_promoted, rejected, failed) and trigger',
      labelNames: ['outcome', 'trigger'] as const,
      registers: [registry],
    }),
    observeServedScores(version, reference, values) {
      scores.observe(version, reference, values);
    },
    watchLogs(heads, positions) {
      logHeads = heads;
      consumerPositions = positions;
    },
    watchFreshness(read) {
      freshness = read;
    },
    watchDrift(read) {
      drift = read;
    },
    watchReadiness(read) {
      readiness = read;
    },
    setChampion(version, algorithm, createdAtMs) {
      modelInfo.reset();
      modelInfo.set({ version, algorithm }, 1);
      modelCreatedSeconds.set(createdAtMs / 1000);
      championCreatedAt = createdAtMs;
    },
  };
}

/**
 * The freshness gauges (see Metrics.watchFreshness), computed at scrape time. Unknown values expose no
 * sample, so an alert on them never fires on a guess (e.g. before the registry answered once).
 */
function registerFreshnessGauges(registry: Registry, read: () => FreshnessGauges | null): void {
  const seconds = (ms: number | null) => (ms === null ? null : ms / 1000);
  const scalar = (name: string, help: string, pick: (g: FreshnessGauges) => number | null) =>
    new OptionalGauge(
      () => {
        const g = read();
        return g ? pick(g) : null;
      },
      { name, help, registers: [registry] },
    );
  const bool = (b: boolean | null) => (b === null ? null : b ? 1 : 0);
  scalar(
    'cairn_model_stale',
    'Whether the champion is older than serving.maxModelAgeSeconds (1) or not (0); absent without a champion',
    (g) => bool(g.stale),
  );
  scalar(
    'cairn_training_last_success_timestamp_seconds',
    'Creation time of the newest successfully trained model (ready, champion, retired or rejected)',
    (g) => seconds(g.lastSuccessAt),
  );
  scalar(
    'cairn_training_last_failure_timestamp_seconds',
    'Time of the newest training that failed for good; absent when none failed',
    (g) => seconds(g.lastFailureAt),
  );
  scalar(
    'cairn_training_last_failed',
    'Whether the newest finished training failed (1) or produced a model (0)',
    (g) => bool(g.lastFailed),
  );
  scalar(
    'cairn_training_state_checked_timestamp_seconds',
    'When the registry was last read by the freshness monitor (behind while the registry is unreachable)',
    (g) => seconds(g.checkedAt),
  );
  new Gauge({
    name: 'cairn_model_quality',
    aggregator: 'max',
    help: "The champion's offline holdout metrics (metric: ndcg@10, recall@10, ...)",
    labelNames: ['metric'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [metric, value] of Object.entries(read()?.quality ?? {})) this.set({ metric }, value);
    },
  });
}

/**
 * A label-less gauge read at scrape time that exposes no sample while its value is unknown (prom-client
 * otherwise always exposes 0 for a label-less gauge, which an alert would read as a real value).
 */
class OptionalGauge extends Gauge {
  constructor(
    private readonly read: () => number | null | Promise<number | null>,
    config: { name: string; help: string; registers: Registry[] },
  ) {
    super(config);
  }

  override async get() {
    const value = await this.read();
    if (value === null) return { ...(await super.get()), values: [] };
    this.set(value);
    return super.get();
  }
}

/**
 * Readiness as gauges (see Metrics.watchReadiness). A scrape collects every metric at once, so both
 * gauges share one readiness run (the first to collect starts it; it is dropped once settled).
 */
function registerReadinessGauges(
  registry: Registry,
  source: () => (() => Promise<{ ready: boolean; checks: Record<string, { ok: boolean }> }>) | null,
): void {
  type Answer = { ready: boolean; checks: Record<string, { ok: boolean }> } | null;
  let pending: Promise<Answer> | null = null;
  const shared = (): Promise<Answer> => {
    const read = source();
    if (!read) return Promise.resolve(null);
    pending ??= read()
      .catch(() => ({ ready: false, checks: {} }))
      .finally(() => (pending = null));
    return pending;
  };
  new Gauge({
    name: 'cairn_health_check_ok',
    aggregator: 'min',
    help: 'Whether each readiness check passes (1) or not (0), as /health/ready reports it',
    labelNames: ['check'] as const,
    registers: [registry],
    async collect() {
      const answer = await shared();
      this.reset();
      for (const [check, r] of Object.entries(answer?.checks ?? {})) this.set({ check }, r.ok ? 1 : 0);
    },
  });
  new OptionalGauge(
    async () => {
      const answer = await shared();
      return answer === null ? null : answer.ready ? 1 : 0;
    },
    {
      name: 'cairn_ready',
      help: 'Whether the process is ready (1) or not (0), as /health/ready answers 200 or 503',
      registers: [registry],
    },
  );
}

/** The log head and consumer position gauges (see Metrics.watchLogs). */
function registerLogGauges(
  registry: Registry,
  heads: () => Record<string, () => Promise<number>>,
  positions: () => Record<string, () => number>,
): void {
  new Gauge({
    name: 'cairn_log_head_seq',
    aggregator: 'max',
    help: 'Highest seq in each log (events, changes), read at scrape time',
    labelNames: ['log'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const [log, head] of Object.entries(heads())) {
        try {
          this.set({ log }, await head());
        } catch {
          // Unreachable log: no sample rather than a wrong one (readiness says why).
        }
      }
    },
  });
  new Gauge({
    name: 'cairn_log_consumer_position',
    aggregator: 'min',
    help: 'Highest log seq handled by each consumer running in this process',
    labelNames: ['consumer'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [consumer, position] of Object.entries(positions())) this.set({ consumer }, position());
    },
  });
}

/**
 * The newest served scores of the current champion in a ring buffer, binned against the champion's
 * reference edges at scrape time. Scores of an older champion are dropped when the version changes.
 */
class ServedScores {
  private readonly ring: Float64Array;
  private size = 0;
  private next = 0;
  private version: string | null = null;
  private reference: DriftReference | null = null;

  constructor(window: number) {
    this.ring = new Float64Array(Math.max(1, window));
  }

  observe(version: string, reference: DriftReference | null, values: readonly number[]): void {
    if (version !== this.version) {
      this.version = version;
      this.reference = reference;
      this.size = 0;
      this.next = 0;
    }
    if (!reference) return;
    for (const v of values) {
      if (!Number.isFinite(v)) continue;
      this.ring[this.next] = v;
      this.next = (this.next + 1) % this.ring.length;
      if (this.size < this.ring.length) this.size++;
    }
  }

  /** Null until enough scores were seen for a stable estimate (100) or without a reference. */
  psi(): number | null {
    const ref = this.reference;
    if (!ref || ref.scoreShares.length === 0 || this.size < 100) return null;
    return psi(ref.scoreShares, histogram(ref.scoreEdges, this.ring.subarray(0, this.size)));
  }
}
