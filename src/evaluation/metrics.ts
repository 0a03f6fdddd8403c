/**
 * Top-k ranking metrics with RecBole's definitions (binary relevance, full ranking):
 * - hit@k = 1 when any relevant item is in the top k;
 * - mrr@k = 1 / rank of the first relevant item in the top k (0 when none);
 * - ndcg@k = DCG / IDCG with gains 1 / log2(rank + 1), IDCG over min(|relevant|, k) positions;
 * - recall@k = hits / |relevant| (not capped at k, as RecBole and Cairn's design state);
 * - precision@k = hits / k (k even when fewer candidates exist);
 * - map@k = Σ over hit ranks i of precision@i, divided by min(|relevant|, k);
 * - coverage@k = distinct items recommended to any user / all items.
 * Per-user values are averaged over users with at least one relevant item.
 */

export const RANKING_METRICS = ['ndcg', 'recall', 'precision', 'map', 'mrr', 'hit'] as const;
export type RankingMetric = (typeof RANKING_METRICS)[number];
export type UserMetrics = Record<RankingMetric, number>;

/** 1 / log2(rank + 1) for rank = index + 1, cached up to the largest k seen. */
let gains = new Float64Array(0);
function discount(k: number): Float64Array {
  if (gains.length < k) {
    gains = new Float64Array(Math.max(k, 2 * gains.length));
    for (let i = 0; i < gains.length; i++) gains[i] = 1 / Math.log2(i + 2);
  }
  return gains;
}

/**
 * The metrics of one ranked list. `hits[j]` is non-zero when the item at rank j + 1 is relevant
 * (only the first k entries count); `relevant` is the number of relevant items of the user.
 */
export function metricsForRanking(hits: ArrayLike<number>, relevant: number, k: number): UserMetrics {
  const d = discount(k);
  const n = Math.min(hits.length, k);
  let h = 0;
  let dcg = 0;
  let firstHit = 0;
  let sumPrecision = 0;
  for (let j = 0; j < n; j++) {
    if (!hits[j]) continue;
    h++;
    dcg += d[j];
    if (firstHit === 0) firstHit = j + 1;
    sumPrecision += h / (j + 1);
  }
  const ideal = Math.min(relevant, k);
  let idcg = 0;
  for (let j = 0; j < ideal; j++) idcg += d[j];
  return {
    ndcg: idcg > 0 ? dcg / idcg : 0,
    recall: relevant > 0 ? h / relevant : 0,
    precision: h / k,
    map: ideal > 0 ? sumPrecision / ideal : 0,
    mrr: firstHit > 0 ? 1 / firstHit : 0,
    hit: h > 0 ? 1 : 0,
  };
}

/**
 * Accumulates per-user metrics and catalog coverage over a whole evaluation without allocating per
 * user: relevance is checked with a stamped item array instead of a Set.
 */
export class MetricAccumulator {
  private readonly sums: UserMetrics = { ndcg: 0, recall: 0, precision: 0, map: 0, mrr: 0, hit: 0 };
  private readonly recommended: Uint8Array;
  private readonly stamp: Int32Array;
  private readonly hits: Uint8Array;
  private distinct = 0;
  private round = 0;
  users = 0;

  constructor(
    readonly k: number,
    readonly nItems: number,
  ) {
    if (!(k >= 1)) throw new RangeError('k must be ≥ 1');
    this.recommended = new Uint8Array(nItems);
    this.stamp = new Int32Array(nItems);
    this.hits = new Uint8Array(k);
  }

  /**
   * Adds one user: `ranked[0..count)` are the recommended items best-first, `relevant` the user's
   * relevant items (unique). Users without relevant items are ignored (they are not averaged).
   */
  add(ranked: Int32Array, count: number, relevant: ArrayLike<number>): void {
    if (relevant.length === 0) return;
    const tag = ++this.round;
    for (let j = 0; j < relevant.length; j++) this.stamp[relevant[j]] = tag;
    const n = Math.min(count, this.k);
    for (let j = 0; j < n; j++) {
      const item = ranked[j];
      this.hits[j] = this.stamp[item] === tag ? 1 : 0;
      if (!this.recommended[item]) {
        this.recommended[item] = 1;
        this.distinct++;
      }
    }
    this.hits.fill(0, n);
    const m = metricsForRanking(this.hits, relevant.length, this.k);
    for (const name of RANKING_METRICS) this.sums[name] += m[name];
    this.users++;
  }

  /** Means over the users added, keyed `name@k`, plus `coverage@k`. */
  result(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const name of RANKING_METRICS)
      out[`${name}@${this.k}`] = this.users > 0 ? this.sums[name] / this.users : 0;
    out[`coverage@${this.k}`] = this.nItems > 0 ? this.distinct / this.nItems : 0;
    return out;
  }
}
