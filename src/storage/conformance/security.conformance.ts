/**
 * The conformance suite of the `ApiKeyStore`, `AuditStore` and `SettingsStore` ports (`store.keys`,
 * `store.audit`, `store.settings`). Every Store adapter runs it from an integration test:
 *
 *   describeSecurityConformance('sqlite', () => openFreshSqlite(), () => removeTempDir());
 *
 * `factory` returns a fresh, empty, migrated store per test (closed by the suite afterwards).
 */
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ApiKeyRecord, AuditRecord } from '../../domain/types.ts';
import type { Store } from '../ports.ts';
import { RICH_JSON } from './helpers.ts';

const T0 = 1_700_000_000_000;

function key(id: string, overrides: Partial<ApiKeyRecord> = {}): ApiKeyRecord {
  return {
    id,
    secretHash: 'ab'.repeat(32),
    tenant: 'default',
    scopes: ['read', 'ingest'],
    name: '',
    createdAt: T0,
    createdBy: 'cli',
    revokedAt: null,
    revokedBy: null,
    ...overrides,
  };
}

function entry(action: AuditRecord['action'], subject: string, at = T0): Omit<AuditRecord, 'seq'> {
  return { at, action, principal: 'cli', subject, details: { tenant: 'default', scopes: ['admin'] } };
}

/** Eight calls at once. */
const many = <T>(f: (i: number) => Promise<T>) => Promise.all(Array.from({ length: 8 }, (_, i) => f(i)));

/** Opens a pooled adapter's connections first, so that racing calls really overlap. */
async function warmUp(store: Store): Promise<void> {
  await many(() => store.settings.get('warm-up'));
}

export function describeSecurityConformance(
  name: string,
  factory: () => Promise<Store>,
  cleanup?: () => Promise<void>,
): void {
  describe(`Keys, audit and settings conformance: ${name}`, () => {
    let store: Store;

    beforeEach(async () => {
      store = await factory();
    });
    afterEach(async () => {
      await store.close();
    });
    if (cleanup) afterAll(cleanup);

    describe('api keys', () => {
      it('inserts and reads back every field; a repeated id is a conflict that changes nothing', async () => {
        const k = key('ck_000000000001', {
          scopes: ['admin'],
          name: 'checkout — 東京 🔑',
          tenant: 'acme',
          createdBy: 'ck_00000000000f',
        });
        await store.keys.insert(k);
        expect(await store.keys.get(k.id)).toEqual(k);
        expect(await store.keys.get('ck_unknown')).toBeNull();
        await expect(store.keys.insert(key(k.id, { tenant: 'other' }))).rejects.toMatchObject({
          code: 'CAIRN_CONFLICT',
        });
        expect(await store.keys.get(k.id)).toEqual(k);
      });

      it('lists newest first, revoked keys included, optionally one tenant only', async () => {
        await store.keys.insert(key('ck_a', { createdAt: T0 + 1 }));
        await store.keys.insert(key('ck_b', { createdAt: T0 + 3, tenant: 'acme' }));
        await store.keys.insert(key('ck_c', { createdAt: T0 + 2, revokedAt: T0 + 5, revokedBy: 'cli' }));
        const ids = (list: ApiKeyRecord[]) => list.map((k) => k.id);
        expect(ids(await store.keys.list())).toEqual(['ck_b', 'ck_c', 'ck_a']);
        expect(ids(await store.keys.list({ tenant: 'default' }))).toEqual(['ck_c', 'ck_a']);
        expect(ids(await store.keys.list({ tenant: 'acme' }))).toEqual(['ck_b']);
        expect(await store.keys.list({ tenant: 'nobody' })).toEqual([]);
      });

      it('revokes once: a later revoke keeps the first time and principal; unknown ids are null', async () => {
        await store.keys.insert(key('ck_a'));
        await store.keys.insert(key('ck_b'));
        const first = await store.keys.revoke('ck_a', T0 + 10, 'cli');
        expect(first).toEqual(key('ck_a', { revokedAt: T0 + 10, revokedBy: 'cli' }));
        expect(await store.keys.revoke('ck_a', T0 + 20, 'ck_other')).toEqual(first);
        expect(await store.keys.get('ck_a')).toEqual(first);
        expect(await store.keys.get('ck_b')).toEqual(key('ck_b'));
        expect(await store.keys.revoke('ck_unknown', T0, 'cli')).toBeNull();
      });

      it('concurrent revokes of one key all answer with the single revocation that won', async () => {
        await store.keys.insert(key('ck_a'));
        await warmUp(store);
        const results = await many((i) => store.keys.revoke('ck_a', T0 + 100 + i, `p${i}`));
        const stored = await store.keys.get('ck_a');
        expect(stored?.revokedAt).not.toBeNull();
        expect(results.every((r) => r !== null && r.revokedAt === stored!.revokedAt)).toBe(true);
        expect(new Set(results.map((r) => r!.revokedBy))).toEqual(new Set([stored!.revokedBy]));
      });
    });

    describe('audit log', () => {
      it('appends with ascending seqs and reads back every field, rich JSON details included', async () => {
        const a = await store.audit.append({ ...entry('key_created', 'ck_a'), details: RICH_JSON });
        const b = await store.audit.append(entry('user_erased', 'h:1234'));
        expect(a).toEqual({ ...entry('key_created', 'ck_a'), details: RICH_JSON, seq: a.seq });
        expect(b.seq).toBeGreaterThan(a.seq);
        expect(await store.audit.list()).toEqual([b, a]);
      });

      it('lists newest first, by action, with a limit', async () => {
        const appended: AuditRecord[] = [];
        for (const [action, subject] of [
          ['key_created', 'ck_a'],
          ['key_created', 'ck_b'],
          ['key_revoked', 'ck_a'],
          ['user_erased', 'h:1'],
        ] as const)
          appended.push(await store.audit.append(entry(action, subject)));
        const subjects = (list: AuditRecord[]) => list.map((r) => `${r.action}:${r.subject}`);
        expect(subjects(await store.audit.list())).toEqual([
          'user_erased:h:1',
          'key_revoked:ck_a',
          'key_created:ck_b',
          'key_created:ck_a',
        ]);
        expect(subjects(await store.audit.list({ action: 'key_created' }))).toEqual([
          'key_created:ck_b',
          'key_created:ck_a',
        ]);
        expect(await store.audit.list({ limit: 2 })).toEqual([appended[3], appended[2]]);
        expect(await store.audit.list({ action: 'key_created', limit: 1 })).toEqual([appended[1]]);
        expect(await store.audit.list({ limit: 0 })).toEqual([]);
        expect(await store.audit.list({ action: 'key_revoked', limit: 10 })).toEqual([appended[2]]);
      });
    });

    describe('settings', () => {
      it('get is null until set; putIfAbsent keeps the first value and returns it', async () => {
        expect(await store.settings.get('log_hash_key')).toBeNull();
        expect(await store.settings.putIfAbsent('log_hash_key', 'first ü')).toBe('first ü');
        expect(await store.settings.putIfAbsent('log_hash_key', 'second')).toBe('first ü');
        expect(await store.settings.get('log_hash_key')).toBe('first ü');
        expect(await store.settings.putIfAbsent('other', '')).toBe('');
        expect(await store.settings.get('other')).toBe('');
      });

      it('concurrent putIfAbsent calls all get the one value that was stored', async () => {
        await warmUp(store);
        for (let round = 0; round < 5; round++) {
          const answers = await many((i) => store.settings.putIfAbsent(`race-${round}`, `value-${i}`));
          const stored = await store.settings.get(`race-${round}`);
          expect(stored).toMatch(/^value-\d$/);
          expect(answers).toEqual(answers.map(() => stored));
        }
      });
    });
  });
}
