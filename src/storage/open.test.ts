/**
 * Durability of what `openStore` opens: SQLite syncs each commit as `store.synchronous` says (power-loss
 * durable by default), and Cairn leaves PostgreSQL's `synchronous_commit` on.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig, type DeepPartial } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { openStore } from './open.ts';
import type { Store } from './ports.ts';
import { PostgresStore } from './postgres/store.ts';
import { SqliteStore } from './sqlite/store.ts';

const PG_URL = process.env.CAIRN_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
/** SQLite's numbering of `PRAGMA synchronous`. */
const SYNC = { normal: 1, full: 2 } as const;

describe('openStore: SQLite synchronous', () => {
  let dir: string;
  let store: Store | undefined;
  const open = async (overrides: DeepPartial<Config> = {}) =>
    (store = await openStore(loadConfig({ env: {}, overrides: { dataDir: dir, ...overrides } })));
  const pragma = (s: Store, name: string) => (s as SqliteStore).db.pragma(name, { simple: true });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-open-'));
  });
  afterEach(async () => {
    await store?.close();
    store = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  it('is FULL by default: an acknowledged write survives power loss', async () => {
    const s = await open();
    expect(s).toBeInstanceOf(SqliteStore);
    expect(pragma(s, 'synchronous')).toBe(SYNC.full);
    expect(pragma(s, 'journal_mode')).toBe('wal');
  });

  it.each(['full', 'normal'] as const)('follows store.synchronous = %s', async (synchronous) => {
    const s = await open({ store: { synchronous } });
    expect(pragma(s, 'synchronous')).toBe(SYNC[synchronous]);
  });

  it('reads store.synchronous from the environment', async () => {
    store = await openStore(
      loadConfig({ env: { CAIRN_STORE_SYNCHRONOUS: 'normal' }, overrides: { dataDir: dir } }),
    );
    expect(pragma(store, 'synchronous')).toBe(SYNC.normal);
  });

  it('defaults to FULL when built without the option', () => {
    const s = new SqliteStore({ path: ':memory:' });
    try {
      expect(s.db.pragma('synchronous', { simple: true })).toBe(SYNC.full);
    } finally {
      void s.close();
    }
  });
});

describe('openStore: PostgreSQL', () => {
  const schema = `cairn_open_${randomBytes(4).toString('hex')}`;

  afterAll(async () => {
    const admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    try {
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    } finally {
      await admin.end();
    }
  });

  it("keeps synchronous_commit on: a commit returns once it is in the server's WAL on disk", async () => {
    const store = await openStore(loadConfig({ env: {}, overrides: { store: { url: PG_URL, schema } } }));
    try {
      expect(store).toBeInstanceOf(PostgresStore);
      // Every pooled connection the store hands out, not only the first.
      const db = (store as PostgresStore).db;
      const settings = await Promise.all(
        Array.from({ length: 3 }, () =>
          db.tx(
            async (c) =>
              (await c.query<{ v: string }>('SELECT current_setting($1) AS v', ['synchronous_commit']))
                .rows[0].v,
          ),
        ),
      );
      expect(settings).toEqual(['on', 'on', 'on']);
    } finally {
      await store.close();
    }
  });
});
