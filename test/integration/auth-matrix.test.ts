/**
 * Access control of the real all-in-one service, route by route: with `auth.enabled` and a second tenant
 * (`acme`), EVERY route the app registers (enumerated from the app itself, so a new route without an
 * expectation here fails the test) is called with no key, a malformed, an unknown and a revoked key,
 * a key of each scope, and an admin key of the other tenant. No call succeeds without a valid key (401),
 * none without the route's scope (403), and the other tenant's admin never reads or changes the default
 * tenant's users, items, events, models, experiments or keys. The OpenAPI document states every
 * operation's scope.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.ts';
import { cliContext, systemContext, type Scope } from '../../src/domain/context.ts';
import { waitForJob } from '../../src/main/demo.ts';
import { createEmbedded, type Embedded } from '../../src/main/embedded.ts';
import { createLogger } from '../../src/monitoring/logger.ts';

type RouteScope = Scope | 'public';
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

/** What one call answered. */
interface Answer {
  status: number;
  headers: Record<string, unknown>;
  body: Json;
}

/** How to call a route well-formed, and what the other tenant's admin must see. */
interface RouteCase {
  scope: RouteScope;
  url: string;
  body?: unknown;
  /** The call of the other tenant's admin: checks that it saw nothing of the default tenant. */
  foreign?: (answer: Answer) => void | Promise<void>;
}

/* ------------------------------------------------------------------ the default tenant's data */

const USER = 'u-default';
const VICTIM = 'u-victim';
const ITEM = 'i-default';
const ITEMS = Array.from({ length: 24 }, (_, i) => `d-i${i}`);
const EXPERIMENT = 'exp-default';

/**
 * What the default tenant holds, as far as a route could change it synchronously. (The served log is
 * written behind the answers, so it is checked once at the end, by request id.)
 */
async function defaultState(cairn: Embedded): Promise<unknown> {
  const s = cairn.store;
  return {
    events: await s.events.count(),
    items: await s.items.count(),
    users: await s.users.count(),
    user: await s.users.get(USER),
    victim: await s.users.get(VICTIM),
    item: await s.items.get(ITEM),
    models: (await s.models.list(100)).map((m) => [m.version, m.status]),
    champion: (await s.models.champion())?.version ?? null,
    experiments: (await s.experiments.list()).map((e) => [e.id, e.status]),
    keys: (await s.keys.list({ tenant: 'default' })).map((k) => [k.id, k.revokedAt]),
  };
}

/* ------------------------------------------------------------------ routes of the app */

/**
 * Every (method, path) the app registered, from Fastify's own radix tree (`printRoutes`: one node per
 * line, a path is the labels from the root down, a node that is a route lists its methods), each
 * checked with `hasRoute` so a misread tree cannot hide a route.
 */
function registeredRoutes(app: FastifyInstance): string[] {
  const stack: string[] = [];
  const routes: string[] = [];
  for (const line of app.printRoutes().split('\n')) {
    const m = /^([│├└─\s]*)(\S+)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!m) continue;
    // Each level of the tree indents its lines by four characters.
    const depth = m[1].length / 4 - 1;
    const path = (depth > 0 ? stack[depth - 1] : '') + m[2];
    stack[depth] = path;
    stack.length = depth + 1;
    for (const method of m[3]?.split(', ') ?? []) {
      expect(app.hasRoute({ method, url: path }), `${method} ${path}`).toBe(true);
      routes.push(`${method} ${path}`);
    }
  }
  return routes;
}

/* ------------------------------------------------------------------ credentials */

const CREDENTIALS = [
  'none',
  'malformed',
  'unknown',
  'revoked',
  'read',
  'ingest',
  'other-tenant',
  'admin',
] as const;
type Credential = (typeof CREDENTIALS)[number];

describe('access control on every route (auth enabled, tenants default + acme)', () => {
  let dir: string;
  let cairn: Embedded;
  const tokens = {} as Record<Credential, string | null>;
  let victimKey: string;
  let version: string;
  let job: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-auth-matrix-'));
    const config = loadConfig({
      env: {},
      overrides: {
        dataDir: dir,
        auth: { enabled: true, keyCacheSeconds: 0 },
        tenants: ['acme'],
        training: { threads: 1 },
      },
    });
    cairn = await createEmbedded(config, { logger: createLogger('silent'), snapshotEveryMs: 0 });

    const cli = cliContext();
    const mint = async (scopes: Scope[], tenant = 'default') =>
      (await cairn.keys.create(cli, { scopes, tenant, name: `matrix ${tenant} ${scopes.join('+')}` })).token;
    tokens.none = null;
    tokens.malformed = 'not-a-cairn-key';
    tokens.unknown = `cairn_ck_000000000000_${'A'.repeat(43)}`;
    const revoked = await cairn.keys.create(cli, { scopes: ['admin'], name: 'revoked' });
    await cairn.keys.revoke(cli, revoked.key.id);
    tokens.revoked = revoked.token;
    tokens.read = await mint(['read']);
    tokens.ingest = await mint(['ingest']);
    tokens.admin = await mint(['admin']);
    tokens['other-tenant'] = await mint(['admin'], 'acme');
    victimKey = (await cairn.keys.create(cli, { scopes: ['read'], name: 'victim' })).key.id;

    // The default tenant's shop: users, items, events, a model (and its job), an experiment.
    const ctx = systemContext('matrix-seed');
    await cairn.catalog.putItems(
      ctx,
      [ITEM, ...ITEMS].map((id, i) => ({ id, categories: [`c${i % 3}`] })),
    );
    await cairn.catalog.putUser(ctx, USER, { segments: ['default-only'] });
    await cairn.catalog.putUser(ctx, VICTIM, { segments: ['default-only'] });
    const events = [];
    for (let u = 0; u < 30; u++) {
      for (let j = 0; j < 8; j++) {
        events.push({
          user_id: u === 0 ? USER : `d-u${u}`,
          item_id: ITEMS[(u * 5 + j * 3) % ITEMS.length],
          type: j % 4 === 0 ? 'purchase' : 'view',
        });
      }
    }
    const outcomes = await cairn.ingest.ingestEvents(ctx, events);
    expect(outcomes.filter((o) => o.status !== 'accepted')).toEqual([]);
    const queued = await cairn.models.train(ctx, { algorithm: 'pop' });
    job = queued.id;
    await waitForJob(cairn.jobs, job);
    const models = await cairn.store.models.list(5);
    expect(models.length).toBeGreaterThan(0);
    version = models[0].version;
    await cairn.experiments.createFromWire(ctx, {
      id: EXPERIMENT,
      variants: [
        { name: 'a', weight: 1 },
        { name: 'b', weight: 1 },
      ],
    });
  }, 120_000);

  afterAll(async () => {
    await cairn?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const call = async (method: string, url: string, token: string | null, body?: unknown, id?: string) => {
    const res = await cairn.app.inject({
      method,
      url,
      headers: {
        'content-type': 'application/json',
        ...(id === undefined ? {} : { 'x-request-id': id }),
        ...(token === null ? {} : { authorization: `Bearer ${token}` }),
      },
      ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
    });
    let parsed: Json = res.body;
    if (String(res.headers['content-type'] ?? '').includes('json') && res.body !== '') parsed = res.json();
    return { status: res.statusCode, headers: res.headers, body: parsed } satisfies Answer;
  };

  /** The other tenant sees none of the default tenant's items in a recommendation. */
  const noDefaultItems = (answer: { body: Json }) => {
    const items: { item_id: string }[] = answer.body.items ?? [];
    expect(items.filter((i) => ITEMS.includes(i.item_id) || i.item_id === ITEM)).toEqual([]);
  };
  const notFound = (answer: Answer) => expect(answer.status).toBe(404);
  const foreignRecommendation = (answer: Answer) => {
    expect(answer.status).toBe(200);
    expect(answer.body.model_version).toBeNull();
    noDefaultItems(answer);
  };

  /** Every route of the app, by `METHOD path`, with a well-formed call (HEAD routes use their GET's). */
  const cases = (): Record<string, RouteCase> => ({
    'GET /docs': { scope: 'read', url: '/docs' },
    'GET /docs/': { scope: 'read', url: '/docs/' },
    'GET /docs/static/index.html': { scope: 'read', url: '/docs/static/index.html' },
    'GET /docs/static/swagger-initializer.js': {
      scope: 'read',
      url: '/docs/static/swagger-initializer.js',
    },
    'GET /docs/static/*': { scope: 'read', url: '/docs/static/swagger-ui.css' },
    'GET /docs/json': { scope: 'read', url: '/docs/json' },
    'GET /docs/yaml': { scope: 'read', url: '/docs/yaml' },
    'GET /openapi.json': { scope: 'read', url: '/openapi.json' },
    'GET /metrics': { scope: 'admin', url: '/metrics' },
    'GET /health/live': { scope: 'public', url: '/health/live' },
    'GET /health/ready': { scope: 'public', url: '/health/ready' },
    'POST /v1/events': {
      scope: 'ingest',
      url: '/v1/events',
      body: { user_id: 'u-event', item_id: 'i-put', type: 'view' },
    },
    'POST /v1/items': {
      scope: 'ingest',
      url: '/v1/items',
      body: { items: [{ id: 'i-batch', categories: ['x'] }] },
    },
    'PUT /v1/items/:id': { scope: 'ingest', url: '/v1/items/i-put', body: { categories: ['x'] } },
    'GET /v1/items/:id': { scope: 'read', url: `/v1/items/${ITEM}`, foreign: notFound },
    'GET /v1/items/:id/similar': { scope: 'read', url: `/v1/items/${ITEM}/similar`, foreign: notFound },
    'PUT /v1/users/:id': { scope: 'ingest', url: '/v1/users/u-put', body: { segments: ['s'] } },
    'GET /v1/users/:id': { scope: 'read', url: `/v1/users/${USER}`, foreign: notFound },
    'DELETE /v1/users/:id': { scope: 'admin', url: `/v1/users/${VICTIM}`, foreign: notFound },
    'GET /v1/users/:id/recommendations': {
      scope: 'read',
      url: `/v1/users/${USER}/recommendations?k=10`,
      foreign: foreignRecommendation,
    },
    'GET /v1/users/:id/next-best-offer': {
      scope: 'read',
      url: `/v1/users/${USER}/next-best-offer?k=3`,
      // The other tenant's decision: none of this tenant's items, no model of this tenant.
      foreign: foreignRecommendation,
    },
    'POST /v1/recommendations': {
      scope: 'read',
      url: '/v1/recommendations',
      body: { user_id: USER, k: 10 },
      foreign: foreignRecommendation,
    },
    'POST /v1/recommendations/bulk': {
      scope: 'read',
      url: '/v1/recommendations/bulk',
      body: { requests: [{ user_id: USER, k: 10 }] },
      foreign: (a) => {
        expect(a.status).toBe(200);
        for (const r of a.body.results) foreignRecommendation({ ...a, body: r });
      },
    },
    'GET /v1/popular': {
      scope: 'read',
      url: '/v1/popular?k=50',
      foreign: (a) => {
        expect(a.status).toBe(200);
        noDefaultItems(a);
      },
    },
    'GET /v1/models': {
      scope: 'read',
      url: '/v1/models',
      foreign: (a) => {
        expect(a.status).toBe(200);
        expect(a.body.models.map((m: { version: string }) => m.version)).not.toContain(version);
      },
    },
    'POST /v1/models/train': { scope: 'admin', url: '/v1/models/train', body: { algorithm: 'pop' } },
    'POST /v1/models/rollback': { scope: 'admin', url: '/v1/models/rollback' },
    'GET /v1/models/:version': { scope: 'read', url: `/v1/models/${version}`, foreign: notFound },
    'POST /v1/models/:version/promote': {
      scope: 'admin',
      url: `/v1/models/${version}/promote`,
      body: { force: true, reason: 'matrix' },
      foreign: notFound,
    },
    'GET /v1/jobs/:id': { scope: 'read', url: `/v1/jobs/${job}`, foreign: notFound },
    'POST /v1/experiments': {
      scope: 'admin',
      url: '/v1/experiments',
      body: { id: 'exp-new', kind: 'shadow', variants: [{ name: 'c', weight: 100, model_version: version }] },
    },
    'GET /v1/experiments': {
      scope: 'read',
      url: '/v1/experiments',
      foreign: (a) => {
        expect(a.status).toBe(200);
        expect(a.body.experiments.map((e: { id: string }) => e.id)).not.toContain(EXPERIMENT);
      },
    },
    'GET /v1/experiments/:id': { scope: 'read', url: `/v1/experiments/${EXPERIMENT}`, foreign: notFound },
    'POST /v1/experiments/:id/stop': {
      scope: 'admin',
      url: `/v1/experiments/${EXPERIMENT}/stop`,
      body: { reason: 'matrix' },
      foreign: notFound,
    },
    'GET /v1/experiments/:id/results': {
      scope: 'read',
      url: `/v1/experiments/${EXPERIMENT}/results`,
      foreign: notFound,
    },
    'POST /v1/feedback': {
      scope: 'ingest',
      url: '/v1/feedback',
      body: { request_id: 'r-matrix', item_id: ITEM, type: 'click' },
    },
    'POST /v1/keys': {
      scope: 'admin',
      url: '/v1/keys',
      body: { scopes: ['read'], name: 'made by the matrix' },
      foreign: (a) => {
        expect(a.status).toBe(201);
        expect(a.body.tenant).toBe('acme');
      },
    },
    'GET /v1/keys': {
      scope: 'admin',
      url: '/v1/keys',
      foreign: (a) => {
        expect(a.status).toBe(200);
        expect(new Set(a.body.keys.map((k: { tenant: string }) => k.tenant))).toEqual(new Set(['acme']));
      },
    },
    'DELETE /v1/keys/:id': { scope: 'admin', url: `/v1/keys/${victimKey}`, foreign: notFound },
  });

  /** Waits for a training job a call queued, on the caller's tenant, so no work runs on behind the checks. */
  const settle = async (credential: Credential, answer: Answer) => {
    if (answer.status !== 202 || typeof answer.body?.job_id !== 'string') return;
    const tenant = credential === 'other-tenant' ? 'acme' : 'default';
    const runtime = cairn.tenants.get(tenant)!;
    await waitForJob(runtime.jobs, answer.body.job_id);
    if (tenant === 'acme') {
      // The job is the other tenant's alone.
      expect((await call('GET', `/v1/jobs/${answer.body.job_id}`, tokens.admin)).status).toBe(404);
    }
  };

  /** Asserts what one call must have answered. */
  const expectCell = async (route: string, c: RouteCase, credential: Credential, answer: Answer) => {
    const label = `${route} with ${credential}`;
    const head = route.startsWith('HEAD ');
    expect(answer.status, label).toBeLessThan(500);
    if (c.scope === 'public') return;
    if (['none', 'malformed', 'unknown', 'revoked'].includes(credential)) {
      expect([label, answer.status], JSON.stringify(answer.body)).toEqual([label, 401]);
      expect(answer.headers['www-authenticate'], label).toMatch(/^Bearer /);
      if (!head) expect(answer.body.error.code, label).toBe('CAIRN_UNAUTHORIZED');
      return;
    }
    if (credential !== 'admin' && credential !== 'other-tenant' && credential !== c.scope) {
      expect([label, answer.status]).toEqual([label, 403]);
      if (!head) {
        expect(answer.body.error, label).toMatchObject({
          code: 'CAIRN_FORBIDDEN',
          details: { required_scope: c.scope },
        });
      }
      return;
    }
    expect([401, 403], `${label}: ${JSON.stringify(answer.body)}`).not.toContain(answer.status);
    if (credential !== 'other-tenant') return;
    if (!head) await c.foreign?.(answer);
    else if (c.foreign === notFound) expect(answer.status, label).toBe(404);
  };

  /** After the matrix: no answer given to the other tenant was logged in the default tenant's served log. */
  const expectServedApart = async (foreignIds: string[]) => {
    const served = (id: string, store: Embedded['store']) =>
      Promise.all([store.served.get(id), store.served.get(`${id}.0`)]).then((r) => r.some((x) => x));
    const acme = cairn.tenants.get('acme')!.store;
    // The served log is written behind the answers: wait until the other tenant's own log has them
    // (the three recommendation routes), then look for them in the default tenant's.
    for (;;) {
      const logged = await Promise.all(foreignIds.map((id) => served(id, acme)));
      if (logged.filter(Boolean).length >= 3) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const leaked = [];
    for (const id of foreignIds) if (await served(id, cairn.store)) leaked.push(id);
    expect(leaked).toEqual([]);
  };

  it('refuses every call without a valid key or the scope; the other tenant sees nothing', async () => {
    const table = cases();
    const routes = registeredRoutes(cairn.app);
    const expected = (route: string) => table[route.replace(/^HEAD /, 'GET ')];
    // A route the table does not know fails here: every new route needs its expectation.
    expect(routes.filter((r) => expected(r) === undefined)).toEqual([]);
    expect(Object.keys(table).filter((r) => !routes.includes(r))).toEqual([]);

    let cells = 0;
    const foreignIds: string[] = [];
    for (const route of routes) {
      const method = route.split(' ', 1)[0];
      const c = expected(route);
      const statuses = new Set<number>();
      // The other tenant's admin calls before the default admin, whose calls change the default tenant.
      for (const credential of CREDENTIALS) {
        const id = `matrix-${++cells}-${credential}`;
        const before = credential === 'other-tenant' ? await defaultState(cairn) : null;
        const answer = await call(method, c.url, tokens[credential], c.body, id);
        await settle(credential, answer);
        statuses.add(answer.status);
        await expectCell(route, c, credential, answer);
        if (before !== null) {
          foreignIds.push(id);
          expect(await defaultState(cairn), `${route} by the other tenant`).toEqual(before);
        }
      }
      // Credentials make no difference to a public route.
      if (c.scope === 'public') expect([...statuses], route).toHaveLength(1);
    }
    await expectServedApart(foreignIds);
    expect(cells).toBe(routes.length * CREDENTIALS.length);
    console.log(`auth matrix: ${routes.length} routes × ${CREDENTIALS.length} credentials = ${cells} calls`);
  }, 120_000);

  it('documents a bearer scheme and each operation’s scope in the OpenAPI document', async () => {
    const doc = (await call('GET', '/openapi.json', tokens.read)).body;
    expect(doc.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' });
    const table = cases();
    let documented = 0;
    for (const [path, operations] of Object.entries(doc.paths as Record<string, Record<string, Json>>)) {
      for (const [method, op] of Object.entries(operations)) {
        const route = `${method.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`;
        const scope = table[route]?.scope;
        expect(scope, route).toBeDefined();
        expect(op['x-cairn-scope'], route).toBe(scope);
        expect(op.security, route).toEqual(scope === 'public' ? [] : [{ bearerAuth: [] }]);
        documented++;
      }
    }
    // Every route but the hidden ones (the docs UI and the document itself) is an operation.
    const hidden = Object.values(table).filter((c) => c.url.startsWith('/docs') || c.url === '/openapi.json');
    expect(documented).toBe(Object.keys(table).length - hidden.length);
  });
});
