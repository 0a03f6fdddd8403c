/**
 * Versioned SQLite schema. Append new migrations at the end; never edit one that has shipped, because
 * `migrate()` records applied versions in `schema_migrations` and skips them on the next start.
 */
export interface SqliteMigration {
  version: number;
  name: string;
  sql: string;
}

export const SQLITE_MIGRATIONS: readonly SqliteMigration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
      CREATE TABLE users (
        id TEXT PRIMARY KEY,
        attributes TEXT NOT NULL DEFAULT '{}',
        segments TEXT NOT NULL DEFAULT '[]',
        opt_out INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE INDEX users_opted_out ON users (id) WHERE opt_out = 1;

      CREATE TABLE items (
        id TEXT PRIMARY KEY,
        categories TEXT NOT NULL DEFAULT '[]',
        attributes TEXT NOT NULL DEFAULT '{}',
        available INTEGER NOT NULL DEFAULT 1,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) WITHOUT ROWID;

      -- AUTOINCREMENT: a seq is never reused, even after the newest events were erased, so sequence
      -- watermarks (models' lastEventSeq, scan cursors) stay meaningful.
      CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        user_id TEXT NOT NULL,
        item_id TEXT NOT NULL,
        type TEXT NOT NULL,
        value REAL NULL,
        ts INTEGER NOT NULL,
        context TEXT NULL
      );
      -- Every SQLite index ends with the rowid (= seq), so this serves ORDER BY ts DESC, seq DESC too.
      CREATE INDEX events_user_ts ON events (user_id, ts);

      CREATE TABLE models (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        version TEXT NOT NULL UNIQUE,
        algorithm TEXT NOT NULL,
        params TEXT NOT NULL,
        status TEXT NOT NULL,
        training_data TEXT NOT NULL,
        metrics TEXT NOT NULL,
        train_seconds REAL NOT NULL,
        artifact_path TEXT NOT NULL,
        checksum TEXT NOT NULL,
        config_hash TEXT NOT NULL,
        parent_version TEXT NULL,
        created_at INTEGER NOT NULL,
        promoted_at INTEGER NULL,
        error TEXT NULL
      );
      -- At most one champion, enforced by the database rather than by care.
      CREATE UNIQUE INDEX models_one_champion ON models (status) WHERE status = 'champion';
      CREATE INDEX models_created ON models (created_at, id);

      CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        payload TEXT NOT NULL,
        status TEXT NOT NULL,
        progress REAL NOT NULL,
        result TEXT NULL,
        error TEXT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE INDEX jobs_unfinished ON jobs (created_at, id) WHERE status IN ('queued', 'running');
    `,
  },
];
