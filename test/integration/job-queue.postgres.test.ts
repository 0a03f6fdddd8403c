/**
 * Runs the JobQueue conformance suite against the real PostgreSQL (`CAIRN_TEST_POSTGRES_URL`, default
 * postgres://postgres@127.0.0.1:5432/test). Each test gets its own schema, all dropped afterwards; a
 * peer handle is a second pool on the same schema, as a second worker process would have. An
 * unreachable server fails the file.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobQueue } from '../../src/jobs/contracts.ts';
import {
  closingAlso,
  describeJobQueueConformance,
  JOB_QUEUE_CONFORMANCE_BACKOFF_MS,
} from '../../src/storage/conformance/job-queue.conformance.ts';
import { PostgresJobQueue } from '../../src/storage/postgres/job-queue.ts';
import { PostgresStore } from '../../src/storage/postgres/store.ts';

const url = process.env.CAIRN_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const prefix = `cairn_test_jobs_${randomBytes(4).toString('hex')}`;
const schemas: string[] = [];
const schemaOf = new WeakMap<JobQueue, string>();
let n = 0;

function freshSchema(): string {
  const schema = `${prefix}_${n++}`;
  schemas.push(schema);
  return schema;
}

async function open(schema: string): Promise<JobQueue> {
  const store = new PostgresStore({ url, schema, maxConnections: 4 });
  try {
    await store.migrate();
  } catch (e) {
    await store.close();
    throw e;
  }
  const queue = closingAlso(
    new PostgresJobQueue(store, { backoffBaseMs: JOB_QUEUE_CONFORMANCE_BACKOFF_MS }),
    () => store.close(),
  );
  schemaOf.set(queue, schema);
  return queue;
}

beforeAll(async () => {
  // Fail loudly (not skip) when the server is not there.
  const probe = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await probe.connect();
  await probe.end();
});

afterAll(async () => {
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    for (const s of schemas.splice(0)) await admin.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
  } finally {
    await admin.end();
  }
});

describeJobQueueConformance('postgres', (peer) => open(peer ? schemaOf.get(peer)! : freshSchema()));

describe('PostgreSQL job queue', () => {
  it('reports an unreachable server as CAIRN_UNAVAILABLE', async () => {
    const store = new PostgresStore({ url: 'postgres://postgres@127.0.0.1:1/test', schema: freshSchema() });
    const queue = new PostgresJobQueue(store);
    try {
      await expect(queue.enqueue('alpha', {})).rejects.toMatchObject({ code: 'CAIRN_UNAVAILABLE' });
      await expect(queue.claim('w1', ['alpha'], 1000)).rejects.toMatchObject({ code: 'CAIRN_UNAVAILABLE' });
    } finally {
      await queue.close();
      await store.close();
    }
  });

  it('many workers on separate pools claim every job exactly once', async () => {
    const schema = freshSchema();
    const queues = await Promise.all(Array.from({ length: 4 }, () => open(schema)));
    try {
      const ids = new Set<string>();
      for (let i = 0; i < 60; i++) ids.add((await queues[0].enqueue('alpha', { i })).id);
      const runs = queues.flatMap((q, k) =>
        [0, 1].map(async (j) => {
          const got: string[] = [];
          for (;;) {
            const claimed = await q.claim(`w${k}.${j}`, ['alpha'], 60_000);
            if (!claimed) return got;
            got.push(claimed.job.id);
            expect(await q.complete(claimed.job.id, `w${k}.${j}`, { by: k })).toBe(true);
          }
        }),
      );
      const claimed = (await Promise.all(runs)).flat();
      expect(claimed.length).toBe(ids.size);
      expect(new Set(claimed)).toEqual(ids);
    } finally {
      await Promise.all(queues.map((q) => q.close()));
    }
  });
});
