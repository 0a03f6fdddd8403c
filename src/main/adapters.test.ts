/**
 * The pure decisions of the composition roots (which adapter serves which port, which roles may start)
 * and the embedded openings that need no server: an existing SQLite store, and the memory online state
 * restored from its snapshot in a files artifact store in a temp directory. Opening PostgreSQL, Redis
 * and NATS is covered by test/integration/roles.test.ts.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig, type DeepPartial } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import type { StoredEvent } from '../domain/types.ts';
import { CairnError } from '../errors/errors.ts';
import { createLogger, type Logger } from '../monitoring/logger.ts';
import { FileArtifactStore } from '../storage/files/artifacts.ts';
import { MemoryOnlineState } from '../storage/memory/online-state.ts';
import {
  backendsFor,
  checkRole,
  closeAll,
  ONLINE_SNAPSHOT_KEY,
  onlineStateOptions,
  openOnlineState,
  requireExistingStore,
} from './adapters.ts';

const config = (overrides: DeepPartial<Config> = {}) => loadConfig({ env: {}, overrides });

const PRODUCTION = {
  store: { url: 'postgres://cairn@db:5432/cairn' },
  redis: { url: 'redis://cache:6379' },
  nats: { url: 'nats://bus:4222' },
};

/** The CAIRN_CONFIG_INVALID fields `fn` throws, or fails the test if it does not throw one. */
function invalidFields(fn: () => void): string[] {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CairnError);
    expect((e as CairnError).code).toBe('CAIRN_CONFIG_INVALID');
    return ((e as CairnError).details as { fields: { field: string }[] }).fields.map((f) => f.field);
  }
  throw new Error('expected CAIRN_CONFIG_INVALID');
}

describe('backendsFor', () => {
  it('picks the embedded adapters when no URL is set', () => {
    expect(backendsFor(config())).toEqual({
      store: 'sqlite',
      logs: 'store',
      online: 'memory',
      jobs: 'store',
      artifacts: 'files',
    });
  });

  it('picks the production adapters from the URLs; artifacts follow the store unless file:// is forced', () => {
    expect(backendsFor(config(PRODUCTION))).toEqual({
      store: 'postgres',
      logs: 'nats',
      online: 'redis',
      jobs: 'bullmq',
      artifacts: 'postgres',
    });
    expect(backendsFor(config({ ...PRODUCTION, artifacts: { url: 'file:///srv/models' } })).artifacts).toBe(
      'files',
    );
    // Each URL decides its own port: Redis alone moves online state and jobs, not the logs.
    expect(backendsFor(config({ redis: { url: 'redis://cache:6379' } }))).toEqual({
      store: 'sqlite',
      logs: 'store',
      online: 'redis',
      jobs: 'bullmq',
      artifacts: 'files',
    });
  });
});

describe('checkRole', () => {
  it('lets role all start on any configuration', () => {
    expect(() => checkRole('all', config())).not.toThrow();
    expect(() => checkRole('all', config(PRODUCTION))).not.toThrow();
  });

  it('lists every missing shared backend at once for api and worker', () => {
    expect(invalidFields(() => checkRole('api', config()))).toEqual(['store.url', 'redis.url', 'nats.url']);
    expect(
      invalidFields(() => checkRole('worker', config({ artifacts: { url: 'file:///srv/models' } }))),
    ).toEqual(['store.url', 'redis.url', 'nats.url', 'artifacts.url']);
    expect(
      invalidFields(() => checkRole('worker', config({ store: PRODUCTION.store, nats: PRODUCTION.nats }))),
    ).toEqual(['redis.url']);
  });

  it('names the role in the message and accepts a complete production configuration', () => {
    expect(() => checkRole('worker', config())).toThrow(/--role worker/);
    expect(() => checkRole('api', config(PRODUCTION))).not.toThrow();
    expect(() => checkRole('worker', config(PRODUCTION))).not.toThrow();
  });
});

describe('requireExistingStore', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-adapters-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('fails with CAIRN_NOT_FOUND naming the missing file, and creates nothing', () => {
    const dataDir = join(dir, 'nothing-here');
    const expected = resolve(dataDir, 'cairn.db');
    let error: unknown;
    try {
      requireExistingStore(config({ dataDir }));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(CairnError);
    expect(error).toMatchObject({ code: 'CAIRN_NOT_FOUND', details: { field: 'store.url', path: expected } });
    expect((error as Error).message).toContain(expected);
    expect(existsSync(dataDir)).toBe(false);

    const url = `sqlite://${join(dir, 'other.db')}`;
    expect(() => requireExistingStore(config({ store: { url } }))).toThrow(join(dir, 'other.db'));
    expect(existsSync(join(dir, 'other.db'))).toBe(false);
  });

  it('accepts an existing file, an in-memory store and PostgreSQL (checked when opened)', () => {
    writeFileSync(join(dir, 'cairn.db'), '');
    expect(() => requireExistingStore(config({ dataDir: dir }))).not.toThrow();
    expect(() => requireExistingStore(config({ store: { url: 'sqlite://:memory:' } }))).not.toThrow();
    expect(() => requireExistingStore(config(PRODUCTION))).not.toThrow();
  });
});

describe('openOnlineState (memory)', () => {
  let dir: string;
  let artifacts: FileArtifactStore;
  let logger: Logger;
  let messages: string[];
  const cfg = config();
  const NOW = 1_700_000_000_000;

  const events: StoredEvent[] = ['a', 'b', 'a', 'c'].map((itemId, i) => ({
    seq: i + 1,
    eventId: `e${i + 1}`,
    userId: `u${i % 2}`,
    itemId,
    type: 'view',
    value: null,
    timestamp: NOW,
    context: null,
  }));

  /** A state at event watermark 4 and change watermark 2, snapshotted where openOnlineState looks. */
  async function saveSnapshot(): Promise<MemoryOnlineState> {
    const state = new MemoryOnlineState(onlineStateOptions(cfg));
    await state.applyEvents(events);
    await state.applyChanges([
      {
        seq: 2,
        value: {
          kind: 'user',
          user: { id: 'u1', attributes: {}, segments: [], optOut: true, createdAt: 1, updatedAt: 1 },
        },
      },
    ]);
    await artifacts.put(ONLINE_SNAPSHOT_KEY, state.snapshot());
    return state;
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-online-'));
    artifacts = new FileArtifactStore({ root: dir });
    messages = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        messages.push((JSON.parse(chunk.toString()) as { msg: string }).msg);
        done();
      },
    });
    logger = createLogger('info', { destination });
  });

  afterEach(async () => {
    await artifacts.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('starts empty when there is no snapshot', async () => {
    const state = await openOnlineState(cfg, artifacts, { events: 10, changes: 10 }, logger);
    expect(state.kind).toBe('memory');
    expect(await state.watermarks()).toEqual({ events: 0, changes: 0 });
    expect(messages).toEqual([]);
  });

  it('restores the snapshot when the logs reach at least as far', async () => {
    const saved = await saveSnapshot();
    const state = await openOnlineState(cfg, artifacts, { events: 4, changes: 2 }, logger);
    expect(await state.watermarks()).toEqual({ events: 4, changes: 2 });
    expect(await state.popular(0, 10, NOW)).toEqual(await saved.popular(0, 10, NOW));
    expect(await state.optedOut('u1')).toBe(true);
    expect(messages).toEqual(['online state restored from its snapshot']);
  });

  it('discards a snapshot ahead of either log head (the store was replaced)', async () => {
    await saveSnapshot();
    for (const heads of [
      { events: 3, changes: 2 },
      { events: 4, changes: 1 },
    ]) {
      const state = await openOnlineState(cfg, artifacts, heads, logger);
      expect(await state.watermarks()).toEqual({ events: 0, changes: 0 });
      expect(await state.popularCount()).toBe(0);
    }
    expect(messages).toEqual([
      'online-state snapshot is ahead of the logs; rebuilding',
      'online-state snapshot is ahead of the logs; rebuilding',
    ]);
  });

  it('ignores a corrupt snapshot, or one taken under other popularity settings', async () => {
    const saved = await saveSnapshot();
    const bytes = saved.snapshot();
    bytes[bytes.length >> 1] ^= 0xff;
    await artifacts.put(ONLINE_SNAPSHOT_KEY, bytes);
    const damaged = await openOnlineState(cfg, artifacts, { events: 4, changes: 2 }, logger);
    expect(await damaged.watermarks()).toEqual({ events: 0, changes: 0 });

    await artifacts.put(ONLINE_SNAPSHOT_KEY, saved.snapshot());
    const otherDecay = config({ serving: { popularityHalfLifeDays: 1 } });
    const other = await openOnlineState(otherDecay, artifacts, { events: 4, changes: 2 }, logger);
    expect(await other.watermarks()).toEqual({ events: 0, changes: 0 });
    expect(messages).toEqual([
      'online-state snapshot unusable; rebuilding from the logs',
      'online-state snapshot unusable; rebuilding from the logs',
    ]);
  });
});

describe('closeAll', () => {
  it('closes every resource even when some fail, and rethrows the first failure', async () => {
    const closed: string[] = [];
    const resource = (name: string, fails = false) => ({
      close: () => {
        closed.push(name);
        return fails ? Promise.reject(new Error(`${name} failed`)) : Promise.resolve();
      },
    });
    await expect(
      closeAll([resource('a'), null, resource('b', true), undefined, resource('c', true), resource('d')]),
    ).rejects.toThrow('b failed');
    expect(closed).toEqual(['a', 'b', 'c', 'd']);
    await expect(closeAll([resource('e')])).resolves.toBeUndefined();
  });
});
