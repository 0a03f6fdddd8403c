/**
 * Dense numeric kernels on flat typed arrays (row-major: row `r` of a `rows × k` matrix starts at
 * `r * k`), plus the per-row solvers of implicit ALS and the SGD epoch of BPR, written so worker
 * threads can run them on shared memory.
 *
 * Conventions: factor matrices are Float32Array (half the memory and bandwidth); every reduction
 * (dot products, Gramians, Cholesky) runs in doubles, which is what JS arithmetic does anyway.
 * Hot loops allocate nothing; per-thread scratch lives in module state (each worker thread has its
 * own module instance, and the kernels are synchronous, so it is never shared).
 */
import { Rng } from './random.ts';

export type Vec = Float32Array | Float64Array;

/** a[aOff..aOff+k) · b[bOff..bOff+k). */
export function dot(a: Vec, aOff: number, b: Vec, bOff: number, k: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let f = 0;
  for (; f + 3 < k; f += 4) {
    s0 += a[aOff + f] * b[bOff + f];
    s1 += a[aOff + f + 1] * b[bOff + f + 1];
    s2 += a[aOff + f + 2] * b[bOff + f + 2];
    s3 += a[aOff + f + 3] * b[bOff + f + 3];
  }
  for (; f < k; f++) s0 += a[aOff + f] * b[bOff + f];
  return s0 + s1 + (s2 + s3);
}

/** y[yOff..) += alpha · x[xOff..). */
export function axpy(alpha: number, x: Vec, xOff: number, y: Vec, yOff: number, k: number): void {
  let f = 0;
  for (; f + 3 < k; f += 4) {
    y[yOff + f] += alpha * x[xOff + f];
    y[yOff + f + 1] += alpha * x[xOff + f + 1];
    y[yOff + f + 2] += alpha * x[xOff + f + 2];
    y[yOff + f + 3] += alpha * x[xOff + f + 3];
  }
  for (; f < k; f++) y[yOff + f] += alpha * x[xOff + f];
}

/** y[yOff..) = x[xOff..) + beta · y[yOff..)  (the CG direction update p ← r + βp). */
export function scaleAdd(y: Vec, yOff: number, beta: number, x: Vec, xOff: number, k: number): void {
  for (let f = 0; f < k; f++) y[yOff + f] = x[xOff + f] + beta * y[yOff + f];
}

/**
 * Accumulates the Gramian YᵀY of rows [rowStart, rowEnd) of `Y` (rows × k) into `out` (k × k,
 * Float64, at `outOff`). The upper triangle accumulates; the lower triangle is then mirrored from
 * it, so `out` must start symmetric (e.g. zero). Four rows are folded per pass over the output
 * to cut its load/store traffic by four.
 */
export function gramian(
  Y: Float32Array,
  k: number,
  rowStart: number,
  rowEnd: number,
  out: Float64Array,
  outOff = 0,
): void {
  let r = rowStart;
  for (; r + 3 < rowEnd; r += 4) {
    const o0 = r * k;
    const o1 = o0 + k;
    const o2 = o1 + k;
    const o3 = o2 + k;
    for (let a = 0; a < k; a++) {
      const y0 = Y[o0 + a];
      const y1 = Y[o1 + a];
      const y2 = Y[o2 + a];
      const y3 = Y[o3 + a];
      const row = outOff + a * k;
      for (let b = a; b < k; b++) {
        out[row + b] += y0 * Y[o0 + b] + y1 * Y[o1 + b] + y2 * Y[o2 + b] + y3 * Y[o3 + b];
      }
    }
  }
  for (; r < rowEnd; r++) {
    const o = r * k;
    for (let a = 0; a < k; a++) {
      const ya = Y[o + a];
      const row = outOff + a * k;
      for (let b = a; b < k; b++) out[row + b] += ya * Y[o + b];
    }
  }
  mirrorUpper(out, outOff, k);
}

/** Copies the upper triangle of a k × k matrix onto its lower triangle. */
export function mirrorUpper(m: Float64Array, off: number, k: number): void {
  for (let a = 0; a < k; a++) for (let b = a + 1; b < k; b++) m[off + b * k + a] = m[off + a * k + b];
}

/**
 * out[r] = M[r] · x for rows [rowStart, rowEnd) of M (rows × k): the scores of every item for one
 * user vector. `out` is indexed by row.
 */
export function matVec(
  M: Float32Array,
  k: number,
  x: Vec,
  out: Float32Array,
  rowStart = 0,
  rowEnd = out.length,
): void {
  if (x instanceof Float64Array) {
    matVecF64(M, k, x, out, rowStart, rowEnd);
    return;
  }
  for (let r = rowStart; r < rowEnd; r++) out[r] = dot(M, r * k, x, 0, k);
}

/** Monomorphic path for the common case (double user vector), unrolled by 8. */
function matVecF64(
  M: Float32Array,
  k: number,
  x: Float64Array,
  out: Float32Array,
  rowStart: number,
  rowEnd: number,
): void {
  for (let r = rowStart; r < rowEnd; r++) out[r] = dotRowF64(M, r * k, x, k);
}

/** M[o .. o+k) · x, unrolled by 8 (the one arithmetic of matVecF64 and matVecRows: equal bit for bit). */
function dotRowF64(M: Float32Array, o: number, x: Float64Array, k: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let f = 0;
  for (; f + 7 < k; f += 8) {
    s0 += M[o + f] * x[f] + M[o + f + 4] * x[f + 4];
    s1 += M[o + f + 1] * x[f + 1] + M[o + f + 5] * x[f + 5];
    s2 += M[o + f + 2] * x[f + 2] + M[o + f + 6] * x[f + 6];
    s3 += M[o + f + 3] * x[f + 3] + M[o + f + 7] * x[f + 7];
  }
  for (; f < k; f++) s0 += M[o + f] * x[f];
  return s0 + s1 + (s2 + s3);
}

/**
 * out[r] = M[r]·x1 and out[n + r] = M[r]·x2 for r < n, x1 and x2 the two halves of `x` (k each): each row
 * of M is widened to double once for both, and each sum is `matVec`'s (dotRowF64 above: four
 * accumulators by f mod 4, pairs f and f + 4, combined as s0 + s1 + (s2 + s3)), so the same bits.
 */
export function matVecPairF64(
  M: Float32Array,
  k: number,
  x: Float64Array,
  out: Float32Array,
  n: number,
): void {
  for (let r = 0; r < n; r++) {
    const o = r * k;
    let a0 = 0;
    let a1 = 0;
    let a2 = 0;
    let a3 = 0;
    let b0 = 0;
    let b1 = 0;
    let b2 = 0;
    let b3 = 0;
    let f = 0;
    for (; f + 7 < k; f += 8) {
      const m0 = M[o + f];
      const m1 = M[o + f + 1];
      const m2 = M[o + f + 2];
      const m3 = M[o + f + 3];
      const m4 = M[o + f + 4];
      const m5 = M[o + f + 5];
      const m6 = M[o + f + 6];
      const m7 = M[o + f + 7];
      a0 += m0 * x[f] + m4 * x[f + 4];
      a1 += m1 * x[f + 1] + m5 * x[f + 5];
      a2 += m2 * x[f + 2] + m6 * x[f + 6];
      a3 += m3 * x[f + 3] + m7 * x[f + 7];
      b0 += m0 * x[k + f] + m4 * x[k + f + 4];
      b1 += m1 * x[k + f + 1] + m5 * x[k + f + 5];
      b2 += m2 * x[k + f + 2] + m6 * x[k + f + 6];
      b3 += m3 * x[k + f + 3] + m7 * x[k + f + 7];
    }
    for (; f < k; f++) {
      a0 += M[o + f] * x[f];
      b0 += M[o + f] * x[k + f];
    }
    out[r] = a0 + a1 + (a2 + a3);
    out[n + r] = b0 + b1 + (b2 + b3);
  }
}

/**
 * out[j] = M[rows[j]] · x for the listed rows only (scoring a candidate subset), with exactly the
 * arithmetic of `matVec`, so a subset's scores equal the full vector's bit for bit. A row outside M
 * gets −Infinity.
 */
export function matVecRows(M: Float32Array, k: number, x: Vec, rows: Int32Array, out: Float32Array): void {
  const nRows = Math.floor(M.length / k);
  for (let j = 0; j < rows.length; j++) {
    const r = rows[j];
    if (!(r >= 0 && r < nRows)) out[j] = -Infinity;
    else out[j] = x instanceof Float64Array ? dotRowF64(M, r * k, x, k) : dot(M, r * k, x, 0, k);
  }
}

/**
 * In-place Cholesky factorisation A = L Lᵀ of a symmetric positive-definite k × k matrix (only the
 * lower triangle of A is read; L overwrites it). Returns false if A is not positive definite.
 */
export function cholesky(A: Float64Array, k: number): boolean {
  for (let j = 0; j < k; j++) {
    const rj = j * k;
    let s = A[rj + j];
    for (let p = 0; p < j; p++) s -= A[rj + p] * A[rj + p];
    if (!(s > 0)) return false;
    const d = Math.sqrt(s);
    A[rj + j] = d;
    const inv = 1 / d;
    for (let i = j + 1; i < k; i++) {
      const ri = i * k;
      let t = A[ri + j];
      for (let p = 0; p < j; p++) t -= A[ri + p] * A[rj + p];
      A[ri + j] = t * inv;
    }
  }
  return true;
}

/** Solves L Lᵀ x = b in place (b becomes x) given the factor from `cholesky`. */
export function choleskySolve(L: Float64Array, k: number, b: Float64Array): void {
  for (let i = 0; i < k; i++) {
    const ri = i * k;
    let s = b[i];
    for (let p = 0; p < i; p++) s -= L[ri + p] * b[p];
    b[i] = s / L[ri + i];
  }
  for (let i = k - 1; i >= 0; i--) {
    let s = b[i];
    for (let p = i + 1; p < k; p++) s -= L[p * k + i] * b[p];
    b[i] = s / L[i * k + i];
  }
}

// ---------------------------------------------------------------------------------------------
// Implicit ALS (Hu, Koren & Volinsky 2008). For one row u with items i, weights w_ui:
//   confidence c = 1 + alpha·|w|, preference p = (w > 0 ? 1 : 0)
//   (YᵀY + λI + Σ_i (c−1) y_i y_iᵀ) x_u = Σ_i c·p·y_i
// YᵀY + λI is shared by every row, so the per-row cost only touches the row's own items.
// ---------------------------------------------------------------------------------------------

/** Everything a row solver needs; all arrays may be SharedArrayBuffer-backed. */
export interface AlsRowsArgs {
  /** CSR of the side being solved: rows are users (or items for the item step). */
  indptr: Int32Array;
  indices: Int32Array;
  data: Float32Array;
  /** Factors being updated (rows × k), written in place. */
  X: Float32Array;
  /** Fixed factors of the other side (cols × k). */
  Y: Float32Array;
  /** YᵀY, plus λI when every row shares one λ (k × k, symmetric). */
  gram: Float64Array;
  /**
   * Per-row regularisation added to `gram`'s diagonal for row u (frequency-scaled λ_u); absent, the
   * rows share the λ already in `gram`.
   */
  rowReg?: Float32Array;
  k: number;
  alpha: number;
  /** CG steps per row (implicit's default is 3); ignored by the Cholesky solver. */
  cgSteps: number;
  solver: 'cg' | 'cholesky';
  start: number;
  end: number;
}

interface Scratch {
  k: number;
  x: Float64Array;
  r: Float64Array;
  p: Float64Array;
  ap: Float64Array;
  A: Float64Array;
}
let scratch: Scratch | null = null;
function getScratch(k: number): Scratch {
  if (scratch === null || scratch.k !== k) {
    scratch = {
      k,
      x: new Float64Array(k),
      r: new Float64Array(k),
      p: new Float64Array(k),
      ap: new Float64Array(k),
      A: new Float64Array(k * k),
    };
  }
  return scratch;
}

/** out = M · v for a k × k Float64 matrix. */
function symv(M: Float64Array, v: Float64Array, out: Float64Array, k: number): void {
  for (let a = 0; a < k; a++) {
    const o = a * k;
    let s0 = 0;
    let s1 = 0;
    let b = 0;
    for (; b + 1 < k; b += 2) {
      s0 += M[o + b] * v[b];
      s1 += M[o + b + 1] * v[b + 1];
    }
    if (b < k) s0 += M[o + b] * v[b];
    out[a] = s0 + s1;
  }
}

/** y_i · v with y_i a Float32 factor row and v a double vector (monomorphic for the JIT). */
function dotRow(Y: Float32Array, o: number, v: Float64Array, k: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let f = 0;
  for (; f + 3 < k; f += 4) {
    s0 += Y[o + f] * v[f];
    s1 += Y[o + f + 1] * v[f + 1];
    s2 += Y[o + f + 2] * v[f + 2];
    s3 += Y[o + f + 3] * v[f + 3];
  }
  for (; f < k; f++) s0 += Y[o + f] * v[f];
  return s0 + s1 + (s2 + s3);
}

/** v += a · y_i. */
function axpyRow(a: number, Y: Float32Array, o: number, v: Float64Array, k: number): void {
  let f = 0;
  for (; f + 3 < k; f += 4) {
    v[f] += a * Y[o + f];
    v[f + 1] += a * Y[o + f + 1];
    v[f + 2] += a * Y[o + f + 2];
    v[f + 3] += a * Y[o + f + 3];
  }
  for (; f < k; f++) v[f] += a * Y[o + f];
}

/**
 * Updates rows [start, end) of X with implicit's conjugate-gradient scheme: `cgSteps` CG
 * iterations on the row's normal equations, warm-started from the row's current value.
 * Each row is independent, so any partition of rows across threads gives identical results.
 */
export function alsCgRows(args: AlsRowsArgs): void {
  const { indptr, indices, data, X, Y, gram, k, alpha, cgSteps, rowReg, start, end } = args;
  const s = getScratch(k);
  const x = s.x;
  const r = s.r;
  const p = s.p;
  const ap = s.ap;
  for (let u = start; u < end; u++) {
    const xo = u * k;
    const lu = rowReg === undefined ? 0 : rowReg[u];
    for (let f = 0; f < k; f++) x[f] = X[xo + f];
    // r = b − A x
    symv(gram, x, r, k);
    for (let f = 0; f < k; f++) r[f] = -r[f] - lu * x[f];
    const rs = indptr[u];
    const re = indptr[u + 1];
    for (let q = rs; q < re; q++) {
      const w = data[q];
      const c1 = alpha * (w < 0 ? -w : w);
      const o = indices[q] * k;
      const t = (w > 0 ? 1 + c1 : 0) - c1 * dotRow(Y, o, x, k);
      axpyRow(t, Y, o, r, k);
    }
    for (let f = 0; f < k; f++) p[f] = r[f];
    let rsold = 0;
    for (let f = 0; f < k; f++) rsold += r[f] * r[f];
    if (rsold < 1e-20) continue;
    for (let step = 0; step < cgSteps; step++) {
      // ap = A p
      symv(gram, p, ap, k);
      for (let f = 0; f < k; f++) ap[f] += lu * p[f];
      for (let q = rs; q < re; q++) {
        const w = data[q];
        const c1 = alpha * (w < 0 ? -w : w);
        const o = indices[q] * k;
        axpyRow(c1 * dotRow(Y, o, p, k), Y, o, ap, k);
      }
      let pap = 0;
      for (let f = 0; f < k; f++) pap += p[f] * ap[f];
      if (!(pap > 0)) break;
      const a = rsold / pap;
      let rsnew = 0;
      for (let f = 0; f < k; f++) {
        x[f] += a * p[f];
        const rf = r[f] - a * ap[f];
        r[f] = rf;
        rsnew += rf * rf;
      }
      if (rsnew < 1e-20) break;
      const beta = rsnew / rsold;
      for (let f = 0; f < k; f++) p[f] = r[f] + beta * p[f];
      rsold = rsnew;
    }
    for (let f = 0; f < k; f++) X[xo + f] = x[f];
  }
}

/**
 * Solves one row's normal equations exactly: A = gram + reg·I + Σ (c−1) y yᵀ, b = Σ c·p·y, via
 * Cholesky. `A` (k×k) and `b` (k) are scratch; the solution is left in `b`. Items are
 * `items[from..to)` with weights `weights[from..to)`. Returns false if the system was not positive
 * definite (only possible with λ = 0), in which case `b` is zeroed.
 */
export function alsSolveExact(
  Y: Float32Array,
  gram: Float64Array,
  k: number,
  alpha: number,
  items: Int32Array,
  weights: Float32Array,
  from: number,
  to: number,
  A: Float64Array,
  b: Float64Array,
  reg = 0,
): boolean {
  // Only the lower triangle is needed by `cholesky`.
  for (let a = 0; a < k; a++) {
    const o = a * k;
    for (let c = 0; c <= a; c++) A[o + c] = gram[o + c];
    A[o + a] += reg;
    b[a] = 0;
  }
  let q = from;
  // Four (then two) items per pass over A cut its load/store traffic.
  for (; q + 3 < to; q += 4) {
    const w0 = weights[q];
    const w1 = weights[q + 1];
    const w2 = weights[q + 2];
    const w3 = weights[q + 3];
    const c0 = alpha * (w0 < 0 ? -w0 : w0);
    const c1 = alpha * (w1 < 0 ? -w1 : w1);
    const c2 = alpha * (w2 < 0 ? -w2 : w2);
    const c3 = alpha * (w3 < 0 ? -w3 : w3);
    const t0 = w0 > 0 ? 1 + c0 : 0;
    const t1 = w1 > 0 ? 1 + c1 : 0;
    const t2 = w2 > 0 ? 1 + c2 : 0;
    const t3 = w3 > 0 ? 1 + c3 : 0;
    const o0 = items[q] * k;
    const o1 = items[q + 1] * k;
    const o2 = items[q + 2] * k;
    const o3 = items[q + 3] * k;
    for (let a = 0; a < k; a++) {
      const y0 = Y[o0 + a];
      const y1 = Y[o1 + a];
      const y2 = Y[o2 + a];
      const y3 = Y[o3 + a];
      b[a] += t0 * y0 + t1 * y1 + (t2 * y2 + t3 * y3);
      const s0 = c0 * y0;
      const s1 = c1 * y1;
      const s2 = c2 * y2;
      const s3 = c3 * y3;
      const row = a * k;
      for (let c = 0; c <= a; c++) {
        A[row + c] += s0 * Y[o0 + c] + s1 * Y[o1 + c] + (s2 * Y[o2 + c] + s3 * Y[o3 + c]);
      }
    }
  }
  for (; q + 1 < to; q += 2) {
    const w0 = weights[q];
    const w1 = weights[q + 1];
    const c0 = alpha * (w0 < 0 ? -w0 : w0);
    const c1 = alpha * (w1 < 0 ? -w1 : w1);
    const t0 = w0 > 0 ? 1 + c0 : 0;
    const t1 = w1 > 0 ? 1 + c1 : 0;
    const o0 = items[q] * k;
    const o1 = items[q + 1] * k;
    for (let a = 0; a < k; a++) {
      const y0 = Y[o0 + a];
      const y1 = Y[o1 + a];
      b[a] += t0 * y0 + t1 * y1;
      const s0 = c0 * y0;
      const s1 = c1 * y1;
      const row = a * k;
      for (let c = 0; c <= a; c++) A[row + c] += s0 * Y[o0 + c] + s1 * Y[o1 + c];
    }
  }
  for (; q < to; q++) {
    const w = weights[q];
    const c1 = alpha * (w < 0 ? -w : w);
    const t = w > 0 ? 1 + c1 : 0;
    const o = items[q] * k;
    for (let a = 0; a < k; a++) {
      const y = Y[o + a];
      b[a] += t * y;
      const sa = c1 * y;
      const row = a * k;
      for (let c = 0; c <= a; c++) A[row + c] += sa * Y[o + c];
    }
  }
  if (!cholesky(A, k)) {
    b.fill(0);
    return false;
  }
  choleskySolve(A, k, b);
  return true;
}

/** Exact (Cholesky) update of rows [start, end) of X; used to check the CG solver. */
export function alsCholeskyRows(args: AlsRowsArgs): void {
  const { indptr, indices, data, X, Y, gram, k, alpha, rowReg, start, end } = args;
  const s = getScratch(k);
  for (let u = start; u < end; u++) {
    const lu = rowReg === undefined ? 0 : rowReg[u];
    alsSolveExact(Y, gram, k, alpha, indices, data, indptr[u], indptr[u + 1], s.A, s.x, lu);
    const xo = u * k;
    for (let f = 0; f < k; f++) X[xo + f] = s.x[f];
  }
}

/** Dispatches to the configured solver. */
export function alsSolveRows(args: AlsRowsArgs): void {
  if (args.solver === 'cholesky') alsCholeskyRows(args);
  else alsCgRows(args);
}

/**
 * The data part of implicit ALS's loss for rows [start, end):
 *   Σ_u [ x_uᵀ(YᵀY)x_u + Σ_{i∈u} ((c−1)s² − 2cp·s + cp) ],  s = x_u·y_i,
 * which equals Σ_{u,i} c_ui (p_ui − s_ui)² over the full matrix. `gram` must be YᵀY without λ.
 */
export function alsLossRows(
  indptr: Int32Array,
  indices: Int32Array,
  data: Float32Array,
  X: Float32Array,
  Y: Float32Array,
  gram: Float64Array,
  k: number,
  alpha: number,
  start: number,
  end: number,
): number {
  const s = getScratch(k);
  const x = s.x;
  const gx = s.r;
  let loss = 0;
  for (let u = start; u < end; u++) {
    const xo = u * k;
    for (let f = 0; f < k; f++) x[f] = X[xo + f];
    symv(gram, x, gx, k);
    let quad = 0;
    for (let f = 0; f < k; f++) quad += x[f] * gx[f];
    loss += quad;
    for (let q = indptr[u]; q < indptr[u + 1]; q++) {
      const w = data[q];
      const c1 = alpha * (w < 0 ? -w : w);
      const c = 1 + c1;
      const pref = w > 0 ? 1 : 0;
      const sc = dotRow(Y, indices[q] * k, x, k);
      loss += c1 * sc * sc - 2 * c * pref * sc + c * pref;
    }
  }
  return loss;
}

// ---------------------------------------------------------------------------------------------
// BPR-MF (Rendle et al. 2009) with an item bias, uniform negatives, plain SGD.
// ---------------------------------------------------------------------------------------------

export interface BprEpochArgs {
  indptr: Int32Array;
  indices: Int32Array;
  X: Float32Array;
  Y: Float32Array;
  bias: Float32Array;
  k: number;
  nItems: number;
  learningRate: number;
  regularization: number;
  samples: number;
  seed: number;
  /**
   * Uniformly drawn negative candidates per sample, of which the highest-scoring one is used
   * (dynamic negative sampling, Zhang et al. 2013); 1 is plain BPR's uniform negative.
   */
  negatives?: number;
  /** Positives per sorted block; BPR_BLOCK unless a test wants small blocks. */
  blockSize?: number;
}

export interface BprEpochResult {
  /** Samples whose positive already outranked the negative before the update (a train AUC proxy). */
  correct: number;
  /** Samples skipped because the user has interacted with (nearly) every item. */
  skipped: number;
}

/**
 * Positives are drawn in blocks of this many stored-entry indices, sorted before use: the updates
 * then walk users, rows and user factors in address order instead of at random, which roughly
 * halves an epoch on data that does not fit in cache. Within an epoch, SGD's order is arbitrary.
 */
export const BPR_BLOCK = 1 << 20;

/** True if `v` occurs in the sorted slice `a[from..to)`. */
export function sortedContains(a: Int32Array, from: number, to: number, v: number): boolean {
  let lo = from;
  let hi = to - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const m = a[mid];
    if (m < v) lo = mid + 1;
    else if (m > v) hi = mid - 1;
    else return true;
  }
  return false;
}

/** The row holding stored entry `q`: the largest r with indptr[r] ≤ q (rows may be empty). */
export function rowOfEntry(indptr: Int32Array, rows: number, q: number): number {
  let lo = 0;
  let hi = rows - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (indptr[mid] <= q) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

let radixTmp = new Int32Array(0);
const radixCount = new Int32Array(4097);

/**
 * Draws `n` uniform indices in [0, total) from `rng` into `out[0..n)` and sorts them ascending
 * (LSD radix sort, 12-bit digits: several times faster than TypedArray#sort here).
 */
export function drawSortedBlock(rng: Rng, total: number, out: Int32Array, n: number): void {
  for (let t = 0; t < n; t++) out[t] = rng.int(total);
  if (radixTmp.length < n) radixTmp = new Int32Array(n);
  let src: Int32Array = out;
  let dst: Int32Array = radixTmp;
  for (let shift = 0; shift < 32 && (total - 1) >>> shift > 0; shift += 12) {
    radixCount.fill(0);
    for (let t = 0; t < n; t++) radixCount[((src[t] >>> shift) & 4095) + 1]++;
    for (let b = 0; b < 4096; b++) radixCount[b + 1] += radixCount[b];
    for (let t = 0; t < n; t++) dst[radixCount[(src[t] >>> shift) & 4095]++] = src[t];
    const x = src;
    src = dst;
    dst = x;
  }
  if (src !== out) out.set(src.subarray(0, n));
}

let blockBuf = new Int32Array(0);

/**
 * Runs `samples` SGD steps on (user, positive, negative) triples drawn with a private Rng:
 * positives uniformly over stored entries (in sorted blocks, see BPR_BLOCK), negatives uniformly
 * over items the user has not interacted with. Safe to run concurrently on shared factor arrays
 * (Hogwild: racing updates are rare and benign).
 */
export function bprEpoch(args: BprEpochArgs): BprEpochResult {
  const { indptr, indices, X, Y, bias, k, nItems, learningRate: lr, regularization: reg, samples } = args;
  const candidates = args.negatives ?? 1;
  const rng = new Rng(args.seed);
  const total = indices.length;
  const rows = indptr.length - 1;
  let correct = 0;
  let skipped = 0;
  if (total === 0 || nItems < 2) return { correct, skipped: samples };
  const B = Math.max(1, Math.min(args.blockSize ?? BPR_BLOCK, samples));
  if (blockBuf.length < B) blockBuf = new Int32Array(B);
  const buf = blockBuf;
  for (let done = 0; done < samples; done += B) {
    const nb = Math.min(B, samples - done);
    drawSortedBlock(rng, total, buf, nb);
    let u = rowOfEntry(indptr, rows, buf[0]);
    for (let t = 0; t < nb; t++) {
      const q = buf[t];
      while (indptr[u + 1] <= q) u++;
      const i = indices[q];
      const rs = indptr[u];
      const re = indptr[u + 1];
      if (re - rs >= nItems) {
        skipped++;
        continue;
      }
      let j = rng.int(nItems);
      let tries = 1;
      while (sortedContains(indices, rs, re, j)) {
        if (++tries > 64) break;
        j = rng.int(nItems);
      }
      if (tries > 64) {
        skipped++;
        continue;
      }
      const uo = u * k;
      if (candidates > 1) {
        // Keep the hardest of `candidates` uniform non-positives (a positive draw is just dropped).
        let best = bias[j];
        for (let f = 0; f < k; f++) best += X[uo + f] * Y[j * k + f];
        for (let c = 1; c < candidates; c++) {
          const j2 = rng.int(nItems);
          if (sortedContains(indices, rs, re, j2)) continue;
          let s2 = bias[j2];
          const o2 = j2 * k;
          for (let f = 0; f < k; f++) s2 += X[uo + f] * Y[o2 + f];
          if (s2 > best) {
            best = s2;
            j = j2;
          }
        }
      }
      const io = i * k;
      const jo = j * k;
      let xuij = bias[i] - bias[j];
      for (let f = 0; f < k; f++) xuij += X[uo + f] * (Y[io + f] - Y[jo + f]);
      if (xuij > 0) correct++;
      // d/dθ ln σ(x_uij) = σ(−x_uij) · dx_uij/dθ
      const z = 1 / (1 + Math.exp(xuij));
      bias[i] += lr * (z - reg * bias[i]);
      bias[j] += lr * (-z - reg * bias[j]);
      for (let f = 0; f < k; f++) {
        const wu = X[uo + f];
        const hi = Y[io + f];
        const hj = Y[jo + f];
        X[uo + f] = wu + lr * (z * (hi - hj) - reg * wu);
        Y[io + f] = hi + lr * (z * wu - reg * hi);
        Y[jo + f] = hj + lr * (-z * wu - reg * hj);
      }
    }
  }
  return { correct, skipped };
}

/**
 * Folds one user into a trained BPR model: SGD on the user vector alone (items fixed), over the
 * history's positives with uniform negatives. Deterministic: the Rng is seeded from the history.
 * `x` (k) receives the vector; `steps` SGD updates are made.
 */
export function bprFoldIn(
  Y: Float32Array,
  bias: Float32Array,
  k: number,
  nItems: number,
  items: Int32Array,
  weights: Float32Array,
  learningRate: number,
  regularization: number,
  steps: number,
  x: Float64Array,
  negatives = 1,
): void {
  x.fill(0, 0, k);
  const n = items.length;
  let positives = 0;
  let seed = 0x2545f491;
  for (let q = 0; q < n; q++) {
    if (weights[q] > 0) positives++;
    seed = Math.imul(seed ^ items[q], 0x9e3779b1) ^ (seed >>> 15);
  }
  if (positives === 0 || n >= nItems) return;
  const rng = new Rng(seed >>> 0);
  for (let s = 0; s < steps; s++) {
    const q = rng.int(n);
    if (!(weights[q] > 0)) continue;
    const i = items[q];
    let j = rng.int(nItems);
    let tries = 1;
    while (sortedContains(items, 0, n, j) && tries++ < 64) j = rng.int(nItems);
    if (tries > 64) continue;
    if (negatives > 1) {
      // The same dynamic negative sampling as training (bprEpoch).
      let best = bias[j];
      for (let f = 0; f < k; f++) best += x[f] * Y[j * k + f];
      for (let c = 1; c < negatives; c++) {
        const j2 = rng.int(nItems);
        if (sortedContains(items, 0, n, j2)) continue;
        let s2 = bias[j2];
        for (let f = 0; f < k; f++) s2 += x[f] * Y[j2 * k + f];
        if (s2 > best) {
          best = s2;
          j = j2;
        }
      }
    }
    const io = i * k;
    const jo = j * k;
    let xuij = bias[i] - bias[j];
    for (let f = 0; f < k; f++) xuij += x[f] * (Y[io + f] - Y[jo + f]);
    const z = 1 / (1 + Math.exp(xuij));
    for (let f = 0; f < k; f++) x[f] += learningRate * (z * (Y[io + f] - Y[jo + f]) - regularization * x[f]);
  }
}

// ---------------------------------------------------------------------------------------------
// Cosine similarity over factor rows.
// ---------------------------------------------------------------------------------------------

/** 1/‖row‖ for every row of M (0 for an all-zero row, so its similarities come out 0). */
export function invNorms(M: Float32Array, rows: number, k: number): Float32Array {
  const out = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    const n = Math.sqrt(dot(M, r * k, M, r * k, k));
    out[r] = n > 0 ? 1 / n : 0;
  }
  return out;
}

/** out[j] = cos(M[row], M[j]) for j < rows, given the rows' inverse norms. */
/** Cosine of rows `a` and `b` of M (k columns) given precomputed inverse row norms. */
export function cosinePair(M: Float32Array, inv: Float32Array, k: number, a: number, b: number): number {
  let s = 0;
  const oa = a * k;
  const ob = b * k;
  for (let f = 0; f < k; f++) s += M[oa + f] * M[ob + f];
  return s * inv[a] * inv[b];
}

/**
 * out[j] = cosinePair(M, inv, k, rows[j], b) for every j, bit for bit (each pair sums in cosinePair's
 * order), four pairs at a time so their sums run side by side rather than one long chain after another.
 * A row outside M gets 0, as `itemSimilarity` gives it.
 */
export function cosinePairsTo(
  M: Float32Array,
  inv: Float32Array,
  k: number,
  rows: Int32Array,
  b: number,
  out: Float64Array,
): void {
  const nRows = inv.length;
  if (!(b >= 0 && b < nRows)) {
    out.fill(0, 0, rows.length);
    return;
  }
  const ob = b * k;
  let j = 0;
  for (; j + 3 < rows.length; j += 4) {
    const r0 = rows[j];
    const r1 = rows[j + 1];
    const r2 = rows[j + 2];
    const r3 = rows[j + 3];
    if (!(r0 >= 0 && r0 < nRows && r1 >= 0 && r1 < nRows && r2 >= 0 && r2 < nRows && r3 >= 0 && r3 < nRows))
      break;
    const o0 = r0 * k;
    const o1 = r1 * k;
    const o2 = r2 * k;
    const o3 = r3 * k;
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    for (let f = 0; f < k; f++) {
      const y = M[ob + f];
      s0 += M[o0 + f] * y;
      s1 += M[o1 + f] * y;
      s2 += M[o2 + f] * y;
      s3 += M[o3 + f] * y;
    }
    out[j] = s0 * inv[r0] * inv[b];
    out[j + 1] = s1 * inv[r1] * inv[b];
    out[j + 2] = s2 * inv[r2] * inv[b];
    out[j + 3] = s3 * inv[r3] * inv[b];
  }
  for (; j < rows.length; j++) {
    const r = rows[j];
    out[j] = r >= 0 && r < nRows ? cosinePair(M, inv, k, r, b) : 0;
  }
}

export function cosineToAll(
  M: Float32Array,
  inv: Float32Array,
  k: number,
  row: number,
  out: Float32Array,
  rows: number,
): void {
  const s = getScratch(k);
  const x = s.p;
  const scale = inv[row];
  for (let f = 0; f < k; f++) x[f] = M[row * k + f] * scale;
  matVec(M, k, x, out, 0, rows);
  for (let j = 0; j < rows; j++) out[j] *= inv[j];
}
