/**
 * The all-in-one service end to end, through HTTP (`app.inject`), against the real SQLite and the real
 * PostgreSQL of this machine: demo data in, a trained model, labelled recommendations out.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.ts';
import { seedDemo } from '../../src/main/demo.ts';
import { createEmbedded, type Embedded } from '../../src/main/embedded.ts';
import { createLogger } from '../../src/monitoring/logger.ts';

const PG_URL = process.env.CAIRN_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

interface Rec {
  request_id: string;
  user_id: string;
  model_version: string | null;
  source: string;
  fallback_reason: string | null;
  degraded: boolean;
  items: { item_id: string; score: number; reason: string }[];
}

for (const backend of ['sqlite', 'postgres'] as const) {
  describe(`embedded service on ${backend}`, () => {
    let cairn: Embedded;
    let dir: string;
    const schema = `cairn_e2e_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'cairn-e2e-'));
      const config = loadConfig({
        env: {},
        overrides: {
          dataDir: dir,
          store: backend === 'sqlite' ? { url: '' } : { url: PG_URL, schema },
          training: { threads: 1, algorithm: 'als' },
        },
      });
      cairn = await createEmbedded(config, { logger: createLogger('silent'), pollMs: 0 });
      const seeded = await seedDemo(cairn, { users: 300, items: 150, events: 15_000, seed: 7 });
      expect(seeded.seeded).toBe(true);
      expect(seeded.modelVersion).not.toBeNull();
    }, 180_000);

    afterAll(async () => {
      await cairn?.close();
      await rm(dir, { recursive: true, force: true });
      if (backend === 'postgres') {
        const client = new pg.Client({ connectionString: PG_URL });
        await client.connect();
        await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
        await client.end();
      }
    });

    const get = async (url: string) => {
      const res = await cairn.app.inject({ method: 'GET', url });
      return { status: res.statusCode, body: res.json() };
    };
    const post = async (url: string, payload: unknown) => {
      const res = await cairn.app.inject({ method: 'POST', url, payload: payload as object });
      return { status: res.statusCode, body: res.json() };
    };

    it('is ready, with a champion model', async () => {
      const { status, body } = await get('/health/ready');
      expect(status).toBe(200);
      expect(body.checks.model.detail).toMatch(/^serving /);
    });

    it('ingests idempotently: a repeated event_id never counts twice', async () => {
      const before = await cairn.store.events.count();
      const events = [
        { event_id: 'e2e-1', user_id: 'e2e-u', item_id: 'i-x', type: 'view', timestamp: Date.now() - 1000 },
        { event_id: 'e2e-2', user_id: 'e2e-u', item_id: 'i-y', type: 'click' },
      ];
      const first = await post('/v1/events', { events });
      expect(first.status).toBe(200);
      expect(first.body.accepted).toBe(2);
      const again = await post('/v1/events', { events });
      expect(again.body.accepted).toBe(0);
      expect(again.body.duplicates).toBe(2);
      const single = await post('/v1/events', events[0]);
      expect(single.status).toBe(202);
      expect(single.body.status).toBe('duplicate');
      expect(await cairn.store.events.count()).toBe(before + 2);
    });

    it('rejects bad input with stable codes and the offending field, storing nothing bad', async () => {
      const before = await cairn.store.events.count();
      const batch = await post('/v1/events', {
        events: [
          { user_id: 'e2e-v', item_id: 'i1', type: 'teleport' },
          { user_id: '', item_id: 'i1', type: 'view' },
          { user_id: 'e2e-v', item_id: 'i1', type: 'rating' },
          { event_id: 'e2e-ok', user_id: 'e2e-v', item_id: 'i1', type: 'view' },
        ],
      });
      expect(batch.status).toBe(200);
      const results = batch.body.results as { status: string; error?: { code: string; field: string } }[];
      expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected', 'accepted']);
      expect(results[0].error?.field).toBe('type');
      expect(results[1].error?.field).toBe('user_id');
      expect(results[2].error?.field).toBe('value');
      expect(await cairn.store.events.count()).toBe(before + 1);

      const single = await post('/v1/events', {
        user_id: 'x',
        item_id: 'y',
        type: 'view',
        timestamp: 'yesterday',
      });
      expect(single.status).toBe(400);
      expect(single.body.error.code).toMatch(/^CAIRN_/);
      const k = await get('/v1/users/u1/recommendations?k=0');
      expect(k.status).toBe(400);
      expect(k.body.error.code).toBe('CAIRN_VALIDATION');
      const badJson = await cairn.app.inject({
        method: 'POST',
        url: '/v1/events',
        payload: '{"user_id":',
        headers: { 'content-type': 'application/json' },
      });
      expect(badJson.statusCode).toBe(400);
      expect(await cairn.store.events.count()).toBe(before + 1);
    });

    it('gives a new user a labelled popular fallback', async () => {
      const { status, body } = await get('/v1/users/nobody-new/recommendations?k=5');
      expect(status).toBe(200);
      const r = body as Rec;
      expect(r.source).toBe('fallback');
      expect(r.fallback_reason).toBe('cold_start_user');
      expect(r.degraded).toBe(false);
      expect(r.items).toHaveLength(5);
      for (const it of r.items) expect(it.reason).toMatch(/Popular/);
    });

    it('personalizes for a user with history, excluding what they already saw', async () => {
      const user = 'u1';
      const seen = new Set((await cairn.store.events.forUser(user, 1000)).map((e) => e.itemId));
      expect(seen.size).toBeGreaterThan(0);
      const { status, body } = await get(`/v1/users/${user}/recommendations?k=10`);
      expect(status).toBe(200);
      const r = body as Rec;
      expect(r.source).toBe('personalized');
      expect(r.fallback_reason).toBeNull();
      expect(r.model_version).toBe(cairn.champion.get()?.version.version);
      expect(r.items.length).toBe(10);
      for (const it of r.items) {
        expect(seen.has(it.item_id)).toBe(false);
        expect(it.reason.length).toBeGreaterThan(0);
        expect(Number.isFinite(it.score)).toBe(true);
      }
      // Scores are ranked best first.
      for (let i = 1; i < r.items.length; i++)
        expect(r.items[i - 1].score).toBeGreaterThanOrEqual(r.items[i].score);
    });

    it('reacts at once to a new event: the item disappears from the next answer', async () => {
      const user = 'u2';
      const first = (await get(`/v1/users/${user}/recommendations?k=5`)).body as Rec;
      const top = first.items[0].item_id;
      await post('/v1/events', { user_id: user, item_id: top, type: 'purchase' });
      const next = (await get(`/v1/users/${user}/recommendations?k=5`)).body as Rec;
      expect(next.items.map((i) => i.item_id)).not.toContain(top);
    });

    it('never recommends an unavailable item', async () => {
      const user = 'u3';
      const first = (await get(`/v1/users/${user}/recommendations?k=10`)).body as Rec;
      const victim = first.items[0].item_id;
      const put = await cairn.app.inject({
        method: 'PUT',
        url: `/v1/items/${victim}`,
        payload: { available: false },
      });
      expect(put.statusCode).toBe(200);
      for (const u of ['u3', 'u4', 'u5', 'nobody-new']) {
        const r = (await get(`/v1/users/${u}/recommendations?k=50`)).body as Rec;
        expect(r.items.map((i) => i.item_id)).not.toContain(victim);
      }
      const pop = await get('/v1/popular?k=50');
      expect((pop.body.items as { item_id: string }[]).map((i) => i.item_id)).not.toContain(victim);
    });

    it('never personalizes for an opted-out user', async () => {
      const user = 'u6';
      const before = (await get(`/v1/users/${user}/recommendations`)).body as Rec;
      expect(before.source).toBe('personalized');
      const put = await cairn.app.inject({
        method: 'PUT',
        url: `/v1/users/${user}`,
        payload: { opt_out: true },
      });
      expect(put.statusCode).toBe(200);
      const after = (await get(`/v1/users/${user}/recommendations`)).body as Rec;
      expect(after.source).toBe('fallback');
      expect(after.fallback_reason).toBe('opt_out');
      const similar = await get(`/v1/items/${before.items[0].item_id}/similar?k=5`);
      expect(similar.status).toBe(200);
    });

    it('erases a user everywhere', async () => {
      const user = 'u7';
      expect((await cairn.store.events.forUser(user, 10)).length).toBeGreaterThan(0);
      const del = await cairn.app.inject({ method: 'DELETE', url: `/v1/users/${user}` });
      expect(del.statusCode).toBe(204);
      expect(await cairn.store.events.forUser(user, 10)).toEqual([]);
      expect((await get(`/v1/users/${user}`)).status).toBe(404);
      const r = (await get(`/v1/users/${user}/recommendations`)).body as Rec;
      expect(r.source).toBe('fallback');
    });

    it('trains through the API as a job whose progress is reported', async () => {
      const started = await post('/v1/models/train', { algorithm: 'itemknn' });
      expect(started.status).toBe(202);
      const id = started.body.job_id as string;
      await cairn.queue.onIdle();
      const job = await get(`/v1/jobs/${id}`);
      expect(job.body.status).toBe('succeeded');
      expect(job.body.progress).toBe(1);
      const models = await get('/v1/models');
      expect(models.body.models.length).toBeGreaterThanOrEqual(2);
      expect((await post('/v1/models/train', { algorithm: 'nope' })).status).toBe(400);
    });

    it('exposes Prometheus metrics', async () => {
      const res = await cairn.app.inject({ method: 'GET', url: '/metrics' });
      expect(res.statusCode).toBe(200);
      expect(res.body).toMatch(
        /cairn_http_request_duration_seconds_bucket\{[^}]*route="\/v1\/users\/:id\/recommendations"/,
      );
      expect(res.body).toMatch(/cairn_events_ingested_total\{[^}]*status="accepted"/);
      expect(res.body).toMatch(/cairn_model_info\{version="[^"]+",algorithm="[a-z]+"\} 1/);
      expect(res.body).toMatch(/cairn_model_age_seconds \d/);
    });
  });
}
