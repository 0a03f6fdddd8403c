import { afterEach, describe, expect, it } from 'vitest';
import { gramian } from './kernels.ts';
import { allocFloat32, allocFloat64, partitionRows, resolveThreads, WorkerPool } from './parallel.ts';
import { Rng } from './random.ts';
import type { GramianArgs } from './worker.ts';

const pools: WorkerPool[] = [];
function pool(threads: number, signal?: AbortSignal): WorkerPool {
  const p = new WorkerPool({ threads, signal });
  pools.push(p);
  return p;
}
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
});

describe('partitionRows', () => {
  it('covers all rows with contiguous, cost-balanced ranges', () => {
    const indptr = new Int32Array([0, 10, 10, 10, 40, 41, 42, 43, 100]);
    const b = partitionRows(indptr, 8, 3, 0);
    expect(b[0]).toBe(0);
    expect(b[b.length - 1]).toBe(8);
    for (let t = 1; t < b.length; t++) expect(b[t]).toBeGreaterThan(b[t - 1]);
    expect(b.length - 1).toBeLessThanOrEqual(3);
    expect(partitionRows(indptr, 8, 100, 1).length).toBeLessThanOrEqual(9);
    expect(partitionRows(new Int32Array([0]), 0, 4, 1)).toEqual([0, 0]);
  });
});

describe('WorkerPool', () => {
  it('resolves thread counts', () => {
    expect(resolveThreads(1)).toBe(1);
    expect(resolveThreads(3)).toBe(3);
    expect(resolveThreads(0)).toBeGreaterThanOrEqual(1);
  });

  it('runs tasks in-thread in submission order when threads = 1', async () => {
    const p = pool(1);
    expect(p.inThread).toBe(true);
    expect(p.needsShared).toBe(false);
    const plain = new Float64Array(4);
    const Y = new Float32Array([1, 2, 3, 4, 5, 6]);
    await p.run('kernels.gramian', {
      Y,
      k: 2,
      rowStart: 0,
      rowEnd: 3,
      out: plain,
      outOff: 0,
    } satisfies GramianArgs);
    // In-thread tasks see ordinary arrays by reference.
    expect(Array.from(plain)).toEqual([35, 44, 44, 56]);
    expect(await p.map('pool.echo', [1, 2, 3])).toEqual([1, 2, 3]);
  });

  it('workers write shared memory in place and agree with the in-thread kernel', async () => {
    const p = pool(2);
    expect(p.needsShared).toBe(true);
    const rng = new Rng(1);
    const k = 16;
    const rows = 1000;
    const Y = allocFloat32(rows * k, true);
    for (let q = 0; q < Y.length; q++) Y[q] = rng.float() - 0.5;
    const parts = allocFloat64(4 * k * k, true);
    const tasks: GramianArgs[] = [0, 1, 2, 3].map((b) => ({
      Y,
      k,
      rowStart: b * 250,
      rowEnd: (b + 1) * 250,
      out: parts,
      outOff: b * k * k,
    }));
    await p.map('kernels.gramian', tasks);
    const want = new Float64Array(4 * k * k);
    for (const t of tasks) gramian(Y, k, t.rowStart, t.rowEnd, want, t.outOff);
    expect(Array.from(parts)).toEqual(Array.from(want));
  });

  it('propagates task errors without losing the worker', async () => {
    const p = pool(2);
    await expect(p.run('pool.fail', { message: 'boom' })).rejects.toThrow('boom');
    await expect(p.run('no.such.task', {})).rejects.toThrow(/unknown pool task/);
    expect(await p.run('pool.echo', { a: 1 })).toEqual({ a: 1 });
    const inThread = pool(1);
    await expect(inThread.run('pool.fail', { message: 'bang' })).rejects.toThrow('bang');
  });

  it('aborting terminates running tasks and rejects queued ones promptly', async () => {
    const ac = new AbortController();
    const p = pool(2, ac.signal);
    const started = Date.now();
    const runs = [
      p.run('pool.spin', { ms: 20_000 }),
      p.run('pool.spin', { ms: 20_000 }),
      p.run('pool.spin', { ms: 20_000 }),
    ];
    setTimeout(() => ac.abort(), 300);
    for (const r of runs) await expect(r).rejects.toMatchObject({ name: 'AbortError' });
    expect(Date.now() - started).toBeLessThan(10_000);
    await expect(p.run('pool.echo', 1)).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('in-thread pools stop between tasks on abort', async () => {
    const ac = new AbortController();
    const p = pool(1, ac.signal);
    let done = 0;
    const runs = Array.from({ length: 50 }, () =>
      p.run('pool.spin', { ms: 20 }).then(() => {
        done++;
      }),
    );
    setTimeout(() => ac.abort(new Error('stop')), 100);
    const results = await Promise.allSettled(runs);
    expect(done).toBeGreaterThan(0);
    expect(done).toBeLessThan(50);
    expect(results.filter((r) => r.status === 'rejected').length).toBe(50 - done);
  });

  it('close() rejects new work', async () => {
    const p = pool(2);
    expect(await p.run('pool.echo', 5)).toBe(5);
    await p.close();
    await expect(p.run('pool.echo', 5)).rejects.toThrow(/closed/);
  });
});
