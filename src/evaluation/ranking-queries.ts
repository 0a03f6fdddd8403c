/**
 * Ranking queries: for each user, candidates from several retrievers (merged with provenance) and one
 * feature row per candidate, as of a point in time. The one builder of second-stage rows offline: the
 * two-stage evaluation (`cairn eval --algorithms ltr`, ltr.ts) and the training pipeline's ranker
 * (training/ranker.ts) both call it, and serving builds its rows from the same parts (candidates.ts,
 * RankingFeatures), so the ranker sees the same kind of vector wherever it runs.
 *
 * Retrievers score the full catalog once per user: each contributes its top list, and every candidate
 * gets every retriever's score (its rank only where that retriever's list holds it), as online.
 *
 * Pure: no I/O.
 */
import type { RankingDataset } from '../algorithms/gbdt.ts';
import type { Csr } from '../algorithms/sparse.ts';
import { TopKHeap } from '../algorithms/topk.ts';
import type { FittedModel, UserHistory } from '../algorithms/types.ts';
import { mergeCandidates, type Candidate } from '../features/candidates.ts';
import type { FeatureEvent, ItemMeta, UserMeta } from '../features/definitions.ts';
import type { ItemStateTimeline } from '../features/item-state.ts';
import type { RankingFeatures } from '../features/ranking.ts';

export interface QueryRetriever {
  name: string;
  model: Pick<FittedModel, 'scoreUser'>;
  /** Items scoring at or below this are never in its list (their score is still a feature); absent: none. */
  minScore?: number;
  /**
   * Called with each query's time before it scores (queries come in time order): a retriever whose scores
   * depend on time (popularity, trending) recomputes them as of `now`.
   */
  advanceTo?(now: number): void;
}

export interface QueryStage {
  retrievers: readonly QueryRetriever[];
  /** What each user is known to have interacted with: the retrievers' input, never offered again. */
  history: Csr;
  /** More items each user may not be offered (e.g. a validation part when measuring on a test part). */
  exclude: readonly Csr[];
  /** Matrix index → item id (the id the feature store keys item states by). */
  itemIds: readonly string[];
  /** Item states by id; advanced (forward only) to each query's time. */
  timeline: ItemStateTimeline;
  /** The user's events at or before `at`, newest first, bounded like the online history. */
  userEvents(user: number, at: number): FeatureEvent[];
  userMeta?(user: number): UserMeta | null;
  /** Catalog attributes of an item (null: unknown). */
  itemMeta?(itemId: string): ItemMeta | null;
}

/** The queries to build: users and their times (aligned), and optionally each query's own candidates. */
export interface QueryBatch {
  users: Int32Array;
  at: Float64Array;
  /**
   * Candidates given per query (e.g. the items a logged answer showed), in their order, instead of the
   * merged lists; null entries (or no array) merge as usual. Each still gets every retriever's score, and
   * its rank where that retriever's list holds it, as if it had been retrieved.
   */
  given?: readonly (Int32Array | null)[];
}

/** One query as built: candidate item indices and their feature rows (views valid during the callback). */
export interface BuiltQuery {
  /** Position of the query in its batch. */
  index: number;
  user: number;
  at: number;
  items: Int32Array;
  count: number;
  rows: Float32Array;
  /** Each retriever's full-catalog scores for the user (in `stage.retrievers` order). */
  scores: readonly Float32Array[];
  /** Each retriever's own top list (best first), before merging. */
  lists: readonly { items: Int32Array; n: number }[];
}

/**
 * Builds every query of the batch, calling `onQuery` per query; queries run in time order so the
 * item-state replay (and every time-dependent retriever) only moves forward.
 */
export function buildQueries(
  stage: QueryStage,
  { users, at, given }: QueryBatch,
  features: RankingFeatures,
  candidates: number,
  onQuery: (q: BuiltQuery) => void,
  signal?: AbortSignal,
): void {
  const { history, retrievers, itemIds, timeline } = stage;
  const nItems = history.cols;
  const nf = features.names.length;
  const scores = retrievers.map(() => new Float32Array(nItems));
  const lists = retrievers.map((r) => ({
    retriever: r.name,
    items: new Int32Array(candidates),
    scores: new Float32Array(candidates),
    n: 0,
  }));
  const heap = new TopKHeap(candidates);
  const banned = new Uint8Array(nItems);
  const rows = new Float32Array(candidates * nf);
  const cand = new Int32Array(candidates);
  const hist: UserHistory = { items: new Int32Array(0), weights: new Float32Array(0) };
  const categoriesOf = (id: string) => stage.itemMeta?.(id)?.categories ?? [];
  const priceOf = (id: string) => stage.itemMeta?.(id)?.price ?? null;
  const order = Int32Array.from(users, (_, j) => j).sort((a, b) => at[a] - at[b] || a - b);
  const toggle = (u: number, v: 0 | 1) => {
    for (const m of [history, ...stage.exclude])
      for (let p = m.indptr[u]; p < m.indptr[u + 1]; p++) banned[m.indices[p]] = v;
  };
  for (let j = 0; j < order.length; j++) {
    if (j % 256 === 0) signal?.throwIfAborted();
    const index = order[j];
    const u = users[index];
    const now = at[index];
    timeline.advanceTo(now);
    for (const r of retrievers) r.advanceTo?.(now);
    hist.items = history.indices.subarray(history.indptr[u], history.indptr[u + 1]);
    hist.weights = history.data.subarray(history.indptr[u], history.indptr[u + 1]);
    toggle(u, 1);
    for (let r = 0; r < retrievers.length; r++) {
      const s = scores[r];
      retrievers[r].model.scoreUser(u, hist, s);
      heap.reset(candidates);
      const floor = retrievers[r].minScore ?? -Infinity;
      for (let i = 0; i < nItems; i++) {
        if (banned[i] === 0 && s[i] > floor && s[i] > heap.threshold()) heap.push(i, s[i]);
      }
      lists[r].n = heap.drainInto(lists[r].items, lists[r].scores, 0);
    }
    toggle(u, 0);
    const retrieved = mergeCandidates(
      lists.map((l) => ({
        retriever: l.retriever,
        items: l.items.subarray(0, l.n),
        scores: l.scores.subarray(0, l.n),
      })),
      candidates,
    );
    const fixed = given?.[index] ?? null;
    const merged = fixed ? pinned(retrieved, lists, fixed, candidates) : retrieved;
    const ctx = features.userContext(
      stage.userEvents(u, now),
      stage.userMeta?.(u) ?? null,
      now,
      categoriesOf,
      priceOf,
    );
    for (let c = 0; c < merged.length; c++) {
      const item = merged[c].item;
      cand[c] = item;
      const signals = merged[c].signals;
      // Every retriever's score, also where it did not retrieve the item (its rank stays missing).
      for (let r = 0; r < retrievers.length; r++) {
        if (!signals.has(retrievers[r].name))
          signals.set(retrievers[r].name, { score: scores[r][item], rank: Number.NaN });
      }
      const id = itemIds[item];
      features.fill(rows, c * nf, ctx, id, timeline.state(id), stage.itemMeta?.(id) ?? null, signals, now);
    }
    onQuery({ index, user: u, at: now, items: cand, count: merged.length, rows, scores, lists });
  }
}

/**
 * The given items as candidates (at most `limit`), with the signals of those merged; an item the merge
 * did not reach keeps its rank in every retriever list that holds it.
 */
function pinned(
  retrieved: readonly Candidate<number>[],
  lists: readonly { retriever: string; items: Int32Array; scores: Float32Array; n: number }[],
  items: Int32Array,
  limit: number,
): Candidate<number>[] {
  const byItem = new Map(retrieved.map((c) => [c.item, c]));
  return Array.from(items.subarray(0, limit), (item) => {
    const merged = byItem.get(item);
    if (merged) return merged;
    const signals: Candidate<number>['signals'] = new Map();
    for (const l of lists) {
      const at = l.items.subarray(0, l.n).indexOf(item);
      if (at >= 0) signals.set(l.retriever, { score: l.scores[at], rank: at + 1 });
    }
    return { item, signals };
  });
}

/** Growable feature rows, labels and query boundaries of a ranking dataset (one query per `add`). */
export class RankingRows {
  private features: Float32Array;
  private labels: Float32Array;
  private readonly groups: number[] = [0];
  private rows = 0;
  constructor(private readonly nf: number) {
    this.features = new Float32Array(1024 * nf);
    this.labels = new Float32Array(1024);
  }

  /** Appends one query: `count` rows of `rows` and their labels. */
  add(rows: Float32Array, labels: Float32Array, count: number): void {
    const need = this.rows + count;
    if (need > this.labels.length) {
      const cap = Math.max(need, this.labels.length * 2);
      const f = new Float32Array(cap * this.nf);
      f.set(this.features.subarray(0, this.rows * this.nf));
      this.features = f;
      const l = new Float32Array(cap);
      l.set(this.labels.subarray(0, this.rows));
      this.labels = l;
    }
    this.features.set(rows.subarray(0, count * this.nf), this.rows * this.nf);
    this.labels.set(labels.subarray(0, count), this.rows);
    this.rows = need;
    this.groups.push(need);
  }

  get queries(): number {
    return this.groups.length - 1;
  }

  get size(): number {
    return this.rows;
  }

  build(): RankingDataset {
    return {
      nFeatures: this.nf,
      features: this.features.subarray(0, this.rows * this.nf),
      labels: this.labels.subarray(0, this.rows),
      groups: Int32Array.from(this.groups),
    };
  }
}
