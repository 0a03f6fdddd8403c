/**
 * A PostgreSQL outage under load, with real processes: one `cairn serve --role api` and one
 * `--role worker` (helpers/processes.ts) on a PRIVATE PostgreSQL cluster (helpers/pg-cluster.ts; the
 * machine's own server is never stopped), the machine's Redis (private key prefix) and NATS JetStream
 * (private stream prefix).
 *
 * While a client keeps POSTing event batches and another keeps asking for recommendations, PostgreSQL is
 * stopped for 15 s and started again. What DESIGN.md §2 promises, checked end to end:
 * - ingestion keeps acknowledging (an event is acknowledged once durable in JetStream);
 * - recommendations keep answering 200 from the champion and online state held outside PostgreSQL;
 * - once PostgreSQL is back the store of record holds every acknowledged event exactly once — including
 *   batches the client re-sent during the outage, both within JetStream's duplicate window (the log
 *   itself answers `duplicate`) and after it (the log takes them again; the store writer must dedupe).
 *
 * An unreachable Redis or NATS (or missing PostgreSQL tools) fails the file; nothing is skipped.
 * Everything created is removed afterwards, even on failure: processes, cluster, keys, streams.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import type { EventsBatchWire, RecommendationWire } from '../../src/api/schemas.ts';
import { generateDemoData } from '../../src/ingest/demo-data.ts';
import { createPgCluster, type PgCluster } from './helpers/pg-cluster.ts';
import { assertServicesUp, http, pollUntil, TestDeployment, type CairnProcess } from './helpers/processes.ts';

const OUTAGE_MS = 15_000;
/**
 * JetStream's duplicate window for this deployment, short on purpose: re-sends older than it reach the
 * log a second time, so exactly-once in the store depends on the store writer's own dedupe, not only on
 * JetStream's.
 */
const DUPLICATE_WINDOW_S = 5;
/** Users and items of the seeded shop (the champion knows them) and of the load. */
const USERS = 300;
const ITEMS = 100;
const BATCH = 40;

let cluster: PgCluster | undefined;
let deployment: TestDeployment | undefined;
let api: CairnProcess | undefined;
let worker: CairnProcess | undefined;

type WireEvent = { event_id: string; user_id: string; item_id: string; type: string; timestamp: number };
type Phase = 'before' | 'outage' | 'after';

/** One query on the private cluster, in the deployment's schema (`$schema` in `sql`). */
async function query<R extends pg.QueryResultRow>(sql: string): Promise<R[]> {
  const client = new pg.Client({ connectionString: cluster!.url, connectionTimeoutMillis: 3000 });
  await client.connect();
  try {
    return (await client.query<R>(sql.replaceAll('$schema', `"${deployment!.schema}"`))).rows;
  } finally {
    await client.end();
  }
}

async function storedCount(): Promise<number> {
  const [{ n }] = await query<{ n: number }>('SELECT count(*)::int AS n FROM $schema.events');
  return n;
}

beforeAll(async () => {
  // Fail loudly (not skip) when a shared server is not there; PostgreSQL is our own cluster.
  await assertServicesUp(['redis', 'nats']);
  cluster = await createPgCluster('outage');
  deployment = await TestDeployment.create({ name: 'outage', redis: true, nats: true });
  const env = {
    CAIRN_STORE_URL: cluster.url,
    CAIRN_NATS_DUPLICATE_WINDOW_SECONDS: String(DUPLICATE_WINDOW_S),
  };
  // Both at once, as a deployment starts: migrations and stream creation are safe to race.
  const [w, a] = await Promise.allSettled([
    deployment.serve('worker', 'worker', env),
    deployment.serve('api', 'api', env),
  ]);
  if (w.status === 'fulfilled') worker = w.value;
  if (a.status === 'fulfilled') api = a.value;
  for (const r of [w, a]) if (r.status === 'rejected') throw r.reason;
}, 180_000);

afterAll(async () => {
  // Processes first (they hold connections to the cluster), then the cluster, even if that failed.
  try {
    await deployment?.cleanup();
  } finally {
    await cluster?.drop();
  }
}, 60_000);

describe('PostgreSQL outage (roles api + worker on PostgreSQL, Redis, NATS JetStream)', () => {
  it('keeps acknowledging events and answering recommendations, then stores every acknowledged event exactly once', async () => {
    onTestFailed(() => console.error(deployment!.logs(80)));
    const apiUrl = api!.url;
    const run = randomBytes(4).toString('hex'); // event ids unique to this run
    const acked = new Set<string>();

    // --- A trained champion, so serving has something to keep serving through the outage. ---
    const demo = generateDemoData({ users: USERS, items: ITEMS, events: 6000, seed: 11 });
    const shift = Date.now() - 60_000 - demo.endTime; // the demo window ends a minute ago
    const items = await http('POST', `${apiUrl}/v1/items`, {
      items: demo.items.map((it) => ({ ...it, created_at: Math.min(it.created_at + shift, Date.now()) })),
    });
    expect(items.status, JSON.stringify(items.body)).toBe(200);
    const seed = [...demo.events()].map((e) => ({ ...e, timestamp: e.timestamp + shift }));
    for (let i = 0; i < seed.length; i += 2000) {
      const res = await http<EventsBatchWire>('POST', `${apiUrl}/v1/events`, {
        events: seed.slice(i, i + 2000),
      });
      expect(res.status).toBe(200);
      expect(res.body.accepted).toBe(Math.min(2000, seed.length - i));
      for (const r of res.body.results) acked.add(r.event_id!);
    }
    // Training reads the store of record: wait for the worker's store writer to land the seed.
    await pollUntil('the seed events in PostgreSQL', async () => (await storedCount()) >= acked.size, {
      timeoutMs: 30_000,
      intervalMs: 100,
    });
    const train = await http<{ job_id: string }>('POST', `${apiUrl}/v1/models/train`, {});
    expect(train.status).toBe(202);
    const job = await pollUntil(
      'the training job to finish',
      async () => {
        const { body } = await http<{ status: string; error?: string }>(
          'GET',
          `${apiUrl}/v1/jobs/${train.body.job_id}`,
        );
        return body.status === 'succeeded' || body.status === 'failed' ? body : null;
      },
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    expect(job, JSON.stringify(job)).toMatchObject({ status: 'succeeded' });
    // The promotion reaches the API replica through the change log.
    await pollUntil(
      'the champion served by the API',
      async () =>
        (await http<RecommendationWire>('GET', `${apiUrl}/v1/users/u1/recommendations?k=10`)).body
          .model_version,
      { timeoutMs: 20_000, intervalMs: 100 },
    );

    // --- Load: a client POSTing batches of fresh events, another asking for recommendations. ---
    let phase: Phase = 'before';
    let loading = true;
    const batches: { events: WireEvent[]; phase: Phase }[] = [];
    const ingestFailures: string[] = [];
    const ingested: Record<Phase, number> = { before: 0, outage: 0, after: 0 };
    let b = 0;
    const makeBatch = (): WireEvent[] => {
      const n = b++;
      const now = Date.now();
      return Array.from({ length: BATCH }, (_, i) => ({
        event_id: `${run}-${n}-${i}`,
        user_id: `u${1 + ((n * 7 + i) % USERS)}`,
        item_id: `i${1 + ((n * 13 + i * 7) % ITEMS)}`,
        type: ['view', 'click', 'add_to_cart', 'purchase'][i % 4],
        timestamp: now - 1000,
      }));
    };
    /** Posts fresh events; acknowledged means 200 with every event `accepted`. */
    const postFresh = async (events: WireEvent[], at: Phase): Promise<boolean> => {
      try {
        const res = await http<EventsBatchWire>('POST', `${apiUrl}/v1/events`, { events }, 10_000);
        if (res.status !== 200 || res.body.accepted !== events.length) {
          ingestFailures.push(`${at}: ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`);
          return false;
        }
        for (const e of events) acked.add(e.event_id);
        batches.push({ events, phase: at });
        ingested[at]++;
        return true;
      } catch (err) {
        ingestFailures.push(`${at}: ${(err as Error).message}`);
        return false;
      }
    };
    const ingestLoop = (async () => {
      while (loading) {
        await postFresh(makeBatch(), phase);
        await sleep(20);
      }
    })();

    const answered: Record<Phase, number> = { before: 0, outage: 0, after: 0 };
    /** Answers from the champion: it lives in the replica's memory, so the outage must not matter. */
    const personalized: Record<Phase, number> = { before: 0, outage: 0, after: 0 };
    const recommendFailures: string[] = [];
    const sources = new Map<string, number>();
    const recommendLoop = (async () => {
      for (let n = 0; loading; n++) {
        const at = phase;
        // Known users (champion, history in Redis) and users the model has never seen (fallback chain).
        const user = n % 3 === 2 ? `new-${run}-${n}` : `u${1 + (n % USERS)}`;
        try {
          const { status, body } = await http<RecommendationWire>(
            'GET',
            `${apiUrl}/v1/users/${user}/recommendations?k=10`,
            undefined,
            10_000,
          );
          if (status !== 200 || body.items.length === 0) {
            recommendFailures.push(`${at}: ${status} ${JSON.stringify(body).slice(0, 300)}`);
          } else {
            answered[at]++;
            if (body.source === 'personalized') personalized[at]++;
            const key = `${at}:${body.source}${body.degraded ? ' (degraded)' : ''}`;
            sources.set(key, (sources.get(key) ?? 0) + 1);
          }
        } catch (err) {
          recommendFailures.push(`${at}: ${(err as Error).message}`);
        }
        await sleep(10);
      }
    })();

    try {
      await sleep(3000);

      // --- The outage. ---
      phase = 'outage';
      const outageStart = Date.now();
      await cluster!.stop();
      await expect(query('SELECT 1')).rejects.toThrow();
      const beforeOutage = batches.filter((x) => x.phase === 'before');
      expect(beforeOutage.length).toBeGreaterThan(0);

      // Both processes see it and say so, and neither leaves rotation over it (store is non-critical).
      await sleep(2000);
      for (const proc of [api!, worker!]) {
        const ready = await http<{ checks: Record<string, { ok: boolean }> }>(
          'GET',
          `${proc.url}/health/ready`,
        );
        expect(ready.status, `${proc.name} readiness during the outage`).toBe(200);
        expect(ready.body.checks.store?.ok, `${proc.name} store check during the outage`).toBe(false);
      }

      // A retry within the duplicate window: JetStream itself recognises every event.
      const fresh = makeBatch();
      expect(await postFresh(fresh, 'outage')).toBe(true);
      const retry = await http<EventsBatchWire>('POST', `${apiUrl}/v1/events`, { events: fresh });
      expect(retry.status).toBe(200);
      expect(retry.body.duplicates).toBe(fresh.length);

      // Retries of batches acknowledged before the outage, now older than two duplicate windows: the
      // log takes them again, so only the store writer's dedupe keeps them single.
      await sleep(Math.max(0, outageStart + 2 * DUPLICATE_WINDOW_S * 1000 + 1000 - Date.now()));
      let reaccepted = 0;
      for (const old of beforeOutage.slice(0, 5)) {
        const res = await http<EventsBatchWire>('POST', `${apiUrl}/v1/events`, { events: old.events });
        expect(res.status).toBe(200);
        expect(res.body.rejected).toBe(0);
        reaccepted += res.body.accepted;
      }
      expect(
        reaccepted,
        'with a short duplicate window, old re-sends must reach the log again (else the store writer dedupe is untested)',
      ).toBeGreaterThan(0);

      await sleep(Math.max(0, outageStart + OUTAGE_MS - Date.now()));
      phase = 'after';
      await cluster!.start();
      await sleep(2000);
    } finally {
      loading = false;
      await Promise.all([ingestLoop, recommendLoop]);
    }

    // Neither process went down with the database (a crash would show in its output).
    for (const proc of [api!, worker!])
      expect(proc.running, `${proc.name} exited:\n${proc.tail(40)}`).toBe(true);
    // Through the whole run, every request was answered.
    expect(ingestFailures).toEqual([]);
    expect(recommendFailures).toEqual([]);
    expect(ingested.outage, 'batches acknowledged during the outage').toBeGreaterThanOrEqual(10);
    expect(
      answered.outage,
      `recommendations answered during the outage ${JSON.stringify([...sources])}`,
    ).toBeGreaterThanOrEqual(50);
    expect(personalized.outage, 'champion answers during the outage').toBeGreaterThan(0);

    // --- Once PostgreSQL is back, the store of record catches up with the log. ---
    let count = 0;
    await pollUntil(
      'every acknowledged event in PostgreSQL',
      async () => (count = await storedCount()) >= acked.size,
      {
        timeoutMs: 45_000,
        intervalMs: 200,
        describe: () => `${count} of ${acked.size} stored`,
      },
    );
    const repeated = await query<{ event_id: string; n: number }>(
      'SELECT event_id, count(*)::int AS n FROM $schema.events GROUP BY event_id HAVING count(*) > 1',
    );
    expect(repeated).toEqual([]);
    const stored = await query<{ event_id: string }>('SELECT event_id FROM $schema.events');
    const storedIds = new Set(stored.map((r) => r.event_id));
    expect(stored.length).toBe(storedIds.size);
    expect([...acked].filter((id) => !storedIds.has(id))).toEqual([]);
    expect([...storedIds].filter((id) => !acked.has(id))).toEqual([]);
    expect(storedIds.size).toBe(acked.size);
  }, 150_000);
});
