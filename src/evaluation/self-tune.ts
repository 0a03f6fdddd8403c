/**
 * Self-tuning on a training set: carve a validation part out of the TRAINING pairs only, search an
 * algorithm's space on it (tuner.ts), and return the best parameters to refit on the whole training
 * set. Used by `cairn eval --tune N` and by the training pipeline (training/fit.ts), so neither ever
 * looks at the pairs it is finally measured on: the function receives nothing but the training matrix.
 */
import { resolveParams } from '../algorithms/index.ts';
import { Rng } from '../algorithms/random.ts';
import { csrFromCoo, type Csr } from '../algorithms/sparse.ts';
import type { AlgorithmSpec, Params, ParamSpace } from '../algorithms/types.ts';
import { CairnError } from '../errors/errors.ts';
import { evaluateAlgorithm } from './evaluator.ts';
import { splitCounts, type Split } from './splits.ts';
import { tune, type Sampler, type Trial, type TuneResult } from './tuner.ts';

/**
 * Share of each user's training pairs moved to the inner validation part. 1/8 keeps the proportions
 * of the 80/10/10 protocol: the inner train is to the inner validation as 70 is to 10.
 */
export const VALIDATION_FRACTION = 0.125;

export interface InnerSplit {
  train: Csr;
  valid: Csr;
}

/**
 * Per user, a seeded random share of the training pairs becomes the validation part, with RecBole's
 * rounding (`splitCounts`): a user with one pair keeps it, two pairs give one to validation, and from
 * there about `fraction` of them. Weights stay with the pairs.
 */
export function carveValidation(train: Csr, seed: number, fraction = VALIDATION_FRACTION): InnerSplit {
  if (!(fraction > 0 && fraction < 1)) throw new RangeError('fraction must be in (0, 1)');
  const rng = new Rng(seed);
  const n = train.indices.length;
  const toValid = new Uint8Array(n);
  const order: number[] = [];
  for (let u = 0; u < train.rows; u++) {
    const s = train.indptr[u];
    const len = train.indptr[u + 1] - s;
    if (len < 2) continue;
    const [, nValid] = splitCounts(len, [1 - fraction, fraction]);
    order.length = 0;
    for (let p = s; p < s + len; p++) order.push(p);
    // Partial Fisher–Yates: the first nValid positions go to validation.
    for (let i = 0; i < nValid; i++) {
      const j = i + rng.int(len - i);
      const t = order[i];
      order[i] = order[j];
      order[j] = t;
      toValid[order[i]] = 1;
    }
  }
  return { train: csrPart(train, toValid, 0), valid: csrPart(train, toValid, 1) };
}

/** The pairs of `m` whose flag (aligned with `m.indices`) is `which`, as a CSR of the same shape. */
export function csrPart(m: Csr, flags: Uint8Array, which: number): Csr {
  let n = 0;
  for (let p = 0; p < flags.length; p++) if (flags[p] === which) n++;
  const rows = new Int32Array(n);
  const cols = new Int32Array(n);
  const vals = new Float32Array(n);
  let q = 0;
  for (let u = 0; u < m.rows; u++) {
    for (let p = m.indptr[u]; p < m.indptr[u + 1]; p++) {
      if (flags[p] !== which) continue;
      rows[q] = u;
      cols[q] = m.indices[p];
      vals[q++] = m.data[p];
    }
  }
  return csrFromCoo(m.rows, m.cols, rows, cols, vals);
}

/**
 * The first `rows` users and `cols` items of `m` (a view on its arrays where possible). `cairn eval`
 * with `--train/--test` files puts ids seen only in the test file after the training file's ids; the
 * tuning sees the training file's index space alone, so not even the test file's ids reach it.
 */
export function cropCsr(m: Csr, rows: number, cols: number): Csr {
  if (rows > m.rows || cols > m.cols) throw new RangeError('crop larger than the matrix');
  const end = m.indptr[rows];
  for (let p = 0; p < end; p++) {
    if (m.indices[p] >= cols) throw new RangeError('crop would drop stored entries');
  }
  return {
    rows,
    cols,
    indptr: m.indptr.subarray(0, rows + 1),
    indices: m.indices.subarray(0, end),
    data: m.data.subarray(0, end),
  };
}

export interface SelfTuneOptions {
  /** Trial budget, warm-start points and the defaults included. */
  trials: number;
  /** Wall-time budget of the search in seconds (tuner.ts `budgetSeconds`); unlimited when absent. */
  budgetSeconds?: number;
  /** Validation metric to maximise, e.g. `{ name: 'ndcg', k: 10 }`. */
  metric: { name: string; k: number };
  seed: number;
  threads: number;
  sampler?: Sampler;
  /**
   * Points tried first, in order (e.g. the previous champion's parameters, then the defaults);
   * repeats are dropped. Keys outside the searched space are ignored.
   */
  initial?: Params[];
  /** Parameters held fixed (not searched), merged into every trial. */
  fixed?: Params;
  validationFraction?: number;
  onTrial?: (trial: Trial, best: Trial) => void;
  signal?: AbortSignal;
  clock?: () => number;
}

export interface SelfTuneResult {
  /** The chosen parameters, fully resolved (what to refit on the whole training set). */
  params: Params;
  /** `name@k` of the validation metric. */
  metric: string;
  best: Trial;
  trials: Trial[];
  seconds: number;
  stoppedEarly: boolean;
  stopReason?: TuneResult['stopReason'];
  /** Users with at least one inner validation pair (the ones averaged). */
  validationUsers: number;
  validationPairs: number;
}

/**
 * Tunes `spec` on a validation part carved from `train` (nothing else is given to it) and returns the
 * best parameters. Throws CAIRN_NOT_ENOUGH_DATA when no user has two training pairs to carve from.
 */
export async function selfTune(
  spec: AlgorithmSpec,
  train: Csr,
  options: SelfTuneOptions,
): Promise<SelfTuneResult> {
  const started = performance.now();
  const inner = carveValidation(train, options.seed, options.validationFraction);
  if (inner.valid.indices.length === 0) {
    throw new CairnError(
      'CAIRN_NOT_ENOUGH_DATA',
      'nothing to tune on: no user has two training interactions to carve a validation part from',
    );
  }
  const empty = csrFromCoo(train.rows, train.cols, [], [], null);
  // No event times: time-decayed popularity would otherwise count the validation pairs' events.
  const split: Split = { protocol: 'given', train: inner.train, valid: inner.valid, test: empty };
  const fixed = options.fixed ?? {};
  const space: Record<string, ParamSpace> = Object.fromEntries(
    Object.entries(spec.space).filter(([name]) => !(name in fixed)),
  );
  const names = Object.keys(space).sort();
  // Validate every starting point (a champion's stored params may predate a parameter's range) and
  // drop repeats, so the budget is not spent measuring one setting twice.
  const initial: Params[] = [];
  const seen = new Set<string>();
  for (const p of options.initial ?? [spec.defaults]) {
    let resolved: Params;
    try {
      resolved = resolveParams(spec, { ...p, ...fixed });
    } catch {
      continue;
    }
    const key = JSON.stringify(names.map((n) => resolved[n]));
    if (seen.has(key)) continue;
    seen.add(key);
    initial.push(resolved);
  }
  const key = `${options.metric.name}@${options.metric.k}`;
  let validationUsers = 0;
  const outcome = await tune(
    space,
    async (params) => {
      const r = await evaluateAlgorithm(spec, resolveParams(spec, params), split, {
        k: options.metric.k,
        target: 'valid',
        threads: options.threads,
        seed: options.seed,
        signal: options.signal,
      });
      validationUsers = r.users;
      const v = r.metrics[key];
      if (v === undefined) throw new Error(`the evaluator reports no ${key}`);
      return v;
    },
    {
      // A space with nothing left to search has one point: the fixed and default values.
      trials: names.length === 0 ? 1 : options.trials,
      seed: options.seed,
      sampler: options.sampler,
      initial,
      fixed,
      budgetSeconds: options.budgetSeconds,
      clock: options.clock,
      onTrial: options.onTrial,
      signal: options.signal,
    },
  );
  if (!Number.isFinite(outcome.best.score)) {
    throw new Error(`every tuning trial of ${spec.name} failed: ${outcome.best.error ?? 'unknown error'}`);
  }
  return {
    params: resolveParams(spec, outcome.best.params),
    metric: key,
    best: outcome.best,
    trials: outcome.trials,
    seconds: (performance.now() - started) / 1000,
    stoppedEarly: outcome.stoppedEarly,
    ...(outcome.stopReason ? { stopReason: outcome.stopReason } : {}),
    validationUsers,
    validationPairs: inner.valid.indices.length,
  };
}
