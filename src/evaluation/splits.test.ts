import { describe, expect, it } from 'vitest';
import { Rng } from '../algorithms/random.ts';
import type { Csr } from '../algorithms/sparse.ts';
import { isCairnError } from '../errors/errors.ts';
import type { Interactions } from './filters.ts';
import { splitCounts, splitInteractions, type Split } from './splits.ts';

/** Unique random pairs with distinct times, users with 1..40 pairs. */
function randomData(seed: number, nUsers = 200, nItems = 300): Interactions {
  const rng = new Rng(seed);
  const users: number[] = [];
  const items: number[] = [];
  for (let u = 0; u < nUsers; u++) {
    const n = 1 + rng.int(40);
    const chosen = new Set<number>();
    while (chosen.size < n) chosen.add(rng.int(nItems));
    for (const i of chosen) {
      users.push(u);
      items.push(i);
    }
  }
  // Shuffle rows so per-user rows are interleaved as in a real log; times are a random permutation.
  const order = rng.shuffle(Array.from(users, (_, r) => r));
  const times = rng.shuffle(Array.from(users, (_, r) => 1_000_000 + r * 1000));
  return {
    nUsers,
    nItems,
    users: Int32Array.from(order, (r) => users[r]),
    items: Int32Array.from(order, (r) => items[r]),
    values: new Float32Array(users.length).fill(1),
    times: Float64Array.from(times),
  };
}

function pairs(m: Csr): Set<string> {
  const out = new Set<string>();
  for (let u = 0; u < m.rows; u++)
    for (let p = m.indptr[u]; p < m.indptr[u + 1]; p++) out.add(`${u}:${m.indices[p]}`);
  return out;
}

function rowLength(m: Csr, u: number): number {
  return m.indptr[u + 1] - m.indptr[u];
}

function expectPartition(x: Interactions, s: Split): void {
  const train = pairs(s.train);
  const valid = pairs(s.valid);
  const test = pairs(s.test);
  for (const p of test) expect(train.has(p)).toBe(false);
  for (const p of valid) {
    expect(train.has(p)).toBe(false);
    expect(test.has(p)).toBe(false);
  }
  expect(train.size + valid.size + test.size).toBe(x.users.length);
  const all = new Set(Array.from(x.users, (u, r) => `${u}:${x.items[r]}`));
  expect(new Set([...train, ...valid, ...test])).toEqual(all);
  for (const m of [s.train, s.valid, s.test]) {
    expect(m.rows).toBe(x.nUsers);
    expect(m.cols).toBe(x.nItems);
  }
}

describe('splitCounts (RecBole _calcu_split_ids rounding)', () => {
  it('matches hand-computed part sizes for 8:1:1', () => {
    const r = [0.8, 0.1, 0.1];
    expect(splitCounts(1, r)).toEqual([1, 0, 0]);
    expect(splitCounts(2, r)).toEqual([1, 0, 1]);
    expect(splitCounts(3, r)).toEqual([1, 1, 1]);
    expect(splitCounts(4, r)).toEqual([2, 1, 1]);
    expect(splitCounts(9, r)).toEqual([7, 1, 1]);
    expect(splitCounts(10, r)).toEqual([8, 1, 1]);
    expect(splitCounts(19, r)).toEqual([17, 1, 1]);
    expect(splitCounts(20, r)).toEqual([16, 2, 2]);
    expect(splitCounts(1000, r)).toEqual([800, 100, 100]);
    // Unnormalised ratios are normalised first.
    expect(splitCounts(10, [8, 1, 1])).toEqual([8, 1, 1]);
  });
});

describe('random-holdout', () => {
  const x = randomData(1);

  it('partitions the pairs without leakage, per user in RecBole sizes', () => {
    const s = splitInteractions(x, 'random-holdout', { seed: 42 });
    expectPartition(x, s);
    const perUser = new Int32Array(x.nUsers);
    for (const u of x.users) perUser[u]++;
    for (let u = 0; u < x.nUsers; u++) {
      expect([rowLength(s.train, u), rowLength(s.valid, u), rowLength(s.test, u)]).toEqual(
        splitCounts(perUser[u], [0.8, 0.1, 0.1]),
      );
    }
  });

  it('is deterministic for a seed and changes with it', () => {
    const a = splitInteractions(x, 'random-holdout', { seed: 42 });
    const b = splitInteractions(x, 'random-holdout', { seed: 42 });
    const c = splitInteractions(x, 'random-holdout', { seed: 43 });
    expect(pairs(a.test)).toEqual(pairs(b.test));
    expect(pairs(a.valid)).toEqual(pairs(b.valid));
    expect(pairs(a.test)).not.toEqual(pairs(c.test));
  });

  it('keeps the training weights and works without timestamps', () => {
    const y = {
      ...x,
      values: Float32Array.from(x.users, (_, r) => 1 + (r % 3)),
      times: new Float64Array(x.users.length).fill(NaN),
    };
    const s = splitInteractions(y, 'random-holdout', { seed: 5 });
    const weight = new Map(Array.from(y.users, (u, r) => [`${u}:${y.items[r]}`, y.values[r]]));
    for (let u = 0; u < s.train.rows; u++) {
      for (let p = s.train.indptr[u]; p < s.train.indptr[u + 1]; p++) {
        expect(s.train.data[p]).toBe(weight.get(`${u}:${s.train.indices[p]}`));
      }
    }
  });
});

describe('leave-last-out', () => {
  it('puts each user newest pair in test and the one before in valid', () => {
    const x = randomData(2);
    const s = splitInteractions(x, 'leave-last-out', { seed: 0 });
    expectPartition(x, s);
    const time = new Map(Array.from(x.users, (u, r) => [`${u}:${x.items[r]}`, x.times[r]]));
    for (let u = 0; u < x.nUsers; u++) {
      const times = (m: Csr): number[] =>
        Array.from(m.indices.subarray(m.indptr[u], m.indptr[u + 1]), (i) => time.get(`${u}:${i}`)!);
      const [tr, va, te] = [times(s.train), times(s.valid), times(s.test)];
      const n = tr.length + va.length + te.length;
      expect([tr.length, va.length, te.length]).toEqual(
        n === 1 ? [1, 0, 0] : n === 2 ? [1, 0, 1] : [n - 2, 1, 1],
      );
      for (const t of tr) for (const later of [...va, ...te]) expect(t).toBeLessThan(later);
      for (const t of va) for (const later of te) expect(t).toBeLessThan(later);
    }
  });

  it('refuses data without timestamps', () => {
    const base = randomData(3);
    const times = base.times.slice();
    times[7] = NaN; // a single missing time is enough to make the order undefined
    const x = { ...base, times };
    let err: unknown;
    try {
      splitInteractions(x, 'leave-last-out', { seed: 0 });
    } catch (e) {
      err = e;
    }
    expect(isCairnError(err) && err.code).toBe('CAIRN_VALIDATION');
  });
});

describe('temporal', () => {
  it('cuts globally by time: every train pair precedes every valid pair, which precede test', () => {
    const x = randomData(4);
    const s = splitInteractions(x, 'temporal', { seed: 0 });
    expectPartition(x, s);
    const time = new Map(Array.from(x.users, (u, r) => [`${u}:${x.items[r]}`, x.times[r]]));
    const times = (m: Csr): number[] => [...pairs(m)].map((p) => time.get(p)!);
    const [tr, va, te] = [times(s.train), times(s.valid), times(s.test)];
    expect(Math.max(...tr)).toBeLessThan(Math.min(...va));
    expect(Math.max(...va)).toBeLessThan(Math.min(...te));
    expect([tr.length, va.length, te.length]).toEqual(splitCounts(x.users.length, [0.8, 0.1, 0.1]));
    // Training event times (for time-decayed popularity) cover exactly the train pairs.
    expect(s.trainEvents?.times.length).toBe(tr.length);
    expect(s.now).toBe(Math.max(...tr));
    expect([...s.trainEvents!.times].sort()).toEqual([...tr].sort());
  });
});
