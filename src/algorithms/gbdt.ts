/**
 * Gradient-boosted regression trees for learning to rank (LambdaMART), in the style of LightGBM:
 *
 * - features are bucketed once into at most `bins` quantile bins each (≤ 255), plus one bin for
 *   missing values (NaN), so a split is a scan over a small histogram instead of over sorted rows;
 *   a split also learns where missing values go (its default direction);
 * - trees grow leaf-wise: the leaf whose best split gains most is split next, up to `leaves` leaves;
 *   the histogram of the larger child is the parent's minus the smaller child's (the subtraction
 *   trick), so every row is visited about log(leaves) times per tree, not `leaves` times;
 * - gradients are LightGBM's lambdarank ones: pairwise logistic loss (sigmoid 1) weighted by the
 *   |ΔNDCG| a swap of the two documents would cause (label gain 2^rel − 1, pairs whose higher-ranked
 *   document is in the top `max(ndcgAt, 30)`), scaled by the score gap and normalised per query;
 * - leaf values are Newton steps −G / (H + λ₂) times the learning rate;
 * - training stops when validation NDCG@ndcgAt has not improved for `earlyStoppingRounds` trees,
 *   and the model keeps the best iteration.
 *
 * A fitted model is a list of trees in flat typed arrays; the same structure holds trees imported
 * from a LightGBM text model (lightgbm.ts), so both predict, explain (Saabas path contributions)
 * and serialise the same way. Pure: no I/O.
 */
import { CairnError } from '../errors/errors.ts';
import { Rng } from './random.ts';

export interface RankingDataset {
  nFeatures: number;
  /** rows × nFeatures, row-major; NaN = missing (learned default direction per split). */
  features: Float32Array;
  /** Graded relevance ≥ 0 per row. */
  labels: Float32Array;
  /** Query boundaries like a CSR indptr: rows groups[q] .. groups[q+1]-1 belong to query q. */
  groups: Int32Array;
}

export interface LambdaMartParams {
  /** Maximum number of trees (boosting rounds). */
  trees: number;
  learningRate: number;
  /** Maximum leaves per tree (leaf-wise growth). */
  leaves: number;
  /** Minimum training rows in a leaf. */
  minDataInLeaf: number;
  /** L2 regularisation of leaf values. */
  lambdaL2: number;
  /** Value bins per feature (≤ 255); missing values get one more. */
  bins: number;
  /** Share of features each tree may split on (seeded sample per tree). */
  featureFraction: number;
  /** Cut-off of the NDCG the gradients weigh by and early stopping watches. */
  ndcgAt: number;
  /** Stop when validation NDCG has not improved for this many trees (0: never stop early). */
  earlyStoppingRounds: number;
  seed: number;
}

/**
 * Defaults tuned on the inner validation split of MovieTweetings' three protocols (never on a test
 * part); see docs/benchmarks.md, "Two-stage ranking (ltr)".
 */
export const LAMBDAMART_DEFAULTS: LambdaMartParams = Object.freeze({
  trees: 300,
  learningRate: 0.1,
  leaves: 15,
  minDataInLeaf: 200,
  lambdaL2: 10,
  bins: 255,
  featureFraction: 0.5,
  ndcgAt: 10,
  earlyStoppingRounds: 50,
  seed: 42,
});

const PARAM_RANGES: Record<keyof LambdaMartParams, { min: number; max: number; integer: boolean }> = {
  trees: { min: 1, max: 100_000, integer: true },
  learningRate: { min: 1e-6, max: 1, integer: false },
  leaves: { min: 2, max: 4096, integer: true },
  minDataInLeaf: { min: 1, max: 1e9, integer: true },
  lambdaL2: { min: 0, max: 1e9, integer: false },
  bins: { min: 2, max: 255, integer: true },
  featureFraction: { min: 1e-6, max: 1, integer: false },
  ndcgAt: { min: 1, max: 10_000, integer: true },
  earlyStoppingRounds: { min: 0, max: 100_000, integer: true },
  seed: { min: -(2 ** 53), max: 2 ** 53, integer: true },
};

/**
 * The full parameter set: defaults overridden by `params`, each checked against its range. Throws
 * CAIRN_VALIDATION naming `<prefix>.<name>` (e.g. `ranking.lambdaMart.leaves`).
 */
export function resolveLambdaMartParams(
  params: Partial<LambdaMartParams>,
  prefix = 'lambdamart',
): LambdaMartParams {
  const out: LambdaMartParams = { ...LAMBDAMART_DEFAULTS };
  for (const [key, raw] of Object.entries(params)) {
    if (raw === undefined) continue;
    const range = PARAM_RANGES[key as keyof LambdaMartParams];
    if (!range) {
      throw CairnError.validation([
        {
          field: `${prefix}.${key}`,
          message: `unknown parameter (known: ${Object.keys(PARAM_RANGES).join(', ')})`,
        },
      ]);
    }
    const v = raw;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < range.min || v > range.max) {
      throw CairnError.validation([
        { field: `${prefix}.${key}`, message: `must be a number in [${range.min}, ${range.max}]` },
      ]);
    }
    if (range.integer && !Number.isInteger(v)) {
      throw CairnError.validation([{ field: `${prefix}.${key}`, message: 'must be an integer' }]);
    }
    out[key as keyof LambdaMartParams] = v;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Model

/** Node decision flags, LightGBM's `decision_type` bits: 1 categorical, 2 default-left, 4..12 missing type. */
export const DECISION_DEFAULT_LEFT = 2;
/** Missing type (bits 2–3 of the decision): 0 none, 1 zero, 2 NaN. */
export const MISSING_NONE = 0;
export const MISSING_ZERO = 1;
export const MISSING_NAN = 2;
/** LightGBM's kZeroThreshold: |x| ≤ this counts as zero for missing-type `zero`. */
const ZERO_THRESHOLD = 1e-35;

/** One tree, in LightGBM's layout: internal nodes 0..n-1; a child < 0 is leaf ~child. */
export interface TreeJson {
  splitFeature: number[];
  /** Goes left when value ≤ threshold (after the missing-value rule). */
  threshold: number[];
  /** LightGBM decision_type bits (default-left = 2, missing type << 2). */
  decisionType: number[];
  leftChild: number[];
  rightChild: number[];
  splitGain: number[];
  /** What the node would predict as a leaf (shrinkage applied): the base of path contributions. */
  internalValue: number[];
  /** Leaf outputs, shrinkage already applied. */
  leafValue: number[];
}

export interface GbdtModelJson {
  format: 'cairn-gbdt';
  version: 1;
  featureNames: string[];
  /** Where the trees came from: `lambdarank` (trained here) or LightGBM's objective line. */
  objective: string;
  trees: TreeJson[];
  history: { bestIteration: number; validNdcg: number[] };
  params?: Partial<LambdaMartParams>;
}

/** A tree ensemble in flat arrays (all trees concatenated). */
export class GbdtModel {
  readonly featureNames: readonly string[];
  readonly objective: string;
  readonly history: { bestIteration: number; validNdcg: number[] };
  /** The parameters it was trained with (absent for imported models). */
  readonly params: Partial<LambdaMartParams>;
  readonly nFeatures: number;
  readonly nTrees: number;
  // Node arrays over all trees; tree t's nodes are nodeStart[t] .. nodeStart[t+1]-1, its leaves
  // leafStart[t] .. leafStart[t+1]-1; child indices are local to the tree.
  private readonly nodeStart: Int32Array;
  private readonly leafStart: Int32Array;
  private readonly feature: Int32Array;
  private readonly threshold: Float64Array;
  private readonly decision: Uint8Array;
  private readonly left: Int32Array;
  private readonly right: Int32Array;
  private readonly gain: Float64Array;
  private readonly internalValue: Float64Array;
  private readonly leafValue: Float64Array;
  // The walk form of all trees, for predict / predictMany. Walk nodes are the internal nodes
  // (0 .. nodes-1, global indices) followed by the leaves (nodes + global leaf index). A leaf is a
  // node whose two children are itself, so a row can take exactly `walkDepth[t]` steps in tree t and
  // stop on its leaf: no per-step exit test, no per-tree base arithmetic, and several rows can walk
  // side by side with no branch that depends on where each one is.
  /** Children per walk node (2w: left, 2w+1: right), global walk indices. */
  private readonly walkChild: Int32Array;
  private readonly walkFeature: Int32Array;
  private readonly walkThreshold: Float64Array;
  /** 1 when NaN goes right at this node (NaN-missing default, or "none": NaN as 0 vs the threshold). */
  private readonly walkNanRight: Uint8Array;
  /** Leaf output per walk node (0 for internal nodes). */
  private readonly walkValue: Float64Array;
  /** Per tree: the walk index of its root, and its depth (steps from the root to its deepest leaf). */
  private readonly walkRoot: Int32Array;
  private readonly walkDepth: Int32Array;
  /** Some node treats zero as missing (LightGBM imports): walks take LightGBM's general rule. */
  private readonly zeroMissing: boolean;
  /** predictMany's per-row sums (double, like predict), grown on demand. */
  private scratch = new Float64Array(0);

  constructor(
    featureNames: readonly string[],
    trees: readonly TreeJson[],
    objective = 'lambdarank',
    history: { bestIteration: number; validNdcg: number[] } = { bestIteration: trees.length, validNdcg: [] },
    params: Partial<LambdaMartParams> = {},
  ) {
    this.featureNames = Object.freeze([...featureNames]);
    this.nFeatures = featureNames.length;
    this.objective = objective;
    this.history = { bestIteration: history.bestIteration, validNdcg: [...history.validNdcg] };
    this.params = { ...params };
    this.nTrees = trees.length;
    let nodes = 0;
    let leaves = 0;
    for (const t of trees) {
      nodes += t.splitFeature.length;
      leaves += t.leafValue.length;
    }
    this.nodeStart = new Int32Array(trees.length + 1);
    this.leafStart = new Int32Array(trees.length + 1);
    this.feature = new Int32Array(nodes);
    this.threshold = new Float64Array(nodes);
    this.decision = new Uint8Array(nodes);
    this.left = new Int32Array(nodes);
    this.right = new Int32Array(nodes);
    this.gain = new Float64Array(nodes);
    this.internalValue = new Float64Array(nodes);
    this.leafValue = new Float64Array(leaves);
    let n = 0;
    let l = 0;
    trees.forEach((t, ti) => {
      const nn = t.splitFeature.length;
      const nl = t.leafValue.length;
      const bad = (message: string): CairnError =>
        CairnError.validation([{ field: 'model', message: `tree ${ti}: ${message}` }]);
      if (nl !== nn + 1) throw bad(`${nn} internal nodes need ${nn + 1} leaves, got ${nl}`);
      for (const [name, arr] of [
        ['threshold', t.threshold],
        ['decisionType', t.decisionType],
        ['leftChild', t.leftChild],
        ['rightChild', t.rightChild],
        ['splitGain', t.splitGain],
        ['internalValue', t.internalValue],
      ] as const) {
        if (arr.length !== nn) throw bad(`${name} has ${arr.length} entries, expected ${nn}`);
      }
      this.nodeStart[ti] = n;
      this.leafStart[ti] = l;
      for (let j = 0; j < nn; j++) {
        const f = t.splitFeature[j];
        if (!(Number.isInteger(f) && f >= 0 && f < this.nFeatures))
          throw bad(`split feature ${f} out of range`);
        const d = t.decisionType[j];
        if ((d & 1) !== 0) throw bad('categorical splits are not supported');
        const lc = t.leftChild[j];
        const rc = t.rightChild[j];
        for (const c of [lc, rc]) {
          if (!Number.isInteger(c) || (c >= 0 ? c >= nn || c <= j : ~c >= nl))
            throw bad(`child ${c} out of range`);
        }
        this.feature[n + j] = f;
        this.threshold[n + j] = t.threshold[j];
        this.decision[n + j] = d;
        this.left[n + j] = lc;
        this.right[n + j] = rc;
        this.gain[n + j] = t.splitGain[j];
        this.internalValue[n + j] = t.internalValue[j];
      }
      for (let j = 0; j < nl; j++) this.leafValue[l + j] = t.leafValue[j];
      n += nn;
      l += nl;
    });
    this.nodeStart[trees.length] = n;
    this.leafStart[trees.length] = l;
    const walk = nodes + leaves;
    this.walkChild = new Int32Array(2 * walk);
    this.walkFeature = new Int32Array(walk);
    this.walkThreshold = new Float64Array(walk);
    this.walkNanRight = new Uint8Array(walk);
    this.walkValue = new Float64Array(walk);
    this.walkRoot = new Int32Array(trees.length);
    this.walkDepth = new Int32Array(trees.length);
    let zeroMissing = false;
    const depth = new Int32Array(walk);
    for (let t = 0; t < trees.length; t++) {
      const base = this.nodeStart[t];
      const lbase = nodes + this.leafStart[t];
      const toWalk = (c: number): number => (c >= 0 ? base + c : lbase + ~c);
      this.walkRoot[t] = this.nodeStart[t + 1] === base ? lbase : base;
      let maxDepth = 0;
      // Children have larger indices than their parent (checked above), so one forward pass sets depths.
      for (let g = base; g < this.nodeStart[t + 1]; g++) {
        const l = toWalk(this.left[g]);
        const r = toWalk(this.right[g]);
        this.walkChild[2 * g] = l;
        this.walkChild[2 * g + 1] = r;
        this.walkFeature[g] = this.feature[g];
        this.walkThreshold[g] = this.threshold[g];
        this.walkNanRight[g] = this.goesLeft(g, Number.NaN) ? 0 : 1;
        if (((this.decision[g] >> 2) & 3) === MISSING_ZERO) zeroMissing = true;
        depth[l] = depth[r] = depth[g] + 1;
        maxDepth = Math.max(maxDepth, depth[g] + 1);
      }
      this.walkDepth[t] = maxDepth;
    }
    for (let j = 0; j < leaves; j++) {
      const w = nodes + j;
      this.walkChild[2 * w] = w;
      this.walkChild[2 * w + 1] = w;
      this.walkValue[w] = this.leafValue[j];
    }
    this.zeroMissing = zeroMissing;
  }

  /** LightGBM's NumericalDecision. */
  private goesLeft(g: number, value: number): boolean {
    const d = this.decision[g];
    const missing = (d >> 2) & 3;
    let v = value;
    if (v !== v && missing !== MISSING_NAN) v = 0;
    if ((missing === MISSING_ZERO && Math.abs(v) <= ZERO_THRESHOLD) || (missing === MISSING_NAN && v !== v)) {
      return (d & DECISION_DEFAULT_LEFT) !== 0;
    }
    return v <= this.threshold[g];
  }

  /**
   * One step of the walk from node w (internal or leaf) for value v, under LightGBM's general rule
   * (missing type zero included). A leaf's children are itself, so stepping from a leaf stays there.
   */
  private walkStep(w: number, v: number): number {
    const nodes = this.feature.length;
    return this.walkChild[2 * w + (w >= nodes || this.goesLeft(w, v) ? 0 : 1)];
  }

  /** Raw score of one row (features[offset .. offset+nFeatures)). */
  predict(features: Float32Array, offset = 0): number {
    const { walkChild: child, walkFeature: feature, walkThreshold: threshold, walkNanRight: nanRight } = this;
    const { walkValue, walkRoot, walkDepth } = this;
    const nTrees = this.nTrees;
    let s = 0;
    let t = 0;
    if (!this.zeroMissing) {
      // Four trees side by side (independent walks the CPU overlaps), each as deep as the deepest of
      // them: a leaf steps to itself. Their leaves are added in tree order, as predictMany does.
      for (; t + 4 <= nTrees; t += 4) {
        let w0 = walkRoot[t];
        let w1 = walkRoot[t + 1];
        let w2 = walkRoot[t + 2];
        let w3 = walkRoot[t + 3];
        const depth = Math.max(walkDepth[t], walkDepth[t + 1], walkDepth[t + 2], walkDepth[t + 3]);
        for (let d = 0; d < depth; d++) {
          const v0 = features[offset + feature[w0]];
          const v1 = features[offset + feature[w1]];
          const v2 = features[offset + feature[w2]];
          const v3 = features[offset + feature[w3]];
          w0 = child[2 * w0 + (+(v0 > threshold[w0]) | (nanRight[w0] & +(v0 !== v0)))];
          w1 = child[2 * w1 + (+(v1 > threshold[w1]) | (nanRight[w1] & +(v1 !== v1)))];
          w2 = child[2 * w2 + (+(v2 > threshold[w2]) | (nanRight[w2] & +(v2 !== v2)))];
          w3 = child[2 * w3 + (+(v3 > threshold[w3]) | (nanRight[w3] & +(v3 !== v3)))];
        }
        s += walkValue[w0];
        s += walkValue[w1];
        s += walkValue[w2];
        s += walkValue[w3];
      }
    }
    for (; t < nTrees; t++) s += walkValue[this.walkTo(features, offset, walkRoot[t], walkDepth[t])];
    return s;
  }

  /** The leaf (walk index) a row reaches from node w in `depth` steps; LightGBM's general rule. */
  private walkTo(features: Float32Array, offset: number, w0: number, depth: number): number {
    const { walkChild: child, walkFeature: feature, walkThreshold: threshold, walkNanRight: nanRight } = this;
    let w = w0;
    if (this.zeroMissing) {
      for (let d = 0; d < depth; d++) w = this.walkStep(w, features[offset + feature[w]]);
    } else {
      for (let d = 0; d < depth; d++) {
        const v = features[offset + feature[w]];
        // Right when v > threshold; NaN compares false, so it takes the node's NaN direction.
        w = child[2 * w + (+(v > threshold[w]) | (nanRight[w] & +(v !== v)))];
      }
    }
    return w;
  }

  /** Raw scores of `rows` consecutive rows into out[0..rows); each equals Math.fround(predict(row)). */
  predictMany(features: Float32Array, rows: number, out: Float32Array): void {
    const nf = this.nFeatures;
    const acc = this.scratch.length >= rows ? this.scratch : (this.scratch = new Float64Array(rows));
    acc.fill(0, 0, rows);
    const { walkChild: child, walkFeature: feature, walkThreshold: threshold, walkNanRight: nanRight } = this;
    const { walkValue, walkRoot, walkDepth } = this;
    const general = this.zeroMissing;
    // Tree by tree over all rows (one tree's nodes stay in cache while every row walks it), eight rows
    // side by side: their walks are independent chains of loads the CPU overlaps, and the child is
    // picked by index (+(comparison) is a 0/1 without a branch) so no step mispredicts. Every row adds its
    // trees' leaf values in tree order, as predict does, so the sums are bit for bit the same.
    const rows8 = general ? 0 : rows - (rows % 8);
    for (let t = 0; t < this.nTrees; t++) {
      const root = walkRoot[t];
      const depth = walkDepth[t];
      for (let r = 0; r < rows8; r += 8) {
        const o0 = r * nf;
        const o1 = (r + 1) * nf;
        const o2 = (r + 2) * nf;
        const o3 = (r + 3) * nf;
        const o4 = (r + 4) * nf;
        const o5 = (r + 5) * nf;
        const o6 = (r + 6) * nf;
        const o7 = (r + 7) * nf;
        let w0 = root;
        let w1 = root;
        let w2 = root;
        let w3 = root;
        let w4 = root;
        let w5 = root;
        let w6 = root;
        let w7 = root;
        for (let d = 0; d < depth; d++) {
          const v0 = features[o0 + feature[w0]];
          const v1 = features[o1 + feature[w1]];
          const v2 = features[o2 + feature[w2]];
          const v3 = features[o3 + feature[w3]];
          const v4 = features[o4 + feature[w4]];
          const v5 = features[o5 + feature[w5]];
          const v6 = features[o6 + feature[w6]];
          const v7 = features[o7 + feature[w7]];
          w0 = child[2 * w0 + (+(v0 > threshold[w0]) | (nanRight[w0] & +(v0 !== v0)))];
          w1 = child[2 * w1 + (+(v1 > threshold[w1]) | (nanRight[w1] & +(v1 !== v1)))];
          w2 = child[2 * w2 + (+(v2 > threshold[w2]) | (nanRight[w2] & +(v2 !== v2)))];
          w3 = child[2 * w3 + (+(v3 > threshold[w3]) | (nanRight[w3] & +(v3 !== v3)))];
          w4 = child[2 * w4 + (+(v4 > threshold[w4]) | (nanRight[w4] & +(v4 !== v4)))];
          w5 = child[2 * w5 + (+(v5 > threshold[w5]) | (nanRight[w5] & +(v5 !== v5)))];
          w6 = child[2 * w6 + (+(v6 > threshold[w6]) | (nanRight[w6] & +(v6 !== v6)))];
          w7 = child[2 * w7 + (+(v7 > threshold[w7]) | (nanRight[w7] & +(v7 !== v7)))];
        }
        acc[r] += walkValue[w0];
        acc[r + 1] += walkValue[w1];
        acc[r + 2] += walkValue[w2];
        acc[r + 3] += walkValue[w3];
        acc[r + 4] += walkValue[w4];
        acc[r + 5] += walkValue[w5];
        acc[r + 6] += walkValue[w6];
        acc[r + 7] += walkValue[w7];
      }
      for (let r = rows8; r < rows; r++) acc[r] += walkValue[this.walkTo(features, r * nf, root, depth)];
    }
    for (let r = 0; r < rows; r++) out[r] = acc[r];
  }

  /**
   * Per-feature contributions of one row (Saabas path attribution): walking each tree from the root,
   * the change of the node value at every split is credited to the split's feature. out.length =
   * nFeatures + 1, the last entry is the bias (sum of root values); they sum to predict(row).
   */
  contributions(features: Float32Array, offset: number, out: Float64Array): void {
    const nf = this.nFeatures;
    if (out.length < nf + 1) throw new RangeError('contributions: out needs nFeatures + 1 entries');
    out.fill(0, 0, nf + 1);
    for (let t = 0; t < this.nTrees; t++) {
      const base = this.nodeStart[t];
      const lbase = this.leafStart[t];
      if (this.nodeStart[t + 1] === base) {
        out[nf] += this.leafValue[lbase];
        continue;
      }
      out[nf] += this.internalValue[base];
      let node = 0;
      while (node >= 0) {
        const g = base + node;
        const next = this.goesLeft(g, features[offset + this.feature[g]]) ? this.left[g] : this.right[g];
        const value = next >= 0 ? this.internalValue[base + next] : this.leafValue[lbase + ~next];
        out[this.feature[g]] += value - this.internalValue[g];
        node = next;
      }
    }
  }

  /** Total split gain (or split count) per feature name; features never split on count 0. */
  importance(kind: 'gain' | 'split'): Record<string, number> {
    const acc = new Float64Array(this.nFeatures);
    for (let g = 0; g < this.feature.length; g++) acc[this.feature[g]] += kind === 'gain' ? this.gain[g] : 1;
    const out: Record<string, number> = {};
    this.featureNames.forEach((name, f) => (out[name] = acc[f]));
    return out;
  }

  /** Plain JSON; `fromJSON(JSON.parse(JSON.stringify(m.toJSON())))` predicts bit for bit the same. */
  toJSON(): GbdtModelJson {
    const trees: TreeJson[] = [];
    for (let t = 0; t < this.nTrees; t++) {
      const a = this.nodeStart[t];
      const b = this.nodeStart[t + 1];
      trees.push({
        splitFeature: Array.from(this.feature.subarray(a, b)),
        threshold: Array.from(this.threshold.subarray(a, b)),
        decisionType: Array.from(this.decision.subarray(a, b)),
        leftChild: Array.from(this.left.subarray(a, b)),
        rightChild: Array.from(this.right.subarray(a, b)),
        splitGain: Array.from(this.gain.subarray(a, b)),
        internalValue: Array.from(this.internalValue.subarray(a, b)),
        leafValue: Array.from(this.leafValue.subarray(this.leafStart[t], this.leafStart[t + 1])),
      });
    }
    return {
      format: 'cairn-gbdt',
      version: 1,
      featureNames: [...this.featureNames],
      objective: this.objective,
      trees,
      history: { bestIteration: this.history.bestIteration, validNdcg: [...this.history.validNdcg] },
      params: { ...this.params },
    };
  }

  static fromJSON(json: GbdtModelJson): GbdtModel {
    if (json?.format !== 'cairn-gbdt' || json.version !== 1 || !Array.isArray(json.trees)) {
      throw CairnError.validation([{ field: 'model', message: 'not a cairn-gbdt version 1 model' }]);
    }
    return new GbdtModel(json.featureNames, json.trees, json.objective, json.history, json.params ?? {});
  }
}

// ---------------------------------------------------------------------------------------------
// Metrics

/** 1 / log2(rank + 2) for rank = 0, 1, ... */
function discount(rank: number): number {
  return 1 / Math.log2(rank + 2);
}

/**
 * Mean NDCG@k (label gain 2^rel − 1) over the queries with at least one relevant row; ties in score
 * keep row order. `order` is scratch of at least the largest query's length.
 */
export function meanNdcg(
  scores: ArrayLike<number>,
  labels: Float32Array,
  groups: Int32Array,
  k: number,
  order: Int32Array = new Int32Array(maxGroup(groups)),
): number {
  let sum = 0;
  let n = 0;
  const ideal = new Float64Array(k);
  for (let q = 0; q + 1 < groups.length; q++) {
    const s = groups[q];
    const len = groups[q + 1] - s;
    const idcg = idealDcg(labels, s, len, k, ideal);
    if (idcg <= 0) continue;
    const o = sortByScore(scores, s, len, order);
    let dcg = 0;
    for (let r = 0; r < Math.min(k, len); r++) dcg += (2 ** labels[s + o[r]] - 1) * discount(r);
    sum += dcg / idcg;
    n++;
  }
  return n > 0 ? sum / n : 0;
}

function maxGroup(groups: Int32Array): number {
  let m = 0;
  for (let q = 0; q + 1 < groups.length; q++) m = Math.max(m, groups[q + 1] - groups[q]);
  return m;
}

/** DCG of the best ordering of the query's labels at cut-off k (top-k selection into `top`). */
function idealDcg(labels: Float32Array, s: number, len: number, k: number, top: Float64Array): number {
  const kk = Math.min(k, len);
  let filled = 0;
  for (let j = 0; j < len; j++) {
    const v = labels[s + j];
    if (v <= 0) continue;
    // Insertion into a descending list of the kk largest labels.
    let p: number;
    if (filled === kk) {
      if (top[kk - 1] >= v) continue;
      p = kk - 1;
    } else p = filled++;
    while (p > 0 && top[p - 1] < v) {
      top[p] = top[p - 1];
      p--;
    }
    top[p] = v;
  }
  let dcg = 0;
  for (let r = 0; r < filled; r++) dcg += (2 ** top[r] - 1) * discount(r);
  return dcg;
}

/** Local indices 0..len-1 of the query sorted by score descending, ties by index (into order). */
function sortByScore(scores: ArrayLike<number>, s: number, len: number, order: Int32Array): Int32Array {
  const o = order.subarray(0, len);
  for (let j = 0; j < len; j++) o[j] = j;
  if (mergeTmp.length < len) mergeTmp = new Int32Array(Math.max(len, 2 * mergeTmp.length));
  mergeSort(scores, s, o, mergeTmp, 0, len);
  return o;
}

let mergeTmp = new Int32Array(256);

/**
 * Stable merge sort of o[lo..hi) by score descending (ties keep index order); insertion sort for short
 * runs. A hand-written sort: a comparator passed to TypedArray#sort costs a call per comparison, and
 * this runs for every query on every boosting round.
 */
function mergeSort(
  scores: ArrayLike<number>,
  s: number,
  o: Int32Array,
  tmp: Int32Array,
  lo: number,
  hi: number,
): void {
  if (hi - lo <= 24) {
    for (let i = lo + 1; i < hi; i++) {
      const v = o[i];
      const sv = scores[s + v];
      let j = i - 1;
      while (j >= lo && scores[s + o[j]] < sv) {
        o[j + 1] = o[j];
        j--;
      }
      o[j + 1] = v;
    }
    return;
  }
  const mid = (lo + hi) >> 1;
  mergeSort(scores, s, o, tmp, lo, mid);
  mergeSort(scores, s, o, tmp, mid, hi);
  if (scores[s + o[mid - 1]] >= scores[s + o[mid]]) return;
  let a = lo;
  let b = mid;
  let w = lo;
  while (a < mid && b < hi) tmp[w++] = scores[s + o[b]] > scores[s + o[a]] ? o[b++] : o[a++];
  while (a < mid) tmp[w++] = o[a++];
  while (b < hi) tmp[w++] = o[b++];
  for (let j = lo; j < hi; j++) o[j] = tmp[j];
}

// ---------------------------------------------------------------------------------------------
// Training

/** Pairs are considered while their higher-ranked document is among the top this many (LightGBM's default). */
const TRUNCATION_LEVEL = 30;
const MIN_SUM_HESSIAN = 1e-3;
/** Rows sampled per feature to place the bin boundaries. */
const BIN_SAMPLE = 200_000;

/** Per-feature bin boundaries: value bins 0..n-1 (v ≤ upper[b]), missing values in bin n. */
interface BinMapper {
  upper: Float64Array[];
  /** Value bins per feature (the missing bin is `nValueBins[f]`). */
  nValueBins: Int32Array;
  /** Offset of feature f's bins in a histogram (in bins). */
  offset: Int32Array;
  totalBins: number;
}

function buildBins(data: RankingDataset, maxBins: number, sample: Float64Array): BinMapper {
  const { nFeatures: nf, features } = data;
  const rows = features.length / nf;
  const stride = Math.max(1, Math.ceil(rows / BIN_SAMPLE));
  const upper: Float64Array[] = [];
  const nValueBins = new Int32Array(nf);
  const offset = new Int32Array(nf + 1);
  for (let f = 0; f < nf; f++) {
    let n = 0;
    for (let r = 0; r < rows; r += stride) {
      const v = features[r * nf + f];
      if (v === v) sample[n++] = v;
    }
    const sorted = sample.subarray(0, n).sort();
    // Distinct values and their counts, in place.
    let distinct = 0;
    const counts: number[] = [];
    for (let j = 0; j < n; j++) {
      if (distinct > 0 && sorted[distinct - 1] === sorted[j]) counts[distinct - 1]++;
      else {
        sorted[distinct++] = sorted[j];
        counts.push(1);
      }
    }
    const bounds: number[] = [];
    if (distinct <= maxBins) {
      for (let j = 0; j + 1 < distinct; j++) bounds.push((sorted[j] + sorted[j + 1]) / 2);
    } else {
      // Greedy equal-frequency bins over distinct values: a frequent value gets a bin of its own.
      const per = n / maxBins;
      let acc = 0;
      for (let j = 0; j + 1 < distinct && bounds.length < maxBins - 1; j++) {
        acc += counts[j];
        if (acc >= per * (bounds.length + 1) || counts[j + 1] >= per)
          bounds.push((sorted[j] + sorted[j + 1]) / 2);
      }
    }
    bounds.push(Infinity);
    upper.push(Float64Array.from(bounds));
    nValueBins[f] = bounds.length;
    offset[f + 1] = offset[f] + bounds.length + 1;
  }
  return { upper, nValueBins, offset, totalBins: offset[nf] };
}

function binOf(upper: Float64Array, v: number): number {
  let lo = 0;
  let hi = upper.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (v <= upper[mid]) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

function binRows(data: RankingDataset, bins: BinMapper): Uint8Array {
  const { nFeatures: nf, features } = data;
  const out = new Uint8Array(features.length);
  for (let p = 0; p < features.length; p++) {
    const f = p % nf;
    const v = features[p];
    out[p] = v === v ? binOf(bins.upper[f], v) : bins.nValueBins[f];
  }
  return out;
}

function checkDataset(d: RankingDataset, name: string, nFeatures: number): void {
  const bad = (message: string): CairnError => CairnError.validation([{ field: name, message }]);
  if (d.nFeatures !== nFeatures) throw bad(`has ${d.nFeatures} features, expected ${nFeatures}`);
  const rows = d.labels.length;
  if (d.features.length !== rows * nFeatures) throw bad('features must hold rows × nFeatures values');
  if (d.groups.length < 1 || d.groups[0] !== 0 || d.groups[d.groups.length - 1] !== rows) {
    throw bad('groups must start at 0 and end at the row count');
  }
  for (let q = 0; q + 1 < d.groups.length; q++)
    if (d.groups[q + 1] < d.groups[q]) throw bad('groups must not decrease');
  for (let r = 0; r < rows; r++) {
    const l = d.labels[r];
    if (!(l >= 0 && l <= 31)) throw bad(`label ${l} at row ${r} is not in [0, 31]`);
  }
}

/** Scratch of the lambdarank gradient pass. */
interface LambdaScratch {
  order: Int32Array;
  ideal: Float64Array;
  invMaxDcg: Float64Array;
  /** discount(rank) for every rank of the largest query. */
  disc: Float64Array;
  /** 2^label − 1 per row. */
  gain: Float64Array;
}

/**
 * LightGBM's LambdarankNDCG::GetGradientsForOneQuery (sigmoid 1, norm on) for every query, into
 * grad/hess (rows). `invMaxDcg[q]` is 1 / ideal DCG at the truncation level (0 when no relevant row).
 */
function lambdaGradients(
  data: RankingDataset,
  scores: Float64Array,
  grad: Float64Array,
  hess: Float64Array,
  scratch: LambdaScratch,
  truncation: number,
): void {
  const { labels, groups } = data;
  const { disc, gain } = scratch;
  grad.fill(0);
  hess.fill(0);
  for (let q = 0; q + 1 < groups.length; q++) {
    const s = groups[q];
    const len = groups[q + 1] - s;
    const inv = scratch.invMaxDcg[q];
    if (inv === 0 || len < 2) continue;
    const o = sortByScore(scores, s, len, scratch.order);
    const best = scores[s + o[0]];
    let worstIdx = len - 1;
    if (worstIdx > 0 && scores[s + o[worstIdx]] === -Infinity) worstIdx--;
    const worst = scores[s + o[worstIdx]];
    let sumLambdas = 0;
    const top = Math.min(truncation, len - 1);
    for (let i = 0; i < top; i++) {
      const hi0 = o[i];
      for (let j = i + 1; j < len; j++) {
        const lo0 = o[j];
        const li = labels[s + hi0];
        const lj = labels[s + lo0];
        if (li === lj) continue;
        // high: the more relevant of the two; its rank is i or j.
        let high: number, low: number, highRank: number, lowRank: number;
        if (li > lj) {
          high = hi0;
          low = lo0;
          highRank = i;
          lowRank = j;
        } else {
          high = lo0;
          low = hi0;
          highRank = j;
          lowRank = i;
        }
        const deltaScore = scores[s + high] - scores[s + low];
        const dcgGap = gain[s + high] - gain[s + low];
        const pairedDiscount = Math.abs(disc[highRank] - disc[lowRank]);
        let deltaNdcg = dcgGap * pairedDiscount * inv;
        if (best !== worst) deltaNdcg /= 0.01 + Math.abs(deltaScore);
        let pLambda = 1 / (1 + Math.exp(deltaScore));
        let pHess = pLambda * (1 - pLambda);
        pLambda *= -deltaNdcg;
        pHess *= deltaNdcg;
        grad[s + high] += pLambda;
        hess[s + high] += pHess;
        grad[s + low] -= pLambda;
        hess[s + low] += pHess;
        sumLambdas -= 2 * pLambda;
      }
    }
    if (sumLambdas > 0) {
      const norm = Math.log2(1 + sumLambdas) / sumLambdas;
      for (let j = 0; j < len; j++) {
        grad[s + j] *= norm;
        hess[s + j] *= norm;
      }
    }
  }
}

/** The best split of one leaf. */
interface Split {
  gain: number;
  feature: number;
  bin: number;
  defaultLeft: boolean;
  leftG: number;
  leftH: number;
  leftN: number;
}

function noSplit(): Split {
  return { gain: 0, feature: -1, bin: 0, defaultLeft: false, leftG: 0, leftH: 0, leftN: 0 };
}

/**
 * Trains a LambdaMART ranker on `train`, early-stopping on `valid` (when given and
 * `earlyStoppingRounds` > 0). Deterministic for a seed. Throws CAIRN_VALIDATION for a malformed
 * dataset or parameter.
 */
export function trainLambdaMart(
  train: RankingDataset,
  valid: RankingDataset | null,
  params: Partial<LambdaMartParams>,
  options: { featureNames: readonly string[]; onProgress?: (f: number) => void; signal?: AbortSignal },
): GbdtModel {
  const p = resolveLambdaMartParams(params);
  const nf = options.featureNames.length;
  checkDataset(train, 'train', nf);
  if (valid) checkDataset(valid, 'valid', nf);
  const rows = train.labels.length;
  const bins = buildBins(train, p.bins, new Float64Array(Math.min(rows, BIN_SAMPLE)));
  const binned = binRows(train, bins);
  const totalBins = bins.totalBins;
  const truncation = Math.max(TRUNCATION_LEVEL, p.ndcgAt);
  const scratchOrder = new Int32Array(Math.max(maxGroup(train.groups), valid ? maxGroup(valid.groups) : 0));
  const ideal = new Float64Array(truncation);
  const invMaxDcg = new Float64Array(train.groups.length - 1);
  for (let q = 0; q + 1 < train.groups.length; q++) {
    const d = idealDcg(
      train.labels,
      train.groups[q],
      train.groups[q + 1] - train.groups[q],
      truncation,
      ideal,
    );
    invMaxDcg[q] = d > 0 ? 1 / d : 0;
  }
  const disc = Float64Array.from({ length: scratchOrder.length }, (_, r) => discount(r));
  const gain = Float64Array.from(train.labels, (l) => 2 ** l - 1);
  const scratch: LambdaScratch = { order: scratchOrder, ideal, invMaxDcg, disc, gain };
  const scores = new Float64Array(rows);
  const grad = new Float64Array(rows);
  const hess = new Float64Array(rows);
  const validScores = valid ? new Float64Array(valid.labels.length) : null;
  const rng = new Rng(p.seed);
  const maxLeaves = p.leaves;
  // Per-leaf state of the tree being grown.
  const order = new Int32Array(rows);
  const tmp = new Int32Array(rows);
  const leafStart = new Int32Array(maxLeaves);
  const leafEnd = new Int32Array(maxLeaves);
  const leafG = new Float64Array(maxLeaves);
  const leafH = new Float64Array(maxLeaves);
  const leafParent = new Int32Array(maxLeaves); // internal node pointing at the leaf, -1 for the root
  const leafSide = new Uint8Array(maxLeaves); // 0 left child, 1 right child of its parent
  const hists: Float64Array[] = Array.from({ length: maxLeaves }, () => new Float64Array(totalBins * 3));
  const best: Split[] = Array.from({ length: maxLeaves }, noSplit);
  const nUse = Math.max(1, Math.round(p.featureFraction * nf));
  const used = new Int32Array(nf);
  for (let f = 0; f < nf; f++) used[f] = f;
  let nUsed = nf;
  const lambda = p.lambdaL2;
  const lr = p.learningRate;
  const leafOut = (g: number, h: number): number => (-g / (h + lambda)) * lr;
  const score = (g: number, h: number): number => (g * g) / (h + lambda);

  const buildHist = (leaf: number, into: Float64Array): void => {
    into.fill(0);
    const off = bins.offset;
    for (let p0 = leafStart[leaf]; p0 < leafEnd[leaf]; p0++) {
      const r = order[p0];
      const g = grad[r];
      const h = hess[r];
      const base = r * nf;
      for (let u = 0; u < nUsed; u++) {
        const f = used[u];
        const b = (off[f] + binned[base + f]) * 3;
        into[b] += g;
        into[b + 1] += h;
        into[b + 2]++;
      }
    }
  };

  const findSplit = (leaf: number): void => {
    const hist = hists[leaf];
    const G = leafG[leaf];
    const H = leafH[leaf];
    const N = leafEnd[leaf] - leafStart[leaf];
    const out = best[leaf];
    out.gain = 0;
    out.feature = -1;
    if (N < 2 * p.minDataInLeaf) return;
    const parentScore = score(G, H);
    for (let u = 0; u < nUsed; u++) {
      const f = used[u];
      const o = bins.offset[f] * 3;
      const nb = bins.nValueBins[f];
      const mo = o + nb * 3; // missing bin
      const mG = hist[mo];
      const mH = hist[mo + 1];
      const mN = hist[mo + 2];
      // Two passes: missing values right (defaultLeft false), then left (only when there are any).
      for (let pass = 0; pass < (mN > 0 ? 2 : 1); pass++) {
        let lg = pass === 1 ? mG : 0;
        let lh = pass === 1 ? mH : 0;
        let ln = pass === 1 ? mN : 0;
        // Threshold at value bin t: bins ≤ t go left. With no missing values the last bin is no split.
        const lastT = mN > 0 && pass === 0 ? nb - 1 : nb - 2;
        for (let t = 0; t <= lastT; t++) {
          const b = o + t * 3;
          lg += hist[b];
          lh += hist[b + 1];
          ln += hist[b + 2];
          if (ln < p.minDataInLeaf || lh < MIN_SUM_HESSIAN) continue;
          const rn = N - ln;
          const rh = H - lh;
          if (rn < p.minDataInLeaf) break;
          if (rh < MIN_SUM_HESSIAN) continue;
          const gain = score(lg, lh) + score(G - lg, rh) - parentScore;
          if (gain > out.gain) {
            out.gain = gain;
            out.feature = f;
            out.bin = t;
            out.defaultLeft = pass === 1;
            out.leftG = lg;
            out.leftH = lh;
            out.leftN = ln;
          }
        }
      }
    }
  };

  const trees: TreeJson[] = [];
  const validNdcg: number[] = [];
  let bestIteration = 0;
  let bestNdcg = -Infinity;
  const stopping = valid !== null && p.earlyStoppingRounds > 0;
  for (let it = 0; it < p.trees; it++) {
    options.signal?.throwIfAborted();
    lambdaGradients(train, scores, grad, hess, scratch, truncation);
    // Feature sample of this tree (partial Fisher–Yates over all features).
    if (nUse < nf) {
      for (let f = 0; f < nf; f++) used[f] = f;
      for (let i = 0; i < nUse; i++) {
        const j = i + rng.int(nf - i);
        const t = used[i];
        used[i] = used[j];
        used[j] = t;
      }
      used.subarray(0, nUse).sort();
      nUsed = nUse;
    }
    // Root.
    for (let r = 0; r < rows; r++) order[r] = r;
    let G = 0;
    let H = 0;
    for (let r = 0; r < rows; r++) {
      G += grad[r];
      H += hess[r];
    }
    leafStart[0] = 0;
    leafEnd[0] = rows;
    leafG[0] = G;
    leafH[0] = H;
    leafParent[0] = -1;
    buildHist(0, hists[0]);
    findSplit(0);
    const tree: TreeJson = {
      splitFeature: [],
      threshold: [],
      decisionType: [],
      leftChild: [],
      rightChild: [],
      splitGain: [],
      internalValue: [],
      leafValue: [],
    };
    let nLeaves = 1;
    while (nLeaves < maxLeaves) {
      let leaf = -1;
      let bestGain = 0;
      for (let l = 0; l < nLeaves; l++) {
        if (best[l].feature >= 0 && best[l].gain > bestGain) {
          bestGain = best[l].gain;
          leaf = l;
        }
      }
      if (leaf < 0) break;
      const sp = best[leaf];
      const f = sp.feature;
      const nb = bins.nValueBins[f];
      // Stable partition of the leaf's rows: left rows stay in place, right rows follow.
      let w = leafStart[leaf];
      let nr = 0;
      for (let q = leafStart[leaf]; q < leafEnd[leaf]; q++) {
        const r = order[q];
        const b = binned[r * nf + f];
        const goLeft = b === nb ? sp.defaultLeft : b <= sp.bin;
        if (goLeft) order[w++] = r;
        else tmp[nr++] = r;
      }
      order.set(tmp.subarray(0, nr), w);
      const node = tree.splitFeature.length;
      tree.splitFeature.push(f);
      // The last value bin's bound is +∞ (a values-vs-missing split); JSON has no ∞, so the largest double.
      tree.threshold.push(Math.min(bins.upper[f][sp.bin], Number.MAX_VALUE));
      tree.decisionType.push((sp.defaultLeft ? DECISION_DEFAULT_LEFT : 0) | (MISSING_NAN << 2));
      tree.leftChild.push(~leaf);
      tree.rightChild.push(~nLeaves);
      tree.splitGain.push(sp.gain);
      tree.internalValue.push(leafOut(leafG[leaf], leafH[leaf]));
      if (leafParent[leaf] >= 0) {
        if (leafSide[leaf] === 0) tree.leftChild[leafParent[leaf]] = node;
        else tree.rightChild[leafParent[leaf]] = node;
      }
      const right = nLeaves++;
      leafStart[right] = w;
      leafEnd[right] = leafEnd[leaf];
      leafEnd[leaf] = w;
      leafG[right] = leafG[leaf] - sp.leftG;
      leafH[right] = leafH[leaf] - sp.leftH;
      leafG[leaf] = sp.leftG;
      leafH[leaf] = sp.leftH;
      leafParent[leaf] = node;
      leafSide[leaf] = 0;
      leafParent[right] = node;
      leafSide[right] = 1;
      // Histogram of the smaller child from its rows; the larger one is the parent's minus it.
      const parentHist = hists[leaf];
      const smallIsLeft = leafEnd[leaf] - leafStart[leaf] <= leafEnd[right] - leafStart[right];
      const small = smallIsLeft ? leaf : right;
      const large = smallIsLeft ? right : leaf;
      const smallHist = hists[right];
      buildHist(small, smallHist);
      for (let u = 0; u < nUsed; u++) {
        const uf = used[u];
        for (let b = bins.offset[uf] * 3; b < bins.offset[uf + 1] * 3; b++) parentHist[b] -= smallHist[b];
      }
      // parentHist now holds the large child's histogram, smallHist the small one's.
      hists[large] = parentHist;
      hists[small] = smallHist;
      findSplit(leaf);
      findSplit(right);
    }
    for (let l = 0; l < nLeaves; l++) {
      const v = leafOut(leafG[l], leafH[l]);
      tree.leafValue.push(v);
      for (let q = leafStart[l]; q < leafEnd[l]; q++) scores[order[q]] += v;
    }
    trees.push(tree);
    if (valid && validScores) {
      const one = new GbdtModel(options.featureNames, [tree]);
      const vr = valid.labels.length;
      for (let r = 0; r < vr; r++) validScores[r] += one.predict(valid.features, r * nf);
      const ndcg = meanNdcg(validScores, valid.labels, valid.groups, p.ndcgAt, scratchOrder);
      validNdcg.push(ndcg);
      if (ndcg > bestNdcg) {
        bestNdcg = ndcg;
        bestIteration = it + 1;
      } else if (stopping && it + 1 - bestIteration >= p.earlyStoppingRounds) break;
    }
    options.onProgress?.((it + 1) / p.trees);
    // A tree without a split adds a constant to every document: nothing more can be learnt.
    if (nLeaves === 1) break;
  }
  options.onProgress?.(1);
  const keep = stopping ? bestIteration : trees.length;
  return new GbdtModel(
    options.featureNames,
    trees.slice(0, keep),
    'lambdarank',
    { bestIteration: keep, validNdcg },
    p,
  );
}
