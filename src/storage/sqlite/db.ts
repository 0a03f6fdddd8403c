/** The SQLite connection type the sub-stores share; its own module so they need not import the store that builds them. */
import type Database from 'better-sqlite3';

export type Db = Database.Database;

/** What a worker thread of this folder opens its own connection to the service's file with. */
export interface ThreadConnection {
  path: string;
  busyTimeoutMs: number;
}

/**
 * Settings every connection to a Cairn file has, the service's and its threads' alike: WAL (readers
 * beside the single writer), the given durability and busy timeout, and deleted rows overwritten with
 * zeros, not just unlinked (an erased user must not survive in free pages, whichever connection frees
 * them; see SqliteStore.purgeErased for the WAL).
 */
export function configureConnection(
  db: Db,
  options: { synchronous: 'FULL' | 'NORMAL'; busyTimeoutMs: number },
): void {
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${options.synchronous}`);
  db.pragma(`busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs))}`);
  db.pragma('secure_delete = ON');
}

/**
 * Runs `write` (synchronous: nothing else uses the connection meanwhile) with commits that do not fsync
 * (`synchronous = NORMAL`: in WAL mode a commit survives a process crash, and after an OS crash or power
 * loss the WAL loses only a suffix), then restores the connection's own level. For writes whose loss in
 * such a crash only repeats work or lets a lease run out; on the event loop a synced commit costs an fsync,
 * up to tens of ms while other connections write.
 */
export function withoutSync<T>(db: Db, write: () => T): T {
  const level = db.pragma('synchronous', { simple: true }) as number;
  db.pragma('synchronous = NORMAL');
  try {
    return write();
  } finally {
    db.pragma(`synchronous = ${level}`);
  }
}

/**
 * For connections that probe and write the event lookups (the service's, the merge thread's;
 * sqlite/event-index.ts): a 256 MiB page cache and reads through a memory map (no read() and copy per
 * page), temp tables in memory, and checkpoints every ~40 MiB of WAL instead of every 4 MiB, so a page
 * dirtied by many transactions (a merge's steps) is written back once; the WAL file is truncated back to
 * 64 MiB after a checkpoint.
 */
export function configureForLookups(db: Db): void {
  db.pragma('cache_size = -262144');
  db.pragma('mmap_size = 2147483648');
  db.pragma('temp_store = MEMORY');
  db.pragma('wal_autocheckpoint = 10000');
  db.pragma('journal_size_limit = 67108864');
}
