/**
 * The holdouts of the training pipeline's gate (gate.ts). `random`: per user, a seeded random fraction
 * of their positive items is held out; the model is fitted on the rest and must rank the held-out
 * items (full ranking, training items excluded); users with fewer than 3 positives keep all of them in
 * training (nothing meaningful to hold out). `fresh`: the pairs newer than the champion's snapshot,
 * which neither the champion nor the challenger saw. `chooseHoldout` picks between them.
 */
import { Rng } from '../algorithms/random.ts';
import type { Csr } from '../algorithms/sparse.ts';
import { runSteps, runStepsSliced, type Steps } from '../domain/cooperative.ts';

/** Users per unit of work between yields (see domain/cooperative.ts). */
const UNIT = 256;

export interface HoldoutSplit {
  train: Csr;
  /** Held-out items per user, CSR-like over users (empty rows for users without holdout). */
  test: { indptr: Int32Array; items: Int32Array };
}

export function holdoutSplit(m: Csr, fraction: number, seed: number): HoldoutSplit {
  return runSteps(holdoutSplitSteps(m, fraction, seed));
}

function* holdoutSplitSteps(m: Csr, fraction: number, seed: number): Steps<HoldoutSplit> {
  const rng = new Rng(seed);
  const trainIdx: number[] = [];
  const trainVal: number[] = [];
  const testItems: number[] = [];
  const trainPtr = new Int32Array(m.rows + 1);
  const testPtr = new Int32Array(m.rows + 1);
  const order: number[] = [];
  for (let u = 0; u < m.rows; u++) {
    if (u % UNIT === 0) yield;
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

/**
 * The fresh holdout: every positive pair whose first event came after `afterSeq` (the champion's
 * watermark, so the champion never saw it) is held out, for users who also have older pairs to be
 * scored from. Everything else, including the new pairs of users with nothing older, is training data.
 */
export function freshSplit(
  m: Csr,
  firstSeq: Float64Array,
  afterSeq: number,
): HoldoutSplit & { users: number; interactions: number } {
  return runSteps(freshSplitSteps(m, firstSeq, afterSeq));
}

function* freshSplitSteps(
  m: Csr,
  firstSeq: Float64Array,
  afterSeq: number,
): Steps<HoldoutSplit & { users: number; interactions: number }> {
  const trainIdx: number[] = [];
  const trainVal: number[] = [];
  const testItems: number[] = [];
  const trainPtr = new Int32Array(m.rows + 1);
  const testPtr = new Int32Array(m.rows + 1);
  let users = 0;
  for (let u = 0; u < m.rows; u++) {
    if (u % UNIT === 0) yield;
    const s = m.indptr[u];
    const e = m.indptr[u + 1];
    let old = 0;
    for (let p = s; p < e; p++) if (firstSeq[p] <= afterSeq) old++;
    // Without older pairs the user cannot be scored (both models would fall back): keep it all in training.
    const holdNew = old > 0 && old < e - s;
    if (holdNew) users++;
    for (let p = s; p < e; p++) {
      if (holdNew && firstSeq[p] > afterSeq) testItems.push(m.indices[p]);
      else {
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
    users,
    interactions: testItems.length,
  };
}

/** Which holdout the gate scores the challenger (and the champion) on; see GateRecord.holdout. */
export interface HoldoutChoice {
  kind: 'fresh' | 'random' | 'none';
  split: HoldoutSplit | null;
  /** Users with held-out pairs. */
  users: number;
  /** Held-out pairs. */
  interactions: number;
}

/**
 * Picks the gate's holdout: `fresh` when a champion exists and at least `minFresh` held-out pairs are
 * newer than its watermark; else a seeded per-user `random` holdout; `none` when that holds nothing out.
 */
export function chooseHoldout(
  m: Csr,
  firstSeq: Float64Array,
  championSeq: number | null,
  options: HoldoutOptions,
): HoldoutChoice {
  return runSteps(chooseHoldoutSteps(m, firstSeq, championSeq, options));
}

/** chooseHoldout giving the event loop a turn every few milliseconds (the training pipeline's). */
export function chooseHoldoutSliced(
  m: Csr,
  firstSeq: Float64Array,
  championSeq: number | null,
  options: HoldoutOptions,
): Promise<HoldoutChoice> {
  return runStepsSliced(chooseHoldoutSteps(m, firstSeq, championSeq, options));
}

export interface HoldoutOptions {
  minFresh: number;
  fraction: number;
  seed: number;
}

function* chooseHoldoutSteps(
  m: Csr,
  firstSeq: Float64Array,
  championSeq: number | null,
  options: HoldoutOptions,
): Steps<HoldoutChoice> {
  if (championSeq !== null) {
    const fresh = yield* freshSplitSteps(m, firstSeq, championSeq);
    if (fresh.interactions >= options.minFresh) {
      return { kind: 'fresh', split: fresh, users: fresh.users, interactions: fresh.interactions };
    }
  }
  const split = yield* holdoutSplitSteps(m, options.fraction, options.seed);
  const interactions = split.test.items.length;
  if (interactions === 0) return { kind: 'none', split: null, users: 0, interactions: 0 };
  let users = 0;
  for (let u = 0; u < m.rows; u++) if (split.test.indptr[u + 1] > split.test.indptr[u]) users++;
  return { kind: 'random', split, users, interactions };
}
