/**
 * Turns raw rows of a data set into the interactions an evaluation fits and measures on: one row per
 * (user, item) pair carrying its training weight, filtered (min rating, k-core) and densely indexed.
 *
 * Weighting, per the kind of value the file carries:
 * - `rating` (MovieLens, MovieTweetings): weight 1 per pair after the optional `--min-rating`
 *   filter. RecBole's implicit-feedback convention, so the numbers compare with published ones;
 *   a rating is a preference, not a confidence, and 3 stars is not "three times" 1 star.
 * - `count` (Last.fm plays): weight log(1 + count). Plays span 1 to hundreds of thousands per
 *   pair; raw counts let a few obsessive listeners dominate every item's statistics, while a
 *   binary weight throws away the strength of the signal ALS and item-kNN can use. The log is the
 *   confidence transform of Hu, Koren & Volinsky (2008) that `implicit` recommends for play counts.
 * - `weight`: used as given (a missing value counts 1).
 * - `none`: weight 1.
 * - typed events (JSONL / CSV with a `type` column): each event weighs what the event-type table
 *   says (the same table training and serving use), summed per pair; a negative type removes the
 *   pair. The latest event time is the pair's time.
 */
import { compact, dedupeLatest, filterMinValue, kcore, selectRows, type Interactions } from './filters.ts';

export type ValueKind = 'rating' | 'count' | 'weight' | 'none';

/** Raw rows as a reader produces them (structurally what `ingest/formats` returns). */
export interface RawRows {
  users: readonly string[];
  items: readonly string[];
  userIdx: Int32Array;
  itemIdx: Int32Array;
  values: Float32Array;
  timestamps: Float64Array;
  types?: readonly string[] | null;
  valueKind: ValueKind;
}

/** How one typed event counts: its training weight, or a rejection of the item. */
export type EventWeigher = (type: string, value: number | null) => { weight: number; negative: boolean };

export interface PrepareOptions {
  /** Keep rows with value ≥ this (rows without a value are dropped). */
  minRating?: number;
  /** Iterative k-core: every user and item keeps at least this many pairs. */
  kcore?: number;
  /** Weighs typed events; required when the rows carry types. */
  weigh?: EventWeigher;
}

export interface PreparedData {
  /** One row per pair; `values` hold training weights. Indices are dense after filtering. */
  interactions: Interactions;
  /** External ids of the dense indices. */
  userIds: string[];
  itemIds: string[];
  /** Row counts after each step, for the report. */
  counts: { rows: number; pairs: number; afterMinRating: number; afterKcore: number };
}

/** Applies the weighting and filters described above, in RecBole's order (dedupe, value, k-core). */
export function prepareInteractions(raw: RawRows, options: PrepareOptions = {}): PreparedData {
  const base: Interactions = {
    nUsers: raw.users.length,
    nItems: raw.items.length,
    users: raw.userIdx,
    items: raw.itemIdx,
    values: raw.values,
    times: raw.timestamps,
  };
  const rows = base.users.length;
  let pairs: number;
  let afterMinRating: number;
  let weighted: Interactions;
  if (raw.types) {
    if (!options.weigh) throw new Error('typed rows need an event weigher');
    let filtered = base;
    let types = raw.types;
    if (options.minRating !== undefined) {
      const min = options.minRating;
      const keep = new Uint8Array(rows);
      const kept: string[] = [];
      for (let r = 0; r < rows; r++) {
        if (base.values[r] >= min) {
          keep[r] = 1;
          kept.push(types[r]);
        }
      }
      filtered = selectRows(base, keep);
      types = kept;
    }
    afterMinRating = filtered.users.length;
    weighted = aggregateTyped(filtered, types, options.weigh);
    pairs = weighted.users.length;
  } else {
    const deduped = dedupeLatest(base);
    pairs = deduped.users.length;
    const filtered = options.minRating === undefined ? deduped : filterMinValue(deduped, options.minRating);
    afterMinRating = filtered.users.length;
    weighted = toWeights(filtered, raw.valueKind);
  }
  const cored = options.kcore === undefined ? weighted : kcore(weighted, options.kcore);
  const { interactions, userMap, itemMap } = compact(cored);
  return {
    interactions,
    userIds: Array.from(userMap, (u) => raw.users[u]),
    itemIds: Array.from(itemMap, (i) => raw.items[i]),
    counts: { rows, pairs, afterMinRating, afterKcore: interactions.users.length },
  };
}

/** Values → training weights for untyped rows (see the module comment); non-positive weights go. */
export function toWeights(x: Interactions, kind: ValueKind): Interactions {
  const n = x.users.length;
  const values = new Float32Array(n);
  const keep = new Uint8Array(n);
  for (let r = 0; r < n; r++) {
    const v = x.values[r];
    let w: number;
    if (kind === 'count') w = Math.log1p(v);
    else if (kind === 'weight') w = Number.isNaN(v) ? 1 : v;
    else w = 1;
    values[r] = w;
    keep[r] = w > 0 ? 1 : 0;
  }
  return selectRows({ ...x, values }, keep);
}

/**
 * Typed events → one row per pair: summed event weights, the latest time, and no row at all for a
 * pair with a negative event (a dislike overrides earlier views, as in training and serving).
 */
export function aggregateTyped(x: Interactions, types: readonly string[], weigh: EventWeigher): Interactions {
  const n = x.users.length;
  const cache = new Map<string, { weight: number; negative: boolean }>();
  const weightOf = (r: number): { weight: number; negative: boolean } => {
    const v = x.values[r];
    if (!Number.isNaN(v)) return weigh(types[r], v);
    let w = cache.get(types[r]);
    if (w === undefined) {
      w = weigh(types[r], null);
      cache.set(types[r], w);
    }
    return w;
  };
  // Bucket rows by user, then accumulate per item with a stamp array (no pair hashing).
  const start = new Int32Array(x.nUsers + 1);
  for (let r = 0; r < n; r++) start[x.users[r] + 1]++;
  for (let u = 0; u < x.nUsers; u++) start[u + 1] += start[u];
  const fill = start.slice(0, x.nUsers);
  const byUser = new Int32Array(n);
  for (let r = 0; r < n; r++) byUser[fill[x.users[r]]++] = r;
  const stamp = new Int32Array(x.nItems).fill(-1);
  const sum = new Float64Array(x.nItems);
  const latest = new Float64Array(x.nItems);
  const negative = new Uint8Array(x.nItems);
  const outUsers: number[] = [];
  const outItems: number[] = [];
  const outValues: number[] = [];
  const outTimes: number[] = [];
  for (let u = 0; u < x.nUsers; u++) {
    for (let p = start[u]; p < start[u + 1]; p++) {
      const r = byUser[p];
      const i = x.items[r];
      if (stamp[i] !== u) {
        stamp[i] = u;
        sum[i] = 0;
        latest[i] = NaN;
        negative[i] = 0;
      }
      const w = weightOf(r);
      if (w.negative) negative[i] = 1;
      else sum[i] += w.weight;
      const t = x.times[r];
      if (t > latest[i] || (Number.isNaN(latest[i]) && !Number.isNaN(t))) latest[i] = t;
    }
    for (let p = start[u]; p < start[u + 1]; p++) {
      const i = x.items[byUser[p]];
      if (stamp[i] !== u) continue;
      stamp[i] = -2 - u;
      if (negative[i] || !(sum[i] > 0)) continue;
      outUsers.push(u);
      outItems.push(i);
      outValues.push(sum[i]);
      outTimes.push(latest[i]);
    }
  }
  return {
    nUsers: x.nUsers,
    nItems: x.nItems,
    users: Int32Array.from(outUsers),
    items: Int32Array.from(outItems),
    values: Float32Array.from(outValues),
    times: Float64Array.from(outTimes),
  };
}
