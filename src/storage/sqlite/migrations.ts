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
  {
    version: 2,
    name: 'change log, consumer offsets, job leases',
    sql: `
      -- Entity changes (catalog, users, erasures, promotions) in one ordered log; every serving
      -- replica consumes it with its own watermark. Seqs are never reused (AUTOINCREMENT).
      CREATE TABLE changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        change TEXT NOT NULL,
        created_at INTEGER NOT NULL
      );
      -- What existed before the log did enters it once, so a consumer starting at 0 sees everything.
      INSERT INTO changes (change, created_at)
        SELECT json_object('kind', 'items', 'items', json_array(json_object(
          'id', id, 'categories', json(categories), 'attributes', json(attributes),
          'available', json(CASE available WHEN 1 THEN 'true' ELSE 'false' END),
          'createdAt', created_at, 'updatedAt', updated_at))), updated_at
        FROM items ORDER BY id;
      INSERT INTO changes (change, created_at)
        SELECT json_object('kind', 'user', 'user', json_object(
          'id', id, 'attributes', json(attributes), 'segments', json(segments),
          'optOut', json(CASE opt_out WHEN 1 THEN 'true' ELSE 'false' END),
          'createdAt', created_at, 'updatedAt', updated_at)), updated_at
        FROM users ORDER BY id;
      INSERT INTO changes (change, created_at)
        SELECT json_object('kind', 'champion', 'version', version), COALESCE(promoted_at, created_at)
        FROM models WHERE status = 'champion';

      CREATE TABLE consumer_offsets (
        name TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) WITHOUT ROWID;

      ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE jobs ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 3;
      ALTER TABLE jobs ADD COLUMN owner TEXT NULL;
      ALTER TABLE jobs ADD COLUMN lease_until INTEGER NULL;
      ALTER TABLE jobs ADD COLUMN run_at INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE jobs ADD COLUMN dedupe_key TEXT NULL;
      -- One unfinished job per dedupe key, enforced by the database.
      CREATE UNIQUE INDEX jobs_dedupe ON jobs (dedupe_key)
        WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'running');
    `,
  },
  {
    version: 3,
    name: 'durable consumer leases',
    sql: `
      -- At most one active consumer per durable name across processes sharing the file: the holder
      -- renews its lease while it runs; a standby takes the name over once the lease has run out
      -- (its process died) or the holder deleted the row (it stopped).
      CREATE TABLE consumer_leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        until INTEGER NOT NULL
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 4,
    name: 'model lineage',
    sql: `
      -- Lineage of a model version: trigger, data snapshot, code version, gate decision, drift reference
      -- and an audit of promotions (see domain/types.ts ModelLineage). NULL on rows written before it.
      ALTER TABLE models ADD COLUMN lineage TEXT NULL;
    `,
  },
  {
    version: 5,
    name: 'experiments, served log, feedback',
    sql: `
      -- Experiments (A/B, canary, shadow). A rowid table: rowid breaks created_at ties (newest first).
      CREATE TABLE experiments (
        id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        variants TEXT NOT NULL,
        unit TEXT NOT NULL,
        guard TEXT NULL,
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        stopped_at INTEGER NULL,
        stop_reason TEXT NULL
      );
      -- At most one running experiment that routes users (ab or canary), enforced by the database:
      -- two replicas creating one at the same moment cannot both succeed. Shadows run beside it.
      CREATE UNIQUE INDEX experiments_one_routing ON experiments (status)
        WHERE status = 'running' AND kind <> 'shadow';
      CREATE INDEX experiments_created ON experiments (created_at);

      -- What was served (mode served) or would have been (mode shadow), per request.
      CREATE TABLE served (
        request_id TEXT NOT NULL,
        mode TEXT NOT NULL,
        user_id TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        experiment_id TEXT NULL,
        variant TEXT NULL,
        model_version TEXT NULL,
        source TEXT NOT NULL,
        items TEXT NOT NULL,
        n_items INTEGER NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (request_id, mode)
      );
      CREATE INDEX served_user ON served (user_id);
      CREATE INDEX served_experiment ON served (experiment_id, mode, variant) WHERE experiment_id IS NOT NULL;
      CREATE INDEX served_at ON served (at);

      -- Feedback on served answers, one row per (request, item, type): repeats are duplicates.
      CREATE TABLE feedback (
        request_id TEXT NOT NULL,
        item_id TEXT NOT NULL,
        type TEXT NOT NULL,
        value REAL NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (request_id, item_id, type)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 6,
    name: 'api keys, audit log, settings',
    sql: `
      -- API keys: only the SHA-256 of the secret is kept. A key is bound to one tenant.
      CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        secret_hash TEXT NOT NULL,
        tenant TEXT NOT NULL,
        scopes TEXT NOT NULL,
        name TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        revoked_at INTEGER NULL,
        revoked_by TEXT NULL
      ) WITHOUT ROWID;

      -- Security-relevant actions (key created/revoked, user erased). Never a user id in clear: the
      -- subject of an erasure is its keyed hash.
      CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        action TEXT NOT NULL,
        principal TEXT NOT NULL,
        subject TEXT NOT NULL,
        details TEXT NOT NULL
      );

      -- Deployment settings Cairn generates once (e.g. the key of the log hash).
      CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 7,
    name: 'event lookups in merged runs',
    sql: `
      -- events loses its unique event_id index and its (user_id, ts) index: both were written at random
      -- places by every batch. Their lookups move to event_ids and event_users, which hold the events up
      -- to event_index.merged_seq and are extended in key order by merges (sqlite/event-index.ts).
      -- SQLite cannot drop a UNIQUE column constraint, so the table is rebuilt.
      CREATE TABLE events_v7 (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        item_id TEXT NOT NULL,
        type TEXT NOT NULL,
        value REAL NULL,
        ts INTEGER NOT NULL,
        context TEXT NULL
      );
      INSERT INTO events_v7 (seq, event_id, user_id, item_id, type, value, ts, context)
        SELECT seq, event_id, user_id, item_id, type, value, ts, context FROM events ORDER BY seq;
      -- Seqs are never reused: carry the AUTOINCREMENT high-water mark over (erased newest events).
      INSERT INTO sqlite_sequence (name, seq) SELECT 'events_v7', 0
        WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'events_v7');
      UPDATE sqlite_sequence SET seq = (
        SELECT MAX(seq) FROM sqlite_sequence WHERE name IN ('events', 'events_v7')) WHERE name = 'events_v7';
      DROP TABLE events;
      ALTER TABLE events_v7 RENAME TO events;

      CREATE TABLE event_ids (
        event_id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE event_users (
        user_id TEXT NOT NULL,
        ts INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (user_id, ts, seq)
      ) WITHOUT ROWID;
      INSERT INTO event_ids (event_id, seq) SELECT event_id, seq FROM events ORDER BY event_id;
      INSERT INTO event_users (user_id, ts, seq) SELECT user_id, ts, seq FROM events ORDER BY user_id, ts, seq;
      -- One row: how far the merged tables reach, and the lease of the process merging (if any).
      CREATE TABLE event_index (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        merged_seq INTEGER NOT NULL,
        merger TEXT NULL,
        merging_until INTEGER NOT NULL DEFAULT 0
      );
      INSERT INTO event_index (id, merged_seq) SELECT 1, COALESCE(MAX(seq), 0) FROM events;
    `,
  },
  {
    version: 8,
    name: 'erasures during an event lookup merge',
    sql: `
      -- Seqs of events erased while a merge ran (its lease held): the merge takes them out of what it
      -- staged before its next write step and deletes the rows (sqlite/event-index-merge.ts).
      CREATE TABLE event_index_erased (seq INTEGER PRIMARY KEY);
    `,
  },
];
