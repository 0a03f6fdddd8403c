/**
 * The Fastify app factory. `buildApp(deps)` wires routes, validation, errors, request ids, metrics and
 * the OpenAPI document around services built elsewhere (src/main); it never listens, so tests drive it
 * with `app.inject()` and composition roots call `listen()`.
 */
import { clusterMetrics, inCluster } from '../monitoring/cluster-metrics.ts';
import { randomUUID } from 'node:crypto';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { Type } from '@sinclair/typebox';
import Fastify, { type FastifyInstance } from 'fastify';
import { createContext, type RequestContext } from '../domain/context.ts';
import type { HealthService } from '../monitoring/health.ts';
import type { AppDeps, BaseDeps } from './deps.ts';
import { AccessLogController } from './access-log.ts';
import { OPENAPI_SECURITY_SCHEMES, registerAccessControl, UNAUTHENTICATED, withRouteScope } from './auth.ts';
import { registerBackPressure } from './back-pressure.ts';
import { buildErrorHandler, notFoundAnswer } from './errors.ts';
import { registerRateLimit } from './rate-limit.ts';
import { registerEventRoutes } from './routes/events.ts';
import { registerExperimentRoutes } from './routes/experiments.ts';
import { registerFeedbackRoutes } from './routes/feedback.ts';
import { registerHealthRoutes } from './routes/health.ts';
import { registerItemRoutes } from './routes/items.ts';
import { registerKeyRoutes } from './routes/keys.ts';
import { registerModelRoutes } from './routes/models.ts';
import { registerOfferRoutes } from './routes/offers.ts';
import { registerRecommendationRoutes } from './routes/recommendations.ts';
import { registerSimilarRoutes } from './routes/similar.ts';
import { registerUserRoutes } from './routes/users.ts';
import type { RouteContext } from './routes/common.ts';
import { buildSchemas } from './schemas.ts';
import { typeboxValidatorCompiler } from './validation.ts';

const REQUEST_ID_HEADER = 'x-request-id';
/** Operations whose JSON body may be omitted (@fastify/swagger marks every body as required). */
const OPTIONAL_BODY_OPERATIONS = new Set(['trainModel', 'promoteModel', 'stopExperiment']);
const VALID_REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;

/** Honours a well-formed incoming `x-request-id` (so ids follow a request across services), else makes one. */
export function requestIdFrom(header: string | string[] | undefined): string {
  return typeof header === 'string' && VALID_REQUEST_ID.test(header) ? header : randomUUID();
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The context every service call of this request carries (request id, principal, tenant, experiment). */
    ctx: RequestContext;
  }
}

/**
 * Fastify with Cairn's conventions: request ids (honoured or made) in the header and the request context,
 * sampled access logs with per-route summaries, back-pressure, TypeBox validation, the one error shape,
 * JSON only, HTTP metrics by route.
 */
function createBaseApp(deps: BaseDeps): FastifyInstance {
  const { config, metrics } = deps;
  const bodyLimit = config.server.bodyLimitBytes;
  const errorHandler = buildErrorHandler({ bodyLimitBytes: bodyLimit });
  const timeoutMs = config.server.requestTimeoutMs;

  const accessLog = new AccessLogController({
    logging: config.logging,
    logger: deps.logger,
    pseudonymize: deps.pseudonymize,
  });
  // Typed with the default logger interface: routes take a plain FastifyInstance (pino satisfies it).
  const app = Fastify({
    loggerInstance: deps.logger,
    logController: accessLog,
    bodyLimit,
    requestIdHeader: false,
    genReqId: (req) => requestIdFrom(req.headers[REQUEST_ID_HEADER]),
    // Client ids can be long (URLs, composite keys); the params schema bounds them at 512.
    routerOptions: { maxParamLength: 1024 },
    // Malformed URLs are answered before any hook runs: route them through the same error shape.
    frameworkErrors: (error, request, reply) => {
      errorHandler(error, request, reply);
    },
  }) as unknown as FastifyInstance;
  accessLog.attach(app);

  app.setValidatorCompiler(typeboxValidatorCompiler);
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((request, reply) => {
    const result = notFoundAnswer(request.method, request.url);
    return reply.code(result.status).send(result.body);
  });

  // JSON only (anything else is 415), and an empty JSON body counts as no body, so action endpoints
  // (POST /v1/models/rollback) work for clients that always send `Content-Type: application/json`.
  app.removeContentTypeParser(['application/json', 'text/plain']);
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit }, (request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') done(null, undefined);
    else void parseJson(request, text, done);
  });

  app.decorateRequest('ctx', null as unknown as RequestContext);
  app.addHook('onRequest', (request, reply, done) => {
    reply.header(REQUEST_ID_HEADER, request.id);
    // Nobody until the access-control hook (registered next) says who the caller is.
    request.ctx = createContext({
      requestId: request.id,
      principal: UNAUTHENTICATED,
      deadline: timeoutMs > 0 ? Date.now() + timeoutMs : null,
    });
    done();
  });
  // Before access control: an overloaded process refuses before doing any work for the request.
  registerBackPressure(app, { config, registry: metrics.registry });
  registerAccessControl(app, deps);
  // After the access-control hook: limits count per API key once the key is known.
  registerRateLimit(app, { config, redis: deps.rateLimitRedis });
  // Labelled by route pattern, never the raw URL: ids in paths would explode the label cardinality.
  app.addHook('onResponse', (request, reply, done) => {
    metrics.httpRequestDuration.observe(
      {
        method: request.method,
        route: request.routeOptions.url ?? 'unmatched',
        status_code: reply.statusCode,
      },
      reply.elapsedTime / 1000,
    );
    done();
  });
  return app;
}

function registerMetricsRoute(app: FastifyInstance, deps: BaseDeps): void {
  app.get(
    '/metrics',
    {
      config: { scope: 'admin' },
      schema: {
        tags: ['monitoring'],
        operationId: 'metrics',
        summary: 'Prometheus metrics (text exposition format)',
        response: {
          200: { description: 'Metrics', content: { 'text/plain': { schema: Type.String() } } },
        },
      },
    },
    async (request, reply) => {
      // Each tenant sees its own registry only; the default tenant's includes the process's metrics.
      const metrics = deps.metricsOf?.(request.ctx.tenant) ?? deps.metrics;
      // One of several processes of the role: the default tenant's metrics are the whole role's.
      if (inCluster() && metrics === deps.metrics) {
        const all = await clusterMetrics();
        return reply.header('content-type', all.contentType).send(all.text);
      }
      const body = await metrics.registry.metrics();
      return reply.header('content-type', metrics.registry.contentType).send(body);
    },
  );
}

/**
 * The HTTP server of a process without the public API (the worker role): liveness, readiness and
 * metrics only, so orchestrators can probe it and Prometheus can scrape it.
 */
export function buildOpsApp(deps: BaseDeps & { health: HealthService }): FastifyInstance {
  const app = createBaseApp(deps);
  registerMetricsRoute(app, deps);
  registerHealthRoutes(app, deps.health);
  return app;
}

/** Builds the HTTP app around already-built services. Does not listen. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { config } = deps;
  const app = createBaseApp(deps);

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Cairn',
        // The version of the HTTP contract (/v1), not of the package.
        version: '1.0.0',
        description:
          'Self-hosted real-time recommendation engine. Errors are `{"error":{"code","message","details"}}`; ' +
          'branch on `code`. Every answer carries an `x-request-id` header (an incoming one is honoured).',
      },
      tags: [
        { name: 'events', description: 'Behaviour events' },
        { name: 'items', description: 'Catalog' },
        { name: 'users', description: 'Users and GDPR erasure' },
        { name: 'recommendations', description: 'Personal and non-personal recommendations' },
        { name: 'models', description: 'Model registry: training, promotion, rollback' },
        { name: 'jobs', description: 'Background jobs' },
        { name: 'experiments', description: 'A/B tests, canaries and shadow runs, with results' },
        { name: 'feedback', description: 'Impressions, clicks and conversions tied to served answers' },
        { name: 'keys', description: 'API keys: create, list, revoke (admin)' },
        { name: 'health', description: 'Liveness and readiness' },
        { name: 'monitoring', description: 'Prometheus metrics' },
      ],
      components: { securitySchemes: OPENAPI_SECURITY_SCHEMES },
    },
    transformObject: (documents) => {
      if (!('openapiObject' in documents)) return documents.swaggerObject;
      const doc = documents.openapiObject;
      for (const operations of Object.values(doc.paths ?? {})) {
        for (const op of Object.values(operations ?? {})) {
          const operation = op as { operationId?: string; requestBody?: { required?: boolean } };
          if (operation.requestBody && OPTIONAL_BODY_OPERATIONS.has(operation.operationId ?? '')) {
            operation.requestBody.required = false;
          }
        }
      }
      return doc;
    },
  });
  await app.register(
    withRouteScope('read', async (docs) => {
      await docs.register(swaggerUi, {
        routePrefix: '/docs',
        uiConfig: { deepLinking: true, docExpansion: 'list' },
      });
    }),
  );

  app.get('/openapi.json', { schema: { hide: true }, config: { scope: 'read' } }, () => app.swagger());

  registerMetricsRoute(app, deps);

  const context: RouteContext = { deps, schemas: buildSchemas(config) };
  registerEventRoutes(app, context);
  registerItemRoutes(app, context);
  registerUserRoutes(app, context);
  registerRecommendationRoutes(app, context);
  registerSimilarRoutes(app, context);
  if (deps.offers) registerOfferRoutes(app, context, deps.offers);
  registerModelRoutes(app, context);
  registerExperimentRoutes(app, context);
  registerFeedbackRoutes(app, context);
  registerKeyRoutes(app, context);
  registerHealthRoutes(app, deps.health);

  return app;
}
