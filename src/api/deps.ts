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
import type { RecommendationService } from '../serving/contracts.ts';
import type { ModelService } from '../training/contracts.ts';

export interface AppDeps {
  config: Readonly<Config>;
  logger: Logger;
  metrics: Metrics;
  ingest: IngestService;
  catalog: CatalogService;
  recommendations: RecommendationService;
  models: ModelService;
  jobs: JobService;
  health: HealthService;
  experiments: ExperimentService;
  feedback: FeedbackService;
}
