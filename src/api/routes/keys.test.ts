/**
 * `/v1/keys` through the whole HTTP app (`app.inject`): the real key service and authenticator on an
 * in-memory SQLite store, with auth enabled (API-key admins) and disabled (the anonymous caller).
 */
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../config/load.ts';
import { cliContext, type Scope } from '../../domain/context.ts';
import { createLogger } from '../../monitoring/logger.ts';
import { createMetrics } from '../../monitoring/metrics.ts';
import type { KeyService } from '../../security/contracts.ts';
import { createAuthenticator, createKeyService, parseToken } from '../../security/keys.ts';
import { SqliteStore } from '../../storage/sqlite/store.ts';
import { buildApp } from '../app.ts';
import type { AppDeps } from '../deps.ts';

const CLI = cliContext();
const KEY_FIELDS = [
  'key_id',
  'tenant',
  'scopes',
  'name',
  'created_at',
  'created_by',
  'revoked_at',
  'revoked_by',
].sort();

/** A service these routes never call: any use fails the test loudly. */
function unused<T extends object>(name: string): T {
  return new Proxy({} as T, {
    get: (_target, method) =>
      method === 'then'
        ? undefined
        : () => {
            throw new Error(`${name}.${String(method)} is not used by the key routes`);
          },
  });
}

interface Harness {
  app: FastifyInstance;
  keys: KeyService;
  store: SqliteStore;
  /** A token of a new key, made from the command line. */
  token(tenant: string, scopes: Scope[]): Promise<string>;
}

let open: Harness | null = null;
afterEach(async () => {
  await open?.app.close();
  await open?.store.close();
  open = null;
});

async function harness(authEnabled: boolean): Promise<Harness> {
  const config = loadConfig({
    env: {},
    overrides: { tenants: ['acme'], auth: { enabled: authEnabled }, rateLimit: { enabled: false } },
  });
  const store = new SqliteStore({ path: ':memory:' });
  await store.migrate();
  const keys = createKeyService({ store, tenants: ['default', 'acme'] });
  const deps: AppDeps = {
    config,
    logger: createLogger('silent'),
    metrics: createMetrics({ defaultMetrics: false }),
    // Looked up on every request, so a revocation shows at once.
    auth: createAuthenticator({ keys: store.keys, cacheSeconds: 0 }),
    keys,
    ingest: unused('ingest'),
    catalog: unused('catalog'),
    recommendations: unused('recommendations'),
    models: unused('models'),
    jobs: unused('jobs'),
    health: unused('health'),
    experiments: unused('experiments'),
    feedback: unused('feedback'),
  };
  const app = await buildApp(deps);
  await app.ready();
  open = {
    app,
    keys,
    store,
    token: async (tenant, scopes) => (await keys.create(CLI, { tenant, scopes })).token,
  };
  return open;
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const json = { 'content-type': 'application/json' };

describe('/v1/keys with auth enabled', () => {
  it('an admin key creates a key of its tenant: 201 with the token once, which then authenticates', async () => {
    const h = await harness(true);
    const admin = await h.token('acme', ['admin']);
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/keys',
      headers: bearer(admin),
      payload: { scopes: ['read'], name: 'checkout' },
    });
    expect(res.statusCode).toBe(201);
    const body = res.json<Record<string, unknown>>();
    expect(Object.keys(body).sort()).toEqual([...KEY_FIELDS, 'token'].sort());
    expect(body).toMatchObject({
      key_id: expect.stringMatching(/^ck_[0-9a-f]{12}$/),
      tenant: 'acme',
      scopes: ['read'],
      name: 'checkout',
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      revoked_at: null,
      revoked_by: null,
    });
    // The new read key may not manage keys (the routes need admin).
    const denied = await h.app.inject({
      method: 'GET',
      url: '/v1/keys',
      headers: bearer(body.token as string),
    });
    expect(denied.statusCode).toBe(403);
    expect(denied.json()).toMatchObject({ error: { code: 'CAIRN_FORBIDDEN' } });
  });

  it('refuses another tenant (403 naming tenant) and bad bodies (400 naming the field)', async () => {
    const h = await harness(true);
    const admin = await h.token('acme', ['admin']);
    const post = (payload: unknown) =>
      h.app.inject({ method: 'POST', url: '/v1/keys', headers: bearer(admin), payload: payload as object });

    const other = await post({ scopes: ['read'], tenant: 'default' });
    expect(other.statusCode).toBe(403);
    expect(other.json()).toMatchObject({ error: { code: 'CAIRN_FORBIDDEN', details: { field: 'tenant' } } });

    for (const [payload, field] of [
      [{ scopes: [] }, 'scopes'],
      [{ scopes: ['root'] }, 'scopes[0]'],
      [{ scopes: ['read', 'read'] }, 'scopes'],
      [{}, 'scopes'],
      [{ scopes: ['read'], name: 'x'.repeat(129) }, 'name'],
      [{ scopes: ['read'], token: 'mine' }, 'token'],
    ] as const) {
      const res = await post(payload);
      expect(res.statusCode, JSON.stringify(payload)).toBe(400);
      expect(res.json().error.code).toBe('CAIRN_VALIDATION');
      expect(res.json().error.details.fields.map((f: { field: string }) => f.field)).toContain(field);
    }
    expect(await h.store.keys.list()).toHaveLength(1);
  });

  it('lists its tenant’s keys without tokens or hashes, and revokes only them', async () => {
    const h = await harness(true);
    const admin = await h.token('acme', ['admin']);
    const reader = await h.token('acme', ['read']);
    const foreign = (await h.keys.create(CLI, { scopes: ['read'] })).key.id;

    const list = await h.app.inject({ method: 'GET', url: '/v1/keys', headers: bearer(admin) });
    expect(list.statusCode).toBe(200);
    const keys = list.json<{ keys: Record<string, unknown>[] }>().keys;
    expect(keys.map((k) => k.tenant)).toEqual(['acme', 'acme']);
    for (const k of keys) expect(Object.keys(k).sort()).toEqual(KEY_FIELDS);
    expect(list.body).not.toContain(admin.slice(-43));

    const hidden = await h.app.inject({
      method: 'DELETE',
      url: `/v1/keys/${foreign}`,
      headers: bearer(admin),
    });
    expect(hidden.statusCode).toBe(404);
    expect(hidden.json().error.code).toBe('CAIRN_NOT_FOUND');

    const readerId = parseToken(reader)!.id;
    const revoked = await h.app.inject({
      method: 'DELETE',
      url: `/v1/keys/${readerId}`,
      headers: bearer(admin),
    });
    expect(revoked.statusCode).toBe(200);
    expect(revoked.json()).toMatchObject({ key_id: readerId, revoked_by: parseToken(admin)!.id });
    expect(revoked.json().revoked_at).toEqual(expect.stringMatching(/^\d{4}-/));
    const again = await h.app.inject({
      method: 'DELETE',
      url: `/v1/keys/${readerId}`,
      headers: bearer(admin),
    });
    expect(again.json()).toEqual(revoked.json());

    const refused = await h.app.inject({ method: 'GET', url: '/v1/keys', headers: bearer(reader) });
    expect(refused.statusCode).toBe(401);
  });
});

describe('/v1/keys with auth disabled', () => {
  it('the anonymous caller manages the default tenant’s keys only', async () => {
    const h = await harness(false);
    const created = await h.app.inject({
      method: 'POST',
      url: '/v1/keys',
      headers: json,
      payload: { scopes: ['admin', 'read'] },
    });
    expect(created.statusCode).toBe(201);
    expect(created.json()).toMatchObject({
      tenant: 'default',
      scopes: ['read', 'admin'],
      created_by: 'anonymous',
    });
    const acme = await h.app.inject({
      method: 'POST',
      url: '/v1/keys',
      headers: json,
      payload: { scopes: ['read'], tenant: 'acme' },
    });
    expect(acme.statusCode).toBe(403);
    const list = await h.app.inject({ method: 'GET', url: '/v1/keys' });
    expect(list.json().keys.map((k: { key_id: string }) => k.key_id)).toEqual([created.json().key_id]);
  });
});
