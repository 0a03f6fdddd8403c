/**
 * Full-ranking evaluation of one algorithm on one split, RecBole-style: fit on train, then for every
 * user with at least one target pair score every item, drop the items the user may not be
 * recommended (train items; for the test also the validation items, which the user has "seen"),
 * take the top k and average the metrics over those users.
 */
import type { Csr } from '../algorithms/sparse.ts';
import { TopKHeap } from '../algorithms/topk.ts';
import type { AlgorithmSpec, FittedModel, Params, UserHistory } from '../algorithms/types.ts';
import { MetricAccumulator } from './metrics.ts';
import type { Split } from './splits.ts';

export type EvalTarget = 'valid' | 'test';

export interface ModelEvaluation {
  metrics: Record<string, number>;
  /** Users with at least one target pair (the ones averaged). */
  users: number;
  /** Wall time of scoring and ranking, seconds. */
  scoreSeconds: number;
}

export interface AlgorithmEvaluation extends ModelEvaluation {
  algorithm: string;
  params: Params;
  /** Wall time of `spec.fit` alone, seconds. */
  trainSeconds: number;
}

export interface EvaluateOptions {
  k: number;
  /** `test` excludes train and valid items; `valid` (tuning) excludes train items only. */
  target: EvalTarget;
  threads: number;
  seed: number;
  /** Fraction 0..1 and a stage label (`fit: …` or `scoring`). */
  onProgress?: (fraction: number, stage: string) => void;
  signal?: AbortSignal;
}

/** Fits `spec` with `params` on `split.train` and evaluates it on the target part. */
export async function evaluateAlgorithm(
  spec: AlgorithmSpec,
  params: Params,
  split: Split,
  options: EvaluateOptions,
): Promise<AlgorithmEvaluation> {
  const started = performance.now();
  const model = await spec.fit(split.train, params, {
    threads: options.threads,
    seed: options.seed,
    signal: options.signal,
    onProgress: options.onProgress ? (f, stage) => options.onProgress!(f * 0.8, `fit: ${stage}`) : undefined,
    // Time-decayed popularity decays from the newest training event, as in production training.
    itemEventTimes: split.trainEvents,
    now: split.now,
  });
  const trainSeconds = (performance.now() - started) / 1000;
  const target = options.target === 'test' ? split.test : split.valid;
  const exclude = options.target === 'test' ? [split.train, split.valid] : [split.train];
  const evaluation = evaluateModel(model, split.train, target, exclude, options.k, {
    onProgress: options.onProgress ? (f) => options.onProgress!(0.8 + 0.2 * f, 'scoring') : undefined,
    signal: options.signal,
  });
  return { algorithm: spec.name, params: model.params, trainSeconds, ...evaluation };
}

/**
 * Ranks every item for each user with a non-empty row in `target` and measures the top `k` against
 * that row. `history` is what the model is told about the user (its training row); every item in a
 * row of an `exclude` matrix is removed from that user's candidates.
 */
export function evaluateModel(
  model: FittedModel,
  history: Csr,
  target: Csr,
  exclude: readonly Csr[],
  k: number,
  options: { onProgress?: (fraction: number) => void; signal?: AbortSignal } = {},
): ModelEvaluation {
  const started = performance.now();
  const nItems = target.cols;
  const scores = new Float32Array(nItems);
  const heap = new TopKHeap(k);
  const ranked = new Int32Array(k);
  const rankedScores = new Float32Array(k);
  const acc = new MetricAccumulator(k, nItems);
  const hist: UserHistory = { items: new Int32Array(0), weights: new Float32Array(0) };
  const users = target.rows;
  const every = Math.max(1, Math.floor(users / 100));
  for (let u = 0; u < users; u++) {
    const ts = target.indptr[u];
    const te = target.indptr[u + 1];
    if (te > ts) {
      hist.items = history.indices.subarray(history.indptr[u], history.indptr[u + 1]);
      hist.weights = history.data.subarray(history.indptr[u], history.indptr[u + 1]);
      model.scoreUser(u, hist, scores);
      for (const m of exclude) {
        for (let p = m.indptr[u]; p < m.indptr[u + 1]; p++) scores[m.indices[p]] = -Infinity;
      }
      heap.reset(k);
      for (let i = 0; i < nItems; i++) {
        const s = scores[i];
        if (s > heap.threshold()) heap.push(i, s);
      }
      const count = heap.drainInto(ranked, rankedScores, 0);
      acc.add(ranked, count, target.indices.subarray(ts, te));
    }
    if (u % every === 0) {
      options.signal?.throwIfAborted();
      options.onProgress?.(u / users);
    }
  }
  options.onProgress?.(1);
  return { metrics: acc.result(), users: acc.users, scoreSeconds: (performance.now() - started) / 1000 };
}
