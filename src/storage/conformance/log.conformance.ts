/**
 * The one conformance suite of the change-feed ports (`EventLog`, `ChangeLog` and their consumers).
 * Every adapter runs it from an integration test:
 *
 *   describeLogConformance('sqlite', () => openFreshLogs(), () => removeTempDir());
 *
 * `factory` returns fresh, EMPTY logs for each test, and `reopen()` a second, independent handle on the
 * same logs, as another process would have (its own connections). The suite closes every consumer and
 * handle it opened; `cleanup` runs once after the whole suite. Assertions are about what the ports
 * promise, never about an adapter's internals. Waiting polls a condition under a deadline; nothing
 * relies on a sleep being long enough.
 *
 * Readings of the port this suite fixes (ports.ts leaves them implicit):
 * - a consumer's `position` starts at its start point: `after` for a private consumer, the stored
 *   position for a durable one, so `caughtUp(head)` resolves for a consumer that resumes with nothing new;
 * - a rejected batch is delivered again as exactly the same records;
 * - after a clean `close()` nothing already handled is delivered again to the same durable name;
 * - durable names are per log (a name on the event log and the same name on the change log are two
 *   consumers).
 */
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CairnEvent, Item, StoredEvent, User } from '../../domain/types.ts';
import { logEvent as ev, RICH_JSON, waitFor, within } from './helpers.ts';
import type {
  BatchHandler,
  ChangeLog,
  ConsumeOptions,
  EntityChange,
  EventLog,
  LogConsumer,
  LogRecord,
} from '../ports.ts';

/** One handle on a pair of logs. */
export interface LogHandles {
  eventLog: EventLog;
  changeLog: ChangeLog;
  close(): Promise<void>;
}

export interface LogHarness extends LogHandles {
  /** Opens a second, independent handle on the SAME logs, as another process would. */
  reopen(): Promise<LogHandles>;
}

/** Lets every already-queued callback and I/O completion run (no timing assumption). */
const settle = () => new Promise<void>((r) => setImmediate(r));

function evs(prefix: string, n: number, userId = 'u1'): CairnEvent[] {
  return Array.from({ length: n }, (_, i) =>
    ev(`${prefix}-${i}`, userId, { timestamp: 1_700_000_000_000 + i }),
  );
}

/** Drops `seq` so a stored event compares with the event that was appended. */
function plain(e: StoredEvent): CairnEvent {
  const { seq: _seq, ...rest } = e;
  return rest;
}

function item(id: string, overrides: Partial<Item> = {}): Item {
  return {
    id,
    categories: ['books', 'sci-fi'],
    attributes: { price: 12.5 },
    available: true,
    createdAt: 1_700_000_000_000,
    updatedAt: 1_700_000_000_500,
    ...overrides,
  };
}

function user(id: string, overrides: Partial<User> = {}): User {
  return {
    id,
    attributes: { plan: 'pro' },
    segments: ['a', 'b'],
    optOut: false,
    createdAt: 1_700_000_000_000,
    updatedAt: 1_700_000_000_000,
    ...overrides,
  };
}

/** One change of every kind, with awkward values in each. */
const EVERY_KIND: EntityChange[] = [
  {
    kind: 'items',
    items: [
      item('i-1', { attributes: RICH_JSON }),
      item('ï-2 ✓', { categories: [], available: false, attributes: {} }),
    ],
  },
  { kind: 'user', user: user('u-ü', { optOut: true, segments: [], attributes: RICH_JSON }) },
  {
    kind: 'erase',
    userId: 'u-gone',
    events: [
      { seq: 17, itemId: 'i-1', type: 'purchase', value: 19.99, timestamp: 1_700_000_000_001 },
      { seq: 23, itemId: 'i-2', type: 'view', value: null, timestamp: 1_700_000_000_002 },
    ],
  },
  { kind: 'erase', userId: 'u-nothing', events: [] },
  { kind: 'champion', version: 'als-2026-01-01T00-00-00Z' },
];

/** Collects what a consumer's handler is given. */
class Recorder<R> {
  readonly batches: R[][] = [];

  constructor(private readonly seqOf: (r: R) => number) {}

  readonly handler: BatchHandler<R> = (batch) => {
    this.batches.push(batch);
    return Promise.resolve();
  };

  get records(): R[] {
    return this.batches.flat();
  }

  get seqs(): number[] {
    return this.records.map(this.seqOf);
  }
}

const eventRecorder = () => new Recorder<StoredEvent>((e) => e.seq);
const changeRecorder = () => new Recorder<LogRecord<EntityChange>>((r) => r.seq);

function expectAscending(seqs: number[]): void {
  for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBeGreaterThan(seqs[i - 1]);
}

export function describeLogConformance(
  name: string,
  factory: () => Promise<LogHarness>,
  cleanup?: () => Promise<void>,
): void {
  describe(`Log conformance: ${name}`, () => {
    let h: LogHarness;
    let reopened: LogHandles[];
    let consumers: LogConsumer[];

    /** A second handle on the same logs, closed after the test. */
    const other = async (): Promise<LogHandles> => {
      const handles = await h.reopen();
      reopened.push(handles);
      return handles;
    };

    /** Starts a consumer that is closed after the test. */
    function consumeEvents(log: EventLog, options: ConsumeOptions, handler: BatchHandler<StoredEvent>) {
      const c = log.consume(options, handler);
      consumers.push(c);
      return c;
    }

    function consumeChanges(
      log: ChangeLog,
      options: ConsumeOptions,
      handler: BatchHandler<LogRecord<EntityChange>>,
    ) {
      const c = log.consume(options, handler);
      consumers.push(c);
      return c;
    }

    beforeEach(async () => {
      reopened = [];
      consumers = [];
      h = await factory();
    });

    afterEach(async () => {
      await Promise.all(consumers.map((c) => c.close()));
      for (const r of reopened) await r.close();
      await h.close();
    });

    if (cleanup) afterAll(cleanup);

    describe('event log', () => {
      it('starts empty and names its kind', async () => {
        expect(typeof h.eventLog.kind).toBe('string');
        expect(h.eventLog.kind.length).toBeGreaterThan(0);
        expect(await h.eventLog.head()).toBe(0);
        expect(await h.eventLog.read(0, 10)).toEqual([]);
      });

      it('reports inserted and duplicate, within a batch and across calls; a repeat gets no new seq', async () => {
        expect(await h.eventLog.append([])).toEqual([]);
        expect(await h.eventLog.append([ev('e1'), ev('e2'), ev('e1', 'u1', { itemId: 'changed' })])).toEqual([
          'inserted',
          'inserted',
          'duplicate',
        ]);
        expect(await h.eventLog.append([ev('e2', 'u9'), ev('e3')])).toEqual(['duplicate', 'inserted']);

        const stored = await h.eventLog.read(0, 100);
        expect(stored.map(plain)).toStrictEqual([ev('e1'), ev('e2'), ev('e3')]); // first occurrence wins
        expect(stored[0].seq).toBeGreaterThan(0);
        expectAscending(stored.map((e) => e.seq));
        expect(await h.eventLog.head()).toBe(stored[2].seq);

        // Through another handle too (another process appending the same ids).
        const o = await other();
        expect(await o.eventLog.append([ev('e3'), ev('e4')])).toEqual(['duplicate', 'inserted']);
        const after = await h.eventLog.read(0, 100);
        expect(after.map((e) => e.eventId)).toEqual(['e1', 'e2', 'e3', 'e4']);
        expect(after.slice(0, 3)).toStrictEqual(stored); // repeats did not move or renumber anything
        expect(after[3].seq).toBeGreaterThan(stored[2].seq);
        expect(await h.eventLog.head()).toBe(after[3].seq);
      });

      it('assigns ascending seqs in batch order and call order', async () => {
        await h.eventLog.append(evs('a', 3));
        await h.eventLog.append(evs('b', 2));
        await h.eventLog.append(evs('c', 4));
        const stored = await h.eventLog.read(0, 100);
        expect(stored.map((e) => e.eventId)).toEqual([
          ...evs('a', 3).map((e) => e.eventId),
          ...evs('b', 2).map((e) => e.eventId),
          ...evs('c', 4).map((e) => e.eventId),
        ]);
        expectAscending(stored.map((e) => e.seq));
      });

      it('round-trips every field (unicode context, null and fractional values)', async () => {
        const batch = [
          ev('rich', 'ü-user ✓', {
            itemId: '東京-item',
            type: 'rating',
            value: 4.5,
            timestamp: 1_600_000_000_123,
            context: RICH_JSON,
          }),
          ev('bare', 'u2', { type: 'view', value: null, context: null }),
          ev('neg', 'u3', { type: 'dislike', value: -1.25, context: { page: 'home', pos: 3 } }),
          ev('zero', 'u3', { type: 'purchase', value: 0, context: {} }),
        ];
        expect(await h.eventLog.append(batch)).toEqual(['inserted', 'inserted', 'inserted', 'inserted']);
        expect((await h.eventLog.read(0, 10)).map(plain)).toStrictEqual(batch);
        const o = await other();
        expect((await o.eventLog.read(0, 10)).map(plain)).toStrictEqual(batch);
      });

      it('reads pages: `after` exclusive, at most `limit`, ascending', async () => {
        await h.eventLog.append(evs('p', 7));
        const all = await h.eventLog.read(0, 100);
        expect(all.length).toBe(7);
        const p1 = await h.eventLog.read(0, 3);
        const p2 = await h.eventLog.read(p1[2].seq, 3);
        const p3 = await h.eventLog.read(p2[2].seq, 3);
        expect(p1.length).toBe(3);
        expect(p2.length).toBe(3);
        expect(p3.length).toBe(1);
        expect([...p1, ...p2, ...p3]).toStrictEqual(all);
        expect(await h.eventLog.read(all[3].seq, 2)).toStrictEqual(all.slice(4, 6));
        expect(await h.eventLog.read(all[6].seq, 3)).toEqual([]);
        expect(await h.eventLog.read(await h.eventLog.head(), 10)).toEqual([]);
      });

      it('forgetUser removes the user’s events from read(); seqs are not reused', async () => {
        await h.eventLog.append([ev('a1', 'alice'), ev('b1', 'bob'), ev('a2', 'alice'), ev('b2', 'bob')]);
        const before = await h.eventLog.read(0, 100);
        await h.eventLog.forgetUser('alice');
        await h.eventLog.forgetUser('nobody'); // no-op
        const after = await h.eventLog.read(0, 100);
        expect(after.map((e) => e.eventId)).toEqual(['b1', 'b2']);
        expect(after).toStrictEqual(before.filter((e) => e.userId === 'bob'));
        await h.eventLog.append([ev('b3', 'bob')]);
        const latest = await h.eventLog.read(before[3].seq, 10);
        expect(latest.map((e) => e.eventId)).toEqual(['b3']);
      });
    });

    describe('change log', () => {
      it('starts empty and names its kind', async () => {
        expect(typeof h.changeLog.kind).toBe('string');
        expect(h.changeLog.kind.length).toBeGreaterThan(0);
        expect(await h.changeLog.head()).toBe(0);
        expect(await h.changeLog.read(0, 10)).toEqual([]);
      });

      it('returns ascending seqs in the order given and round-trips every kind of change', async () => {
        expect(await h.changeLog.append([])).toEqual([]);
        const seqs = await h.changeLog.append(EVERY_KIND);
        expect(seqs.length).toBe(EVERY_KIND.length);
        expect(seqs[0]).toBeGreaterThan(0);
        expectAscending(seqs);
        const [later] = await h.changeLog.append([{ kind: 'champion', version: 'v2' }]);
        expect(later).toBeGreaterThan(seqs[seqs.length - 1]);
        expect(await h.changeLog.head()).toBe(later);

        const expected = [
          ...EVERY_KIND.map((value, i) => ({ seq: seqs[i], value })),
          { seq: later, value: { kind: 'champion', version: 'v2' } },
        ];
        expect(await h.changeLog.read(0, 100)).toStrictEqual(expected);
        const o = await other();
        expect(await o.changeLog.read(0, 100)).toStrictEqual(expected);
        // Appends through another handle continue the same sequence.
        const [fromOther] = await o.changeLog.append([{ kind: 'champion', version: 'v3' }]);
        expect(fromOther).toBeGreaterThan(later);
        expect(await h.changeLog.head()).toBe(fromOther);
      });

      it('reads pages: `after` exclusive, at most `limit`, ascending', async () => {
        const seqs = await h.changeLog.append(
          Array.from({ length: 5 }, (_, i): EntityChange => ({ kind: 'champion', version: `v${i}` })),
        );
        const p1 = await h.changeLog.read(0, 2);
        const p2 = await h.changeLog.read(p1[1].seq, 2);
        const p3 = await h.changeLog.read(p2[1].seq, 2);
        expect([...p1, ...p2, ...p3].map((r) => r.seq)).toEqual(seqs);
        expect(p3.length).toBe(1);
        expect(await h.changeLog.read(seqs[4], 2)).toEqual([]);
      });

      it('forgetUser removes exactly that user’s `user` records; remove drops records by seq (idempotent)', async () => {
        const seqs = await h.changeLog.append([
          { kind: 'user', user: user('alice', { attributes: { email: 'alice@example.invalid' } }) },
          { kind: 'items', items: [item('alice')] }, // an item that happens to share the id stays
          { kind: 'user', user: user('bob') },
          { kind: 'user', user: user('alice', { optOut: true }) },
          { kind: 'erase', userId: 'carol', events: [] },
          { kind: 'champion', version: 'v1' },
        ]);
        await h.changeLog.forgetUser('alice');
        await h.changeLog.forgetUser('nobody'); // no-op
        expect((await h.changeLog.read(0, 100)).map((r) => r.seq)).toEqual([
          seqs[1],
          seqs[2],
          seqs[4],
          seqs[5],
        ]);
        await h.changeLog.remove([seqs[4], seqs[4], 999_999]);
        await h.changeLog.remove([]);
        const left = await (await other()).changeLog.read(0, 100);
        expect(left.map((r) => r.seq)).toEqual([seqs[1], seqs[2], seqs[5]]);
        expect(JSON.stringify(left)).not.toMatch(/alice@|carol/);
        // A consumer reads across the gaps; seqs are not reused.
        const seen = changeRecorder();
        await within(consumeChanges(h.changeLog, {}, seen.handler).caughtUp(seqs[5]), 'reading across gaps');
        expect(seen.seqs).toEqual([seqs[1], seqs[2], seqs[5]]);
        const [next] = await h.changeLog.append([{ kind: 'champion', version: 'v2' }]);
        expect(next).toBeGreaterThan(seqs[5]);
      });

      it('durableFloor is the lowest position of the durable consumers (null without any)', async () => {
        expect(await h.changeLog.durableFloor()).toBeNull();
        const seqs = await h.changeLog.append(EVERY_KIND.slice(0, 3));
        // A consumer of the event log does not count, nor does a private one.
        await h.eventLog.append(evs('floor', 2));
        const events = consumeEvents(h.eventLog, { durable: 'floor-events' }, () => Promise.resolve());
        const priv = consumeChanges(h.changeLog, {}, () => Promise.resolve());
        await within(priv.caughtUp(seqs[2]), 'the private consumer');
        await within(events.caughtUp(await h.eventLog.head()), 'the event-log consumer');
        expect(await h.changeLog.durableFloor()).toBeNull();
        const fast = consumeChanges(h.changeLog, { durable: 'floor-fast' }, () => Promise.resolve());
        await within(fast.caughtUp(seqs[2]), 'the fast durable consumer');
        await waitFor(async () => (await h.changeLog.durableFloor()) === seqs[2], 'the floor at the head');
        const slow = consumeChanges(h.changeLog, { durable: 'floor-slow', batchSize: 1 }, (batch) =>
          batch[0].seq > seqs[0] ? Promise.reject(new Error('stuck after the first')) : Promise.resolve(),
        );
        await within(slow.caughtUp(seqs[0]), 'the slow durable consumer');
        await waitFor(
          async () => (await h.changeLog.durableFloor()) === seqs[0],
          'the floor at the slow one',
        );
      });
    });

    describe('consumers', () => {
      it('a private consumer gets every record in order, in batches ≤ batchSize, then new appends promptly, including another process’s', async () => {
        await h.eventLog.append(evs('a', 12));
        await h.eventLog.append(evs('b', 13));
        const head = await h.eventLog.head();
        const rec = eventRecorder();
        const c = consumeEvents(h.eventLog, { batchSize: 10 }, rec.handler);
        await within(c.caughtUp(head), 'the backlog');
        expect(rec.records).toStrictEqual(await h.eventLog.read(0, 100));
        expect(rec.batches.every((b) => b.length >= 1 && b.length <= 10)).toBe(true);
        expect(c.position).toBe(head);

        await h.eventLog.append(evs('c', 3));
        await waitFor(() => rec.records.length === 28, 'appends through the same handle');

        const o = await other();
        await o.eventLog.append(evs('d', 2));
        await waitFor(() => rec.records.length === 30, 'appends through another handle');
        expect(rec.records).toStrictEqual(await h.eventLog.read(0, 100));
        expectAscending(rec.seqs);
        await within(c.caughtUp(await o.eventLog.head()), 'caughtUp(head)');
        expect(c.position).toBe(await h.eventLog.head());
      });

      it('a private consumer starts after `after` and reports that as its position', async () => {
        await h.eventLog.append(evs('x', 10));
        const all = await h.eventLog.read(0, 100);
        const rec = eventRecorder();
        const c = consumeEvents(h.eventLog, { after: all[4].seq, batchSize: 3 }, rec.handler);
        expect(c.position).toBe(all[4].seq);
        await within(c.caughtUp(all[4].seq), 'caughtUp(start)');
        await within(c.caughtUp(all[9].seq), 'the rest');
        expect(rec.records).toStrictEqual(all.slice(5));
      });

      it('caughtUp resolves at once when already there, and only when the position reaches the seq', async () => {
        const rec = eventRecorder();
        const c = consumeEvents(h.eventLog, {}, rec.handler);
        await within(c.caughtUp(0), 'caughtUp(0) on an empty log');
        await h.eventLog.append(evs('a', 3));
        const head = await h.eventLog.head();
        await within(c.caughtUp(head), 'caughtUp(head)');

        let reached = false;
        const next = c.caughtUp(head + 1).then(() => {
          reached = true;
        });
        await settle();
        await settle();
        expect(reached).toBe(false);
        expect(c.position).toBe(head);

        await h.eventLog.append([ev('later')]);
        await within(next, 'caughtUp(head + 1) after one more append');
        expect(c.position).toBeGreaterThan(head);
        expect(rec.records.map((e) => e.eventId)).toEqual(['a-0', 'a-1', 'a-2', 'later']);
      });

      it('a rejecting handler gets the same records again, without skip or reorder, and continues once it succeeds', async () => {
        await h.eventLog.append(evs('r', 6));
        const all = await h.eventLog.read(0, 100);
        const deliveries: number[][] = [];
        const positionsWhileFailing: number[] = [];
        let failuresLeft = 2;
        const ref: { consumer?: LogConsumer } = {};
        const handler: BatchHandler<StoredEvent> = (batch) => {
          deliveries.push(batch.map((e) => e.seq));
          if (batch.some((e) => e.eventId === 'r-2') && failuresLeft > 0) {
            failuresLeft--;
            if (ref.consumer) positionsWhileFailing.push(ref.consumer.position);
            return Promise.reject(new Error('dependency down'));
          }
          return Promise.resolve();
        };
        const c = consumeEvents(h.eventLog, { batchSize: 2 }, handler);
        ref.consumer = c;
        await within(c.caughtUp(all[5].seq), 'delivery after the failures', 15_000);
        const s = all.map((e) => e.seq);
        expect(deliveries).toEqual([
          [s[0], s[1]],
          [s[2], s[3]],
          [s[2], s[3]],
          [s[2], s[3]],
          [s[4], s[5]],
        ]);
        expect(positionsWhileFailing).toEqual([s[1], s[1]]);

        await h.eventLog.append([ev('after-recovery')]);
        await waitFor(() => deliveries.flat().length === 11, 'a later append');
        expect(deliveries[deliveries.length - 1].length).toBe(1);
      });

      it('close() stops after the batch in progress and resolves when stopped', async () => {
        await h.eventLog.append(evs('c', 4));
        const all = await h.eventLog.read(0, 100);
        let release!: () => void;
        const gate = new Promise<void>((r) => (release = r));
        const batches: StoredEvent[][] = [];
        const c = consumeEvents(h.eventLog, { batchSize: 2 }, async (batch) => {
          batches.push(batch);
          await gate;
        });
        await waitFor(() => batches.length === 1, 'the first batch');
        let closed = false;
        const closing = c.close().then(() => {
          closed = true;
        });
        await settle();
        await settle();
        expect(closed).toBe(false); // the handler has not finished its batch
        release();
        await within(closing, 'close()');
        expect(batches.length).toBe(1);
        expect(c.position).toBe(all[1].seq);

        // It stays stopped: another consumer sees a later append, this one does not.
        await h.eventLog.append([ev('after-close')]);
        const witness = eventRecorder();
        const w = consumeEvents(h.eventLog, {}, witness.handler);
        await within(w.caughtUp(await h.eventLog.head()), 'a witness consumer');
        expect(batches.length).toBe(1);
      });

      it('change-log consumers get every record in order, in batches, and live appends from another process', async () => {
        const seqs = await h.changeLog.append(EVERY_KIND);
        const rec = changeRecorder();
        const c = consumeChanges(h.changeLog, { batchSize: 2 }, rec.handler);
        await within(c.caughtUp(seqs[seqs.length - 1]), 'the backlog');
        expect(rec.records).toStrictEqual(await h.changeLog.read(0, 100));
        expect(rec.batches.every((b) => b.length >= 1 && b.length <= 2)).toBe(true);

        const o = await other();
        const [s1] = await o.changeLog.append([{ kind: 'champion', version: 'from-other' }]);
        await waitFor(() => rec.seqs.includes(s1), 'an append through another handle');
        const [s2] = await h.changeLog.append([{ kind: 'user', user: user('u-new') }]);
        await waitFor(() => rec.seqs.includes(s2), 'an append through the same handle');
        expect(rec.records).toStrictEqual(await h.changeLog.read(0, 100));
      });

      it('a durable consumer resumes from its stored position after close and re-creation, in another process too', async () => {
        await h.eventLog.append(evs('first', 6));
        const first = eventRecorder();
        const c1 = consumeEvents(h.eventLog, { durable: 'indexer', batchSize: 4 }, first.handler);
        await within(c1.caughtUp(await h.eventLog.head()), 'the first run');
        await c1.close();
        expect(first.records.map((e) => e.eventId)).toEqual(evs('first', 6).map((e) => e.eventId));

        await h.eventLog.append(evs('second', 4));
        const o = await other();
        const second = eventRecorder();
        const c2 = consumeEvents(o.eventLog, { durable: 'indexer' }, second.handler);
        await within(c2.caughtUp(await h.eventLog.head()), 'the second run');
        expect(second.records.map((e) => e.eventId)).toEqual(evs('second', 4).map((e) => e.eventId));
        await c2.close();

        // Nothing new: the resumed consumer is caught up at once and handles nothing.
        const third = eventRecorder();
        const c3 = consumeEvents(h.eventLog, { durable: 'indexer' }, third.handler);
        await within(c3.caughtUp(await h.eventLog.head()), 'caughtUp(head) of a resumed consumer');
        expect(third.records).toEqual([]);

        // Another name starts from the beginning, and durable names are per log.
        const fresh = eventRecorder();
        const c4 = consumeEvents(h.eventLog, { durable: 'other-name' }, fresh.handler);
        await within(c4.caughtUp(await h.eventLog.head()), 'a new durable name');
        expect(fresh.records).toStrictEqual(await h.eventLog.read(0, 100));

        const changeSeqs = await h.changeLog.append(EVERY_KIND.slice(0, 2));
        const changes = changeRecorder();
        const c5 = consumeChanges(h.changeLog, { durable: 'indexer' }, changes.handler);
        await within(c5.caughtUp(changeSeqs[1]), 'the same name on the change log');
        expect(changes.seqs).toEqual(changeSeqs);
        await c5.close();
        const [s3] = await h.changeLog.append([{ kind: 'champion', version: 'v9' }]);
        const changesAgain = changeRecorder();
        const c6 = consumeChanges(h.changeLog, { durable: 'indexer' }, changesAgain.handler);
        await within(c6.caughtUp(s3), 'the change-log consumer resumed');
        expect(changesAgain.seqs).toEqual([s3]);
      });

      it('at most one consumer of a durable name is active; another process takes over when it closes', async () => {
        await h.eventLog.append(evs('one', 5));
        const a = eventRecorder();
        const ca = consumeEvents(h.eventLog, { durable: 'projector', batchSize: 3 }, a.handler);
        await within(ca.caughtUp(await h.eventLog.head()), 'the first consumer');

        const o = await other();
        const b = eventRecorder();
        const cb = consumeEvents(o.eventLog, { durable: 'projector', batchSize: 3 }, b.handler);
        // Appended through the second consumer's handle, so it is the first to hear of them.
        await o.eventLog.append(evs('two', 5));
        await within(ca.caughtUp(await o.eventLog.head()), 'the active consumer to handle the new appends');
        expect(b.records).toEqual([]);

        await ca.close();
        await h.eventLog.append(evs('three', 5));
        const head = await h.eventLog.head();
        await within(cb.caughtUp(head), 'the second consumer to take over', 10_000);

        const all = await h.eventLog.read(0, 100);
        expect(a.records.map((e) => e.eventId)).toEqual(
          [...evs('one', 5), ...evs('two', 5)].map((e) => e.eventId),
        );
        expect(b.records.map((e) => e.eventId)).toEqual(evs('three', 5).map((e) => e.eventId));
        expect([...a.records, ...b.records]).toStrictEqual(all); // no record twice, none missed
      });
    });
  });
}
