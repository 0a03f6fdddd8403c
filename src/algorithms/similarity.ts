/**
 * Item-item similarity kernels for item-kNN: the weighting schemes of benfred/implicit (BM25,
 * TF-IDF) and the sparse, top-K-pruned cosine with shrinkage. Kept apart from itemknn.ts so worker
 * threads can import it without importing the pool (no circular imports).
 *
 * The weighting treats each item as a document whose terms are the users who interacted with it
 * (implicit weights `user_items.T`): a user who touches many items says little about each of them
 * (idf), and a very popular item's weights are damped (BM25 length normalisation).
 */
import type { Csr } from './sparse.ts';
import { TopKHeap } from './topk.ts';

export type KnnWeighting = 'none' | 'bm25' | 'tfidf';

/** ln(N) − ln(1 + df): implicit's idf, where N counts items and df counts a user's items. */
function userIdf(m: Csr): Float64Array {
  const idf = new Float64Array(m.rows);
  const logN = Math.log(m.cols);
  for (let u = 0; u < m.rows; u++) idf[u] = logN - Math.log1p(m.indptr[u + 1] - m.indptr[u]);
  return idf;
}

/**
 * Returns the user × item matrix with re-weighted values (same structure): `binary` first sets
 * every stored weight to 1, then `weighting` applies:
 * - tfidf: `sqrt(x) · idf_u`
 * - bm25: `x · (K1 + 1) / (K1 · lengthNorm_i + x) · idf_u`, with
 *   `lengthNorm_i = (1 − B) + B · rowSum_i / mean(rowSum)` over every item, as implicit's bm25_weight.
 */
export function weightInteractions(
  m: Csr,
  weighting: KnnWeighting,
  binary: boolean,
  K1: number,
  B: number,
): Csr {
  const nz = m.indptr[m.rows];
  const data = new Float32Array(nz);
  for (let p = 0; p < nz; p++) data[p] = binary ? (m.data[p] > 0 ? 1 : 0) : m.data[p];
  if (weighting === 'tfidf') {
    const idf = userIdf(m);
    for (let u = 0; u < m.rows; u++) {
      for (let p = m.indptr[u]; p < m.indptr[u + 1]; p++) data[p] = Math.sqrt(data[p]) * idf[u];
    }
  } else if (weighting === 'bm25') {
    const idf = userIdf(m);
    const itemSum = new Float64Array(m.cols);
    let total = 0;
    for (let p = 0; p < nz; p++) {
      itemSum[m.indices[p]] += data[p];
      total += data[p];
    }
    const mean = m.cols > 0 ? total / m.cols : 0;
    const lengthNorm = new Float64Array(m.cols);
    for (let i = 0; i < m.cols; i++) lengthNorm[i] = 1 - B + (mean > 0 ? (B * itemSum[i]) / mean : 0);
    for (let u = 0; u < m.rows; u++) {
      for (let p = m.indptr[u]; p < m.indptr[u + 1]; p++) {
        const x = data[p];
        data[p] = ((x * (K1 + 1)) / (K1 * lengthNorm[m.indices[p]] + x)) * idf[u];
      }
    }
  }
  return { rows: m.rows, cols: m.cols, indptr: m.indptr, indices: m.indices, data };
}

/** Euclidean norm of every column of `m` (every item vector over users). */
export function columnNorms(m: Csr): Float64Array {
  const sq = new Float64Array(m.cols);
  const nz = m.indptr[m.rows];
  for (let p = 0; p < nz; p++) sq[m.indices[p]] += m.data[p] * m.data[p];
  for (let i = 0; i < m.cols; i++) sq[i] = Math.sqrt(sq[i]);
  return sq;
}

export interface NeighbourRowsArgs {
  /** Weighted user × item matrix. */
  byUser: Csr;
  /** Its transpose (item × user). */
  byItem: Csr;
  norms: Float64Array;
  shrink: number;
  neighbors: number;
  start: number;
  end: number;
}

/** The neighbour lists of items `[start, end)`: per-item counts and concatenated (index, sim). */
export interface NeighbourRows {
  counts: Int32Array;
  indices: Int32Array;
  data: Float32Array;
}

/**
 * For each item i in the range: `sim(i, j) = dot(i, j) / (|i||j| + shrink)` for every co-occurring
 * item j ≠ i, keeping the `neighbors` largest positive ones, each row sorted by item index.
 * One dense accumulator per call and a touched-list, so no allocation per pair.
 */
export function itemNeighbourRows(a: NeighbourRowsArgs): NeighbourRows {
  const { byUser, byItem, norms, shrink, start, end } = a;
  const K = Math.max(0, Math.min(a.neighbors | 0, byUser.cols));
  const acc = new Float64Array(byUser.cols);
  const touched = new Int32Array(byUser.cols);
  const seen = new Uint8Array(byUser.cols);
  const heap = new TopKHeap(Math.max(1, K));
  const rowIdx = new Int32Array(K);
  const rowSim = new Float32Array(K);
  const order: number[] = [];
  const counts = new Int32Array(end - start);
  let outIdx = new Int32Array(Math.max(16, (end - start) * Math.min(K, 32)));
  let outSim = new Float32Array(outIdx.length);
  let filled = 0;
  for (let i = start; i < end; i++) {
    let nt = 0;
    for (let p = byItem.indptr[i]; p < byItem.indptr[i + 1]; p++) {
      const u = byItem.indices[p];
      const wu = byItem.data[p];
      if (wu === 0) continue;
      for (let q = byUser.indptr[u]; q < byUser.indptr[u + 1]; q++) {
        const j = byUser.indices[q];
        if (seen[j] === 0) {
          seen[j] = 1;
          touched[nt++] = j;
        }
        acc[j] += wu * byUser.data[q];
      }
    }
    heap.reset(K);
    const ni = norms[i];
    for (let t = 0; t < nt; t++) {
      const j = touched[t];
      const dotij = acc[j];
      acc[j] = 0;
      seen[j] = 0;
      if (j === i || !(dotij > 0)) continue;
      const denom = ni * norms[j] + shrink;
      if (denom > 0) heap.push(j, dotij / denom);
    }
    const k = heap.drainInto(rowIdx, rowSim, 0);
    order.length = k;
    for (let q = 0; q < k; q++) order[q] = q;
    order.sort((x, y) => rowIdx[x] - rowIdx[y]);
    if (filled + k > outIdx.length) {
      const cap = Math.max(outIdx.length * 2, filled + k);
      const ni2 = new Int32Array(cap);
      ni2.set(outIdx.subarray(0, filled));
      const ns2 = new Float32Array(cap);
      ns2.set(outSim.subarray(0, filled));
      outIdx = ni2;
      outSim = ns2;
    }
    for (let q = 0; q < k; q++) {
      outIdx[filled + q] = rowIdx[order[q]];
      outSim[filled + q] = rowSim[order[q]];
    }
    filled += k;
    counts[i - start] = k;
  }
  return { counts, indices: outIdx.slice(0, filled), data: outSim.slice(0, filled) };
}
