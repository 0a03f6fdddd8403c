/**
 * The production architecture with real processes on real servers: `node bin/cairn.js serve --role …`
 * children on the machine's PostgreSQL, Redis and NATS JetStream (each run in its own schema, key prefix
 * and stream prefix, all removed afterwards), driven through their public HTTP API and CLI only.
 *
 * 1. Two API replicas (A, B) and a worker: what is written through A reaches B (an event, a catalog
 *    change, a promotion, a rollback), and a worker killed in the middle of a training job has the job
 *    taken over by another worker when its lease expires.
 * 2. The two reproductions of the issue "Production architecture: process roles on PostgreSQL, Redis and
 *    NATS JetStream": two all-in-one processes on one PostgreSQL schema see each other's writes, and a
 *    read-only CLI command neither fails another process's running job nor creates a store.
 *
 * Waits are polls with deadlines (never sleeps tuned to pass); delays are measured and printed.
 * An unreachable server fails the suite (see assertServicesUp).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { BullJobQueue } from '../../src/storage/redis/job-queue.ts';
import {
  assertServicesUp,
  childEnv,
  http,
  pollUntil,
  runCairn,
  SERVICES,
  sleep,
  TestDeployment,
  type CairnProcess,
} from './helpers/processes.ts';
import { generateShop, loadShop, type Shop } from './helpers/shop.ts';

interface ItemWire {
  item_id: string;
  score: number;
  reason: string;
}
interface RecommendationWire {
  request_id: string;
  user_id: string;
  model_version: string | null;
  source: 'personalized' | 'fallback';
  fallback_reason: string | null;
  degraded: boolean;
  items: ItemWire[];
}
interface ListWire {
  model_version: string | null;
  items: ItemWire[];
}
interface JobWire {
  job_id: string;
  name: string;
  status: 'queued' | 'running' | 'succeeded' | 'failed';
  progress: number;
  result?: Record<string, unknown>;
  error?: string;
}
interface ModelWire {
  version: string;
  status: string;
}

/** Unique per run: event ids posted by the tests never collide with another run's. */
const RUN = randomBytes(3).toString('hex');
/** Waits for something to travel between processes (normally well under a second). */
const PROPAGATION_MS = 20_000;
/** Waits for a training job (a few seconds unloaded; the machine is shared). */
const TRAINING_MS = 180_000;

let shop: Shop;
/** Measured figures, printed at the end of the file. */
const figures: Record<string, unknown> = {};

beforeAll(async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-roles-shop-'));
  shop = await generateShop(dir, { users: 200, items: 100, events: 8000, seed: 3 });
}, 120_000);

afterAll(async () => {
  if (shop) await rm(shop.dir, { recursive: true, force: true });
  console.log(`[roles] measured figures:\n${JSON.stringify(figures, null, 2)}`);
});

// ------------------------------------------------------------------------------------------------
// Small clients of the public API
// ------------------------------------------------------------------------------------------------

async function recommend(proc: CairnProcess, user: string, k = 10): Promise<RecommendationWire> {
  const res = await http<RecommendationWire>('GET', `${proc.url}/v1/users/${user}/recommendations?k=${k}`);
  expect(res.status, `${proc.name}: ${JSON.stringify(res.body)}`).toBe(200);
  return res.body;
}

async function list(proc: CairnProcess, path: string): Promise<ListWire> {
  const res = await http<ListWire>('GET', `${proc.url}${path}`);
  expect(res.status, `${proc.name} ${path}: ${JSON.stringify(res.body)}`).toBe(200);
  return res.body;
}

const ids = (items: readonly ItemWire[]): string[] => items.map((i) => i.item_id);

async function getJob(proc: CairnProcess, id: string): Promise<JobWire> {
  const res = await http<JobWire>('GET', `${proc.url}/v1/jobs/${id}`);
  expect(res.status, `${proc.name}: ${JSON.stringify(res.body)}`).toBe(200);
  return res.body;
}

async function submitTraining(proc: CairnProcess, body: Record<string, unknown>): Promise<string> {
  const res = await http<{ job_id: string; status: string }>('POST', `${proc.url}/v1/models/train`, body);
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  expect(typeof res.body.job_id).toBe('string');
  return res.body.job_id;
}

/** Polls the job through `proc` until it succeeded; a failed job fails the test with its error. */
async function jobSucceeded(proc: CairnProcess, id: string, timeoutMs = TRAINING_MS): Promise<JobWire> {
  let last: JobWire | null = null;
  return pollUntil(
    `job ${id} to succeed (polled through ${proc.name})`,
    async () => {
      last = await getJob(proc, id);
      if (last.status === 'failed') throw new Error(`job ${id} failed: ${JSON.stringify(last)}`);
      return last.status === 'succeeded' ? last : null;
    },
    { timeoutMs, intervalMs: 200, describe: () => JSON.stringify(last) },
  );
}

/** Polls every replica until `user`'s answers carry `version`; returns ms until the slowest did. */
async function servedEverywhere(replicas: CairnProcess[], version: string, user: string): Promise<number> {
  const started = performance.now();
  await Promise.all(
    replicas.map((proc) => {
      let last: string | null = null;
      return pollUntil(
        `${proc.name} to serve model ${version}`,
        async () => {
          const r = await recommend(proc, user);
          last = r.model_version;
          return r.model_version === version && r.source === 'personalized';
        },
        { timeoutMs: PROPAGATION_MS, intervalMs: 25, describe: () => `model_version ${last}` },
      );
    }),
  );
  return Math.round(performance.now() - started);
}

function stats(values: number[]): { n: number; min: number; median: number; max: number } {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { n: sorted.length, min: sorted[0], median, max: sorted[sorted.length - 1] };
}

/** Users with the most events in the shop: they get personalized answers. */
function busiestUsers(n: number): string[] {
  const counts = new Map<string, number>();
  for (const e of shop.events) counts.set(e.user_id, (counts.get(e.user_id) ?? 0) + 1);
  return [...counts.entries()]
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .slice(0, n)
    .map(([u]) => u);
}

/** The JSON log lines of `proc` about job `id` with message `msg`. */
function logged(proc: CairnProcess, id: string, msg: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of proc.output().split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const entry = JSON.parse(line) as Record<string, unknown>;
      if (entry.jobId === id && entry.msg === msg) out.push(entry);
    } catch {
      // Not a log line (or one cut by the kill).
    }
  }
  return out;
}

function showLogsOnFailure(deployment: () => TestDeployment | undefined) {
  return (ctx: TestContext) => {
    const d = deployment();
    if (d && ctx.task.result?.state === 'fail') console.error(`[roles] process output:\n${d.logs()}`);
  };
}

// ------------------------------------------------------------------------------------------------
// 1. Production roles
// ------------------------------------------------------------------------------------------------

describe('1. production roles: api replicas A and B and a worker on PostgreSQL, Redis and NATS JetStream', () => {
  let d: TestDeployment | undefined;
  let A: CairnProcess;
  let B: CairnProcess;
  let W: CairnProcess;
  /** A short lease, so the worker killed in 1d loses its job within seconds. */
  const roleEnv = { CAIRN_JOBS_LEASE_SECONDS: '2' };
  /** The champion both replicas serve, kept current by the tests that change it. */
  let champion: string;
  let firstModel: string;
  const users = () => busiestUsers(12);

  beforeAll(async () => {
    await assertServicesUp(['postgres', 'redis', 'nats']);
    d = await TestDeployment.create({ name: 'prod', redis: true, nats: true });
    const started = performance.now();
    [A, B, W] = await Promise.all([
      d.serve('api-A', 'api', roleEnv),
      d.serve('api-B', 'api', roleEnv),
      d.serve('worker-1', 'worker', roleEnv),
    ]);
    figures['1.startup_ms (three processes in parallel)'] = Math.round(performance.now() - started);

    const loading = performance.now();
    await loadShop(A.url, shop);
    figures['1.load_ms (100 items, 8000 events through A)'] = Math.round(performance.now() - loading);
    // The worker's store writer lands every event in PostgreSQL (training reads them there).
    let stored = 0;
    await pollUntil(
      'the worker to write every event to PostgreSQL',
      async () => {
        stored = Number((await d!.sql<{ n: string }>('SELECT count(*) AS n FROM $schema.events'))[0].n);
        return stored === shop.events.length;
      },
      { timeoutMs: 60_000, intervalMs: 200, describe: () => `${stored} stored` },
    );
    figures['1.load_and_store_ms'] = Math.round(performance.now() - loading);

    // A first champion, so that 1a and 1b run on the personalized path (with the answer cache).
    const job = await jobSucceeded(B, await submitTraining(A, { algorithm: 'als' }));
    expect(job.result?.promoted, JSON.stringify(job.result)).toBe(true);
    firstModel = champion = job.result!.version as string;
    await servedEverywhere([A, B], champion, users()[0]);
  }, 420_000);

  afterEach(showLogsOnFailure(() => d));
  afterAll(async () => {
    await d?.cleanup();
  }, 120_000);

  it('a. an event ingested through A changes what B recommends: the item is excluded as seen', async () => {
    const delays: number[] = [];
    const trials = users().slice(0, 7);
    for (const [n, user] of trials.entries()) {
      const before = await recommend(B, user);
      expect(before.source, JSON.stringify(before)).toBe('personalized');
      expect(before.model_version).toBe(champion);
      const target = before.items[0].item_id;
      // Asked twice so that the answer is in B's shared cache: the event must invalidate it too.
      expect(ids((await recommend(B, user)).items)).toContain(target);

      const ack = await http<{ status: string }>('POST', `${A.url}/v1/events`, {
        event_id: `roles-${RUN}-seen-${n}`,
        user_id: user,
        item_id: target,
        type: 'purchase',
        timestamp: Date.now(),
      });
      expect(ack.status, JSON.stringify(ack.body)).toBe(202);
      expect(ack.body.status).toBe('accepted');
      const acknowledged = performance.now();
      let last: string[] = [];
      await pollUntil(
        `B to stop recommending ${target} to ${user} after the purchase through A`,
        async () => {
          last = ids((await recommend(B, user)).items);
          return !last.includes(target);
        },
        { timeoutMs: PROPAGATION_MS, intervalMs: 5, describe: () => last.join(',') },
      );
      delays.push(Math.round(performance.now() - acknowledged));
      // Once excluded, it stays excluded (no stale answer comes back from a cache) — on both replicas.
      for (let i = 0; i < 10; i++) {
        for (const proc of [B, A]) {
          const r = await recommend(proc, user);
          expect(ids(r.items), `${proc.name}, ${user}, check ${i}`).not.toContain(target);
          expect(r.items.length).toBeGreaterThan(0);
        }
      }
    }
    figures['1a.event_A_to_B_ms'] = { ...stats(delays), all: delays };
  }, 240_000);

  it('a. (race) an event landing while B computes and caches answers for that user leaves no stale answer', async () => {
    // Two clients keep asking B for the user with ever new k: each answer is computed from the history
    // read at that moment and cached. An answer computed from the history before the event but cached
    // after the event invalidated the cache must never be served afterwards.
    const stale: string[] = [];
    for (const [n, user] of users().slice(7, 12).entries()) {
      const target = (await recommend(B, user, 5)).items[0].item_id;
      let stop = false;
      let requests = 0;
      const client = async (firstK: number) => {
        for (let k = firstK; !stop; k = k >= 60 ? 6 : k + 1) {
          await recommend(B, user, k);
          requests++;
        }
      };
      const clients = Promise.all([client(6), client(33)]);
      clients.catch(() => undefined); // awaited (and its failure rethrown) in `finally`
      try {
        await pollUntil('the clients to be running', () => Promise.resolve(requests >= 4), {
          timeoutMs: 30_000,
        });
        const ack = await http('POST', `${A.url}/v1/events`, {
          event_id: `roles-${RUN}-race-${n}`,
          user_id: user,
          item_id: target,
          type: 'purchase',
          timestamp: Date.now(),
        });
        expect(ack.status).toBe(202);
        // k=5 is asked by no client: its answer is fresh once the event is projected.
        await pollUntil(
          `B to stop recommending ${target} to ${user}`,
          async () => !ids((await recommend(B, user, 5)).items).includes(target),
          { timeoutMs: PROPAGATION_MS, intervalMs: 5 },
        );
        const seen = requests;
        await pollUntil('the clients to go on after the event', () => Promise.resolve(requests >= seen + 4), {
          timeoutMs: 30_000,
        });
      } finally {
        stop = true;
        await clients;
      }
      for (let k = 5; k <= 60; k++) {
        if (ids((await recommend(B, user, k)).items).includes(target))
          stale.push(`${user} k=${k}: ${target}`);
      }
    }
    expect(stale, 'answers still holding an item the user bought').toEqual([]);
  }, 240_000);

  it('b. an item made unavailable through A is never served by B once the change is visible', async () => {
    const top = ids((await list(B, '/v1/popular?k=10')).items);
    const victim = top[0];
    const item = shop.items.find((i) => i.id === victim)!;
    expect(item, `popular item ${victim} is from the shop`).toBeDefined();
    const category = item.categories[0];
    const watched = users().slice(0, 4);
    const similarTo = top.find((id) => id !== victim)!;

    const put = await http<{ available: boolean }>('PUT', `${A.url}/v1/items/${victim}`, {
      ...item,
      available: false,
    });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    expect(put.body.available).toBe(false);
    const changed = performance.now();

    // Everything B answers that could hold the item.
    const answers = async (proc: CairnProcess): Promise<Record<string, string[]>> => {
      const out: Record<string, string[]> = {
        popular: ids((await list(proc, '/v1/popular?k=50')).items),
        [`popular in ${category}`]: ids(
          (await list(proc, `/v1/popular?k=50&category=${encodeURIComponent(category)}`)).items,
        ),
        [`similar to ${similarTo}`]: ids((await list(proc, `/v1/items/${similarTo}/similar?k=50`)).items),
      };
      for (const u of watched) out[`recommendations of ${u}`] = ids((await recommend(proc, u, 50)).items);
      return out;
    };
    let last: Record<string, string[]> = {};
    await pollUntil(
      `B to stop serving ${victim}`,
      async () => {
        last = await answers(B);
        return Object.values(last).every((l) => !l.includes(victim));
      },
      {
        timeoutMs: PROPAGATION_MS,
        intervalMs: 5,
        describe: () =>
          Object.keys(last)
            .filter((k) => last[k].includes(victim))
            .join('; '),
      },
    );
    figures['1b.unavailable_A_to_B_ms'] = Math.round(performance.now() - changed);
    const stored = await http<{ available: boolean }>('GET', `${B.url}/v1/items/${victim}`);
    expect(stored.body.available).toBe(false);

    // It never comes back, on either replica — even while it keeps being bought (more popular than ever).
    for (let round = 0; round < 25; round++) {
      const ack = await http('POST', `${A.url}/v1/events`, {
        event_id: `roles-${RUN}-unavailable-${round}`,
        user_id: `roles-buyer-${round % 7}`,
        item_id: victim,
        type: 'purchase',
        timestamp: Date.now(),
      });
      expect(ack.status).toBe(202);
      for (const proc of [B, A]) {
        const seen = await answers(proc);
        for (const [what, items] of Object.entries(seen)) {
          expect(items, `${proc.name} round ${round}: ${what}`).not.toContain(victim);
        }
      }
      await sleep(25);
    }
  }, 240_000);

  it('c. a model trained by the worker and promoted reaches both replicas without a restart; so does a rollback', async () => {
    const pids = [A.pid, B.pid];
    const user = users()[1];
    const job = await jobSucceeded(B, await submitTraining(A, { algorithm: 'als' }));
    expect(job.progress).toBe(1);
    expect(job.result?.promoted, JSON.stringify(job.result)).toBe(true);
    const second = job.result!.version as string;
    expect(second).not.toBe(champion);
    figures['1c.promotion_to_both_ms'] = await servedEverywhere([A, B], second, user);
    champion = second;
    for (const proc of [A, B]) {
      const ready = await http<{ checks: { model: { detail: string } } }>('GET', `${proc.url}/health/ready`);
      expect(ready.body.checks.model.detail).toContain(`serving ${second}`);
    }

    const rollback = await http<ModelWire>('POST', `${A.url}/v1/models/rollback`);
    expect(rollback.status, JSON.stringify(rollback.body)).toBe(200);
    expect(rollback.body.version).toBe(firstModel);
    expect(rollback.body.status).toBe('champion');
    figures['1c.rollback_to_both_ms'] = await servedEverywhere([A, B], firstModel, user);
    champion = firstModel;
    const models = await http<{ models: ModelWire[] }>('GET', `${B.url}/v1/models`);
    expect(models.body.models.find((m) => m.status === 'champion')?.version).toBe(firstModel);

    // The same processes all along.
    expect([A.pid, B.pid]).toEqual(pids);
    expect(A.running && B.running).toBe(true);
  }, 300_000);

  it('d. a worker killed in the middle of training: a second worker takes the job over when the lease expires', async () => {
    // The job as the queue holds it (attempts, owner), read the way the processes derive the BullMQ prefix.
    const queue = new BullJobQueue({ url: SERVICES.redis, prefix: `${d!.redisPrefix}bull` });
    try {
      const user = users()[2];
      const modelsBefore = (await http<{ models: ModelWire[] }>('GET', `${B.url}/v1/models`)).body.models;
      const submitted = performance.now();
      const id = await submitTraining(A, { algorithm: 'als', params: { iterations: 300 } });

      // Mid-fit on worker-1 (progress ≥ 0.15: data extracted, the holdout fit under way).
      let seen: JobWire | null = null;
      await pollUntil(
        'the job to be mid-training on worker-1',
        async () => {
          seen = await getJob(B, id);
          if (seen.status === 'succeeded' || seen.status === 'failed') {
            throw new Error(`the job ended before worker-1 could be killed: ${JSON.stringify(seen)}`);
          }
          return seen.status === 'running' && seen.progress >= 0.15;
        },
        { timeoutMs: TRAINING_MS, intervalMs: 100, describe: () => JSON.stringify(seen) },
      );
      const held = await queue.get(id);
      expect(held?.status).toBe('running');
      expect(held?.attempts).toBe(1);
      expect(held?.owner, 'worker-1 holds the job').toContain(`:${W.pid}:`);

      const exit = await W.kill();
      expect(exit.signal).toBe('SIGKILL');
      const killed = performance.now();
      expect((await getJob(B, id)).status, 'the job did not finish with its worker').toBe('running');

      // A second worker, started afterwards. Meanwhile, and until the job is done, both replicas serve
      // the old champion; the only other version they may ever show is the one the takeover produces.
      // A failed start is reported by the loop below (which would otherwise wait for a takeover in vain).
      const start: { failure: Error | null } = { failure: null };
      const starting = d!.serve('worker-2', 'worker', roleEnv).catch((err: unknown) => {
        start.failure = err instanceof Error ? err : new Error(String(err));
        return null;
      });
      let observations = 0;
      const versionsSeen = new Set<string>();
      let job: JobWire;
      for (;;) {
        if (start.failure) throw start.failure;
        job = await getJob(B, id);
        if (job.status === 'failed') throw new Error(`job failed after the takeover: ${JSON.stringify(job)}`);
        if (job.status === 'succeeded') break;
        for (const proc of [A, B]) {
          const r = await recommend(proc, user);
          observations++;
          if (r.model_version !== champion) versionsSeen.add(String(r.model_version));
        }
        if (performance.now() - killed > TRAINING_MS) throw new Error(`no takeover: ${JSON.stringify(job)}`);
        await sleep(100);
      }
      const W2 = await starting;
      if (W2 === null) throw start.failure ?? new Error('worker-2 did not start');
      figures['1d.kill_to_succeeded_ms'] = Math.round(performance.now() - killed);
      figures['1d.submit_to_succeeded_ms'] = Math.round(performance.now() - submitted);

      const done = await queue.get(id);
      expect(done?.status).toBe('succeeded');
      expect(done!.attempts, JSON.stringify(done)).toBeGreaterThanOrEqual(2);
      // The logs agree: worker-1 started the job and never finished it; worker-2 ran attempt 2+ to the end.
      expect(logged(W, id, 'job started').map((l) => l.attempt)).toEqual([1]);
      expect(logged(W, id, 'job succeeded')).toEqual([]);
      expect(logged(W2, id, 'job succeeded')).toHaveLength(1);
      expect(logged(W2, id, 'job started').every((l) => Number(l.attempt) >= 2)).toBe(true);

      const version = job.result!.version as string;
      expect(observations).toBeGreaterThan(0);
      // Before the takeover finished, replicas served the old champion or, at the very end (promotion
      // comes just before the job is marked succeeded), the new one — nothing else.
      for (const v of versionsSeen) expect(v).toBe(version);
      // The dead attempt registered nothing: exactly one new model version.
      const modelsAfter = (await http<{ models: ModelWire[] }>('GET', `${B.url}/v1/models`)).body.models;
      const added = modelsAfter.filter((m) => !modelsBefore.some((b) => b.version === m.version));
      expect(added.map((m) => m.version)).toEqual([version]);

      expect(job.result?.promoted, JSON.stringify(job.result)).toBe(true);
      figures['1d.promotion_to_both_ms'] = await servedEverywhere([A, B], version, user);
      champion = version;
    } finally {
      await queue.close();
    }
  }, 400_000);

  it('stops every process cleanly on SIGTERM', async () => {
    const running = d!.processes.filter((p) => p.running);
    expect(running.map((p) => p.name).sort()).toEqual(['api-A', 'api-B', 'worker-2']);
    const exits = await Promise.all(running.map((p) => p.stop(20_000)));
    for (const [i, exit] of exits.entries()) {
      expect({ name: running[i].name, ...exit }).toEqual({
        name: running[i].name,
        code: 0,
        signal: null,
        forced: false,
      });
    }
  }, 60_000);
});

// ------------------------------------------------------------------------------------------------
// 2. The reproductions
// ------------------------------------------------------------------------------------------------

describe('2. the issue: two all-in-one processes on ONE PostgreSQL schema, and read-only commands', () => {
  let d: TestDeployment | undefined;
  let A: CairnProcess;
  let B: CairnProcess;

  beforeAll(async () => {
    await assertServicesUp(['postgres']);
    d = await TestDeployment.create({ name: 'issue', redis: false, nats: false });
    [A, B] = await Promise.all([d.serve('all-A', 'all'), d.serve('all-B', 'all')]);
    await loadShop(A.url, shop);
    // Fresh views (the shop's events are months old, so these dominate the decayed popularity): i1 is
    // the most popular item, i3 has no recent event at all.
    const now = Date.now() - 60_000;
    const fresh: Record<string, number> = { i1: 30, i2: 20, i4: 15, i5: 12, i6: 10, i7: 8 };
    const events = Object.entries(fresh).flatMap(([item, n]) =>
      Array.from({ length: n }, (_, u) => ({
        event_id: `roles-${RUN}-fresh-${item}-${u}`,
        user_id: `u${u + 1}`,
        item_id: item,
        type: 'view',
        timestamp: now + u,
      })),
    );
    const res = await http<{ accepted: number }>('POST', `${A.url}/v1/events`, { events });
    expect(res.status).toBe(200);
    expect(res.body.accepted).toBe(events.length);
  }, 300_000);

  afterEach(showLogsOnFailure(() => d));
  afterAll(async () => {
    await d?.cleanup();
  }, 120_000);

  it('a. A marks i1 unavailable and ingests purchases of i3: B stops serving i1 and shows i3 among popular items', async () => {
    let last: string[] = [];
    // B follows A's events (the precondition of the reproduction).
    await pollUntil(
      'B to show i1 at the top of the popular items',
      async () => {
        last = ids((await list(B, '/v1/popular?k=5')).items);
        return last[0] === 'i1';
      },
      { timeoutMs: PROPAGATION_MS, intervalMs: 20, describe: () => last.join(',') },
    );
    expect(last).not.toContain('i3');

    const item = shop.items.find((i) => i.id === 'i1')!;
    const put = await http('PUT', `${A.url}/v1/items/i1`, { ...item, available: false });
    expect(put.status).toBe(200);
    const purchases = Array.from({ length: 20 }, (_, u) => ({
      event_id: `roles-${RUN}-i3-${u}`,
      user_id: `u${100 + u}`,
      item_id: 'i3',
      type: 'purchase',
      timestamp: Date.now(),
    }));
    const res = await http<{ accepted: number }>('POST', `${A.url}/v1/events`, { events: purchases });
    expect(res.body.accepted).toBe(purchases.length);
    const written = performance.now();

    await pollUntil(
      'B to drop i1 and show i3 among its popular items',
      async () => {
        last = ids((await list(B, '/v1/popular?k=5')).items);
        return !last.includes('i1') && last.includes('i3');
      },
      { timeoutMs: PROPAGATION_MS, intervalMs: 20, describe: () => last.join(',') },
    );
    figures['2a.A_to_B_ms'] = Math.round(performance.now() - written);
    for (let i = 0; i < 20; i++) {
      expect(ids((await list(B, '/v1/popular?k=50')).items)).not.toContain('i1');
      for (const u of ['u1', 'u2', 'u3']) expect(ids((await recommend(B, u, 50)).items)).not.toContain('i1');
    }
  }, 120_000);

  it('b. `models list` on the store does not fail a running job of a serve process, and never creates a store', async () => {
    // Far longer than any command start on a loaded machine: the job is certainly running throughout.
    // It is never waited for; stopping the serve process at cleanup cancels it.
    const id = await submitTraining(A, { algorithm: 'als', params: { iterations: 10_000, factors: 128 } });
    let seen: JobWire | null = null;
    await pollUntil(
      'the training job to be running',
      async () => {
        seen = await getJob(A, id);
        if (seen.status === 'succeeded' || seen.status === 'failed') {
          throw new Error(`the job ended before the command could run: ${JSON.stringify(seen)}`);
        }
        return seen.status === 'running';
      },
      { timeoutMs: TRAINING_MS, intervalMs: 50, describe: () => JSON.stringify(seen) },
    );

    const cmd = await d!.cli(
      ['models', 'list', '--store', SERVICES.postgres],
      childEnv({ CAIRN_STORE_SCHEMA: d!.schema }),
    );
    figures['2b.models_list_ms'] = Math.round(cmd.ms);
    expect(cmd.code, cmd.stderr).toBe(0);
    expect(cmd.stdout).not.toBe('');
    // Still running after the command ended, in its first attempt, by the same owner: the command ran
    // while the job was running and left it alone (the old code marked it failed at once).
    const after = await getJob(A, id);
    expect(after.status, JSON.stringify(after)).toBe('running');
    expect(after.error).toBeUndefined();
    const [row] = await d!.sql<{ attempts: number; owner: string | null }>(
      'SELECT attempts, owner FROM $schema.jobs WHERE id = $1',
      [id],
    );
    expect(row.attempts, 'one attempt: nothing interrupted the job').toBe(1);
    expect(row.owner).not.toBeNull();

    // A read-only command on a directory without a store: a clear error naming the path, no file created.
    const empty = await mkdtemp(join(d!.dir, 'empty-'));
    const res = await runCairn(['models', 'list', '--data', empty], { env: childEnv(), cwd: d!.dir });
    expect(res.code, res.stderr).not.toBe(0);
    expect(res.stderr).toContain('CAIRN_NOT_FOUND');
    expect(res.stderr).toContain(join(empty, 'cairn.db'));
    expect(await readdir(empty)).toEqual([]);
  }, 300_000);
});
