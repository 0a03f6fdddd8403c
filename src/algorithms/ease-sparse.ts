/**
 * Sparse EASE: EASE restricted to each item's `neighbors` strongest co-occurring items, for
 * catalogues where the dense n × n inverse does not fit (ease.ts keeps 8·n² bytes of it in Float64).
 *
 * Column j of EASE's B is the ridge regression of item j's column of X on every other column,
 *   B_{·j} = argmin_b |x_j − X b|² + λ|b|²  subject to b_j = 0,
 * which is exactly what B = I − P·diag(1/diag P) with P = (XᵀX + λI)⁻¹ computes for all j at once.
 * Here column j may use only the items N(j) (the `neighbors` items with the largest cosine
 * G_jk / √(G_jj G_kk) over the Gram matrix G = XᵀX), so it is solved on its own:
 *   B_{N(j), j} = (G_NN + λI)⁻¹ G_{N j}
 * — a |N|×|N| Cholesky per item instead of one n×n inverse. This is the "sparse approximation" of
 * Steck's "Markov Random Fields for Collaborative Filtering" (NeurIPS 2019) and the support-restricted
 * SLIM of Ning & Karypis without the L1 term: with N(j) = every other item it is dense EASE again
 * (the tests check that). What it drops are the weights dense EASE puts on items that never
 * co-occur with j or co-occur weakly; those are small, which is why quality stays close
 * (docs/benchmarks.md has the figures).
 *
 * Memory: X, its transpose, G in CSR (8 bytes per non-zero of XᵀX) and the model (8 bytes per kept
 * weight, ≤ n·neighbors). G is the only part that can grow quadratically; when its non-zeros would
 * exceed GRAM_BUDGET each row keeps only its strongest entries (by the same cosine), entries missing
 * from both rows count as 0, and an item whose system then loses positive definiteness is solved
 * again with a larger ridge (reported as `reregularised`).
 */
import { TopKHeap } from './topk.ts';
import { transpose, type Csr } from './sparse.ts';

/** Most non-zeros of XᵀX stored (8 bytes each: 2 GiB). */
export const GRAM_BUDGET = 1 << 28;

/** A pruned system that is still indefinite after this many ridge increases leaves its column empty. */
const MAX_RIDGE_ATTEMPTS = 12;

export interface SparseEaseOptions {
  lambda: number;
  binary: boolean;
  /** Items each column of B may use (the support size m of every regression). */
  neighbors: number;
  /** Non-zeros of G to keep at most; defaults to GRAM_BUDGET (tests lower it to exercise pruning). */
  gramBudget?: number;
  /** Called every few hundred items; may throw to abort. */
  onProgress?: (fraction: number, stage: string) => void;
  /** Lets the caller's event loop breathe (progress bars, abort signals); awaited now and then. */
  yieldEvery?: () => Promise<void>;
}

export interface SparseEaseResult {
  /** Row h = weights of history item h on every target item (row-major B, only kept entries). */
  graph: Csr;
  /** Items with at least one positive interaction. */
  activeItems: number;
  gramNonZeros: number;
  /** True when G was pruned to fit GRAM_BUDGET (an approximation on top of the support restriction). */
  gramPruned: boolean;
  /** Items whose pruned system needed a larger ridge to stay positive definite. */
  reregularised: number;
}

/** X with stored zeros and negative weights dropped and, when `binary`, every weight set to 1. */
function positivePart(m: Csr, binary: boolean): Csr {
  let nz = 0;
  for (let p = 0; p < m.indptr[m.rows]; p++) if (m.data[p] > 0) nz++;
  const indptr = new Int32Array(m.rows + 1);
  const indices = new Int32Array(nz);
  const data = new Float32Array(nz);
  for (let u = 0, e = 0; u < m.rows; u++) {
    for (let p = m.indptr[u]; p < m.indptr[u + 1]; p++) {
      if (!(m.data[p] > 0)) continue;
      indices[e] = m.indices[p];
      data[e++] = binary ? 1 : m.data[p];
    }
    indptr[u + 1] = e;
  }
  return { rows: m.rows, cols: m.cols, indptr, indices, data };
}

/**
 * The Gram matrix G = XᵀX as CSR with sorted rows (diagonal included). `byItem` is Xᵀ. When the
 * full G has more than `budget` non-zeros, every row keeps its diagonal and its `⌊budget / items⌋ − 1`
 * entries of largest cosine. Returns the matrix and whether it was pruned.
 */
export function gramMatrix(byUser: Csr, byItem: Csr, budget: number): { gram: Csr; pruned: boolean } {
  const n = byUser.cols;
  const acc = new Float64Array(n);
  const touched = new Int32Array(n);
  const mark = new Int32Array(n).fill(-1);
  // Pass 1: distinct co-occurring items per row (Σ_u |row u|² work, no values).
  const count = new Int32Array(n);
  let total = 0;
  let active = 0;
  for (let i = 0; i < n; i++) {
    let c = 0;
    for (let p = byItem.indptr[i]; p < byItem.indptr[i + 1]; p++) {
      const u = byItem.indices[p];
      for (let q = byUser.indptr[u]; q < byUser.indptr[u + 1]; q++) {
        const j = byUser.indices[q];
        if (mark[j] !== i) {
          mark[j] = i;
          c++;
        }
      }
    }
    count[i] = c;
    total += c;
    if (c > 0) active++;
  }
  const pruned = total > budget;
  const perRow = pruned ? Math.max(2, Math.floor(budget / Math.max(1, active))) : 0;
  const diag = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let p = byItem.indptr[i]; p < byItem.indptr[i + 1]; p++) s += byItem.data[p] * byItem.data[p];
    diag[i] = s;
  }
  const indptr = new Int32Array(n + 1);
  for (let i = 0; i < n; i++) indptr[i + 1] = indptr[i] + (pruned ? Math.min(count[i], perRow) : count[i]);
  const indices = new Int32Array(indptr[n]);
  const data = new Float32Array(indptr[n]);
  const heap = pruned ? new TopKHeap(perRow) : null;
  const keepIdx = new Int32Array(perRow);
  const keepVal = new Float32Array(perRow);
  // Pass 2: values.
  for (let i = 0; i < n; i++) {
    let nt = 0;
    for (let p = byItem.indptr[i]; p < byItem.indptr[i + 1]; p++) {
      const u = byItem.indices[p];
      const wu = byItem.data[p];
      for (let q = byUser.indptr[u]; q < byUser.indptr[u + 1]; q++) {
        const j = byUser.indices[q];
        // Weights are positive, so a zero accumulator means "not touched yet in this row".
        if (acc[j] === 0) touched[nt++] = j;
        acc[j] += wu * byUser.data[q];
      }
    }
    const base = indptr[i];
    if (heap === null || nt <= perRow) {
      const row = touched.subarray(0, nt).sort();
      for (let t = 0; t < nt; t++) {
        indices[base + t] = row[t];
        data[base + t] = acc[row[t]];
        acc[row[t]] = 0;
      }
    } else {
      // The diagonal always stays (it carries the ridge system's scale); then the strongest cosines.
      heap.reset(perRow - 1);
      for (let t = 0; t < nt; t++) {
        const j = touched[t];
        if (j !== i) heap.push(j, acc[j] / Math.sqrt(diag[i] * diag[j]));
      }
      const k = heap.drainInto(keepIdx, keepVal, 0);
      keepIdx[k] = i;
      const row = keepIdx.subarray(0, k + 1).sort();
      for (let t = 0; t <= k; t++) {
        indices[base + t] = row[t];
        data[base + t] = acc[row[t]];
      }
      for (let t = 0; t < nt; t++) acc[touched[t]] = 0;
    }
  }
  return { gram: { rows: n, cols: n, indptr, indices, data }, pruned };
}

/** First position in `indices[lo, hi)` holding a value ≥ t (exponential then binary search from lo). */
function seek(indices: Int32Array, lo: number, hi: number, t: number): number {
  let step = 1;
  let prev = lo;
  let p = lo;
  while (p < hi && indices[p] < t) {
    prev = p + 1;
    p += step;
    step *= 2;
  }
  let r = Math.min(p, hi);
  let l = prev;
  while (l < r) {
    const mid = (l + r) >> 1;
    if (indices[mid] < t) l = mid + 1;
    else r = mid;
  }
  return l;
}

function lookup(g: Csr, a: number, b: number): number {
  const e = g.indptr[a + 1];
  const p = seek(g.indices, g.indptr[a], e, b);
  return p < e && g.indices[p] === b ? g.data[p] : 0;
}

/**
 * In-place Cholesky factorisation of the symmetric positive definite `n × n` matrix in the lower
 * triangle of row-major `A` (L overwrites it). Returns false when a pivot is not positive.
 */
export function choleskyInPlace(A: Float64Array, n: number): boolean {
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    for (let j = 0; j <= i; j++) {
      const rj = j * n;
      let s = A[ri + j];
      for (let k = 0; k < j; k++) s -= A[ri + k] * A[rj + k];
      if (i === j) {
        if (!(s > 0)) return false;
        A[ri + i] = Math.sqrt(s);
      } else A[ri + j] = s / A[rj + j];
    }
  }
  return true;
}

/** Solves L Lᵀ x = b for the factor of `choleskyInPlace`; `b` is overwritten with x. */
export function choleskySolve(L: Float64Array, n: number, b: Float64Array): void {
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    let s = b[i];
    for (let k = 0; k < i; k++) s -= L[ri + k] * b[k];
    b[i] = s / L[ri + i];
  }
  for (let i = n - 1; i >= 0; i--) {
    let s = b[i];
    for (let k = i + 1; k < n; k++) s -= L[k * n + i] * b[k];
    b[i] = s / L[i * n + i];
  }
}

export interface SparseColumnsArgs {
  /** G = XᵀX with sorted rows (shared memory when run in a worker). */
  gram: Csr;
  /** G's diagonal. */
  diag: Float64Array;
  /** Whether G was pruned (entries missing from row a are then looked up in row b too). */
  pruned: boolean;
  lambda: number;
  neighbors: number;
  /** Target items [start, end). */
  start: number;
  end: number;
}

/** Columns start..end−1 of B: per-column counts and the concatenated (source item, weight) pairs. */
export interface SparseColumns {
  counts: Int32Array;
  sources: Int32Array;
  weights: Float32Array;
  reregularised: number;
}

/**
 * Solves the regressions of target items [start, end) (see the file comment). A pure function of
 * its arguments with buffers sized once per call, so ranges can run in worker threads.
 */
export function sparseEaseColumns(args: SparseColumnsArgs): SparseColumns {
  const { gram: G, diag, pruned, lambda, start, end } = args;
  const m = Math.max(1, args.neighbors | 0);
  let cap = 0;
  for (let j = start; j < end; j++) {
    const len = G.indptr[j + 1] - G.indptr[j];
    if (len > 1) cap += Math.min(m, len - 1);
  }
  const counts = new Int32Array(end - start);
  const sources = new Int32Array(cap);
  const weights = new Float32Array(cap);
  const heap = new TopKHeap(m);
  const nb = new Int32Array(m);
  const nbScore = new Float32Array(m);
  const A = new Float64Array(m * m);
  const rhs = new Float64Array(m);
  let reregularised = 0;
  let filled = 0;
  for (let j = start; j < end; j++) {
    const s0 = G.indptr[j];
    const s1 = G.indptr[j + 1];
    heap.reset(m);
    for (let p = s0; p < s1; p++) {
      const k = G.indices[p];
      if (k === j || !(G.data[p] > 0)) continue;
      heap.push(k, G.data[p] / Math.sqrt(diag[j] * diag[k]));
    }
    const cnt = heap.drainInto(nb, nbScore, 0);
    const before = filled;
    if (cnt > 0) {
      const N = nb.subarray(0, cnt).sort();
      // rhs = G_{N j} (row j holds every entry when G is not pruned; else try row k too).
      for (let a = 0, p = s0; a < cnt; a++) {
        p = seek(G.indices, p, s1, N[a]);
        rhs[a] = p < s1 && G.indices[p] === N[a] ? G.data[p] : pruned ? lookup(G, N[a], j) : 0;
      }
      let ridge = lambda;
      let solved = false;
      for (let attempt = 0; attempt < MAX_RIDGE_ATTEMPTS && !solved; attempt++) {
        // Lower triangle of G_NN + ridge·I, row a by a galloping walk along row N[a] of G.
        for (let a = 0; a < cnt; a++) {
          const ia = N[a];
          const e = G.indptr[ia + 1];
          const ra = a * cnt;
          for (let b = 0, p = G.indptr[ia]; b <= a; b++) {
            p = seek(G.indices, p, e, N[b]);
            let v = p < e && G.indices[p] === N[b] ? G.data[p] : 0;
            if (v === 0 && pruned) v = lookup(G, N[b], ia);
            A[ra + b] = v;
          }
          A[ra + a] += ridge;
        }
        solved = choleskyInPlace(A, cnt);
        if (solved) break;
        // Only a pruned G can get here (G_NN + λI is positive definite otherwise).
        if (attempt === 0) reregularised++;
        ridge = ridge * 4 + diag[j];
      }
      if (solved) {
        const w = rhs.subarray(0, cnt);
        choleskySolve(A, cnt, w);
        for (let a = 0; a < cnt; a++) {
          sources[filled] = N[a];
          weights[filled++] = w[a];
        }
      }
    }
    counts[j - start] = filled - before;
  }
  return { counts, sources: sources.slice(0, filled), weights: weights.slice(0, filled), reregularised };
}

/** Runs column ranges somewhere (a worker pool); results in the order of `args`. */
export type ColumnsRunner = (args: SparseColumnsArgs[]) => Promise<SparseColumns[]>;

/** Items per in-thread chunk: where progress is reported and an abort can land. */
const CHUNK = 512;

/**
 * Fits sparse EASE on the user × item matrix `train` (see the file comment). Deterministic: the
 * result does not depend on how the column ranges are run. The work is Σ_u |row u|² for G plus about
 * m³/6 multiply-adds per item, in this thread unless `runColumns` runs ranges elsewhere (then G is
 * expected in shared memory: pass `share` to copy it there).
 */
export async function fitSparseEase(
  train: Csr,
  o: SparseEaseOptions & { runColumns?: ColumnsRunner; parts?: number; share?: (g: Csr) => Csr },
): Promise<SparseEaseResult> {
  const n = train.cols;
  const m = Math.max(1, Math.min(o.neighbors | 0, Math.max(1, n - 1)));
  const progress = o.onProgress ?? ((): void => undefined);
  const X = positivePart(train, o.binary);
  const Xt = transpose(X);
  progress(0, `ease (sparse): Gram matrix of ${n} items`);
  const built = gramMatrix(X, Xt, o.gramBudget ?? GRAM_BUDGET);
  const pruned = built.pruned;
  const G = o.runColumns !== undefined && o.share !== undefined ? o.share(built.gram) : built.gram;
  const gnz = G.indptr[n];
  let active = 0;
  const diag = new Float64Array(
    o.runColumns !== undefined ? new SharedArrayBuffer(8 * n) : new ArrayBuffer(8 * n),
  );
  for (let j = 0; j < n; j++) {
    if (G.indptr[j + 1] === G.indptr[j]) continue;
    active++;
    diag[j] = lookup(G, j, j);
  }
  progress(0.1, `ease (sparse): ${active} items, ${gnz} Gram non-zeros${pruned ? ' (pruned)' : ''}`);
  const base = { gram: G, diag, pruned, lambda: o.lambda, neighbors: m };
  // Ranges of about equal work: an item costs about min(m, |row of G|)³.
  const parts = o.runColumns !== undefined ? Math.max(1, o.parts ?? 8) : Math.max(1, Math.ceil(n / CHUNK));
  const cost = new Float64Array(n + 1);
  for (let j = 0; j < n; j++) {
    const k = Math.min(m, G.indptr[j + 1] - G.indptr[j]);
    cost[j + 1] = cost[j] + 1 + k * k * k;
  }
  const ranges: SparseColumnsArgs[] = [];
  for (let t = 1, s = 0; t <= parts && s < n; t++) {
    let e = s;
    const target = (cost[n] * t) / parts;
    while (e < n && cost[e] < target) e++;
    if (t === parts) e = n;
    if (e > s) ranges.push({ ...base, start: s, end: e });
    s = e;
  }
  let results: SparseColumns[];
  if (o.runColumns !== undefined) results = await o.runColumns(ranges);
  else {
    results = [];
    for (const r of ranges) {
      await o.yieldEvery?.();
      results.push(sparseEaseColumns(r));
      progress(0.1 + (0.85 * cost[r.end]) / cost[n], 'ease (sparse): regressions');
    }
  }
  progress(0.95, 'ease (sparse): assemble');
  let total = 0;
  let reregularised = 0;
  for (const r of results) {
    total += r.sources.length;
    reregularised += r.reregularised;
  }
  const colPtr = new Int32Array(n + 1);
  const colSrc = new Int32Array(total);
  const colW = new Float32Array(total);
  for (let q = 0, off = 0; q < ranges.length; q++) {
    const { start } = ranges[q];
    const r = results[q];
    for (let t = 0; t < r.counts.length; t++) colPtr[start + t + 1] = r.counts[t];
    colSrc.set(r.sources, off);
    colW.set(r.weights, off);
    off += r.sources.length;
  }
  for (let j = 0; j < n; j++) colPtr[j + 1] += colPtr[j];
  // Columns (target j → sources) to rows (source h → targets), the scoring orientation.
  const graph = transpose({ rows: n, cols: n, indptr: colPtr, indices: colSrc, data: colW });
  progress(1, 'ease (sparse): done');
  return { graph, activeItems: active, gramNonZeros: gnz, gramPruned: pruned, reregularised };
}
