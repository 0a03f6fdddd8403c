/**
 * Chooses and opens the system-of-record adapter from `config.store.url`, and brings its schema up to
 * date. The only place that knows the URL schemes; callers get a `Store` and nothing driver-specific.
 */
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { Config } from '../config/load.ts';
import { CairnError } from '../errors/errors.ts';
import type { Store } from './ports.ts';
import { PostgresStore } from './postgres/store.ts';
import { SqliteStore } from './sqlite/store.ts';

/** Where the data lives, decided from the config without opening anything. */
export type StoreLocation =
  { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string; schema: string };

/**
 * `sqlite://PATH` (relative paths against the working directory, `sqlite://:memory:` allowed),
 * `postgres://…` / `postgresql://…`, or empty for `${dataDir}/cairn.db`. Throws CAIRN_CONFIG_INVALID
 * naming `store.url` for anything else.
 */
export function storeLocation(config: Readonly<Config>): StoreLocation {
  const url = config.store.url.trim();
  if (url === '') return { kind: 'sqlite', path: resolve(join(config.dataDir, 'cairn.db')) };
  if (url.startsWith('sqlite://')) {
    const path = url.slice('sqlite://'.length);
    if (path === '') throw invalidUrl(url, 'sqlite:// needs a file path, e.g. sqlite://./data/cairn.db');
    return { kind: 'sqlite', path: path === ':memory:' ? path : resolve(path) };
  }
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    return { kind: 'postgres', url, schema: config.store.schema };
  }
  throw invalidUrl(url, 'must start with sqlite://, postgres:// or postgresql:// (or be empty)');
}

/** Opens the store named by the config and runs its migrations; closes it again if they fail. */
export async function openStore(config: Readonly<Config>): Promise<Store> {
  const where = storeLocation(config);
  let store: Store;
  if (where.kind === 'sqlite') {
    if (where.path !== ':memory:') mkdirSync(dirname(where.path), { recursive: true });
    store = new SqliteStore({ path: where.path, synchronous: config.store.synchronous });
  } else {
    store = new PostgresStore({ url: where.url, schema: where.schema });
  }
  try {
    await store.migrate();
  } catch (e) {
    await store.close().catch(() => undefined);
    throw e;
  }
  return store;
}

function invalidUrl(url: string, message: string): CairnError {
  // Only the scheme goes into the message: a PostgreSQL-like URL may carry a password.
  const scheme = /^[a-z][a-z0-9+.-]*:/i.exec(url)?.[0] ?? '(no scheme)';
  return new CairnError('CAIRN_CONFIG_INVALID', `invalid configuration: store.url (${scheme}) ${message}`, {
    fields: [{ field: 'store.url', message }],
  });
}
