/**
 * The CPU-heavy part of training, run off the event loop in a worker thread (fit-worker.ts) so the
 * embedded server keeps answering while it trains: fit on the holdout split's training part, measure
 * the model and a popularity baseline on the held-out items, then refit on all data for serving.
 */
import { getAlgorithm } from '../algorithms/index.ts';
import type { Csr } from '../algorithms/sparse.ts';
import type { ModelArtifact, Params } from '../algorithms/types.ts';
import { evaluateHoldout } from '../evaluation/holdout.ts';
import type { HoldoutSplit } from './holdout.ts';

export interface FitInput {
  algorithm: string;
  params: Params;
  threads: number;
  seed: number;
  k: number;
  full: Csr;
  split: HoldoutSplit | null;
  itemEventTimes: { items: Int32Array; times: Float64Array };
  now: number;
  /** Popularity parameters for the baseline every new model must beat. */
  baselineParams: Params;
}

export interface FitOutput {
  artifact: ModelArtifact;
  /** Holdout metrics of the algorithm (empty when there was nothing to hold out). */
  metrics: Record<string, number>;
  /** Holdout metrics of the popularity baseline on the same split. */
  baseline: Record<string, number>;
  /** Seconds spent fitting the served model (the refit on all data). */
  trainSeconds: number;
}

export type ProgressFn = (fraction: number, stage: string) => void;

export async function fitAndEvaluate(
  input: FitInput,
  onProgress: ProgressFn,
  signal?: AbortSignal,
): Promise<FitOutput> {
  const spec = getAlgorithm(input.algorithm);
  // Event times cover every event, held-out ones included: only the final fit on all data may see them.
  const common = { threads: input.threads, seed: input.seed, signal };
  const withTimes = { ...common, itemEventTimes: input.itemEventTimes, now: input.now };
  let metrics: Record<string, number> = {};
  let baseline: Record<string, number> = {};
  const evalShare = input.split ? 0.5 : 0;
  if (input.split) {
    const split = input.split;
    const model = await spec.fit(split.train, input.params, {
      ...common,
      onProgress: (f, stage) => onProgress(f * 0.4, `holdout fit: ${stage}`),
    });
    metrics = evaluateHoldout(model, split.train, split.test, input.k);
    onProgress(0.45, 'holdout evaluation');
    if (input.algorithm === 'pop') baseline = metrics;
    else {
      const pop = await getAlgorithm('pop').fit(split.train, input.baselineParams, common);
      baseline = evaluateHoldout(pop, split.train, split.test, input.k);
    }
  }
  const started = performance.now();
  const model = await spec.fit(input.full, input.params, {
    ...withTimes,
    onProgress: (f, stage) => onProgress(evalShare + f * (1 - evalShare), `fit: ${stage}`),
  });
  const trainSeconds = (performance.now() - started) / 1000;
  return { artifact: model.toArtifact(), metrics, baseline, trainSeconds };
}
