/**
 * Access control on every route. Each route declares the scope it needs (`config: { scope }`, see
 * RouteSecurity); a route that declares none is refused when it is registered, so no route can be
 * added without deciding who may call it. Per request:
 *   - `Authorization: Bearer <key>` → the key is the principal and its tenant the request's tenant
 *     (401 when it is malformed, unknown or revoked; 403 when it lacks the route's scope);
 *   - no key → 401 with `auth.enabled`; otherwise the anonymous principal (every scope, default tenant),
 *     but a state-changing request must then look like no browser could have sent it cross-site: JSON
 *     content type (needs a CORS preflight) and no foreign `Origin`.
 * `public` routes (health probes) skip all of it. CORS is served only for `server.corsOrigins`.
 */
import cors from '@fastify/cors';
import type {
  FastifyInstance,
  FastifyPluginAsync,
  FastifyReply,
  FastifyRequest,
  RouteOptions,
} from 'fastify';
import type { Config } from '../config/load.ts';
import {
  ALL_SCOPES,
  createContext,
  DEFAULT_TENANT,
  hasScope,
  type Principal,
  type Scope,
} from '../domain/context.ts';
import { CairnError } from '../errors/errors.ts';
import type { Authenticator, RouteSecurity } from '../security/contracts.ts';

export type RouteScope = RouteSecurity['scope'];

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Who may call the route (required: a route without it is refused at registration). */
    scope?: RouteScope;
  }
}

const ROUTE_SCOPES: readonly RouteScope[] = [...ALL_SCOPES, 'public'];

/** Caller without a key while auth is disabled: every scope, on the default tenant. */
export const ANONYMOUS: Principal = Object.freeze({
  id: 'anonymous',
  kind: 'anonymous' as const,
  scopes: ALL_SCOPES,
});

/** Caller not (yet) authenticated: may do nothing. Every request starts as this. */
export const UNAUTHENTICATED: Principal = Object.freeze({
  id: 'unauthenticated',
  kind: 'anonymous' as const,
  scopes: Object.freeze([] as Scope[]),
});

/** Name of the bearer scheme in the OpenAPI document (`components.securitySchemes`). */
export const BEARER_SCHEME = 'bearerAuth';

export const OPENAPI_SECURITY_SCHEMES = {
  [BEARER_SCHEME]: {
    type: 'http' as const,
    scheme: 'bearer',
    description:
      'An API key (`cairn keys create`), bound to one tenant, with scopes `read`, `ingest` and/or `admin` ' +
      '(`admin` implies the others). Each operation names the scope it needs in `x-cairn-scope`.',
  },
};

const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** Scope given to the routes registered inside `withRouteScope` (plugins whose route options we don't write). */
const DEFAULT_SCOPE = Symbol('cairn.defaultRouteScope');

export interface AccessControlOptions {
  config: Readonly<Config>;
  /** Verifies `Authorization` headers; without one, every request with a key is refused (401). */
  auth?: Authenticator;
}

/**
 * Installs the route-scope guard, CORS (only when `server.corsOrigins` is set) and the per-request
 * check. Call before any route is registered.
 */
export function registerAccessControl(app: FastifyInstance, options: AccessControlOptions): void {
  const { config, auth } = options;
  if (config.auth.enabled && !auth) {
    throw new CairnError('CAIRN_CONFIG_INVALID', 'auth.enabled is set but this server has no authenticator', {
      fields: [{ field: 'auth.enabled', message: 'needs API keys wired into the server' }],
    });
  }
  app.addHook('onRoute', requireRouteScope);
  const origins = config.server.corsOrigins.map(normalizeOrigin);
  // Registered before the check below, so refusals (401/403) still carry the CORS headers a browser
  // needs to read them, and preflights are answered before any credentials are asked for.
  if (origins.length > 0) {
    void app.register(cors, {
      origin: origins,
      methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
      allowedHeaders: ['Authorization', 'Content-Type', 'X-Request-Id'],
      exposedHeaders: ['X-Request-Id', 'WWW-Authenticate'],
    });
  }
  const check = { enabled: config.auth.enabled, auth, origins: new Set(origins) };
  app.addHook('onRequest', async (request, reply) => authorize(request, reply, check));
}

/** Registers `plugin` in its own context where every route without a declared scope gets `scope`. */
export function withRouteScope(scope: RouteScope, plugin: FastifyPluginAsync): FastifyPluginAsync {
  return async (instance, opts) => {
    instance.decorate(DEFAULT_SCOPE, scope);
    await plugin(instance, opts);
  };
}

/** The scope `route` declared; undefined for a route that declared none. */
export function declaredScope(route: Pick<RouteOptions, 'config'>): RouteScope | undefined {
  return route.config?.scope;
}

/** onRoute: refuses a route without a valid scope; records the scope in its OpenAPI operation. */
function requireRouteScope(this: FastifyInstance, route: RouteOptions): void {
  const inherited = (this as unknown as Record<symbol, RouteScope | undefined>)[DEFAULT_SCOPE];
  // @fastify/cors's catch-all OPTIONS route answers preflights, which browsers send without credentials.
  const preflight = route.method === 'OPTIONS' && route.url === '*' ? 'public' : undefined;
  const scope = declaredScope(route) ?? inherited ?? preflight;
  if (scope === undefined || !ROUTE_SCOPES.includes(scope)) {
    const method = Array.isArray(route.method) ? route.method.join(',') : route.method;
    throw new Error(
      `route ${method} ${route.url} must declare who may call it: config: { scope: ${ROUTE_SCOPES.map((s) => `'${s}'`).join(' | ')} }` +
        (scope === undefined ? '' : ` (got ${JSON.stringify(scope)})`),
    );
  }
  route.config = { ...route.config, scope };
  if (route.schema && !route.schema.hide) {
    // `x-` keys of a route schema become extensions of its OpenAPI operation.
    const documented: Record<string, unknown> = {
      ...route.schema,
      security: scope === 'public' ? [] : [{ [BEARER_SCHEME]: [] }],
      'x-cairn-scope': scope,
    };
    route.schema = documented;
  }
}

interface Check {
  enabled: boolean;
  auth: Authenticator | undefined;
  origins: ReadonlySet<string>;
}

/** onRequest: sets the request's principal and tenant, or refuses the request. */
async function authorize(request: FastifyRequest, reply: FastifyReply, check: Check): Promise<void> {
  // The not-found handler declares nothing and answers 404 whoever asks; a matched route always declares.
  const scope = declaredScope(request.routeOptions) ?? (request.is404 ? 'public' : 'admin');
  const header = request.headers.authorization;
  if (scope === 'public' || header === undefined) {
    if (check.enabled) {
      if (scope !== 'public') throw unauthorized(reply, 'this route needs an API key', false);
      return;
    }
    if (scope !== 'public' && STATE_CHANGING.has(request.method)) refuseBrowserWrites(request, check);
    request.ctx = createContext({ ...request.ctx, principal: ANONYMOUS, tenant: DEFAULT_TENANT });
    return;
  }
  const who = check.auth ? await check.auth.authenticate(header) : null;
  if (!who) throw unauthorized(reply, 'the API key is malformed, unknown or revoked', true);
  request.ctx = createContext({ ...request.ctx, principal: who.principal, tenant: who.tenant });
  if (!hasScope(request.ctx, scope)) {
    throw new CairnError('CAIRN_FORBIDDEN', `this API key lacks the scope this route needs: ${scope}`, {
      required_scope: scope,
      scopes: [...who.principal.scopes],
    });
  }
}

/**
 * A request without a key is what a browser sends with the user's ambient network access: from a page
 * of another site it can only be a "simple" request (no JSON content type), or carry that site's Origin.
 */
function refuseBrowserWrites(request: FastifyRequest, check: Check): void {
  const origin = request.headers.origin;
  if (origin !== undefined && !check.origins.has(normalizeOrigin(origin))) {
    throw new CairnError(
      'CAIRN_FORBIDDEN',
      `origin ${origin.slice(0, 200)} is not allowed (server.corsOrigins); send an API key or call from an allowed origin`,
      { field: 'origin', origin: origin.slice(0, 200) },
    );
  }
  const mediaType = (request.headers['content-type'] ?? '').split(';', 1)[0].trim().toLowerCase();
  if (mediaType !== 'application/json') {
    throw new CairnError(
      'CAIRN_UNSUPPORTED_MEDIA_TYPE',
      'state-changing requests without an API key must send Content-Type: application/json (even without a body)',
      { field: 'content-type' },
    );
  }
}

function unauthorized(reply: FastifyReply, message: string, invalidToken: boolean): CairnError {
  // RFC 6750: the scheme to use, and `invalid_token` when one was sent and refused.
  reply.header(
    'www-authenticate',
    invalidToken ? 'Bearer realm="cairn", error="invalid_token"' : 'Bearer realm="cairn"',
  );
  return new CairnError('CAIRN_UNAUTHORIZED', `${message}: send Authorization: Bearer <key>`, {
    field: 'authorization',
  });
}

/** Origins compare as browsers send them: lower case, no trailing slash. */
function normalizeOrigin(origin: string): string {
  return origin.trim().toLowerCase().replace(/\/+$/, '');
}
