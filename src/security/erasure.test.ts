/**
 * The erasure follow-up and the erase-record sweeper over real adapters: an in-memory SQLite store and
 * its change log, the registry on a files ArtifactStore in a temp directory. (End to end, with every
 * file and log line checked: test/integration/erasure.test.ts.)
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createContext } from '../domain/context.ts';
import { createLogger } from '../monitoring/logger.ts';
import { ModelRegistry } from '../registry/registry.ts';
import { FileArtifactStore } from '../storage/files/artifacts.ts';
import type { EntityChange } from '../storage/ports.ts';
import { SqliteChangeLog } from '../storage/sqlite/log.ts';
import { SqliteStore } from '../storage/sqlite/store.ts';
import { coalesced, createErasureFollowUp, ErasureSweeper, SWEEP_OFFSET } from './erasure.ts';
import { createPseudonymizer } from './pseudonym.ts';

const silent = createLogger('silent');

describe('coalesced', () => {
  it('runs one at a time, and once more for every burst of requests made during a run', async () => {
    let runs = 0;
    let release!: () => void;
    const task = coalesced(async () => {
      runs++;
      if (runs === 1) await new Promise<void>((r) => (release = r));
    });
    const first = task();
    const during = [task(), task(), task()];
    release();
    await Promise.all([first, ...during]);
    expect(runs).toBe(2);
    await task();
    expect(runs).toBe(3);
  });
});

describe('ErasureSweeper', () => {
  let store: SqliteStore;
  let log: SqliteChangeLog;
  let clock: number;
  let purges: number;

  const erase = (userId: string): EntityChange => ({ kind: 'erase', userId, events: [] });
  const item = (id: string): EntityChange => ({
    kind: 'items',
    items: [{ id, categories: [], attributes: {}, available: true, createdAt: 1, updatedAt: 1 }],
  });
  const sweeper = (holdback?: () => Promise<number>) =>
    new ErasureSweeper({
      changeLog: log,
      offsets: store.offsets,
      purge: () => {
        purges++;
        return Promise.resolve();
      },
      holdbacks: holdback ? [holdback] : [],
      logger: silent,
      graceMs: 1000,
      now: () => clock,
    });
  const kinds = async () => (await log.read(0, 100)).map((r) => `${r.seq}:${r.value.kind}`);

  beforeEach(async () => {
    store = new SqliteStore({ path: ':memory:' });
    await store.migrate();
    log = new SqliteChangeLog(store);
    clock = 1_000_000;
    purges = 0;
  });

  afterEach(async () => {
    await log.close();
    await store.close();
  });

  it('removes erase records once seen for the grace time, keeps everything else, and purges', async () => {
    await log.append([item('a'), erase('alice'), item('b'), erase('bob')]);
    const s = sweeper();
    expect(await s.sweep()).toBe(0); // first seen now
    expect(await store.offsets.get(SWEEP_OFFSET)).toBe(1); // stopped before the first erase record
    clock += 999;
    expect(await s.sweep()).toBe(0);
    clock += 1;
    expect(await s.sweep()).toBe(2);
    expect(await kinds()).toEqual(['1:items', '3:items']);
    expect(JSON.stringify(await log.read(0, 100))).not.toMatch(/alice|bob/);
    expect(purges).toBe(1);
    expect(await store.offsets.get(SWEEP_OFFSET)).toBe(4);
    // Nothing new: nothing read again, nothing purged again.
    expect(await s.sweep()).toBe(0);
    expect(purges).toBe(1);
  });

  it('keeps a record a durable consumer has not applied yet, and removes it once it has', async () => {
    await log.append([erase('carol'), erase('dave')]);
    await store.offsets.set('changes:cairn-online-changes', 1); // a durable consumer at seq 1
    await store.offsets.set('events:unrelated', 0); // another log's consumer: not a holder
    const s = sweeper();
    await s.sweep();
    clock += 5000;
    expect(await s.sweep()).toBe(1);
    expect(await kinds()).toEqual(['2:erase']);
    clock += 5000;
    expect(await s.sweep()).toBe(0); // however long it waits
    await store.offsets.set('changes:cairn-online-changes', 2);
    expect(await s.sweep()).toBe(0); // then its grace time starts
    clock += 1000;
    expect(await s.sweep()).toBe(1);
    expect(await kinds()).toEqual([]);
  });

  it('keeps a record beyond a holdback (the last written online-state snapshot)', async () => {
    await log.append([erase('erin'), erase('frank')]);
    let snapshot = 0;
    const s = sweeper(() => Promise.resolve(snapshot));
    await s.sweep();
    clock += 5000;
    expect(await s.sweep()).toBe(0);
    snapshot = 1;
    expect(await s.sweep()).toBe(0);
    clock += 1000;
    expect(await s.sweep()).toBe(1);
    expect(await kinds()).toEqual(['2:erase']);
  });

  it('starts where it stopped after a restart, without removing anything early', async () => {
    await log.append([item('a'), erase('gina')]);
    await sweeper().sweep();
    clock += 5000;
    const restarted = sweeper(); // has not seen gina's record yet: the grace time starts again
    expect(await restarted.sweep()).toBe(0);
    clock += 1000;
    expect(await restarted.sweep()).toBe(1);
  });

  it('a record removed at the head lowers the head; later appends are swept from the stored position', async () => {
    await log.append([erase('hal')]);
    const s = sweeper();
    await s.sweep();
    clock += 1000;
    expect(await s.sweep()).toBe(1);
    expect(await log.head()).toBe(0);
    await log.append([item('x'), erase('ivy')]);
    await s.sweep();
    clock += 1000;
    expect(await s.sweep()).toBe(1);
    expect(await kinds()).toEqual(['2:items']);
  });

  it('deletes the user’s served records once more before the record goes (a late served-log flush)', async () => {
    await log.append([erase('kate')]);
    const s = new ErasureSweeper({
      changeLog: log,
      served: store.served,
      offsets: store.offsets,
      purge: () => Promise.resolve(),
      logger: silent,
      graceMs: 1000,
      now: () => clock,
    });
    await s.sweep();
    // Buffered by a replica before the erase, written after it.
    const late = {
      requestId: 'late-1',
      userId: 'kate',
      mode: 'served' as const,
      endpoint: 'recommendations',
      experimentId: null,
      variant: null,
      modelVersion: null,
      source: 'fallback' as const,
      items: [],
      at: clock,
    };
    await store.served.record([late, { ...late, requestId: 'other-1', userId: 'leo' }]);
    clock += 1000;
    expect(await s.sweep()).toBe(1);
    expect(await store.served.get('late-1')).toBeNull();
    expect(await store.served.get('other-1')).not.toBeNull();
  });

  it('a purge that fails (a reader blocks the checkpoint) is tried again on the next sweep', async () => {
    await log.append([erase('mia')]);
    let failures = 1;
    const s = new ErasureSweeper({
      changeLog: log,
      offsets: store.offsets,
      purge: () => {
        purges++;
        return failures-- > 0 ? Promise.reject(new Error('busy')) : Promise.resolve();
      },
      logger: silent,
      graceMs: 0,
      now: () => clock,
    });
    await expect(s.sweep()).rejects.toThrow('busy');
    expect(await kinds()).toEqual([]); // the record is gone; only the purge is owed
    expect(await s.sweep()).toBe(0);
    expect(purges).toBe(2);
    expect(await s.sweep()).toBe(0);
    expect(purges).toBe(2);
  });

  it('warns, without naming anyone, when a consumer stays behind for long', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _e, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    await log.append([erase('jack')]);
    await store.offsets.set('changes:stuck', 0);
    const s = new ErasureSweeper({
      changeLog: log,
      offsets: store.offsets,
      purge: () => Promise.resolve(),
      logger: createLogger('info', { destination: sink }),
      graceMs: 0,
      warnAfterMs: 10_000,
      now: () => clock,
    });
    await s.sweep();
    clock += 10_000;
    await s.sweep();
    expect(lines.join('')).toMatch(/has not advanced/);
    expect(lines.join('')).not.toContain('jack');
    expect(await kinds()).toEqual(['1:erase']);
  });
});

describe('createErasureFollowUp', () => {
  let dir: string;
  let store: SqliteStore;
  let artifacts: FileArtifactStore;
  let registry: ModelRegistry;
  const pseudonymize = createPseudonymizer('test-key');
  const ctx = createContext({
    requestId: 'req-1',
    principal: { id: 'ck_0123456789ab', kind: 'key', scopes: ['admin'] },
  });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-erasure-'));
    store = new SqliteStore({ path: ':memory:' });
    await store.migrate();
    artifacts = new FileArtifactStore({ root: dir });
    registry = new ModelRegistry(store.models, artifacts, silent);
  });

  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  const model = (userIds: string[]) => ({
    artifact: {
      algorithm: 'pop' as const,
      formatVersion: 1,
      params: {},
      meta: { users: userIds.length, items: 1 },
      arrays: { scores: Float32Array.of(1) },
    },
    userIds,
    itemIds: ['i'],
    extra: {},
  });
  const info = {
    algorithm: 'pop',
    params: {},
    trainingData: { users: 2, items: 1, interactions: 2, events: 2, lastEventSeq: 2 },
    metrics: {},
    trainSeconds: 0,
    configHash: 'c',
  };

  it('rewrites the artifacts and audits the erasure under the pseudonym, by the principal', async () => {
    await registry.register(model(['kim', 'lee']), info);
    await registry.register(model(['lee']), info);
    await registry.register(model(['kim']), info);
    const followUp = createErasureFollowUp({ registry, store, pseudonymize, logger: silent, now: () => 123 });
    await followUp.erased(ctx, 'kim', 7);
    const [record] = await store.audit.list({ action: 'user_erased' });
    expect(record).toMatchObject({
      at: 123,
      action: 'user_erased',
      principal: 'ck_0123456789ab',
      subject: pseudonymize('kim'),
      details: { events: 7, artifacts: 2 },
    });
    expect(JSON.stringify(record)).not.toContain('kim');
    for (const mv of await registry.list()) expect((await registry.load(mv)).userIds).not.toContain('kim');
  });

  it('a repeat that finds nothing left anywhere records nothing; one that finishes a job does', async () => {
    await registry.register(model(['mo']), info);
    const followUp = createErasureFollowUp({ registry, store, pseudonymize, logger: silent });
    await followUp.erased(ctx, 'nobody', 0);
    expect(await store.audit.list()).toHaveLength(0);
    await followUp.erased(ctx, 'mo', 0); // the store had nothing left, an artifact still had them
    expect((await store.audit.list())[0].details).toEqual({ events: 0, artifacts: 1 });
  });
});
