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
import type { NamedCheck } from './health.ts';
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
  'ingest' | 'catalog' | 'recommendations' | 'models' | 'jobs' | 'experiments' | 'feedback'
>;

/** Each tenant's services behind one set that dispatches every call on the caller's tenant. */
export function dispatchServices(tenants: ReadonlyMap<string, TenantServices>): TenantServices {
  const each = <S extends ContextualService<S>>(pick: (s: TenantServices) => S) =>
    dispatchByTenant(new Map([...tenants].map(([name, s]) => [name, pick(s)] as const)));
  return {
    ingest: each((s) => s.ingest),
    catalog: each((s) => s.catalog),
    recommendations: each((s) => s.recommendations),
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
