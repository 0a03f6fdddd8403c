/**
 * Drift: the population stability index (PSI) of live distributions against the training snapshot's
 * (event-type mix, item popularity, recommendation scores). The reference is computed by the training
 * pipeline (buildDriftReference) and stored in the model's lineage; the live side (DriftMonitor) counts
 * the same buckets over a recent window and exports `cairn_drift_psi{dimension}`.
 *
 * PSI = Σ (a − e) · ln(a / e) over buckets, shares floored at PSI_EPSILON. Rule of thumb (credit
 * scoring, where it comes from): < 0.1 stable, 0.1–0.25 moderate shift, > 0.25 significant shift.
 */
import type { DriftReference } from '../domain/types.ts';

/** Floor of a bucket's share, so empty buckets give a large but finite term. */
export const PSI_EPSILON = 1e-4;
export const DEFAULT_POPULARITY_BUCKETS = 10;
export const DEFAULT_SCORE_BINS = 10;

/** Normalises counts to shares (all zero stays all zero). */
export function shares(counts: ArrayLike<number>): number[] {
  let total = 0;
  for (let i = 0; i < counts.length; i++) total += counts[i];
  const out = new Array<number>(counts.length);
  for (let i = 0; i < counts.length; i++) out[i] = total > 0 ? counts[i] / total : 0;
  return out;
}

/** PSI between two distributions over the same buckets (counts or shares; both are normalised). */
export function psi(expected: ArrayLike<number>, actual: ArrayLike<number>): number {
  if (expected.length !== actual.length) throw new Error('psi: bucket counts differ');
  const e = shares(expected);
  const a = shares(actual);
  let sum = 0;
  for (let i = 0; i < e.length; i++) {
    const ei = Math.max(e[i], PSI_EPSILON);
    const ai = Math.max(a[i], PSI_EPSILON);
    sum += (ai - ei) * Math.log(ai / ei);
  }
  return sum;
}

/** PSI of two keyed distributions (e.g. event types): buckets are the union of the keys. */
export function psiByKey(expected: Record<string, number>, actual: Record<string, number>): number {
  const keys = [...new Set([...Object.keys(expected), ...Object.keys(actual)])].sort();
  return psi(
    keys.map((k) => expected[k] ?? 0),
    keys.map((k) => actual[k] ?? 0),
  );
}

/**
 * Interior edges cutting `values` into `bins` bins of (about) equal count: bin i holds values
 * ≤ edges[i] (and > edges[i−1]); the last bin holds the rest. Repeated edges are dropped.
 */
export function quantileEdges(values: ArrayLike<number>, bins: number): number[] {
  const sorted = Float64Array.from(values).filter((v) => Number.isFinite(v));
  sorted.sort();
  if (sorted.length === 0 || bins < 2) return [];
  const edges: number[] = [];
  for (let b = 1; b < bins; b++) {
    const v = sorted[Math.min(sorted.length - 1, Math.floor((b * sorted.length) / bins))];
    if (edges.length === 0 || v > edges[edges.length - 1]) edges.push(v);
  }
  return edges;
}

/** The bin of `value` under `edges` (quantileEdges): 0..edges.length. */
export function binOf(edges: readonly number[], value: number): number {
  let lo = 0;
  let hi = edges.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (value <= edges[mid]) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** Counts per bin of `values` under `edges`. */
export function histogram(edges: readonly number[], values: ArrayLike<number>): number[] {
  const counts = new Array<number>(edges.length + 1).fill(0);
  for (let i = 0; i < values.length; i++) if (Number.isFinite(values[i])) counts[binOf(edges, values[i])]++;
  return counts;
}

/**
 * Cuts items ranked by `itemCounts` (best first, ties by index) into `buckets` buckets of equal item
 * count. Returns each item's bucket and the share of all interactions per bucket, plus one trailing
 * bucket (index `buckets`) for items the snapshot never saw, whose reference share is 0.
 */
export function popularityBuckets(
  itemCounts: ArrayLike<number>,
  buckets = DEFAULT_POPULARITY_BUCKETS,
): { bucketOf: number[]; shares: number[] } {
  const n = itemCounts.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => itemCounts[b] - itemCounts[a] || a - b);
  const bucketOf = new Array<number>(n).fill(0);
  const counts = new Array<number>(buckets + 1).fill(0);
  order.forEach((item, rank) => {
    const b = Math.min(buckets - 1, Math.floor((rank * buckets) / Math.max(1, n)));
    bucketOf[item] = b;
    counts[b] += itemCounts[item];
  });
  return { bucketOf, shares: shares(counts) };
}

/**
 * The training snapshot's reference distributions. `typeCounts`: events per type; `itemCounts`:
 * positive interactions per item (aligned with the model's item ids); `scores`: the model's top-k
 * scores for a sample of users (the distribution its served scores are compared with).
 */
export function buildDriftReference(input: {
  typeCounts: Record<string, number>;
  itemCounts: ArrayLike<number>;
  scores: ArrayLike<number>;
  buckets?: number;
  scoreBins?: number;
}): { reference: DriftReference; popularityBuckets: number[] } {
  const pop = popularityBuckets(input.itemCounts, input.buckets ?? DEFAULT_POPULARITY_BUCKETS);
  const scoreEdges = quantileEdges(input.scores, input.scoreBins ?? DEFAULT_SCORE_BINS);
  const typeShares: Record<string, number> = {};
  const keys = Object.keys(input.typeCounts).sort();
  const s = shares(keys.map((k) => input.typeCounts[k]));
  keys.forEach((k, i) => (typeShares[k] = s[i]));
  return {
    reference: {
      eventTypes: typeShares,
      itemPopularity: pop.shares,
      scoreEdges,
      scoreShares: shares(histogram(scoreEdges, input.scores)),
    },
    popularityBuckets: pop.bucketOf,
  };
}
