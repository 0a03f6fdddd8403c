/**
 * Runs the JobQueue conformance suite against the SQLite adapter (one fresh file per test, all under one
 * temp directory removed afterwards). A peer handle opens the same file through its own connection, as a
 * second process would.
 */
import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { JobQueue } from '../../src/jobs/contracts.ts';
import {
  closingAlso,
  describeJobQueueConformance,
  JOB_QUEUE_CONFORMANCE_BACKOFF_MS,
} from '../../src/storage/conformance/job-queue.conformance.ts';
import { SqliteJobQueue } from '../../src/storage/sqlite/job-queue.ts';
import { SqliteStore } from '../../src/storage/sqlite/store.ts';

const dir = mkdtempSync(join(tmpdir(), 'cairn-jobs-sqlite-'));
const files = new WeakMap<JobQueue, string>();
let n = 0;

async function open(path: string, backoffBaseMs = JOB_QUEUE_CONFORMANCE_BACKOFF_MS): Promise<JobQueue> {
  const store = new SqliteStore({ path });
  await store.migrate();
  const queue = closingAlso(new SqliteJobQueue(store, { backoffBaseMs }), () => store.close());
  files.set(queue, path);
  return queue;
}

describeJobQueueConformance('sqlite', (peer) => open(peer ? files.get(peer)! : join(dir, `jobs-${n++}.db`)));

describe('SQLite job queue', () => {
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('keeps jobs, leases and attempts across a restart of the process', async () => {
    const path = join(dir, 'restart.db');
    const before = await open(path);
    const job = await before.enqueue('alpha', { keep: true }, { dedupeKey: 'once', maxAttempts: 4 });
    const claimed = (await before.claim('w1', ['alpha'], 60_000))!;
    await before.close();

    const after = await open(path);
    try {
      expect(await after.get(job.id)).toMatchObject({
        status: 'running',
        owner: 'w1',
        attempts: 1,
        maxAttempts: 4,
        leaseUntil: claimed.leaseUntil,
        dedupeKey: 'once',
        payload: { keep: true },
      });
      expect((await after.enqueue('alpha', {}, { dedupeKey: 'once' })).id).toBe(job.id);
      expect(await after.complete(job.id, 'w1', { done: 1 })).toBe(true);
    } finally {
      await after.close();
    }
  });

  it('uses the backoff base it was given', async () => {
    const queue = await open(join(dir, 'backoff.db'), 60_000);
    try {
      const job = await queue.enqueue('alpha', {});
      await queue.claim('w1', ['alpha'], 60_000);
      const before = Date.now();
      const failed = (await queue.fail(job.id, 'w1', 'x', false))!;
      expect(failed.runAt - before).toBeGreaterThanOrEqual(59_000);
      expect(failed.runAt - before).toBeLessThanOrEqual(61_000);
    } finally {
      await queue.close();
    }
  });
});
