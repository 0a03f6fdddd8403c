/** Runs the experiments and served-log conformance suite against SQLite files (one fresh file per test). */
import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/load.ts';
import { describeExperimentsConformance } from '../../src/storage/conformance/experiments.conformance.ts';
import { openStore } from '../../src/storage/open.ts';
import { SqliteStore } from '../../src/storage/sqlite/store.ts';
import { describe, expect, it } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), 'cairn-experiments-sqlite-'));
let n = 0;

describeExperimentsConformance(
  'sqlite',
  () =>
    openStore(
      loadConfig({
        env: {},
        overrides: { dataDir: dir, store: { url: `sqlite://${join(dir, `x-${n++}.db`)}` } },
      }),
    ),
  () => rm(dir, { recursive: true, force: true }),
);

describe('sqlite served log thread', () => {
  const record = (n: number) => ({
    requestId: `r${n}`,
    mode: 'served' as const,
    userId: `u${n % 7}`,
    endpoint: 'recommendations' as const,
    experimentId: null,
    variant: null,
    modelVersion: null,
    source: 'fallback' as const,
    items: [{ itemId: `i${n}`, position: 0, score: 1 }],
    at: n,
  });

  it('commits served records on its own connection, never on the service’s event-loop connection', async () => {
    const own = mkdtempSync(join(tmpdir(), 'cairn-served-thread-'));
    const store = new SqliteStore({ path: join(own, 'served.db') });
    try {
      await store.migrate();
      const prepared: string[] = [];
      const original = store.db.prepare.bind(store.db);
      store.db.prepare = (sql: string) => {
        prepared.push(sql);
        return original(sql);
      };
      // Several batches in flight at once, then close: every batch is committed before the thread ends.
      const writes = [0, 1, 2].map((b) => store.served.record([1, 2, 3].map((n) => record(b * 10 + n))));
      await Promise.all(writes);
      expect(prepared.some((sql) => sql.includes('INSERT INTO served'))).toBe(false);
      expect((await store.served.get('r23'))?.userId).toBe('u2');
      const last = store.served.record([record(99)]);
      await store.close();
      await last;
      const reopened = new SqliteStore({ path: join(own, 'served.db') });
      expect((await reopened.served.get('r99'))?.userId).toBe('u1');
      await reopened.close();
      await expect(store.served.record([record(100)])).rejects.toMatchObject({ code: 'CAIRN_UNAVAILABLE' });
    } finally {
      await store.close();
      await rm(own, { recursive: true, force: true });
    }
  });
});
