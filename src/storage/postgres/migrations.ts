/**
 * Versioned PostgreSQL schema. Every statement is qualified with the configured schema (passed in as an
 * already-quoted identifier). Append new migrations at the end; never edit one that has shipped.
 */
export interface PostgresMigration {
  version: number;
  name: string;
  sql: (schema: string) => string;
}

export const POSTGRES_MIGRATIONS: readonly PostgresMigration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: (s) => `
      -- Ids sort with COLLATE "C" (byte order), so ItemStore.list pages identically on every database
      -- locale and on SQLite.
      CREATE TABLE ${s}.users (
        id TEXT COLLATE "C" PRIMARY KEY,
        attributes JSONB NOT NULL DEFAULT '{}',
        segments TEXT[] NOT NULL DEFAULT '{}',
        opt_out BOOLEAN NOT NULL DEFAULT false,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
      );
      CREATE INDEX users_opted_out ON ${s}.users (id) WHERE opt_out;

      CREATE TABLE ${s}.items (
        id TEXT COLLATE "C" PRIMARY KEY,
        categories TEXT[] NOT NULL DEFAULT '{}',
        attributes JSONB NOT NULL DEFAULT '{}',
        available BOOLEAN NOT NULL DEFAULT true,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
      );

      -- COLLATE "C" on the indexed ids: byte comparison instead of the locale's strcoll, measurably
      -- cheaper when 10,000 random event ids go into the unique index per batch.
      CREATE TABLE ${s}.events (
        seq BIGSERIAL PRIMARY KEY,
        event_id TEXT COLLATE "C" NOT NULL UNIQUE,
        user_id TEXT COLLATE "C" NOT NULL,
        item_id TEXT COLLATE "C" NOT NULL,
        type TEXT NOT NULL,
        value DOUBLE PRECISION NULL,
        ts BIGINT NOT NULL,
        context JSONB NULL
      );
      -- seq in the key: forUser's ORDER BY ts DESC, seq DESC is a backward index range scan, no sort.
      CREATE INDEX events_user_ts ON ${s}.events (user_id, ts, seq);

      CREATE TABLE ${s}.models (
        id BIGSERIAL PRIMARY KEY,
        version TEXT NOT NULL UNIQUE,
        algorithm TEXT NOT NULL,
        params JSONB NOT NULL,
        status TEXT NOT NULL,
        training_data JSONB NOT NULL,
        metrics JSONB NOT NULL,
        train_seconds DOUBLE PRECISION NOT NULL,
        artifact_path TEXT NOT NULL,
        checksum TEXT NOT NULL,
        config_hash TEXT NOT NULL,
        parent_version TEXT NULL,
        created_at BIGINT NOT NULL,
        promoted_at BIGINT NULL,
        error TEXT NULL
      );
      -- At most one champion, enforced by the database rather than by care.
      CREATE UNIQUE INDEX models_one_champion ON ${s}.models (status) WHERE status = 'champion';
      CREATE INDEX models_created ON ${s}.models (created_at, id);

      CREATE TABLE ${s}.jobs (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        payload JSONB NOT NULL,
        status TEXT NOT NULL,
        progress DOUBLE PRECISION NOT NULL,
        result JSONB NULL,
        error TEXT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
      );
      CREATE INDEX jobs_unfinished ON ${s}.jobs (created_at, id) WHERE status IN ('queued', 'running');
    `,
  },
];
