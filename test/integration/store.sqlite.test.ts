/**
 * Runs the Store conformance suite against SQLite files (one fresh file per test, all under one temp
 * directory removed afterwards), plus what only the SQLite adapter and openStore() promise.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.ts';
import { describeStoreConformance } from '../../src/storage/conformance/store.conformance.ts';
import { openStore, storeLocation } from '../../src/storage/open.ts';
import { SQLITE_MIGRATIONS } from '../../src/storage/sqlite/migrations.ts';
import { SqliteStore } from '../../src/storage/sqlite/store.ts';

const dir = mkdtempSync(join(tmpdir(), 'cairn-store-sqlite-'));
let n = 0;
const configFor = (url: string, dataDir = dir) =>
  loadConfig({ env: {}, overrides: { dataDir, store: { url } } });

describeStoreConformance(
  'sqlite',
  () => openStore(configFor(`sqlite://${join(dir, `conformance-${n++}.db`)}`)),
  () => rm(dir, { recursive: true, force: true }),
);

describe('SQLite adapter and openStore', () => {
  const own = mkdtempSync(join(tmpdir(), 'cairn-store-open-'));
  afterAll(() => rmSync(own, { recursive: true, force: true }));

  it('defaults to ${dataDir}/cairn.db, creating the directory', async () => {
    const dataDir = join(own, 'nested', 'data');
    const store = await openStore(configFor('', dataDir));
    try {
      expect(store.kind).toBe('sqlite');
      await store.events.append([
        { eventId: 'e', userId: 'u', itemId: 'i', type: 'view', value: null, timestamp: 1, context: null },
      ]);
    } finally {
      await store.close();
    }
    expect(existsSync(join(dataDir, 'cairn.db'))).toBe(true);
  });

  it('resolves relative sqlite:// paths against the working directory and accepts :memory:', async () => {
    const file = join(own, 'rel', 'x.db');
    const url = `sqlite://${relative(process.cwd(), file)}`;
    expect(storeLocation(configFor(url))).toEqual({ kind: 'sqlite', path: file });
    const store = await openStore(configFor(url));
    await store.close();
    expect(existsSync(file)).toBe(true);

    const mem = await openStore(configFor('sqlite://:memory:'));
    try {
      await mem.items.upsert([{ id: 'a' }]);
      expect(await mem.items.count()).toBe(1);
    } finally {
      await mem.close();
    }
  });

  it('rejects unknown schemes with CAIRN_CONFIG_INVALID naming store.url, without echoing secrets', async () => {
    for (const url of ['mysql://root:s3cret@db/x', 'sqlite://', 'data/cairn.db']) {
      let caught: unknown;
      try {
        await openStore(configFor(url));
      } catch (e) {
        caught = e;
      }
      expect(caught).toMatchObject({
        code: 'CAIRN_CONFIG_INVALID',
        details: { fields: [{ field: 'store.url' }] },
      });
      expect((caught as Error).message).not.toContain('s3cret');
    }
  });

  it('recognises postgres:// and postgresql:// URLs with the configured schema', () => {
    const cfg = loadConfig({
      env: {},
      overrides: { store: { url: 'postgresql://u@h/db', schema: 'tenant_a' } },
    });
    expect(storeLocation(cfg)).toEqual({ kind: 'postgres', url: 'postgresql://u@h/db', schema: 'tenant_a' });
    expect(storeLocation(configFor('postgres://u@h/db')).kind).toBe('postgres');
  });

  it('persists across reopen, in WAL mode, with each migration recorded once', async () => {
    const file = join(own, 'persist.db');
    const a = new SqliteStore({ path: file });
    const b = new SqliteStore({ path: file });
    // Two connections migrating the same new file: one applies, the other finds nothing to do.
    await Promise.all([a.migrate(), b.migrate()]);
    await a.events.append([
      { eventId: 'e1', userId: 'u', itemId: 'i', type: 'view', value: 2, timestamp: 5, context: { k: 'v' } },
    ]);
    expect(await b.events.count()).toBe(1);
    await a.close();
    await b.close();

    const reopened = await openStore(configFor(`sqlite://${file}`));
    try {
      expect((await reopened.events.forUser('u', 1))[0]).toMatchObject({
        eventId: 'e1',
        value: 2,
        context: { k: 'v' },
      });
    } finally {
      await reopened.close();
    }
    const raw = new Database(file, { readonly: true });
    try {
      expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
      const versions = raw.prepare('SELECT version FROM schema_migrations ORDER BY version').pluck().all();
      expect(versions).toEqual(SQLITE_MIGRATIONS.map((m) => m.version));
    } finally {
      raw.close();
    }
  });
});
