/**
 * PostgreSQL adapters of the API-key store, the audit log and the settings store (migration v6). Every
 * call is one statement, so concurrent writers need no explicit transaction.
 */
import type { ApiKeyRecord, AuditRecord } from '../../domain/types.ts';
import type { ApiKeyStore, AuditStore, SettingsStore } from '../ports.ts';
import {
  AUDIT_COLUMNS,
  auditFromRow,
  KEY_COLUMNS,
  keyFromRow,
  type AuditRow as SecurityAuditRow,
  type KeyRow as SecurityKeyRow,
} from '../security-rows.ts';
import type { Db } from './db.ts';

type KeyRow = SecurityKeyRow<unknown>;
type AuditRow = SecurityAuditRow<unknown>;
// jsonb columns arrive parsed.
const toKey = (r: KeyRow): ApiKeyRecord => keyFromRow(r, (v) => v);
const toAudit = (r: AuditRow): AuditRecord => auditFromRow(r, (v) => v);

export class PgApiKeys implements ApiKeyStore {
  constructor(private readonly db: Db) {}

  async insert(key: ApiKeyRecord): Promise<void> {
    await this.db.query(
      `INSERT INTO ${this.db.s}.api_keys (${KEY_COLUMNS}) VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9)`,
      [
        key.id,
        key.secretHash,
        key.tenant,
        JSON.stringify(key.scopes),
        key.name,
        key.createdAt,
        key.createdBy,
        key.revokedAt,
        key.revokedBy,
      ],
    );
  }

  async get(id: string): Promise<ApiKeyRecord | null> {
    const rows = await this.db.query<KeyRow>(
      `SELECT ${KEY_COLUMNS} FROM ${this.db.s}.api_keys WHERE id = $1`,
      [id],
    );
    return rows.length > 0 ? toKey(rows[0]) : null;
  }

  async list(options: { tenant?: string } = {}): Promise<ApiKeyRecord[]> {
    const { s } = this.db;
    const rows =
      options.tenant === undefined
        ? await this.db.query<KeyRow>(
            `SELECT ${KEY_COLUMNS} FROM ${s}.api_keys ORDER BY created_at DESC, id DESC`,
          )
        : await this.db.query<KeyRow>(
            `SELECT ${KEY_COLUMNS} FROM ${s}.api_keys WHERE tenant = $1 ORDER BY created_at DESC, id DESC`,
            [options.tenant],
          );
    return rows.map(toKey);
  }

  /**
   * One statement: the right-hand sides see the row as it was, and a concurrent revoke waits for the row
   * lock and then re-evaluates them, so the first revoke's time and principal are kept.
   */
  async revoke(id: string, at: number, by: string): Promise<ApiKeyRecord | null> {
    const rows = await this.db.query<KeyRow>(
      `UPDATE ${this.db.s}.api_keys SET revoked_at = COALESCE(revoked_at, $2),
         revoked_by = CASE WHEN revoked_at IS NULL THEN $3 ELSE revoked_by END
       WHERE id = $1 RETURNING ${KEY_COLUMNS}`,
      [id, at, by],
    );
    return rows.length > 0 ? toKey(rows[0]) : null;
  }
}

export class PgAudit implements AuditStore {
  constructor(private readonly db: Db) {}

  async append(record: Omit<AuditRecord, 'seq'>): Promise<AuditRecord> {
    const rows = await this.db.query<AuditRow>(
      `INSERT INTO ${this.db.s}.audit_log (at, action, principal, subject, details)
       VALUES ($1, $2, $3, $4, $5::jsonb) RETURNING ${AUDIT_COLUMNS}`,
      [record.at, record.action, record.principal, record.subject, JSON.stringify(record.details)],
    );
    return toAudit(rows[0]);
  }

  async list(options: { action?: AuditRecord['action']; limit?: number } = {}): Promise<AuditRecord[]> {
    // LIMIT NULL is PostgreSQL's "no limit".
    const limit = options.limit === undefined ? null : Math.max(0, Math.floor(options.limit));
    const rows = await this.db.query<AuditRow>(
      `SELECT ${AUDIT_COLUMNS} FROM ${this.db.s}.audit_log
       WHERE $1::text IS NULL OR action = $1 ORDER BY seq DESC LIMIT $2`,
      [options.action ?? null, limit],
    );
    return rows.map(toAudit);
  }
}

export class PgSettings implements SettingsStore {
  constructor(private readonly db: Db) {}

  async get(key: string): Promise<string | null> {
    const rows = await this.db.query<{ value: string }>(
      `SELECT value FROM ${this.db.s}.settings WHERE key = $1`,
      [key],
    );
    return rows.length > 0 ? rows[0].value : null;
  }

  /**
   * The no-op update makes RETURNING yield the stored row when the key exists; a concurrent first insert
   * is waited for (ON CONFLICT … DO UPDATE is atomic), so every caller gets the first writer's value.
   */
  async putIfAbsent(key: string, value: string): Promise<string> {
    const rows = await this.db.query<{ value: string }>(
      `INSERT INTO ${this.db.s}.settings AS t (key, value) VALUES ($1, $2)
       ON CONFLICT (key) DO UPDATE SET value = t.value RETURNING value`,
      [key, value],
    );
    return rows[0].value;
  }
}
