import Database from 'better-sqlite3';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { configureConnection, withoutSync } from './db.ts';

let dir: string | null = null;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = null;
});

describe('withoutSync', () => {
  it('commits at synchronous NORMAL and gives the connection its own level back, also when the write throws', async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-db-'));
    const path = join(dir, 'x.db');
    const db = new Database(path);
    configureConnection(db, { synchronous: 'FULL', busyTimeoutMs: 1000 });
    db.exec('CREATE TABLE t (v INTEGER)');
    const level = () => db.pragma('synchronous', { simple: true });
    const during = withoutSync(db, () => {
      db.prepare('INSERT INTO t VALUES (1)').run();
      return level();
    });
    expect(during).toBe(1); // NORMAL
    expect(level()).toBe(2); // FULL again
    expect(() =>
      withoutSync(db, () => {
        throw new Error('refused');
      }),
    ).toThrow('refused');
    expect(level()).toBe(2);
    // Committed: another connection sees it.
    const other = new Database(path, { readonly: true });
    expect(other.prepare('SELECT count(*) AS n FROM t').get()).toEqual({ n: 1 });
    other.close();
    db.close();
  });
});
