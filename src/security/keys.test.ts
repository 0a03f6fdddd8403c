/** API keys: tokens, the key service's rules and audit, and the authenticator with its cache. */
import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cliContext, createContext, type RequestContext, type Scope } from '../domain/context.ts';
import type { ApiKeyRecord } from '../domain/types.ts';
import { CairnError } from '../errors/errors.ts';
import type { ApiKeyStore } from '../storage/ports.ts';
import { SqliteStore } from '../storage/sqlite/store.ts';
import type { KeyService } from './contracts.ts';
import { createAuthenticator, createKeyService, MAX_KEY_NAME, parseToken } from './keys.ts';

const T0 = 1_700_000_000_000;
const TENANTS = ['default', 'acme'];
const CLI = cliContext();

/** A request context of an API key of `tenant` with `scopes`. */
const keyCtx = (tenant: string, scopes: Scope[], id = `ck_admin_${tenant}`): RequestContext =>
  createContext({ principal: { id, kind: 'key', scopes }, tenant });

/** The real store's keys, counting the lookups that reach it. */
function counted(keys: ApiKeyStore): ApiKeyStore & { gets: string[] } {
  const gets: string[] = [];
  return {
    gets,
    insert: (k) => keys.insert(k),
    list: (o) => keys.list(o),
    revoke: (id, at, by) => keys.revoke(id, at, by),
    get: (id) => {
      gets.push(id);
      return keys.get(id);
    },
  };
}

async function codeOf(p: Promise<unknown>): Promise<{ code?: string; field?: string }> {
  try {
    await p;
  } catch (e) {
    const err = e as { code?: string; details?: { fields?: { field: string }[]; field?: string } };
    return { code: err.code, field: err.details?.fields?.[0]?.field ?? err.details?.field };
  }
  return {};
}

let store: SqliteStore;
let clock: number;
let service: KeyService;

beforeEach(async () => {
  store = new SqliteStore({ path: ':memory:' });
  await store.migrate();
  clock = T0;
  service = createKeyService({ store, tenants: TENANTS, now: () => clock });
});
afterEach(async () => {
  await store.close();
});

describe('createKeyService', () => {
  it('creates a key: token shown once, only the secret’s SHA-256 stored, creation audited', async () => {
    const created = await service.create(CLI, { scopes: ['ingest', 'read', 'read'], name: 'checkout' });
    expect(created.token).toMatch(/^cairn_ck_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    const { id, secret } = parseToken(created.token)!;
    expect(created.key).toEqual({
      id,
      tenant: 'default',
      scopes: ['read', 'ingest'],
      name: 'checkout',
      createdAt: T0,
      createdBy: 'cli',
      revokedAt: null,
      revokedBy: null,
    });
    const stored = await store.keys.get(id);
    expect(stored?.secretHash).toBe(createHash('sha256').update(secret).digest('hex'));
    expect(JSON.stringify(stored)).not.toContain(secret);
    expect(await store.audit.list()).toEqual([
      {
        seq: expect.any(Number),
        at: T0,
        action: 'key_created',
        principal: 'cli',
        subject: id,
        details: { tenant: 'default', scopes: ['read', 'ingest'] },
      },
    ]);
    const again = await service.create(CLI, { scopes: ['read'] });
    expect(again.key.id).not.toBe(id);
    expect(again.key.name).toBe('');
  });

  it('rejects bad scopes, names and tenants with 400 naming the field', async () => {
    for (const scopes of [[], ['root'], ['read', 'Admin'], 'read', undefined])
      expect(await codeOf(service.create(CLI, { scopes: scopes as Scope[] }))).toEqual({
        code: 'CAIRN_VALIDATION',
        field: 'scopes',
      });
    expect(
      await codeOf(service.create(CLI, { scopes: ['read'], name: 'x'.repeat(MAX_KEY_NAME + 1) })),
    ).toEqual({ code: 'CAIRN_VALIDATION', field: 'name' });
    expect(await codeOf(service.create(CLI, { scopes: ['read'], tenant: 'globex' }))).toEqual({
      code: 'CAIRN_VALIDATION',
      field: 'tenant',
    });
    expect(await store.keys.list()).toEqual([]);
    const longest = await service.create(CLI, { scopes: ['admin'], name: 'x'.repeat(MAX_KEY_NAME) });
    expect(longest.key.name).toHaveLength(MAX_KEY_NAME);
  });

  it('needs the admin scope for every operation', async () => {
    const { key } = await service.create(CLI, { scopes: ['read'] });
    const reader = keyCtx('default', ['read', 'ingest']);
    expect(await codeOf(service.create(reader, { scopes: ['read'] }))).toMatchObject({
      code: 'CAIRN_FORBIDDEN',
    });
    expect(await codeOf(service.list(reader))).toMatchObject({ code: 'CAIRN_FORBIDDEN' });
    expect(await codeOf(service.revoke(reader, key.id))).toMatchObject({ code: 'CAIRN_FORBIDDEN' });
    expect((await store.keys.get(key.id))?.revokedAt).toBeNull();
  });

  it('an API-key admin manages only its own tenant’s keys; the CLI manages all', async () => {
    const own = await service.create(CLI, { scopes: ['read'], tenant: 'acme' });
    const other = await service.create(CLI, { scopes: ['read'] });
    const acmeAdmin = keyCtx('acme', ['admin']);

    const made = await service.create(acmeAdmin, { scopes: ['ingest'] });
    expect(made.key).toMatchObject({ tenant: 'acme', createdBy: acmeAdmin.principal.id });
    // Another tenant, served or not, is forbidden (not a 400 that would reveal which tenants exist).
    for (const tenant of ['default', 'globex'])
      expect(await codeOf(service.create(acmeAdmin, { scopes: ['read'], tenant }))).toEqual({
        code: 'CAIRN_FORBIDDEN',
        field: 'tenant',
      });

    clock += 1;
    expect((await service.list(acmeAdmin)).map((k) => k.id).sort()).toEqual([own.key.id, made.key.id].sort());
    expect((await service.list(CLI)).map((k) => k.id).sort()).toEqual(
      [own.key.id, made.key.id, other.key.id].sort(),
    );

    expect(await codeOf(service.revoke(acmeAdmin, other.key.id))).toMatchObject({ code: 'CAIRN_NOT_FOUND' });
    expect((await store.keys.get(other.key.id))?.revokedAt).toBeNull();
    expect((await service.revoke(acmeAdmin, own.key.id)).revokedBy).toBe(acmeAdmin.principal.id);
    expect((await service.revoke(CLI, other.key.id)).revokedBy).toBe('cli');
  });

  it('revoke is idempotent (first time kept, audited once); unknown ids are 404', async () => {
    const { key } = await service.create(CLI, { scopes: ['read'], tenant: 'acme' });
    clock = T0 + 50;
    const first = await service.revoke(CLI, key.id);
    expect(first).toEqual({ ...key, revokedAt: T0 + 50, revokedBy: 'cli' });
    clock = T0 + 90;
    expect(await service.revoke(keyCtx('acme', ['admin']), key.id)).toEqual(first);
    clock = T0 + 50; // same principal, same millisecond: still not a second revocation
    expect(await service.revoke(CLI, key.id)).toEqual(first);
    expect(await store.audit.list({ action: 'key_revoked' })).toEqual([
      {
        seq: expect.any(Number),
        at: T0 + 50,
        action: 'key_revoked',
        principal: 'cli',
        subject: key.id,
        details: { tenant: 'acme', scopes: ['read'] },
      },
    ]);
    expect(await codeOf(service.revoke(CLI, 'ck_000000000000'))).toMatchObject({ code: 'CAIRN_NOT_FOUND' });
  });

  it('draws a fresh id when the random one is taken', async () => {
    let collide = true;
    const keys: ApiKeyStore = {
      ...counted(store.keys),
      // The first id is stored before the service's own insert: a real CAIRN_CONFLICT from SQLite.
      insert: async (k: ApiKeyRecord) => {
        if (collide) {
          collide = false;
          await store.keys.insert(k);
        }
        await store.keys.insert(k);
      },
    };
    const svc = createKeyService({ store: { keys, audit: store.audit }, tenants: TENANTS });
    const { key, token } = await svc.create(CLI, { scopes: ['read'] });
    expect(parseToken(token)?.id).toBe(key.id);
    expect(await store.keys.list()).toHaveLength(2);
    expect((await store.audit.list()).map((a) => a.subject)).toEqual([key.id]);
  });
});

describe('createAuthenticator', () => {
  it('resolves a Bearer token (any case of the scheme) to its key principal and tenant', async () => {
    const { key, token } = await service.create(CLI, { scopes: ['ingest', 'read'], tenant: 'acme' });
    const auth = createAuthenticator({ keys: store.keys, cacheSeconds: 5 });
    const expected = { principal: { id: key.id, kind: 'key', scopes: ['read', 'ingest'] }, tenant: 'acme' };
    for (const header of [`Bearer ${token}`, `bearer ${token}`, `BEARER  ${token}`])
      expect(await auth.authenticate(header)).toEqual(expected);
  });

  it('refuses missing, malformed, unknown, wrong-secret and revoked tokens; malformed ones never reach the store', async () => {
    const { key, token } = await service.create(CLI, { scopes: ['read'] });
    const keys = counted(store.keys);
    const auth = createAuthenticator({ keys, cacheSeconds: 0 });
    const { id, secret } = parseToken(token)!;
    const flipped = `${secret.slice(0, -1)}${secret.endsWith('A') ? 'B' : 'A'}`;
    for (const header of [
      undefined,
      '',
      token,
      `Basic ${token}`,
      'Bearer',
      `Bearer ${token} extra`,
      `Bearer ${token}x`,
      `Bearer cairn_${id}_${secret.slice(1)}`,
      `Bearer cairn_${id.toUpperCase()}_${secret}`,
      `Bearer ${id}`,
      `Bearer cairn_${id}_${secret}\n`,
    ])
      expect(await auth.authenticate(header)).toBeNull();
    expect(keys.gets).toEqual([]);

    expect(await auth.authenticate(`Bearer cairn_${id}_${flipped}`)).toBeNull();
    expect(await auth.authenticate(`Bearer cairn_ck_0123456789ab_${secret}`)).toBeNull();
    expect(keys.gets).toEqual([id, 'ck_0123456789ab']);

    await service.revoke(CLI, key.id);
    expect(await auth.authenticate(`Bearer ${token}`)).toBeNull();
  });

  it('trusts a looked-up key for cacheSeconds, still checking every secret; revocation shows after it', async () => {
    const { key, token } = await service.create(CLI, { scopes: ['read'] });
    const keys = counted(store.keys);
    let now = T0;
    const auth = createAuthenticator({ keys, cacheSeconds: 5, now: () => now });
    const { id, secret } = parseToken(token)!;
    expect(await auth.authenticate(`Bearer ${token}`)).not.toBeNull();
    expect(await auth.authenticate(`Bearer ${token}`)).not.toBeNull();
    expect(
      await auth.authenticate(`Bearer cairn_${id}_${secret.replace(/^./, (c) => (c === 'x' ? 'y' : 'x'))}`),
    ).toBeNull();
    expect(keys.gets).toEqual([id]);

    await service.revoke(CLI, key.id);
    now = T0 + 4_999;
    expect(await auth.authenticate(`Bearer ${token}`)).not.toBeNull();
    now = T0 + 5_000;
    expect(await auth.authenticate(`Bearer ${token}`)).toBeNull();
    expect(keys.gets).toEqual([id, id]);
  });

  it('looks every key up again with cacheSeconds 0, and shares one lookup among concurrent first requests', async () => {
    const { key, token } = await service.create(CLI, { scopes: ['read'] });
    const keys = counted(store.keys);
    const uncached = createAuthenticator({ keys, cacheSeconds: 0 });
    await uncached.authenticate(`Bearer ${token}`);
    await uncached.authenticate(`Bearer ${token}`);
    expect(keys.gets).toEqual([key.id, key.id]);

    const cached = createAuthenticator({ keys, cacheSeconds: 60 });
    const answers = await Promise.all(
      Array.from({ length: 5 }, () => cached.authenticate(`Bearer ${token}`)),
    );
    expect(answers.every((a) => a?.principal.id === key.id)).toBe(true);
    expect(keys.gets).toHaveLength(3);
  });

  it('goes on with a key verified before while the store is unreachable; an unseen key is not let in', async () => {
    const { token } = await service.create(CLI, { scopes: ['read'] });
    const other = await service.create(CLI, { scopes: ['read'] });
    let down = false;
    const keys: ApiKeyStore = {
      ...counted(store.keys),
      get: (id: string) =>
        down ? Promise.reject(new CairnError('CAIRN_UNAVAILABLE', 'store down')) : store.keys.get(id),
    };
    let now = T0;
    const auth = createAuthenticator({ keys, cacheSeconds: 5, now: () => now });
    expect(await auth.authenticate(`Bearer ${token}`)).not.toBeNull();
    down = true;
    now = T0 + 60_000; // long past the cache time: the lookup fails, the last verified record stands
    expect(await auth.authenticate(`Bearer ${token}`)).not.toBeNull();
    const wrongSecret = token.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A'));
    expect(await auth.authenticate(`Bearer ${wrongSecret}`)).toBeNull();
    await expect(auth.authenticate(`Bearer ${other.token}`)).rejects.toMatchObject({
      code: 'CAIRN_UNAVAILABLE',
    });
  });

  it('bounds its cache, dropping the least recently used key', async () => {
    const tokens = await Promise.all(
      ['a', 'b', 'c'].map((name) => service.create(CLI, { scopes: ['read'], name })),
    );
    const [a, b, c] = tokens.map((t) => `Bearer ${t.token}`);
    const [ida, idb, idc] = tokens.map((t) => t.key.id);
    const keys = counted(store.keys);
    const auth = createAuthenticator({ keys, cacheSeconds: 60, cacheEntries: 2 });
    for (const header of [a, b, a, c, a, b]) expect(await auth.authenticate(header)).not.toBeNull();
    // a, b looked up; a hit (now most recent); c evicts b; a hit; b looked up again (evicting c).
    expect(keys.gets).toEqual([ida, idb, idc, idb]);
    await auth.authenticate(c);
    expect(keys.gets).toEqual([ida, idb, idc, idb, idc]);
  });
});
