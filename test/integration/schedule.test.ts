/**
 * Retraining nobody asks for, with real processes (`cairn serve --role …`) on the machine's PostgreSQL,
 * Redis (BullMQ jobs) and NATS JetStream, each deployment in its own schema and prefixes:
 *
 * 1. `CAIRN_TRAINING_SCHEDULE` on two workers (and an API replica): a fire on the empty store fails for
 *    good and is reported at error level with its job id; once data is in, fires train and register
 *    models without any request to train; both workers fire every key, yet no key is trained twice (one
 *    job and one model per fire key; see the test for the one race that can leave a no-op job); the API
 *    role does not schedule.
 * 2. `CAIRN_TRAINING_RETRAIN_AFTER_EVENTS` on an all-in-one process on the same backends: N − 1 events
 *    ingested over HTTP train nothing, the N-th one triggers one training (not repeated by later checks),
 *    and N more after the new champion's watermark trigger another.
 *
 * No request to train is ever sent. Waits are polls with deadlines, except the ones that show nothing
 * happens (a few check periods).
 */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import {
  assertServicesUp,
  http,
  pollUntil,
  SERVICES,
  sleep,
  TestDeployment,
  type CairnProcess,
} from './helpers/processes.ts';

interface TriggerWire {
  kind: string;
  key: string | null;
  requested_by: string | null;
  job_id: string | null;
}
interface ModelWire {
  version: string;
  status: string;
  error: string | null;
  lineage: { trigger: TriggerWire } | null;
}
interface JobInQueue {
  id: string;
  key: string | null;
  kind: string | null;
  requestedBy: string | null;
  state: string;
  result: Record<string, unknown> | null;
}
type LogLine = Record<string, unknown>;

const RUN = Math.random().toString(36).slice(2, 8);
/** Trainings here are `pop` on a few hundred events: well under a second; the machine is shared. */
const TRAINING_MS = 40_000;

function event(n: number, tag: string) {
  return {
    event_id: `sched-${RUN}-${tag}-${n}`,
    user_id: `u${n % 37}`,
    item_id: `i${(n * 7) % 23}`,
    type: n % 5 === 0 ? 'purchase' : 'view',
    timestamp: Date.now() - 60_000 + n,
  };
}

async function ingest(proc: CairnProcess, from: number, count: number, tag: string): Promise<void> {
  const events = Array.from({ length: count }, (_, i) => event(from + i, tag));
  for (let i = 0; i < events.length; i += 500) {
    const res = await http<{ accepted: number }>('POST', `${proc.url}/v1/events`, {
      events: events.slice(i, i + 500),
    });
    expect(res.status, JSON.stringify(res.body).slice(0, 300)).toBe(200);
    expect(res.body.accepted).toBe(Math.min(500, events.length - i));
  }
}

async function putItems(proc: CairnProcess): Promise<void> {
  const items = Array.from({ length: 23 }, (_, i) => ({ id: `i${i}`, categories: [`c${i % 3}`] }));
  const res = await http('POST', `${proc.url}/v1/items`, { items });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
}

async function models(proc: CairnProcess): Promise<ModelWire[]> {
  const res = await http<{ models: ModelWire[] }>('GET', `${proc.url}/v1/models?limit=200`);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.models;
}

/** Every `train` job in the deployment's BullMQ queue, whatever its state. */
async function trainJobs(d: TestDeployment): Promise<JobInQueue[]> {
  const connection = new Redis(SERVICES.redis, { maxRetriesPerRequest: 1 });
  const queue = new Queue('jobs.train', { connection, prefix: `${d.redisPrefix}bull` });
  try {
    const jobs = await queue.getJobs(['completed', 'failed', 'active', 'waiting', 'delayed', 'prioritized']);
    return Promise.all(
      jobs.map(async (j) => {
        const data = j.data as { trigger?: { kind?: string; key?: string }; requested_by?: string };
        return {
          id: `train.${j.id}`,
          key: data.trigger?.key ?? null,
          kind: data.trigger?.kind ?? null,
          requestedBy: data.requested_by ?? null,
          state: await j.getState(),
          result: (j.returnvalue as Record<string, unknown> | null | undefined) ?? null,
        };
      }),
    );
  } finally {
    await queue.close();
    connection.disconnect();
  }
}

/** The JSON log lines of a process. */
function logLines(proc: CairnProcess): LogLine[] {
  const out: LogLine[] = [];
  for (const line of proc.output().split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as LogLine);
    } catch {
      // Cut by the end of the output.
    }
  }
  return out;
}

/** The scheduler's lines of a process (one per trigger handled, whatever its outcome). */
function schedulerLines(proc: CairnProcess): LogLine[] {
  return logLines(proc).filter((l) => l.component === 'training-scheduler');
}

function countBy<T>(values: T[]): Map<T, number> {
  const counts = new Map<T, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return counts;
}

function duplicates<T>(values: T[]): T[] {
  return [...countBy(values)].filter(([, n]) => n > 1).map(([v]) => v);
}

async function metric(proc: CairnProcess, series: string): Promise<number | null> {
  const res = await http<string>('GET', `${proc.url}/metrics`);
  for (const line of res.body.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return null;
}

function showLogsOnFailure(deployment: () => TestDeployment | undefined) {
  return (ctx: TestContext) => {
    const d = deployment();
    if (d && ctx.task.result?.state === 'fail') console.error(`[schedule] process output:\n${d.logs(120)}`);
  };
}

// Both deployments start together and are removed together: process start-up dominates the file's time.
let schedule: TestDeployment | undefined;
let volume: TestDeployment | undefined;
/** Data-volume threshold of deployment 2. */
const N = 300;
const scheduleEnv = {
  CAIRN_TRAINING_SCHEDULE: '*/3 * * * * *',
  CAIRN_TRAINING_ALGORITHM: 'pop',
  CAIRN_TRAINING_TRIGGER_CHECK_SECONDS: '0.5',
};
const volumeEnv = {
  CAIRN_TRAINING_RETRAIN_AFTER_EVENTS: String(N),
  CAIRN_TRAINING_ALGORITHM: 'pop',
  CAIRN_TRAINING_TRIGGER_CHECK_SECONDS: '0.25',
};
let procs: Record<'A' | 'W1' | 'W2' | 'V', CairnProcess>;

beforeAll(async () => {
  await assertServicesUp(['postgres', 'redis', 'nats']);
  schedule = await TestDeployment.create({ name: 'sched', redis: true, nats: true });
  volume = await TestDeployment.create({ name: 'volume', redis: true, nats: true });
  const [A, W1, W2, V] = await Promise.all([
    schedule.serve('api', 'api', scheduleEnv),
    schedule.serve('worker-1', 'worker', scheduleEnv),
    schedule.serve('worker-2', 'worker', scheduleEnv),
    // One all-in-one process on the same backends (its store writer feeds PostgreSQL from JetStream).
    volume.serve('all', 'all', volumeEnv),
  ]);
  procs = { A, W1, W2, V };
}, 120_000);

afterAll(async () => {
  await Promise.all([schedule?.cleanup(), volume?.cleanup()]);
}, 60_000);

describe('1. a cron schedule on two workers', () => {
  const d = () => schedule!;
  afterEach(showLogsOnFailure(() => schedule));

  it('trains by itself, one job and one model per fire key, and reports a fire that fails for good', async () => {
    const { A, W1, W2 } = procs;
    // The store is empty: the first fire's training fails for good (not enough data), reported by the
    // worker that enqueued it at error level, with the job id; the failure is recorded with its trigger.
    const failure = await pollUntil(
      'a worker to report a scheduled training that failed for good',
      () =>
        Promise.resolve(
          [W1, W2].flatMap(schedulerLines).find((l) => l.msg === 'triggered training failed permanently') ??
            null,
        ),
      { timeoutMs: 20_000, intervalMs: 100 },
    );
    expect(failure).toMatchObject({ level: 'error', trigger: 'schedule' });
    expect(String(failure.key)).toMatch(/^schedule:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/);
    expect(String(failure.error)).toContain('positive interactions');
    const failedJob = String(failure.jobId);

    await putItems(A);
    await ingest(A, 0, 600, 'load');
    // Models registered by the schedule: nobody asked for them.
    let all: ModelWire[] = [];
    await pollUntil(
      'three models trained on schedule',
      async () => {
        all = await models(A);
        return all.filter((m) => m.status !== 'failed').length >= 3;
      },
      { timeoutMs: TRAINING_MS, intervalMs: 200, describe: () => JSON.stringify(all.map((m) => m.status)) },
    );
    await Promise.all([W1.stop(), W2.stop()]);

    all = await models(A);
    const jobs = await trainJobs(d());
    const keys = jobs.map((j) => j.key);
    // Every job is a scheduled one (no request to train was made), and no fire key has two jobs that
    // trained. (A second job for a key can only come from a process that read the registry just before
    // the first job recorded its model and finished; it must have finished without training.)
    expect(jobs.every((j) => j.kind === 'schedule' && j.requestedBy === 'system')).toBe(true);
    const skipped = jobs.filter((j) => j.result?.skipped === true);
    const trainedKeys = jobs.filter((j) => !skipped.includes(j)).map((j) => j.key);
    expect(duplicates(trainedKeys), `job keys: ${keys.join(', ')}`).toEqual([]);
    for (const j of skipped) {
      expect(j.state).toBe('completed');
      expect(trainedKeys, `skipped job ${j.id}`).toContain(j.key);
    }
    console.log(
      `[schedule] ${new Set(keys).size} fire keys with a job, ${jobs.length} jobs, ${skipped.length} skipped as already trained`,
    );
    expect(jobs.find((j) => j.id === failedJob)?.state).toBe('failed');
    // Every model (failed ones included) came from one of these jobs, one model per key.
    const modelKeys = all.map((m) => m.lineage?.trigger.key ?? null);
    expect(duplicates(modelKeys), `model keys: ${modelKeys.join(', ')}`).toEqual([]);
    const jobOf = new Map(jobs.map((j) => [j.id, j.key]));
    for (const m of all) {
      expect(m.lineage?.trigger, m.version).toMatchObject({ kind: 'schedule', requested_by: 'system' });
      expect(jobOf.get(m.lineage!.trigger.job_id!), m.version).toBe(m.lineage!.trigger.key);
    }
    expect(all.some((m) => m.status === 'champion')).toBe(true);
    const failedModel = all.find((m) => m.lineage!.trigger.job_id === failedJob);
    expect(failedModel?.status).toBe('failed');

    // Both workers fired: keys with a job that both of them handled (one enqueued, the other found the
    // job, or the model, or folded it into the unfinished one).
    const handled = (proc: CairnProcess) => new Set(schedulerLines(proc).map((l) => l.key as string));
    const [h1, h2] = [handled(W1), handled(W2)];
    const both = keys.filter((k) => k !== null && h1.has(k) && h2.has(k));
    expect(both.length, `W1 ${[...h1].join(',')}\nW2 ${[...h2].join(',')}`).toBeGreaterThanOrEqual(3);
    // The API role runs no scheduler.
    expect(schedulerLines(A)).toEqual([]);
  }, 90_000);
});

describe('2. a data-volume trigger', () => {
  const d = () => volume!;
  afterEach(showLogsOnFailure(() => volume));

  it('N events ingested over HTTP trigger one training; N more after the new champion another', async () => {
    const { V } = procs;
    await putItems(V);
    await ingest(V, 0, N - 1, 'a');
    // Below the threshold: the store of record has every event, and checks keep finding nothing to do.
    await pollUntil(
      'the store writer to store the events',
      async () =>
        Number((await d().sql<{ n: string }>('SELECT count(*) AS n FROM $schema.events'))[0].n) === N - 1,
      { timeoutMs: 20_000, intervalMs: 100 },
    );
    await sleep(1500); // six check periods
    expect(await trainJobs(d())).toEqual([]);
    expect(await models(V)).toEqual([]);

    await ingest(V, N - 1, 1, 'a');
    let all: ModelWire[] = [];
    await pollUntil(
      'a model trained on the data-volume trigger',
      async () => {
        all = await models(V);
        return all.some((m) => m.status === 'champion');
      },
      { timeoutMs: TRAINING_MS, intervalMs: 100, describe: () => JSON.stringify(all) },
    );
    expect(all).toHaveLength(1);
    expect(all[0].lineage!.trigger).toMatchObject({
      kind: 'data_volume',
      key: 'data_volume:0:1',
      requested_by: 'system',
    });
    // Later checks see the same crossing (or none, from the new champion): no second job.
    await sleep(1500);
    expect((await trainJobs(d())).map((j) => j.key)).toEqual(['data_volume:0:1']);
    expect(await metric(V, 'cairn_training_triggers_total{trigger="data_volume",outcome="enqueued"}')).toBe(
      1,
    );

    // N more events after the champion's training watermark: one more training, counted from there.
    const champion = all[0];
    await ingest(V, N, N, 'b');
    await pollUntil(
      'a second model trained on the data-volume trigger',
      async () => {
        all = await models(V);
        return all.length >= 2 && all.every((m) => m.status !== 'training');
      },
      { timeoutMs: TRAINING_MS, intervalMs: 100, describe: () => JSON.stringify(all) },
    );
    const second = all.find((m) => m.version !== champion.version)!;
    expect(second.lineage!.trigger.key).toMatch(/^data_volume:[1-9]\d*:1$/);
    await sleep(1000);
    const keys = (await trainJobs(d())).map((j) => j.key).sort();
    expect(keys).toEqual(['data_volume:0:1', second.lineage!.trigger.key].sort());
    expect(await models(V)).toHaveLength(2);
  }, 90_000);
});
