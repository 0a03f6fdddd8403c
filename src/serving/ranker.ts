/**
 * The online second stage: a trained LambdaMART ranker (artifact `extra.ranker`, see
 * features/ranker-artifact.ts) re-ranks the candidates several retrievers propose for a personalized
 * request. The recommender orchestrates the I/O (candidates, one `itemFeatures` round trip, `userMeta`);
 * this file holds what is per model version: loading the ranker once, deciding once whether it can
 * rank here, the scratch buffers the feature rows are written into, and turning a row's per-feature
 * contributions into a reason people read and an `explain=true` breakdown.
 *
 * Retrievers this process provides (names the ranker's `retrievers` refer to): the model's own
 * algorithm name (its full-catalog scores, top-N), `pop` (the online time-decayed popularity head,
 * score = popularity) and `similar` (item-to-item on the user's recent items). As offline
 * (evaluation/ltr.ts), every candidate carries every retriever's score, its rank only where that
 * retriever's list holds it; `pop` scores items beyond the popular head as 0.
 */
import { GbdtModel } from '../algorithms/gbdt.ts';
import { TopKHeap } from '../algorithms/topk.ts';
import type { FeatureConfig } from '../features/definitions.ts';
import {
  parseStoredRanker,
  POPULARITY_RETRIEVER,
  rankerMismatch,
  type StoredRanker,
} from '../features/ranker-artifact.ts';
import { CATEGORY_RETRIEVER, TRENDING_RETRIEVER } from '../features/head-retrievers.ts';
import { SIMILAR_RETRIEVER } from '../features/similar-retriever.ts';
import { CONTENT_RETRIEVER } from '../features/content-retriever.ts';
import { RankingFeatures } from '../features/ranking.ts';

export type { StoredRanker } from '../features/ranker-artifact.ts';

/** The popularity retriever's name (features/ranker-artifact.ts). */
export const POP_RETRIEVER = POPULARITY_RETRIEVER;
/** The item-to-item-on-recent-items retriever's name. */
export { SIMILAR_RETRIEVER };

/** Named per-feature contributions listed by `explain=true`; the rest are summed into one entry. */
export const MAX_EXPLAINED_FEATURES = 15;
/** The entry that sums the contributions of the features not listed (so the list + bias = score). */
export const OTHER_FEATURES = 'other_features';

/** A model version's ranker, decoded once when the version is loaded. */
export interface LoadedRanker {
  stored: StoredRanker;
  model: GbdtModel;
}

/**
 * Decodes `extra.ranker` of an artifact. A malformed ranker never stops the version from loading: the
 * CF model still serves, and `error` says why the ranker is absent.
 */
export function loadRanker(extra: Readonly<Record<string, unknown>>): {
  ranker: LoadedRanker | null;
  error: string | null;
} {
  try {
    const stored = parseStoredRanker(extra.ranker);
    if (!stored) return { ranker: null, error: null };
    return { ranker: { stored, model: GbdtModel.fromJSON(stored.model) }, error: null };
  } catch (err) {
    const details = (err as { details?: { fields?: { field: string; message: string }[] } }).details;
    const why = details?.fields?.map((f) => `${f.field}: ${f.message}`).join('; ');
    return { ranker: null, error: why || (err as Error).message };
  }
}

/** The retrievers a process serving a model of `algorithm` provides, in round-robin order. */
export function onlineRetrievers(algorithm: string): string[] {
  return [
    algorithm,
    POP_RETRIEVER,
    SIMILAR_RETRIEVER,
    TRENDING_RETRIEVER,
    CATEGORY_RETRIEVER,
    CONTENT_RETRIEVER,
  ];
}

/** What a positive contribution of a feature says about the item (see REASON_TABLE). */
export type ReasonKind =
  'cf' | 'similar' | 'popular' | 'trending' | 'category' | 'segment' | 'rate' | 'new' | 'active' | 'price';

/**
 * Feature-name prefixes → what their positive contribution says, for the reason. The model's own
 * retriever (`retriever_<algorithm>_…`) maps to `cf` at run time. Features about the user alone or the
 * request time (`user_events`, `context_hour`…) say nothing about the item and are not reasons.
 */
export const REASON_TABLE: readonly { prefix: string; kind: ReasonKind }[] = [
  { prefix: `retriever_${SIMILAR_RETRIEVER}_`, kind: 'similar' },
  { prefix: `retriever_${POP_RETRIEVER}_`, kind: 'popular' },
  { prefix: `retriever_${TRENDING_RETRIEVER}_`, kind: 'trending' },
  { prefix: `retriever_${CATEGORY_RETRIEVER}_`, kind: 'category' },
  { prefix: `retriever_${CONTENT_RETRIEVER}_`, kind: 'similar' },
  { prefix: 'item_trending', kind: 'trending' },
  { prefix: 'item_decayed_', kind: 'popular' },
  { prefix: 'item_count_', kind: 'popular' },
  { prefix: 'item_rate_', kind: 'rate' },
  { prefix: 'item_age_', kind: 'new' },
  { prefix: 'item_recency_days', kind: 'active' },
  { prefix: 'item_price', kind: 'price' },
  { prefix: 'user_item_price_band', kind: 'price' },
  { prefix: 'user_category_share', kind: 'category' },
  { prefix: 'user_segment_item_share', kind: 'segment' },
];

/** One explained feature (`explain=true`), as the wire shows it. */
export interface FeatureContribution {
  name: string;
  value: number | null;
  contribution: number;
}

/** A row's explanation: the strongest reason-bearing feature, and with `explain` the breakdown. */
export interface RowExplanation {
  /** Reason of the largest positive contribution among features that have one (null: none). */
  reason: { kind: ReasonKind; feature: string } | null;
  features?: FeatureContribution[];
  bias?: number;
}

/**
 * A ranker usable with this process's feature settings, for one model version: its feature vector,
 * scratch buffers grown to the largest candidate count seen, and the reason kind of every column.
 * Filling, scoring and explaining are synchronous, so one request at a time uses the buffers.
 */
export class RankerStage {
  readonly features: RankingFeatures;
  readonly nFeatures: number;
  /** Column → reason kind (null: not a reason). */
  private readonly kinds: (ReasonKind | null)[];
  private rows = new Float32Array(0);
  private scores = new Float32Array(0);
  private readonly contrib: Float64Array;
  private readonly heap = new TopKHeap(16);
  private readonly order: Int32Array;
  /** See `twin`. */
  private background: RankerStage | null = null;

  constructor(
    readonly ranker: LoadedRanker,
    /** The algorithm of the model it ranks for (its retriever column is the CF reason). */
    readonly algorithm: string,
    private readonly config: FeatureConfig,
  ) {
    this.features = new RankingFeatures({ config, retrievers: ranker.stored.retrievers });
    this.nFeatures = this.features.names.length;
    this.contrib = new Float64Array(this.nFeatures + 1);
    this.order = new Int32Array(this.nFeatures);
    const cf = `retriever_${algorithm}_`;
    this.kinds = this.features.names.map((name) => {
      if (name.startsWith(cf)) return 'cf';
      for (const { prefix, kind } of REASON_TABLE) if (name.startsWith(prefix)) return kind;
      return null;
    });
  }

  /**
   * The stage for `ranker` serving a model of `algorithm`, or why it cannot rank here (a retriever
   * this process does not provide, other half-lives, other feature names).
   */
  static plan(
    ranker: LoadedRanker,
    algorithm: string,
    config: FeatureConfig,
  ): RankerStage | { unusable: string } {
    const why = rankerMismatch(ranker.stored, config, onlineRetrievers(algorithm));
    if (why !== null) return { unusable: why };
    if (ranker.model.nFeatures !== ranker.stored.featureNames.length)
      return {
        unusable: `the model has ${ranker.model.nFeatures} features, the artifact names ${ranker.stored.featureNames.length}`,
      };
    return new RankerStage(ranker, algorithm, config);
  }

  /**
   * The same ranker on buffers of its own (made once): for the background recomputation, which gives
   * the event loop turns between filling, scoring and explaining while requests use this stage's
   * buffers. Background recomputations run one at a time (serving/answer-refresh.ts), so one is enough.
   */
  twin(): RankerStage {
    return (this.background ??= new RankerStage(this.ranker, this.algorithm, this.config));
  }

  /** The row buffer with room for `n` candidates (rows × nFeatures, row-major). */
  rowsFor(n: number): Float32Array {
    if (this.rows.length < n * this.nFeatures) {
      this.rows = new Float32Array(n * this.nFeatures);
      this.scores = new Float32Array(n);
    }
    return this.rows;
  }

  /**
   * Scores the first `n` rows and returns the `k` best row indices, best first, with their scores
   * (ties: the lower row, i.e. the earlier candidate of the round-robin merge).
   */
  top(n: number, k: number): { rows: Int32Array; scores: Float32Array } {
    const out = this.scores;
    this.ranker.model.predictMany(this.rows, n, out);
    const heap = this.heap;
    heap.reset(Math.min(k, n));
    for (let r = 0; r < n; r++) if (out[r] > heap.threshold()) heap.push(r, out[r]);
    const rows = new Int32Array(heap.length);
    const scores = new Float32Array(heap.length);
    heap.drainInto(rows, scores, 0);
    return { rows, scores };
  }

  /**
   * Why row `r` scored as it did: the feature with the largest positive contribution among those that
   * make a reason; with `explain`, every feature's contribution (largest |contribution| first, at most
   * MAX_EXPLAINED_FEATURES entries, the last summing the rest when more contribute) and the bias.
   */
  explain(r: number, explain: boolean): RowExplanation {
    const nf = this.nFeatures;
    const c = this.contrib;
    const offset = r * nf;
    this.ranker.model.contributions(this.rows, offset, c);
    let best = -1;
    for (let f = 0; f < nf; f++)
      if (this.kinds[f] !== null && c[f] > 0 && (best < 0 || c[f] > c[best])) best = f;
    const out: RowExplanation = {
      reason: best < 0 ? null : { kind: this.kinds[best] as ReasonKind, feature: this.features.names[best] },
    };
    if (!explain) return out;
    let n = 0;
    for (let f = 0; f < nf; f++) if (c[f] !== 0) this.order[n++] = f;
    const ranked = Array.from(this.order.subarray(0, n)).sort(
      (a, b) => Math.abs(c[b]) - Math.abs(c[a]) || a - b,
    );
    const listed =
      ranked.length > MAX_EXPLAINED_FEATURES ? ranked.slice(0, MAX_EXPLAINED_FEATURES - 1) : ranked;
    const features: FeatureContribution[] = listed.map((f) => {
      const v = this.rows[offset + f];
      return { name: this.features.names[f], value: Number.isNaN(v) ? null : v, contribution: c[f] };
    });
    if (listed.length < ranked.length) {
      let rest = 0;
      for (let j = listed.length; j < ranked.length; j++) rest += c[ranked[j]];
      features.push({ name: OTHER_FEATURES, value: null, contribution: rest });
    }
    out.features = features;
    out.bias = c[nf];
    return out;
  }
}
