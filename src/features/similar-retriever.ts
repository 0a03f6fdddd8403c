/**
 * The `similar` retriever: items similar to the user's recent ones (item-kNN on recent history), from
 * the model's own item-to-item scores (`FittedModel.similarItems`). One definition for serving (the
 * fallback chain's similar-to-recent link and the ranker's candidates) and for training rows offline.
 *
 * Each of the user's `recent` items (most recent first, at most config `serving.recentItems`) adds its
 * similarity weighted 1 / (its position + 1); only positive similarities count. `bestSource` is the
 * recent item behind each item's largest term (the reason "similar to X").
 *
 * Pure: no I/O.
 */
import type { FittedModel } from '../algorithms/types.ts';

export const SIMILAR_RETRIEVER = 'similar';

export interface SimilarScores {
  /** Per item of the model, the weighted sum (0: no positive similarity to a recent item). */
  acc: Float32Array;
  /** Per item, the recent item (model index) behind its largest term, −1 when none. */
  bestSource: Int32Array;
}

/**
 * Scores every item of the model against the recent items (model indices, most recent first); `buf` is
 * scratch of the model's item count. Null when the model has no item-to-item scores.
 */
export function similarToRecent(
  model: Pick<FittedModel, 'similarItems'>,
  recent: readonly number[],
  nItems: number,
  buf: Float32Array,
): SimilarScores | null {
  const acc = new Float32Array(nItems);
  const bestSource = new Int32Array(nItems).fill(-1);
  const bestValue = new Float32Array(nItems);
  for (let r = 0; r < recent.length; r++) {
    if (!model.similarItems(recent[r], buf)) return null;
    const w = 1 / (r + 1);
    for (let i = 0; i < nItems; i++) {
      const v = buf[i] * w;
      if (v > 0) {
        acc[i] += v;
        if (v > bestValue[i]) {
          bestValue[i] = v;
          bestSource[i] = recent[r];
        }
      }
    }
  }
  return { acc, bestSource };
}
