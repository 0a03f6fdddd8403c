/**
 * Candidate generation for the second stage: several retrievers (ALS, item-kNN, EASE, popular…) each
 * propose a list, best first; the lists are merged into one candidate set that remembers, per
 * candidate, which retrievers proposed it, with what score and at which rank (its provenance, which
 * the ranker reads as features and explanations cite).
 *
 * Merging is round-robin: one item from each retriever in turn, so every retriever gets an equal
 * share of a tight budget instead of the first list filling it. Pure: no I/O.
 */

/** One retriever's list, best first (`items` and `scores` aligned). */
export interface RetrievedList {
  retriever: string;
  items: Int32Array | readonly string[];
  scores: Float32Array | readonly number[];
}

/** One merged candidate: per retriever that proposed it, its score and 1-based rank in that list. */
export interface Candidate<T> {
  item: T;
  signals: Map<string, { score: number; rank: number }>;
}

/**
 * Merges retrievers' lists (best first) into at most `limit` candidates by round-robin over the
 * retrievers (in the order given). Each candidate carries every retriever's score and 1-based rank
 * for it, also from lists read after the candidate was taken (a retriever that ranks an item lower
 * than another retriever still reports its rank). Items `exclude` rejects (already seen, unavailable)
 * are skipped without using a rank: ranks are positions in the retriever's own list. Duplicates
 * within one list keep their first position.
 */
export function mergeCandidates<T>(
  lists: readonly { retriever: string; items: ArrayLike<T>; scores: ArrayLike<number> }[],
  limit: number,
  exclude?: (item: T) => boolean,
): Candidate<T>[] {
  const byItem = new Map<T, Candidate<T>>();
  const out: Candidate<T>[] = [];
  const cursor = new Int32Array(lists.length);
  const max = Math.max(0, Math.floor(limit));
  const rejected = new Set<T>();
  const skip = (item: T): boolean => {
    if (!exclude) return false;
    if (rejected.has(item)) return true;
    if (exclude(item)) {
      rejected.add(item);
      return true;
    }
    return false;
  };
  // Round-robin: each pass takes the next admissible, not yet taken item of each list.
  let progressed = true;
  while (out.length < max && progressed) {
    progressed = false;
    for (let l = 0; l < lists.length && out.length < max; l++) {
      const { items } = lists[l];
      while (cursor[l] < items.length) {
        const item = items[cursor[l]++];
        if (byItem.has(item) || skip(item)) continue;
        const c: Candidate<T> = { item, signals: new Map() };
        byItem.set(item, c);
        out.push(c);
        progressed = true;
        break;
      }
    }
  }
  // Provenance from every list, including positions after the round-robin stopped reading.
  for (const { retriever, items, scores } of lists) {
    for (let p = 0; p < items.length; p++) {
      const c = byItem.get(items[p]);
      if (c !== undefined && !c.signals.has(retriever))
        c.signals.set(retriever, { score: scores[p], rank: p + 1 });
    }
  }
  return out;
}
