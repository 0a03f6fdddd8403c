/**
 * Two tenants on one deployment, through HTTP only, on the real SQLite and the real PostgreSQL of this
 * machine: what one tenant writes (users, items, events, models, experiments) is invisible to the other,
 * each tenant's data lives in its own namespace (its own SQLite file, its own PostgreSQL schema), and
 * /metrics shows a tenant its own registry only. Keys select the tenant; without a key the caller is on
 * the default tenant.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.ts';
import { cliContext } from '../../src/domain/context.ts';
import { createEmbedded, type Embedded } from '../../src/main/embedded.ts';
import { createLogger } from '../../src/monitoring/logger.ts';

const PG_URL = process.env.CAIRN_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A small shop per tenant: its own item ids, users who buy along category lines. */
function shopEvents(prefix: string, users: number, items: number) {
  const events = [];
  for (let u = 0; u < users; u++) {
    for (let j = 0; j < 12; j++) {
      const item = (u * 7 + j * (1 + (u % 3))) % items;
      events.push({
        event_id: `${prefix}-e-${u}-${j}`,
        user_id: `${prefix}-u${u}`,
        item_id: `${prefix}-i${item}`,
        type: j % 4 === 0 ? 'purchase' : 'view',
        timestamp: new Date(Date.now() - (20 - j) * 60_000).toISOString(),
      });
    }
  }
  return events;
}

for (const backend of ['sqlite', 'postgres'] as const) {
  describe(`two tenants on ${backend}`, () => {
    let cairn: Embedded;
    let dir: string;
    const schema = `cairn_tenants_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
    const tokens = { default: '', acme: '', acmeRead: '' };

    const call = async (
      token: string,
      method: 'GET' | 'POST' | 'PUT' | 'DELETE',
      url: string,
      body?: unknown,
    ) => {
      const res = await cairn.app.inject({
        method,
        url,
        headers: {
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          'content-type': 'application/json',
        },
        ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
      });
      return { status: res.statusCode, body: res.body ? res.json<Record<string, unknown>>() : {} };
    };

    const trainAndWait = async (token: string) => {
      const job = await call(token, 'POST', '/v1/models/train', { algorithm: 'pop' });
      expect(job.status).toBe(202);
      const id = String(job.body.job_id);
      for (;;) {
        const j = await call(token, 'GET', `/v1/jobs/${id}`);
        if (j.body.status === 'succeeded' || j.body.status === 'failed') return j.body;
        await new Promise((r) => setTimeout(r, 100));
      }
    };

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'cairn-tenants-'));
      const config = loadConfig({
        env: {},
        overrides: {
          dataDir: dir,
          tenants: ['acme'],
          store: backend === 'sqlite' ? { url: '' } : { url: PG_URL, schema },
          training: { threads: 1, algorithm: 'pop', minInteractions: 5 },
          rateLimit: { enabled: false },
        },
      });
      cairn = await createEmbedded(config, { logger: createLogger('silent'), snapshotEveryMs: 0 });
      const cli = cliContext();
      tokens.default = (await cairn.keys.create(cli, { scopes: ['admin'] })).token;
      tokens.acme = (await cairn.keys.create(cli, { scopes: ['admin'], tenant: 'acme' })).token;
      tokens.acmeRead = (await cairn.keys.create(cli, { scopes: ['read'], tenant: 'acme' })).token;
      for (const [token, prefix] of [
        [tokens.default, 'd'],
        [tokens.acme, 'a'],
      ] as const) {
        const items = Array.from({ length: 20 }, (_, i) => ({
          id: `${prefix}-i${i}`,
          categories: [`${prefix}-cat${i % 3}`],
        }));
        expect((await call(token, 'POST', '/v1/items', { items })).status).toBe(200);
        expect(
          (await call(token, 'PUT', `/v1/users/${prefix}-u0`, { attributes: { tier: prefix } })).status,
        ).toBe(200);
        const ingested = await call(token, 'POST', '/v1/events', { events: shopEvents(prefix, 30, 20) });
        expect(ingested.status).toBe(200);
      }
    }, 120_000);

    afterAll(async () => {
      await cairn?.close();
      await rm(dir, { recursive: true, force: true });
      if (backend === 'postgres') {
        const client = new pg.Client({ connectionString: PG_URL });
        await client.connect();
        await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
        await client.query(`DROP SCHEMA IF EXISTS ${schema}_t_acme CASCADE`);
        await client.end();
      }
    });

    it('keeps each tenant’s users and items invisible to the other', async () => {
      expect((await call(tokens.acme, 'GET', '/v1/users/a-u0')).status).toBe(200);
      expect((await call(tokens.acme, 'GET', '/v1/users/d-u0')).status).toBe(404);
      expect((await call(tokens.default, 'GET', '/v1/users/a-u0')).status).toBe(404);
      expect((await call(tokens.acme, 'GET', '/v1/items/d-i1')).status).toBe(404);
      expect((await call(tokens.acmeRead, 'GET', '/v1/items/a-i1')).status).toBe(200);
      // No key (auth disabled): the default tenant.
      expect((await call('', 'GET', '/v1/users/d-u0')).status).toBe(200);
      expect((await call('', 'GET', '/v1/users/a-u0')).status).toBe(404);
    });

    it('keeps each tenant’s events and popularity apart', async () => {
      const acme = cairn.tenants.get('acme')!;
      expect(await cairn.store.events.count()).toBe(360);
      expect(await acme.store.events.count()).toBe(360);
      const defaultIds = (await cairn.store.events.forUser('a-u0', 10)).length;
      expect(defaultIds).toBe(0);
      for (const [token, prefix] of [
        [tokens.default, 'd-'],
        [tokens.acme, 'a-'],
      ] as const) {
        const popular = await call(token, 'GET', '/v1/popular?k=20');
        const ids = (popular.body.items as { item_id: string }[]).map((i) => i.item_id);
        expect(ids.length).toBeGreaterThan(0);
        expect(
          ids.every((id) => id.startsWith(prefix)),
          ids.join(','),
        ).toBe(true);
      }
    });

    it('trains, lists and serves models per tenant', async () => {
      const done = await trainAndWait(tokens.acme);
      expect(done.status).toBe('succeeded');
      const acmeModels = (await call(tokens.acme, 'GET', '/v1/models')).body.models as unknown[];
      const defaultModels = (await call(tokens.default, 'GET', '/v1/models')).body.models as unknown[];
      expect(acmeModels.length).toBe(1);
      expect(defaultModels.length).toBe(0);
      const recs = await call(tokens.acme, 'GET', '/v1/users/a-u1/recommendations?k=5');
      expect(recs.status).toBe(200);
      const items = recs.body.items as { item_id: string }[];
      expect(items.length).toBeGreaterThan(0);
      expect(items.every((i) => i.item_id.startsWith('a-'))).toBe(true);
      // The default tenant has no model: a labelled fallback from its own popularity.
      const other = await call(tokens.default, 'GET', '/v1/users/d-u1/recommendations?k=5');
      expect(other.body.model_version).toBeNull();
      expect((other.body.items as { item_id: string }[]).every((i) => i.item_id.startsWith('d-'))).toBe(true);
    });

    it('keeps experiments per tenant', async () => {
      const created = await call(tokens.acme, 'POST', '/v1/experiments', {
        id: 'acme-ab',
        kind: 'ab',
        variants: [
          { name: 'control', weight: 1 },
          { name: 'pop', algorithm: 'pop', weight: 1 },
        ],
      });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      expect(((await call(tokens.acme, 'GET', '/v1/experiments')).body.experiments as unknown[]).length).toBe(
        1,
      );
      expect(
        ((await call(tokens.default, 'GET', '/v1/experiments')).body.experiments as unknown[]).length,
      ).toBe(0);
      expect((await call(tokens.default, 'GET', '/v1/experiments/acme-ab')).status).toBe(404);
    });

    it('serves each tenant its own metrics registry', async () => {
      const acmeModel = (
        (await call(tokens.acme, 'GET', '/v1/models')).body.models as { version: string }[]
      )[0];
      const own = await cairn.app.inject({
        url: '/metrics',
        headers: { authorization: `Bearer ${tokens.acme}` },
      });
      const theirs = await cairn.app.inject({
        url: '/metrics',
        headers: { authorization: `Bearer ${tokens.default}` },
      });
      expect(own.statusCode).toBe(200);
      expect(theirs.statusCode).toBe(200);
      expect(own.body).toContain(acmeModel.version);
      expect(theirs.body).not.toContain(acmeModel.version);
      // Process-wide series are the deployment's, shown to the default tenant only.
      expect(theirs.body).toContain('cairn_process_');
      expect(own.body).not.toContain('cairn_process_');
    });

    it('keeps each tenant’s data in its own namespace', async () => {
      if (backend === 'sqlite') {
        expect(existsSync(join(dir, 'cairn.db'))).toBe(true);
        expect(existsSync(join(dir, 'tenants', 'acme', 'cairn.db'))).toBe(true);
        return;
      }
      const client = new pg.Client({ connectionString: PG_URL });
      await client.connect();
      try {
        const count = async (s: string) =>
          Number((await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${s}.events`)).rows[0].n);
        expect(await count(schema)).toBe(360);
        expect(await count(`${schema}_t_acme`)).toBe(360);
        const leaked = await client.query(`SELECT 1 FROM ${schema}.events WHERE user_id LIKE 'a-%' LIMIT 1`);
        expect(leaked.rowCount).toBe(0);
      } finally {
        await client.end();
      }
    });
  });
}
