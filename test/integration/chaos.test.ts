/**
 * Chaos under load (issue #9): the production architecture — `cairn serve --role api` and `--role worker`
 * as real processes — on a PRIVATE PostgreSQL cluster, a PRIVATE Redis and a PRIVATE NATS JetStream
 * (helpers/pg-cluster.ts, helpers/private-servers.ts; the machine's own servers are never touched).
 *
 * After seeding a shop and training a champion, each backend in turn is killed with SIGKILL for
 * OUTAGE_MS while a steady load runs (recommendation GETs and event POSTs at fixed rates, helpers/
 * chaos-load.ts), then started again on the same port and data. For every phase:
 * - 100 % of recommendation requests get a valid answer: a 200 with a well-formed body and items; a
 *   labelled fallback (`fallback_reason`, `degraded: true`) is fine;
 * - event POSTs are either acknowledged (200) or clear refusals (5xx with a CAIRN_* code), never a
 *   timeout or an unlabelled error; refusals only while the backend is down;
 * - the service recovers by itself: both processes ready again, POSTs acknowledged, answers no longer
 *   degraded — and the refused batches, re-sent as a client would, are acknowledged then;
 * - no acknowledged event is lost and none is stored twice: the store of record holds exactly the
 *   acknowledged events once every phase is over.
 * What readiness said during the outage is recorded and checked, and everything is printed per phase.
 *
 * Everything is removed afterwards, even on failure: processes, the cluster, the servers and their data.
 */
import { randomBytes } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect as connectNats } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, onTestFailed, onTestFinished } from 'vitest';
import type { RecommendationWire } from '../../src/api/schemas.ts';
import { generateDemoData } from '../../src/ingest/demo-data.ts';
import { ChaosLoad, type Phase, type PostRecord } from './helpers/chaos-load.ts';
import { createPgCluster, type PgCluster } from './helpers/pg-cluster.ts';
import { killPostgres, PrivateServer } from './helpers/private-servers.ts';
import { http, pollUntil, sleep, TestDeployment, type CairnProcess } from './helpers/processes.ts';
import { loadShop, type Shop } from './helpers/shop.ts';

const OUTAGE_MS = 10_000;
/** Load before the kill, and after recovery. */
const STEADY_MS = 3000;
const USERS = 300;
const ITEMS = 100;
const LOAD = { getsPerSecond: 50, postsPerSecond: 20, eventsPerPost: 5 };

let cluster: PgCluster | undefined;
let redis: PrivateServer | undefined;
let nats: PrivateServer | undefined;
let deployment: TestDeployment | undefined;
let api: CairnProcess | undefined;
let worker: CairnProcess | undefined;
const RUN = randomBytes(4).toString('hex');
const REDIS_PREFIX = `chaos:${RUN}:`;
const NATS_PREFIX = `CHAOS_${RUN}`;
/** Every event id acknowledged by the API, and every one ever sent, over all phases. */
const acked = new Set<string>();
const sent = new Set<string>();

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

/**
 * How far the worker's projector has applied the event log: the online state's event watermark in
 * Redis, and the head of the event stream in NATS.
 */
async function projection(): Promise<{ applied: number; head: number }> {
  const client = new Redis(redis!.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  const nc = await connectNats({ servers: nats!.url, timeout: 3000, maxReconnectAttempts: 0 });
  try {
    await client.connect();
    const applied = Number((await client.hget(`${REDIS_PREFIX}online:wm`, 'events')) ?? 0);
    const jsm = await jetstreamManager(nc, { timeout: 3000 });
    const head = (await jsm.streams.info(`${NATS_PREFIX}_EVENTS`)).state.last_seq;
    return { applied, head };
  } finally {
    client.disconnect();
    await nc.close();
  }
}

beforeAll(async () => {
  cluster = await createPgCluster('chaos');
  redis = await PrivateServer.start('redis');
  nats = await PrivateServer.start('nats');
  deployment = await TestDeployment.create({ name: 'chaos', redis: false, nats: false });
  const env = {
    CAIRN_STORE_URL: cluster.url,
    CAIRN_REDIS_URL: redis.url,
    CAIRN_REDIS_KEY_PREFIX: REDIS_PREFIX,
    CAIRN_NATS_URL: nats.url,
    CAIRN_NATS_STREAM_PREFIX: NATS_PREFIX,
  };
  const [w, a] = await Promise.allSettled([
    deployment.serve('worker', 'worker', env),
    deployment.serve('api', 'api', env),
  ]);
  if (w.status === 'fulfilled') worker = w.value;
  if (a.status === 'fulfilled') api = a.value;
  for (const r of [w, a]) if (r.status === 'rejected') throw r.reason;
}, 120_000);

afterAll(async () => {
  // Processes first (they hold connections to the servers), then every server, each even if one fails.
  const steps = [
    () => deployment?.cleanup(),
    () => cluster?.drop(),
    () => redis?.destroy(),
    () => nats?.destroy(),
  ];
  const failures: unknown[] = [];
  for (const step of steps) await step()?.catch((err: unknown) => failures.push(err));
  if (failures.length > 0) throw new AggregateError(failures, 'chaos test cleanup failed');
}, 60_000);

/** Seeds a shop through the API, waits for the store of record to hold it, trains and serves a champion. */
async function seedAndTrain(apiUrl: string): Promise<void> {
  const demo = generateDemoData({
    users: USERS,
    items: ITEMS,
    events: 6000,
    seed: 17,
    referenceTime: Date.now() - 60_000,
  });
  // The generator's wire format is what `cairn demo-data` writes, i.e. a Shop.
  const shop: Shop = {
    dir: '',
    items: demo.items.map((it) => ({ ...it })),
    events: [...demo.events()].map((e) => ({ ...e })),
  };
  const events = shop.events;
  await loadShop(apiUrl, shop, 2000);
  await pollUntil(
    'the seed events in PostgreSQL',
    async () =>
      (await query<{ n: number }>('SELECT count(*)::int AS n FROM $schema.events'))[0].n >= events.length,
    { timeoutMs: 30_000, intervalMs: 100 },
  );
  const train = await http<{ job_id: string }>('POST', `${apiUrl}/v1/models/train`, {});
  expect(train.status).toBe(202);
  const job = await pollUntil(
    'the training job to finish',
    async () => {
      const { body } = await http<{ status: string }>('GET', `${apiUrl}/v1/jobs/${train.body.job_id}`);
      return body.status === 'succeeded' || body.status === 'failed' ? body : null;
    },
    { timeoutMs: 60_000, intervalMs: 100 },
  );
  expect(job, JSON.stringify(job)).toMatchObject({ status: 'succeeded' });
  await pollUntil(
    'the champion served by the API',
    async () =>
      (await http<RecommendationWire>('GET', `${apiUrl}/v1/users/u1/recommendations?k=10`)).body
        .model_version,
    { timeoutMs: 20_000, intervalMs: 100 },
  );
}

interface Readiness {
  at: number;
  phase: Phase;
  /** Per process: HTTP status and the checks that are not ok. */
  api: string;
  worker: string;
  healthy: boolean;
}

/** What `/health/ready` of one process says: `200`, `503 [store,…]`, or a transport error. */
async function readiness(proc: CairnProcess): Promise<{ text: string; healthy: boolean }> {
  try {
    const { status, body } = await http<{ checks?: Record<string, { ok: boolean; status?: string }> }>(
      'GET',
      `${proc.url}/health/ready`,
      undefined,
      5000,
    );
    const failing = Object.entries(body.checks ?? {})
      .filter(([, c]) => !c.ok || (c.status !== undefined && c.status !== 'ok'))
      .map(([name, c]) => (c.ok ? `${name}:${c.status}` : name));
    const text = failing.length > 0 ? `${status} [${failing.join(',')}]` : String(status);
    return { text, healthy: status === 200 && failing.length === 0 };
  } catch (err) {
    return { text: `unreachable (${(err as Error).message})`, healthy: false };
  }
}

/** Polls both processes' readiness every 250 ms until `stop()`; keeps every observation. */
function watchReadiness(load: ChaosLoad): { log: Readiness[]; stop(): Promise<void> } {
  const log: Readiness[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const at = Date.now();
      const phase = load.phase;
      const [a, w] = await Promise.all([readiness(api!), readiness(worker!)]);
      log.push({ at, phase, api: a.text, worker: w.text, healthy: a.healthy && w.healthy });
      await sleep(250);
    }
  })();
  return {
    log,
    async stop() {
      running = false;
      await loop;
    },
  };
}

/** Counts of `values`, most frequent first, as `value ×n`. */
function tally(values: readonly string[]): string[] {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1]).map(([v, n]) => `${v} ×${n}`);
}

/** Readiness observations as runs of the same answer: `outage: api 200 [store] / worker 503 [...] ×12`. */
function readinessRuns(log: readonly Readiness[]): string[] {
  const runs: string[] = [];
  let last = '';
  let n = 0;
  for (const r of log) {
    const key = `${r.phase}: api ${r.api} / worker ${r.worker}`;
    if (key === last) n++;
    else {
      if (n > 0) runs.push(`${last} ×${n}`);
      last = key;
      n = 1;
    }
  }
  if (n > 0) runs.push(`${last} ×${n}`);
  return runs;
}

/** The processes' output without the per-request lines, for a failure report. */
function processLogs(lines = 60): string {
  return (deployment?.processes ?? [])
    .map((p) => {
      const kept = p
        .output()
        .split('\n')
        .filter((l) => !l.includes('"msg":"request completed"'));
      return `----- ${p.name} (${p.running ? 'running' : 'exited'}) -----\n${kept.slice(-lines).join('\n')}`;
    })
    .join('\n');
}

/** The load's event ids in the store of record. */
async function storedIds(): Promise<Set<string>> {
  const rows = await query<{ event_id: string }>(
    `SELECT event_id FROM $schema.events WHERE event_id LIKE '${RUN}-%'`,
  );
  return new Set(rows.map((r) => r.event_id));
}

/**
 * Polls `done` every 200 ms (a throw is "not yet") in the background; resolves to the time it first held,
 * or null after 60 s or once the test is over.
 */
async function whenTrue(done: () => Promise<boolean>): Promise<number | null> {
  let over = false;
  onTestFinished(() => void (over = true));
  for (const deadline = Date.now() + 60_000; !over && Date.now() < deadline; await sleep(200)) {
    if (await done().catch(() => false)) return Date.now();
  }
  return null;
}

const seconds = (ms: number | null) => (ms === null ? 'never' : `${(ms / 1000).toFixed(1)} s`);

/** What one phase did and measured. Times are epoch ms. */
interface PhaseRun {
  backend: string;
  load: ChaosLoad;
  readiness: Readiness[];
  killedAt: number;
  restartedAt: number;
  /** Both processes healthy, a POST acknowledged and an answer not degraded, all sent after the restart. */
  recoveredAt: number;
  /** When the store of record / the online state held what was acknowledged before the restart. */
  storeBack: Promise<number | null>;
  projectorBack: Promise<number | null>;
  /** The load's POSTs (without re-sends), those refused, and their re-sends. */
  posts: PostRecord[];
  refused: PostRecord[];
  resent: PostRecord[];
}

/**
 * Runs the load, SIGKILLs the backend for OUTAGE_MS, starts it again, waits for recovery, keeps the load
 * a little longer, then re-sends the refused batches as a client would.
 */
async function runPhase(
  backend: string,
  kill: () => Promise<void>,
  restart: () => Promise<void>,
): Promise<PhaseRun> {
  const load = new ChaosLoad({
    apiUrl: api!.url,
    run: `${RUN}-${backend}`,
    users: USERS,
    items: ITEMS,
    ...LOAD,
  });
  const watch = watchReadiness(load);
  onTestFailed(() => console.error(readinessRuns(watch.log).join('\n')));
  const run = { backend, load, readiness: watch.log, killedAt: 0, restartedAt: 0, recoveredAt: 0 };
  let storeBack: Promise<number | null> = Promise.resolve(null);
  let projectorBack: Promise<number | null> = Promise.resolve(null);
  load.start();
  try {
    await sleep(STEADY_MS);
    load.phase = 'outage';
    run.killedAt = Date.now();
    await kill();
    await sleep(Math.max(0, run.killedAt + OUTAGE_MS - Date.now()));
    load.phase = 'after';
    await restart();
    const restartedAt = (run.restartedAt = Date.now());
    storeBack = whenTrue(async () => {
      const ids = await storedIds();
      return load.posts.every(
        (p) => !p.acked || p.at + p.ms > restartedAt || p.events.every((e) => ids.has(e.event_id)),
      );
    });
    let target: number | null = null;
    projectorBack = whenTrue(async () => {
      const { applied, head } = await projection();
      target ??= head;
      return applied >= target;
    });
    await pollUntil(
      `recovery after the ${backend} restart`,
      () =>
        Promise.resolve(
          watch.log.some((r) => r.at >= restartedAt && r.healthy) &&
            load.posts.some((p) => p.at >= restartedAt && p.acked) &&
            load.gets.some((g) => g.at >= restartedAt && g.problem === null && !g.degraded),
        ),
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    run.recoveredAt = Date.now();
    await sleep(STEADY_MS);
  } finally {
    await load.stop();
    await watch.stop();
  }
  const posts = [...load.posts];
  const refused = posts.filter((p) => !p.acked);
  // Some events of a refused batch may come back `duplicate`: stored by the refused attempt after all.
  const resent: PostRecord[] = [];
  for (const p of refused) resent.push(await load.post(p.events, 'after'));
  for (const p of load.posts) {
    for (const e of p.events) sent.add(e.event_id);
    if (p.acked) for (const e of p.events) acked.add(e.event_id);
  }
  return { ...run, storeBack, projectorBack, posts, refused, resent };
}

/**
 * Waits until the store of record holds every acknowledged event and the online state has applied the
 * whole event log; returns the stored ids and those stored more than once.
 */
async function settle(): Promise<{ stored: Set<string>; repeated: string[] }> {
  let stored = new Set<string>();
  await pollUntil(
    'every acknowledged event in PostgreSQL',
    async () => {
      stored = await storedIds();
      return [...acked].every((id) => stored.has(id));
    },
    {
      timeoutMs: 60_000,
      intervalMs: 200,
      describe: () => `${[...acked].filter((id) => stored.has(id)).length} of ${acked.size} stored`,
    },
  );
  let projected = { applied: 0, head: 0 };
  await pollUntil(
    'the online state to catch up with the event log',
    async () => {
      projected = await projection();
      return projected.applied >= projected.head;
    },
    { timeoutMs: 60_000, intervalMs: 200, describe: () => JSON.stringify(projected) },
  );
  const repeated = await query<{ event_id: string }>(
    `SELECT event_id FROM $schema.events WHERE event_id LIKE '${RUN}-%' GROUP BY event_id HAVING count(*) > 1`,
  );
  return { stored, repeated: repeated.map((r) => r.event_id) };
}

/** The figures of a phase, as printed. */
async function report(run: PhaseRun, stored: Set<string>, repeated: string[]): Promise<string> {
  const { load, restartedAt, refused, resent } = run;
  const gets = load.gets;
  const byPhase = (phase: Phase) => gets.filter((g) => g.phase === phase);
  const after = (at: number | null | undefined) => seconds(at == null ? null : at - restartedAt);
  const first = <T extends { at: number }>(list: T[], ok: (x: T) => boolean) =>
    list.filter((x) => x.at >= restartedAt && ok(x)).sort((a, b) => a.at - b.at)[0]?.at;
  const outage = run.readiness.filter((r) => r.phase === 'outage');
  const ms = gets.map((g) => g.ms).sort((a, b) => a - b);
  const pct = (p: number) => ms[Math.min(ms.length - 1, Math.floor((p / 100) * ms.length))];
  const [storeBack, projectorBack] = await Promise.all([run.storeBack, run.projectorBack]);
  return [
    `===== chaos: ${run.backend} killed (SIGKILL) for ${OUTAGE_MS / 1000} s =====`,
    `recommendations: ${gets.length} (before ${byPhase('before').length}, outage ${byPhase('outage').length}, after ${byPhase('after').length}); invalid ${gets.filter((g) => g.problem).length}; latency p50 ${pct(50)} ms, p99 ${pct(99)} ms, max ${ms.at(-1)} ms`,
    ...(['before', 'outage', 'after'] as const).map(
      (phase) =>
        `  ${phase}: ${tally(byPhase(phase).map((g) => g.label ?? `INVALID ${g.problem}`)).join(', ')}`,
    ),
    `event POSTs: ${run.posts.length} (${run.posts.length * LOAD.eventsPerPost} events); acked ${run.posts.length - refused.length}, refused ${refused.length} ${JSON.stringify(tally(refused.map((p) => `${p.phase} ${p.status} ${p.code ?? p.problem}`)))}; refusal latency max ${Math.max(0, ...refused.map((p) => p.ms))} ms`,
    `  re-sent refused: ${resent.length}, acked ${resent.filter((p) => p.acked).length} (${resent.length * LOAD.eventsPerPost} events, of which ${resent.reduce((n, p) => n + p.duplicates, 0)} already in the log: stored by the refused attempt)`,
    `readiness during the outage: ${tally(outage.map((r) => `api ${r.api} / worker ${r.worker}`)).join('; ')}`,
    `recovery after restart: readiness healthy +${after(run.readiness.find((r) => r.at >= restartedAt && r.healthy)?.at)}, first acked POST +${after(first(load.posts, (p) => p.acked))}, first non-degraded answer +${after(first(gets, (g) => g.problem === null && !g.degraded))}, all recovered +${after(run.recoveredAt)}; consumers caught up with what was acknowledged before it: store of record +${after(storeBack)}, online state +${after(projectorBack)}`,
    `store of record: ${stored.size} load events stored, ${acked.size} acknowledged so far, repeated ${repeated.length}; client skipped ${load.skipped}`,
  ].join('\n');
}

/** What every phase must show (see the file comment). */
function check(run: PhaseRun, stored: Set<string>, repeated: string[]): void {
  const { load, refused, resent } = run;
  for (const proc of [api!, worker!])
    expect(proc.running, `${proc.name} exited:\n${proc.tail(40)}`).toBe(true);
  expect(load.skipped, 'requests the load could not send (too many in flight)').toBe(0);
  expect(load.gets.filter((g) => g.problem).map((g) => `${g.phase}: ${g.problem}`)).toEqual([]);
  const duringOutage = load.gets.filter((g) => g.phase === 'outage').length;
  expect(duringOutage, 'recommendations asked during the outage').toBeGreaterThan(OUTAGE_MS / 100);
  expect(run.posts.filter((p) => p.problem).map((p) => `${p.phase}: ${p.problem}`)).toEqual([]);
  // Refusals only while the backend was down or coming back: none answered before it was killed.
  expect(refused.filter((p) => p.at + p.ms < run.killedAt).length, 'refusals before the kill').toBe(0);
  expect(resent.filter((p) => !p.acked).map((p) => p.problem ?? p.code)).toEqual([]);
  expect(repeated).toEqual([]);
  expect([...acked].filter((id) => !stored.has(id))).toEqual([]);
  expect(
    [...stored].filter((id) => !sent.has(id)),
    'stored events nobody sent',
  ).toEqual([]);
  expect(
    run.readiness.some((r) => r.phase === 'outage' && !r.healthy),
    'readiness said something was wrong during the outage',
  ).toBe(true);
}

/** One chaos phase: run it, let the consumers settle, print the figures, check them. */
async function chaosPhase(
  backend: string,
  kill: () => Promise<void>,
  restart: () => Promise<void>,
): Promise<void> {
  const run = await runPhase(backend, kill, restart);
  const { stored, repeated } = await settle();
  console.log(await report(run, stored, repeated));
  check(run, stored, repeated);
}

describe('chaos: PostgreSQL, Redis and NATS JetStream killed in turn under load (roles api + worker)', () => {
  it('seeds a shop and serves a trained champion', async () => {
    onTestFailed(() => console.error(processLogs()));
    await seedAndTrain(api!.url);
  }, 120_000);

  it('PostgreSQL killed: every recommendation answered, every acknowledged event stored once', async () => {
    onTestFailed(() => console.error(processLogs()));
    await chaosPhase(
      'postgres',
      () => killPostgres(cluster!),
      () => cluster!.start(),
    );
  }, 120_000);

  it('Redis killed: every recommendation answered, every acknowledged event stored once', async () => {
    onTestFailed(() => console.error(processLogs(), redis!.tail()));
    await chaosPhase(
      'redis',
      () => redis!.kill(),
      () => redis!.start(),
    );
  }, 120_000);

  it('NATS killed: every recommendation answered, every acknowledged event stored once', async () => {
    onTestFailed(() => console.error(processLogs(), nats!.tail()));
    await chaosPhase(
      'nats',
      () => nats!.kill(),
      () => nats!.start(),
    );
  }, 120_000);
});
