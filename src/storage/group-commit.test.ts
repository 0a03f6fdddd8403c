import { describe, expect, it } from 'vitest';
import { CairnError } from '../errors/errors.ts';
import { GroupCommit } from './group-commit.ts';

/** A commit function under the test's control: each call waits until the test releases it. */
function gated() {
  const calls: string[][] = [];
  const gates: (() => void)[] = [];
  let fail: ((items: string[]) => Error | null) | null = null;
  const commit = async (items: string[]): Promise<string[]> => {
    calls.push(items);
    await new Promise<void>((resolve) => gates.push(resolve));
    const error = fail?.(items);
    if (error) throw error;
    return items.map((x) => `ok:${x}`);
  };
  /** Lets the oldest waiting commit finish, then lets the committer start the next group. */
  const release = async () => {
    // A commit starts within a few loop turns or never (a bug): fail then instead of hanging.
    for (let turn = 0; gates.length === 0; turn++) {
      if (turn === 100) throw new Error('no commit is waiting');
      await new Promise((r) => setImmediate(r));
    }
    gates.shift()!();
    await new Promise((r) => setImmediate(r));
  };
  return { calls, commit, release, failWith: (f: (items: string[]) => Error | null) => (fail = f) };
}

/** A synchronous commit recording its groups, started on the next turn (as SQLite's), `concurrency` at once. */
function deferredSynchronous(concurrency: number) {
  const calls: string[][] = [];
  const group = new GroupCommit<string, number>({
    commit: (items) => {
      calls.push(items);
      return items.map((_, i) => i);
    },
    start: (run) => setImmediate(run),
    concurrency,
  });
  return { calls, group };
}

describe('GroupCommit', () => {
  it('commits a lone caller at once, alone', async () => {
    const g = gated();
    const group = new GroupCommit({ commit: g.commit });
    const p = group.submit(['a', 'b']);
    expect(g.calls).toEqual([['a', 'b']]);
    await g.release();
    await expect(p).resolves.toEqual(['ok:a', 'ok:b']);
  });

  it('combines what queued during a commit into one next commit, each caller getting its own results', async () => {
    const g = gated();
    const group = new GroupCommit({ commit: g.commit });
    const first = group.submit(['a']);
    const rest = [group.submit(['b', 'c']), group.submit(['d']), group.submit(['e', 'f', 'g'])];
    expect(g.calls).toEqual([['a']]);
    await g.release();
    expect(g.calls).toEqual([['a'], ['b', 'c', 'd', 'e', 'f', 'g']]);
    await g.release();
    await expect(first).resolves.toEqual(['ok:a']);
    expect(await Promise.all(rest)).toEqual([['ok:b', 'ok:c'], ['ok:d'], ['ok:e', 'ok:f', 'ok:g']]);
  });

  it('bounds a group by maxItems at caller boundaries and never splits a larger caller', async () => {
    const g = gated();
    const group = new GroupCommit({ commit: g.commit, maxItems: 3 });
    const all = [
      group.submit(['a']),
      group.submit(['b', 'c']),
      group.submit(['d']),
      group.submit(['e', 'f', 'g', 'h']),
      group.submit(['i']),
    ];
    for (let i = 0; i < 4; i++) await g.release();
    expect(g.calls).toEqual([['a'], ['b', 'c', 'd'], ['e', 'f', 'g', 'h'], ['i']]);
    expect((await Promise.all(all)).flat()).toEqual(
      ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'].map((x) => `ok:${x}`),
    );
  });

  it('retries a failed group caller by caller, so only the batch at fault is rejected', async () => {
    const g = gated();
    g.failWith((items) => (items.includes('bad') ? new Error('constraint') : null));
    const group = new GroupCommit({ commit: g.commit });
    const all = Promise.allSettled([
      group.submit(['a']),
      group.submit(['b']),
      group.submit(['x', 'bad']),
      group.submit(['c']),
    ]);
    for (let i = 0; i < 5; i++) await g.release();
    expect(g.calls).toEqual([['a'], ['b', 'x', 'bad', 'c'], ['b'], ['x', 'bad'], ['c']]);
    const [first, good1, bad, good2] = await all;
    expect(first).toEqual({ status: 'fulfilled', value: ['ok:a'] });
    expect(good1).toEqual({ status: 'fulfilled', value: ['ok:b'] });
    expect(bad).toMatchObject({ status: 'rejected', reason: { message: 'constraint' } });
    expect(good2).toEqual({ status: 'fulfilled', value: ['ok:c'] });
  });

  it('rejects every caller of a group with an unavailable backend’s error, without retrying', async () => {
    const g = gated();
    const down = new CairnError('CAIRN_UNAVAILABLE', 'down');
    const group = new GroupCommit({ commit: g.commit });
    const all = Promise.allSettled([group.submit(['a']), group.submit(['b']), group.submit(['c'])]);
    await g.release();
    g.failWith(() => down);
    await g.release();
    expect(await all).toEqual([
      { status: 'fulfilled', value: ['ok:a'] },
      { status: 'rejected', reason: down },
      { status: 'rejected', reason: down },
    ]);
    expect(g.calls).toEqual([['a'], ['b', 'c']]);
  });

  it('refuses a commit answering the wrong number of results, for every caller', async () => {
    const group = new GroupCommit<string, string>({ commit: (items) => items.slice(1) });
    // The first commit runs alone (at once); the second caller queues behind it and is refused too.
    const both = await Promise.allSettled([group.submit(['a', 'b']), group.submit(['c'])]);
    expect(both).toMatchObject([
      { status: 'rejected', reason: { code: 'CAIRN_INTERNAL' } },
      { status: 'rejected', reason: { code: 'CAIRN_INTERNAL' } },
    ]);
  });

  it('with a deferred start, a synchronous commit takes every call of the same turn in one group', async () => {
    const { calls, group } = deferredSynchronous(1);
    const results = await Promise.all([group.submit(['a']), group.submit(['b', 'c']), group.submit(['d'])]);
    expect(calls).toEqual([['a', 'b', 'c', 'd']]);
    expect(results).toEqual([[0], [1, 2], [3]]);
    // Idle again: the next turn's call makes a group of its own.
    await expect(group.submit(['e'])).resolves.toEqual([0]);
    expect(calls).toEqual([['a', 'b', 'c', 'd'], ['e']]);
  });

  it('with concurrency 2, runs two groups at once and never a third; what queues meanwhile forms the next', async () => {
    const g = gated();
    let inFlight = 0;
    let most = 0;
    const group = new GroupCommit<string, string>({
      commit: async (items) => {
        most = Math.max(most, ++inFlight);
        try {
          return await g.commit(items);
        } finally {
          inFlight--;
        }
      },
      concurrency: 2,
    });
    const all = [group.submit(['a']), group.submit(['b']), group.submit(['c']), group.submit(['d', 'e'])];
    expect(g.calls).toEqual([['a'], ['b']]);
    await g.release(); // 'a' done: its runner takes what queued, while 'b' still commits
    expect(g.calls).toEqual([['a'], ['b'], ['c', 'd', 'e']]);
    await g.release();
    await g.release();
    expect(most).toBe(2);
    expect(await Promise.all(all)).toEqual([['ok:a'], ['ok:b'], ['ok:c'], ['ok:d', 'ok:e']]);
    // Idle again: both runners stopped, and the next calls start at once.
    const later = [group.submit(['f']), group.submit(['g'])];
    expect(g.calls.slice(3)).toEqual([['f'], ['g']]);
    await g.release();
    await g.release();
    expect(await Promise.all(later)).toEqual([['ok:f'], ['ok:g']]);
  });

  it('with concurrency 2 and a deferred start, a runner that finds the queue taken stops without a commit', async () => {
    const { calls, group } = deferredSynchronous(2);
    // Two runners are scheduled; the first takes all three calls, the second finds nothing.
    await Promise.all([group.submit(['a']), group.submit(['b']), group.submit(['c'])]);
    expect(calls).toEqual([['a', 'b', 'c']]);
    await expect(group.submit(['d'])).resolves.toEqual([0]);
    await expect(group.submit(['e'])).resolves.toEqual([0]);
    expect(calls).toEqual([['a', 'b', 'c'], ['d'], ['e']]);
  });
});
