/**
 * Compressed sparse row matrices on flat typed arrays: the one interaction-matrix layout every
 * algorithm consumes. Row `r` spans `indices/data[indptr[r] .. indptr[r+1])`, column indices sorted.
 */
import { runSteps, type Steps } from '../domain/cooperative.ts';
export interface Csr {
  rows: number;
  cols: number;
  indptr: Int32Array;
  indices: Int32Array;
  data: Float32Array;
}

/**
 * Builds a CSR matrix from coordinate triples. Duplicate (row, col) pairs are summed, so several
 * events of one user on one item become one weighted interaction.
 */
export function csrFromCoo(
  rows: number,
  cols: number,
  rowIdx: ArrayLike<number>,
  colIdx: ArrayLike<number>,
  values: ArrayLike<number> | null,
): Csr {
  return runSteps(csrFromCooSteps(rows, cols, rowIdx, colIdx, values));
}

/** csrFromCoo as steps (domain/cooperative.ts): the training extract builds it without holding the loop. */
export function* csrFromCooSteps(
  rows: number,
  cols: number,
  rowIdx: ArrayLike<number>,
  colIdx: ArrayLike<number>,
  values: ArrayLike<number> | null,
): Steps<Csr> {
  const n = rowIdx.length;
  if (colIdx.length !== n || (values && values.length !== n))
    throw new RangeError('coo arrays differ in length');
  const counts = new Int32Array(rows + 1);
  for (let k = 0; k < n; k++) {
    const r = rowIdx[k];
    const c = colIdx[k];
    if (r < 0 || r >= rows || c < 0 || c >= cols) throw new RangeError(`coo entry ${k} out of bounds`);
    counts[r + 1]++;
    if ((k & 0xffff) === 0xffff) yield;
  }
  for (let r = 0; r < rows; r++) counts[r + 1] += counts[r];
  const fill = counts.slice(0, rows);
  const ci = new Int32Array(n);
  const cv = new Float32Array(n);
  for (let k = 0; k < n; k++) {
    const p = fill[rowIdx[k]]++;
    ci[p] = colIdx[k];
    cv[p] = values ? values[k] : 1;
    if ((k & 0xffff) === 0xffff) yield;
  }
  // Sort each row by column and merge duplicates.
  const indptr = new Int32Array(rows + 1);
  let out = 0;
  const order: number[] = [];
  for (let r = 0; r < rows; r++) {
    // Between rows only: the shared scratch arrays below are empty there, so interleaved builds are safe.
    if ((r & 0xff) === 0) yield;
    const s = counts[r];
    const e = counts[r + 1];
    order.length = 0;
    for (let p = s; p < e; p++) order.push(p);
    order.sort((a, b) => ci[a] - ci[b]);
    let last = -1;
    const rowStart = out;
    for (const p of order) {
      if (ci[p] === last) {
        tmpVal[tmpVal.length - 1] += cv[p];
      } else {
        // The merged row is built aside: writing it in place could overwrite entries not yet read.
        tmpIdx.push(ci[p]);
        tmpVal.push(cv[p]);
        out++;
        last = ci[p];
      }
    }
    for (let q = 0; q < out - rowStart; q++) {
      ci[rowStart + q] = tmpIdx[q];
      cv[rowStart + q] = tmpVal[q];
    }
    tmpIdx.length = 0;
    tmpVal.length = 0;
    indptr[r + 1] = out;
  }
  return { rows, cols, indptr, indices: ci.slice(0, out), data: cv.slice(0, out) };
}
const tmpIdx: number[] = [];
const tmpVal: number[] = [];

/** The transpose (CSC of the original, as CSR): item → users. */
export function transpose(m: Csr): Csr {
  const nnz = m.indptr[m.rows];
  const indptr = new Int32Array(m.cols + 1);
  for (let p = 0; p < nnz; p++) indptr[m.indices[p] + 1]++;
  for (let c = 0; c < m.cols; c++) indptr[c + 1] += indptr[c];
  const fill = indptr.slice(0, m.cols);
  const indices = new Int32Array(nnz);
  const data = new Float32Array(nnz);
  for (let r = 0; r < m.rows; r++) {
    for (let p = m.indptr[r]; p < m.indptr[r + 1]; p++) {
      const q = fill[m.indices[p]]++;
      indices[q] = r;
      data[q] = m.data[p];
    }
  }
  return { rows: m.cols, cols: m.rows, indptr, indices, data };
}

export function nnz(m: Csr): number {
  return m.indptr[m.rows];
}

/** One row as views (no copy). */
export function row(m: Csr, r: number): { indices: Int32Array; data: Float32Array } {
  const s = m.indptr[r];
  const e = m.indptr[r + 1];
  return { indices: m.indices.subarray(s, e), data: m.data.subarray(s, e) };
}

/** Copies a CSR into SharedArrayBuffer-backed arrays so worker threads can read it without copying. */
export function toShared(m: Csr): Csr {
  const share = <T extends Int32Array | Float32Array>(a: T, Ctor: new (b: SharedArrayBuffer) => T): T => {
    const s = new Ctor(new SharedArrayBuffer(a.byteLength));
    s.set(a);
    return s;
  };
  return {
    rows: m.rows,
    cols: m.cols,
    indptr: share(m.indptr, Int32Array),
    indices: share(m.indices, Int32Array),
    data: share(m.data, Float32Array),
  };
}
