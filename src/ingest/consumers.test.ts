/**
 * OnlineProjector and StoreWriter over the real embedded adapters: SQLite logs over in-memory SQLite
 * stores, and the memory online state. The only fakes are thin wrappers around those real adapters that
 * record what the consumers hand them or fail on purpose (a store of record that is down for a while).
 */
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CairnEvent, StoredEvent } from '../domain/types.ts';
import { CairnError } from '../errors/errors.ts';
import { createLogger, type Logger } from '../monitoring/logger.ts';
import { MemoryOnlineState } from '../storage/memory/online-state.ts';
import type {
  EntityChange,
  EventStore,
  LogRecord,
  OnlineState,
  OnlineStateOptions,
} from '../storage/ports.ts';
import { SqliteChangeLog, SqliteEventLog } from '../storage/sqlite/log.ts';
import { SqliteStore } from '../storage/sqlite/store.ts';
import { OnlineProjector, StoreWriter } from './consumers.ts';

const NOW = 1_700_000_000_000;
const OPTIONS: OnlineStateOptions = {
  types: { view: { weight: 1 }, purchase: { weight: 8 } },
  popularityHalfLifeDays: 7,
  historyLimit: 10,
};
// Fast retries and polls: a failing batch is delivered again within milliseconds.
const LOG_OPTIONS = { idlePollMs: 20, retryBaseMs: 5, retryMaxMs: 20, headPollMs: 20, onError: () => {} };

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

let nextId = 0;
function event(userId: string, itemId: string, type = 'view'): CairnEvent {
  return { eventId: `ev-${++nextId}`, userId, itemId, type, value: null, timestamp: NOW, context: null };
}

/** A logger whose lines can be inspected (warnings and info lines are part of the writer's contract). */
function capturingLogger(): { logger: Logger; lines: { level: string; msg: string }[] } {
  const lines: { level: string; msg: string }[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      const line = JSON.parse(chunk.toString()) as { level: string; msg: string };
      lines.push({ level: line.level, msg: line.msg });
      done();
    },
  });
  return { logger: createLogger('info', { destination }), lines };
}

/**
 * The real memory state, with a record of the calls the projector makes and an optional gate that holds
 * `applyEvents` open (to catch a changes batch slipping in beside it).
 */
class RecordingState implements OnlineState {
  readonly kind = 'recording';
  readonly calls: string[] = [];
  readonly changeBatches: LogRecord<EntityChange>[][] = [];
  gate: Promise<void> | null = null;

  constructor(readonly inner: MemoryOnlineState) {}

  async applyEvents(events: StoredEvent[]): Promise<void> {
    this.calls.push(`events:start:${events.map((e) => e.seq).join(',')}`);
    if (this.gate) await this.gate;
    await this.inner.applyEvents(events);
    this.calls.push('events:end');
  }

  async applyChanges(records: LogRecord<EntityChange>[]): Promise<void> {
    this.calls.push(`changes:start:${records.map((r) => r.seq).join(',')}`);
    this.changeBatches.push(records);
    await this.inner.applyChanges(records);
    this.calls.push('changes:end');
  }

  watermarks = () => this.inner.watermarks();
  recentEvents = (userId: string, limit: number) => this.inner.recentEvents(userId, limit);
  optedOut = (userId: string) => this.inner.optedOut(userId);
  popular = (offset: number, count: number, now: number) => this.inner.popular(offset, count, now);
  popularity = (ids: string[], now: number) => this.inner.popularity(ids, now);
  popularCount = () => this.inner.popularCount();
  items = (after: string | undefined, limit: number) => this.inner.items(after, limit);
  itemFeatures = (ids: string[]) => this.inner.itemFeatures(ids);
  userMeta = (userId: string) => this.inner.userMeta(userId);
  cacheGet = (userId: string, key: string) => this.inner.cacheGet(userId, key);
  cacheVersion = (userId: string) => this.inner.cacheVersion(userId);
  cacheSet = (userId: string, key: string, value: string, ttl: number, version?: string) =>
    this.inner.cacheSet(userId, key, value, ttl, version);
  clear = () => this.inner.clear();
  close = () => this.inner.close();
}

describe('OnlineProjector', () => {
  let store: SqliteStore;
  let eventLog: SqliteEventLog;
  let changeLog: SqliteChangeLog;
  let online: MemoryOnlineState;
  let projectors: OnlineProjector[];
  const logger = createLogger('silent');

  const projector = (
    state: OnlineState = online,
    extra: Partial<ConstructorParameters<typeof OnlineProjector>[0]> = {},
  ) => {
    const p = new OnlineProjector({ online: state, eventLog, changeLog, logger, ...extra });
    projectors.push(p);
    return p;
  };

  beforeEach(async () => {
    store = new SqliteStore({ path: ':memory:' });
    await store.migrate();
    eventLog = new SqliteEventLog(store, LOG_OPTIONS);
    changeLog = new SqliteChangeLog(store, LOG_OPTIONS);
    online = new MemoryOnlineState(OPTIONS);
    projectors = [];
  });

  afterEach(async () => {
    for (const p of projectors) await p.close();
    await eventLog.close();
    await changeLog.close();
    await online.close();
    await store.close();
  });

  it('applies both logs into the online state and reports its positions', async () => {
    const p = projector();
    await p.start();
    await eventLog.append([event('u1', 'a'), event('u1', 'b', 'purchase'), event('u2', 'a')]);
    const [itemsSeq, userSeq] = await changeLog.append([
      {
        kind: 'items',
        items: [{ id: 'a', categories: ['c'], attributes: {}, available: true, createdAt: 1, updatedAt: 1 }],
      },
      {
        kind: 'user',
        user: { id: 'u2', attributes: {}, segments: [], optOut: true, createdAt: 1, updatedAt: 1 },
      },
    ]);
    await p.eventsCaughtUp(3);
    await p.changesCaughtUp(userSeq);

    expect(itemsSeq).toBe(1);
    expect(p.eventPosition).toBe(3);
    expect(p.changePosition).toBe(2);
    expect(await online.watermarks()).toEqual({ events: 3, changes: 2 });
    expect((await online.popular(0, 10, NOW)).map((e) => [e.itemId, e.score])).toEqual([
      ['b', 8],
      ['a', 2],
    ]);
    expect((await online.recentEvents('u1', 10)).map((e) => e.itemId)).toEqual(['b', 'a']);
    expect(await online.optedOut('u2')).toBe(true);
    expect((await online.items(undefined, 10)).map((i) => i.id)).toEqual(['a']);
  });

  it('resumes from the online state’s watermarks instead of re-reading the logs', async () => {
    await eventLog.append([event('u1', 'a'), event('u1', 'b'), event('u2', 'c')]);
    await changeLog.append([{ kind: 'champion', version: 'v1' }]);
    // The state already holds the first two events and the first change (e.g. restored from a snapshot).
    await online.applyEvents(await eventLog.read(0, 2));
    await online.applyChanges(await changeLog.read(0, 1));

    const applied: [string, number][] = [];
    const p = projector(online, { onApplied: (what, count) => applied.push([what, count]) });
    await p.start();
    expect(p.eventPosition).toBe(2); // starts at the watermark, before reading anything
    expect(p.changePosition).toBe(1);
    await eventLog.append([event('u3', 'a')]);
    await changeLog.append([{ kind: 'champion', version: 'v2' }]);
    await p.eventsCaughtUp(4);
    await p.changesCaughtUp(2);

    // Only what came after the watermarks was delivered: seqs 3 and 4, and change 2.
    expect(applied.filter(([w]) => w === 'events').reduce((n, [, c]) => n + c, 0)).toBe(2);
    expect(applied.filter(([w]) => w === 'changes').reduce((n, [, c]) => n + c, 0)).toBe(1);
    expect(await online.watermarks()).toEqual({ events: 4, changes: 2 });
  });

  it('subtracts on erase only the events the state had applied', async () => {
    const state = new RecordingState(online);
    await eventLog.append([event('gone', 'x'), event('gone', 'x'), event('stays', 'x')]);
    const first = projector(state);
    await first.start();
    await first.eventsCaughtUp(3);
    await first.close();

    // While no projector runs, the user gets two more events and is then erased: seqs 4 and 5 leave the
    // log before any projector reads them, so the state never added them.
    await eventLog.append([event('gone', 'x'), event('gone', 'y')]);
    const erased = (await store.eraseUser('gone'))!;
    expect(erased.map((e) => e.seq)).toEqual([1, 2, 4, 5]);
    const [eraseSeq] = await changeLog.append([
      {
        kind: 'erase',
        userId: 'gone',
        events: erased.map(({ seq, itemId, type, value, timestamp }) => ({
          seq,
          itemId,
          type,
          value,
          timestamp,
        })),
      },
    ]);

    const second = projector(state);
    await second.start();
    await second.changesCaughtUp(eraseSeq);

    const erase = state.changeBatches.flat().find((r) => r.value.kind === 'erase')!;
    expect(erase.value.kind === 'erase' && erase.value.events.map((e) => e.seq)).toEqual([1, 2]);
    // What remains is exactly the other user's view: nothing was subtracted that was never added.
    expect(await online.popularity(['x', 'y'], NOW)).toEqual([1, 0]);
    expect(await online.recentEvents('gone', 10)).toEqual([]);
  });

  it('never applies a changes batch while an events batch is being applied', async () => {
    const state = new RecordingState(online);
    let open!: () => void;
    state.gate = new Promise<void>((r) => (open = r));
    const p = projector(state);
    await p.start();

    await eventLog.append([event('u1', 'a'), event('u1', 'b')]);
    while (!state.calls.includes('events:start:1,2')) await sleep(5);
    await changeLog.append([{ kind: 'champion', version: 'v1' }]);
    // The change consumer is woken at once by the append; give it ample time to try to get in.
    await sleep(100);
    const whileHeld = [...state.calls];
    open(); // before asserting, so a failure does not leave the consumer stuck until the timeout
    expect(whileHeld).toEqual(['events:start:1,2']);

    await p.eventsCaughtUp(2);
    await p.changesCaughtUp(1);
    expect(state.calls).toEqual(['events:start:1,2', 'events:end', 'changes:start:1', 'changes:end']);
  });

  it('caughtUp waits until the state holds the records; durable projectors keep their position', async () => {
    const p = projector(online, { durable: { events: 'proj-e', changes: 'proj-c' }, batchSize: 2 });
    await p.start();
    await eventLog.append([event('u1', 'a'), event('u1', 'b'), event('u2', 'c'), event('u2', 'd')]);
    await changeLog.append([{ kind: 'champion', version: 'v1' }]);
    const waiting = p.eventsCaughtUp(4);
    await waiting;
    expect((await online.watermarks()).events).toBe(4);
    await p.changesCaughtUp(1);
    expect((await online.watermarks()).changes).toBe(1);
    await p.close();
    expect(p.eventPosition).toBe(0); // closed: no consumer any more
    // A durable consumer stores its position on the way out; the next one (any process) starts there.
    expect(await store.offsets.get('events:proj-e')).toBe(4);
    expect(await store.offsets.get('changes:proj-c')).toBe(1);
  });
});

describe('StoreWriter', () => {
  let source: SqliteStore;
  let target: SqliteStore;
  let eventLog: SqliteEventLog;
  let writers: StoreWriter[];

  /** The target store's `appendLogged`, down (CAIRN_UNAVAILABLE) for its first `failures` calls. */
  const flaky = (failures: number): Pick<EventStore, 'appendLogged'> & { calls: number } => {
    const events = {
      calls: 0,
      appendLogged(batch: StoredEvent[]) {
        events.calls++;
        if (events.calls <= failures)
          return Promise.reject(new CairnError('CAIRN_UNAVAILABLE', 'store of record down'));
        return target.events.appendLogged(batch);
      },
    };
    return events;
  };

  const writer = (
    events: Pick<EventStore, 'appendLogged'>,
    logger: Logger,
    counts: { inserted: number; duplicates: number },
    durable = 'writer',
  ) => {
    const w = new StoreWriter({
      eventLog,
      events,
      logger,
      durable,
      batchSize: 2,
      onWritten: (inserted, duplicates) => {
        counts.inserted += inserted;
        counts.duplicates += duplicates;
      },
    });
    writers.push(w);
    w.start();
    return w;
  };

  const stored = async (store: SqliteStore): Promise<StoredEvent[]> => {
    const out: StoredEvent[] = [];
    for await (const page of store.events.scan({})) out.push(...page);
    return out;
  };

  beforeEach(async () => {
    source = new SqliteStore({ path: ':memory:' });
    target = new SqliteStore({ path: ':memory:' });
    await source.migrate();
    await target.migrate();
    eventLog = new SqliteEventLog(source, LOG_OPTIONS);
    writers = [];
  });

  afterEach(async () => {
    for (const w of writers) await w.close();
    await eventLog.close();
    await source.close();
    await target.close();
  });

  it('retries a failing write until the store is back: nothing lost, nothing doubled', async () => {
    const { logger, lines } = capturingLogger();
    const counts = { inserted: 0, duplicates: 0 };
    const events = flaky(2);
    const w = writer(events, logger, counts);
    await eventLog.append([
      event('u1', 'a'),
      event('u1', 'b'),
      event('u2', 'a'),
      event('u3', 'c'),
      event('u3', 'd'),
    ]);
    await w.caughtUp(5);

    expect(events.calls).toBe(2 + 3); // two failed deliveries of the first batch, then 3 batches of ≤ 2
    expect(await stored(target)).toEqual(await stored(source)); // same events, same seqs
    expect(await target.events.count()).toBe(5);
    expect(counts).toEqual({ inserted: 5, duplicates: 0 });
    // One warning for the outage (not one per retry), one line when it is over.
    expect(lines.filter((l) => l.level === 'warn').map((l) => l.msg)).toEqual([
      'store of record unavailable; events wait in the log',
    ]);
    expect(lines.filter((l) => l.level === 'info').map((l) => l.msg)).toEqual([
      'store of record reachable again',
    ]);
  });

  it('is idempotent on replay and resumes a durable name where it stopped', async () => {
    const silent = createLogger('silent');
    const first = { inserted: 0, duplicates: 0 };
    const w1 = writer(target.events, silent, first);
    await eventLog.append([event('u1', 'a'), event('u1', 'b'), event('u2', 'a')]);
    await w1.caughtUp(3);
    await w1.close();
    expect(w1.position).toBe(0);

    // Another name delivers everything again: every event is recognised, nothing is stored twice.
    const replay = { inserted: 0, duplicates: 0 };
    const w2 = writer(target.events, silent, replay, 'other');
    await w2.caughtUp(3);
    expect(replay).toEqual({ inserted: 0, duplicates: 3 });
    expect(await target.events.count()).toBe(3);
    await w2.close();

    // The first name picks up after what it wrote: only the new event is delivered.
    await eventLog.append([event('u4', 'z')]);
    const resumed = { inserted: 0, duplicates: 0 };
    const w3 = writer(target.events, silent, resumed);
    await w3.caughtUp(4);
    expect(w3.position).toBe(4);
    expect(resumed).toEqual({ inserted: 1, duplicates: 0 });
    expect((await stored(target)).map((e) => e.seq)).toEqual([1, 2, 3, 4]);
  });
});
