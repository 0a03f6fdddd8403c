/**
 * Access control in the HTTP layer: the route-scope guard, who a request is (no key, a bad key, a key of
 * each scope and tenant), the browser checks on key-less writes, and CORS. Keys are real: minted by the
 * key service into a real (in-memory) SQLite store and verified by the real authenticator.
 */
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig, type DeepPartial } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { cliContext } from '../domain/context.ts';
import { createLogger } from '../monitoring/logger.ts';
import { createMetrics } from '../monitoring/metrics.ts';
import { createAuthenticator, createKeyService } from '../security/keys.ts';
import type { Scope } from '../domain/context.ts';
import { SqliteStore } from '../storage/sqlite/store.ts';
import { buildOpsApp } from './app.ts';
import { withRouteScope } from './auth.ts';

const SHOP = 'https://shop.example';
const JSON_TYPE = { 'content-type': 'application/json' };

let store: SqliteStore;
const tokens: Record<string, string> = {};
let revoked: string;

beforeEach(async () => {
  store = new SqliteStore({ path: ':memory:' });
  await store.migrate();
  const keys = createKeyService({ store, tenants: ['default', 'acme'] });
  const mint = async (scopes: Scope[], tenant = 'default') =>
    (await keys.create(cliContext(), { scopes, tenant })).token;
  tokens.read = await mint(['read']);
  tokens.ingest = await mint(['ingest']);
  tokens.admin = await mint(['admin']);
  tokens.acmeRead = await mint(['read'], 'acme');
  const gone = await keys.create(cliContext(), { scopes: ['admin'] });
  await keys.revoke(cliContext(), gone.key.id);
  revoked = gone.token;
});

const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((a) => a.close()));
  await store.close();
});

/** The ops app (health: public, /metrics: admin) plus one echo route per scope. */
async function build(overrides: DeepPartial<Config> = {}, withAuth = true): Promise<FastifyInstance> {
  const config = loadConfig({ env: {}, overrides });
  const app = buildOpsApp({
    config,
    logger: createLogger('silent'),
    metrics: createMetrics({ defaultMetrics: false }),
    health: { ready: () => Promise.resolve({ ready: true, checks: {} }) },
    auth: withAuth ? createAuthenticator({ keys: store.keys, cacheSeconds: 0 }) : undefined,
  });
  const echo = (request: { ctx: { principal: { id: string; kind: string }; tenant: string } }) => ({
    principal: request.ctx.principal.id,
    kind: request.ctx.principal.kind,
    tenant: request.ctx.tenant,
  });
  app.get('/t/read', { config: { scope: 'read' } }, echo);
  app.post('/t/ingest', { config: { scope: 'ingest' } }, echo);
  app.delete('/t/admin', { config: { scope: 'admin' } }, echo);
  apps.push(app);
  await app.ready();
  return app;
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

describe('route scopes', () => {
  it('refuses at registration a route that declares no scope, or an unknown one', async () => {
    const app = await build();
    expect(() => app.get('/t/none', () => 'x')).toThrow(/GET \/t\/none must declare who may call it/);
    await app.close();
    const fresh = buildOpsApp({
      config: loadConfig({ env: {} }),
      logger: createLogger('silent'),
      metrics: createMetrics({ defaultMetrics: false }),
      health: { ready: () => Promise.resolve({ ready: true, checks: {} }) },
    });
    apps.push(fresh);
    expect(() => fresh.get('/t/typo', { config: { scope: 'write' as 'read' } }, () => 'x')).toThrow(
      /got "write"/,
    );
    // A plugin registering routes it declares nothing for (here: inside a plugin) fails the app's start.
    void fresh.register(async (child) => {
      await Promise.resolve(); // an async plugin: its failure is the load's
      child.post('/t/plugin', () => 'x');
    });
    await expect(fresh.ready()).rejects.toThrow(/POST \/t\/plugin must declare/);
  });

  it('gives the routes of a plugin wrapped in withRouteScope that scope', async () => {
    const app = buildOpsApp({
      config: loadConfig({ env: {}, overrides: { auth: { enabled: true } } }),
      logger: createLogger('silent'),
      metrics: createMetrics({ defaultMetrics: false }),
      health: { ready: () => Promise.resolve({ ready: true, checks: {} }) },
      auth: createAuthenticator({ keys: store.keys, cacheSeconds: 0 }),
    });
    apps.push(app);
    void app.register(
      withRouteScope('read', async (child) => {
        await child.register((grandchild, _opts, done) => {
          grandchild.get('/t/inherited', () => ({ ok: true }));
          done();
        });
      }),
    );
    await app.ready();
    expect((await app.inject({ url: '/t/inherited' })).statusCode).toBe(401);
    expect((await app.inject({ url: '/t/inherited', headers: bearer(tokens.ingest) })).statusCode).toBe(403);
    expect((await app.inject({ url: '/t/inherited', headers: bearer(tokens.read) })).statusCode).toBe(200);
  });

  it('refuses auth.enabled without an authenticator when the app is built', async () => {
    await expect(build({ auth: { enabled: true } }, false)).rejects.toMatchObject({
      code: 'CAIRN_CONFIG_INVALID',
    });
  });
});

describe('with auth disabled', () => {
  it('a caller without a key is the anonymous principal on the default tenant', async () => {
    const app = await build();
    const res = await app.inject({ url: '/t/read' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ principal: 'anonymous', kind: 'anonymous', tenant: 'default' });
    const write = await app.inject({ method: 'DELETE', url: '/t/admin', headers: JSON_TYPE });
    expect(write.json()).toMatchObject({ principal: 'anonymous' });
  });

  it('a key still narrows the caller: its own tenant and scopes', async () => {
    const app = await build();
    const acme = await app.inject({ url: '/t/read', headers: bearer(tokens.acmeRead) });
    expect(acme.json()).toMatchObject({ kind: 'key', tenant: 'acme' });
    const denied = await app.inject({ method: 'POST', url: '/t/ingest', headers: bearer(tokens.read) });
    expect(denied.statusCode).toBe(403);
    expect(denied.json().error).toMatchObject({
      code: 'CAIRN_FORBIDDEN',
      details: { required_scope: 'ingest', scopes: ['read'] },
    });
    const bad = await app.inject({ url: '/t/read', headers: bearer('cairn_nope') });
    expect(bad.statusCode).toBe(401);
  });

  it('refuses key-less writes without a JSON content type (what a cross-site form sends) with 415', async () => {
    const app = await build();
    for (const headers of [
      {},
      { 'content-type': 'text/plain' },
      { 'content-type': 'application/x-www-form-urlencoded' },
    ]) {
      const res = await app.inject({ method: 'POST', url: '/t/ingest', headers, payload: 'a=1' });
      expect([res.statusCode, res.json().error.code, res.json().error.details]).toEqual([
        415,
        'CAIRN_UNSUPPORTED_MEDIA_TYPE',
        { field: 'content-type' },
      ]);
    }
    const bodyless = await app.inject({ method: 'DELETE', url: '/t/admin' });
    expect(bodyless.statusCode).toBe(415);
    const json = await app.inject({
      method: 'DELETE',
      url: '/t/admin',
      headers: { 'content-type': 'Application/JSON; charset=utf-8' },
    });
    expect(json.statusCode).toBe(200);
    // With a key, a body-less write needs no content type: a browser cannot attach the key by itself.
    const keyed = await app.inject({ method: 'DELETE', url: '/t/admin', headers: bearer(tokens.admin) });
    expect(keyed.statusCode).toBe(200);
  });

  it('refuses key-less writes from an Origin not in server.corsOrigins (403 naming origin)', async () => {
    const app = await build({ server: { corsOrigins: [`${SHOP}/`] } });
    const foreign = await app.inject({
      method: 'POST',
      url: '/t/ingest',
      headers: { ...JSON_TYPE, origin: 'https://evil.example' },
    });
    expect(foreign.statusCode).toBe(403);
    expect(foreign.json().error).toMatchObject({
      code: 'CAIRN_FORBIDDEN',
      details: { field: 'origin', origin: 'https://evil.example' },
    });
    const opaque = await app.inject({
      method: 'POST',
      url: '/t/ingest',
      headers: { ...JSON_TYPE, origin: 'null' },
    });
    expect(opaque.statusCode).toBe(403);
    const allowed = await app.inject({
      method: 'POST',
      url: '/t/ingest',
      headers: { ...JSON_TYPE, origin: SHOP },
    });
    expect(allowed.statusCode).toBe(200);
    // Reads are not refused (CORS keeps their answers from foreign pages), nor are keyed writes.
    expect(
      (await app.inject({ url: '/t/read', headers: { origin: 'https://evil.example' } })).statusCode,
    ).toBe(200);
    const keyed = await app.inject({
      method: 'POST',
      url: '/t/ingest',
      headers: { ...bearer(tokens.ingest), origin: 'https://evil.example' },
    });
    expect(keyed.statusCode).toBe(200);
  });
});

describe('with auth enabled', () => {
  it('answers 401 with WWW-Authenticate to a request without a key, or with a bad one', async () => {
    const app = await build({ auth: { enabled: true } });
    const none = await app.inject({ url: '/t/read' });
    expect(none.statusCode).toBe(401);
    expect(none.headers['www-authenticate']).toBe('Bearer realm="cairn"');
    expect(none.json().error).toMatchObject({
      code: 'CAIRN_UNAUTHORIZED',
      details: { field: 'authorization' },
    });
    expect(none.headers['x-request-id']).toEqual(expect.any(String));
    const unknownKey = tokens.read.replace(/_ck_[0-9a-f]{12}_/, '_ck_000000000000_');
    const wrongSecret = tokens.read.slice(0, -4) + 'AAAA';
    for (const authorization of [
      'Bearer',
      'Bearer ',
      'Basic dXNlcjpwYXNz',
      `Token ${tokens.read}`,
      `Bearer ${tokens.read}x`,
      `Bearer ${unknownKey}`,
      `Bearer ${wrongSecret}`,
      `Bearer ${revoked}`,
    ]) {
      const res = await app.inject({ url: '/t/read', headers: { authorization } });
      expect([authorization, res.statusCode, res.json().error.code]).toEqual([
        authorization,
        401,
        'CAIRN_UNAUTHORIZED',
      ]);
      expect(res.headers['www-authenticate']).toBe('Bearer realm="cairn", error="invalid_token"');
    }
  });

  it('lets each scope through to its routes only (admin implies the others)', async () => {
    const app = await build({ auth: { enabled: true } });
    const routes = [
      ['GET', '/t/read', 'read'],
      ['POST', '/t/ingest', 'ingest'],
      ['DELETE', '/t/admin', 'admin'],
      ['GET', '/metrics', 'admin'],
    ] as const;
    for (const key of ['read', 'ingest', 'admin'] as const) {
      for (const [method, url, scope] of routes) {
        const res = await app.inject({ method, url, headers: bearer(tokens[key]) });
        const allowed = key === 'admin' || key === scope;
        expect([key, url, res.statusCode]).toEqual([key, url, allowed ? 200 : 403]);
      }
    }
    const who = await app.inject({ url: '/t/read', headers: bearer(tokens.read) });
    expect(who.json()).toMatchObject({
      kind: 'key',
      tenant: 'default',
      principal: expect.stringMatching(/^ck_/),
    });
  });

  it('keeps health public: no key needed, and a bad key does not matter', async () => {
    const app = await build({ auth: { enabled: true } });
    for (const url of ['/health/live', '/health/ready']) {
      expect((await app.inject({ url })).statusCode).toBe(200);
      expect((await app.inject({ url, headers: bearer('garbage') })).statusCode).toBe(200);
    }
    // An unknown URL is a 404 whoever asks.
    expect((await app.inject({ url: '/nope' })).statusCode).toBe(404);
  });
});

describe('CORS', () => {
  it('is off without server.corsOrigins', async () => {
    const app = await build();
    const res = await app.inject({ url: '/t/read', headers: { origin: SHOP } });
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
    const preflight = await app.inject({
      method: 'OPTIONS',
      url: '/t/ingest',
      headers: { origin: SHOP, 'access-control-request-method': 'POST' },
    });
    expect(preflight.statusCode).toBe(404);
  });

  it('answers preflights of the configured origins only, allowing Authorization and Content-Type', async () => {
    const app = await build({ auth: { enabled: true }, server: { corsOrigins: [SHOP] } });
    const preflight = await app.inject({
      method: 'OPTIONS',
      url: '/t/ingest',
      headers: {
        origin: SHOP,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization,content-type',
      },
    });
    expect(preflight.statusCode).toBe(204);
    expect(preflight.headers['access-control-allow-origin']).toBe(SHOP);
    expect(String(preflight.headers['access-control-allow-headers']).toLowerCase()).toMatch(
      /authorization.*content-type/,
    );
    const foreign = await app.inject({
      method: 'OPTIONS',
      url: '/t/ingest',
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
    });
    expect(foreign.headers['access-control-allow-origin']).toBeUndefined();
    // A refusal still carries the CORS headers, so the page can read why.
    const refused = await app.inject({ url: '/t/read', headers: { origin: SHOP } });
    expect(refused.statusCode).toBe(401);
    expect(refused.headers['access-control-allow-origin']).toBe(SHOP);
    const ok = await app.inject({ url: '/t/read', headers: { origin: SHOP, ...bearer(tokens.read) } });
    expect(ok.statusCode).toBe(200);
    expect(ok.headers['access-control-allow-origin']).toBe(SHOP);
  });
});
