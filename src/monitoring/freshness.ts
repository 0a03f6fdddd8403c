/**
 * Model freshness and training outcomes, read from the registry every `monitoring.freshnessCheckSeconds`.
 *
 * The monitor keeps the last answer it got: an API replica keeps serving while PostgreSQL is down, and
 * then reports the last known state (with the time it was read and why it is not current) rather than
 * nothing. It feeds readiness's `model` check (`assess`), the freshness gauges (`gauges`, see
 * metrics.ts `watchFreshness`) and whoever needs to know that the champion changed (the drift monitor).
 *
 * Decisions:
 * - A training "succeeded" when it produced a stored model: status ready, champion, retired or
 *   rejected. A rejected model was trained fine and failed its promotion gate — that is the gate doing
 *   its job, not a broken pipeline (it is counted in `cairn_training_outcomes_total{outcome="rejected"}`,
 *   and a champion that is never replaced shows up as `stale`). A `failed` row (written by the pipeline
 *   when a training fails for good) is a failure; `training` rows are in progress and ignored.
 * - "The last training failed" means the newest finished row is `failed`.
 * - Age and staleness are those of the champion this process SERVES when it serves one (what users
 *   get), else of the registry's champion (a worker serves nothing); age counts from the model's
 *   creation, the same clock as `cairn_model_age_seconds`.
 */
import type { ModelStatus, ModelVersion } from '../domain/types.ts';
import type { ModelRegistry } from '../registry/registry.ts';
import type { Logger } from './logger.ts';
import type { FreshnessGauges } from './metrics.ts';

/** Rows read per check: enough to find the newest success behind a run of failures. */
export const FRESHNESS_LIST_LIMIT = 20;

const SUCCESS: ReadonlySet<ModelStatus> = new Set(['ready', 'champion', 'retired', 'rejected']);

/** What the registry said at the last successful check (and whether that is still the present). */
export interface FreshnessState {
  /** True when the latest check reached the registry; false while it cannot (state is the last known). */
  current: boolean;
  /** Time of the last successful check (null before the first one). */
  checkedAt: number | null;
  /** Why the latest check failed (null when current). */
  error: string | null;
  /** The registry's champion. */
  champion: ModelVersion | null;
  /** Newest stored model (see the module's decisions); `at` is its creation time. */
  lastSuccess: { version: string; status: ModelStatus; at: number } | null;
  /** Newest `failed` row. */
  lastFailure: { version: string; at: number; error: string | null } | null;
  /** The newest finished training is a failure. */
  lastTrainingFailed: boolean;
}

/** Readiness's view of the model: `stale` past the age limit, `degraded` after a failure, else `ok`. */
export interface ModelAssessment {
  status: 'ok' | 'stale' | 'degraded';
  /** Champion age in seconds (null without a champion). */
  ageSeconds: number | null;
  /** Why the status is not ok, and whether the training state is current; empty when nothing to say. */
  reasons: string[];
}

/** What this process serves (structurally the serving ChampionHolder). */
export interface ServedChampion {
  get(): { version: ModelVersion } | null;
  readonly lastError: string | null;
}

export interface FreshnessOptions {
  registry: Pick<ModelRegistry, 'champion' | 'list'>;
  logger: Logger;
  /** Seconds between checks (monitoring.freshnessCheckSeconds). */
  intervalSeconds: number;
  /** serving.maxModelAgeSeconds: older champions are `stale` (0: never). */
  maxModelAgeSeconds: number;
  /** The champion this process serves (roles all and api). */
  served?: ServedChampion;
  now?: () => number;
}

export type ChampionListener = (champion: ModelVersion | null) => void | Promise<void>;

export class FreshnessMonitor {
  private readonly now: () => number;
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<FreshnessState> | null = null;
  private readonly listeners = new Set<ChampionListener>();
  private closed = false;
  private snapshot: FreshnessState = {
    current: false,
    checkedAt: null,
    error: 'not checked yet',
    champion: null,
    lastSuccess: null,
    lastFailure: null,
    lastTrainingFailed: false,
  };

  constructor(private readonly options: FreshnessOptions) {
    this.now = options.now ?? Date.now;
  }

  /** Checks once (awaited, never throws) and then every `intervalSeconds`. */
  async start(): Promise<void> {
    await this.check();
    if (this.closed || this.timer) return;
    this.timer = setInterval(() => void this.check(), this.options.intervalSeconds * 1000);
    this.timer.unref();
  }

  /** Re-reads the registry now; on failure keeps the last known state, marked not current. */
  check(): Promise<FreshnessState> {
    // Overlapping checks (a slow registry, a manual check during a timer one) share one read.
    this.inFlight ??= this.read().finally(() => (this.inFlight = null));
    return this.inFlight;
  }

  /** The last known state. */
  state(): FreshnessState {
    return this.snapshot;
  }

  /** Registers a listener called (awaited) whenever a check sees a different champion; returns an unsubscribe. */
  onChampionChange(listener: ChampionListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The champion whose age counts: the served one, else the registry's. */
  effectiveChampion(): ModelVersion | null {
    return this.options.served?.get()?.version ?? this.snapshot.champion;
  }

  /** The model check's status and reasons (see ModelAssessment). */
  assess(): ModelAssessment {
    const now = this.now();
    const s = this.snapshot;
    const champion = this.effectiveChampion();
    const ageSeconds = champion ? Math.max(0, (now - champion.createdAt) / 1000) : null;
    const maxAge = this.options.maxModelAgeSeconds;
    const reasons: string[] = [];
    let status: ModelAssessment['status'] = 'ok';

    if (champion && ageSeconds !== null && maxAge > 0 && ageSeconds > maxAge) {
      status = 'stale';
      reasons.push(
        `champion ${champion.version} is ${formatSeconds(ageSeconds)} old (limit ${formatSeconds(maxAge)})`,
      );
    }
    const loadError = this.options.served?.lastError ?? null;
    if (loadError) {
      if (status === 'ok') status = 'degraded';
      reasons.push(loadError);
    }
    if (s.lastTrainingFailed && s.lastFailure) {
      if (status === 'ok') status = 'degraded';
      reasons.push(
        `last training failed at ${new Date(s.lastFailure.at).toISOString()}` +
          (s.lastFailure.error ? `: ${s.lastFailure.error}` : ''),
      );
    }
    if (!s.current) {
      reasons.push(
        s.checkedAt === null
          ? `training state unknown: ${s.error ?? 'not checked yet'}`
          : `training state as of ${new Date(s.checkedAt).toISOString()} (registry unreachable: ${s.error ?? 'unknown'})`,
      );
    }
    return { status, ageSeconds, reasons };
  }

  /** The values of the freshness gauges (metrics.ts `watchFreshness`). */
  gauges(): FreshnessGauges {
    const s = this.snapshot;
    const champion = this.effectiveChampion();
    const quality: Record<string, number> = {};
    for (const [metric, value] of Object.entries(champion?.metrics ?? {}))
      if (Number.isFinite(value)) quality[metric] = value;
    const maxAge = this.options.maxModelAgeSeconds;
    return {
      stale: champion ? maxAge > 0 && (this.now() - champion.createdAt) / 1000 > maxAge : null,
      quality,
      lastSuccessAt: s.lastSuccess?.at ?? null,
      lastFailureAt: s.lastFailure?.at ?? null,
      // Unknown until the registry answered once.
      lastFailed: s.checkedAt === null ? null : s.lastTrainingFailed,
      checkedAt: s.checkedAt,
    };
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private async read(): Promise<FreshnessState> {
    const before = this.snapshot.champion?.version ?? null;
    try {
      const [champion, recent] = await Promise.all([
        this.options.registry.champion(),
        this.options.registry.list(FRESHNESS_LIST_LIMIT),
      ]);
      this.snapshot = summarize(champion, recent, this.now());
    } catch (err) {
      const error = (err as Error).message;
      if (this.snapshot.current || this.snapshot.error !== error)
        this.options.logger.warn({ err }, 'freshness: registry unreachable; reporting the last known state');
      this.snapshot = { ...this.snapshot, current: false, error };
      return this.snapshot;
    }
    const after = this.snapshot.champion?.version ?? null;
    if (after !== before) {
      for (const listener of this.listeners) {
        try {
          await listener(this.snapshot.champion);
        } catch (err) {
          this.options.logger.warn({ err, version: after }, 'freshness: champion listener failed');
        }
      }
    }
    return this.snapshot;
  }
}

/**
 * The training state from the champion and the newest rows (newest first). The champion is itself a
 * successful training, so it bounds the last success when `recent` holds only failures.
 */
export function summarize(
  champion: ModelVersion | null,
  recent: readonly ModelVersion[],
  checkedAt: number,
): FreshnessState {
  let lastSuccess: FreshnessState['lastSuccess'] = null;
  let lastFailure: FreshnessState['lastFailure'] = null;
  let newestFinished: ModelVersion | null = null;
  for (const mv of recent) {
    if (mv.status === 'training') continue;
    if (!newestFinished || mv.createdAt > newestFinished.createdAt) newestFinished = mv;
    if (SUCCESS.has(mv.status)) {
      if (!lastSuccess || mv.createdAt > lastSuccess.at)
        lastSuccess = { version: mv.version, status: mv.status, at: mv.createdAt };
    } else if (mv.status === 'failed') {
      if (!lastFailure || mv.createdAt > lastFailure.at)
        lastFailure = { version: mv.version, at: mv.createdAt, error: mv.error };
    }
  }
  if (champion && (!lastSuccess || champion.createdAt > lastSuccess.at))
    lastSuccess = { version: champion.version, status: champion.status, at: champion.createdAt };
  return {
    current: true,
    checkedAt,
    error: null,
    champion,
    lastSuccess,
    lastFailure,
    lastTrainingFailed: newestFinished?.status === 'failed',
  };
}

/** `90061` → `1d 1h 1m 1s`, rounded to the two largest units. */
export function formatSeconds(seconds: number): string {
  const units: [string, number][] = [
    ['d', 86_400],
    ['h', 3_600],
    ['m', 60],
    ['s', 1],
  ];
  let rest = Math.round(seconds);
  const parts: string[] = [];
  for (const [name, size] of units) {
    if (parts.length === 2) break;
    const n = Math.floor(rest / size);
    if (n > 0 || (parts.length === 0 && size === 1)) parts.push(`${n}${name}`);
    if (n > 0) rest -= n * size;
    else if (parts.length > 0) break;
  }
  return parts.join(' ');
}
