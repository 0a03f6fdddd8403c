/**
 * Tenants as namespaces. A tenant is a complete, separate set of backends — its own SQLite file (or
 * PostgreSQL schema), change feed (tables or NATS streams), online state (Redis key prefix), artifacts,
 * models and experiments — derived from the deployment's configuration by `tenantConfig`. Composition
 * roots build one runtime per tenant and hand the HTTP layer services that dispatch each call on the
 * caller's `ctx.tenant`, so isolation holds by construction: no query can forget a tenant filter,
 * because a tenant's services can only reach that tenant's data.
 *
 * The default tenant keeps the deployment's configuration unchanged (today's paths, schema and prefixes).
 */
import { basename, dirname, join } from 'node:path';
import { DEFAULT_TENANT, type RequestContext } from '../domain/context.ts';
import type { Config } from '../config/load.ts';
import { CairnError } from '../errors/errors.ts';
import type { AppDeps } from '../api/deps.ts';
import type { BaseDeps } from '../api/deps.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { Metrics } from '../monitoring/metrics.ts';
import { createAuthenticator, createKeyService } from '../security/keys.ts';
import type { Store } from '../storage/ports.ts';
import { createRateLimitRedis } from '../storage/redis/rate-limit.ts';
import { closeAll } from './adapters.ts';
import type { Health, NamedCheck } from './health.ts';
import type { HealthService } from '../monitoring/health.ts';

/** Every tenant the deployment serves, the default one first. */
export function tenantNames(config: Readonly<Config>): string[] {
  return [DEFAULT_TENANT, ...config.tenants.filter((t) => t !== DEFAULT_TENANT)];
}

/** The configuration of one tenant: every backend location moved into the tenant's own namespace. */
export function tenantConfig(config: Readonly<Config>, tenant: string): Readonly<Config> {
  if (tenant === DEFAULT_TENANT) return config;
  if (!config.tenants.includes(tenant)) throw unknownTenant(tenant);
  const storeUrl = config.store.url.trim();
  const artifactsUrl = config.artifacts.url.trim();
  return Object.freeze({
    ...config,
    tenants: [],
    dataDir: join(config.dataDir, 'tenants', tenant),
    store: {
      ...config.store,
      url: storeUrl.startsWith('sqlite://') ? sqliteUrlFor(storeUrl, tenant) : storeUrl,
      schema: `${config.store.schema}_t_${tenant}`,
    },
    redis: { ...config.redis, keyPrefix: `${config.redis.keyPrefix}t:${tenant}:` },
    nats: { ...config.nats, streamPrefix: `${config.nats.streamPrefix}_T_${tenant.toUpperCase()}` },
    artifacts: {
      url: artifactsUrl.startsWith('file://') ? `${artifactsUrl.replace(/\/+$/, '')}/tenants/${tenant}` : '',
    },
  });
}

function sqliteUrlFor(url: string, tenant: string): string {
  const path = url.slice('sqlite://'.length);
  if (path === ':memory:') return url;
  return `sqlite://${join(dirname(path), 'tenants', tenant, basename(path))}`;
}

function unknownTenant(tenant: string): CairnError {
  return new CairnError('CAIRN_FORBIDDEN', `tenant "${tenant}" is not served by this deployment`, {
    field: 'tenant',
  });
}

/** A service contract: every method takes the request context first. */
type ContextualService<S> = {
  [K in keyof S]: S[K] extends (ctx: RequestContext, ...args: infer _A) => unknown ? S[K] : never;
};

/**
 * One service that forwards every call to the caller's tenant's instance (chosen by the context's
 * tenant, which authentication set from the API key). The HTTP layer sees a single service.
 */
export function dispatchByTenant<S extends ContextualService<S>>(instances: ReadonlyMap<string, S>): S {
  if (instances.size === 1 && instances.has(DEFAULT_TENANT)) return instances.get(DEFAULT_TENANT)!;
  const pick = (ctx: RequestContext): S => {
    const instance = instances.get(ctx.tenant);
    if (!instance) throw unknownTenant(ctx.tenant);
    return instance;
  };
  return new Proxy({} as S, {
    get(_target, method) {
      return (ctx: RequestContext, ...args: unknown[]) => {
        const instance = pick(ctx) as Record<PropertyKey, (...a: unknown[]) => unknown>;
        return instance[method](ctx, ...args);
      };
    },
  });
}

/** The services of one tenant that the HTTP layer calls. */
export type TenantServices = Pick<
  AppDeps,
  'ingest' | 'catalog' | 'recommendations' | 'offers' | 'models' | 'jobs' | 'experiments' | 'feedback'
>;

/** Each tenant's services behind one set that dispatches every call on the caller's tenant. */
export function dispatchServices(tenants: ReadonlyMap<string, TenantServices>): TenantServices {
  const each = <S extends ContextualService<S>>(pick: (s: TenantServices) => S) =>
    dispatchByTenant(new Map([...tenants].map(([name, s]) => [name, pick(s)] as const)));
  return {
    ingest: each((s) => s.ingest),
    catalog: each((s) => s.catalog),
    recommendations: each((s) => s.recommendations),
    // Every tenant's root builds one; a set without (tests' own roots) serves no offers.
    ...([...tenants.values()].every((s) => s.offers) ? { offers: each((s) => s.offers!) } : {}),
    models: each((s) => s.models),
    jobs: each((s) => s.jobs),
    experiments: each((s) => s.experiments),
    feedback: each((s) => s.feedback),
  };
}

/**
 * The readiness check standing for the tenants besides the default one: critical, failing when any is
 * not ready. It counts them without naming them (the health routes are public).
 */
export function tenantsCheck(others: readonly HealthService[]): NamedCheck {
  return {
    name: 'tenants',
    critical: true,
    async run() {
      const results = await Promise.all(others.map((h) => h.ready()));
      const failing = results.filter((r) => !r.ready).length;
      return failing === 0
        ? { ok: true }
        : { ok: false, detail: `${failing} of ${others.length} other tenants not ready` };
    },
  };
}

/** What every role's per-tenant runtime offers the process around it. */
export interface TenantRuntime {
  metrics: Metrics;
  health: Health;
  store: Store;
  /** The deployment's keyed hash of user ids (one key, from the default tenant's store). */
  pseudonymize: (id: string) => string;
  close(): Promise<void>;
}

/** Opens one tenant's runtime; `pseudonymize` is the deployment's, except for the default tenant (which makes it). */
export type OpenTenant<T> = (
  tenant: string,
  config: Readonly<Config>,
  logger: Logger,
  pseudonymize: ((id: string) => string) | undefined,
) => Promise<T>;

/** Every tenant's runtime of one process, the default one first. */
export interface Tenants<T extends TenantRuntime> {
  readonly all: ReadonlyMap<string, T>;
  /** The default tenant's: its store holds the keys and its health stands for the process. */
  readonly main: T;
  close(): Promise<void>;
}

/**
 * Opens each tenant's runtime with its namespaced config (default first: its store has the deployment's
 * pseudonym key), makes the default tenant's readiness cover the others, and closes what was opened if
 * one fails.
 */
export async function openTenants<T extends TenantRuntime>(
  config: Readonly<Config>,
  logger: Logger,
  open: OpenTenant<T>,
): Promise<Tenants<T>> {
  const all = new Map<string, T>();
  const close = () => closeAll([...all.values()].reverse());
  try {
    for (const tenant of tenantNames(config)) {
      const tenantLogger = tenant === DEFAULT_TENANT ? logger : logger.child({ tenant });
      const pseudonymize = all.get(DEFAULT_TENANT)?.pseudonymize;
      all.set(tenant, await open(tenant, tenantConfig(config, tenant), tenantLogger, pseudonymize));
    }
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }
  const main = all.get(DEFAULT_TENANT)!;
  const others = [...all.values()].filter((t) => t !== main);
  if (others.length > 0) main.health.add(tenantsCheck(others.map((t) => t.health)));
  return { all, main, close };
}

/**
 * Builds the rest of a process around its tenants (its HTTP app, at least). If that fails the tenants
 * are closed; the process's `close` closes the app, then the tenants, once.
 */
export async function aroundTenants<
  T extends TenantRuntime,
  P extends { app: { close(): Promise<unknown> } },
>(tenants: Tenants<T>, build: () => Promise<P> | P): Promise<P & { close(): Promise<void> }> {
  try {
    const built = await build();
    let closed = false;
    return {
      ...built,
      async close() {
        if (closed) return;
        closed = true;
        await built.app.close();
        await tenants.close();
      },
    };
  } catch (err) {
    await tenants.close().catch(() => undefined);
    throw err;
  }
}

/** What every HTTP server of the process needs from its tenants: metrics per tenant, keys, readiness. */
export function opsDeps<T extends TenantRuntime>(
  tenants: Tenants<T>,
  config: Readonly<Config>,
  logger: Logger,
): BaseDeps & { health: Health } {
  return {
    config,
    logger,
    metrics: tenants.main.metrics,
    metricsOf: (tenant) => tenants.all.get(tenant)?.metrics ?? null,
    auth: createAuthenticator({ keys: tenants.main.store.keys, cacheSeconds: config.auth.keyCacheSeconds }),
    health: tenants.main.health,
  };
}

/** The public API's dependencies: the ops part, key management, and every service dispatching on tenant. */
export function apiDeps<T extends TenantRuntime>(
  tenants: Tenants<T>,
  config: Readonly<Config>,
  logger: Logger,
  servicesOf: (runtime: T) => TenantServices,
): AppDeps {
  return {
    ...opsDeps(tenants, config, logger),
    keys: createKeyService({ store: tenants.main.store, tenants: tenantNames(config) }),
    pseudonymize: tenants.main.pseudonymize,
    // Rate-limit counters shared by every replica when the deployment has Redis.
    rateLimitRedis: config.redis.url.trim()
      ? createRateLimitRedis(config.redis.url, (err) => {
          if (err)
            logger.warn({ err }, 'rate-limit Redis unreachable; requests are not limited until it is back');
          else logger.info('rate-limit Redis reachable again');
        })
      : null,
    ...dispatchServices(new Map([...tenants.all].map(([name, t]) => [name, servicesOf(t)] as const))),
  };
}
