/** The readiness contract the HTTP probes call (implemented per process role in src/main). */

export interface HealthCheck {
  ok: boolean;
  detail?: string;
}

export interface HealthService {
  /** Ready means: this role can do its work (e.g. API: recommendations can be answered). */
  ready(): Promise<{ ready: boolean; checks: Record<string, HealthCheck> }>;
}
