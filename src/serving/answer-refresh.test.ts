import { describe, expect, it } from 'vitest';
import { AnswerRefresh } from './answer-refresh.ts';

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('AnswerRefresh', () => {
  it('runs one task at a time, each from its own event-loop turn, in the order asked', async () => {
    const log: string[] = [];
    let running = 0;
    let most = 0;
    const errors: unknown[] = [];
    const refresh = new AnswerRefresh({ maxPending: 10, onError: (e) => errors.push(e) });
    const task = (name: string) => async () => {
      running++;
      most = Math.max(most, running);
      log.push(`start ${name}`);
      await turn();
      log.push(`end ${name}`);
      // A request that arrives as the task ends is handled before the next task starts.
      if (name === 'a') setImmediate(() => log.push('request'));
      running--;
    };
    expect(refresh.request('a', task('a'))).toBe(true);
    expect(refresh.request('b', task('b'))).toBe(true);
    expect(log).toEqual([]); // nothing runs on the caller's turn
    while (log.length < 5) await turn();
    expect(log).toEqual(['start a', 'end a', 'request', 'start b', 'end b']);
    expect(most).toBe(1);
    expect(errors).toEqual([]);
  });

  it('queues a key once while it waits or runs, drops past maxPending, and keeps going after a failure', async () => {
    const ran: string[] = [];
    const push = (name: string) => () => {
      ran.push(name);
      return Promise.resolve();
    };
    const outcomes: string[] = [];
    const errors: unknown[] = [];
    const refresh = new AnswerRefresh({
      maxPending: 2,
      onError: (e) => errors.push(e),
      onRequest: (o) => outcomes.push(o),
    });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    refresh.request('slow', async () => {
      ran.push('slow');
      await gate;
    });
    await turn(); // slow runs now
    expect(refresh.request('slow', push('slow again'))).toBe(false); // running
    refresh.request('bad', () => {
      ran.push('bad');
      return Promise.reject(new Error('boom'));
    });
    refresh.request('bad', push('bad again')); // waiting
    refresh.request('c', push('c'));
    refresh.request('d', push('d')); // two wait already
    expect(refresh.size).toBe(2);
    expect(outcomes).toEqual(['queued', 'duplicate', 'queued', 'duplicate', 'queued', 'dropped']);
    release();
    while (ran.length < 3) await turn();
    await turn();
    expect(ran).toEqual(['slow', 'bad', 'c']);
    expect((errors[0] as Error).message).toBe('boom');
    // Once it ran, a key can be queued again.
    expect(refresh.request('slow', push('slow later'))).toBe(true);
    while (ran.length < 4) await turn();
    expect(ran[3]).toBe('slow later');
  });

  it('keeps to its share of the time: after a task of t ms the next waits t × (1 / share − 1)', async () => {
    const spans: { start: number; end: number }[] = [];
    const busy = (ms: number) => () => {
      const start = performance.now();
      while (performance.now() - start < ms);
      spans.push({ start, end: performance.now() });
      return Promise.resolve();
    };
    const refresh = new AnswerRefresh({ maxPending: 10, onError: () => undefined, share: 0.25 });
    for (const key of ['a', 'b', 'c']) refresh.request(key, busy(10));
    while (spans.length < 3) await new Promise((resolve) => setTimeout(resolve, 5));
    for (let i = 1; i < 3; i++) {
      const took = spans[i - 1].end - spans[i - 1].start;
      // Timers may fire up to a millisecond early after rounding; never a third of the pause early.
      expect(spans[i].start - spans[i - 1].end).toBeGreaterThanOrEqual(3 * took - 1);
    }
    expect(() => new AnswerRefresh({ maxPending: 1, onError: () => undefined, share: 0 })).toThrow(
      RangeError,
    );
    await refresh.close();
  });

  it('close drops what waits and waits for the running task', async () => {
    const ran: string[] = [];
    const push = (name: string) => () => {
      ran.push(name);
      return Promise.resolve();
    };
    const refresh = new AnswerRefresh({ maxPending: 5, onError: () => undefined });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    refresh.request('a', async () => {
      await gate;
      ran.push('a');
    });
    refresh.request('b', push('b'));
    await turn();
    const closed = refresh.close();
    let done = false;
    void closed.then(() => (done = true));
    await turn();
    expect(done).toBe(false);
    release();
    await closed;
    await turn();
    expect(ran).toEqual(['a']);
    expect(refresh.request('c', push('c'))).toBe(false);
  });
});
