/**
 * Runs the ArtifactStore conformance suite on the files adapter (a fresh directory per test) and on
 * PostgreSQL (`CAIRN_TEST_POSTGRES_URL`, default postgres://postgres@127.0.0.1:5432/test; a fresh schema
 * per test, all dropped afterwards), plus what only each adapter promises, and the model registry on
 * PostgreSQL artifacts. An unreachable PostgreSQL fails the file.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/monitoring/logger.ts';
import { sha256, type StoredModel } from '../../src/registry/artifacts.ts';
import { ModelRegistry } from '../../src/registry/registry.ts';
import { describeArtifactStoreConformance } from '../../src/storage/conformance/artifacts.conformance.ts';
import { FileArtifactStore } from '../../src/storage/files/artifacts.ts';
import { ARTIFACT_CHUNK_BYTES, PostgresArtifactStore } from '../../src/storage/postgres/artifacts.ts';
import { PostgresStore } from '../../src/storage/postgres/store.ts';

const url = process.env.CAIRN_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const prefix = `cairn_test_${randomBytes(4).toString('hex')}`;
const schemas: string[] = [];
const stores: PostgresStore[] = [];
let n = 0;

/** A migrated PostgresStore on a schema of its own, closed and dropped after the file. */
async function freshPostgres(): Promise<PostgresStore> {
  const schema = `${prefix}_${n++}`;
  schemas.push(schema);
  const store = new PostgresStore({ url, schema, maxConnections: 5 });
  stores.push(store);
  await store.migrate();
  return store;
}

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  // Fail loudly (not skip) when the server is not there.
  const probe = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await probe.connect();
  await probe.end();
});

afterAll(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
  await admin(async (c) => {
    for (const s of schemas.splice(0)) await c.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
  });
});

const filesDir = mkdtempSync(join(tmpdir(), 'cairn-artifacts-'));
let f = 0;

describeArtifactStoreConformance(
  'files',
  () => Promise.resolve(new FileArtifactStore({ root: join(filesDir, `conformance-${f++}`, 'root') })),
  () => rm(filesDir, { recursive: true, force: true }),
);

/** Closes the store's pool with the adapter, so each conformance test returns its connections at once. */
class OwningPostgresArtifactStore extends PostgresArtifactStore {
  constructor(private readonly owner: PostgresStore) {
    super(owner.db);
  }

  override async close(): Promise<void> {
    await super.close();
    await this.owner.close();
  }
}

describeArtifactStoreConformance(
  'postgres',
  async () => new OwningPostgresArtifactStore(await freshPostgres()),
);

describe('files adapter', () => {
  const own = mkdtempSync(join(tmpdir(), 'cairn-artifacts-files-'));
  afterAll(() => rm(own, { recursive: true, force: true }));
  let k = 0;
  const fresh = () => {
    const parent = join(own, `t${k++}`);
    return { parent, store: new FileArtifactStore({ root: join(parent, 'root') }) };
  };

  it('maps a key to the same relative path under the root, creating the root on first write', async () => {
    const { parent, store } = fresh();
    expect(await store.list('')).toEqual([]);
    await expect(store.get('models/v1.cairn')).rejects.toMatchObject({ code: 'CAIRN_NOT_FOUND' });
    expect(existsSync(store.root)).toBe(false);
    await store.put('models/v1.cairn', Buffer.from('model'));
    expect(readdirSync(join(parent, 'root', 'models'))).toEqual(['v1.cairn']); // no temp file left behind
  });

  it('writes nothing outside the root for keys that try to escape it', async () => {
    const { parent, store } = fresh();
    await store.put('inside', Buffer.from('ok'));
    for (const key of ['../x', '../../x', 'a/../../x', `${parent}/x`, '/tmp/x']) {
      await expect(store.put(key, Buffer.from('evil'))).rejects.toMatchObject({ code: 'CAIRN_VALIDATION' });
    }
    expect(await readdir(parent)).toEqual(['root']);
    expect(await readdir(join(parent, 'root'))).toEqual(['inside']);
  });

  it('lists only artifacts: temp files and foreign names are not keys', async () => {
    const { store } = fresh();
    await store.put('models/v1.cairn', Buffer.from('model'));
    await writeFile(join(store.root, 'models', '.0123abcd.tmp'), 'half-written');
    await writeFile(join(store.root, 'models', 'has space'), 'foreign');
    await mkdir(join(store.root, 'empty-dir'));
    expect(await store.list('')).toEqual(['models/v1.cairn']);
    expect(await store.exists('empty-dir')).toBe(false);
  });

  it('removes directories a delete left empty, never the root', async () => {
    const { store } = fresh();
    await store.put('a/b/c/one', Buffer.from('1'));
    await store.put('a/two', Buffer.from('2'));
    expect(await store.delete('a/b/c/one')).toBe(true);
    expect(await readdir(join(store.root, 'a'))).toEqual(['two']);
    expect(await store.delete('a/two')).toBe(true);
    expect(await readdir(store.root)).toEqual([]);
  });
});

describe('PostgreSQL adapter', () => {
  it('stores a header row and 1 MiB chunks, and replaces the chunks on overwrite', async () => {
    const store = await freshPostgres();
    const artifacts = new PostgresArtifactStore(store.db);
    const bytes = randomBytes(3 * ARTIFACT_CHUNK_BYTES + 1);
    await artifacts.put('models/v1.cairn', bytes);
    await artifacts.put('models/empty', Buffer.alloc(0));
    const chunks = () =>
      admin((c) =>
        c.query<{ key: string; n: number; len: number }>(
          `SELECT key, n, length(data) AS len FROM "${store.schema}".artifact_chunks ORDER BY key, n`,
        ),
      );
    expect((await chunks()).rows).toEqual([
      { key: 'models/v1.cairn', n: 0, len: ARTIFACT_CHUNK_BYTES },
      { key: 'models/v1.cairn', n: 1, len: ARTIFACT_CHUNK_BYTES },
      { key: 'models/v1.cairn', n: 2, len: ARTIFACT_CHUNK_BYTES },
      { key: 'models/v1.cairn', n: 3, len: 1 },
    ]);
    const headers = await admin((c) =>
      c.query(`SELECT key, checksum, bytes::int AS bytes FROM "${store.schema}".artifacts ORDER BY key`),
    );
    expect(headers.rows).toEqual([
      { key: 'models/empty', checksum: sha256(Buffer.alloc(0)), bytes: 0 },
      { key: 'models/v1.cairn', checksum: sha256(bytes), bytes: bytes.length },
    ]);
    await artifacts.put('models/v1.cairn', Buffer.from('short'));
    expect((await chunks()).rows).toEqual([{ key: 'models/v1.cairn', n: 0, len: 5 }]);
    expect(await artifacts.delete('models/v1.cairn')).toBe(true);
    expect((await chunks()).rows).toEqual([]);
  });

  it('refuses to return damaged or incomplete bytes (CAIRN_INTERNAL)', async () => {
    const store = await freshPostgres();
    const artifacts = new PostgresArtifactStore(store.db);
    const table = `"${store.schema}".artifact_chunks`;
    await artifacts.put('flipped', randomBytes(2 * ARTIFACT_CHUNK_BYTES + 10));
    await admin((c) =>
      c.query(`UPDATE ${table} SET data = set_byte(data, 5, (get_byte(data, 5) + 1) % 256)
               WHERE key = 'flipped' AND n = 1`),
    );
    await expect(artifacts.get('flipped')).rejects.toMatchObject({ code: 'CAIRN_INTERNAL' });

    await artifacts.put('gap', randomBytes(2 * ARTIFACT_CHUNK_BYTES + 10));
    await admin((c) => c.query(`DELETE FROM ${table} WHERE key = 'gap' AND n = 1`));
    await expect(artifacts.get('gap')).rejects.toMatchObject({ code: 'CAIRN_INTERNAL' });

    await artifacts.put('short', randomBytes(100));
    await admin((c) =>
      c.query(`UPDATE ${table} SET data = substring(data from 1 for 50) WHERE key = 'short'`),
    );
    await expect(artifacts.get('short')).rejects.toMatchObject({ code: 'CAIRN_INTERNAL' });
  });

  it('keeps the old bytes when a put fails half-way', async () => {
    const store = await freshPostgres();
    const artifacts = new PostgresArtifactStore(store.db);
    const old = randomBytes(ARTIFACT_CHUNK_BYTES + 1);
    await artifacts.put('k', old);
    // A trigger fails the second chunk's insert, after the header was rewritten and the old chunks
    // deleted in the same transaction: all of it must roll back.
    await admin((c) =>
      c.query(`CREATE FUNCTION "${store.schema}".boom() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN IF NEW.n = 1 THEN RAISE EXCEPTION 'disk on fire'; END IF; RETURN NEW; END $$;
               CREATE TRIGGER boom BEFORE INSERT ON "${store.schema}".artifact_chunks
               FOR EACH ROW EXECUTE FUNCTION "${store.schema}".boom();`),
    );
    await expect(artifacts.put('k', randomBytes(2 * ARTIFACT_CHUNK_BYTES))).rejects.toThrow(/disk on fire/);
    expect((await artifacts.get('k')).equals(old)).toBe(true);
  });

  it('reports an unreachable server as CAIRN_UNAVAILABLE', async () => {
    const store = new PostgresStore({
      url: 'postgres://postgres@127.0.0.1:1/test',
      schema: 'cairn_unreachable',
      connectionTimeoutMs: 2000,
    });
    const artifacts = new PostgresArtifactStore(store.db);
    try {
      const calls = [
        () => artifacts.put('k', Buffer.from('x')),
        () => artifacts.get('k'),
        () => artifacts.exists('k'),
        () => artifacts.delete('k'),
        () => artifacts.list(''),
      ];
      for (const call of calls) await expect(call()).rejects.toMatchObject({ code: 'CAIRN_UNAVAILABLE' });
    } finally {
      await artifacts.close();
      await store.close();
    }
  });

  it('backs the model registry: any process loads what another registered, no files involved', async () => {
    const writer = await freshPostgres();
    // A second pool on the same schema stands for another replica.
    const reader = new PostgresStore({ url, schema: writer.schema });
    stores.push(reader);
    const logger = createLogger('silent');
    const a = new ModelRegistry(writer.models, new PostgresArtifactStore(writer.db), logger);
    const b = new ModelRegistry(reader.models, new PostgresArtifactStore(reader.db), logger);
    const model: StoredModel = {
      artifact: {
        algorithm: 'als',
        formatVersion: 1,
        params: { factors: 4 },
        meta: {},
        // Large enough to span chunks.
        arrays: { itemFactors: Float32Array.from({ length: 400_000 }, (_, i) => i / 7) },
      },
      userIds: ['u'],
      itemIds: ['i'],
      extra: { lastEventSeq: 9 },
    };
    const mv = await a.register(model, {
      algorithm: 'als',
      params: { factors: 4 },
      trainingData: { users: 1, items: 1, interactions: 1, events: 1, lastEventSeq: 9 },
      metrics: {},
      trainSeconds: 0,
      configHash: 'h',
    });
    expect(mv.artifactPath).toBe(`models/${mv.version}.cairn`);
    await b.promote(mv.version);
    const champion = await b.champion();
    expect(champion?.version).toBe(mv.version);
    const loaded = await b.load(champion!);
    const bytesOf = (a: Float32Array | Int32Array | Float64Array) =>
      Buffer.from(a.buffer, a.byteOffset, a.byteLength);
    expect(loaded.artifact.arrays.itemFactors).toBeInstanceOf(Float32Array);
    expect(
      bytesOf(loaded.artifact.arrays.itemFactors).equals(bytesOf(model.artifact.arrays.itemFactors)),
    ).toBe(true);
    expect(loaded.extra).toEqual({ lastEventSeq: 9 });
  });
});
