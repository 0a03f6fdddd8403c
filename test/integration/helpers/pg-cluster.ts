/**
 * A private PostgreSQL cluster for tests that stop and start the server: made with Debian's
 * postgresql-common tools (`pg_createcluster`, `pg_ctlcluster`, `pg_dropcluster`, run as root) on a free
 * port with trust authentication, and dropped afterwards — the machine's own cluster is never stopped.
 *
 * Callers drop it in `afterAll`; as a last resort `drop()` also runs when the process exits normally
 * without it (e.g. a hook timed out). A process killed by a signal or an uncaught exception leaves the
 * cluster behind: `pg_lsclusters` shows it as `cairn_<purpose>_…`.
 */
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from './processes.ts';

const run = promisify(execFile);
/** The postgresql-common commands wait for the server themselves; this bounds a hung one. */
const COMMAND_TIMEOUT_MS = 120_000;

export interface PgCluster {
  readonly version: string;
  readonly name: string;
  readonly port: number;
  /** URL of the cluster's `database` (as user postgres, no password: trust auth). */
  readonly url: string;
  /** Starts the server and waits until it accepts connections. */
  start(): Promise<void>;
  /** Stops the server ("fast": open sessions are disconnected, the data stays). */
  stop(): Promise<void>;
  /** Stops the server if it runs and deletes the cluster with its data. Safe to call twice. */
  drop(): Promise<void>;
}

/** The newest PostgreSQL major version installed (a directory under /etc/postgresql). */
export function installedPostgresVersion(): string {
  let versions: string[];
  try {
    versions = readdirSync('/etc/postgresql').filter((v) => /^\d+(\.\d+)?$/.test(v));
  } catch {
    versions = [];
  }
  if (versions.length === 0)
    throw new Error('no PostgreSQL installed (/etc/postgresql has no version directory)');
  return versions.sort((a, b) => Number(b) - Number(a))[0];
}

async function command(file: string, args: string[]): Promise<void> {
  try {
    await run(file, args, { timeout: COMMAND_TIMEOUT_MS });
  } catch (err) {
    const e = err as Error & { stderr?: string; stdout?: string };
    throw new Error(`${file} ${args.join(' ')} failed: ${e.message}\n${e.stderr ?? ''}${e.stdout ?? ''}`);
  }
}

async function waitForConnections(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
    try {
      await client.connect();
      await client.query('SELECT 1');
      return;
    } catch (err) {
      // "the database system is starting up" is an answer too: retry until it accepts queries.
      if (Date.now() > deadline) throw err;
    } finally {
      await client.end().catch(() => undefined);
    }
    await sleep(100);
  }
}

/**
 * Creates a new cluster `cairn_<purpose>_<random>` on a free port, starts it and creates `database`
 * in it. Any failure drops what was created and rethrows (a test needing it then fails, never skips).
 */
export async function createPgCluster(purpose: string, database = 'cairn'): Promise<PgCluster> {
  if (!/^[a-z][a-z0-9_]*$/.test(purpose) || !/^[a-z][a-z0-9_]*$/.test(database))
    throw new Error('purpose and database must be plain lower-case identifiers');
  const version = installedPostgresVersion();
  const name = `cairn_${purpose}_${randomBytes(3).toString('hex')}`;
  const port = await freePort();
  const adminUrl = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const url = `postgres://postgres@127.0.0.1:${port}/${database}`;
  let dropped = false;
  // Last resort when the process ends without drop() (e.g. the test runner gives up on a hook).
  const onExit = () => {
    if (!dropped) spawnSync('pg_dropcluster', ['--stop', version, name], { stdio: 'ignore' });
  };
  process.once('exit', onExit);

  const cluster: PgCluster = {
    version,
    name,
    port,
    url,
    async start() {
      await command('pg_ctlcluster', [version, name, 'start']);
      await waitForConnections(adminUrl, 30_000);
    },
    async stop() {
      await command('pg_ctlcluster', [version, name, 'stop']);
    },
    async drop() {
      if (dropped) return;
      await command('pg_dropcluster', ['--stop', version, name]);
      dropped = true;
      process.removeListener('exit', onExit);
    },
  };

  try {
    await command('pg_createcluster', [
      version,
      name,
      '--port',
      String(port),
      // Only this test starts it: never at boot.
      '--start-conf',
      'manual',
      // A stop is always a clean ("fast") shutdown here, which writes everything out whatever fsync says;
      // fsync only protects against the machine crashing, and costs a loaded test machine dearly.
      '-o',
      'fsync=off',
      '--',
      '--auth-host=trust',
      '--auth-local=trust',
      '--no-sync',
    ]);
    await cluster.start();
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE ${database}`);
    } finally {
      await admin.end();
    }
  } catch (err) {
    await cluster.drop().catch(() => undefined);
    throw err;
  }
  return cluster;
}
