/**
 * BPR-MF (Rendle et al. 2009): pairwise ranking of a user's positives above uniformly drawn
 * negatives, by SGD on user factors, item factors and an item bias. One epoch draws as many
 * (user, positive) pairs as there are interactions, each uniformly among the stored entries, so
 * active users get proportionally more updates (as in implicit); positives are processed in sorted
 * blocks for memory locality (kernels.ts `BPR_BLOCK`). With several threads the epoch is
 * split across workers that update the shared factor arrays without locks (Hogwild; collisions
 * are rare on sparse data and harmless to SGD); with one thread a seed gives one exact model.
 */
import { CairnError } from '../errors/errors.ts';
import {
  BPR_BLOCK,
  bprFoldIn,
  cosinePair,
  cosinePairsTo,
  cosineToAll,
  invNorms,
  matVec,
  matVecRows,
  type BprEpochArgs,
  type BprEpochResult,
} from './kernels.ts';
import { abortReason, allocFloat32, resolveThreads, WorkerPool } from './parallel.ts';
import {
  EarlyStopper,
  holdOutValidation,
  ValidationScorer,
  VALIDATION_MAX_USERS,
  reportMeta,
  type EarlyStoppingReport,
  type MonitoredFitOptions,
} from './early-stopping.ts';
import { readBoolean, readChoice, readNumber } from './params.ts';
import { mixSeed, Rng } from './random.ts';
import { nnz, toShared, type Csr } from './sparse.ts';
import {
  WASM_ARENA_MAX_BYTES,
  WASM_MAX_FACTORS,
  WasmArena,
  wasmRef,
  wasmSimdSupported,
  type WasmBprArgs,
} from './wasm.ts';
import type { AlgorithmSpec, FittedModel, ModelArtifact, Params, UserHistory } from './types.ts';

export const BPR_FORMAT_VERSION = 1;

/** Samples per in-thread task (one sorted block): bounds the time between abort checks. */
const CHUNK_SAMPLES = BPR_BLOCK;

export interface BprParams extends BprControlParams {
  factors: number;
  learningRate: number;
  regularization: number;
  iterations: number;
  /**
   * Negative candidates per sample, drawn uniformly; the highest-scoring one is used (dynamic
   * negative sampling, Zhang et al. 2013). 1 is classic BPR. 0 (the default) picks one candidate
   * per 1,000 catalog items (at least 1), so the negative comes from about the same absolute rank
   * band — the user's top ~1,000 — whatever the catalog size (up to 10 candidates, from 10,000
   * items on); fitted models record the count used.
   */
  negatives: number;
  /** SGD implementation: 'wasm' (SIMD, float32), 'js' (the double-precision reference) or 'auto'. */
  kernel: 'auto' | 'js' | 'wasm';
}

/**
 * Chosen on validation splits (see als.ts) of MovieTweetings-100k and synthetic data at 1e5 and 1e6
 * events: learning rate 0.02 was best or within 2% of best on all three. Uniform negatives left
 * BPR below popularity on MovieTweetings (10.5k items); the best candidate count grew with the
 * catalog (1 at 1–2k items, 2–5 at 3k, 5–20 at 10k), hence one per 1,000 items: +17% NDCG@10 on
 * MovieTweetings, +5% on its 5-core, −2% to +4% on synthetic sets. With those negatives, λ 0.02
 * (was 0.01) gained 3–12% on the synthetic sets (most on the dense one) for ≤ 2% lost on the
 * others (docs/benchmarks.md).
 */
const DEFAULTS: Omit<BprParams, keyof BprControlParams> = {
  factors: 64,
  learningRate: 0.02,
  regularization: 0.02,
  iterations: 100,
  negatives: 0,
  kernel: 'auto',
};

/**
 * Early stopping on an inner validation split, as for ALS (als.ts `AlsControlParams`): a seeded
 * share `validationFraction` of every user's interactions is held out, NDCG@10 on a sample of them
 * is measured every `evalEvery` epochs, and the fit stops after `patience` evaluations without
 * improvement, keeping the best iterate; `refitEpochs` epochs on the full data then follow.
 * `iterations` becomes the maximum. Off by default.
 */
export interface BprControlParams {
  earlyStopping: boolean;
  patience: number;
  evalEvery: number;
  validationFraction: number;
  refitEpochs: number;
}

/**
 * BPR's validation NDCG can sit on a plateau for tens of epochs before it climbs (MovieTweetings:
 * flat from epoch 5 to 40, then +16% by epoch 100), so patience spans 50 epochs.
 */
const CONTROL_DEFAULTS: BprControlParams = {
  earlyStopping: false,
  patience: 10,
  evalEvery: 5,
  validationFraction: 0.1,
  refitEpochs: 1,
};

function bprControlParams(params: Params): BprControlParams {
  const d = CONTROL_DEFAULTS;
  const int = (name: keyof BprControlParams, fallback: number, min: number, max: number): number =>
    readNumber(params, 'bpr', name, fallback, { min, max, integer: true });
  return {
    earlyStopping: readBoolean(params, 'bpr', 'earlyStopping', d.earlyStopping),
    patience: int('patience', d.patience, 0, 1000),
    evalEvery: int('evalEvery', d.evalEvery, 1, 1000),
    validationFraction: readNumber(params, 'bpr', 'validationFraction', d.validationFraction, {
      min: 0,
      max: 0.5,
      exclusiveMin: true,
    }),
    refitEpochs: int('refitEpochs', d.refitEpochs, 0, 1000),
  };
}

/** Reads and validates BPR parameters (missing ones take defaults). */
export function bprParams(params: Params): BprParams {
  return {
    ...bprControlParams(params),
    factors: readNumber(params, 'bpr', 'factors', DEFAULTS.factors, { min: 1, max: 4096, integer: true }),
    learningRate: readNumber(params, 'bpr', 'learningRate', DEFAULTS.learningRate, { min: 0, max: 100 }),
    regularization: readNumber(params, 'bpr', 'regularization', DEFAULTS.regularization, {
      min: 0,
      max: 1e6,
    }),
    iterations: readNumber(params, 'bpr', 'iterations', DEFAULTS.iterations, {
      min: 0,
      max: 100000,
      integer: true,
    }),
    negatives: readNumber(params, 'bpr', 'negatives', DEFAULTS.negatives, {
      min: 0,
      max: 1000,
      integer: true,
    }),
    kernel: readChoice(params, 'bpr', 'kernel', DEFAULTS.kernel, ['auto', 'js', 'wasm'] as const),
  };
}

/**
 * SGD steps of a fold-in: eight passes over a short history, capped so a fold-in stays near a
 * millisecond. Only the user vector moves, so a larger step than training's converges in that
 * budget (measured on validation splits: as good as 40 passes at the training rate).
 */
function foldInSteps(historyLength: number): number {
  return Math.min(2048, Math.max(256, 8 * historyLength));
}
const FOLD_IN_MIN_RATE = 0.05;

export class BprModel implements FittedModel {
  readonly algorithm = 'bpr' as const;
  readonly params: Params;
  readonly nUsers: number;
  readonly nItems: number;
  readonly factors: number;
  readonly userFactors: Float32Array;
  readonly itemFactors: Float32Array;
  readonly itemBias: Float32Array;
  /** Early stopping's report, or null when the fit ran a fixed number of epochs. */
  readonly fitReport: EarlyStoppingReport | null;
  private readonly p: BprParams;
  private readonly x: Float64Array;
  private itemInvNorms: Float32Array | null = null;

  constructor(
    p: BprParams,
    nUsers: number,
    nItems: number,
    userFactors: Float32Array,
    itemFactors: Float32Array,
    itemBias: Float32Array,
    /** Early stopping's report, when the fit used it. */
    fitReport: EarlyStoppingReport | null = null,
  ) {
    const k = p.factors;
    if (
      userFactors.length !== nUsers * k ||
      itemFactors.length !== nItems * k ||
      itemBias.length !== nItems
    ) {
      throw new CairnError('CAIRN_VALIDATION', 'bpr: arrays do not match the model shape');
    }
    this.p = p;
    this.params = { ...p };
    this.fitReport = fitReport;
    this.nUsers = nUsers;
    this.nItems = nItems;
    this.factors = k;
    this.userFactors = userFactors;
    this.itemFactors = itemFactors;
    this.itemBias = itemBias;
    this.x = new Float64Array(k);
  }

  /**
   * The user's vector: trained for a known user unless `foldIn`, else learnt from `history` by SGD
   * with item factors fixed (deterministic for a given history). Scratch, overwritten next call.
   */
  userVector(user: number, history: UserHistory, foldIn = false): Float64Array {
    const k = this.factors;
    const x = this.x;
    if (user >= 0 && user < this.nUsers && !foldIn) {
      for (let f = 0; f < k; f++) x[f] = this.userFactors[user * k + f];
      return x;
    }
    for (let q = 0; q < history.items.length; q++) {
      const i = history.items[q];
      if (!(i >= 0 && i < this.nItems)) throw new RangeError(`bpr: history item ${i} out of range`);
    }
    bprFoldIn(
      this.itemFactors,
      this.itemBias,
      k,
      this.nItems,
      history.items,
      history.weights,
      Math.max(this.p.learningRate, FOLD_IN_MIN_RATE),
      this.p.regularization,
      foldInSteps(history.items.length),
      x,
      this.p.negatives,
    );
    return x;
  }

  scoreUser(user: number, history: UserHistory, out: Float32Array, foldIn = false): void {
    this.scoreVector(this.userVector(user, history, foldIn), out);
  }

  scoreVector(x: Float64Array, out: Float32Array): void {
    matVec(this.itemFactors, this.factors, x, out, 0, this.nItems);
    const b = this.itemBias;
    for (let i = 0; i < this.nItems; i++) out[i] += b[i];
  }

  scoreItems(user: number, history: UserHistory, items: Int32Array, out: Float32Array, foldIn = false): void {
    const x = this.userVector(user, history, foldIn);
    matVecRows(this.itemFactors, this.factors, x, items, out);
    const b = this.itemBias;
    // Out-of-range items already hold −Infinity, which the bias does not change.
    for (let j = 0; j < items.length; j++) if (out[j] !== -Infinity) out[j] += b[items[j]];
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
      algorithm: 'bpr',
      formatVersion: BPR_FORMAT_VERSION,
      params: { ...this.params },
      meta: { factors: this.factors, users: this.nUsers, items: this.nItems, ...reportMeta(this.fitReport) },
      arrays: { userFactors: this.userFactors, itemFactors: this.itemFactors, itemBias: this.itemBias },
    };
  }
}

/** Bytes of the wasm arena for one fit: the matrix, the row of every entry, factors, states. */
function arenaBytes(train: Csr, k: number, qbufTotal: number, chunks: number): number {
  const s = (n: number, b: number): number => WasmArena.size(n, b);
  const z = nnz(train);
  return (
    s(train.rows + 1, 4) +
    s(z, 4) +
    s(train.rows * k, 4) +
    s(train.cols * k, 4) +
    s(train.cols, 4) +
    s(qbufTotal, 4) +
    s(chunks * 8, 4) +
    16 * 16
  );
}

/** Whether this fit runs the wasm kernel: factors divisible by 4 and SIMD available. */
function useWasm(p: BprParams, train: Csr, qbufTotal: number, chunks: number): boolean {
  if (p.kernel === 'js') return false;
  const ok =
    p.factors % 4 === 0 &&
    p.factors <= WASM_MAX_FACTORS &&
    arenaBytes(train, p.factors, qbufTotal, chunks) < WASM_ARENA_MAX_BYTES &&
    wasmSimdSupported();
  if (!ok && p.kernel === 'wasm') {
    throw new CairnError(
      'CAIRN_UNSUPPORTED',
      'bpr.kernel=wasm needs WebAssembly SIMD, factors divisible by 4 and < 4 GiB of data',
    );
  }
  return ok;
}

/**
 * The automatic candidate count stops here: each candidate costs a dot product, so an epoch (and a
 * fold-in) at 10 candidates costs about 3–4× a uniform one (measured: 20 cost 7×), and 10 already
 * took most of the gain on the 10k-item sets.
 */
const MAX_AUTO_NEGATIVES = 10;

/** Candidates per sample for a catalog of `nItems` (see `BprParams.negatives`). */
export function negativeCandidates(negatives: number, nItems: number): number {
  return negatives > 0 ? negatives : Math.min(MAX_AUTO_NEGATIVES, Math.max(1, Math.round(nItems / 1000)));
}

/**
 * Fits BPR. With `opts.earlyStopping` (an explicit validation set) or the `earlyStopping` parameter
 * (an inner split of `train`), epochs are monitored by validation NDCG and the best iterate is kept.
 */
export async function fitBpr(train: Csr, params: Params, opts: MonitoredFitOptions): Promise<BprModel> {
  const given = bprParams(params);
  const p = { ...given, negatives: negativeCandidates(given.negatives, train.cols) };
  const k = p.factors;
  const { rows: nUsers, cols: nItems } = train;
  if (opts.signal?.aborted) throw abortReason(opts.signal);
  // The matrix the epochs sample from: `train`, or its inner-split fit part until the refit.
  const es = opts.earlyStopping;
  const split =
    es === undefined && p.earlyStopping
      ? holdOutValidation(train, p.validationFraction, opts.seed ^ 0x7a11da7e)
      : null;
  const fitM = split?.fit ?? train;
  const scorer =
    es !== undefined || split !== null
      ? new ValidationScorer(
          fitM,
          es?.validation ?? split!.validation,
          k,
          es?.k ?? 10,
          es?.maxUsers ?? VALIDATION_MAX_USERS,
          opts.seed,
        )
      : null;
  const patience = es?.patience ?? p.patience;
  const evalEvery = Math.max(1, Math.floor(es?.evalEvery ?? p.evalEvery));
  const restoreBest = es?.restoreBest ?? true;
  const pool = new WorkerPool({ threads: resolveThreads(opts.threads), signal: opts.signal });
  try {
    const shared = pool.needsShared;
    const total = nnz(train);
    // One task per thread in a worker pool; bounded chunks in-thread so aborts land promptly.
    const chunks = pool.inThread ? Math.max(1, Math.ceil(total / CHUNK_SAMPLES)) : pool.threads;
    let arena: WasmArena | null = null;
    let indptr: Int32Array;
    let indices: Int32Array;
    let X: Float32Array;
    let Y: Float32Array;
    let bias: Float32Array;
    let states: Int32Array | null = null;
    let qbufs: Int32Array | null = null;
    // In-thread chunks run one after another and share one buffer; workers each need their own.
    const buffers = pool.inThread ? 1 : chunks;
    const qbufLen = Math.max(1, Math.min(BPR_BLOCK, Math.ceil(total / chunks)));
    /** Switches the sampled matrix to `m` (the fit part, then the full data); returns its size. */
    let useMatrix: (m: Csr) => number;
    if (useWasm(p, train, buffers * qbufLen, chunks)) {
      const a = new WasmArena(arenaBytes(train, k, buffers * qbufLen, chunks), shared);
      arena = a;
      indptr = a.int32(nUsers + 1);
      const full = a.int32(total);
      indices = full;
      X = a.float32(nUsers * k);
      Y = a.float32(nItems * k);
      bias = a.float32(nItems);
      states = a.int32(chunks * 8);
      qbufs = a.int32(buffers * qbufLen);
      // The arena is sized for the full matrix; the fit part is a prefix-sized subset of it.
      // The kernels sample among all of `indices`, so they get a view of the used prefix.
      useMatrix = (m) => {
        indptr.set(m.indptr);
        full.set(m.indices.subarray(0, nnz(m)));
        indices = full.subarray(0, nnz(m));
        return nnz(m);
      };
    } else {
      X = allocFloat32(nUsers * k, shared);
      Y = allocFloat32(nItems * k, shared);
      bias = allocFloat32(nItems, shared);
      indptr = train.indptr;
      indices = train.indices.subarray(0, total);
      useMatrix = (m) => {
        const s = shared ? toShared(m) : m;
        indptr = s.indptr;
        indices = s.indices.subarray(0, nnz(m));
        return nnz(m);
      };
    }
    let samplesPerEpoch = useMatrix(fitM);
    // Small symmetric init scaled by 1/k keeps initial scores near zero whatever the rank.
    const rng = new Rng(opts.seed);
    for (let q = 0; q < X.length; q++) X[q] = (rng.float() - 0.5) / k;
    for (let q = 0; q < Y.length; q++) Y[q] = (rng.float() - 0.5) / k;
    opts.onProgress?.(0, `bpr: ${nUsers} users × ${nItems} items, ${total} interactions`);
    const epoch = async (e: number): Promise<number> => {
      const tasks: (BprEpochArgs | WasmBprArgs)[] = [];
      for (let c = 0; c < chunks; c++) {
        const samples =
          Math.floor((samplesPerEpoch * (c + 1)) / chunks) - Math.floor((samplesPerEpoch * c) / chunks);
        const common: BprEpochArgs = {
          indptr,
          indices,
          X,
          Y,
          bias,
          k,
          nItems,
          learningRate: p.learningRate,
          regularization: p.regularization,
          samples,
          seed: mixSeed(opts.seed, e, c),
          negatives: p.negatives,
        };
        if (arena !== null && states !== null && qbufs !== null) {
          const b = c % buffers;
          tasks.push({
            ...common,
            ...wasmRef(arena),
            state: states.subarray(c * 8, c * 8 + 6),
            qbuf: qbufs.subarray(b * qbufLen, (b + 1) * qbufLen),
          });
        } else tasks.push(common);
      }
      const results = await pool.map<BprEpochResult>(arena !== null ? 'bpr.epochWasm' : 'bpr.epoch', tasks);
      let correct = 0;
      let used = samplesPerEpoch;
      for (const r of results) {
        correct += r.correct;
        used -= r.skipped;
      }
      return used > 0 ? correct / used : 0;
    };
    const stopper = scorer === null ? null : new EarlyStopper(patience, es?.target);
    const best = stopper !== null && restoreBest ? [X.slice(), Y.slice(), bias.slice()] : null;
    const t0 = performance.now();
    let evalMs = 0;
    let done = 0;
    for (let e = 0; e < p.iterations; e++) {
      if (opts.signal?.aborted) throw abortReason(opts.signal);
      const acc = await epoch(e);
      done = e + 1;
      opts.onProgress?.(
        (e + 1) / p.iterations,
        `bpr: epoch ${e + 1}/${p.iterations}, train pair accuracy ${acc.toFixed(4)}`,
      );
      if (scorer === null || stopper === null) continue;
      if (done % evalEvery !== 0 && done !== p.iterations) continue;
      const e0 = performance.now();
      const ndcg = scorer.ndcg(X, Y, k, bias);
      if (stopper.update(ndcg, done) && best !== null) {
        best[0].set(X);
        best[1].set(Y);
        best[2].set(bias);
      }
      evalMs += performance.now() - e0;
      es?.onEvaluate?.({ iteration: done, ndcg, trainSeconds: (performance.now() - t0 - evalMs) / 1000 });
      if (stopper.shouldStop) break;
    }
    let report: EarlyStoppingReport | null = null;
    if (stopper !== null) {
      if (best !== null && stopper.bestIteration > 0) {
        X.set(best[0]);
        Y.set(best[1]);
        bias.set(best[2]);
      }
      report = {
        iterationsUsed: done,
        bestIteration: stopper.bestIteration,
        validationNdcg: Number(stopper.best.toFixed(6)),
      };
      opts.onProgress?.(
        1,
        `bpr: stopped after epoch ${done}, kept epoch ${stopper.bestIteration} (validation ndcg@10 ${report.validationNdcg})`,
      );
    }
    if (split !== null && p.refitEpochs > 0) {
      // The held-out interactions come back for a few epochs from the best iterate; their seeds
      // continue the epoch numbering so they differ from every earlier epoch's.
      samplesPerEpoch = useMatrix(train);
      for (let e = 0; e < p.refitEpochs; e++) {
        if (opts.signal?.aborted) throw abortReason(opts.signal);
        await epoch(p.iterations + e);
        opts.onProgress?.(1, `bpr: full-data epoch ${e + 1}/${p.refitEpochs}`);
      }
    }
    // Hand back ordinary arrays: shared or arena memory belongs to the training run.
    const copy = shared || arena !== null;
    return new BprModel(
      p,
      nUsers,
      nItems,
      copy ? new Float32Array(X) : X,
      copy ? new Float32Array(Y) : Y,
      copy ? new Float32Array(bias) : bias,
      report,
    );
  } finally {
    await pool.close();
  }
}

function loadBpr(artifact: ModelArtifact): BprModel {
  if (artifact.algorithm !== 'bpr')
    throw new CairnError('CAIRN_VALIDATION', `not a bpr artifact: ${artifact.algorithm}`);
  if (artifact.formatVersion !== BPR_FORMAT_VERSION) {
    throw new CairnError(
      'CAIRN_UNSUPPORTED',
      `bpr artifact format ${artifact.formatVersion} is not supported`,
    );
  }
  const p = bprParams(artifact.params);
  const { userFactors, itemFactors, itemBias } = artifact.arrays;
  if (
    !(userFactors instanceof Float32Array) ||
    !(itemFactors instanceof Float32Array) ||
    !(itemBias instanceof Float32Array) ||
    Number(artifact.meta.factors) !== p.factors
  ) {
    throw new CairnError('CAIRN_VALIDATION', 'bpr artifact is malformed');
  }
  return new BprModel(
    p,
    Number(artifact.meta.users),
    Number(artifact.meta.items),
    userFactors,
    itemFactors,
    itemBias,
  );
}

export const bprSpec: AlgorithmSpec = {
  name: 'bpr',
  defaults: { ...DEFAULTS, ...CONTROL_DEFAULTS },
  space: {
    factors: { kind: 'int', min: 16, max: 256, log: true },
    learningRate: { kind: 'float', min: 0.005, max: 0.2, log: true },
    regularization: { kind: 'float', min: 1e-4, max: 0.1, log: true },
    iterations: { kind: 'int', min: 10, max: 200 },
    negatives: { kind: 'int', min: 1, max: 20, log: true },
  },
  fit: fitBpr,
  load: loadBpr,
};
