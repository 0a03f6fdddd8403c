/**
 * The training pipeline's own check of a new model before it may be served: per user, a seeded random
 * fraction of their positive items is held out; the model is fitted on the rest and must rank the
 * held-out items (full ranking, training items excluded). Users with fewer than 3 positives keep all
 * of them in training (nothing meaningful to hold out).
 */
import { Rng } from '../algorithms/random.ts';
import type { Csr } from '../algorithms/sparse.ts';

export interface HoldoutSplit {
  train: Csr;
  /** Held-out items per user, CSR-like over users (empty rows for users without holdout). */
  test: { indptr: Int32Array; items: Int32Array };
}

export function holdoutSplit(m: Csr, fraction: number, seed: number): HoldoutSplit {
  const rng = new Rng(seed);
  const trainIdx: number[] = [];
  const trainVal: number[] = [];
  const testItems: number[] = [];
  const trainPtr = new Int32Array(m.rows + 1);
  const testPtr = new Int32Array(m.rows + 1);
  const order: number[] = [];
  for (let u = 0; u < m.rows; u++) {
    const s = m.indptr[u];
    const e = m.indptr[u + 1];
    const n = e - s;
    const held = n >= 3 ? Math.max(1, Math.round(n * fraction)) : 0;
    order.length = 0;
    for (let p = s; p < e; p++) order.push(p);
    // Partial Fisher–Yates: the first `held` positions become the holdout.
    for (let i = 0; i < held; i++) {
      const j = i + rng.int(n - i);
      const t = order[i];
      order[i] = order[j];
      order[j] = t;
    }
    const heldSet = order.slice(0, held).sort((a, b) => a - b);
    let h = 0;
    for (let p = s; p < e; p++) {
      if (h < heldSet.length && heldSet[h] === p) {
        testItems.push(m.indices[p]);
        h++;
      } else {
        trainIdx.push(m.indices[p]);
        trainVal.push(m.data[p]);
      }
    }
    trainPtr[u + 1] = trainIdx.length;
    testPtr[u + 1] = testItems.length;
  }
  return {
    train: {
      rows: m.rows,
      cols: m.cols,
      indptr: trainPtr,
      indices: Int32Array.from(trainIdx),
      data: Float32Array.from(trainVal),
    },
    test: { indptr: testPtr, items: Int32Array.from(testItems) },
  };
}
