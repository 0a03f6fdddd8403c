/**
 * The contract between the numeric core and everything that trains, evaluates or serves a model.
 * Pure: no I/O. Indices are dense (0..users-1, 0..items-1); id mapping lives with the caller.
 */
import type { Csr } from './sparse.ts';

export type AlgorithmName = 'pop' | 'itemknn' | 'als' | 'bpr' | 'ease' | 'rp3beta';

export type ParamValue = number | string | boolean;
export type Params = Record<string, ParamValue>;

/** One user's known interactions: item indices (sorted, unique) and their weights. */
export interface UserHistory {
  items: Int32Array;
  weights: Float32Array;
}

export interface FitOptions {
  /** Worker threads to use; 1 means run in this thread, sequential and deterministic. */
  threads: number;
  seed: number;
  /** Called with a fraction 0..1 as fitting advances, and a short stage label. */
  onProgress?: (fraction: number, stage: string) => void;
  signal?: AbortSignal;
  /**
   * Per-item timestamps of the most recent interaction (ms) and a reference time: only the
   * time-decayed popularity uses them.
   */
  itemLastSeen?: Float64Array;
  now?: number;
  /** Event-level (item, timestamp ms) pairs for time-decayed popularity; optional. */
  itemEventTimes?: { items: Int32Array; times: Float64Array };
}

/** A serialisable snapshot: a small JSON header plus named flat arrays. */
export interface ModelArtifact {
  algorithm: AlgorithmName;
  /** Artifact format version of this algorithm's layout; loaders accept every version they know. */
  formatVersion: number;
  params: Params;
  meta: Record<string, number | string | boolean>;
  arrays: Record<string, Float32Array | Int32Array | Float64Array>;
}

export interface FittedModel {
  readonly algorithm: AlgorithmName;
  readonly params: Params;
  readonly nUsers: number;
  readonly nItems: number;
  /**
   * Writes a score for every item into `out` (length nItems) for training user `user`
   * (or -1 for a user not seen in training) whose interactions are `history`. Models that keep
   * per-user state (ALS, BPR) use the history to fold the user in when `user` is -1 or when
   * `foldIn` is true, so newest events count at once. Higher is better; callers exclude seen items.
   */
  scoreUser(user: number, history: UserHistory, out: Float32Array, foldIn?: boolean): void;
  /**
   * Scores only `items` (dense item indices) for the user, into out[0..items.length): the same
   * values scoreUser would give those items (same fold-in rules), for a second stage that ranks a
   * few hundred candidates. Costs ∝ items.length (plus one fold-in), never a pass over the catalog.
   * An index outside 0..nItems-1 gets −Infinity.
   */
  scoreItems(
    user: number,
    history: UserHistory,
    items: Int32Array,
    out: Float32Array,
    foldIn?: boolean,
  ): void;
  /**
   * Item-to-item similarity of `item` to every item, written into `out` (length nItems), or false
   * when the model has no notion of item similarity.
   */
  similarItems(item: number, out: Float32Array): boolean;
  /**
   * Similarity of two items as this model sees it, cheap (a dot product or a lookup), used to explain
   * a recommendation by the history items that contributed to it. Absent for models without one.
   */
  itemSimilarity?(a: number, b: number): number;
  /** out[j] = itemSimilarity(items[j], b) for every j, the same values, for many items at once. */
  itemSimilarities?(items: Int32Array, b: number, out: Float64Array): void;
  /**
   * Factor models (ALS, BPR): the user's latent vector as `scoreUser` computes it (same fold-in rules),
   * in a scratch buffer the next call overwrites. With `scoreVector`, a caller can keep a folded-in
   * vector and score from it again without folding the same history in once more.
   */
  userVector?(user: number, history: UserHistory, foldIn?: boolean): Float64Array;
  /** Scores every item for a vector from `userVector`: exactly what `scoreUser` writes for that user. */
  scoreVector?(x: Float64Array, out: Float32Array): void;
  toArtifact(): ModelArtifact;
}

export interface AlgorithmSpec {
  name: AlgorithmName;
  /** Defaults that work across data sets (tuned on validation splits, never on test). */
  defaults: Params;
  /** Search space for `cairn tune`. */
  space: Record<string, ParamSpace>;
  fit(train: Csr, params: Params, opts: FitOptions): Promise<FittedModel>;
  load(artifact: ModelArtifact): FittedModel;
}

export type ParamSpace =
  | { kind: 'int'; min: number; max: number; log?: boolean }
  | { kind: 'float'; min: number; max: number; log?: boolean }
  | { kind: 'choice'; values: ParamValue[] };
