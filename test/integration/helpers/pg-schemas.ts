/**
 * PostgreSQL stores for a conformance suite: one fresh schema per store (`cairn_test_<tag>_<random>_<n>`,
 * so test files can run in parallel), every one dropped by `dropAll`. Registers a `beforeAll` probe, so
 * an unreachable server fails the file instead of skipping it. Server: `CAIRN_TEST_POSTGRES_URL`,
 * default postgres://postgres@127.0.0.1:5432/test.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { beforeAll } from 'vitest';
import { loadConfig } from '../../../src/config/load.ts';
import { openStore } from '../../../src/storage/open.ts';
import type { Store } from '../../../src/storage/ports.ts';

export function postgresStores(tag: string): { open: () => Promise<Store>; dropAll: () => Promise<void> } {
  const url = process.env.CAIRN_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const prefix = `cairn_test_${tag}_${randomBytes(4).toString('hex')}`;
  const schemas: string[] = [];
  beforeAll(async () => {
    const probe = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
    await probe.connect();
    await probe.end();
  });
  return {
    open: () => {
      const schema = `${prefix}_${schemas.length}`;
      schemas.push(schema);
      return openStore(loadConfig({ env: {}, overrides: { store: { url, schema } } }));
    },
    dropAll: async () => {
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      try {
        for (const s of schemas.splice(0)) await admin.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
      } finally {
        await admin.end();
      }
    },
  };
}
