import { describe, expect, it } from 'vitest';
import { prepareInteractions, type EventWeigher, type RawRows } from './prepare.ts';

function raw(rows: [string, string, number, number, string?][], valueKind: RawRows['valueKind']): RawRows {
  const users: string[] = [];
  const items: string[] = [];
  const idx = (ids: string[], id: string): number => (ids.includes(id) ? ids.indexOf(id) : ids.push(id) - 1);
  const userIdx = Int32Array.from(rows, (r) => idx(users, r[0]));
  const itemIdx = Int32Array.from(rows, (r) => idx(items, r[1]));
  return {
    users,
    items,
    userIdx,
    itemIdx,
    values: Float32Array.from(rows, (r) => r[2]),
    timestamps: Float64Array.from(rows, (r) => r[3]),
    types: rows.some((r) => r[4] !== undefined) ? rows.map((r) => r[4] ?? '') : null,
    valueKind,
  };
}

/** Pairs as `user item weight` strings with external ids. */
function list(p: ReturnType<typeof prepareInteractions>): string[] {
  const x = p.interactions;
  return Array.from(
    x.users,
    (u, r) => `${p.userIds[u]} ${p.itemIds[x.items[r]]} ${+x.values[r].toFixed(4)}`,
  ).sort();
}

describe('prepareInteractions', () => {
  it('ratings: latest rating per pair, then --min-rating, then weight 1', () => {
    const p = prepareInteractions(
      raw(
        [
          ['a', 'x', 5, 1],
          ['a', 'x', 2, 2], // re-rated lower later: the pair drops below 4
          ['a', 'y', 4, 1],
          ['b', 'y', 3, 1],
          ['b', 'z', 9, 1],
        ],
        'rating',
      ),
      { minRating: 4 },
    );
    expect(list(p)).toEqual(['a y 1', 'b z 1']);
    expect(p.counts).toEqual({ rows: 5, pairs: 4, afterMinRating: 2, afterKcore: 2 });
    // Compaction dropped item x: ids and indices stay aligned.
    expect(p.interactions.nItems).toBe(2);
    expect(p.itemIds.sort()).toEqual(['y', 'z']);
  });

  it('counts: log(1 + plays); zero plays are no interaction', () => {
    const p = prepareInteractions(
      raw(
        [
          ['a', 'x', 100, NaN],
          ['a', 'y', 0, NaN],
          ['b', 'x', 1, NaN],
        ],
        'count',
      ),
    );
    expect(list(p)).toEqual([`a x ${+Math.log1p(100).toFixed(4)}`, `b x ${+Math.log(2).toFixed(4)}`]);
  });

  it('typed events: summed type weights, negatives remove the pair, latest time kept', () => {
    const weights: Record<string, number> = { view: 1, purchase: 8, rating: 1 };
    const weigh: EventWeigher = (type, value) =>
      type === 'dislike'
        ? { weight: 0, negative: true }
        : { weight: (weights[type] ?? 0) * (type === 'rating' ? (value ?? 0) : 1), negative: false };
    const p = prepareInteractions(
      raw(
        [
          ['a', 'x', NaN, 10, 'view'],
          ['a', 'x', NaN, 30, 'purchase'],
          ['a', 'y', NaN, 5, 'view'],
          ['a', 'y', NaN, 6, 'dislike'],
          ['b', 'x', 4, 7, 'rating'],
          ['b', 'z', NaN, 8, 'unknown'],
        ],
        'weight',
      ),
      { weigh },
    );
    expect(list(p)).toEqual(['a x 9', 'b x 4']);
    const x = p.interactions;
    const time = Array.from(
      x.users,
      (u, r) => `${p.userIds[u]}${p.itemIds[x.items[r]]}@${x.times[r]}`,
    ).sort();
    expect(time).toEqual(['ax@30', 'bx@7']);
  });

  it('applies the k-core after weighting and reports what remains', () => {
    const rows: [string, string, number, number][] = [];
    for (const u of ['a', 'b', 'c']) for (const i of ['x', 'y']) rows.push([u, i, 5, 1]);
    rows.push(['d', 'x', 5, 1]); // d has one pair
    rows.push(['a', 'w', 5, 1]); // w has one user
    const p = prepareInteractions(raw(rows, 'rating'), { kcore: 2 });
    expect(p.userIds.sort()).toEqual(['a', 'b', 'c']);
    expect(p.itemIds.sort()).toEqual(['x', 'y']);
    expect(p.counts.afterKcore).toBe(6);
  });
});
