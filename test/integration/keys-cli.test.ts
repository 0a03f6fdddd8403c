/**
 * `cairn keys create|list|revoke` as real processes (`node bin/cairn.js`) on a SQLite data directory;
 * the tokens they print are checked with the real authenticator on the same store.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuthenticator } from '../../src/security/keys.ts';
import { SqliteStore } from '../../src/storage/sqlite/store.ts';
import { childEnv, runCairn } from './helpers/processes.ts';

let dir: string;
let data: string;
const env = childEnv({ CAIRN_TENANTS: '["acme"]', CAIRN_LOGGING_LEVEL: 'warn' });
const cairn = (...args: string[]) => runCairn([...args, '--data', data], { env, cwd: dir });

/** Whom the token authenticates as, looked up in the store the commands wrote. */
async function authenticate(token: string) {
  const store = new SqliteStore({ path: join(data, 'cairn.db') });
  try {
    return await createAuthenticator({ keys: store.keys, cacheSeconds: 0 }).authenticate(`Bearer ${token}`);
  } finally {
    await store.close();
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cairn-keys-cli-'));
  data = join(dir, 'data');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('cairn keys', () => {
  it('list refuses a missing store without creating one; create refuses unknown scopes', async () => {
    const empty = join(dir, 'empty');
    const [list, create] = await Promise.all([
      runCairn(['keys', 'list', '--data', empty], { env, cwd: dir }),
      cairn('keys', 'create', '--scopes', 'read,root'),
    ]);
    expect(list.code, list.stderr).toBe(2);
    expect(list.stderr).toContain('CAIRN_NOT_FOUND');
    expect((await readdir(dir)).sort()).toEqual(['data']);
    expect(create.code, create.stderr).toBe(2);
    expect(create.stderr).toMatch(/CAIRN_VALIDATION: scopes/);
  }, 60_000);

  it('creates a key whose token, alone on the last line, authenticates; revokes it; lists it', async () => {
    const created = await cairn(
      'keys',
      'create',
      '--scopes',
      'ingest, read',
      '--tenant',
      'acme',
      '--name',
      'shop',
    );
    expect(created.code, created.stderr).toBe(0);
    const lines = created.stdout.trimEnd().split('\n');
    const token = lines.at(-1)!;
    expect(token).toMatch(/^cairn_ck_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    const id = token.slice('cairn_'.length, 'cairn_'.length + 15);
    expect(lines.slice(0, -1).join('\n')).toContain(id);
    expect(await authenticate(token)).toEqual({
      principal: { id, kind: 'key', scopes: ['read', 'ingest'] },
      tenant: 'acme',
    });

    const revoked = await cairn('keys', 'revoke', id);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toMatch(new RegExp(`^${id} +acme +read,ingest +revoked `));
    expect(await authenticate(token)).toBeNull();

    const listed = await cairn('keys', 'list', '--json');
    expect(listed.code, listed.stderr).toBe(0);
    expect(JSON.parse(listed.stdout)).toEqual({
      keys: [
        {
          key_id: id,
          tenant: 'acme',
          scopes: ['read', 'ingest'],
          name: 'shop',
          created_at: expect.any(String),
          created_by: 'cli',
          revoked_at: expect.any(String),
          revoked_by: 'cli',
        },
      ],
    });
    expect(listed.stdout).not.toContain(token.slice(-43));
  }, 60_000);
});
