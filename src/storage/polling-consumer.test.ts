import { afterEach, describe, expect, it } from 'vitest';
import type { ConsumerOffsets } from './ports.ts';
import {
  PollingConsumer,
  retryDelayMs,
  type ConsumerErrorInfo,
  type ConsumerLock,
  type PollingConsumerOptions,
  type WakeSource,
} from './polling-consumer.ts';

interface Rec {
  seq: number;
}

/** An in-memory log: records with ascending seqs, read like the SQL logs read their tables. */
class MemoryLog {
  records: Rec[] = [];
  reads = 0;
  failReads = 0;
  /** Runs inside the next empty read, before it returns (to race a wake-up against a read). */
  duringEmptyRead: (() => void) | null = null;

  append(n: number): number[] {
    const start = this.records.length === 0 ? 0 : this.records[this.records.length - 1].seq;
    const added = Array.from({ length: n }, (_, i) => ({ seq: start + i + 1 }));
    this.records.push(...added);
    return added.map((r) => r.seq);
  }

  read = (after: number, limit: number): Promise<Rec[]> => {
    this.reads++;
    if (this.failReads > 0) {
      this.failReads--;
      return Promise.reject(new Error('database unreachable'));
    }
    const page = this.records.filter((r) => r.seq > after).slice(0, limit);
    if (page.length === 0 && this.duringEmptyRead) {
      const fn = this.duringEmptyRead;
      this.duringEmptyRead = null;
      fn();
    }
    return Promise.resolve(page);
  };
}

class ManualWake implements WakeSource {
  private readonly listeners = new Set<() => void>();

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  fire(): void {
    for (const l of this.listeners) l();
  }

  get subscribers(): number {
    return this.listeners.size;
  }
}

class MemoryOffsets implements ConsumerOffsets {
  readonly stored = new Map<string, number>();
  failSets = 0;

  get(name: string): Promise<number> {
    return Promise.resolve(this.stored.get(name) ?? 0);
  }

  set(name: string, seq: number): Promise<void> {
    if (this.failSets > 0) {
      this.failSets--;
      return Promise.reject(new Error('offsets unreachable'));
    }
    this.stored.set(name, Math.max(seq, this.stored.get(name) ?? 0));
    return Promise.resolve();
  }
}

/** A lock another process may be holding (`available = false`) or take away (`lose()`). */
class FakeLock implements ConsumerLock {
  available = true;
  held = false;
  acquires = 0;
  releases = 0;

  acquire(): Promise<boolean> {
    this.acquires++;
    this.held = this.available;
    return Promise.resolve(this.held);
  }

  release(): Promise<void> {
    this.releases++;
    this.held = false;
    return Promise.resolve();
  }

  lose(): void {
    this.held = false;
    this.available = false;
  }
}

const started: PollingConsumer<Rec>[] = [];

function start(log: MemoryLog, options: Partial<PollingConsumerOptions<Rec>> = {}) {
  const batches: number[][] = [];
  const c = new PollingConsumer<Rec>({
    label: 'test',
    read: log.read,
    seqOf: (r) => r.seq,
    handler: (batch) => {
      batches.push(batch.map((r) => r.seq));
      return Promise.resolve();
    },
    idlePollMs: 3_600_000, // only wake-ups (or what a test sets) may end an idle wait
    retryBaseMs: 5,
    retryMaxMs: 20,
    lockRetryMs: 5,
    ...options,
  });
  started.push(c);
  return { c, batches };
}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

const settle = () => new Promise<void>((r) => setImmediate(r));

afterEach(async () => {
  await Promise.all(started.splice(0).map((c) => c.close().catch(() => undefined)));
});

describe('retryDelayMs', () => {
  it('doubles from the base per consecutive failure and stops at the cap', () => {
    expect([1, 2, 3, 4, 5, 6].map((f) => retryDelayMs(f, 100, 1000))).toEqual([
      100, 200, 400, 800, 1000, 1000,
    ]);
    expect(retryDelayMs(0, 100, 1000)).toBe(100);
    expect(retryDelayMs(10_000, 100, 30_000)).toBe(30_000); // no overflow to Infinity or NaN
  });
});

// A consumer that misses a wake-up waits for an hour: fail fast instead of at the global timeout.
describe('PollingConsumer', { timeout: 10_000 }, () => {
  it('delivers the backlog in order in batches of at most batchSize, from `after`', async () => {
    const log = new MemoryLog();
    log.append(23);
    const { c, batches } = start(log, { batchSize: 5, after: 3 });
    expect(c.position).toBe(3);
    await c.caughtUp(23);
    expect(batches).toEqual([
      [4, 5, 6, 7, 8],
      [9, 10, 11, 12, 13],
      [14, 15, 16, 17, 18],
      [19, 20, 21, 22, 23],
    ]);
    expect(c.position).toBe(23);
  });

  it('lets the event loop turn between two batches of a synchronous source (a backlog never holds it)', async () => {
    const log = new MemoryLog();
    log.append(50);
    // Reads and handler settle at once (as over SQLite): only the consumer itself can yield.
    const { c, batches } = start(log, { batchSize: 5 });
    const handledAtEachTurn: number[] = [batches.length];
    const turns = (async () => {
      for (let i = 0; i < 12 && batches.length < 10; i++) {
        await new Promise<void>((r) => setImmediate(r));
        handledAtEachTurn.push(batches.length);
      }
    })();
    await c.caughtUp(50);
    await turns;
    expect(batches).toHaveLength(10);
    // Another task ran between every two batches: each turn of the loop saw at most one more batch.
    for (let i = 1; i < handledAtEachTurn.length; i++)
      expect(handledAtEachTurn[i] - handledAtEachTurn[i - 1]).toBeLessThanOrEqual(1);
    expect(handledAtEachTurn.at(-1)).toBe(10);
  });

  it('is woken at once by its wake source while idle, and unsubscribes when closed', async () => {
    const log = new MemoryLog();
    const wake = new ManualWake();
    const { c, batches } = start(log, { wake });
    await waitFor(() => log.reads === 1, 'the first (empty) read');
    expect(wake.subscribers).toBe(1);
    log.append(2);
    wake.fire();
    await c.caughtUp(2);
    expect(batches).toEqual([[1, 2]]);
    await c.close();
    expect(wake.subscribers).toBe(0);
  });

  it('does not lose a wake-up that arrives while it reads', async () => {
    const log = new MemoryLog();
    const wake = new ManualWake();
    // The append commits after the read's snapshot but its notification arrives before the read returns.
    log.duringEmptyRead = () => {
      log.append(1);
      wake.fire();
    };
    const { c } = start(log, { wake });
    await c.caughtUp(1);
  });

  it('polls every idlePollMs when nothing wakes it', async () => {
    const log = new MemoryLog();
    const { c } = start(log, { idlePollMs: 10 });
    await waitFor(() => log.reads >= 1, 'the first read');
    log.append(1);
    await c.caughtUp(1);
  });

  it('retries a failed batch as exactly the same records, with capped exponential backoff, then goes on', async () => {
    const log = new MemoryLog();
    log.append(4);
    const deliveries: number[][] = [];
    const errors: ConsumerErrorInfo[] = [];
    let failures = 4;
    const { c } = start(log, {
      batchSize: 3,
      retryBaseMs: 10,
      retryMaxMs: 40,
      onError: (_e, info) => errors.push(info),
      handler: (batch) => {
        deliveries.push(batch.map((r) => r.seq));
        if (batch[0].seq === 4 && failures > 0) {
          failures--;
          log.append(1); // new records meanwhile must not change what is redelivered
          return Promise.reject(new Error('downstream down'));
        }
        return Promise.resolve();
      },
    });
    await c.caughtUp(8);
    expect(deliveries).toEqual([[1, 2, 3], [4], [4], [4], [4], [4], [5, 6, 7], [8]]);
    expect(errors.map((e) => [e.stage, e.failures])).toEqual([
      ['handle', 1],
      ['handle', 2],
      ['handle', 3],
      ['handle', 4],
    ]);
    // 10, 20, 40, 40 (capped), each spread by at most ±20%.
    [10, 20, 40, 40].forEach((d, i) => {
      expect(errors[i].retryInMs).toBeGreaterThanOrEqual(Math.floor(d * 0.8));
      expect(errors[i].retryInMs).toBeLessThanOrEqual(Math.ceil(d * 1.2));
    });
    expect(errors[0].consumer).toBe('test');
  });

  it('retries failed reads without moving, and survives a reporter that throws', async () => {
    const log = new MemoryLog();
    log.append(3);
    log.failReads = 3;
    const errors: ConsumerErrorInfo[] = [];
    const { c, batches } = start(log, {
      onError: (_e, info) => {
        errors.push(info);
        throw new Error('broken logger');
      },
    });
    await c.caughtUp(3);
    expect(errors.map((e) => [e.stage, e.failures])).toEqual([
      ['read', 1],
      ['read', 2],
      ['read', 3],
    ]);
    expect(batches).toEqual([[1, 2, 3]]);
  });

  it('caughtUp waits for the position, resolves at once when there, and rejects when closed first', async () => {
    const log = new MemoryLog();
    const wake = new ManualWake();
    log.append(2);
    const { c } = start(log, { wake });
    await c.caughtUp(2);
    await c.caughtUp(1);
    let resolved = false;
    const later = c.caughtUp(3).then(() => (resolved = true));
    await settle();
    expect(resolved).toBe(false);
    log.append(1);
    wake.fire();
    await later;

    const never = c.caughtUp(10);
    await c.close();
    await expect(never).rejects.toMatchObject({ code: 'CAIRN_UNAVAILABLE' });
    await expect(c.caughtUp(11)).rejects.toMatchObject({ code: 'CAIRN_UNAVAILABLE' });
    await expect(c.caughtUp(3)).resolves.toBeUndefined();
  });

  it('close() waits for the batch in progress, then stops; it also cuts a backoff short', async () => {
    const log = new MemoryLog();
    log.append(4);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const seen: number[][] = [];
    const { c } = start(log, {
      batchSize: 2,
      handler: async (batch) => {
        seen.push(batch.map((r) => r.seq));
        await gate;
      },
    });
    await waitFor(() => seen.length === 1, 'the first batch');
    let closed = false;
    const closing = c.close().then(() => (closed = true));
    await settle();
    expect(closed).toBe(false);
    release();
    await closing;
    expect(seen).toEqual([[1, 2]]);
    expect(c.position).toBe(2);

    const failing = start(log, {
      retryBaseMs: 3_600_000,
      retryMaxMs: 3_600_000,
      handler: () => Promise.reject(new Error('down')),
      onError: () => undefined,
    });
    await waitFor(() => log.reads >= 2, 'the failing consumer to read');
    await failing.c.close(); // would hang for an hour if the backoff were not interrupted
    expect(failing.c.position).toBe(0);
  });

  describe('durable', () => {
    it('resumes from the stored position and stores the new one once caught up', async () => {
      const log = new MemoryLog();
      log.append(7);
      const offsets = new MemoryOffsets();
      offsets.stored.set('events:x', 2);
      const lock = new FakeLock();
      const { c, batches } = start(log, { batchSize: 3, durable: { key: 'events:x', offsets, lock } });
      await c.caughtUp(7);
      expect(batches).toEqual([
        [3, 4, 5],
        [6, 7],
      ]);
      await waitFor(() => offsets.stored.get('events:x') === 7, 'the position to be stored');
      await c.close();
      expect(lock.releases).toBe(1);
      expect(lock.held).toBe(false);
    });

    it('reports its stored position at once when there is nothing new', async () => {
      const log = new MemoryLog();
      log.append(5);
      const offsets = new MemoryOffsets();
      offsets.stored.set('k', 5);
      const { c, batches } = start(log, { durable: { key: 'k', offsets, lock: new FakeLock() } });
      await c.caughtUp(5);
      expect(batches).toEqual([]);
    });

    it('reads nothing while another process holds the name, and takes over from its stored position', async () => {
      const log = new MemoryLog();
      log.append(6);
      const offsets = new MemoryOffsets();
      const lock = new FakeLock();
      lock.available = false;
      const { c, batches } = start(log, { durable: { key: 'k', offsets, lock } });
      await waitFor(() => lock.acquires >= 3, 'a few acquisition attempts');
      expect(log.reads).toBe(0);
      expect(c.position).toBe(0);
      // The other process handled up to 4 and stopped.
      await offsets.set('k', 4);
      lock.available = true;
      await c.caughtUp(6);
      expect(batches).toEqual([[5, 6]]);
    });

    it('stops handling when the lock is lost, and reloads the position when it gets it back', async () => {
      const log = new MemoryLog();
      const wake = new ManualWake();
      log.append(2);
      const offsets = new MemoryOffsets();
      const lock = new FakeLock();
      const { c, batches } = start(log, { wake, durable: { key: 'k', offsets, lock } });
      await c.caughtUp(2);

      lock.lose();
      log.append(3); // 3..5, handled by the process that holds the name now
      wake.fire();
      await waitFor(() => lock.acquires >= 3, 'attempts to get the name back');
      expect(batches).toEqual([[1, 2]]);

      await offsets.set('k', 5);
      log.append(1);
      lock.available = true;
      await c.caughtUp(6);
      expect(batches).toEqual([[1, 2], [6]]);
      await waitFor(() => offsets.stored.get('k') === 6, 'the position to be stored');
    });

    it('stores its position at most every persistEveryMs, and within that long of a batch', async () => {
      const log = new MemoryLog();
      log.append(40);
      const offsets = new MemoryOffsets();
      const stores: number[] = [];
      const set = offsets.set.bind(offsets);
      offsets.set = (name, seq) => {
        stores.push(seq);
        return set(name, seq);
      };
      const wake = new ManualWake();
      const { c, batches } = start(log, {
        batchSize: 1,
        persistEveryMs: 300,
        wake,
        durable: { key: 'k', offsets, lock: new FakeLock() },
      });
      await c.caughtUp(40);
      await waitFor(() => offsets.stored.get('k') === 40, 'the position to be stored');
      expect(batches).toHaveLength(40);
      // The first batch (nothing stored yet), then once due: 2 stores for 40 batches, not 40.
      expect(stores).toEqual([1, 40]);
      // One more event, handled at once when woken; its position is stored when due, by the end of the
      // idle wait (idlePollMs is an hour here: only the store being due ends it).
      log.append(1);
      wake.fire();
      await c.caughtUp(41);
      await waitFor(() => offsets.stored.get('k') === 41, 'the new position to be stored');
      expect(stores).toEqual([1, 40, 41]);
      // With every batch due (0 ms), each is stored as before.
      const log2 = new MemoryLog();
      log2.append(5);
      const offsets2 = new MemoryOffsets();
      const every = start(log2, {
        batchSize: 1,
        persistEveryMs: 0,
        durable: { key: 'k2', offsets: offsets2, lock: new FakeLock() },
      });
      const stored2: number[] = [];
      const set2 = offsets2.set.bind(offsets2);
      offsets2.set = (name, seq) => {
        stored2.push(seq);
        return set2(name, seq);
      };
      await every.c.caughtUp(5);
      await waitFor(() => offsets2.stored.get('k2') === 5, 'the position to be stored');
      expect(stored2.slice(0, 5)).toEqual([1, 2, 3, 4, 5]);
    });

    it('retries storing its position without handling the batch again', async () => {
      const log = new MemoryLog();
      log.append(3);
      const offsets = new MemoryOffsets();
      offsets.failSets = 2;
      const errors: ConsumerErrorInfo[] = [];
      const { c, batches } = start(log, {
        durable: { key: 'k', offsets, lock: new FakeLock() },
        onError: (_e, info) => errors.push(info),
      });
      await c.caughtUp(3);
      await waitFor(() => offsets.stored.get('k') === 3, 'the position to be stored');
      expect(batches).toEqual([[1, 2, 3]]);
      expect(errors.map((e) => e.stage)).toEqual(['commit', 'commit']);
    });

    it('retries a lock backend that throws', async () => {
      const log = new MemoryLog();
      log.append(1);
      const lock = new FakeLock();
      let throwsLeft = 2;
      const acquire = lock.acquire.bind(lock);
      lock.acquire = () => (throwsLeft-- > 0 ? Promise.reject(new Error('lock db down')) : acquire());
      const errors: ConsumerErrorInfo[] = [];
      const { c } = start(log, {
        durable: { key: 'k', offsets: new MemoryOffsets(), lock },
        onError: (_e, info) => errors.push(info),
      });
      await c.caughtUp(1);
      expect(errors.map((e) => [e.stage, e.failures])).toEqual([
        ['lock', 1],
        ['lock', 2],
      ]);
    });
  });
});
