/**
 * Implicit-feedback ALS (Hu, Koren & Volinsky 2008), in the formulation of benfred/implicit:
 * confidence c = 1 + alpha·w for a stored weight w, preference 1 for w > 0, and each half-step
 * solves every row's regularised weighted least squares with the shared Gramian YᵀY. The default
 * solver runs a few conjugate-gradient steps per row warm-started from the current factors
 * (implicit's 3); 'cholesky' solves exactly and serves as a check.
 *
 * Serving folds a user in exactly from their current history (one k×k Cholesky), so a user's newest
 * events change their recommendations at once, without retraining.
 */
import { CairnError } from '../errors/errors.ts';
import {
  alsLossRows,
  alsSolveExact,
  cosinePair,
  cosinePairsTo,
  cosineToAll,
  gramian,
  invNorms,
  matVec,
  matVecRows,
  type AlsRowsArgs,
} from './kernels.ts';
import {
  abortReason,
  allocFloat32,
  allocFloat64,
  partitionRows,
  resolveThreads,
  WorkerPool,
} from './parallel.ts';
import {
  EarlyStopper,
  holdOutValidation,
  ValidationScorer,
  VALIDATION_MAX_USERS,
  type EarlyStoppingOptions,
  reportMeta,
  type EarlyStoppingReport,
  type MonitoredFitOptions,
} from './early-stopping.ts';
import { alsSubspaceRows, type AlsSubspaceArgs } from './ialspp.ts';
import { readBoolean, readChoice, readNumber } from './params.ts';
import { Rng } from './random.ts';
import { nnz, toShared, transpose, type Csr } from './sparse.ts';
import type { AlgorithmSpec, FittedModel, ModelArtifact, Params, UserHistory } from './types.ts';
import type { GramianArgs } from './worker.ts';
import {
  WASM_ARENA_MAX_BYTES,
  WASM_MAX_FACTORS,
  WasmArena,
  wasmRef,
  wasmSimdSupported,
  type WasmAlsArgs,
  type WasmGramArgs,
} from './wasm.ts';

/** 2: λ may be frequency-scaled (`regExponent`); format-1 artifacts load with regExponent 0. */
export const ALS_FORMAT_VERSION = 2;

/** Rows per partial Gramian: fixed (not per thread) so sums run in the same order for any pool size. */
const GRAM_BLOCK = 4096;

export interface AlsParams extends AlsControlParams {
  factors: number;
  regularization: number;
  /**
   * ν of frequency-scaled regularisation (Rendle et al., "Revisiting the Performance of iALS on
   * Item Recommendation Benchmarks", 2022): row r's λ_r = λ·C_r^ν, where C_r = n + α·Σ|w| is the
   * row's total confidence over the other side's n rows (1 per unobserved cell, 1 + α·w per
   * observed one). 0 gives every row the same λ (implicit's scheme); 1 makes λ a per-unit-of-
   * confidence weight that stays appropriate as users, items and histories grow.
   */
  regExponent: number;
  alpha: number;
  iterations: number;
  cgSteps: number;
  /**
   * 'cg' (implicit's conjugate gradient, `cgSteps` per row), 'cholesky' (exact, a check) or
   * 'ialspp' (iALS++ subspace block coordinate descent, `blockSize`/`sweeps`; JavaScript, in the
   * calling thread).
   */
  solver: 'cg' | 'cholesky' | 'ialspp';
  /**
   * Row-solver implementation for the CG solver: 'wasm' (WebAssembly SIMD, float32 lanes, several
   * times faster), 'js' (the double-precision reference) or 'auto' (wasm when available).
   */
  kernel: 'auto' | 'js' | 'wasm';
}

/**
 * Chosen on validation splits (per-user random 80/10/10, NDCG@10 on the 10% validation part; the
 * test part untouched) of MovieTweetings-100k (as is, 5-core, ratings ≥ 8) and synthetic demo data
 * from 1e5 to 1e6 events (sparse and dense shapes), two split seeds. The quality surface has a
 * ridge along λ/α ≈ 10–20: less regularisation over-fits the many short histories, more collapses
 * the factors (towards popularity, and below it when they shrink to noise). λ 100 with α 7 came
 * within 3% of the best setting tried on five of six sets and within 8% on the sixth (the previous
 * λ 100 / α 20 was 2% above popularity on MovieTweetings' validation part and below it on the test
 * part). `regExponent` 1 (Rendle et al.'s frequency scaling) reached the same peaks but no better,
 * with no wider a ridge, so rows share one λ by default (docs/benchmarks.md has the figures).
 */
const DEFAULTS: Omit<AlsParams, keyof AlsControlParams> = {
  factors: 64,
  regularization: 100,
  regExponent: 0,
  alpha: 7,
  iterations: 15,
  cgSteps: 3,
  solver: 'cg',
  kernel: 'auto',
};

/**
 * Solver and early-stopping controls: not quality defaults (they change how a fit gets to its
 * result, not which model is best), so they are kept apart from the tuned `DEFAULTS`.
 */
export interface AlsControlParams {
  /** iALS++ block size b (coordinates solved together); b ≥ factors makes one sweep exact. */
  blockSize: number;
  /** iALS++ passes over all blocks per row and half-step. */
  sweeps: number;
  /**
   * Stop on an inner validation split: a seeded share `validationFraction` of every user's
   * interactions is held out, NDCG@10 on (a sample of) them is measured every `evalEvery`
   * iterations, and the fit stops after `patience` evaluations without improvement, keeping the
   * best iterate; `refitIterations` full-data iterations then put the held-out interactions back.
   * `iterations` becomes the maximum. Off by default: results and timings stay as before.
   */
  earlyStopping: boolean;
  patience: number;
  evalEvery: number;
  validationFraction: number;
  refitIterations: number;
}

const CONTROL_DEFAULTS: AlsControlParams = {
  blockSize: 16,
  sweeps: 1,
  earlyStopping: false,
  patience: 2,
  evalEvery: 1,
  validationFraction: 0.1,
  refitIterations: 1,
};

/** Reads and validates ALS parameters (unknown keys are ignored, missing ones take defaults). */
export function alsParams(params: Params): AlsParams {
  return {
    ...alsControlParams(params),
    factors: readNumber(params, 'als', 'factors', DEFAULTS.factors, { min: 1, max: 4096, integer: true }),
    regularization: readNumber(params, 'als', 'regularization', DEFAULTS.regularization, {
      min: 0,
      max: 1e9,
    }),
    regExponent: readNumber(params, 'als', 'regExponent', DEFAULTS.regExponent, { min: 0, max: 1 }),
    alpha: readNumber(params, 'als', 'alpha', DEFAULTS.alpha, { min: 0, max: 1e9 }),
    iterations: readNumber(params, 'als', 'iterations', DEFAULTS.iterations, {
      min: 0,
      max: 10000,
      integer: true,
    }),
    cgSteps: readNumber(params, 'als', 'cgSteps', DEFAULTS.cgSteps, { min: 1, max: 1000, integer: true }),
    solver: readChoice(params, 'als', 'solver', DEFAULTS.solver, ['cg', 'cholesky', 'ialspp'] as const),
    kernel: readChoice(params, 'als', 'kernel', DEFAULTS.kernel, ['auto', 'js', 'wasm'] as const),
  };
}

function alsControlParams(params: Params): AlsControlParams {
  const d = CONTROL_DEFAULTS;
  const int = (name: keyof AlsControlParams, fallback: number, min: number, max: number): number =>
    readNumber(params, 'als', name, fallback, { min, max, integer: true });
  return {
    blockSize: int('blockSize', d.blockSize, 1, 4096),
    sweeps: int('sweeps', d.sweeps, 1, 100),
    earlyStopping: readBoolean(params, 'als', 'earlyStopping', d.earlyStopping),
    patience: int('patience', d.patience, 0, 1000),
    evalEvery: int('evalEvery', d.evalEvery, 1, 1000),
    validationFraction: readNumber(params, 'als', 'validationFraction', d.validationFraction, {
      min: 0,
      max: 0.5,
      exclusiveMin: true,
    }),
    refitIterations: int('refitIterations', d.refitIterations, 0, 100),
  };
}

function paramsRecord(p: AlsParams): Params {
  return { ...p };
}

/** A fitted ALS model. Arrays are row-major `rows × factors`. */
export class AlsModel implements FittedModel {
  readonly algorithm = 'als' as const;
  readonly params: Params;
  readonly nUsers: number;
  readonly nItems: number;
  readonly factors: number;
  readonly userFactors: Float32Array;
  readonly itemFactors: Float32Array;
  /** Early stopping's report, or null when the fit ran a fixed number of iterations. */
  readonly fitReport: EarlyStoppingReport | null;
  private readonly alpha: number;
  private readonly reg: number;
  private readonly regExponent: number;
  /** YᵀY of the final item factors: the fixed part of every fold-in system. */
  private readonly gram: Float64Array;
  private itemInvNorms: Float32Array | null = null;
  private readonly A: Float64Array;
  private readonly x: Float64Array;

  constructor(
    p: AlsParams,
    nUsers: number,
    nItems: number,
    userFactors: Float32Array,
    itemFactors: Float32Array,
    gram?: Float64Array,
    /** Early stopping's report, when the fit used it. */
    fitReport: EarlyStoppingReport | null = null,
  ) {
    const k = p.factors;
    if (userFactors.length !== nUsers * k || itemFactors.length !== nItems * k) {
      throw new CairnError('CAIRN_VALIDATION', 'als: factor arrays do not match the model shape');
    }
    this.params = paramsRecord(p);
    this.fitReport = fitReport;
    this.nUsers = nUsers;
    this.nItems = nItems;
    this.factors = k;
    this.alpha = p.alpha;
    this.reg = p.regularization;
    this.regExponent = p.regExponent;
    this.userFactors = userFactors;
    this.itemFactors = itemFactors;
    this.gram = gram ?? gramianInThread(itemFactors, nItems, k);
    this.A = new Float64Array(k * k);
    this.x = new Float64Array(k);
  }

  /**
   * The user's latent vector: the trained one when `user` is a training user and `foldIn` is false,
   * otherwise the exact least-squares solution for `history` against the fixed item factors.
   * Returns a scratch buffer that the next call overwrites.
   */
  userVector(user: number, history: UserHistory, foldIn = false): Float64Array {
    const k = this.factors;
    const x = this.x;
    if (user >= 0 && user < this.nUsers && !foldIn) {
      const o = user * k;
      for (let f = 0; f < k; f++) x[f] = this.userFactors[o + f];
      return x;
    }
    const { items, weights } = history;
    let mass = 0;
    for (let q = 0; q < items.length; q++) {
      const i = items[q];
      if (!(i >= 0 && i < this.nItems)) throw new RangeError(`als: history item ${i} out of range`);
      mass += Math.abs(weights[q]);
    }
    const reg = rowRegularization(this.reg, this.regExponent, this.nItems, this.alpha, mass);
    alsSolveExact(
      this.itemFactors,
      this.gram,
      k,
      this.alpha,
      items,
      weights,
      0,
      items.length,
      this.A,
      x,
      reg,
    );
    return x;
  }

  scoreUser(user: number, history: UserHistory, out: Float32Array, foldIn = false): void {
    this.scoreVector(this.userVector(user, history, foldIn), out);
  }

  scoreVector(x: Float64Array, out: Float32Array): void {
    matVec(this.itemFactors, this.factors, x, out, 0, this.nItems);
  }

  scoreItems(user: number, history: UserHistory, items: Int32Array, out: Float32Array, foldIn = false): void {
    const x = this.userVector(user, history, foldIn);
    matVecRows(this.itemFactors, this.factors, x, items, out);
  }

  similarItems(item: number, out: Float32Array): boolean {
    if (!(item >= 0 && item < this.nItems)) return false;
    this.itemInvNorms ??= invNorms(this.itemFactors, this.nItems, this.factors);
    cosineToAll(this.itemFactors, this.itemInvNorms, this.factors, item, out, this.nItems);
    return true;
  }

  itemSimilarity(a: number, b: number): number {
    if (!(a >= 0 && a < this.nItems && b >= 0 && b < this.nItems)) return 0;
    this.itemInvNorms ??= invNorms(this.itemFactors, this.nItems, this.factors);
    return cosinePair(this.itemFactors, this.itemInvNorms, this.factors, a, b);
  }

  itemSimilarities(items: Int32Array, b: number, out: Float64Array): void {
    this.itemInvNorms ??= invNorms(this.itemFactors, this.nItems, this.factors);
    cosinePairsTo(this.itemFactors, this.itemInvNorms, this.factors, items, b, out);
  }

  toArtifact(): ModelArtifact {
    return {
      algorithm: 'als',
      formatVersion: ALS_FORMAT_VERSION,
      params: { ...this.params },
      meta: { factors: this.factors, users: this.nUsers, items: this.nItems, ...reportMeta(this.fitReport) },
      arrays: { userFactors: this.userFactors, itemFactors: this.itemFactors },
    };
  }
}

/** λ_r = λ·(n + α·mass)^ν: see `AlsParams.regExponent`. */
export function rowRegularization(
  reg: number,
  exponent: number,
  n: number,
  alpha: number,
  mass: number,
): number {
  return exponent === 0 ? reg : reg * Math.pow(n + alpha * mass, exponent);
}

/** Every row's λ_r for one side (rows of `m`, against its `m.cols` columns). */
function sideRegularization(m: Csr, p: AlsParams, shared: boolean, arena: WasmArena | null): Float32Array {
  const out = arena !== null ? arena.float32(m.rows) : allocFloat32(m.rows, shared);
  fillRegularization(m, p, out);
  return out;
}

/** Writes every row's λ_r into `out` (again after the data changed, e.g. held-out entries restored). */
function fillRegularization(m: Csr, p: AlsParams, out: Float32Array): void {
  for (let r = 0; r < m.rows; r++) {
    let mass = 0;
    for (let q = m.indptr[r]; q < m.indptr[r + 1]; q++) mass += Math.abs(m.data[q]);
    out[r] = rowRegularization(p.regularization, p.regExponent, m.cols, p.alpha, mass);
  }
}

/** YᵀY in-thread (used when loading an artifact). Same block order as training. */
function gramianInThread(Y: Float32Array, rows: number, k: number): Float64Array {
  const g = new Float64Array(k * k);
  const part = new Float64Array(k * k);
  for (let s = 0; s < rows; s += GRAM_BLOCK) {
    part.fill(0);
    gramian(Y, k, s, Math.min(rows, s + GRAM_BLOCK), part, 0);
    for (let q = 0; q < k * k; q++) g[q] += part[q];
  }
  return g;
}

/** YᵀY on the pool: fixed row blocks, summed in block order, so any thread count agrees. */
async function poolGramian(
  pool: WorkerPool,
  Y: Float32Array,
  rows: number,
  k: number,
  wasm: WasmState | null,
): Promise<Float64Array> {
  const blocks = Math.max(1, Math.ceil(rows / GRAM_BLOCK));
  let parts: Float64Array;
  if (wasm !== null) {
    parts = wasm.gramParts.subarray(0, blocks * k * k);
    parts.fill(0);
    const tasks: WasmGramArgs[] = [];
    for (let b = 0; b < blocks; b++) {
      tasks.push({
        ...wasmRef(wasm.arena),
        Y,
        k,
        rowStart: b * GRAM_BLOCK,
        rowEnd: Math.min(rows, (b + 1) * GRAM_BLOCK),
        out: parts.subarray(b * k * k, (b + 1) * k * k),
        tmp: wasm.gramTmp.subarray(b * 4 * k, (b + 1) * 4 * k),
      });
    }
    await pool.map('kernels.gramianWasm', tasks);
  } else {
    parts = allocFloat64(blocks * k * k, pool.needsShared);
    const tasks: GramianArgs[] = [];
    for (let b = 0; b < blocks; b++) {
      tasks.push({
        Y,
        k,
        rowStart: b * GRAM_BLOCK,
        rowEnd: Math.min(rows, (b + 1) * GRAM_BLOCK),
        out: parts,
        outOff: b * k * k,
      });
    }
    await pool.map('kernels.gramian', tasks);
  }
  const g = new Float64Array(k * k);
  for (let b = 0; b < blocks; b++) {
    const o = b * k * k;
    for (let q = 0; q < k * k; q++) g[q] += parts[o + q];
  }
  return g;
}

/** The interaction matrix of one side (rows are the factors being solved), its factors and λ_r. */
interface Side {
  m: Csr;
  X: Float32Array;
  reg: Float32Array;
}

/** Where the wasm kernels' data lives: Gramians and per-task scratch in the same arena. */
interface WasmState {
  arena: WasmArena;
  gram: Float32Array;
  scratch: Float32Array;
  /** Partial Gramians, one k×k block per GRAM_BLOCK rows of the larger side, and their scratch. */
  gramParts: Float64Array;
  gramTmp: Float64Array;
}

/** Row ranges per half-step: several per thread balance rows of unequal length; in-thread they
 * are the points where an abort can land. */
function rangeCount(pool: WorkerPool): number {
  return Math.max(8, pool.threads * 8);
}

/** Solves every row of `side.X` against the fixed factors `Y` (one ALS half-step). */
async function solveSide(
  pool: WorkerPool,
  side: Side,
  Y: Float32Array,
  p: AlsParams,
  wasm: WasmState | null,
  signal?: AbortSignal,
): Promise<void> {
  const k = p.factors;
  const m = side.m;
  // λ_r goes on each row's diagonal in the kernel; the shared part is YᵀY alone.
  const gram = await poolGramian(pool, Y, m.cols, k, wasm);
  const bounds = partitionRows(m.indptr, m.rows, rangeCount(pool), k / 2);
  if (p.solver === 'ialspp') {
    // The worker task table (worker.ts) has no iALS++ entry yet, so the row ranges run in this
    // thread; the abort check between ranges keeps cancellation prompt.
    for (let t = 0; t + 1 < bounds.length; t++) {
      if (signal?.aborted) throw abortReason(signal);
      const args: AlsSubspaceArgs = {
        indptr: m.indptr,
        indices: m.indices,
        data: m.data,
        X: side.X,
        Y,
        gram,
        rowReg: side.reg,
        k,
        alpha: p.alpha,
        blockSize: p.blockSize,
        sweeps: p.sweeps,
        start: bounds[t],
        end: bounds[t + 1],
      };
      alsSubspaceRows(args);
    }
    return;
  }
  if (wasm !== null) {
    wasm.gram.set(gram);
    const tasks: WasmAlsArgs[] = [];
    for (let t = 0; t + 1 < bounds.length; t++) {
      tasks.push({
        ...wasmRef(wasm.arena),
        indptr: m.indptr,
        indices: m.indices,
        data: m.data,
        X: side.X,
        Y,
        gram: wasm.gram,
        rowReg: side.reg,
        scratch: wasm.scratch.subarray(t * 4 * k, (t + 1) * 4 * k),
        k,
        alpha: p.alpha,
        cgSteps: p.cgSteps,
        start: bounds[t],
        end: bounds[t + 1],
      });
    }
    await pool.map('als.cgRowsWasm', tasks);
    return;
  }
  const tasks: AlsRowsArgs[] = [];
  for (let t = 0; t + 1 < bounds.length; t++) {
    tasks.push({
      indptr: m.indptr,
      indices: m.indices,
      data: m.data,
      X: side.X,
      Y,
      gram,
      rowReg: side.reg,
      k,
      alpha: p.alpha,
      cgSteps: p.cgSteps,
      solver: p.solver === 'cholesky' ? 'cholesky' : 'cg',
      start: bounds[t],
      end: bounds[t + 1],
    });
  }
  await pool.map('als.solveRows', tasks);
}

/** Bytes the wasm arena needs for both orientations of `train`, the factors and scratch. */
function arenaBytes(train: Csr, k: number, ranges: number): number {
  const z = nnz(train);
  const s = (n: number, bytesPerElement: number): number => WasmArena.size(n, bytesPerElement);
  return (
    s(train.rows + 1, 4) +
    s(train.cols + 1, 4) +
    4 * s(z, 4) +
    s(train.rows * k, 4) +
    s(train.cols * k, 4) +
    s(train.rows, 4) +
    s(train.cols, 4) +
    s(k * k, 4) +
    s(ranges * 4 * k, 4) +
    s(gramBlocks(train) * k * k, 8) +
    s(gramBlocks(train) * 4 * k, 8) +
    64 * 16
  );
}

/** Partial-Gramian blocks needed for the larger side. */
function gramBlocks(train: Csr): number {
  return Math.max(1, Math.ceil(Math.max(train.rows, train.cols) / GRAM_BLOCK));
}

/** Copies a CSR matrix into arena memory. */
function csrInto(arena: WasmArena, m: Csr): Csr {
  const z = nnz(m);
  const indptr = arena.int32(m.rows + 1);
  indptr.set(m.indptr);
  const indices = arena.int32(z);
  indices.set(m.indices.subarray(0, z));
  const data = arena.float32(z);
  data.set(m.data.subarray(0, z));
  return { rows: m.rows, cols: m.cols, indptr, indices, data };
}

/** Whether this fit runs the wasm kernel: CG solver, factors divisible by 4, SIMD available. */
function useWasm(p: AlsParams, train: Csr, ranges: number): boolean {
  if (p.kernel === 'js' || p.solver !== 'cg') return false;
  const fits =
    p.factors % 4 === 0 &&
    p.factors <= WASM_MAX_FACTORS &&
    arenaBytes(train, p.factors, ranges) < WASM_ARENA_MAX_BYTES;
  const ok = fits && wasmSimdSupported();
  if (!ok && p.kernel === 'wasm') {
    throw new CairnError(
      'CAIRN_UNSUPPORTED',
      'als.kernel=wasm needs WebAssembly SIMD, factors divisible by 4 and < 4 GiB of data',
    );
  }
  return ok;
}

/** Uniform [0, 0.01) initialisation, as implicit does: small, positive, seeded. */
function initFactors(a: Float32Array, rng: Rng): void {
  for (let q = 0; q < a.length; q++) a[q] = rng.float() * 0.01;
}

/**
 * Implicit ALS's objective: Σ_{u,i} c_ui (p_ui − x_u·y_i)² + Σ_u λ_u‖x_u‖² + Σ_i λ_i‖y_i‖², over
 * the full matrix (unobserved cells have c = 1, p = 0; λ_r as in `AlsParams.regExponent`). For
 * tests and diagnostics; costs about one CG step.
 */
export function alsLoss(
  train: Csr,
  userFactors: Float32Array,
  itemFactors: Float32Array,
  p: Pick<AlsParams, 'factors' | 'alpha' | 'regularization'> & Partial<Pick<AlsParams, 'regExponent'>>,
): number {
  const k = p.factors;
  const gram = gramianInThread(itemFactors, train.cols, k);
  let loss = alsLossRows(
    train.indptr,
    train.indices,
    train.data,
    userFactors,
    itemFactors,
    gram,
    k,
    p.alpha,
    0,
    train.rows,
  );
  const full = { ...DEFAULTS, ...CONTROL_DEFAULTS, ...p };
  const penalty = (m: Csr, F: Float32Array): number => {
    const reg = sideRegularization(m, full, false, null);
    let sum = 0;
    for (let r = 0; r < m.rows; r++) {
      let norm = 0;
      for (let f = 0; f < k; f++) norm += F[r * k + f] * F[r * k + f];
      sum += reg[r] * norm;
    }
    return sum;
  };
  loss += penalty(train, userFactors) + penalty(transpose(train), itemFactors);
  return loss;
}

/** A monitored fit's validation plan: where the held-out data comes from and how to score it. */
interface Monitor {
  options: Required<Pick<EarlyStoppingOptions, 'patience' | 'evalEvery' | 'restoreBest'>> &
    Pick<EarlyStoppingOptions, 'onEvaluate' | 'target'>;
  scorer: ValidationScorer;
  /** Row-major flags of entries held out of the fit (inner split), or null (explicit validation). */
  heldOut: Uint8Array | null;
}

/**
 * Sets up early stopping: an explicit validation set from the options wins; otherwise, when the
 * `earlyStopping` parameter is on, a seeded inner split of `train` is carved out.
 */
function monitorFor(train: Csr, p: AlsParams, opts: MonitoredFitOptions): Monitor | null {
  const given = opts.earlyStopping;
  const k = given?.k ?? 10;
  const maxUsers = given?.maxUsers ?? VALIDATION_MAX_USERS;
  if (given !== undefined) {
    return {
      options: {
        patience: given.patience,
        evalEvery: Math.max(1, Math.floor(given.evalEvery)),
        restoreBest: given.restoreBest ?? true,
        onEvaluate: given.onEvaluate,
        target: given.target,
      },
      scorer: new ValidationScorer(train, given.validation, p.factors, k, maxUsers, opts.seed),
      heldOut: null,
    };
  }
  if (!p.earlyStopping) return null;
  const split = holdOutValidation(train, p.validationFraction, opts.seed ^ 0x7a11da7e);
  return {
    options: { patience: p.patience, evalEvery: p.evalEvery, restoreBest: true },
    scorer: new ValidationScorer(split.fit, split.validation, p.factors, k, maxUsers, opts.seed),
    heldOut: split.heldOut,
  };
}

/**
 * `m`'s data with the held-out entries (row-major flags) set to weight 0. In implicit ALS a
 * zero-weight entry has confidence 1 and preference 0, exactly like an unstored cell, so the
 * masked matrix fits as if those entries were absent, while keeping the CSR structure (and the
 * wasm arena layout) that the full-data refit reuses.
 */
function maskedData(data: Float32Array, flags: Uint8Array): Float32Array {
  const out = data.slice(0, flags.length);
  for (let q = 0; q < flags.length; q++) if (flags[q] === 1) out[q] = 0;
  return out;
}

/**
 * Fits ALS. With `opts.earlyStopping` (an explicit validation set) or the `earlyStopping` parameter
 * (an inner split of `train`), iterations are monitored by validation NDCG and the best iterate kept.
 */
export async function fitAls(train: Csr, params: Params, opts: MonitoredFitOptions): Promise<AlsModel> {
  const p = alsParams(params);
  const k = p.factors;
  const { rows: nUsers, cols: nItems } = train;
  if (opts.signal?.aborted) throw abortReason(opts.signal);
  const monitor = monitorFor(train, p, opts);
  const heldOut = monitor?.heldOut ?? null;
  const trainT = transpose(train);
  // With an inner split both orientations start masked; the full data comes back for the refit.
  const fitU: Csr = heldOut === null ? train : { ...train, data: maskedData(train.data, heldOut) };
  const fitI: Csr =
    heldOut === null
      ? trainT
      : {
          ...trainT,
          data: maskedData(
            trainT.data,
            Uint8Array.from(transpose({ ...train, data: Float32Array.from(heldOut) }).data),
          ),
        };
  const pool = new WorkerPool({ threads: resolveThreads(opts.threads), signal: opts.signal });
  try {
    const shared = pool.needsShared;
    const ranges = rangeCount(pool);
    let wasm: WasmState | null = null;
    let byUser: Side;
    let byItem: Side;
    if (useWasm(p, train, ranges)) {
      // One arena (shared with the workers when there are any) holds everything the kernel reads.
      const arena = new WasmArena(arenaBytes(train, k, ranges), shared);
      const mu = csrInto(arena, fitU);
      const mi = csrInto(arena, fitI);
      byUser = { m: mu, X: arena.float32(nUsers * k), reg: sideRegularization(mu, p, shared, arena) };
      byItem = { m: mi, X: arena.float32(nItems * k), reg: sideRegularization(mi, p, shared, arena) };
      wasm = {
        arena,
        gram: arena.float32(k * k),
        scratch: arena.float32(ranges * 4 * k),
        gramParts: arena.float64(gramBlocks(train) * k * k),
        gramTmp: arena.float64(gramBlocks(train) * 4 * k),
      };
    } else {
      // Workers read the interactions through shared memory; the transpose drives the item step.
      // A masked copy is private to this fit; the caller's matrix is never written.
      const mu = shared ? toShared(fitU) : fitU;
      const mi = shared ? toShared(fitI) : fitI;
      byUser = { m: mu, X: allocFloat32(nUsers * k, shared), reg: sideRegularization(mu, p, shared, null) };
      byItem = { m: mi, X: allocFloat32(nItems * k, shared), reg: sideRegularization(mi, p, shared, null) };
    }
    const X = byUser.X;
    const Y = byItem.X;
    const rng = new Rng(opts.seed);
    initFactors(X, rng);
    initFactors(Y, rng);
    opts.onProgress?.(0, `als: ${nUsers} users × ${nItems} items, ${nnz(train)} interactions`);
    const stopper =
      monitor === null ? null : new EarlyStopper(monitor.options.patience, monitor.options.target);
    const bestX = monitor?.options.restoreBest ? new Float32Array(X.length) : null;
    const bestY = monitor?.options.restoreBest ? new Float32Array(Y.length) : null;
    const t0 = performance.now();
    let evalMs = 0;
    let used = 0;
    for (let it = 0; it < p.iterations; it++) {
      if (opts.signal?.aborted) throw abortReason(opts.signal);
      await solveSide(pool, byUser, Y, p, wasm, opts.signal);
      await solveSide(pool, byItem, X, p, wasm, opts.signal);
      used = it + 1;
      opts.onProgress?.((it + 1) / p.iterations, `als: iteration ${it + 1}/${p.iterations}`);
      if (monitor === null || stopper === null) continue;
      if (used % monitor.options.evalEvery !== 0 && used !== p.iterations) continue;
      const e0 = performance.now();
      const ndcg = monitor.scorer.ndcg(X, Y, k);
      if (stopper.update(ndcg, used) && bestX !== null && bestY !== null) {
        bestX.set(X);
        bestY.set(Y);
      }
      evalMs += performance.now() - e0;
      monitor.options.onEvaluate?.({
        iteration: used,
        ndcg,
        trainSeconds: (performance.now() - t0 - evalMs) / 1000,
      });
      if (stopper.shouldStop) break;
    }
    let report: EarlyStoppingReport | null = null;
    if (stopper !== null) {
      if (bestX !== null && bestY !== null && stopper.bestIteration > 0) {
        X.set(bestX);
        Y.set(bestY);
      }
      report = {
        iterationsUsed: used,
        bestIteration: stopper.bestIteration,
        validationNdcg: Number(stopper.best.toFixed(6)),
      };
      opts.onProgress?.(
        1,
        `als: stopped after iteration ${used}, kept iteration ${stopper.bestIteration} (validation ndcg@10 ${report.validationNdcg})`,
      );
    }
    if (heldOut !== null) {
      // Put the held-out interactions back and take a few full-data steps from the best iterate.
      byUser.m.data.set(train.data.subarray(0, heldOut.length));
      byItem.m.data.set(trainT.data.subarray(0, heldOut.length));
      fillRegularization(byUser.m, p, byUser.reg);
      fillRegularization(byItem.m, p, byItem.reg);
      for (let it = 0; it < p.refitIterations; it++) {
        if (opts.signal?.aborted) throw abortReason(opts.signal);
        await solveSide(pool, byUser, Y, p, wasm, opts.signal);
        await solveSide(pool, byItem, X, p, wasm, opts.signal);
        opts.onProgress?.(1, `als: full-data iteration ${it + 1}/${p.refitIterations}`);
      }
    }
    const gram = await poolGramian(pool, Y, nItems, k, wasm);
    // Hand back ordinary arrays: shared or arena memory belongs to the training run.
    const uf = shared || wasm !== null ? new Float32Array(X) : X;
    const itf = shared || wasm !== null ? new Float32Array(Y) : Y;
    return new AlsModel(p, nUsers, nItems, uf, itf, gram, report);
  } finally {
    await pool.close();
  }
}

function loadAls(artifact: ModelArtifact): AlsModel {
  if (artifact.algorithm !== 'als')
    throw new CairnError('CAIRN_VALIDATION', `not an als artifact: ${artifact.algorithm}`);
  if (artifact.formatVersion !== ALS_FORMAT_VERSION && artifact.formatVersion !== 1) {
    throw new CairnError(
      'CAIRN_UNSUPPORTED',
      `als artifact format ${artifact.formatVersion} is not supported`,
    );
  }
  // Format 1 predates frequency scaling: every row had the same λ.
  const p = alsParams(
    artifact.formatVersion === 1 ? { ...artifact.params, regExponent: 0 } : artifact.params,
  );
  const users = Number(artifact.meta.users);
  const items = Number(artifact.meta.items);
  const uf = artifact.arrays.userFactors;
  const itf = artifact.arrays.itemFactors;
  if (
    !(uf instanceof Float32Array) ||
    !(itf instanceof Float32Array) ||
    Number(artifact.meta.factors) !== p.factors
  ) {
    throw new CairnError('CAIRN_VALIDATION', 'als artifact is malformed');
  }
  return new AlsModel(p, users, items, uf, itf);
}

export const alsSpec: AlgorithmSpec = {
  name: 'als',
  defaults: paramsRecord({ ...DEFAULTS, ...CONTROL_DEFAULTS }),
  space: {
    factors: { kind: 'int', min: 16, max: 256, log: true },
    regularization: { kind: 'float', min: 0.01, max: 3000, log: true },
    alpha: { kind: 'float', min: 0.5, max: 200, log: true },
    iterations: { kind: 'int', min: 5, max: 30 },
  },
  fit: fitAls,
  load: loadAls,
};
