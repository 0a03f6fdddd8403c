/**
 * Row shapes of the API-key and audit tables (migration v6) and their mapping to domain records, shared
 * by the SQLite and PostgreSQL adapters. `J` is how a JSON column arrives: text on SQLite, parsed on
 * PostgreSQL (jsonb); `json` turns it into the value.
 */
import type { ApiKeyRecord, AuditRecord } from '../domain/types.ts';

export interface KeyRow<J> {
  id: string;
  secret_hash: string;
  tenant: string;
  scopes: J;
  name: string;
  created_at: number;
  created_by: string;
  revoked_at: number | null;
  revoked_by: string | null;
}

export interface AuditRow<J> {
  seq: number;
  at: number;
  action: string;
  principal: string;
  subject: string;
  details: J;
}

export const KEY_COLUMNS =
  'id, secret_hash, tenant, scopes, name, created_at, created_by, revoked_at, revoked_by';
export const AUDIT_COLUMNS = 'seq, at, action, principal, subject, details';

export function keyFromRow<J>(r: KeyRow<J>, json: (v: J) => unknown): ApiKeyRecord {
  return {
    id: r.id,
    secretHash: r.secret_hash,
    tenant: r.tenant,
    scopes: json(r.scopes) as ApiKeyRecord['scopes'],
    name: r.name,
    createdAt: Number(r.created_at),
    createdBy: r.created_by,
    revokedAt: r.revoked_at === null ? null : Number(r.revoked_at),
    revokedBy: r.revoked_by,
  };
}

export function auditFromRow<J>(r: AuditRow<J>, json: (v: J) => unknown): AuditRecord {
  return {
    seq: Number(r.seq),
    at: Number(r.at),
    action: r.action as AuditRecord['action'],
    principal: r.principal,
    subject: r.subject,
    details: json(r.details) as AuditRecord['details'],
  };
}
