/**
 * Artifact store inside PostgreSQL (production): every replica reads models from the database it already
 * talks to, so no shared volume is needed. Tables `artifacts` (one header row per key: checksum, size)
 * and `artifact_chunks` (the bytes in 1 MiB pieces) come from migration 2.
 */
import { createHash } from 'node:crypto';
import type { PoolClient } from 'pg';
import { CairnError } from '../../errors/errors.ts';
import { artifactChecksum, checkArtifactKey, checkArtifactPrefix, parentKeys } from '../files/artifacts.ts';
import type { ArtifactStore } from '../ports.ts';
import type { Db } from './store.ts';

/** Bytes per stored chunk: large enough for few rows, small enough that no single value strains memory. */
export const ARTIFACT_CHUNK_BYTES = 1024 * 1024;

/**
 * Chunks written per INSERT and read per SELECT: bounds a statement to 8 MiB while keeping round trips
 * few. Each chunk travels as its own binary parameter (a bytea[] parameter would be hex text: twice the
 * bytes on the wire).
 */
const CHUNKS_PER_STATEMENT = 8;

/**
 * Advisory-lock namespace (first int4 key, beside store.ts's) serializing puts per schema, so the check
 * that no key is nested under another cannot race with a concurrent put.
 */
const LOCK_ARTIFACTS = 0x43616941;

/**
 * {@link ArtifactStore} on the store's PostgreSQL pool. A put is one transaction (header row upserted,
 * old chunks deleted, new chunks inserted), so readers see the old or the new artifact; a get reads the
 * header and then streams the chunks in order inside one REPEATABLE READ snapshot, and verifies the size
 * and the stored SHA-256 (CAIRN_INTERNAL on a mismatch: corrupt rows are never handed out as a model).
 *
 * Keys follow the rules of {@link checkArtifactKey}, and as in the files adapter a key cannot be both an
 * artifact and the parent of another (`a` and `a/b`: CAIRN_CONFLICT), so artifacts can move between the
 * two adapters unchanged. An unreachable database is CAIRN_UNAVAILABLE.
 */
export class PostgresArtifactStore implements ArtifactStore {
  readonly kind = 'postgres';

  /**
   * @param db The `db` of a migrated {@link PostgresStore}: the pool and schema are the store's, and
   *   remain the store's to close.
   */
  constructor(private readonly db: Db) {}

  async put(key: string, bytes: Uint8Array): Promise<{ checksum: string; bytes: number }> {
    checkArtifactKey(key);
    const checksum = await artifactChecksum(bytes);
    // A Buffer view over the caller's bytes (no copy): node-postgres sends Buffers as binary parameters.
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const { s } = this.db;
    await this.db.tx(async (c) => {
      await this.db.lock(c, LOCK_ARTIFACTS);
      const clash = await c.query<{ key: string }>(
        `SELECT key FROM ${s}.artifacts WHERE key = ANY($1::text[]) OR starts_with(key, $2) LIMIT 1`,
        [parentKeys(key), `${key}/`],
      );
      if (clash.rows.length > 0) {
        throw new CairnError(
          'CAIRN_CONFLICT',
          `artifact key ${key} collides with stored key ${clash.rows[0].key} (one is nested under the other)`,
          { field: 'key' },
        );
      }
      await c.query(
        `INSERT INTO ${s}.artifacts (key, checksum, bytes, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (key) DO UPDATE SET checksum = EXCLUDED.checksum, bytes = EXCLUDED.bytes,
           created_at = EXCLUDED.created_at`,
        [key, checksum, buf.length, Date.now()],
      );
      await c.query(`DELETE FROM ${s}.artifact_chunks WHERE key = $1`, [key]);
      await insertChunks(c, s, key, buf);
    });
    return { checksum, bytes: buf.length };
  }

  async get(key: string): Promise<Buffer> {
    checkArtifactKey(key);
    const { s } = this.db;
    return this.db.tx(async (c) => {
      // One snapshot for the header and every chunk: an overwrite committing mid-read stays invisible.
      await c.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
      const header = await c.query<{ checksum: string; bytes: number }>(
        `SELECT checksum, bytes FROM ${s}.artifacts WHERE key = $1`,
        [key],
      );
      if (header.rows.length === 0) {
        throw new CairnError('CAIRN_NOT_FOUND', `artifact ${key} not found`, { field: 'key' });
      }
      const { checksum, bytes } = header.rows[0];
      const out = Buffer.allocUnsafe(bytes);
      const hash = createHash('sha256');
      let offset = 0;
      for (let next = 0; ;) {
        const page = await c.query<{ n: number; data: Buffer }>(
          `SELECT n, data FROM ${s}.artifact_chunks WHERE key = $1 AND n >= $2 ORDER BY n LIMIT $3`,
          [key, next, CHUNKS_PER_STATEMENT],
        );
        for (const { n, data } of page.rows) {
          if (n !== next || offset + data.length > bytes) throw corrupt(key, 'chunks missing or oversized');
          data.copy(out, offset);
          hash.update(data);
          offset += data.length;
          next++;
        }
        if (page.rows.length < CHUNKS_PER_STATEMENT) break;
      }
      if (offset !== bytes) throw corrupt(key, `${offset} of ${bytes} bytes stored`);
      if (hash.digest('hex') !== checksum) throw corrupt(key, 'checksum mismatch');
      return out;
    });
  }

  async exists(key: string): Promise<boolean> {
    checkArtifactKey(key);
    const rows = await this.db.query(`SELECT 1 FROM ${this.db.s}.artifacts WHERE key = $1`, [key]);
    return rows.length > 0;
  }

  async delete(key: string): Promise<boolean> {
    checkArtifactKey(key);
    // Chunks go with the header row (ON DELETE CASCADE), in this one statement.
    const rows = await this.db.query(`DELETE FROM ${this.db.s}.artifacts WHERE key = $1 RETURNING 1`, [key]);
    return rows.length > 0;
  }

  async list(prefix: string): Promise<string[]> {
    checkArtifactPrefix(prefix);
    // The key column is COLLATE "C": byte order, the same order the files adapter returns.
    const rows = await this.db.query<{ key: string }>(
      `SELECT key FROM ${this.db.s}.artifacts WHERE starts_with(key, $1) ORDER BY key`,
      [prefix],
    );
    return rows.map((r) => r.key);
  }

  /** The pool belongs to the PostgresStore this adapter was built from; closing that store ends it. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}

async function insertChunks(c: PoolClient, s: string, key: string, buf: Buffer): Promise<void> {
  const count = Math.ceil(buf.length / ARTIFACT_CHUNK_BYTES);
  for (let first = 0; first < count; first += CHUNKS_PER_STATEMENT) {
    const last = Math.min(count, first + CHUNKS_PER_STATEMENT);
    const values: unknown[] = [key];
    const rows: string[] = [];
    for (let n = first; n < last; n++) {
      values.push(n, buf.subarray(n * ARTIFACT_CHUNK_BYTES, (n + 1) * ARTIFACT_CHUNK_BYTES));
      rows.push(`($1, $${values.length - 1}, $${values.length})`);
    }
    await c.query(`INSERT INTO ${s}.artifact_chunks (key, n, data) VALUES ${rows.join(', ')}`, values);
  }
}

function corrupt(key: string, why: string): CairnError {
  return new CairnError('CAIRN_INTERNAL', `artifact ${key} is corrupt: ${why}`, { field: 'key' });
}
