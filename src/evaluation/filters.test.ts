import { describe, expect, it } from 'vitest';
import { Rng } from '../algorithms/random.ts';
import { compact, dedupeLatest, filterMinValue, kcore, type Interactions } from './filters.ts';

function make(rows: [number, number, number?, number?][], nUsers?: number, nItems?: number): Interactions {
  return {
    nUsers: nUsers ?? Math.max(...rows.map((r) => r[0])) + 1,
    nItems: nItems ?? Math.max(...rows.map((r) => r[1])) + 1,
    users: Int32Array.from(rows, (r) => r[0]),
    items: Int32Array.from(rows, (r) => r[1]),
    values: Float32Array.from(rows, (r) => r[2] ?? NaN),
    times: Float64Array.from(rows, (r) => r[3] ?? NaN),
  };
}

const triples = (x: Interactions): number[][] =>
  Array.from(x.users, (u, r) => [u, x.items[r], x.values[r], x.times[r]]);

describe('dedupeLatest', () => {
  it('keeps the latest row of each pair, file order breaking ties, and preserves row order', () => {
    const x = make([
      [0, 1, 5, 100],
      [1, 1, 3, 50],
      [0, 1, 2, 300], // re-rating, later: wins
      [0, 2, 4, 10],
      [0, 2, 1, 5], // older than the previous row: loses
      [1, 1, 4, 50], // same time as row 1: the later row wins
      [2, 3, 1, NaN],
      [2, 3, 2, NaN], // no times: the later row wins
    ]);
    expect(triples(dedupeLatest(x))).toEqual([
      [0, 1, 2, 300],
      [0, 2, 4, 10],
      [1, 1, 4, 50],
      [2, 3, 2, NaN],
    ]);
  });

  it('leaves data without duplicates unchanged', () => {
    const x = make([
      [0, 0, 1, 1],
      [1, 0, 1, 2],
      [0, 1, 1, 3],
    ]);
    expect(triples(dedupeLatest(x))).toEqual(triples(x));
  });
});

describe('filterMinValue', () => {
  it('keeps values ≥ the threshold and drops rows without a value', () => {
    const x = make([
      [0, 0, 4],
      [0, 1, 3.5],
      [1, 0, 3.49],
      [1, 1],
    ]);
    expect(triples(filterMinValue(x, 3.5)).map((t) => t.slice(0, 3))).toEqual([
      [0, 0, 4],
      [0, 1, 3.5],
    ]);
  });
});

/** Reference k-core: recount from scratch and drop deficient rows until nothing changes. */
function referenceKcore(x: Interactions, n: number): Set<string> {
  let rows = Array.from(x.users, (u, r) => [u, x.items[r]]);
  for (;;) {
    const uc = new Map<number, number>();
    const ic = new Map<number, number>();
    for (const [u, i] of rows) {
      uc.set(u, (uc.get(u) ?? 0) + 1);
      ic.set(i, (ic.get(i) ?? 0) + 1);
    }
    const next = rows.filter(([u, i]) => uc.get(u)! >= n && ic.get(i)! >= n);
    if (next.length === rows.length) return new Set(rows.map(([u, i]) => `${u}:${i}`));
    rows = next;
  }
}

describe('kcore', () => {
  it('removes cascading deficiencies', () => {
    // Item 4 has one user (D=3); dropping it leaves D with one row, which then goes too.
    const x = make([
      [0, 1],
      [0, 2],
      [1, 1],
      [1, 2],
      [3, 2],
      [3, 4],
    ]);
    expect(triples(kcore(x, 2)).map((t) => t.slice(0, 2))).toEqual([
      [0, 1],
      [0, 2],
      [1, 1],
      [1, 2],
    ]);
  });

  it('matches a from-scratch reference on random data, and every survivor has ≥ n rows', () => {
    const rng = new Rng(7);
    const seen = new Set<string>();
    const rows: [number, number][] = [];
    while (rows.length < 3000) {
      // Skewed item popularity so some items are rare and the core is a strict subset.
      const u = rng.int(300);
      const i = Math.floor(400 * rng.float() ** 3);
      if (!seen.has(`${u}:${i}`)) {
        seen.add(`${u}:${i}`);
        rows.push([u, i]);
      }
    }
    const x = make(rows, 300, 400);
    for (const n of [2, 5, 10]) {
      const core = kcore(x, n);
      const got = new Set(Array.from(core.users, (u, r) => `${u}:${core.items[r]}`));
      expect(got).toEqual(referenceKcore(x, n));
      const uc = new Map<number, number>();
      const ic = new Map<number, number>();
      core.users.forEach((u, r) => {
        uc.set(u, (uc.get(u) ?? 0) + 1);
        ic.set(core.items[r], (ic.get(core.items[r]) ?? 0) + 1);
      });
      for (const c of [...uc.values(), ...ic.values()]) expect(c).toBeGreaterThanOrEqual(n);
      // Rare items exist, so the core is a strict subset.
      expect(got.size).toBeLessThan(rows.length);
    }
  });
});

describe('compact', () => {
  it('renumbers the remaining users and items densely, keeping their order', () => {
    const x = make(
      [
        [5, 7, 1, 10],
        [2, 3, 2, 20],
        [5, 3, 3, 30],
      ],
      8,
      9,
    );
    const c = compact(x);
    expect(Array.from(c.userMap)).toEqual([2, 5]);
    expect(Array.from(c.itemMap)).toEqual([3, 7]);
    expect(c.interactions.nUsers).toBe(2);
    expect(c.interactions.nItems).toBe(2);
    expect(triples(c.interactions)).toEqual([
      [1, 1, 1, 10],
      [0, 0, 2, 20],
      [1, 0, 3, 30],
    ]);
  });
});
