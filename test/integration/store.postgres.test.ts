/**
 * Runs the Store conformance suite against the real PostgreSQL (`CAIRN_TEST_POSTGRES_URL`, default
 * postgres://postgres@127.0.0.1:5432/test). Each test gets its own schema `cairn_test_<random>_<n>`,
 * all dropped afterwards, so test files can run in parallel. An unreachable server fails the file.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.ts';
import { describeStoreConformance } from '../../src/storage/conformance/store.conformance.ts';
import { openStore } from '../../src/storage/open.ts';
import { POSTGRES_MIGRATIONS } from '../../src/storage/postgres/migrations.ts';
import { PostgresStore } from '../../src/storage/postgres/store.ts';

const url = process.env.CAIRN_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const prefix = `cairn_test_${randomBytes(4).toString('hex')}`;
const schemas: string[] = [];
let n = 0;

function freshSchema(): string {
  const schema = `${prefix}_${n++}`;
  schemas.push(schema);
  return schema;
}

async function dropSchemas(): Promise<void> {
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    for (const s of schemas.splice(0)) await admin.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
  } finally {
    await admin.end();
  }
}

beforeAll(async () => {
  // Fail loudly (not skip) when the server is not there.
  const probe = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await probe.connect();
  await probe.end();
});

afterAll(dropSchemas);

describeStoreConformance('postgres', () =>
  openStore(loadConfig({ env: {}, overrides: { store: { url, schema: freshSchema() } } })),
);

describe('PostgreSQL adapter', () => {
  it('lets several processes migrate one new schema at once, and keeps every table inside it', async () => {
    const schema = freshSchema();
    const stores = Array.from({ length: 4 }, () => new PostgresStore({ url, schema, maxConnections: 2 }));
    try {
      await Promise.all(stores.map((s) => s.migrate()));
      await Promise.all(stores.map((s) => s.migrate()));
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      try {
        const versions = await admin.query<{ version: number }>(
          `SELECT version FROM "${schema}".schema_migrations ORDER BY version`,
        );
        expect(versions.rows.map((r) => r.version)).toEqual(POSTGRES_MIGRATIONS.map((m) => m.version));
        const tables = await admin.query<{ table_name: string }>(
          'SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name',
          [schema],
        );
        expect(tables.rows.map((r) => r.table_name)).toEqual([
          'api_keys',
          'artifact_chunks',
          'artifacts',
          'audit_log',
          'changes',
          'consumer_offsets',
          'events',
          'experiments',
          'feedback',
          'items',
          'jobs',
          'models',
          'schema_migrations',
          'served',
          'settings',
          'users',
        ]);
      } finally {
        await admin.end();
      }
      // Appends from separate pools on the same schema: each event stored once, seqs in commit order.
      const batches = stores.map((_, k) =>
        Array.from({ length: 400 }, (_, i) => ({
          eventId: `e${k * 200 + i}`,
          userId: `u${i % 7}`,
          itemId: `i${i}`,
          type: 'view',
          value: null,
          timestamp: 1000 + i,
          context: null,
        })),
      );
      const outcomes = await Promise.all(stores.map((s, k) => s.events.append(batches[k])));
      const unique = new Set(batches.flat().map((e) => e.eventId)).size;
      expect(outcomes.flat().filter((o) => o === 'inserted').length).toBe(unique);
      expect(await stores[0].events.count()).toBe(unique);
      expect(typeof (await stores[1].events.lastSeq())).toBe('number');
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  it('reports an unreachable server as CAIRN_UNAVAILABLE', async () => {
    const store = new PostgresStore({ url: 'postgres://postgres@127.0.0.1:1/test', schema: freshSchema() });
    try {
      await expect(store.ping()).rejects.toMatchObject({ code: 'CAIRN_UNAVAILABLE' });
      await expect(store.migrate()).rejects.toMatchObject({ code: 'CAIRN_UNAVAILABLE' });
    } finally {
      await store.close();
    }
  });

  it('openStore fails with CAIRN_UNAVAILABLE (and releases its pool) when the server cannot be reached', async () => {
    const config = loadConfig({
      env: {},
      overrides: { store: { url: 'postgresql://postgres@127.0.0.1:1/test', schema: freshSchema() } },
    });
    await expect(openStore(config)).rejects.toMatchObject({ code: 'CAIRN_UNAVAILABLE' });
  });

  it('refuses a schema name that is not a plain identifier', () => {
    expect(() => new PostgresStore({ url, schema: 'x"; DROP TABLE y; --' })).toThrow(
      expect.objectContaining({ code: 'CAIRN_CONFIG_INVALID' }),
    );
  });
});
