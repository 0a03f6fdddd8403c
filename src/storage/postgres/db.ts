/**
 * The PostgreSQL connection wrapper and error mapping the sub-stores (store.ts, experiments.ts, log.ts,
 * job-queue.ts, artifacts.ts) share; its own module so they need not import the store that builds them.
 */
import type pg from 'pg';
import type { PoolClient, QueryResultRow } from 'pg';
import { CairnError } from '../../errors/errors.ts';
import { NETWORK_CODES } from '../shared.ts';

/** Maps driver errors to Cairn codes: unreachable database → CAIRN_UNAVAILABLE, unique key → CAIRN_CONFLICT. */
export function mapPgError(e: unknown): unknown {
  if (e instanceof CairnError || typeof e !== 'object' || e === null) return e;
  const code = (e as { code?: unknown }).code;
  const raw = (e as { message?: unknown }).message;
  const message = typeof raw === 'string' ? raw : 'unknown database error';
  if (typeof code === 'string') {
    if (code === '23505') return new CairnError('CAIRN_CONFLICT', message, undefined, { cause: e });
    // Text PostgreSQL cannot store: a NUL character (22021 in text, 22P05 in jsonb) or an unpaired
    // surrogate escape in JSON (22P02). The client sent it; SQLite takes it, so only this adapter refuses.
    if (code === '22021' || code === '22P05' || (code === '22P02' && /type json/.test(message))) {
      return new CairnError(
        'CAIRN_VALIDATION',
        `text the database cannot store (a NUL character or an unpaired surrogate): ${message}`,
        undefined,
        { cause: e },
      );
    }
    if (
      NETWORK_CODES.has(code) ||
      code.startsWith('08') || // connection exception
      code === '57P01' || // admin shutdown
      code === '57P02' || // crash shutdown
      code === '57P03' || // cannot connect now (starting up)
      code === '53300' // too many connections
    ) {
      return new CairnError('CAIRN_UNAVAILABLE', `PostgreSQL unavailable: ${message}`, undefined, {
        cause: e,
      });
    }
  }
  if (/^(Connection terminated|timeout exceeded when trying to connect)/.test(message)) {
    return new CairnError('CAIRN_UNAVAILABLE', `PostgreSQL unavailable: ${message}`, undefined, { cause: e });
  }
  return e;
}

/** Connection handling shared by the sub-stores: queries and transactions with mapped errors. */
export class Db {
  constructor(
    readonly pool: pg.Pool,
    /** Quoted schema identifier, e.g. `"cairn"`. */
    readonly s: string,
    /** Second advisory-lock key for this schema. */
    readonly lockKey: number,
  ) {}

  async query<R extends QueryResultRow>(text: string, values?: unknown[]): Promise<R[]> {
    try {
      return (await this.pool.query<R>(text, values)).rows;
    } catch (e) {
      throw mapPgError(e);
    }
  }

  /** Runs `fn` inside BEGIN/COMMIT on one pooled connection; rolls back on any error. */
  async tx<T>(fn: (c: PoolClient) => Promise<T>): Promise<T> {
    let client: PoolClient;
    try {
      client = await this.pool.connect();
    } catch (e) {
      throw mapPgError(e);
    }
    let broken = false;
    // pg-pool takes its 'error' listener off a checked-out client: a connection dropped mid-transaction
    // (server stopped) would then emit 'error' with nobody listening and crash the process. The query in
    // flight rejects by itself; this only marks the connection as not to be reused.
    const onError = () => {
      broken = true;
    };
    client.on('error', onError);
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (e) {
      try {
        await client.query('ROLLBACK');
      } catch {
        broken = true; // the connection is unusable: destroy it instead of returning it to the pool
      }
      throw mapPgError(e);
    } finally {
      client.removeListener('error', onError);
      client.release(broken);
    }
  }

  /** Transaction-scoped advisory lock: serializes one kind of write per schema, released at COMMIT. */
  async lock(c: PoolClient, namespace: number): Promise<void> {
    await c.query('SELECT pg_advisory_xact_lock($1, $2)', [namespace, this.lockKey]);
  }

  /**
   * The shared form of `lock`: holders never wait for one another, only for an exclusive holder. Held to
   * COMMIT, it marks the transaction as a writer others can see in `pg_locks` (see commit-horizon.ts).
   */
  async lockShared(c: PoolClient, namespace: number): Promise<void> {
    await c.query('SELECT pg_advisory_xact_lock_shared($1, $2)', [namespace, this.lockKey]);
  }
}
