/**
 * The one conformance suite of the `JobQueue` port (src/jobs/contracts.ts). Every adapter runs it from
 * an integration test:
 *
 *   describeJobQueueConformance('sqlite', (peer) => (peer ? anotherHandleOn(peer) : freshQueue()), cleanup);
 *
 * `factory()` must return a fresh, empty queue whose retry backoff base is `JOB_QUEUE_CONFORMANCE_BACKOFF_MS`
 * and whose default `maxAttempts` is 3. `factory(peer)` must return a second handle onto the same queue as
 * `peer`, with its own connection, as a second worker process would have. The suite closes every handle
 * it gets; `cleanup` runs once after the whole suite (drop schemas, delete keys or files).
 *
 * Leases are short (hundreds of ms) and waits poll, so the suite takes seconds, not minutes. It tests what
 * every adapter promises; where BullMQ's model differs from the SQL tables (ordering across names, a
 * lease lost before anyone takes the job over, `runAt` outside a retry wait) nothing is asserted.
 */
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Job } from '../../domain/types.ts';
import { backoffMs, type ClaimedJob, type JobQueue } from '../../jobs/contracts.ts';
import { RICH_JSON, sleep } from './helpers.ts';

/** Backoff base (ms) the factory must give its adapters: small enough for a quick suite. */
export const JOB_QUEUE_CONFORMANCE_BACKOFF_MS = 250;

const BASE = JOB_QUEUE_CONFORMANCE_BACKOFF_MS;
/** A lease nobody outlives during a test. */
const LONG = 60_000;
/** A lease that expires within a test. */
const SHORT = 400;
/** Tolerated difference between this process's clock and the queue's (a database's clock, Redis TTLs). */
const SLACK = 150;

/** Waits until the clock has moved to the next millisecond, so creation times differ. */
async function nextMs(): Promise<void> {
  const t = Date.now();
  while (Date.now() === t) await sleep(1);
}

/** Polls `probe` until it returns a value (not null/undefined), failing after `timeoutMs`. */
async function eventually<T>(
  what: string,
  probe: () => Promise<T | null | undefined>,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== null && value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/**
 * A handle whose `close()` also runs `after`: adapters built on a store leave the store open (its owner
 * closes it), so a test factory that opened a store for the queue closes it here.
 */
export function closingAlso(queue: JobQueue, after: () => Promise<void>): JobQueue {
  return {
    kind: queue.kind,
    enqueue: (name, payload, options) => queue.enqueue(name, payload, options),
    get: (id) => queue.get(id),
    claim: (owner, names, leaseMs) => queue.claim(owner, names, leaseMs),
    heartbeat: (id, owner, leaseMs, progress) => queue.heartbeat(id, owner, leaseMs, progress),
    complete: (id, owner, result) => queue.complete(id, owner, result),
    fail: (id, owner, error, permanent) => queue.fail(id, owner, error, permanent),
    close: async () => {
      try {
        await queue.close();
      } finally {
        await after();
      }
    },
  };
}

export function describeJobQueueConformance(
  name: string,
  factory: (peer?: JobQueue) => Promise<JobQueue>,
  cleanup?: () => Promise<void>,
): void {
  describe(`JobQueue conformance: ${name}`, () => {
    let handles: JobQueue[] = [];
    let q: JobQueue;

    /** Another handle on `q`'s queue (another worker process). */
    const peer = async (): Promise<JobQueue> => {
      const h = await factory(q);
      handles.push(h);
      return h;
    };

    beforeEach(async () => {
      q = await factory();
      handles = [q];
    });

    afterEach(async () => {
      // Peers first: a peer may share resources its original owns.
      for (const h of handles.reverse()) await h.close();
    });

    if (cleanup) afterAll(cleanup);

    describe('enqueue and get', () => {
      it('stores a queued job with no attempt yet and the payload intact', async () => {
        const before = Date.now();
        const job = await q.enqueue('alpha', RICH_JSON);
        const after = Date.now();
        expect(typeof q.kind).toBe('string');
        expect(job).toMatchObject({
          name: 'alpha',
          status: 'queued',
          progress: 0,
          result: null,
          error: null,
          attempts: 0,
          maxAttempts: 3,
          owner: null,
          leaseUntil: null,
          dedupeKey: null,
        });
        expect(job.payload).toEqual(RICH_JSON);
        expect(job.id).toEqual(expect.any(String));
        expect(job.createdAt).toBeGreaterThanOrEqual(before - SLACK);
        expect(job.createdAt).toBeLessThanOrEqual(after + SLACK);
        expect(job.runAt).toBeLessThanOrEqual(after + SLACK);
        expect(await q.get(job.id)).toEqual(job);
        const other = await q.enqueue('alpha', RICH_JSON);
        expect(other.id).not.toBe(job.id);
      });

      it('honours maxAttempts and refuses a count below one', async () => {
        expect((await q.enqueue('alpha', {}, { maxAttempts: 5 })).maxAttempts).toBe(5);
        await expect(q.enqueue('alpha', {}, { maxAttempts: 0 })).rejects.toMatchObject({
          code: 'CAIRN_VALIDATION',
        });
      });

      it('answers null, false or null for jobs it does not know', async () => {
        expect(await q.get('no-such-job')).toBeNull();
        expect(await q.get('alpha.8f2e1c4a-0000-4000-8000-000000000000')).toBeNull();
        expect(await q.heartbeat('no-such-job', 'w1', LONG)).toBe(false);
        expect(await q.complete('no-such-job', 'w1', {})).toBe(false);
        expect(await q.fail('no-such-job', 'w1', 'x', false)).toBeNull();
      });
    });

    describe('claim', () => {
      it('takes the oldest runnable job among the names asked for, each job once', async () => {
        const a = await q.enqueue('alpha', { n: 1 });
        await nextMs();
        const b = await q.enqueue('beta', { n: 2 });
        await nextMs();
        const c = await q.enqueue('alpha', { n: 3 });

        expect(await q.claim('w1', [], LONG)).toBeNull();
        expect(await q.claim('w1', ['gamma'], LONG)).toBeNull();
        const before = Date.now();
        const first = (await q.claim('w1', ['alpha'], LONG))!;
        const after = Date.now();
        expect(first.owner).toBe('w1');
        expect(first.job).toMatchObject({
          id: a.id,
          name: 'alpha',
          payload: { n: 1 },
          status: 'running',
          owner: 'w1',
          attempts: 1,
          leaseUntil: first.leaseUntil,
        });
        expect(first.leaseUntil).toBeGreaterThanOrEqual(before + LONG - SLACK);
        expect(first.leaseUntil).toBeLessThanOrEqual(after + LONG + SLACK);
        const stored = (await q.get(a.id))!;
        expect(stored).toMatchObject({ status: 'running', owner: 'w1', attempts: 1 });
        expect(Math.abs(stored.leaseUntil! - first.leaseUntil)).toBeLessThanOrEqual(SLACK);

        expect((await q.claim('w2', ['alpha'], LONG))!.job.id).toBe(c.id);
        expect(await q.claim('w1', ['alpha'], LONG)).toBeNull();
        expect((await q.claim('w1', ['beta', 'alpha'], LONG))!.job).toMatchObject({ id: b.id, owner: 'w1' });
        expect(await q.claim('w3', ['alpha', 'beta'], LONG)).toBeNull();
      });

      it('never hands one job to two claimers, on one handle or two', async () => {
        const other = await peer();
        const ids: string[] = [];
        for (let i = 0; i < 12; i++) ids.push((await q.enqueue('alpha', { i })).id);
        const claimers = [q, other, q, other].map(async (h, k) => {
          const got: string[] = [];
          for (;;) {
            const claimed = await h.claim(`w${k}`, ['alpha'], LONG);
            if (!claimed) return got;
            expect(claimed.owner).toBe(`w${k}`);
            got.push(claimed.job.id);
          }
        });
        const claimed = (await Promise.all(claimers)).flat();
        expect([...claimed].sort()).toEqual([...ids].sort());
      });
    });

    describe('leases', () => {
      it('heartbeat renews the lease and records progress; another owner is refused', async () => {
        const job = await q.enqueue('alpha', {});
        const claimed = (await q.claim('w1', ['alpha'], SHORT))!;
        expect(await q.heartbeat(job.id, 'intruder', SHORT, 0.9)).toBe(false);
        expect(await q.heartbeat(job.id, 'w1', SHORT, 0.5)).toBe(true);
        expect((await q.get(job.id))!.progress).toBe(0.5);

        // Renewed every 100 ms, the lease outlives its first 400 ms: nobody else can take the job.
        const other = await peer();
        const until = Date.now() + 3 * SHORT;
        while (Date.now() < until) {
          expect(await q.heartbeat(job.id, 'w1', SHORT)).toBe(true);
          expect(await other.claim('w2', ['alpha'], SHORT)).toBeNull();
          await sleep(100);
        }
        const stored = (await q.get(job.id))!;
        expect(stored).toMatchObject({ status: 'running', owner: 'w1', attempts: 1, progress: 0.5 });
        expect(stored.leaseUntil!).toBeGreaterThan(claimed.leaseUntil + 2 * SHORT);
      });

      it('a job whose lease expired is taken over by another owner, and the old owner is out', async () => {
        const other = await peer();
        const job = await q.enqueue('alpha', { work: 1 });
        // w1 claims and never heartbeats: its worker died.
        const dead = (await q.claim('w1', ['alpha'], SHORT))!;
        const taken = await eventually('the takeover', () => other.claim('w2', ['alpha'], LONG));
        expect(Date.now()).toBeGreaterThanOrEqual(dead.leaseUntil - SLACK);
        expect(taken.job).toMatchObject({
          id: job.id,
          status: 'running',
          owner: 'w2',
          attempts: 2,
          payload: { work: 1 },
        });

        expect(await q.heartbeat(job.id, 'w1', SHORT)).toBe(false);
        expect(await q.complete(job.id, 'w1', { stale: true })).toBe(false);
        expect(await q.fail(job.id, 'w1', 'stale', false)).toBeNull();
        expect(await q.get(job.id)).toMatchObject({ status: 'running', owner: 'w2', attempts: 2 });

        expect(await other.complete(job.id, 'w2', { ok: true })).toBe(true);
        expect(await q.get(job.id)).toMatchObject({ status: 'succeeded', result: { ok: true } });
      });

      it('a job whose lease expired with no attempt left fails instead of running again', async () => {
        const other = await peer();
        const job = await q.enqueue('alpha', {}, { maxAttempts: 1 });
        await q.claim('w1', ['alpha'], SHORT);
        const failed = await eventually('the job to fail', async () => {
          expect(await other.claim('w2', ['alpha'], LONG)).toBeNull();
          const seen = (await other.get(job.id))!;
          return seen.status === 'failed' ? seen : null;
        });
        expect(failed).toMatchObject({ status: 'failed', attempts: 1, owner: null, leaseUntil: null });
        expect(failed.error).toEqual(expect.any(String));
        expect(await q.complete(job.id, 'w1', {})).toBe(false);
        expect(await q.get(job.id)).toMatchObject({ status: 'failed' });
      });
    });

    describe('outcomes', () => {
      it('complete stores the result once; another owner and a finished job are refused', async () => {
        const job = await q.enqueue('alpha', {});
        await q.claim('w1', ['alpha'], LONG);
        await q.heartbeat(job.id, 'w1', LONG, 0.25);
        expect(await q.complete(job.id, 'w2', { nope: true })).toBe(false);
        expect(await q.get(job.id)).toMatchObject({ status: 'running', owner: 'w1', result: null });

        expect(await q.complete(job.id, 'w1', RICH_JSON)).toBe(true);
        const done = (await q.get(job.id))!;
        expect(done).toMatchObject({
          status: 'succeeded',
          progress: 1,
          error: null,
          owner: null,
          leaseUntil: null,
          attempts: 1,
        });
        expect(done.result).toEqual(RICH_JSON);

        expect(await q.complete(job.id, 'w1', {})).toBe(false);
        expect(await q.heartbeat(job.id, 'w1', LONG)).toBe(false);
        expect(await q.fail(job.id, 'w1', 'late', false)).toBeNull();
        expect(await q.claim('w1', ['alpha'], LONG)).toBeNull();
        expect((await q.get(job.id))!.result).toEqual(RICH_JSON);
      });

      it('a retryable failure queues the job again, claimable once its backoff has passed', async () => {
        const job = await q.enqueue('alpha', { retry: true }, { maxAttempts: 3 });
        await q.claim('w1', ['alpha'], LONG);
        expect(await q.fail(job.id, 'w2', 'not yours', false)).toBeNull();

        const before = Date.now();
        const failed = (await q.fail(job.id, 'w1', 'boom', false))!;
        const after = Date.now();
        expect(failed).toMatchObject({
          id: job.id,
          status: 'queued',
          attempts: 1,
          error: 'boom',
          owner: null,
          leaseUntil: null,
        });
        expect(failed.runAt).toBeGreaterThanOrEqual(before + backoffMs(1, BASE) - SLACK);
        expect(failed.runAt).toBeLessThanOrEqual(after + backoffMs(1, BASE) + SLACK);
        expect(await q.get(job.id)).toMatchObject({ status: 'queued', runAt: failed.runAt });
        expect(await q.claim('w1', ['alpha'], LONG)).toBeNull();

        const again: ClaimedJob = await eventually('the retry', () => q.claim('w2', ['alpha'], LONG));
        expect(Date.now()).toBeGreaterThanOrEqual(failed.runAt - SLACK);
        expect(again.job).toMatchObject({ id: job.id, owner: 'w2', attempts: 2, payload: { retry: true } });

        // The next wait doubles.
        const before2 = Date.now();
        const second = (await q.fail(job.id, 'w2', 'boom again', false))!;
        expect(second).toMatchObject({ status: 'queued', attempts: 2, error: 'boom again' });
        expect(second.runAt).toBeGreaterThanOrEqual(before2 + backoffMs(2, BASE) - SLACK);
        expect(second.runAt).toBeLessThanOrEqual(Date.now() + backoffMs(2, BASE) + SLACK);
      });

      it('a retryable failure with no attempt left is final', async () => {
        const job = await q.enqueue('alpha', {}, { maxAttempts: 2 });
        await q.claim('w1', ['alpha'], LONG);
        expect((await q.fail(job.id, 'w1', 'broken', false))!.status).toBe('queued');
        await eventually('the retry', () => q.claim('w1', ['alpha'], LONG));
        const last = (await q.fail(job.id, 'w1', 'still broken', false))!;
        expect(last).toMatchObject({
          status: 'failed',
          attempts: 2,
          error: 'still broken',
          owner: null,
          leaseUntil: null,
        });
        await sleep(backoffMs(2, BASE) + 50);
        expect(await q.claim('w1', ['alpha'], LONG)).toBeNull();
        expect(await q.get(job.id)).toMatchObject({ status: 'failed', error: 'still broken' });
      });

      it('a permanent failure is final at once', async () => {
        const job = await q.enqueue('alpha', {}, { maxAttempts: 3 });
        await q.claim('w1', ['alpha'], LONG);
        expect(await q.fail(job.id, 'w2', 'not yours', true)).toBeNull();
        const failed = (await q.fail(job.id, 'w1', 'bad input', true))!;
        expect(failed).toMatchObject({
          id: job.id,
          status: 'failed',
          attempts: 1,
          error: 'bad input',
          owner: null,
        });
        await sleep(backoffMs(1, BASE) + 50);
        expect(await q.claim('w1', ['alpha'], LONG)).toBeNull();
        expect(await q.get(job.id)).toEqual(failed);
      });
    });

    describe('dedupeKey', () => {
      it('returns the unfinished job holding the key, and queues a new one once it finished', async () => {
        const first = await q.enqueue('beta', { n: 1 }, { dedupeKey: 'k' });
        expect(first.dedupeKey).toBe('k');
        const same = await q.enqueue('beta', { n: 2 }, { dedupeKey: 'k' });
        expect(same.id).toBe(first.id);
        expect(same.payload).toEqual({ n: 1 });
        const otherKey = await q.enqueue('alpha', { n: 3 }, { dedupeKey: 'k2' });
        expect(otherKey.id).not.toBe(first.id);
        const [plain1, plain2] = [await q.enqueue('alpha', {}), await q.enqueue('alpha', {})];
        expect(plain1.id).not.toBe(plain2.id);

        // Running is unfinished too.
        expect((await q.claim('w1', ['beta'], LONG))!.job.id).toBe(first.id);
        expect((await q.enqueue('beta', { n: 4 }, { dedupeKey: 'k' })).id).toBe(first.id);

        expect(await q.complete(first.id, 'w1', {})).toBe(true);
        const next = await q.enqueue('beta', { n: 5 }, { dedupeKey: 'k' });
        expect(next.id).not.toBe(first.id);
        expect(next).toMatchObject({ status: 'queued', dedupeKey: 'k', payload: { n: 5 } });
        expect((await q.get(first.id))!.status).toBe('succeeded');

        // A failed job frees its key as well.
        expect((await q.claim('w1', ['beta'], LONG))!.job.id).toBe(next.id);
        await q.fail(next.id, 'w1', 'bad', true);
        const third = await q.enqueue('beta', { n: 6 }, { dedupeKey: 'k' });
        expect([first.id, next.id]).not.toContain(third.id);
      });

      it('two handles enqueueing one key at once get one job', async () => {
        const other = await peer();
        const jobs: Job[] = await Promise.all([
          q.enqueue('beta', { from: 'q' }, { dedupeKey: 'race' }),
          other.enqueue('beta', { from: 'other' }, { dedupeKey: 'race' }),
          q.enqueue('beta', { from: 'q' }, { dedupeKey: 'race' }),
        ]);
        expect(new Set(jobs.map((j) => j.id)).size).toBe(1);
        expect(await q.claim('w1', ['beta'], LONG)).not.toBeNull();
        expect(await q.claim('w1', ['beta'], LONG)).toBeNull();
      });
    });
  });
}
