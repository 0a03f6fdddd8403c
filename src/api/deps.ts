/**
 * What the HTTP layer needs from the rest of Cairn: the services, built by a composition root
 * (src/main), so tests can build the app around real services with `app.inject()`. The contracts
 * themselves live with the services that own them; routes fill a RequestContext per request and pass
 * it to every call.
 */
import type { Config } from '../config/load.ts';
import type { ExperimentService, FeedbackService } from '../experiments/contracts.ts';
import type { CatalogService, IngestService } from '../ingest/contracts.ts';
import type { JobService } from '../jobs/contracts.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { HealthService } from '../monitoring/health.ts';
import type { Metrics } from '../monitoring/metrics.ts';
import type { NextBestOfferService } from '../offers/contracts.ts';
import type { RecommendationService } from '../serving/contracts.ts';
import type { Authenticator, KeyService } from '../security/contracts.ts';
import type { ModelService } from '../training/contracts.ts';
import type { RateLimitDeps } from './rate-limit.ts';

/** What every Cairn HTTP server has, whatever its role (the worker's ops server has only this and health). */
export interface BaseDeps {
  config: Readonly<Config>;
  logger: Logger;
  /** The process's metrics (HTTP, event loop, process) and the default tenant's. */
  metrics: Metrics;
  /** A tenant's own metrics registry (served to that tenant on /metrics); null when not served. */
  metricsOf?: (tenant: string) => Metrics | null;
  /** Verifies API keys (required with `auth.enabled`); see auth.ts for what each route needs. */
  auth?: Authenticator;
  /** Where rate-limit counters are shared by replicas (storage/redis/rate-limit.ts); absent: per process. */
  rateLimitRedis?: RateLimitDeps['redis'];
  /** Keyed hash of user ids for the request log (security/pseudonym.ts); without it they are left out. */
  pseudonymize?: (id: string) => string;
}

/** The public API's: the base plus every service the routes call. */
export interface AppDeps extends BaseDeps {
  ingest: IngestService;
  catalog: CatalogService;
  recommendations: RecommendationService;
  /** The next-best-offer decision (absent: the route is not served). */
  offers?: NextBestOfferService;
  models: ModelService;
  jobs: JobService;
  health: HealthService;
  experiments: ExperimentService;
  feedback: FeedbackService;
  /** API-key management (`/v1/keys`), on the default tenant's store. */
  keys: KeyService;
}
