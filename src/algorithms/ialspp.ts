/**
 * iALS++ row solver: subspace block coordinate descent (Rendle, Krichene, Zhang & Koren,
 * "iALS++: Speeding up Matrix Factorization with Subspaced Computation", 2021).
 *
 * One ALS half-step solves, for every row u, (G + λ_u·I + Σ_i c1_i y_i y_iᵀ) x = Σ_i t_i y_i with
 * G = YᵀY, c1 = α|w| and t = 1 + c1 for a positive weight (0 otherwise) — see kernels.ts. Instead
 * of k CG directions or a k×k Cholesky, iALS++ cycles through blocks B of `blockSize` coordinates
 * and solves each b×b subproblem exactly with the other coordinates fixed (block Gauss–Seidel on
 * the row's normal equations, started from the current x). It keeps the row's predictions
 * s_i = x·y_i for its observed items up to date, so a block costs O(|I_u|·b² + k·b + b³) and a sweep
 * over all blocks O(|I_u|·k·b + k² + k·b²), against O(|I_u|·k² + k³) for an exact solve. With
 * b = k one sweep is the exact solution.
 *
 * Rendle et al. put the blocks in the outer loop (all users' block B, then all items' block B);
 * here each row sweeps its own blocks inside the usual half-step, which fits the row-parallel
 * structure of the other solvers and leaves the Gramian fixed during a half-step. Double precision,
 * JavaScript only (no SIMD kernel yet).
 */
import { cholesky, choleskySolve } from './kernels.ts';

/** Arguments of `alsSubspaceRows`; arrays may be SharedArrayBuffer-backed. */
export interface AlsSubspaceArgs {
  /** CSR of the side being solved (rows = users, or items for the item step). */
  indptr: Int32Array;
  indices: Int32Array;
  data: Float32Array;
  /** Factors being updated (rows × k), in place. */
  X: Float32Array;
  /** Fixed factors of the other side (cols × k). */
  Y: Float32Array;
  /** YᵀY without λ (k × k, symmetric, full). */
  gram: Float64Array;
  /** λ_r of every row, added to the diagonal. */
  rowReg: Float32Array;
  k: number;
  alpha: number;
  /** Coordinates per block (b); clamped to [1, k]. */
  blockSize: number;
  /** Passes over all blocks per row and half-step. */
  sweeps: number;
  start: number;
  end: number;
}

interface SubspaceScratch {
  k: number;
  b: number;
  cap: number;
  x: Float64Array;
  A: Float64Array;
  rhs: Float64Array;
  pred: Float64Array;
}
let scratch: SubspaceScratch | null = null;

/** Per-thread scratch, grown only when a longer row or another shape arrives. */
function getScratch(k: number, b: number, cap: number): SubspaceScratch {
  if (scratch === null || scratch.k !== k || scratch.b !== b || scratch.cap < cap) {
    scratch = {
      k,
      b,
      cap: Math.max(cap, scratch?.cap ?? 0),
      x: new Float64Array(k),
      A: new Float64Array(b * b),
      rhs: new Float64Array(b),
      pred: new Float64Array(Math.max(cap, scratch?.cap ?? 0)),
    };
  }
  return scratch;
}

/**
 * Updates rows [start, end) of X by `sweeps` passes of subspace block coordinate descent on each
 * row's normal equations, warm-started from the row's current value. Rows are independent, so any
 * partition of rows gives identical results.
 */
export function alsSubspaceRows(args: AlsSubspaceArgs): void {
  const { indptr, indices, data, X, Y, gram, rowReg, k, alpha, start, end } = args;
  const b = Math.max(1, Math.min(k, Math.floor(args.blockSize)));
  let longest = 1;
  for (let u = start; u < end; u++) longest = Math.max(longest, indptr[u + 1] - indptr[u]);
  const s = getScratch(k, b, longest);
  const { x, A, rhs, pred } = s;
  for (let u = start; u < end; u++) {
    const xo = u * k;
    const lu = rowReg[u];
    const rs = indptr[u];
    const re = indptr[u + 1];
    for (let f = 0; f < k; f++) x[f] = X[xo + f];
    for (let q = rs; q < re; q++) {
      const o = indices[q] * k;
      let d = 0;
      for (let f = 0; f < k; f++) d += Y[o + f] * x[f];
      pred[q - rs] = d;
    }
    for (let sweep = 0; sweep < args.sweeps; sweep++) {
      for (let f0 = 0; f0 < k; f0 += b) {
        const bb = Math.min(b, k - f0);
        // A_BB = G_BB + λ·I (lower triangle is all `cholesky` reads);
        // rhs = (b − A·x)_B = −(G·x)_B − λ·x_B + Σ_i (t_i − c1_i·s_i)·y_iB.
        for (let a = 0; a < bb; a++) {
          const ga = (f0 + a) * k;
          for (let c = 0; c <= a; c++) A[a * bb + c] = gram[ga + f0 + c];
          A[a * bb + a] += lu;
          let gx = 0;
          for (let f = 0; f < k; f++) gx += gram[ga + f] * x[f];
          rhs[a] = -gx - lu * x[f0 + a];
        }
        for (let q = rs; q < re; q++) {
          const w = data[q];
          const c1 = alpha * (w < 0 ? -w : w);
          const t = (w > 0 ? 1 + c1 : 0) - c1 * pred[q - rs];
          if (c1 === 0 && t === 0) continue;
          const o = indices[q] * k + f0;
          for (let a = 0; a < bb; a++) {
            const ya = Y[o + a];
            rhs[a] += t * ya;
            const cy = c1 * ya;
            const row = a * bb;
            for (let c = 0; c <= a; c++) A[row + c] += cy * Y[o + c];
          }
        }
        // A_BB is positive definite whenever λ > 0 or G is; skip a singular block rather than diverge.
        if (!cholesky(A, bb)) continue;
        choleskySolve(A, bb, rhs);
        for (let a = 0; a < bb; a++) x[f0 + a] += rhs[a];
        for (let q = rs; q < re; q++) {
          const o = indices[q] * k + f0;
          let d = 0;
          for (let a = 0; a < bb; a++) d += Y[o + a] * rhs[a];
          pred[q - rs] += d;
        }
      }
    }
    for (let f = 0; f < k; f++) X[xo + f] = x[f];
  }
}
