/**
 * Runs the JobQueue conformance suite against the BullMQ adapter on the real Redis
 * (`CAIRN_TEST_REDIS_URL`, default redis://127.0.0.1:6379). Each test uses its own key prefix, and every
 * key under this run's prefixes is deleted afterwards; nothing else in the database is touched. A peer
 * handle is a second adapter (its own connections and stalled checker) on the same prefix, as a second
 * worker process would be. An unreachable server fails the file.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobQueue } from '../../src/jobs/contracts.ts';
import {
  describeJobQueueConformance,
  JOB_QUEUE_CONFORMANCE_BACKOFF_MS,
} from '../../src/storage/conformance/job-queue.conformance.ts';
import { BullJobQueue } from '../../src/storage/redis/job-queue.ts';

const url = process.env.CAIRN_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const run = `cairn-test-jobs-${randomBytes(4).toString('hex')}`;
const prefixOf = new WeakMap<JobQueue, string>();
let n = 0;

function open(prefix: string): Promise<JobQueue> {
  const queue = new BullJobQueue({
    url,
    prefix,
    backoffBaseMs: JOB_QUEUE_CONFORMANCE_BACKOFF_MS,
    // Leases in the suite last 400 ms: look for expired ones often.
    stalledIntervalMs: 100,
    connectTimeoutMs: 5000,
  });
  prefixOf.set(queue, prefix);
  return Promise.resolve(queue);
}

/** Deletes every key this run created (and only those). */
async function deleteRunKeys(): Promise<void> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${run}-*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await redis.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

beforeAll(async () => {
  // Fail loudly (not skip) when the server is not there.
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  try {
    await probe.connect();
    expect(await probe.ping()).toBe('PONG');
  } finally {
    probe.disconnect();
  }
});

afterAll(deleteRunKeys);

describeJobQueueConformance('bullmq', (peer) => open(peer ? prefixOf.get(peer)! : `${run}-${n++}:bull`));

describe('BullMQ job queue', () => {
  it('keeps its keys under its prefix, one BullMQ queue per job name', async () => {
    const prefix = `${run}-keys:bull`;
    const queue = await open(prefix);
    const redis = new Redis(url);
    try {
      const job = await queue.enqueue('alpha', { x: 1 });
      expect(job.id.startsWith('alpha.')).toBe(true);
      const keys = await redis.keys(`${prefix}:*`);
      expect(keys).toContain(`${prefix}:jobs.alpha:${job.id.slice('alpha.'.length)}`);
      expect(keys.every((k) => k.startsWith(`${prefix}:jobs.alpha:`))).toBe(true);
    } finally {
      await queue.close();
      redis.disconnect();
    }
  });

  it('refuses job names that cannot be a BullMQ queue name', async () => {
    const queue = await open(`${run}-names:bull`);
    try {
      await expect(queue.enqueue('a:b', {})).rejects.toMatchObject({ code: 'CAIRN_VALIDATION' });
      await expect(queue.claim('w1', ['a.b'], 1000)).rejects.toMatchObject({ code: 'CAIRN_VALIDATION' });
    } finally {
      await queue.close();
    }
  });

  it('reports an unreachable server as CAIRN_UNAVAILABLE', async () => {
    const queue = new BullJobQueue({
      url: 'redis://127.0.0.1:1',
      prefix: `${run}-down:bull`,
      connectTimeoutMs: 300,
    });
    try {
      await expect(queue.enqueue('alpha', {})).rejects.toMatchObject({ code: 'CAIRN_UNAVAILABLE' });
      await expect(queue.get('alpha.x')).rejects.toMatchObject({ code: 'CAIRN_UNAVAILABLE' });
      await expect(queue.claim('w1', ['alpha'], 1000)).rejects.toMatchObject({ code: 'CAIRN_UNAVAILABLE' });
    } finally {
      await queue.close();
    }
  });
});
