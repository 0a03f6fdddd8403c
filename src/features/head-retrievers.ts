/**
 * Retrievers over the popular head: candidate sources that need no model, computed from item feature
 * states (the one fold, item-state.ts) the same way offline (training rows, at the training cut) and
 * online (serving, from the online state's states of the popular head, refreshed every few seconds).
 *
 * - `trending`: items whose recent weight runs above their long-term rate — the decayed weight over the
 *   shortest half-life minus what the longest half-life's weight predicts for it (`d_s − d_l · h_s / h_l`,
 *   0 for an item with steady interest, positive for a rising one). The same for every user.
 * - `category`: the popular items of the categories the user chooses — the item's decayed weight (the
 *   popularity retriever's score) times the user's largest share of weight in one of its categories
 *   (UserContext.categoryShares, the user × category feature), 0 outside them.
 *
 * Both score only the head (the `size` most popular items by decayed weight): other items are missing
 * (NaN) for them, as a feature and as a candidate, on both sides.
 *
 * Pure: no I/O.
 */
import { TopKHeap } from '../algorithms/topk.ts';
import type { FeatureConfig, ItemFeatureState } from './definitions.ts';
import { decayPlan, decayedAt } from './item-state.ts';

export const TRENDING_RETRIEVER = 'trending';
export const CATEGORY_RETRIEVER = 'category';
/** Items in the head by default (the serving popular list's cached head is as large). */
export const HEAD_SIZE = 1000;
/** Serving rebuilds the head at most this often (serving/retrieval-head.ts); training replays it so. */
export const HEAD_REFRESH_MS = 5000;

/** The popular head with what the head retrievers need (aligned arrays, in head order). */
export interface RetrievalHead {
  ids: readonly string[];
  /** Decayed weight at the popularity retriever's half-life (its score). */
  pop: Float64Array;
  /** Trending score (see the file comment). */
  trending: Float64Array;
  /** Head positions by trending score, best first (items with a positive score only). */
  trendingOrder: Int32Array;
  categories: readonly (readonly string[])[];
  /** Item id → position in the head. */
  index: ReadonlyMap<string, number>;
}

/** Trending score of one state at `now` (NaN without a state or with a single half-life). */
export function trendingScore(
  state: ItemFeatureState | null,
  now: number,
  config: Pick<FeatureConfig, 'halfLivesDays'>,
): number {
  const plan = decayPlan(config);
  let longest = 0;
  for (let i = 1; i < plan.ms.length; i++) if (plan.ms[i] > plan.ms[longest]) longest = i;
  if (state === null || longest === plan.shortest) return Number.NaN;
  const s = plan.shortest;
  return (
    decayedAt(state, s, now, config) -
    decayedAt(state, longest, now, config) * (plan.ms[s] / plan.ms[longest])
  );
}

/**
 * The head from `candidates` (ids with their states, any order): the `size` with the largest decayed
 * weight at `popIndex` (ties by id), each with its scores at `now`.
 */
export function buildHead(
  candidates: readonly { id: string; state: ItemFeatureState | null; categories: readonly string[] }[],
  now: number,
  config: Pick<FeatureConfig, 'halfLivesDays'>,
  popIndex: number,
  size = HEAD_SIZE,
): RetrievalHead {
  const weight = new Float64Array(candidates.length);
  for (let c = 0; c < candidates.length; c++)
    weight[c] = decayedAt(candidates[c].state, popIndex, now, config);
  // Only candidates at or above the size-th largest weight can be in the head: sort those alone (the
  // order and the cut are those of sorting every candidate, ties by id).
  const floor = kthLargest(weight, size);
  const kept: number[] = [];
  for (let c = 0; c < candidates.length; c++) if (weight[c] > 0 && weight[c] >= floor) kept.push(c);
  kept.sort((a, b) => {
    const ia = candidates[a].id;
    const ib = candidates[b].id;
    return weight[b] - weight[a] || (ia < ib ? -1 : ia > ib ? 1 : 0);
  });
  const scored = kept.slice(0, size).map((c) => ({ ...candidates[c], pop: weight[c] }));
  const n = scored.length;
  const pop = new Float64Array(n);
  const trending = new Float64Array(n);
  const index = new Map<string, number>();
  for (let h = 0; h < n; h++) {
    pop[h] = scored[h].pop;
    trending[h] = trendingScore(scored[h].state, now, config);
    index.set(scored[h].id, h);
  }
  const rising: number[] = [];
  for (let h = 0; h < n; h++) if (trending[h] > 0) rising.push(h);
  rising.sort((a, b) => trending[b] - trending[a] || a - b);
  return {
    ids: scored.map((c) => c.id),
    pop,
    trending,
    trendingOrder: Int32Array.from(rising),
    categories: scored.map((c) => c.categories),
    index,
  };
}

/** The k-th largest of `values` (−Infinity when there are fewer than k); quickselect on a copy. */
function kthLargest(values: Float64Array, k: number): number {
  if (k <= 0 || k > values.length) return -Infinity;
  const a = values.slice();
  let lo = 0;
  let hi = a.length - 1;
  const target = k - 1; // position in descending order
  while (lo < hi) {
    const pivot = a[(lo + hi) >> 1];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] > pivot) i++;
      while (a[j] < pivot) j--;
      if (i <= j) {
        const t = a[i];
        a[i++] = a[j];
        a[j--] = t;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return a[target];
  }
  return a[target];
}

/** The category retriever's score of head item `h` for a user with these category shares. */
export function categoryScore(head: RetrievalHead, h: number, shares: ReadonlyMap<string, number>): number {
  let best = 0;
  for (const c of head.categories[h]) {
    const s = shares.get(c);
    if (s !== undefined && s > best) best = s;
  }
  return head.pop[h] * best;
}

/**
 * A head retriever's list for one user: up to `n` head positions passing `accept`, best first (trending:
 * positive scores; category: positive scores), with their scores.
 */
export function headList(
  head: RetrievalHead,
  retriever: typeof TRENDING_RETRIEVER | typeof CATEGORY_RETRIEVER,
  shares: ReadonlyMap<string, number>,
  n: number,
  accept: (h: number) => boolean,
): { positions: number[]; scores: number[] } {
  const positions: number[] = [];
  const scores: number[] = [];
  if (retriever === TRENDING_RETRIEVER) {
    for (const h of head.trendingOrder) {
      if (positions.length >= n) break;
      if (!accept(h)) continue;
      positions.push(h);
      scores.push(head.trending[h]);
    }
    return { positions, scores };
  }
  if (shares.size === 0 || n <= 0) return { positions, scores };
  // A bounded heap, as offline (evaluation/ranking-queries.ts): the whole head is scored per request.
  const heap = new TopKHeap(n);
  heap.reset(n);
  for (let h = 0; h < head.ids.length; h++) {
    const s = categoryScore(head, h, shares);
    if (s > 0 && s > heap.threshold() && accept(h)) heap.push(h, s);
  }
  const top = new Int32Array(n);
  const topScores = new Float32Array(n);
  const m = heap.drainInto(top, topScores);
  for (let r = 0; r < m; r++) {
    positions.push(top[r]);
    scores.push(topScores[r]);
  }
  return { positions, scores };
}

/** A head retriever's score for any item (NaN outside the head). */
export function headScore(
  head: RetrievalHead,
  retriever: typeof TRENDING_RETRIEVER | typeof CATEGORY_RETRIEVER,
  itemId: string,
  shares: ReadonlyMap<string, number>,
): number {
  const h = head.index.get(itemId);
  if (h === undefined) return Number.NaN;
  return retriever === TRENDING_RETRIEVER ? head.trending[h] : categoryScore(head, h, shares);
}
