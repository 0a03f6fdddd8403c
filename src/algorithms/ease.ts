/**
 * EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): the item-item weight
 * matrix with zero diagonal that best reconstructs X from X under L2 regularisation, in closed form
 *   P = (XᵀX + λI)⁻¹,   B = I − P · diag(1 / diag(P)),   i.e. B_ij = −P_ij / P_jj, B_jj = 0,
 * and a user's scores are their history row times B.
 *
 * The dense inverse costs n³/2 multiply-adds, so the solve is shrunk exactly before it starts:
 * - items without training interactions have B rows and columns of 0 and are dropped;
 * - "leaf" items (exactly one training user, typically a third to a half of a long-tail catalogue)
 *   are eliminated by a Schur complement. All leaves of user u couple to the rest only through u's
 *   row, so with a_u = u's leaf weights, c_u = u's other ("core") weights, α_u = |a_u|², β_u = 1/(λ+α_u):
 *     Q   = P_CC = (λI + Σ_u λβ_u c_u c_uᵀ)⁻¹        (the only dense inverse, core items only)
 *     P_jc = −β_u a_j (Q c_u)_c                      (leaf j of user u, core c)
 *     P_jk = β_u β_u' a_j a_k c_uᵀQc_u' + [u = u'] (δ_jk − β_u a_j a_k) / λ   (leaves j of u, k of u')
 *   which is the block inverse of XᵀX + λI written out, so B is unchanged, only cheaper.
 * The core inverse is the blocked symmetric sweep of spd-inverse.ts, parallel over the worker pool.
 *
 * The model keeps B densely (Float32) over the items seen in training: 4·n² bytes.
 *
 * Above `maxItems` items the dense solve does not fit in memory (8·n² bytes for P alone), so
 * `variant: 'auto'` (the default) switches to sparse EASE (ease-sparse.ts: each item's regression
 * restricted to its `neighbors` strongest co-occurring items) and records `variant: 'sparse'` in the
 * model's params; `'dense'` refuses instead, `'sparse'` forces the approximation at any size.
 */
import { CairnError } from '../errors/errors.ts';
import { abortReason, allocFloat64, resolveThreads, WorkerPool } from './parallel.ts';
import { fitSparseEase, type SparseColumns, type SparseColumnsArgs } from './ease-sparse.ts';
import { graphFromArrays, ItemGraphModel } from './item-graph.ts';
import { readBoolean, readChoice, readNumber } from './params.ts';
import { toShared, type Csr } from './sparse.ts';
import {
  invertSpdInPlace,
  sequentialRunner,
  sweepBuffers,
  type SweepBuffers,
  type SweepRowsArgs,
  type SweepRunner,
} from './spd-inverse.ts';
import type { AlgorithmSpec, FitOptions, FittedModel, ModelArtifact, Params, UserHistory } from './types.ts';

/** Artifact layout of the dense model (B over the active items). */
export const EASE_FORMAT_VERSION = 1;
/** Artifact layout of the sparse model (B as a CSR item graph). */
export const EASE_SPARSE_FORMAT_VERSION = 2;

export type EaseVariant = 'auto' | 'dense' | 'sparse';

/** Core sizes below this invert faster in-thread than worker start-up takes. */
const PARALLEL_MIN_CORE = 1200;

export interface EaseParams {
  /** L2 regularisation λ added to the diagonal of XᵀX. */
  lambda: number;
  /** Treat every interaction as weight 1, in fitting and in scoring (Steck's setting). */
  binary: boolean;
  /**
   * Largest number of items with interactions for the dense solve (B is dense: 4·n² bytes, P 8·n²).
   * Above it `auto` fits sparse EASE and `dense` refuses.
   */
  maxItems: number;
  /** `auto`: dense up to `maxItems`, sparse above; a fitted model records what it used. */
  variant: EaseVariant;
  /** Sparse variant: the items each item's regression may use (more is closer to dense, slower). */
  neighbors: number;
}

// λ = 200: NDCG@10 on a MovieTweetings validation split peaks at 50–100 (0.123) and falls slowly
// (250: 0.119, 500: 0.116, 1000: 0.112); published optima on denser data are 200–1000 (Steck:
// ML-20M 500, MSD 200; RecBole 250), so the default sits between.
const NEIGHBORS_DEFAULT = 200;

// neighbors: see ease-sparse.ts and docs/benchmarks.md (quality against dense EASE by support size).
const DEFAULTS: EaseParams = {
  lambda: 200,
  binary: true,
  maxItems: 30_000,
  variant: 'auto',
  neighbors: NEIGHBORS_DEFAULT,
};

/** Reads and validates EASE parameters (missing ones take defaults). */
export function easeParams(params: Params): EaseParams {
  return {
    lambda: readNumber(params, 'ease', 'lambda', DEFAULTS.lambda, { min: 0, max: 1e12, exclusiveMin: true }),
    binary: readBoolean(params, 'ease', 'binary', DEFAULTS.binary),
    maxItems: readNumber(params, 'ease', 'maxItems', DEFAULTS.maxItems, {
      min: 1,
      max: 200_000,
      integer: true,
    }),
    variant: readChoice(params, 'ease', 'variant', DEFAULTS.variant, ['auto', 'dense', 'sparse'] as const),
    neighbors: readNumber(params, 'ease', 'neighbors', DEFAULTS.neighbors, {
      min: 1,
      max: 5000,
      integer: true,
    }),
  };
}

/** A fitted EASE model: B over the `items` seen in training (row a = weights of item items[a]). */
export class EaseModel implements FittedModel {
  readonly algorithm = 'ease' as const;
  readonly params: Params;
  readonly nUsers: number;
  readonly nItems: number;
  /** Item indices present in B, ascending. */
  readonly items: Int32Array;
  /** Row-major `items.length²`: B[a·n + b] is how much item items[a] adds to item items[b]'s score. */
  readonly B: Float32Array;
  private readonly binary: boolean;
  /** Item index → position in `items`, or −1. */
  private readonly pos: Int32Array;
  private readonly acc: Float32Array;

  constructor(p: EaseParams, nUsers: number, nItems: number, items: Int32Array, B: Float32Array) {
    const n = items.length;
    if (B.length !== n * n) throw new CairnError('CAIRN_VALIDATION', 'ease: B does not match the item list');
    this.params = { ...p, variant: 'dense' };
    this.nUsers = nUsers;
    this.nItems = nItems;
    this.items = items;
    this.B = B;
    this.binary = p.binary;
    this.pos = new Int32Array(nItems).fill(-1);
    for (let a = 0; a < n; a++) {
      const i = items[a];
      if (!(i >= 0 && i < nItems) || (a > 0 && i <= items[a - 1])) {
        throw new CairnError('CAIRN_VALIDATION', 'ease: item list must be ascending and within range');
      }
      this.pos[i] = a;
    }
    this.acc = new Float32Array(n);
  }

  scoreUser(_user: number, history: UserHistory, out: Float32Array): void {
    const n = this.items.length;
    const direct = n === this.nItems; // every item is in B: accumulate straight into `out`
    const acc = direct ? out : this.acc;
    acc.fill(0);
    const { items, weights } = history;
    const B = this.B;
    for (let q = 0; q < items.length; q++) {
      const h = items[q];
      if (!(h >= 0 && h < this.nItems)) continue;
      const a = this.pos[h];
      if (a < 0) continue;
      const w = this.binary ? 1 : weights[q];
      const row = a * n;
      for (let b = 0; b < n; b++) acc[b] += w * B[row + b];
    }
    if (!direct) {
      out.fill(0);
      for (let b = 0; b < n; b++) out[this.items[b]] = acc[b];
    }
  }

  /** Per candidate, the history's B entries summed in history order with float32 steps, as scoreUser does. */
  scoreItems(_user: number, history: UserHistory, items: Int32Array, out: Float32Array): void {
    const n = this.items.length;
    const B = this.B;
    const hist = history.items;
    const weights = history.weights;
    for (let j = 0; j < items.length; j++) {
      const i = items[j];
      if (!(i >= 0 && i < this.nItems)) {
        out[j] = -Infinity;
        continue;
      }
      const b = this.pos[i];
      let acc = 0;
      if (b >= 0) {
        for (let q = 0; q < hist.length; q++) {
          const h = hist[q];
          if (!(h >= 0 && h < this.nItems)) continue;
          const a = this.pos[h];
          if (a < 0) continue;
          acc = Math.fround(acc + (this.binary ? 1 : weights[q]) * B[a * n + b]);
        }
      }
      out[j] = acc;
    }
  }

  similarItems(item: number, out: Float32Array): boolean {
    if (!(item >= 0 && item < this.nItems)) return false;
    out.fill(0);
    const a = this.pos[item];
    if (a < 0) return true;
    const n = this.items.length;
    for (let b = 0; b < n; b++) out[this.items[b]] = this.B[a * n + b];
    return true;
  }

  itemSimilarity(a: number, b: number): number {
    if (!(a >= 0 && a < this.nItems && b >= 0 && b < this.nItems)) return 0;
    const pa = this.pos[a];
    const pb = this.pos[b];
    return pa < 0 || pb < 0 ? 0 : this.B[pa * this.items.length + pb];
  }

  toArtifact(): ModelArtifact {
    return {
      algorithm: 'ease',
      formatVersion: EASE_FORMAT_VERSION,
      params: { ...this.params },
      meta: { users: this.nUsers, items: this.nItems, activeItems: this.items.length },
      arrays: { items: this.items, B: this.B },
    };
  }
}

/** A fitted sparse EASE model: `graph` row h holds the kept weights B[h, ·] of history item h. */
export class SparseEaseModel extends ItemGraphModel {
  readonly algorithm = 'ease' as const;

  constructor(p: EaseParams, nUsers: number, graph: Csr) {
    super('ease', { ...p, variant: 'sparse' as const }, nUsers, graph, EASE_SPARSE_FORMAT_VERSION, {
      variant: 'sparse',
    });
  }
}

/** Runs the sweep's row phases as pool tasks on shared buffers. */
function poolRunner(pool: WorkerPool, buf: SweepBuffers): SweepRunner {
  const run = async (task: string, k0: number, k1: number, ranges: [number, number][]): Promise<void> => {
    const args: SweepRowsArgs[] = ranges.map(([r0, r1]) => ({ ...buf, k0, k1, r0, r1 }));
    await pool.map(task, args);
  };
  return {
    // More ranges than threads: the pool hands them out as threads free up, so one thread slowed
    // by another process does not leave the others idle at the end of every step.
    parts: pool.threads * 4,
    scale: (k0, k1, ranges) => run('ease.sweepScale', k0, k1, ranges),
    update: (k0, k1, ranges) => run('ease.sweepUpdate', k0, k1, ranges),
  };
}

/**
 * Computes B exactly (see the file comment). Returns the items kept (ascending) and B over them.
 * Throws CAIRN_UNSUPPORTED above `maxItems` items with interactions.
 */
export async function fitEaseMatrix(
  train: Csr,
  p: EaseParams,
  opts: Pick<FitOptions, 'threads' | 'signal' | 'onProgress'>,
): Promise<{ items: Int32Array; B: Float32Array }> {
  const { rows: nUsers, cols: nItems, indptr, indices, data } = train;
  const lambda = p.lambda;
  const check = (): void => {
    if (opts.signal?.aborted) throw abortReason(opts.signal);
  };
  const progress = opts.onProgress ?? ((): void => undefined);
  check();

  // Degrees and leaf owners; stored zeros are not interactions.
  const degree = new Int32Array(nItems);
  const owner = new Int32Array(nItems).fill(-1);
  for (let u = 0; u < nUsers; u++) {
    for (let q = indptr[u]; q < indptr[u + 1]; q++) {
      if (!(data[q] > 0)) continue;
      degree[indices[q]]++;
      owner[indices[q]] = u;
    }
  }
  let nA = 0;
  for (let i = 0; i < nItems; i++) if (degree[i] > 0) nA++;
  if (nA > p.maxItems) {
    throw new CairnError(
      'CAIRN_UNSUPPORTED',
      `ease: ${nA} items have interactions, above ease.maxItems = ${p.maxItems}; the dense solve keeps items × items matrices, so use ease.variant=sparse (or auto), another algorithm, or raise ease.maxItems`,
      { items: nA, maxItems: p.maxItems },
    );
  }
  const items = new Int32Array(nA);
  const coreOf = new Int32Array(nItems).fill(-1);
  let nC = 0;
  for (let i = 0, a = 0; i < nItems; i++) {
    if (degree[i] === 0) continue;
    items[a++] = i;
    if (degree[i] >= 2) coreOf[i] = nC++;
  }
  const val = (q: number): number => (p.binary ? 1 : data[q]);

  // Per user: leaf mass α_u, and whether they also have core items (then they get a column l_u).
  const alpha = new Float64Array(nUsers);
  const leafW = new Float64Array(nItems);
  const lcol = new Int32Array(nUsers).fill(-1);
  let nL = 0;
  let coreNnz = 0;
  let lNnz = 0;
  for (let u = 0; u < nUsers; u++) {
    let cores = 0;
    for (let q = indptr[u]; q < indptr[u + 1]; q++) {
      if (!(data[q] > 0)) continue;
      const j = indices[q];
      if (coreOf[j] >= 0) cores++;
      else {
        leafW[j] = val(q);
        alpha[u] += leafW[j] * leafW[j];
      }
    }
    coreNnz += cores;
    if (alpha[u] > 0 && cores > 0) {
      lcol[u] = nL++;
      lNnz += cores;
    }
  }
  // Core rows of the users with a column, as a small CSR (core ids, weights).
  const lptr = new Int32Array(nL + 1);
  const lidx = new Int32Array(lNnz);
  const lw = new Float64Array(lNnz);
  for (let u = 0, e = 0; u < nUsers; u++) {
    const l = lcol[u];
    if (l < 0) continue;
    for (let q = indptr[u]; q < indptr[u + 1]; q++) {
      if (!(data[q] > 0) || coreOf[indices[q]] < 0) continue;
      lidx[e] = coreOf[indices[q]];
      lw[e++] = val(q);
    }
    lptr[l + 1] = e;
  }
  progress(0, `ease: ${nA} items (${nC} in the dense solve), ${coreNnz} core interactions`);

  // S = λI + Σ_u λβ_u c_u c_uᵀ over core items, lower triangle.
  const threads = resolveThreads(opts.threads);
  const useThreads = threads > 1 && nC >= PARALLEL_MIN_CORE;
  const pool = useThreads ? new WorkerPool({ threads, signal: opts.signal }) : null;
  let Q: Float64Array;
  try {
    Q = allocFloat64(nC * nC, pool !== null);
    const ci: number[] = [];
    const cw: number[] = [];
    for (let u = 0; u < nUsers; u++) {
      ci.length = 0;
      cw.length = 0;
      for (let q = indptr[u]; q < indptr[u + 1]; q++) {
        const c = coreOf[indices[q]];
        if (c < 0 || !(data[q] > 0)) continue;
        ci.push(c);
        cw.push(val(q));
      }
      const g = lambda / (lambda + alpha[u]);
      // Core ids ascend with item ids, so (a, b ≤ a) lands in the lower triangle.
      for (let a = 0; a < ci.length; a++) {
        const ra = ci[a] * nC;
        const wa = g * cw[a];
        for (let b = 0; b <= a; b++) Q[ra + ci[b]] += wa * cw[b];
      }
    }
    for (let c = 0; c < nC; c++) Q[c * nC + c] += lambda;
    check();
    const buf = sweepBuffers(Q, nC, pool !== null);
    const runner = pool !== null ? poolRunner(pool, buf) : sequentialRunner(buf);
    await invertSpdInPlace(buf, runner, (f) => {
      check();
      progress(0.02 + 0.88 * f, 'ease: inverse');
    });
  } finally {
    await pool?.close();
  }

  // Vt[c·nL + l] = (Q c_u)_c for the user u of column l: reads row c of Q, contiguous.
  const Vt = new Float64Array(nC * nL);
  for (let c = 0; c < nC; c++) {
    const qc = c * nC;
    const vc = c * nL;
    for (let l = 0; l < nL; l++) {
      let s = 0;
      for (let e = lptr[l]; e < lptr[l + 1]; e++) s += lw[e] * Q[qc + lidx[e]];
      Vt[vc + l] = s;
    }
  }
  check();

  // Per active item: core id, or for a leaf its coefficient β_u a_j and its owner's column.
  const beta = (u: number): number => 1 / (lambda + alpha[u]);
  const leafCoef = new Float64Array(nA);
  const leafCol = new Int32Array(nA).fill(-1);
  const coreAt = new Int32Array(nA).fill(-1);
  for (let a = 0; a < nA; a++) {
    const j = items[a];
    if (coreOf[j] >= 0) coreAt[a] = coreOf[j];
    else {
      leafCoef[a] = beta(owner[j]) * leafW[j];
      leafCol[a] = lcol[owner[j]];
    }
  }
  // s_u[l'] = c_uᵀ Q c_u' = Σ_e w_e Vt[c_e, l'] for the user of column l.
  const sRow = (l: number, out: Float64Array): void => {
    out.fill(0);
    for (let e = lptr[l]; e < lptr[l + 1]; e++) {
      const w = lw[e];
      const o = lidx[e] * nL;
      for (let m = 0; m < nL; m++) out[m] += w * Vt[o + m];
    }
  };
  // diag(P).
  const invd = new Float64Array(nA);
  const sBuf = new Float64Array(nL);
  for (let a = 0; a < nA; a++) {
    const c = coreAt[a];
    if (c >= 0) invd[a] = 1 / Q[c * nC + c];
  }
  // Leaves grouped by owner.
  const byOwner = new Map<number, number[]>();
  for (let a = 0; a < nA; a++) {
    if (coreAt[a] >= 0) continue;
    const u = owner[items[a]];
    let list = byOwner.get(u);
    if (list === undefined) byOwner.set(u, (list = []));
    list.push(a);
  }
  for (const [u, leaves] of byOwner) {
    const l = lcol[u];
    let suu = 0;
    if (l >= 0) {
      for (let e = lptr[l]; e < lptr[l + 1]; e++) suu += lw[e] * Vt[lidx[e] * nL + l];
    }
    const b = beta(u);
    for (const a of leaves) {
      const w = leafW[items[a]];
      invd[a] = 1 / ((1 - b * w * w) / lambda + b * b * w * w * suu);
    }
  }
  progress(0.92, 'ease: assemble');

  // B = −P·diag(1/d) row by row, zero diagonal.
  const B = new Float32Array(nA * nA);
  for (let x = 0; x < nA; x++) {
    const c = coreAt[x];
    if (c < 0) continue;
    const o = x * nA;
    const qc = c * nC;
    const vc = c * nL;
    for (let y = 0; y < nA; y++) {
      const cy = coreAt[y];
      let P: number;
      if (cy >= 0) P = Q[qc + cy];
      else {
        const ly = leafCol[y];
        P = ly < 0 ? 0 : -leafCoef[y] * Vt[vc + ly];
      }
      B[o + y] = -P * invd[y];
    }
    B[o + x] = 0;
  }
  check();
  const vcore = new Float64Array(nC);
  for (const [u, leaves] of byOwner) {
    const l = lcol[u];
    if (l >= 0) {
      sRow(l, sBuf);
      for (let c = 0; c < nC; c++) vcore[c] = Vt[c * nL + l];
    }
    const bu = beta(u);
    for (const x of leaves) {
      const ax = leafW[items[x]];
      const coef = bu * ax;
      const o = x * nA;
      if (l >= 0) {
        for (let y = 0; y < nA; y++) {
          const cy = coreAt[y];
          let P: number;
          if (cy >= 0) P = -coef * vcore[cy];
          else {
            const ly = leafCol[y];
            P = ly < 0 ? 0 : coef * leafCoef[y] * sBuf[ly];
          }
          B[o + y] = -P * invd[y];
        }
      }
      // Leaves of the same user also couple through (δ_xy − β a_x a_y) / λ.
      for (const y of leaves) {
        if (y === x) continue;
        B[o + y] += ((bu * ax * leafW[items[y]]) / lambda) * invd[y];
      }
      B[o + x] = 0;
    }
  }
  progress(1, 'ease: done');
  return { items, B };
}

/** Items with at least one positive interaction: the size of the dense solve. */
function activeItems(train: Csr): number {
  const seen = new Uint8Array(train.cols);
  let n = 0;
  for (let q = 0; q < train.indptr[train.rows]; q++) {
    if (train.data[q] > 0 && seen[train.indices[q]] === 0) {
      seen[train.indices[q]] = 1;
      n++;
    }
  }
  return n;
}

async function fitEase(train: Csr, params: Params, opts: FitOptions): Promise<EaseModel | SparseEaseModel> {
  const p = easeParams(params);
  const sparse = p.variant === 'sparse' || (p.variant === 'auto' && activeItems(train) > p.maxItems);
  if (!sparse) {
    const { items, B } = await fitEaseMatrix(train, p, opts);
    return new EaseModel(p, train.rows, train.cols, items, B);
  }
  const check = (): void => {
    if (opts.signal?.aborted) throw abortReason(opts.signal);
  };
  check();
  // The per-item solves are independent: with more than one thread they run as pool tasks on G in
  // shared memory (the result does not depend on how the ranges are run; ease-sparse.test.ts checks it).
  const threads = resolveThreads(opts.threads);
  const pool = threads > 1 ? new WorkerPool({ threads, signal: opts.signal }) : null;
  try {
    const r = await fitSparseEase(train, {
      lambda: p.lambda,
      binary: p.binary,
      neighbors: p.neighbors,
      onProgress: opts.onProgress,
      yieldEvery: async () => {
        await new Promise<void>((resolve) => setImmediate(resolve));
        check();
      },
      ...(pool && {
        runColumns: (ranges: SparseColumnsArgs[]) => pool.map<SparseColumns>('ease.sparseColumns', ranges),
        share: toShared,
        // More ranges than threads: a thread slowed by the machine does not hold the others up.
        parts: pool.threads * 4,
      }),
    });
    return new SparseEaseModel(p, train.rows, r.graph);
  } finally {
    await pool?.close();
  }
}

function loadEase(artifact: ModelArtifact): EaseModel | SparseEaseModel {
  if (artifact.algorithm !== 'ease')
    throw new CairnError('CAIRN_VALIDATION', `not an ease artifact: ${artifact.algorithm}`);
  if (artifact.formatVersion === EASE_SPARSE_FORMAT_VERSION) {
    const items = Number(artifact.meta.items);
    return new SparseEaseModel(
      easeParams(artifact.params),
      Number(artifact.meta.users),
      graphFromArrays('ease', items, artifact.arrays),
    );
  }
  if (artifact.formatVersion !== EASE_FORMAT_VERSION) {
    throw new CairnError(
      'CAIRN_UNSUPPORTED',
      `ease artifact format ${artifact.formatVersion} is not supported`,
    );
  }
  const { items, B } = artifact.arrays;
  if (!(items instanceof Int32Array) || !(B instanceof Float32Array)) {
    throw new CairnError('CAIRN_VALIDATION', 'ease artifact is malformed');
  }
  return new EaseModel(
    easeParams(artifact.params),
    Number(artifact.meta.users),
    Number(artifact.meta.items),
    items,
    B,
  );
}

export const easeSpec: AlgorithmSpec = {
  name: 'ease',
  defaults: { ...DEFAULTS },
  space: {
    lambda: { kind: 'float', min: 10, max: 10_000, log: true },
  },
  fit: fitEase,
  load: loadEase,
};
