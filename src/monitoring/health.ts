/** The readiness contract the HTTP probes call (implemented per process role in src/main). */

/**
 * A check's finer state where ok/not-ok is not enough: `stale` (e.g. the champion is older than
 * serving.maxModelAgeSeconds), `degraded` (works, but worse than it should: e.g. the last training
 * failed, or the champion failed to load and the fallback answers).
 */
export type HealthStatus = 'ok' | 'stale' | 'degraded';

export interface HealthCheck {
  ok: boolean;
  detail?: string;
  /** Only on checks that report one (the `model` check); absent means ok/not-ok says it all. */
  status?: HealthStatus;
}

export interface HealthService {
  /** Ready means: this role can do its work (e.g. API: recommendations can be answered). */
  ready(): Promise<{ ready: boolean; checks: Record<string, HealthCheck> }>;
}
