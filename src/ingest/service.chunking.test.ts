/**
 * A large event batch is validated in chunks with a loop turn between them, so other requests are served
 * while it is checked; outcomes are the same as in one go. On the real SQLite event log (in memory).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { countLoopTurns } from '../../test/fixtures/loop-turns.ts';
import { loadConfig } from '../config/load.ts';
import { systemContext } from '../domain/context.ts';
import { createLogger } from '../monitoring/logger.ts';
import { createMetrics } from '../monitoring/metrics.ts';
import { SqliteEventLog } from '../storage/sqlite/log.ts';
import { SqliteStore } from '../storage/sqlite/store.ts';
import { createIngestService, VALIDATE_CHUNK } from './service.ts';

let store: SqliteStore;
let eventLog: SqliteEventLog;

beforeEach(async () => {
  store = new SqliteStore({ path: ':memory:' });
  await store.migrate();
  eventLog = new SqliteEventLog(store);
});

afterEach(async () => {
  await eventLog.close();
  await store.close();
});

describe('ingesting a large batch', () => {
  it('gives the event loop a turn between chunks of validation and keeps every outcome in order', async () => {
    const config = loadConfig({ env: {} });
    const ingest = createIngestService({
      eventLog,
      config,
      metrics: createMetrics({ defaultMetrics: false }),
      logger: createLogger('silent'),
    });
    const n = 10 * VALIDATE_CHUNK;
    const now = Date.now();
    // Every 7th event has an unknown type: rejected in place, the others accepted.
    const batch = Array.from({ length: n }, (_, i) => ({
      event_id: `e${i}`,
      user_id: `u${i % 50}`,
      item_id: `i${i % 20}`,
      type: i % 7 === 0 ? 'teleport' : 'view',
      timestamp: now - 1000,
    }));

    const turns = countLoopTurns();
    const outcomes = await ingest.ingestEvents(systemContext(), batch);
    turns.stop();

    // One turn per chunk boundary at least (without chunking the whole batch is checked in one turn).
    expect(turns.count).toBeGreaterThanOrEqual(n / VALIDATE_CHUNK - 1);
    expect(outcomes.map((o) => o.index)).toEqual(batch.map((_, i) => i));
    expect(outcomes.map((o) => o.status)).toEqual(
      batch.map((e) => (e.type === 'teleport' ? 'rejected' : 'accepted')),
    );
    expect(outcomes.filter((o) => o.status === 'rejected').map((o) => o.eventId)).toEqual(
      batch.filter((e) => e.type === 'teleport').map((e) => e.event_id),
    );
  });
});
