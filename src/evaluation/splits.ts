/**
 * Evaluation protocols: how interactions are divided into train / valid / test. Each (user, item)
 * pair lands in exactly one part (pairs are unique after `dedupeLatest`), all three parts share one
 * index space, and the same seed always gives the same split.
 *
 * - `random-holdout`: RecBole's default (`RS` 8:1:1, grouped by user, random order): per user, a
 *   seeded random permutation of their pairs, cut with RecBole's rounding (`splitCounts`).
 * - `leave-last-out`: RecBole's `LS valid_and_test` on time-ordered data: per user, the newest pair
 *   is the test, the one before it the validation, the rest train.
 * - `temporal`: a global time cut (RecBole `TO` + `RS` without grouping): the oldest 80 % of all
 *   pairs train, the next 10 % validate, the newest 10 % test. Nothing from the future leaks into
 *   training, at the price of users and items that only appear later.
 */
import { Rng } from '../algorithms/random.ts';
import { csrFromCoo, type Csr } from '../algorithms/sparse.ts';
import { CairnError } from '../errors/errors.ts';
import type { Interactions } from './filters.ts';

export type Protocol = 'random-holdout' | 'leave-last-out' | 'temporal';
export const PROTOCOLS: readonly Protocol[] = ['random-holdout', 'leave-last-out', 'temporal'];

export interface Split {
  /** `given` when train and test came pre-split (e.g. `cairn eval --train --test`). */
  protocol: Protocol | 'given';
  /** Training weights. */
  train: Csr;
  /** Validation pairs (weights kept, but only membership matters for metrics). */
  valid: Csr;
  test: Csr;
  /**
   * (item, time) of every timed training pair, and the newest such time: what time-decayed
   * popularity needs (FitOptions.itemEventTimes / now). Absent when the data has no timestamps.
   */
  trainEvents?: { items: Int32Array; times: Float64Array };
  now?: number;
}

export interface SplitOptions {
  seed: number;
  /** train : valid : test, normalised; default [0.8, 0.1, 0.1]. */
  ratios?: [number, number, number];
}

/**
 * RecBole's `Dataset._calcu_split_ids` as part sizes: every part but the first is rounded down and
 * the first takes the rest; then, walking from the last part backwards, a part whose exact share is
 * in (0, 1) gets one row taken from the first part, as long as the first keeps more than one.
 * So with 8:1:1 a user with 1 pair keeps it in train, 2 pairs → 1/0/1, 3 pairs → 1/1/1,
 * 10 pairs → 8/1/1, 19 pairs → 17/1/1.
 */
export function splitCounts(total: number, ratios: readonly number[]): number[] {
  let sum = 0;
  for (const r of ratios) sum += r;
  const norm = ratios.map((r) => r / sum);
  const cnt = norm.map((r) => Math.trunc(r * total));
  let rest = 0;
  for (let i = 1; i < cnt.length; i++) rest += cnt[i];
  cnt[0] = total - rest;
  for (let i = 1; i < norm.length; i++) {
    if (cnt[0] <= 1) break;
    const exact = norm[norm.length - i] * total;
    if (exact > 0 && exact < 1) {
      cnt[norm.length - i]++;
      cnt[0]--;
    }
  }
  return cnt;
}

/** Splits interactions by `protocol`. Time-based protocols need timestamps on every pair. */
export function splitInteractions(x: Interactions, protocol: Protocol, options: SplitOptions): Split {
  const ratios = options.ratios ?? [0.8, 0.1, 0.1];
  const part = new Uint8Array(x.users.length); // 0 train, 1 valid, 2 test
  if (protocol === 'random-holdout') assignRandom(x, part, ratios, options.seed);
  else {
    requireTimes(x, protocol);
    if (protocol === 'leave-last-out') assignLeaveLastOut(x, part);
    else assignTemporal(x, part, ratios);
  }
  return {
    protocol,
    train: partCsr(x, part, 0),
    valid: partCsr(x, part, 1),
    test: partCsr(x, part, 2),
    ...trainEvents(x, part),
  };
}

function trainEvents(x: Interactions, part: Uint8Array): Pick<Split, 'trainEvents' | 'now'> {
  let n = 0;
  for (let r = 0; r < part.length; r++) if (part[r] === 0 && !Number.isNaN(x.times[r])) n++;
  if (n === 0) return {};
  const items = new Int32Array(n);
  const times = new Float64Array(n);
  let now = -Infinity;
  let q = 0;
  for (let r = 0; r < part.length; r++) {
    if (part[r] !== 0 || Number.isNaN(x.times[r])) continue;
    items[q] = x.items[r];
    times[q++] = x.times[r];
    if (x.times[r] > now) now = x.times[r];
  }
  return { trainEvents: { items, times }, now };
}

function requireTimes(x: Interactions, protocol: Protocol): void {
  for (let r = 0; r < x.times.length; r++) {
    if (Number.isNaN(x.times[r])) {
      throw CairnError.validation([
        {
          field: 'protocol',
          message: `protocol ${protocol} needs a timestamp on every interaction; use random-holdout`,
        },
      ]);
    }
  }
}

/** Row indices grouped by user, each group in original row order. */
function rowsByUser(x: Interactions): { start: Int32Array; rows: Int32Array } {
  const start = new Int32Array(x.nUsers + 1);
  for (let r = 0; r < x.users.length; r++) start[x.users[r] + 1]++;
  for (let u = 0; u < x.nUsers; u++) start[u + 1] += start[u];
  const fill = start.slice(0, x.nUsers);
  const rows = new Int32Array(x.users.length);
  for (let r = 0; r < x.users.length; r++) rows[fill[x.users[r]]++] = r;
  return { start, rows };
}

function assignRandom(x: Interactions, part: Uint8Array, ratios: readonly number[], seed: number): void {
  const rng = new Rng(seed);
  const { start, rows } = rowsByUser(x);
  for (let u = 0; u < x.nUsers; u++) {
    const s = start[u];
    const n = start[u + 1] - s;
    if (n === 0) continue;
    const group = rows.subarray(s, s + n);
    rng.shuffle(group);
    const [nTrain, nValid] = splitCounts(n, ratios);
    for (let j = nTrain; j < n; j++) part[group[j]] = j < nTrain + nValid ? 1 : 2;
  }
}

/** Orders rows by time, ties by original row order (a stable, deterministic order). */
function byTime(x: Interactions, group: Int32Array): void {
  group.sort((a, b) => x.times[a] - x.times[b] || a - b);
}

function assignLeaveLastOut(x: Interactions, part: Uint8Array): void {
  const { start, rows } = rowsByUser(x);
  for (let u = 0; u < x.nUsers; u++) {
    const s = start[u];
    const n = start[u + 1] - s;
    const group = rows.subarray(s, s + n);
    byTime(x, group);
    // RecBole keeps at least one pair in train: 1 pair → train; 2 → train + test; 3+ → valid too.
    if (n >= 2) part[group[n - 1]] = 2;
    if (n >= 3) part[group[n - 2]] = 1;
  }
}

function assignTemporal(x: Interactions, part: Uint8Array, ratios: readonly number[]): void {
  const order = new Int32Array(x.users.length);
  for (let r = 0; r < order.length; r++) order[r] = r;
  byTime(x, order);
  const [nTrain, nValid] = splitCounts(order.length, ratios);
  for (let j = nTrain; j < order.length; j++) part[order[j]] = j < nTrain + nValid ? 1 : 2;
}

function partCsr(x: Interactions, part: Uint8Array, which: number): Csr {
  let n = 0;
  for (let r = 0; r < part.length; r++) if (part[r] === which) n++;
  const rows = new Int32Array(n);
  const cols = new Int32Array(n);
  const vals = new Float32Array(n);
  let q = 0;
  for (let r = 0; r < part.length; r++) {
    if (part[r] !== which) continue;
    rows[q] = x.users[r];
    cols[q] = x.items[r];
    vals[q++] = x.values[r];
  }
  return csrFromCoo(x.nUsers, x.nItems, rows, cols, vals);
}
