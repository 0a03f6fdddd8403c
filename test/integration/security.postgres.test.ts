/**
 * Runs the keys, audit and settings conformance suite against the real PostgreSQL
 * (`CAIRN_TEST_POSTGRES_URL`, default postgres://postgres@127.0.0.1:5432/test), one schema per test,
 * all dropped afterwards. An unreachable server fails the file.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { beforeAll } from 'vitest';
import { loadConfig } from '../../src/config/load.ts';
import { describeSecurityConformance } from '../../src/storage/conformance/security.conformance.ts';
import { openStore } from '../../src/storage/open.ts';

const url = process.env.CAIRN_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const prefix = `cairn_test_sec_${randomBytes(4).toString('hex')}`;
const schemas: string[] = [];

beforeAll(async () => {
  const probe = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await probe.connect();
  await probe.end();
});

describeSecurityConformance(
  'postgres',
  () => {
    const schema = `${prefix}_${schemas.length}`;
    schemas.push(schema);
    return openStore(loadConfig({ env: {}, overrides: { store: { url, schema } } }));
  },
  async () => {
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      for (const s of schemas.splice(0)) await admin.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
    } finally {
      await admin.end();
    }
  },
);
