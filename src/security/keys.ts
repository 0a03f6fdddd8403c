/**
 * API keys: how they are made, managed and checked.
 *
 * A token is `cairn_<id>_<secret>`: the id (`ck_` + 12 hex chars) is public and names the key in lists,
 * logs and audit records; the secret (32 random bytes, base64url) is shown once and stored only as its
 * SHA-256. Keys live in the default tenant's store, each bound to one tenant: authenticating a token
 * yields its key's scopes and tenant.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { ALL_SCOPES, hasScope, type RequestContext, type Scope } from '../domain/context.ts';
import type { ApiKeyRecord } from '../domain/types.ts';
import { CairnError } from '../errors/errors.ts';
import type { ApiKeyStore, Store } from '../storage/ports.ts';
import {
  keyInfo,
  type ApiKeyInfo,
  type Authenticated,
  type Authenticator,
  type CreatedKey,
  type CreateKeyRequest,
  type KeyService,
} from './contracts.ts';

const TOKEN = /^cairn_(ck_[0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;
const BEARER = /^bearer +(\S+) *$/i;
export const MAX_KEY_NAME = 128;
/** Verified keys kept by one authenticator; the least recently used is dropped beyond it. */
export const KEY_CACHE_ENTRIES = 10_000;
/** Fresh ids tried when a random id is already taken (48 random bits: practically never). */
const ID_ATTEMPTS = 3;

const sha256 = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

/** A new token and the record that stores it (only the secret's hash). */
export function mintKey(fields: Omit<ApiKeyRecord, 'id' | 'secretHash'>): {
  record: ApiKeyRecord;
  token: string;
} {
  const id = `ck_${randomBytes(6).toString('hex')}`;
  const secret = randomBytes(32).toString('base64url');
  return {
    record: { ...fields, id, secretHash: sha256(secret).toString('hex') },
    token: `cairn_${id}_${secret}`,
  };
}

/** The id and secret of a well-formed token; null for anything else. */
export function parseToken(token: string): { id: string; secret: string } | null {
  const m = TOKEN.exec(token);
  return m ? { id: m[1], secret: m[2] } : null;
}

/** Whether `secret` hashes to the stored hex digest, compared in constant time. */
export function secretMatches(secret: string, secretHash: string): boolean {
  const stored = Buffer.from(secretHash, 'hex');
  const given = sha256(secret);
  return stored.length === given.length && timingSafeEqual(stored, given);
}

/* ------------------------------------------------------------------ key service */

/** The operator's own principals act on every tenant; API keys (and anonymous callers) on their own. */
const managesAllTenants = (ctx: RequestContext): boolean =>
  ctx.principal.kind === 'cli' || ctx.principal.kind === 'system';

function requireAdmin(ctx: RequestContext): void {
  if (!hasScope(ctx, 'admin'))
    throw new CairnError('CAIRN_FORBIDDEN', 'managing API keys needs the admin scope', { scope: 'admin' });
}

/** Scopes as a set in canonical order; 400 naming `scopes` unless a non-empty subset of ALL_SCOPES. */
function validScopes(scopes: unknown): Scope[] {
  const known = Array.isArray(scopes) && scopes.every((s) => ALL_SCOPES.includes(s as Scope));
  if (!known || scopes.length === 0)
    throw CairnError.validation([
      { field: 'scopes', message: `must be a non-empty list of ${ALL_SCOPES.join(', ')}` },
    ]);
  return ALL_SCOPES.filter((s) => scopes.includes(s));
}

function validName(name: unknown): string {
  if (name === undefined) return '';
  if (typeof name !== 'string' || name.length > MAX_KEY_NAME)
    throw CairnError.validation([
      { field: 'name', message: `must be a string of at most ${MAX_KEY_NAME} chars` },
    ]);
  return name;
}

/**
 * The tenant a new key is bound to: the caller's by default. A tenant-bound caller may name only its own
 * (checked before whether the tenant exists, so it learns nothing about other tenants).
 */
function targetTenant(ctx: RequestContext, requested: unknown, served: ReadonlySet<string>): string {
  const tenant = requested ?? ctx.tenant;
  if (!managesAllTenants(ctx) && tenant !== ctx.tenant)
    throw new CairnError('CAIRN_FORBIDDEN', 'an API key manages only its own tenant’s keys', {
      field: 'tenant',
    });
  if (typeof tenant !== 'string' || !served.has(tenant))
    throw CairnError.validation([{ field: 'tenant', message: 'is not a tenant this deployment serves' }]);
  return tenant;
}

export function createKeyService(opts: {
  store: Pick<Store, 'keys' | 'audit'>;
  /** Every tenant the deployment serves, `default` included. */
  tenants: readonly string[];
  now?: () => number;
}): KeyService {
  const { keys, audit } = opts.store;
  const served = new Set(opts.tenants);
  const now = opts.now ?? Date.now;

  const audited = async (ctx: RequestContext, action: 'key_created' | 'key_revoked', key: ApiKeyRecord) => {
    await audit.append({
      at: now(),
      action,
      principal: ctx.principal.id,
      subject: key.id,
      details: { tenant: key.tenant, scopes: key.scopes },
    });
  };

  const insertFresh = async (fields: Omit<ApiKeyRecord, 'id' | 'secretHash'>) => {
    for (let attempt = 1; ; attempt++) {
      const minted = mintKey(fields);
      try {
        await keys.insert(minted.record);
        return minted;
      } catch (err) {
        if (!(err instanceof CairnError && err.code === 'CAIRN_CONFLICT') || attempt >= ID_ATTEMPTS)
          throw err;
      }
    }
  };

  return {
    async create(ctx: RequestContext, request: CreateKeyRequest): Promise<CreatedKey> {
      requireAdmin(ctx);
      const fields = {
        tenant: targetTenant(ctx, request.tenant, served),
        scopes: validScopes(request.scopes),
        name: validName(request.name),
        createdAt: now(),
        createdBy: ctx.principal.id,
        revokedAt: null,
        revokedBy: null,
      };
      const { record, token } = await insertFresh(fields);
      await audited(ctx, 'key_created', record);
      return { key: keyInfo(record), token };
    },

    async list(ctx: RequestContext): Promise<ApiKeyInfo[]> {
      requireAdmin(ctx);
      const records = await keys.list(managesAllTenants(ctx) ? {} : { tenant: ctx.tenant });
      return records.map(keyInfo);
    },

    async revoke(ctx: RequestContext, id: string): Promise<ApiKeyInfo> {
      requireAdmin(ctx);
      const found = await keys.get(id);
      // Another tenant's key is reported missing: its existence is not the caller's business.
      if (!found || (!managesAllTenants(ctx) && found.tenant !== ctx.tenant))
        throw new CairnError('CAIRN_NOT_FOUND', `API key "${id}" not found`, { key_id: id });
      if (found.revokedAt !== null) return keyInfo(found);
      const at = now();
      const revoked = (await keys.revoke(id, at, ctx.principal.id)) ?? found;
      // Audited only by the revoke that took effect (a concurrent one keeps the first time and principal).
      if (revoked.revokedAt === at && revoked.revokedBy === ctx.principal.id)
        await audited(ctx, 'key_revoked', revoked);
      return keyInfo(revoked);
    },
  };
}

/* ------------------------------------------------------------------ authenticator */

interface CacheEntry {
  /** The key as looked up (revoked ones included, so they are refused without a lookup). */
  record: ApiKeyRecord;
  expiresAt: number;
}

/**
 * Verified-key cache by key id, least recently used first (a Map keeps insertion order; a hit re-inserts).
 * Entries hold the stored hash, so every request's secret is still checked against it.
 */
class KeyCache {
  private readonly entries = new Map<string, CacheEntry>();

  constructor(private readonly capacity: number) {}

  /** The cached key and whether it is still fresh at `at` (an expired entry stays until replaced). */
  get(id: string, at: number): { record: ApiKeyRecord; fresh: boolean } | null {
    const entry = this.entries.get(id);
    if (!entry) return null;
    this.entries.delete(id);
    this.entries.set(id, entry);
    return { record: entry.record, fresh: entry.expiresAt > at };
  }

  set(record: ApiKeyRecord, expiresAt: number): void {
    this.entries.delete(record.id);
    this.entries.set(record.id, { record, expiresAt });
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
  }
}

export function createAuthenticator(opts: {
  keys: ApiKeyStore;
  /** How long a looked-up key is trusted before it is looked up again (0: every request). */
  cacheSeconds: number;
  now?: () => number;
  /** Cache bound (default KEY_CACHE_ENTRIES). */
  cacheEntries?: number;
}): Authenticator {
  const now = opts.now ?? Date.now;
  const ttlMs = Math.max(0, opts.cacheSeconds) * 1000;
  const cache = new KeyCache(opts.cacheEntries ?? KEY_CACHE_ENTRIES);
  // Concurrent first requests with one key share a single lookup.
  const inflight = new Map<string, Promise<ApiKeyRecord | null>>();

  const lookup = (id: string): Promise<ApiKeyRecord | null> => {
    const cached = ttlMs > 0 ? cache.get(id, now()) : null;
    if (cached?.fresh) return Promise.resolve(cached.record);
    let pending = inflight.get(id);
    if (!pending) {
      pending = opts.keys.get(id).then(
        (record) => {
          if (record && ttlMs > 0) cache.set(record, now() + ttlMs);
          return record;
        },
        (err: unknown) => {
          // The store is unreachable (e.g. PostgreSQL down while replicas keep serving): a key verified
          // before goes on as it was last read; a key never seen cannot be checked (the error stands).
          if (cached) return cached.record;
          throw err;
        },
      );
      const forget = () => inflight.delete(id);
      void pending.then(forget, forget);
      inflight.set(id, pending);
    }
    return pending;
  };

  return {
    async authenticate(authorization: string | undefined): Promise<Authenticated | null> {
      const bearer = authorization === undefined ? null : BEARER.exec(authorization);
      const parsed = bearer ? parseToken(bearer[1]) : null;
      if (!parsed) return null;
      const record = await lookup(parsed.id);
      if (!record || record.revokedAt !== null || !secretMatches(parsed.secret, record.secretHash))
        return null;
      return {
        principal: { id: record.id, kind: 'key', scopes: [...record.scopes] },
        tenant: record.tenant,
      };
    },
  };
}
