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
  {
    version: 2,
    name: 'change log, consumer offsets, job leases, artifacts',
    sql: (s) => `
      -- Entity changes (catalog, users, erasures, promotions) in one ordered log; every serving
      -- replica consumes it with its own watermark (LISTEN/NOTIFY wakes them).
      CREATE TABLE ${s}.changes (
        seq BIGSERIAL PRIMARY KEY,
        change JSONB NOT NULL,
        created_at BIGINT NOT NULL
      );
      -- What existed before the log did enters it once, so a consumer starting at 0 sees everything.
      INSERT INTO ${s}.changes (change, created_at)
        SELECT jsonb_build_object('kind', 'items', 'items', jsonb_build_array(jsonb_build_object(
          'id', id, 'categories', to_jsonb(categories), 'attributes', attributes, 'available', available,
          'createdAt', created_at, 'updatedAt', updated_at))), updated_at
        FROM ${s}.items ORDER BY id;
      INSERT INTO ${s}.changes (change, created_at)
        SELECT jsonb_build_object('kind', 'user', 'user', jsonb_build_object(
          'id', id, 'attributes', attributes, 'segments', to_jsonb(segments), 'optOut', opt_out,
          'createdAt', created_at, 'updatedAt', updated_at)), updated_at
        FROM ${s}.users ORDER BY id;
      INSERT INTO ${s}.changes (change, created_at)
        SELECT jsonb_build_object('kind', 'champion', 'version', version), COALESCE(promoted_at, created_at)
        FROM ${s}.models WHERE status = 'champion';

      CREATE TABLE ${s}.consumer_offsets (
        name TEXT PRIMARY KEY,
        seq BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
      );

      ALTER TABLE ${s}.jobs
        ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0,
        ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 3,
        ADD COLUMN owner TEXT NULL,
        ADD COLUMN lease_until BIGINT NULL,
        ADD COLUMN run_at BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN dedupe_key TEXT NULL;
      -- One unfinished job per dedupe key, enforced by the database.
      CREATE UNIQUE INDEX jobs_dedupe ON ${s}.jobs (dedupe_key)
        WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'running');

      -- Model artifacts by key, in 1 MiB chunks: replicas need no shared volume.
      CREATE TABLE ${s}.artifacts (
        key TEXT COLLATE "C" PRIMARY KEY,
        checksum TEXT NOT NULL,
        bytes BIGINT NOT NULL,
        created_at BIGINT NOT NULL
      );
      CREATE TABLE ${s}.artifact_chunks (
        key TEXT COLLATE "C" NOT NULL REFERENCES ${s}.artifacts (key) ON DELETE CASCADE,
        n INTEGER NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY (key, n)
      );
    `,
  },
  {
    version: 3,
    name: 'change feed notifications',
    sql: (s) => `
      -- Wakes log consumers in every process (LISTEN on the schema's channel) whenever rows enter the
      -- event or change log, whoever wrote them. NOTIFY is transactional: it is delivered at COMMIT, so
      -- a woken consumer always finds the rows; identical notifications of one transaction fold into
      -- one. The payload names the table. The channel is cut to 63 bytes (an identifier's limit): two
      -- schemas sharing that prefix only see each other's wake-ups, which cost one empty read.
      CREATE FUNCTION ${s}.cairn_log_notify() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        PERFORM pg_notify(left('cairn_log_' || TG_TABLE_SCHEMA, 63), TG_TABLE_NAME);
        RETURN NULL;
      END
      $$;
      CREATE TRIGGER events_notify AFTER INSERT ON ${s}.events
        FOR EACH STATEMENT EXECUTE FUNCTION ${s}.cairn_log_notify();
      CREATE TRIGGER changes_notify AFTER INSERT ON ${s}.changes
        FOR EACH STATEMENT EXECUTE FUNCTION ${s}.cairn_log_notify();
    `,
  },
  {
    version: 4,
    name: 'model lineage',
    sql: (s) => `
      -- Lineage of a model version: trigger, data snapshot, code version, gate decision, drift reference
      -- and an audit of promotions (see domain/types.ts ModelLineage). NULL on rows written before it.
      ALTER TABLE ${s}.models ADD COLUMN lineage JSONB NULL;
    `,
  },
  {
    version: 5,
    name: 'experiments, served log, feedback',
    sql: (s) => `
      -- Experiments (A/B, canary, shadow); ord breaks created_at ties (newest first).
      CREATE TABLE ${s}.experiments (
        ord BIGSERIAL PRIMARY KEY,
        id TEXT COLLATE "C" NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        variants JSONB NOT NULL,
        unit TEXT NOT NULL,
        guard JSONB NULL,
        created_at BIGINT NOT NULL,
        created_by TEXT NOT NULL,
        stopped_at BIGINT NULL,
        stop_reason TEXT NULL
      );
      -- At most one running experiment that routes users (ab or canary), enforced by the database:
      -- two replicas creating one at the same moment cannot both succeed. Shadows run beside it.
      CREATE UNIQUE INDEX experiments_one_routing ON ${s}.experiments (status)
        WHERE status = 'running' AND kind <> 'shadow';
      CREATE INDEX experiments_created ON ${s}.experiments (created_at, ord);

      -- What was served (mode served) or would have been (mode shadow), per request.
      CREATE TABLE ${s}.served (
        ord BIGSERIAL,
        request_id TEXT COLLATE "C" NOT NULL,
        mode TEXT NOT NULL,
        user_id TEXT COLLATE "C" NOT NULL,
        endpoint TEXT NOT NULL,
        experiment_id TEXT COLLATE "C" NULL,
        variant TEXT COLLATE "C" NULL,
        model_version TEXT NULL,
        source TEXT NOT NULL,
        items JSONB NOT NULL,
        n_items INTEGER NOT NULL,
        at BIGINT NOT NULL,
        PRIMARY KEY (request_id, mode)
      );
      CREATE INDEX served_user ON ${s}.served (user_id);
      CREATE INDEX served_experiment ON ${s}.served (experiment_id, mode, variant)
        WHERE experiment_id IS NOT NULL;
      CREATE INDEX served_at ON ${s}.served (at, ord);

      -- Feedback on served answers, one row per (request, item, type): repeats are duplicates.
      CREATE TABLE ${s}.feedback (
        request_id TEXT COLLATE "C" NOT NULL,
        item_id TEXT COLLATE "C" NOT NULL,
        type TEXT NOT NULL,
        value DOUBLE PRECISION NULL,
        at BIGINT NOT NULL,
        PRIMARY KEY (request_id, item_id, type)
      );
    `,
  },
  {
    version: 6,
    name: 'api keys, audit log, settings',
    sql: (s) => `
      -- API keys: only the SHA-256 of the secret is kept. A key is bound to one tenant.
      CREATE TABLE ${s}.api_keys (
        id TEXT COLLATE "C" PRIMARY KEY,
        secret_hash TEXT NOT NULL,
        tenant TEXT NOT NULL,
        scopes JSONB NOT NULL,
        name TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        created_by TEXT NOT NULL,
        revoked_at BIGINT NULL,
        revoked_by TEXT NULL
      );

      -- Security-relevant actions (key created/revoked, user erased). Never a user id in clear: the
      -- subject of an erasure is its keyed hash.
      CREATE TABLE ${s}.audit_log (
        seq BIGSERIAL PRIMARY KEY,
        at BIGINT NOT NULL,
        action TEXT NOT NULL,
        principal TEXT NOT NULL,
        subject TEXT NOT NULL,
        details JSONB NOT NULL
      );

      -- Deployment settings Cairn generates once (e.g. the key of the log hash).
      CREATE TABLE ${s}.settings (
        key TEXT COLLATE "C" PRIMARY KEY,
        value TEXT NOT NULL
      );
    `,
  },
];
