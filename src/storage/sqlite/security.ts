/**
 * SQLite adapters of the API-key store, the audit log and the settings store (migration v6). Scopes and
 * audit details are JSON text columns, read and written whole.
 */
import type { Statement } from 'better-sqlite3';
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
import type { Guard } from './experiments.ts';

type KeyRow = SecurityKeyRow<string>;
type AuditRow = SecurityAuditRow<string>;
// JSON columns are text.
const toKey = (r: KeyRow): ApiKeyRecord => keyFromRow(r, (v) => JSON.parse(v));
const toAudit = (r: AuditRow): AuditRecord => auditFromRow(r, (v) => JSON.parse(v));

/**
 * Statements compiled on first use (the tables exist only after `migrate()`) and kept, with every call
 * run through the store's error mapping.
 */
class Statements {
  private readonly cache = new Map<string, Statement<unknown[], unknown>>();

  constructor(
    private readonly db: Db,
    readonly guarded: Guard,
  ) {}

  run(sql: string, ...params: unknown[]): void {
    this.guarded(() => this.prepare(sql).run(...params));
  }

  get<R>(sql: string, ...params: unknown[]): R | undefined {
    return this.guarded(() => this.prepare(sql).get(...params) as R | undefined);
  }

  all<R>(sql: string, ...params: unknown[]): R[] {
    return this.guarded(() => this.prepare(sql).all(...params) as R[]);
  }

  private prepare(sql: string): Statement<unknown[], unknown> {
    let statement = this.cache.get(sql);
    if (!statement) {
      statement = this.db.prepare<unknown[], unknown>(sql);
      this.cache.set(sql, statement);
    }
    return statement;
  }
}

export class SqliteApiKeys implements ApiKeyStore {
  private readonly sql: Statements;

  constructor(db: Db, guard: Guard) {
    this.sql = new Statements(db, guard);
  }

  async insert(key: ApiKeyRecord): Promise<void> {
    this.sql.run(
      `INSERT INTO api_keys (${KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      key.id,
      key.secretHash,
      key.tenant,
      JSON.stringify(key.scopes),
      key.name,
      key.createdAt,
      key.createdBy,
      key.revokedAt,
      key.revokedBy,
    );
    return Promise.resolve();
  }

  async get(id: string): Promise<ApiKeyRecord | null> {
    const row = this.sql.get<KeyRow>(`SELECT ${KEY_COLUMNS} FROM api_keys WHERE id = ?`, id);
    return Promise.resolve(row ? toKey(row) : null);
  }

  async list(options: { tenant?: string } = {}): Promise<ApiKeyRecord[]> {
    const rows =
      options.tenant === undefined
        ? this.sql.all<KeyRow>(`SELECT ${KEY_COLUMNS} FROM api_keys ORDER BY created_at DESC, id DESC`)
        : this.sql.all<KeyRow>(
            `SELECT ${KEY_COLUMNS} FROM api_keys WHERE tenant = ? ORDER BY created_at DESC, id DESC`,
            options.tenant,
          );
    return Promise.resolve(rows.map(toKey));
  }

  /** One statement: the right-hand sides see the row as it was, so a second revoke keeps the first. */
  async revoke(id: string, at: number, by: string): Promise<ApiKeyRecord | null> {
    const row = this.sql.get<KeyRow>(
      `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?),
         revoked_by = CASE WHEN revoked_at IS NULL THEN ? ELSE revoked_by END
       WHERE id = ? RETURNING ${KEY_COLUMNS}`,
      at,
      by,
      id,
    );
    return Promise.resolve(row ? toKey(row) : null);
  }
}

export class SqliteAudit implements AuditStore {
  private readonly sql: Statements;

  constructor(db: Db, guard: Guard) {
    this.sql = new Statements(db, guard);
  }

  async append(record: Omit<AuditRecord, 'seq'>): Promise<AuditRecord> {
    const row = this.sql.get<AuditRow>(
      `INSERT INTO audit_log (at, action, principal, subject, details) VALUES (?, ?, ?, ?, ?)
       RETURNING ${AUDIT_COLUMNS}`,
      record.at,
      record.action,
      record.principal,
      record.subject,
      JSON.stringify(record.details),
    );
    return Promise.resolve(toAudit(row!));
  }

  async list(options: { action?: AuditRecord['action']; limit?: number } = {}): Promise<AuditRecord[]> {
    // LIMIT -1 is SQLite's "no limit".
    const limit = options.limit === undefined ? -1 : Math.max(0, Math.floor(options.limit));
    const rows =
      options.action === undefined
        ? this.sql.all<AuditRow>(`SELECT ${AUDIT_COLUMNS} FROM audit_log ORDER BY seq DESC LIMIT ?`, limit)
        : this.sql.all<AuditRow>(
            `SELECT ${AUDIT_COLUMNS} FROM audit_log WHERE action = ? ORDER BY seq DESC LIMIT ?`,
            options.action,
            limit,
          );
    return Promise.resolve(rows.map(toAudit));
  }
}

export class SqliteSettings implements SettingsStore {
  private readonly sql: Statements;

  constructor(db: Db, guard: Guard) {
    this.sql = new Statements(db, guard);
  }

  async get(key: string): Promise<string | null> {
    const row = this.sql.get<{ value: string }>('SELECT value FROM settings WHERE key = ?', key);
    return Promise.resolve(row ? row.value : null);
  }

  /** The no-op update makes RETURNING yield the stored row when the key exists. */
  async putIfAbsent(key: string, value: string): Promise<string> {
    const row = this.sql.get<{ value: string }>(
      `INSERT INTO settings (key, value) VALUES (?, ?)
       ON CONFLICT (key) DO UPDATE SET value = settings.value RETURNING value`,
      key,
      value,
    );
    return Promise.resolve(row!.value);
  }
}
