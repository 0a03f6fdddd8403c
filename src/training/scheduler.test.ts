import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig, type Config, type DeepPartial } from '../config/load.ts';
import type { ModelVersion } from '../domain/types.ts';
import { JobRunner, PermanentJobError, type JobHandler } from '../jobs/runner.ts';
import { createLogger } from '../monitoring/logger.ts';
import { ModelRegistry } from '../registry/registry.ts';
import { FileArtifactStore } from '../storage/files/artifacts.ts';
import { SqliteJobQueue } from '../storage/sqlite/job-queue.ts';
import { SqliteEventLog } from '../storage/sqlite/log.ts';
import { SqliteStore } from '../storage/sqlite/store.ts';
import {
  dataVolumeKey,
  parseSchedule,
  scheduleKey,
  skipTrainedTriggers,
  TrainingScheduler,
  TRIGGERS_METRIC,
  type TrainingSchedulerDeps,
} from './scheduler.ts';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function eventually<T>(
  what: string,
  probe: () => T | null | Promise<T | null>,
  timeoutMs = 8000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== null) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

interface JobRow {
  id: string;
  status: string;
  payload: { trigger?: { kind: string; key: string }; requested_by?: string };
  dedupeKey: string | null;
  createdAt: number;
}

/** One SQLite store with its job queue, event log and registry, as the all-in-one process opens them. */
class Fixture {
  readonly dir = mkdtempSync(join(tmpdir(), 'cairn-scheduler-'));
  readonly store = new SqliteStore({ path: join(this.dir, 'cairn.db') });
  readonly queue = new SqliteJobQueue(this.store, { backoffBaseMs: 20 });
  readonly eventLog = new SqliteEventLog(this.store);
  readonly registry = new ModelRegistry(
    this.store.models,
    new FileArtifactStore({ root: this.dir }),
    createLogger('silent'),
  );
  readonly metrics = { registry: new Registry() };
  readonly logLines: Record<string, unknown>[] = [];
  readonly logger = createLogger('info', {
    destination: new Writable({
      write: (chunk: Buffer, _enc, done) => {
        for (const line of chunk.toString('utf8').split('\n'))
          if (line.trim() !== '') this.logLines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    }),
  });
  private readonly closables: { close(): Promise<void> }[] = [];
  private seq = 0;

  async open(): Promise<this> {
    await this.store.migrate();
    return this;
  }

  scheduler(training: DeepPartial<Config['training']>, options: { start?: boolean } = {}): TrainingScheduler {
    const deps: TrainingSchedulerDeps = {
      config: loadConfig({ env: {}, overrides: { training, jobs: { maxAttempts: 2 } } }),
      registry: this.registry,
      jobs: this.queue,
      eventLog: this.eventLog,
      metrics: this.metrics,
      logger: this.logger,
    };
    const s = new TrainingScheduler(deps);
    this.closables.unshift(s);
    return options.start === false ? s : s.start();
  }

  /** A runner whose `train` handler plays the pipeline's part in the contract: lineage records the trigger. */
  runner(handler: JobHandler<'train'>): JobRunner {
    const r = new JobRunner({ queue: this.queue, logger: createLogger('silent'), leaseMs: 2000, pollMs: 20 });
    r.register('train', handler);
    this.closables.push(r);
    r.start();
    return r;
  }

  /** Registers a model version whose lineage records `key` (what the pipeline does after training it). */
  async recordModel(key: string, overrides: Partial<ModelVersion> = {}): Promise<ModelVersion> {
    const n = ++this.seq;
    const mv: ModelVersion = {
      version: `pop-test-${n}`,
      algorithm: 'pop',
      params: {},
      status: 'ready',
      trainingData: { users: 1, items: 1, interactions: 1, events: 1, lastEventSeq: 0 },
      metrics: {},
      trainSeconds: 0,
      artifactPath: `models/pop-test-${n}.cairn`,
      checksum: 'sha256:none',
      configHash: 'test',
      parentVersion: null,
      createdAt: Date.now() + n,
      promotedAt: null,
      error: null,
      lineage: {
        trigger: {
          kind: key.startsWith('schedule')
            ? 'schedule'
            : key.startsWith('data_volume')
              ? 'data_volume'
              : 'manual',
          key,
          requestedBy: 'system',
          jobId: null,
        },
        data: { lastEventSeq: 0, newestEventAt: 0, trainingSetHash: '' },
        code: { version: 'test', commit: null },
        gate: null,
        drift: null,
        audit: [],
      },
      ...overrides,
    };
    await this.store.models.insert(mv);
    return mv;
  }

  async appendEvents(count: number): Promise<number> {
    const events = Array.from({ length: count }, () => {
      const n = ++this.seq;
      return {
        eventId: `e-${n}`,
        userId: `u${n % 3}`,
        itemId: `i${n % 5}`,
        type: 'view',
        value: null,
        timestamp: Date.now(),
        context: null,
      };
    });
    await this.eventLog.append(events);
    return this.eventLog.head();
  }

  jobs(): JobRow[] {
    return this.store.db
      .prepare<
        [],
        { id: string; status: string; payload: string; dedupe_key: string | null; created_at: number }
      >(
        `SELECT id, status, payload, dedupe_key, created_at FROM jobs WHERE name = 'train' ORDER BY created_at, id`,
      )
      .all()
      .map((r) => ({
        id: r.id,
        status: r.status,
        payload: JSON.parse(r.payload) as JobRow['payload'],
        dedupeKey: r.dedupe_key,
        createdAt: r.created_at,
      }));
  }

  async counts(): Promise<Record<string, number>> {
    const metric = this.metrics.registry.getSingleMetric(TRIGGERS_METRIC);
    const out: Record<string, number> = {};
    for (const v of (await metric!.get()).values) out[`${v.labels.trigger}/${v.labels.outcome}`] = v.value;
    return out;
  }

  async close(): Promise<void> {
    for (const c of this.closables) await c.close();
    await this.eventLog.close();
    await this.queue.close();
    await this.store.close();
    await rm(this.dir, { recursive: true, force: true });
  }
}

const ISO_SECOND = /^schedule:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/;

function keysOf(jobs: JobRow[]): string[] {
  return jobs.map((j) => j.payload.trigger?.key ?? '(none)');
}

let fixture: Fixture | null = null;
const open = async () => (fixture = await new Fixture().open());

afterEach(async () => {
  await fixture?.close();
  fixture = null;
});

describe('parseSchedule and the trigger keys', () => {
  it('accepts 5 and 6 fields and the empty string (no schedule)', () => {
    expect(parseSchedule('')).toBeNull();
    expect(parseSchedule('   ')).toBeNull();
    expect(
      parseSchedule('*/5 * * * *')!.nextRun(new Date('2026-01-01T00:05:00Z'))!.getTime(),
    ).toBeGreaterThan(new Date('2026-01-01T00:05:00Z').getTime());
    const everySecond = parseSchedule('* * * * * *')!;
    expect(everySecond.nextRun(new Date('2026-01-01T00:00:00.400Z'))!.toISOString()).toBe(
      '2026-01-01T00:00:01.000Z',
    );
  });

  it.each([
    ['not a cron', 'bogus'],
    ['4 fields', '* * * *'],
    ['7 fields (a year)', '0 0 0 * * * 2030'],
    ['out of range', '61 * * * *'],
    ['never fires', '0 0 30 2 *'],
  ])('rejects %s with CAIRN_CONFIG_INVALID naming training.schedule', (_what, expression) => {
    let caught: unknown;
    try {
      parseSchedule(expression);
    } catch (err) {
      caught = err;
    }
    expect(caught).toMatchObject({
      code: 'CAIRN_CONFIG_INVALID',
      details: { fields: [{ field: 'training.schedule' }] },
    });
  });

  it('a scheduler with an invalid schedule fails to build', async () => {
    const f = await open();
    expect(() => f.scheduler({ schedule: '* * *' })).toThrow(
      expect.objectContaining({ code: 'CAIRN_CONFIG_INVALID' }) as Error,
    );
  });

  it('keys: the scheduled time; the base and the number of whole multiples of N since it', () => {
    expect(scheduleKey(new Date('2026-12-01T10:00:00.000Z'))).toBe('schedule:2026-12-01T10:00:00.000Z');
    expect(dataVolumeKey(0, 99, 100)).toBeNull();
    expect(dataVolumeKey(0, 100, 100)).toBe('data_volume:0:1');
    expect(dataVolumeKey(0, 250, 100)).toBe('data_volume:0:2');
    expect(dataVolumeKey(300, 350, 100)).toBeNull();
    expect(dataVolumeKey(300, 400, 100)).toBe('data_volume:300:1');
    expect(dataVolumeKey(0, 1000, 0)).toBeNull();
  });
});

describe('TrainingScheduler: the schedule', () => {
  it('each fire of the cron enqueues exactly one train job, keyed by its scheduled time', async () => {
    const f = await open();
    const payloads: unknown[] = [];
    const runner = f.runner((payload) => {
      payloads.push(payload);
      return Promise.resolve({});
    });
    let woken = 0;
    const wake = runner.wake.bind(runner);
    runner.wake = () => {
      woken++;
      wake();
    };
    const s = new TrainingScheduler({
      config: loadConfig({ env: {}, overrides: { training: { schedule: '* * * * * *' } } }),
      registry: f.registry,
      jobs: f.queue,
      eventLog: f.eventLog,
      metrics: f.metrics,
      logger: f.logger,
      wake: () => runner.wake(),
    }).start();
    const firstFire = s.nextFire!;
    expect(firstFire.getMilliseconds()).toBe(0);

    const jobs = await eventually('three fires', () => {
      const all = f.jobs().filter((j) => j.status === 'succeeded');
      return all.length >= 3 ? all : null;
    });
    await s.close();

    const keys = keysOf(f.jobs());
    expect(new Set(keys).size, keys.join(', ')).toBe(keys.length);
    // The fire armed first; under load it can come due within start() itself (the second turned between
    // computing it and setting its timer), and then nextFire already names the one after it.
    expect([scheduleKey(new Date(firstFire.getTime() - 1000)), scheduleKey(firstFire)]).toContain(keys[0]);
    for (const [i, job] of jobs.entries()) {
      expect(job.payload).toEqual({
        trigger: { kind: 'schedule', key: keys[i] },
        requested_by: 'system',
        enqueued_by: s.id,
      });
      expect(job.payload.trigger!.key).toMatch(ISO_SECOND);
      // The key is the scheduled time: the job was created at or after it, within the second.
      const scheduled = Date.parse(job.payload.trigger!.key.slice('schedule:'.length));
      expect(job.createdAt).toBeGreaterThanOrEqual(scheduled);
      expect(job.createdAt - scheduled).toBeLessThan(1000);
      if (i > 0) expect(scheduled - Date.parse(keys[i - 1].slice('schedule:'.length))).toBe(1000);
    }
    expect(payloads.length).toBe(f.jobs().filter((j) => j.status === 'succeeded').length);
    expect(woken).toBeGreaterThanOrEqual(3);
    expect((await f.counts())['schedule/enqueued']).toBe(f.jobs().length);
  });

  it('two schedulers firing the same schedule make one job per fire key', async () => {
    const f = await open();
    // The pipeline's part: a model whose lineage records the trigger, registered before the job ends.
    f.runner(async (payload) => {
      await sleep(150);
      await f.recordModel(payload.trigger!.key!);
      return {};
    });
    const a = f.scheduler({ schedule: '* * * * * *' });
    const b = f.scheduler({ schedule: '* * * * * *' });
    expect(a.nextFire).toEqual(b.nextFire);

    await eventually('three trained fires', async () =>
      (await f.registry.list()).length >= 3 ? true : null,
    );
    await a.close();
    await b.close();

    const keys = keysOf(f.jobs());
    expect(keys.length).toBeGreaterThanOrEqual(3);
    expect(new Set(keys).size, `job keys: ${keys.join(', ')}`).toBe(keys.length);
    const modelKeys = (await f.registry.list()).map((mv) => mv.lineage!.trigger.key);
    expect(new Set(modelKeys).size, `model keys: ${modelKeys.join(', ')}`).toBe(modelKeys.length);
    // Both schedulers handled every fire: one of them enqueued it, the other found the job or the model.
    const counts = await f.counts();
    expect(counts['schedule/enqueued']).toBe(keys.length);
    // (The last fire may have come to one of them only, just before they closed.)
    const foundByTheOther = (counts['schedule/deduplicated'] ?? 0) + (counts['schedule/skipped'] ?? 0);
    expect(foundByTheOther).toBeGreaterThanOrEqual(keys.length - 1);
    expect(counts['schedule/error']).toBeUndefined();
  });

  it('a fire whose key a registered model already records is skipped', async () => {
    const f = await open();
    const s = f.scheduler({}, { start: false });
    const at = new Date('2026-12-01T10:00:00.000Z');
    await f.recordModel(scheduleKey(at));

    const skipped = await s.fire(at);
    expect(skipped).toMatchObject({ outcome: 'skipped', job: null });
    expect(f.jobs()).toEqual([]);

    const other = await s.fire(new Date('2026-12-01T11:00:00.000Z'));
    expect(other.outcome).toBe('enqueued');
    expect(keysOf(f.jobs())).toEqual(['schedule:2026-12-01T11:00:00.000Z']);
    expect(await f.counts()).toEqual({ 'schedule/skipped': 1, 'schedule/enqueued': 1 });
  });

  it('a fire while a scheduled training is unfinished is folded into it; the same key from another process finds its job', async () => {
    const f = await open();
    const a = f.scheduler({}, { start: false });
    const b = f.scheduler({}, { start: false });
    const t1 = new Date('2026-12-01T10:00:00.000Z');
    const first = await a.fire(t1);
    expect(first.outcome).toBe('enqueued');
    const again = await b.fire(t1);
    expect(again.outcome).toBe('deduplicated');
    expect(again.job!.id).toBe(first.job!.id);
    const later = await a.fire(new Date('2026-12-01T11:00:00.000Z'));
    expect(later.outcome).toBe('deduplicated');
    expect(later.job!.id).toBe(first.job!.id);
    expect(f.jobs()).toHaveLength(1);
  });

  it('a triggered job that fails for good is logged at error level with its id', async () => {
    const f = await open();
    const runner = f.runner(() => Promise.reject(new PermanentJobError('not enough data')));
    const s = f.scheduler({}, { start: false });
    const { job } = await s.fire(new Date('2026-12-01T10:00:00.000Z'));
    await runner.onIdle();
    await eventually('the job to fail', async () =>
      (await f.queue.get(job!.id))!.status === 'failed' ? true : null,
    );
    await s.watchJobs();
    const line = f.logLines.find((l) => l.msg === 'triggered training failed permanently');
    expect(line).toMatchObject({
      level: 'error',
      jobId: job!.id,
      key: 'schedule:2026-12-01T10:00:00.000Z',
      error: 'not enough data',
    });
  });
});

describe('TrainingScheduler: the data-volume trigger', () => {
  it('enqueues one training when N events arrived since the champion, and not again on the next checks', async () => {
    const f = await open();
    const s = f.scheduler({ retrainAfterEvents: 5, triggerCheckSeconds: 0.05 }, { start: false });
    await f.appendEvents(4);
    expect(await s.checkDataVolume()).toBeNull();
    expect(f.jobs()).toEqual([]);

    await f.appendEvents(1);
    const crossed = await s.checkDataVolume();
    expect(crossed).toMatchObject({
      outcome: 'enqueued',
      trigger: { kind: 'data_volume', key: 'data_volume:0:1' },
    });
    expect(f.jobs()).toHaveLength(1);
    expect(f.jobs()[0].payload).toEqual({
      trigger: { kind: 'data_volume', key: 'data_volume:0:1' },
      requested_by: 'system',
      enqueued_by: s.id,
    });

    // The periodic check sees the same crossing again and again: still one job.
    expect(await s.checkDataVolume()).toBeNull();
    s.start();
    await sleep(300);
    expect(f.jobs()).toHaveLength(1);
    expect(await f.counts()).toEqual({ 'data_volume/enqueued': 1 });
  });

  it('another process sees the same crossing: the same job; a further crossing waits for the unfinished one', async () => {
    const f = await open();
    const a = f.scheduler({ retrainAfterEvents: 5 }, { start: false });
    const b = f.scheduler({ retrainAfterEvents: 5 }, { start: false });
    await f.appendEvents(5);
    const first = await a.checkDataVolume();
    const second = await b.checkDataVolume();
    expect(first!.outcome).toBe('enqueued');
    expect(second).toMatchObject({ outcome: 'deduplicated', job: { id: first!.job!.id } });

    // Five more: key data_volume:0:2, but the training for base 0 is still queued.
    await f.appendEvents(5);
    const folded = await a.checkDataVolume();
    expect(folded).toMatchObject({ outcome: 'deduplicated', trigger: { key: 'data_volume:0:2' } });
    expect(folded!.job!.id).toBe(first!.job!.id);
    expect(f.jobs()).toHaveLength(1);

    // That training finishes with a model that is not promoted (the champion is unchanged)...
    const claimed = await f.queue.claim('test', ['train'], 1000);
    await f.recordModel('data_volume:0:1');
    await f.queue.complete(claimed!.job.id, 'test', {});
    // ...so the next multiple of N is a new trigger, trained once.
    const next = await a.checkDataVolume();
    expect(next).toMatchObject({ outcome: 'enqueued', trigger: { key: 'data_volume:0:2' } });
    expect(keysOf(f.jobs())).toEqual(['data_volume:0:1', 'data_volume:0:2']);
    expect(await a.checkDataVolume()).toBeNull();
    expect(f.jobs()).toHaveLength(2);
  });

  it('a new champion moves the base: the count starts again from its training watermark', async () => {
    const f = await open();
    const s = f.scheduler({ retrainAfterEvents: 5 }, { start: false });
    const head = await f.appendEvents(12);
    await f.recordModel('manual', {
      status: 'champion',
      trainingData: { users: 1, items: 1, interactions: 1, events: 1, lastEventSeq: head - 3 },
    });
    expect(await s.checkDataVolume()).toBeNull();
    await f.appendEvents(2);
    expect(await s.checkDataVolume()).toMatchObject({
      outcome: 'enqueued',
      trigger: { key: `data_volume:${head - 3}:1` },
    });
  });

  it('a model recording the crossing already: skipped', async () => {
    const f = await open();
    const s = f.scheduler({ retrainAfterEvents: 5 }, { start: false });
    await f.appendEvents(7);
    await f.recordModel('data_volume:0:1');
    expect(await s.checkDataVolume()).toMatchObject({ outcome: 'skipped', job: null });
    expect(f.jobs()).toEqual([]);
  });
});

describe('skipTrainedTriggers', () => {
  it('a job whose trigger another job already trained finishes without training; others run', async () => {
    const f = await open();
    const ran: string[] = [];
    const handler = skipTrainedTriggers(f.registry, (payload, ctx) => {
      ran.push(`${payload.trigger?.key ?? 'manual'}@${ctx.jobId}`);
      return Promise.resolve({ trained: true });
    });
    const trained = await f.recordModel('schedule:2026-12-01T10:00:00.000Z');
    const ctx = (jobId: string) => ({
      jobId,
      attempt: 1,
      progress: () => undefined,
      signal: new AbortController().signal,
      logger: f.logger,
    });
    const key = 'schedule:2026-12-01T10:00:00.000Z';

    expect(await handler({ trigger: { kind: 'schedule', key } }, ctx('job-2'))).toEqual({
      skipped: true,
      reason: 'trigger already trained',
      trigger_key: key,
      version: trained.version,
    });
    expect(ran).toEqual([]);
    expect(
      f.logLines.find((l) => l.msg === 'training skipped: another job already trained this trigger'),
    ).toMatchObject({
      level: 'warn',
      key,
    });

    // The job that trained it (a retry after its model was recorded), another key, a manual training: run.
    await f.store.models.update(trained.version, {
      lineage: { ...trained.lineage!, trigger: { ...trained.lineage!.trigger, jobId: 'job-1' } },
    });
    expect(await handler({ trigger: { kind: 'schedule', key } }, ctx('job-1'))).toEqual({ trained: true });
    const other = 'schedule:2026-12-01T11:00:00.000Z';
    expect(await handler({ trigger: { kind: 'schedule', key: other } }, ctx('job-3'))).toEqual({
      trained: true,
    });
    expect(await handler({}, ctx('job-4'))).toEqual({ trained: true });
    expect(ran).toEqual([`${key}@job-1`, `${other}@job-3`, 'manual@job-4']);
  });
});
