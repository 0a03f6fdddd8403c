/**
 * ServedLogWriter against a real SQLite served log: batches reach the store, a full buffer drops and
 * counts, a store that refuses a batch (closed) counts it failed and serving never sees an error, and
 * close() writes what is still buffered.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ServedRecord } from '../domain/types.ts';
import { createLogger } from '../monitoring/logger.ts';
import { createMetrics, type Metrics } from '../monitoring/metrics.ts';
import { SqliteStore } from '../storage/sqlite/store.ts';
import { ServedLogWriter } from './served-log.ts';

const logger = createLogger('silent');

const record = (n: number): ServedRecord => ({
  requestId: `r${n}`,
  userId: `u${n % 7}`,
  mode: 'served',
  endpoint: 'recommendations',
  experimentId: null,
  variant: null,
  modelVersion: 'v1',
  source: 'personalized',
  items: [
    { itemId: `i${n}`, position: 0, score: 0.9 },
    { itemId: `i${n + 1}`, position: 1, score: 0.5 },
  ],
  at: 1_700_000_000_000 + n,
});

async function outcomes(metrics: Metrics): Promise<Record<string, number>> {
  const values = (await metrics.registry.getSingleMetric('cairn_served_log_records_total')!.get()).values;
  return Object.fromEntries(values.map((v) => [String(v.labels.outcome), v.value]));
}

describe('ServedLogWriter', () => {
  let store: SqliteStore;
  let metrics: Metrics;
  let writer: ServedLogWriter | null = null;

  beforeEach(async () => {
    store = new SqliteStore({ path: ':memory:' });
    await store.migrate();
    metrics = createMetrics({ defaultMetrics: false });
  });

  afterEach(async () => {
    await writer?.close();
    writer = null;
    await store.close().catch(() => undefined);
  });

  it('writes records in batches and counts them written', async () => {
    writer = new ServedLogWriter(store.served, metrics, logger, { batchSize: 4, flushMs: 10_000 });
    for (let n = 0; n < 10; n++) writer.write(record(n));
    expect(writer.pending).toBe(10);
    await writer.flush();
    expect(writer.pending).toBe(0);
    const stored = await store.served.get('r3');
    expect(stored).toEqual(record(3));
    expect((await store.served.list({ limit: 100 })).length).toBe(10);
    expect(await outcomes(metrics)).toEqual({ written: 10, dropped: 0, failed: 0 });
  });

  it('flushes by itself on its timer', async () => {
    writer = new ServedLogWriter(store.served, metrics, logger, { flushMs: 20 });
    writer.write(record(1));
    for (let i = 0; i < 200 && (await store.served.get('r1')) === null; i++)
      await new Promise((r) => setTimeout(r, 10));
    expect(await store.served.get('r1')).not.toBeNull();
  });

  it('drops records beyond the buffer bound and counts them', async () => {
    writer = new ServedLogWriter(store.served, metrics, logger, {
      maxBuffer: 5,
      batchSize: 100,
      flushMs: 10_000,
    });
    for (let n = 0; n < 8; n++) writer.write(record(n));
    expect(writer.pending).toBe(5);
    await writer.flush();
    expect(await outcomes(metrics)).toEqual({ written: 5, dropped: 3, failed: 0 });
    expect(await store.served.get('r4')).not.toBeNull();
    expect(await store.served.get('r5')).toBeNull();
  });

  it('counts a batch the store refuses as failed, without throwing to the writer', async () => {
    writer = new ServedLogWriter(store.served, metrics, logger, { batchSize: 3, flushMs: 10_000 });
    await store.close();
    for (let n = 0; n < 7; n++) expect(() => writer!.write(record(n))).not.toThrow();
    await expect(writer.flush()).resolves.toBeUndefined();
    expect(writer.pending).toBe(0);
    expect(await outcomes(metrics)).toEqual({ written: 0, dropped: 0, failed: 7 });
  });

  it('close() writes what is buffered; writes after it are dropped', async () => {
    writer = new ServedLogWriter(store.served, metrics, logger, { flushMs: 10_000 });
    writer.write(record(1));
    writer.write(record(2));
    await writer.close();
    expect(await store.served.get('r2')).not.toBeNull();
    writer.write(record(3));
    expect(await outcomes(metrics)).toEqual({ written: 2, dropped: 1, failed: 0 });
  });
});
