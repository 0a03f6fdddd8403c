/**
 * Early stopping for iterative fits (ALS iterations, BPR epochs): a seeded inner validation split
 * carved from the training matrix, a cheap NDCG@k on a sample of its users computed straight from
 * the factor arrays, and the bookkeeping that keeps the best iterate and stops after `patience`
 * evaluations without improvement.
 *
 * The NDCG here follows the evaluation module's definitions (full ranking over every item not in
 * the user's fit data, binary gains 1/log2(rank + 1), IDCG over min(|relevant|, k)), but lives in
 * the numeric core because algorithms may not import evaluation/ and because it has to run between
 * iterations on raw factors, without building a model.
 */
import { matVec, matVecPairF64 } from './kernels.ts';
import { Rng } from './random.ts';
import type { Csr } from './sparse.ts';
import type { FitOptions } from './types.ts';

/** One evaluation during a monitored fit. */
export interface EarlyStoppingEvent {
  /** Iterations (ALS) or epochs (BPR) completed when measured. */
  iteration: number;
  /** NDCG@k on the validation users. */
  ndcg: number;
  /** Seconds spent fitting so far, excluding the time spent in these evaluations. */
  trainSeconds: number;
}

/**
 * An explicit validation set for a monitored fit (benchmarks, callers that carve their own split).
 * With it the whole `train` matrix is fitted and nothing is held out internally.
 */
export interface EarlyStoppingOptions {
  /** Held-out interactions (rows = the fit's users, cols = its items); entries with weight ≤ 0 are ignored. */
  validation: Csr;
  /** Evaluations without improvement before stopping; 0 never stops early (monitor only). */
  patience: number;
  /** Evaluate every this many iterations/epochs (and always after the last one). */
  evalEvery: number;
  /** Cut-off of the NDCG. Default 10. */
  k?: number;
  /** Validation users evaluated at most (a seeded sample); default `VALIDATION_MAX_USERS`. */
  maxUsers?: number;
  /** Stop as soon as the validation NDCG reaches this value (time-to-quality measurements). */
  target?: number;
  /** Keep the best iterate (default) rather than the last one. */
  restoreBest?: boolean;
  /** Called after every evaluation. */
  onEvaluate?: (e: EarlyStoppingEvent) => void;
}

/** `FitOptions` of the iterative algorithms (ALS, BPR): optionally monitored on a validation set. */
export interface MonitoredFitOptions extends FitOptions {
  earlyStopping?: EarlyStoppingOptions;
}

/**
 * Validation users scored per evaluation. Scoring is users × items × factors multiply-adds, so the
 * sample bounds an evaluation's cost independently of the data size; 1,000 users give NDCG@10 to
 * about ±0.005 on the sets we measured, enough to see a plateau.
 */
export const VALIDATION_MAX_USERS = 1000;

/** What `holdOutValidation` returns. */
export interface ValidationSplit {
  /** One flag per stored entry of the training matrix (row-major order): 1 when held out. */
  heldOut: Uint8Array;
  /** The held-out entries as a matrix of the training matrix's shape. */
  validation: Csr;
  /** The training matrix without the held-out entries. */
  fit: Csr;
}

/**
 * A seeded per-user holdout: each user with at least two positive interactions gives a share
 * `fraction` of them (stochastically rounded, at most all but one) to the validation part.
 * Deterministic for a seed; only positive weights are held out (negative feedback stays in the fit).
 */
export function holdOutValidation(train: Csr, fraction: number, seed: number): ValidationSplit {
  const rng = new Rng(seed);
  const total = train.indptr[train.rows];
  const heldOut = new Uint8Array(total);
  const pos: number[] = [];
  for (let u = 0; u < train.rows; u++) {
    pos.length = 0;
    for (let q = train.indptr[u]; q < train.indptr[u + 1]; q++) if (train.data[q] > 0) pos.push(q);
    if (pos.length < 2) continue;
    const want = Math.min(pos.length - 1, Math.floor(fraction * pos.length + rng.float()));
    // Partial Fisher-Yates: the first `want` positions become the held-out ones.
    for (let j = 0; j < want; j++) {
      const r = j + rng.int(pos.length - j);
      const t = pos[j];
      pos[j] = pos[r];
      pos[r] = t;
      heldOut[pos[j]] = 1;
    }
  }
  return { heldOut, validation: pick(train, heldOut, 1), fit: pick(train, heldOut, 0) };
}

/** The entries of `m` whose flag equals `keep`. */
function pick(m: Csr, flags: Uint8Array, keep: number): Csr {
  let n = 0;
  for (let q = 0; q < flags.length; q++) if (flags[q] === keep) n++;
  const indptr = new Int32Array(m.rows + 1);
  const indices = new Int32Array(n);
  const data = new Float32Array(n);
  let o = 0;
  for (let u = 0; u < m.rows; u++) {
    for (let q = m.indptr[u]; q < m.indptr[u + 1]; q++) {
      if (flags[q] !== keep) continue;
      indices[o] = m.indices[q];
      data[o] = m.data[q];
      o++;
    }
    indptr[u + 1] = o;
  }
  return { rows: m.rows, cols: m.cols, indptr, indices, data };
}

/**
 * Scores validation users from raw factors and computes their mean NDCG@k. Buffers are allocated
 * once here, so repeated evaluations allocate nothing.
 */
export class ValidationScorer {
  readonly users: Int32Array;
  private readonly fit: Csr;
  private readonly validation: Csr;
  private readonly k: number;
  private readonly scores: Float32Array;
  private readonly x: Float64Array;
  private readonly topItems: Int32Array;
  private readonly topScores: Float32Array;
  private readonly discount: Float64Array;
  /** Two users' scores (n each) and factor vectors (k each), for `ndcg`'s pairs. */
  private pairScores = new Float32Array(0);
  private xPair = new Float64Array(0);

  /**
   * @param fit the interactions the model was fitted on (excluded from each user's ranking)
   * @param validation held-out interactions of the same shape
   * @param factors the model's rank
   */
  constructor(fit: Csr, validation: Csr, factors: number, k: number, maxUsers: number, seed: number) {
    this.fit = fit;
    this.validation = validation;
    this.k = k;
    const eligible: number[] = [];
    for (let u = 0; u < validation.rows; u++) {
      let any = false;
      for (let q = validation.indptr[u]; q < validation.indptr[u + 1]; q++) any ||= validation.data[q] > 0;
      if (any) eligible.push(u);
    }
    if (eligible.length > maxUsers) {
      // Seeded partial shuffle, then sorted so factor rows are read in order.
      const rng = new Rng(seed ^ 0x5eed);
      for (let j = 0; j < maxUsers; j++) {
        const r = j + rng.int(eligible.length - j);
        const t = eligible[j];
        eligible[j] = eligible[r];
        eligible[r] = t;
      }
      eligible.length = maxUsers;
      eligible.sort((a, b) => a - b);
    }
    this.users = Int32Array.from(eligible);
    this.scores = new Float32Array(fit.cols);
    this.x = new Float64Array(factors);
    this.topItems = new Int32Array(k);
    this.topScores = new Float32Array(k);
    this.discount = new Float64Array(k);
    for (let r = 0; r < k; r++) this.discount[r] = 1 / Math.log2(r + 2);
  }

  /**
   * Mean NDCG@k over the sampled users of scores X[u]·Y[i] (+ bias[i] when given); 0 without
   * validation users.
   */
  ndcg(X: Float32Array, Y: Float32Array, factors: number, bias: Float32Array | null = null): number {
    const { users, x, scores } = this;
    const nItems = this.fit.cols;
    if (this.pairScores.length !== 2 * nItems || this.xPair.length !== 2 * factors) {
      this.pairScores = new Float32Array(2 * nItems);
      this.xPair = new Float64Array(2 * factors);
    }
    const { pairScores, xPair } = this;
    let sum = 0;
    let j = 0;
    // Two users at a time: each factor row of Y is read and widened once for both (the arithmetic per
    // user is `matVec`'s, so the scores are the same bits).
    for (; j + 2 <= users.length; j += 2) {
      for (let f = 0; f < factors; f++) {
        xPair[f] = X[users[j] * factors + f];
        xPair[factors + f] = X[users[j + 1] * factors + f];
      }
      matVecPairF64(Y, factors, xPair, pairScores, nItems);
      sum += this.userNdcg(users[j], pairScores.subarray(0, nItems), bias);
      sum += this.userNdcg(users[j + 1], pairScores.subarray(nItems), bias);
    }
    for (; j < users.length; j++) {
      for (let f = 0; f < factors; f++) x[f] = X[users[j] * factors + f];
      matVec(Y, factors, x, scores, 0, nItems);
      sum += this.userNdcg(users[j], scores, bias);
    }
    return users.length > 0 ? sum / users.length : 0;
  }

  /** NDCG@k of user `u` from the model's scores of every item (overwritten: bias added, fit items masked). */
  private userNdcg(u: number, scores: Float32Array, bias: Float32Array | null): number {
    const { fit, validation, k, topItems, topScores, discount } = this;
    const nItems = fit.cols;
    if (bias !== null) for (let i = 0; i < nItems; i++) scores[i] += bias[i];
    for (let q = fit.indptr[u]; q < fit.indptr[u + 1]; q++) scores[fit.indices[q]] = -Infinity;
    // Top-k by insertion into a sorted buffer: k is small; ties keep the lower item index first.
    let n = 0;
    for (let i = 0; i < nItems; i++) {
      const s = scores[i];
      if (n === k && !(s > topScores[k - 1])) continue;
      let p = n < k ? n++ : k - 1;
      while (p > 0 && topScores[p - 1] < s) {
        topScores[p] = topScores[p - 1];
        topItems[p] = topItems[p - 1];
        p--;
      }
      topScores[p] = s;
      topItems[p] = i;
    }
    const vs = validation.indptr[u];
    const ve = validation.indptr[u + 1];
    let relevant = 0;
    for (let q = vs; q < ve; q++) if (validation.data[q] > 0) relevant++;
    let dcg = 0;
    for (let r = 0; r < n; r++) {
      if (topScores[r] === -Infinity) break;
      if (isRelevant(validation, vs, ve, topItems[r])) dcg += discount[r];
    }
    let idcg = 0;
    for (let r = 0; r < Math.min(k, relevant); r++) idcg += discount[r];
    return idcg > 0 ? dcg / idcg : 0;
  }
}

/** Whether `item` is a positive entry of the sorted row slice [from, to). */
function isRelevant(m: Csr, from: number, to: number, item: number): boolean {
  let lo = from;
  let hi = to - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const v = m.indices[mid];
    if (v === item) return m.data[mid] > 0;
    if (v < item) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

/**
 * Tracks the best validation score and decides when to stop: after `patience` consecutive
 * evaluations that do not beat the best (0: never), or once `target` is reached.
 */
export class EarlyStopper {
  best = -Infinity;
  bestIteration = 0;
  private sinceBest = 0;
  private readonly patience: number;
  private readonly target: number;

  constructor(patience: number, target = Infinity) {
    this.patience = patience;
    this.target = target;
  }

  /** Records a score; returns true when it is a new best (the caller snapshots the iterate). */
  update(score: number, iteration: number): boolean {
    if (score > this.best) {
      this.best = score;
      this.bestIteration = iteration;
      this.sinceBest = 0;
      return true;
    }
    this.sinceBest++;
    return false;
  }

  /** Whether to stop now. */
  get shouldStop(): boolean {
    return this.best >= this.target || (this.patience > 0 && this.sinceBest >= this.patience);
  }
}

/**
 * What an early-stopped fit reports: kept on the model (`fitReport`) and in its artifact's meta,
 * not in `params`, so a model's params stay valid input for another fit.
 */
export interface EarlyStoppingReport {
  /** Iterations (ALS) or epochs (BPR) run before stopping, not counting the full-data refit. */
  iterationsUsed: number;
  /** The iteration whose factors were kept (before the refit). */
  bestIteration: number;
  /** Validation NDCG@k at `bestIteration`. */
  validationNdcg: number;
}

/** The report as artifact meta entries (prefixed so they cannot clash with shape entries). */
export function reportMeta(r: EarlyStoppingReport | null): Record<string, number> {
  return r === null
    ? {}
    : {
        earlyStoppingIterationsUsed: r.iterationsUsed,
        earlyStoppingBestIteration: r.bestIteration,
        earlyStoppingValidationNdcg: r.validationNdcg,
      };
}
