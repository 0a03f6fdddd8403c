import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { systemContext } from '../domain/context.ts';
import type { Job } from '../domain/types.ts';
import { CairnError } from '../errors/errors.ts';
import { createLogger } from '../monitoring/logger.ts';
import { SqliteJobQueue } from '../storage/sqlite/job-queue.ts';
import { SqliteStore } from '../storage/sqlite/store.ts';
import {
  createJobService,
  isPermanent,
  JobRunner,
  PermanentJobError,
  type JobRunnerOptions,
} from './runner.ts';

const logger = createLogger('silent');
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function eventually<T>(
  what: string,
  probe: () => Promise<T | null | undefined>,
  timeoutMs = 5000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== null && value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** Resolves when `signal` aborts (or after `ms`, so a broken runner fails the test instead of hanging it). */
function aborted(signal: AbortSignal, ms = 5000): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

describe('JobRunner on the SQLite job queue', () => {
  let dir: string;
  let store: SqliteStore;
  let queue: SqliteJobQueue;
  let runners: JobRunner[];

  const runner = (options: Partial<JobRunnerOptions> = {}) => {
    const r = new JobRunner({ queue, logger, leaseMs: 600, pollMs: 50, progressIntervalMs: 0, ...options });
    runners.push(r);
    return r;
  };
  const job = async (id: string): Promise<Job> => (await queue.get(id))!;
  const settled = (id: string) =>
    eventually(`job ${id} to finish`, async () => {
      const j = await job(id);
      return j.status === 'succeeded' || j.status === 'failed' ? j : null;
    });

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cairn-runner-'));
    store = new SqliteStore({ path: join(dir, 'jobs.db') });
    await store.migrate();
    queue = new SqliteJobQueue(store, { backoffBaseMs: 20 });
    runners = [];
  });

  afterEach(async () => {
    for (const r of runners) await r.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('runs a job to success, recording its progress, owner and result', async () => {
    const r = runner();
    let during: Job | null = null;
    r.register('train', async (payload, ctx) => {
      ctx.progress(0.5);
      during = await eventually('progress', async () => {
        const j = await job(ctx.jobId);
        return j.progress === 0.5 ? j : null;
      });
      return { algorithm: payload.algorithm ?? 'none', attempt: ctx.attempt };
    });
    const queued = await queue.enqueue('train', { algorithm: 'als' });
    r.start();
    await r.onIdle();
    expect(during).toMatchObject({ status: 'running', owner: r.owner, attempts: 1 });
    expect(await job(queued.id)).toMatchObject({
      status: 'succeeded',
      progress: 1,
      result: { algorithm: 'als', attempt: 1 },
      error: null,
      attempts: 1,
    });
  });

  it('retries a retryable failure after the backoff, then succeeds', async () => {
    const r = runner();
    let calls = 0;
    r.register('train', () => {
      calls++;
      if (calls === 1) return Promise.reject(new CairnError('CAIRN_UNAVAILABLE', 'database is down'));
      return Promise.resolve({ calls });
    });
    const queued = await queue.enqueue('train', {}, { maxAttempts: 3 });
    r.start();
    expect(await settled(queued.id)).toMatchObject({
      status: 'succeeded',
      attempts: 2,
      result: { calls: 2 },
    });
  });

  it('fails at once on a permanent error, and gives up on a retryable one after maxAttempts', async () => {
    const r = runner();
    r.register('train', (payload) => {
      if (payload.algorithm === 'bad') return Promise.reject(new PermanentJobError('bad input'));
      if (payload.algorithm === 'empty') {
        return Promise.reject(new CairnError('CAIRN_NOT_ENOUGH_DATA', 'training needs more interactions'));
      }
      return Promise.reject(new Error('flaky'));
    });
    const bad = await queue.enqueue('train', { algorithm: 'bad' }, { maxAttempts: 3 });
    const empty = await queue.enqueue('train', { algorithm: 'empty' }, { maxAttempts: 3 });
    const flaky = await queue.enqueue('train', { algorithm: 'flaky' }, { maxAttempts: 2 });
    r.start();
    expect(await settled(bad.id)).toMatchObject({ status: 'failed', attempts: 1, error: 'bad input' });
    expect(await settled(empty.id)).toMatchObject({ status: 'failed', attempts: 1 });
    expect(await settled(flaky.id)).toMatchObject({ status: 'failed', attempts: 2, error: 'flaky' });
  });

  it('keeps a job past its lease with heartbeats, so no other worker takes it', async () => {
    const r = runner({ leaseMs: 300 });
    r.register('train', async (_payload, ctx) => {
      await sleep(1000);
      return { interrupted: ctx.signal.aborted };
    });
    const queued = await queue.enqueue('train', {});
    r.start();
    await eventually('the claim', async () => ((await job(queued.id)).status === 'running' ? true : null));
    for (let i = 0; i < 8; i++) {
      expect(await queue.claim('thief', ['train'], 300)).toBeNull();
      await sleep(100);
    }
    expect(await settled(queued.id)).toMatchObject({
      status: 'succeeded',
      attempts: 1,
      result: { interrupted: false },
    });
  });

  it('aborts the handler when its lease is lost, and drops its result', async () => {
    const r = runner({ leaseMs: 300 });
    let signal: AbortSignal | null = null;
    r.register('train', async (_payload, ctx) => {
      signal = ctx.signal;
      await aborted(ctx.signal);
      return { late: true };
    });
    const queued = await queue.enqueue('train', {});
    r.start();
    await eventually('the claim', async () => ((await job(queued.id)).status === 'running' ? true : null));
    // Another worker took the job over (as after a pause longer than the lease), for a long lease.
    store.db
      .prepare("UPDATE jobs SET owner = 'thief', lease_until = ? WHERE id = ?")
      .run(Date.now() + 60_000, queued.id);
    await eventually('the abort', () => Promise.resolve(signal?.aborted ? true : null));
    await r.onIdle();
    expect(await job(queued.id)).toMatchObject({ status: 'running', owner: 'thief', result: null });
  });

  it('takes over a job whose worker died, once its lease ran out', async () => {
    const queued = await queue.enqueue('train', { algorithm: 'als' });
    const dead = (await queue.claim('dead-worker', ['train'], 200))!;
    const r = runner();
    r.register('train', (_payload, ctx) => Promise.resolve({ attempt: ctx.attempt }));
    r.start();
    const done = await settled(queued.id);
    expect(done).toMatchObject({ status: 'succeeded', attempts: 2, result: { attempt: 2 } });
    expect(done.updatedAt).toBeGreaterThanOrEqual(dead.leaseUntil);
  });

  it('close() aborts the running job and queues it again for another worker', async () => {
    const r = runner();
    let sawAbort = false;
    r.register('train', async (_payload, ctx) => {
      await aborted(ctx.signal);
      sawAbort = ctx.signal.aborted;
      throw new PermanentJobError('a handler may throw anything once aborted');
    });
    const queued = await queue.enqueue('train', {}, { maxAttempts: 3 });
    r.start();
    await eventually('the claim', async () => ((await job(queued.id)).status === 'running' ? true : null));
    await r.close();
    expect(sawAbort).toBe(true);
    expect(await job(queued.id)).toMatchObject({ status: 'queued', attempts: 1, owner: null });
    await r.onIdle(); // resolves at once after close
  });

  it('wake() starts a queued job without waiting for the poll interval', async () => {
    const r = runner({ pollMs: 60_000 });
    r.register('train', () => Promise.resolve({ ok: true }));
    r.start();
    await r.onIdle(); // the first claim found nothing; the runner now waits a minute
    const queued = await queue.enqueue('train', {});
    r.wake();
    expect(await settled(queued.id)).toMatchObject({ status: 'succeeded' });
  });

  it('keeps going when the queue cannot be reached, and runs the job once it can', async () => {
    let down = true;
    const flaky: SqliteJobQueue = Object.create(queue) as SqliteJobQueue;
    flaky.claim = (...args) =>
      down ? Promise.reject(new CairnError('CAIRN_UNAVAILABLE', 'database is locked')) : queue.claim(...args);
    const r = new JobRunner({ queue: flaky, logger, leaseMs: 600, pollMs: 20 });
    runners.push(r);
    r.register('train', () => Promise.resolve({ ok: true }));
    const queued = await queue.enqueue('train', {});
    r.start();
    await sleep(100);
    expect((await job(queued.id)).status).toBe('queued');
    down = false;
    expect(await settled(queued.id)).toMatchObject({ status: 'succeeded' });
  });

  it('refuses to start without handlers, and to register once started', () => {
    const r = runner();
    expect(() => r.start()).toThrow(expect.objectContaining({ code: 'CAIRN_INTERNAL' }));
    r.register('train', () => Promise.resolve({}));
    r.start();
    expect(() => r.register('train', () => Promise.resolve({}))).toThrow(
      expect.objectContaining({ code: 'CAIRN_INTERNAL' }),
    );
  });
});

describe('createJobService', () => {
  it('reads jobs from the queue and answers CAIRN_JOB_NOT_FOUND for unknown ids', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cairn-jobservice-'));
    const store = new SqliteStore({ path: join(dir, 'jobs.db') });
    try {
      await store.migrate();
      const queue = new SqliteJobQueue(store);
      const service = createJobService(queue);
      const queued = await queue.enqueue('train', { algorithm: 'ease' });
      expect(await service.get(systemContext(), queued.id)).toEqual(queued);
      await expect(service.get(systemContext(), 'missing')).rejects.toMatchObject({
        code: 'CAIRN_JOB_NOT_FOUND',
      });
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('isPermanent', () => {
  it('is true for PermanentJobError and client-caused CairnErrors only', () => {
    expect(isPermanent(new PermanentJobError('x'))).toBe(true);
    expect(isPermanent(new CairnError('CAIRN_VALIDATION', 'x'))).toBe(true);
    expect(isPermanent(new CairnError('CAIRN_NOT_ENOUGH_DATA', 'x'))).toBe(true);
    expect(isPermanent(new CairnError('CAIRN_UNAVAILABLE', 'x'))).toBe(false);
    expect(isPermanent(new Error('x'))).toBe(false);
    expect(isPermanent('x')).toBe(false);
  });
});
