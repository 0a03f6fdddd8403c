import { describe, expect, it } from 'vitest';
import type { CairnEvent } from '../domain/types.ts';
import { SqliteStore } from '../storage/sqlite/store.ts';
import { entryOf, extractTrainingData, trainingSetHash } from './extract.ts';

const types = {
  view: { weight: 1 },
  purchase: { weight: 4 },
  dislike: { weight: 0, negative: true },
};

const ev = (n: number, userId: string, itemId: string, type: string): CairnEvent => ({
  eventId: `e${n}`,
  userId,
  itemId,
  type,
  value: null,
  timestamp: 1000 + n,
  context: null,
});

describe('extractTrainingData', () => {
  it('keeps per pair the seqs of its first and last positive event, and counts events per type', async () => {
    const store = new SqliteStore({ path: ':memory:' });
    await store.migrate();
    await store.events.append([
      ev(1, 'a', 'x', 'view'),
      ev(2, 'a', 'y', 'view'),
      ev(3, 'b', 'x', 'purchase'),
      ev(4, 'a', 'x', 'purchase'),
      ev(5, 'b', 'y', 'view'),
      ev(6, 'b', 'y', 'dislike'),
      ev(7, 'c', 'z', 'unknown'),
    ]);
    const data = await extractTrainingData(store.events, types);
    await store.close();
    expect(data.typeCounts).toEqual({ view: 3, purchase: 2, dislike: 1, unknown: 1 });
    expect(data.lastEventSeq).toBe(7);
    const at = (u: string, i: string) =>
      entryOf(data.matrix, data.userIds.indexOf(u), data.itemIds.indexOf(i));
    expect(data.matrix.data[at('a', 'x')]).toBe(5);
    expect([data.pairSeqs.first[at('a', 'x')], data.pairSeqs.last[at('a', 'x')]]).toEqual([1, 4]);
    expect([data.pairSeqs.first[at('a', 'y')], data.pairSeqs.last[at('a', 'y')]]).toEqual([2, 2]);
    expect([data.pairSeqs.first[at('b', 'x')], data.pairSeqs.last[at('b', 'x')]]).toEqual([3, 3]);
    // The disliked pair is gone from the matrix, and so are its seqs.
    expect(at('b', 'y')).toBe(-1);
    expect(data.pairSeqs.first.length).toBe(data.matrix.indices.length);
  });

  it('clamps each event and caps each pair at the abuse limits, as online popularity does', async () => {
    const store = new SqliteStore({ path: ':memory:' });
    await store.migrate();
    await store.events.append([
      ...Array.from({ length: 1000 }, (_, n) => ev(n + 1, 'bot', 'x', 'purchase')),
      ev(1001, 'a', 'x', 'purchase'),
      ev(1002, 'a', 'y', 'view'),
      { ...ev(1003, 'a', 'z', 'rating'), value: 1e308 },
    ]);
    const data = await extractTrainingData(
      store.events,
      { ...types, rating: { weight: 1, useValue: true } },
      { limits: { maxEventWeight: 3, maxUserItemWeight: 16 } },
    );
    await store.close();
    const at = (u: string, i: string) =>
      data.matrix.data[entryOf(data.matrix, data.userIds.indexOf(u), data.itemIds.indexOf(i))];
    expect(at('bot', 'x')).toBe(16); // 1,000 purchases of 3 (clamped from 4): capped at 16
    expect(at('a', 'x')).toBe(3);
    expect(at('a', 'y')).toBe(1);
    expect(at('a', 'z')).toBe(3); // would be 1e308, Infinity in the float32 matrix
  });
});

describe('trainingSetHash', () => {
  const m = {
    rows: 2,
    cols: 2,
    indptr: Int32Array.from([0, 1, 2]),
    indices: Int32Array.from([0, 1]),
    data: Float32Array.from([1, 2]),
  };
  it('is the same for the same data and changes with any entry, weight or id', () => {
    const h = trainingSetHash(m, ['a', 'b'], ['x', 'y']);
    expect(h).toMatch(/^[0-9a-f]{64}$/);
    expect(trainingSetHash({ ...m, indptr: m.indptr.slice() }, ['a', 'b'], ['x', 'y'])).toBe(h);
    expect(trainingSetHash({ ...m, data: Float32Array.from([1, 3]) }, ['a', 'b'], ['x', 'y'])).not.toBe(h);
    expect(trainingSetHash({ ...m, indices: Int32Array.from([1, 0]) }, ['a', 'b'], ['x', 'y'])).not.toBe(h);
    expect(trainingSetHash(m, ['a', 'c'], ['x', 'y'])).not.toBe(h);
    // Ids are delimited: moving a character between ids changes the hash.
    expect(trainingSetHash(m, ['ab', ''], ['x', 'y'])).not.toBe(trainingSetHash(m, ['a', 'b'], ['x', 'y']));
    expect(trainingSetHash(m, ['a', 'b'], ['y', 'x'])).not.toBe(h);
  });
});
