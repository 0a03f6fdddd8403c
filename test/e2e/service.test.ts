/**
 * The all-in-one service end to end, through HTTP (`app.inject`), against the real SQLite and the real
 * PostgreSQL of this machine: demo data in, a trained model, labelled recommendations out; then what the
 * change-feed design promises on one process: one request id everywhere, an exact GDPR erase of
 * popularity, and a restart that resumes the online state from its snapshot instead of replaying the logs.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type Config } from '../../src/config/load.ts';
import { seedDemo, waitForJob } from '../../src/main/demo.ts';
import { createEmbedded, type Embedded } from '../../src/main/embedded.ts';
import { createLogger, type Logger } from '../../src/monitoring/logger.ts';

const PG_URL = process.env.CAIRN_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A logger keeping its JSON lines, parsed, in `lines`. */
function capturingLogger(lines: Record<string, unknown>[]): Logger {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n'))
        if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return createLogger('info', { destination: sink });
}

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
    let config: Readonly<Config>;
    let dir: string;
    const schema = `cairn_e2e_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'cairn-e2e-'));
      config = loadConfig({
        env: {},
        overrides: {
          dataDir: dir,
          store: backend === 'sqlite' ? { url: '' } : { url: PG_URL, schema },
          training: { threads: 1, algorithm: 'als' },
        },
      });
      // Snapshots only on close: the restart test relies on the one written by close().
      cairn = await createEmbedded(config, { logger: createLogger('silent'), snapshotEveryMs: 0 });
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

    it("answers with one request id: the x-request-id header and the body's request_id", async () => {
      const traced = await cairn.app.inject({
        method: 'GET',
        url: '/v1/users/u1/recommendations?k=3',
        headers: { 'x-request-id': 'e2e-trace-1' },
      });
      expect(traced.statusCode).toBe(200);
      expect(traced.headers['x-request-id']).toBe('e2e-trace-1');
      expect(traced.json<Rec>().request_id).toBe('e2e-trace-1');

      // Without one, the service makes an id and still uses the same one in both places, per request.
      const answers = await Promise.all(
        [
          '/v1/users/u1/recommendations?k=3',
          '/v1/popular?k=3',
          '/v1/users/nobody-new/recommendations?k=3',
        ].map((url) => cairn.app.inject({ method: 'GET', url })),
      );
      const ids = answers.map((res) => {
        expect(res.statusCode).toBe(200);
        const header = res.headers['x-request-id'];
        expect(typeof header).toBe('string');
        expect(res.json<{ request_id: string }>().request_id).toBe(header);
        return header;
      });
      expect(new Set(ids).size).toBe(ids.length);
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
      const del = await cairn.app.inject({
        method: 'DELETE',
        url: `/v1/users/${user}`,
        headers: { 'content-type': 'application/json' },
      });
      expect(del.statusCode).toBe(204);
      expect(await cairn.store.events.forUser(user, 10)).toEqual([]);
      expect((await get(`/v1/users/${user}`)).status).toBe(404);
      const r = (await get(`/v1/users/${user}/recommendations`)).body as Rec;
      expect(r.source).toBe('fallback');
    });

    it("erases exactly the erased user's popularity, at once and without replaying the logs", async () => {
      const solo = 'e2e-gdpr-solo';
      const shared = 'i1';
      const at = Date.now(); // one reference time: scores compared at it do not decay in between
      const put = await cairn.app.inject({
        method: 'PUT',
        url: `/v1/items/${solo}`,
        payload: { categories: ['e2e-gdpr'], available: true },
      });
      expect(put.statusCode).toBe(200);
      const [sharedBefore] = await cairn.online.popularity([shared], at);
      expect(sharedBefore).toBeGreaterThan(0); // the demo's users made it popular
      const countBefore = await cairn.online.popularCount();

      const ingested = await post('/v1/events', {
        events: [
          { event_id: 'e2e-gdpr-1', user_id: 'e2e-gdpr-u', item_id: solo, type: 'purchase' },
          { event_id: 'e2e-gdpr-2', user_id: 'e2e-gdpr-u', item_id: solo, type: 'view' },
          { event_id: 'e2e-gdpr-3', user_id: 'e2e-gdpr-u', item_id: shared, type: 'add_to_cart' },
          { event_id: 'e2e-gdpr-4', user_id: 'e2e-gdpr-u', item_id: shared, type: 'dislike' },
        ],
      });
      expect(ingested.body.accepted).toBe(4);
      const [soloScore, sharedWith] = await cairn.online.popularity([solo, shared], at);
      expect(soloScore).toBeGreaterThan(0);
      expect(sharedWith).toBeGreaterThan(sharedBefore);
      expect(await cairn.online.popularCount()).toBe(countBefore + 1);
      const listed = await get('/v1/popular?k=200');
      expect((listed.body.items as { item_id: string }[]).map((i) => i.item_id)).toContain(solo);
      const inCategory = await get('/v1/popular?k=5&category=e2e-gdpr');
      expect((inCategory.body.items as { item_id: string }[]).map((i) => i.item_id)).toEqual([solo]);
      const marks = await cairn.online.watermarks();

      const del = await cairn.app.inject({
        method: 'DELETE',
        url: '/v1/users/e2e-gdpr-u',
        headers: { 'content-type': 'application/json' },
      });
      expect(del.statusCode).toBe(204);
      // The erase reached the online state before the DELETE answered (read-your-writes) ...
      const [soloAfter, sharedAfter] = await cairn.online.popularity([solo, shared], at);
      expect(soloAfter).toBe(0);
      expect(await cairn.online.popularCount()).toBe(countBefore);
      expect(Math.abs(sharedAfter - sharedBefore)).toBeLessThanOrEqual(1e-9 * sharedBefore);
      // ... as one change-log record subtracting the user's events: the event log was not replayed.
      const after = await cairn.online.watermarks();
      expect(after.events).toBe(marks.events);
      expect(after.changes).toBe(marks.changes + 1);
      expect(await cairn.online.recentEvents('e2e-gdpr-u', 10)).toEqual([]);

      // And the answers show it at once: an item nobody else touched is no longer popular.
      const popular = await get('/v1/popular?k=200');
      expect((popular.body.items as { item_id: string }[]).map((i) => i.item_id)).not.toContain(solo);
      const emptied = await get('/v1/popular?k=5&category=e2e-gdpr');
      expect(emptied.status).toBe(200);
      expect(emptied.body.items).toEqual([]);
    });

    it('trains through the API as a job whose progress is reported', async () => {
      const started = await post('/v1/models/train', { algorithm: 'itemknn' });
      expect(started.status).toBe(202);
      const id = started.body.job_id as string;
      const done = await waitForJob(cairn.jobs, id);
      expect(done.status).toBe('succeeded');
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

    // Last: it replaces `cairn` with a new process on the same data.
    it('resumes the online state from its snapshot after a restart, without replaying the logs', async () => {
      const user = 'u8';
      const first = (await get(`/v1/users/${user}/recommendations?k=5`)).body as Rec;
      expect(first.source).toBe('personalized');
      const bought = first.items[0].item_id;
      // Newer than the model: only the online history can keep it out of the next answers.
      const boughtNow = await post('/v1/events', { user_id: user, item_id: bought, type: 'purchase' });
      expect(boughtNow.body.status).toBe('accepted');
      // Everything appended so far is applied, so the snapshot close() writes is the whole state.
      await cairn.projector.eventsCaughtUp(await cairn.eventLog.head());
      await cairn.projector.changesCaughtUp(await cairn.changeLog.head());
      const marks = await cairn.online.watermarks();
      expect(marks).toEqual({ events: await cairn.eventLog.head(), changes: await cairn.changeLog.head() });
      const popularBefore = (await get('/v1/popular?k=20')).body.items as {
        item_id: string;
        score: number;
      }[];
      // A promotion reaches serving through the change log (a moment after the job that made it ends):
      // wait until this process serves the registry's champion.
      const champion = (await cairn.registry.champion())?.version;
      expect(champion).toBeDefined();
      for (let i = 0; i < 200 && cairn.champion.get()?.version.version !== champion; i++)
        await new Promise((r) => setTimeout(r, 25));
      const version = cairn.champion.get()?.version.version;
      expect(version).toBe(champion);

      await cairn.close();
      const lines: Record<string, unknown>[] = [];
      cairn = await createEmbedded(config, { logger: capturingLogger(lines), snapshotEveryMs: 0 });

      // The state came back from the snapshot at the previous process's watermarks: nothing was replayed.
      expect(await cairn.online.watermarks()).toEqual(marks);
      const restored = lines.find((l) => l.msg === 'online state restored from its snapshot');
      expect(restored?.watermarks).toEqual(marks);
      expect(lines.some((l) => typeof l.msg === 'string' && /rebuild/i.test(l.msg))).toBe(false);

      expect((await get('/health/ready')).status).toBe(200);
      const popularAfter = (await get('/v1/popular?k=20')).body.items as { item_id: string; score: number }[];
      expect(popularAfter.map((i) => i.item_id)).toEqual(popularBefore.map((i) => i.item_id));
      // Same sums, read a few seconds later under a 7-day half-life.
      for (let i = 0; i < popularAfter.length; i++)
        expect(Math.abs(popularAfter[i].score - popularBefore[i].score)).toBeLessThan(
          1e-3 * popularBefore[i].score,
        );

      const seen = new Set((await cairn.store.events.forUser(user, 1000)).map((e) => e.itemId));
      expect(seen.has(bought)).toBe(true);
      const next = (await get(`/v1/users/${user}/recommendations?k=10`)).body as Rec;
      expect(next.source).toBe('personalized');
      expect(next.model_version).toBe(version);
      expect(next.items).toHaveLength(10);
      for (const it of next.items) expect(seen.has(it.item_id)).toBe(false);
    });
  });
}
