/**
 * Top-k selection over score vectors: a bounded min-heap (O(n log k), no allocation per element).
 * Order is best-first: higher score first, ties broken by the lower index, so results are
 * deterministic. NaN and -Infinity scores are never selected: callers mark filtered items with
 * -Infinity and get fewer than k results when fewer candidates remain.
 */

/** Items to skip: a predicate, or a mask where a non-zero byte at `i` excludes item `i`. */
export type Exclude = ((i: number) => boolean) | Uint8Array;

export interface TopKResult {
  indices: Int32Array;
  scores: Float32Array;
}

/**
 * A reusable bounded heap. The root is the worst kept entry, so a candidate only costs one
 * comparison against the root when it cannot enter.
 */
export class TopKHeap {
  private idx: Int32Array;
  private val: Float64Array;
  private size = 0;
  private k = 0;

  constructor(capacity: number) {
    this.idx = new Int32Array(Math.max(1, capacity));
    this.val = new Float64Array(Math.max(1, capacity));
  }

  /** Empties the heap and sets how many entries to keep (grows the buffers if needed). */
  reset(k: number): void {
    if (k > this.idx.length) {
      this.idx = new Int32Array(k);
      this.val = new Float64Array(k);
    }
    this.k = Math.max(0, k | 0);
    this.size = 0;
  }

  get length(): number {
    return this.size;
  }

  /** The score an entry must beat to enter (−Infinity while the heap is not full). */
  threshold(): number {
    return this.size < this.k ? -Infinity : this.val[0];
  }

  /** Offers one candidate; any order of indices is fine (ties resolve by index). */
  push(i: number, s: number): void {
    if (!(s > -Infinity) || this.k === 0) return; // rejects NaN and -Infinity
    if (this.size < this.k) {
      this.siftUp(this.size++, i, s);
      return;
    }
    const rv = this.val[0];
    if (s < rv || (s === rv && i > this.idx[0])) return;
    this.siftDown(i, s);
  }

  /**
   * Writes the kept entries best-first into `outIdx/outScores` starting at `offset`, empties the
   * heap and returns how many were written.
   */
  drainInto(outIdx: Int32Array, outScores: Float32Array, offset = 0): number {
    const n = this.size;
    // Repeatedly removing the root yields worst-first, so fill from the back.
    for (let pos = n - 1; pos >= 0; pos--) {
      outIdx[offset + pos] = this.idx[0];
      outScores[offset + pos] = this.val[0];
      const last = --this.size;
      if (last > 0) this.siftDown(this.idx[last], this.val[last]);
    }
    return n;
  }

  /** True when entry (ia, sa) ranks below (ib, sb). */
  private static worse(sa: number, ia: number, sb: number, ib: number): boolean {
    return sa < sb || (sa === sb && ia > ib);
  }

  private siftUp(pos: number, i: number, s: number): void {
    const idx = this.idx;
    const val = this.val;
    while (pos > 0) {
      const parent = (pos - 1) >> 1;
      if (!TopKHeap.worse(s, i, val[parent], idx[parent])) break;
      idx[pos] = idx[parent];
      val[pos] = val[parent];
      pos = parent;
    }
    idx[pos] = i;
    val[pos] = s;
  }

  /** Replaces the root with (i, s) and restores the heap order. */
  private siftDown(i: number, s: number): void {
    const idx = this.idx;
    const val = this.val;
    const n = this.size;
    let pos = 0;
    for (;;) {
      let child = 2 * pos + 1;
      if (child >= n) break;
      const right = child + 1;
      if (right < n && TopKHeap.worse(val[right], idx[right], val[child], idx[child])) child = right;
      if (!TopKHeap.worse(val[child], idx[child], s, i)) break;
      idx[pos] = idx[child];
      val[pos] = val[child];
      pos = child;
    }
    idx[pos] = i;
    val[pos] = s;
  }
}

/** Scans `scores[from..to)` into `heap` (indices reported relative to `from`). */
function scan(
  heap: TopKHeap,
  scores: Float32Array,
  from: number,
  to: number,
  exclude: Exclude | undefined,
): void {
  if (exclude === undefined) {
    for (let p = from; p < to; p++) {
      const s = scores[p];
      // Cheap reject first: with increasing indices an equal score never displaces the root.
      if (s > heap.threshold()) heap.push(p - from, s);
    }
  } else if (exclude instanceof Uint8Array) {
    for (let p = from; p < to; p++) {
      const s = scores[p];
      if (s > heap.threshold() && exclude[p - from] === 0) heap.push(p - from, s);
    }
  } else {
    for (let p = from; p < to; p++) {
      const s = scores[p];
      if (s > heap.threshold() && !exclude(p - from)) heap.push(p - from, s);
    }
  }
}

const shared = new TopKHeap(64);

/**
 * The `k` best entries of `scores`, best-first (ties: lower index first). Excluded indices,
 * NaN and -Infinity are skipped, so the result may hold fewer than `k` entries.
 */
export function topK(scores: Float32Array, k: number, exclude?: Exclude): TopKResult {
  const kk = Math.max(0, Math.min(k | 0, scores.length));
  shared.reset(kk);
  scan(shared, scores, 0, scores.length, exclude);
  const indices = new Int32Array(shared.length);
  const out = new Float32Array(shared.length);
  shared.drainInto(indices, out, 0);
  return { indices, scores: out };
}

export interface TopKBatchResult {
  /** Row-major `rows × k`; unused slots hold -1. */
  indices: Int32Array;
  /** Row-major `rows × k`; unused slots hold NaN. */
  scores: Float32Array;
  /** Entries found per row (≤ k). */
  counts: Int32Array;
}

/**
 * Top-k for each row of a row-major `rows × n` score matrix (e.g. a block of users scored at once).
 * `exclude(row, i)` skips entries; a mask must be `rows × n`.
 */
export function topKBatch(
  scores: Float32Array,
  n: number,
  k: number,
  exclude?: ((row: number, i: number) => boolean) | Uint8Array,
): TopKBatchResult {
  if (n <= 0 || scores.length % n !== 0)
    throw new RangeError('topKBatch: scores length must be a multiple of n');
  const rows = scores.length / n;
  const kk = Math.max(0, Math.min(k | 0, n));
  const indices = new Int32Array(rows * kk).fill(-1);
  const out = new Float32Array(rows * kk).fill(NaN);
  const counts = new Int32Array(rows);
  const heap = new TopKHeap(kk);
  for (let r = 0; r < rows; r++) {
    heap.reset(kk);
    let ex: Exclude | undefined;
    if (exclude instanceof Uint8Array) ex = exclude.subarray(r * n, (r + 1) * n);
    else if (exclude) ex = (i: number) => exclude(r, i);
    scan(heap, scores, r * n, (r + 1) * n, ex);
    counts[r] = heap.drainInto(indices, out, r * kk);
  }
  return { indices, scores: out, counts };
}
