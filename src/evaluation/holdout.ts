/**
 * The training pipeline's holdout measurement (training/fit.ts): the same full-ranking evaluation
 * and metric definitions as `cairn eval`, on a per-user holdout given as item lists.
 */
import type { Csr } from '../algorithms/sparse.ts';
import type { FittedModel } from '../algorithms/types.ts';
import { evaluateModel } from './evaluator.ts';

/**
 * Metrics@k (`ndcg@k`, `recall@k`, …, `coverage@k`) of `model` on held-out items `test` (per user,
 * CSR-like), with each user's `train` items excluded from the candidates.
 */
export function evaluateHoldout(
  model: FittedModel,
  train: Csr,
  test: { indptr: Int32Array; items: Int32Array },
  k: number,
): Record<string, number> {
  const target: Csr = {
    rows: train.rows,
    cols: train.cols,
    indptr: test.indptr,
    indices: test.items,
    data: new Float32Array(test.items.length).fill(1),
  };
  return evaluateModel(model, train, target, [train], k).metrics;
}
