/**
 * Import of LightGBM models for inference: a team that trains its ranker in Python
 * (`booster.save_model('model.txt')`) serves it here. The text format is LightGBM's `GBDT::SaveModelToString`:
 * a header of `key=value` lines (`feature_names`, `objective`, `num_class`…), then one `Tree=N` block
 * per tree with space-separated arrays — `split_feature`, `threshold`, `decision_type` (bit 0
 * categorical, bit 1 default-left, bits 2–3 missing type: 0 none, 1 zero, 2 NaN), `left_child` /
 * `right_child` (a negative child c is leaf ~c), `leaf_value` (shrinkage already applied),
 * `internal_value` — and `end of trees`.
 *
 * The result is a `GbdtModel` (gbdt.ts) predicting LightGBM's raw score (no sigmoid for `binary`), with
 * the same decision rule as LightGBM's `NumericalDecision`. Categorical splits, linear trees and
 * multi-class models are refused with CAIRN_VALIDATION (field `model`). Pure: no I/O.
 */
import { CairnError } from '../errors/errors.ts';
import { GbdtModel, type TreeJson } from './gbdt.ts';

function invalid(message: string): CairnError {
  return CairnError.validation([{ field: 'model', message }], `LightGBM model: ${message}`);
}

function numbers(block: Map<string, string>, key: string, expected: number, tree: number): number[] {
  const raw = block.get(key);
  if (expected === 0) return [];
  if (raw === undefined) throw invalid(`tree ${tree}: missing ${key}`);
  const out = raw
    .trim()
    .split(/\s+/)
    .map((s) => {
      // LightGBM writes infinities as "inf" / "-inf" in thresholds of some versions.
      const v = s === 'inf' ? Infinity : s === '-inf' ? -Infinity : Number(s);
      if (Number.isNaN(v)) throw invalid(`tree ${tree}: ${key} holds "${s}", not a number`);
      return v;
    });
  if (out.length !== expected)
    throw invalid(`tree ${tree}: ${key} has ${out.length} values, expected ${expected}`);
  return out;
}

/**
 * Node values for path contributions when the file has no `internal_value` (old LightGBM versions):
 * the count-weighted mean of the leaves below each node (plain mean without counts).
 */
function internalValues(
  left: number[],
  right: number[],
  leafValue: number[],
  leafCount: number[] | null,
): number[] {
  const n = left.length;
  const value = new Array<number>(n).fill(0);
  const weight = new Array<number>(n).fill(0);
  // Children have larger indices than their parent in LightGBM's layout: walk backwards.
  for (let j = n - 1; j >= 0; j--) {
    let sum = 0;
    let w = 0;
    for (const c of [left[j], right[j]]) {
      const cw = c < 0 ? (leafCount ? leafCount[~c] : 1) : weight[c];
      const cv = c < 0 ? leafValue[~c] : value[c];
      sum += cv * cw;
      w += cw;
    }
    weight[j] = w;
    value[j] = w > 0 ? sum / w : 0;
  }
  return value;
}

/** LightGBM `save_model` text format (lambdarank/binary/regression) → GbdtModel (feature_names kept). */
export function parseLightGbmModel(text: string): GbdtModel {
  if (typeof text !== 'string' || !/^tree\s*$/m.test(text.slice(0, 200))) {
    throw invalid('not a LightGBM text model (the first line must be "tree")');
  }
  const lines = text.split(/\r?\n/);
  const header = new Map<string, string>();
  const blocks: Map<string, string>[] = [];
  let current: Map<string, string> | null = null;
  let ended = false;
  for (const line of lines) {
    const l = line.trim();
    if (l === 'end of trees') {
      ended = true;
      break;
    }
    if (l === '' || l === 'tree') continue;
    const eq = l.indexOf('=');
    if (eq < 0) continue;
    const key = l.slice(0, eq);
    const value = l.slice(eq + 1);
    if (key === 'Tree') {
      current = new Map([['Tree', value]]);
      blocks.push(current);
    } else (current ?? header).set(key, value);
  }
  if (!ended) throw invalid('no "end of trees" line: the file is truncated');
  const numClass = Number(header.get('num_class') ?? '1');
  if (numClass !== 1) throw invalid(`multi-class models (num_class=${numClass}) are not supported`);
  const perIteration = Number(header.get('num_tree_per_iteration') ?? '1');
  if (perIteration !== 1) throw invalid(`num_tree_per_iteration=${perIteration} is not supported`);
  const maxFeature = Number(header.get('max_feature_idx'));
  if (!Number.isInteger(maxFeature) || maxFeature < 0) throw invalid('missing or bad max_feature_idx');
  const names = (header.get('feature_names') ?? '').trim().split(/\s+/).filter(Boolean);
  const featureNames =
    names.length === maxFeature + 1 ? names : Array.from({ length: maxFeature + 1 }, (_, i) => `Column_${i}`);
  const objective = (header.get('objective') ?? 'regression').trim();
  const trees: TreeJson[] = blocks.map((b, t) => {
    const nLeaves = Number(b.get('num_leaves'));
    if (!Number.isInteger(nLeaves) || nLeaves < 1) throw invalid(`tree ${t}: bad num_leaves`);
    if (Number(b.get('num_cat') ?? '0') > 0) throw invalid(`tree ${t}: categorical splits are not supported`);
    if (Number(b.get('is_linear') ?? '0') !== 0) throw invalid(`tree ${t}: linear trees are not supported`);
    const nn = nLeaves - 1;
    const leafValue = numbers(b, 'leaf_value', nLeaves, t);
    const splitFeature = numbers(b, 'split_feature', nn, t);
    const threshold = numbers(b, 'threshold', nn, t);
    const decisionType = numbers(b, 'decision_type', nn, t);
    const leftChild = numbers(b, 'left_child', nn, t);
    const rightChild = numbers(b, 'right_child', nn, t);
    const splitGain = b.has('split_gain') ? numbers(b, 'split_gain', nn, t) : new Array<number>(nn).fill(0);
    for (const d of decisionType)
      if ((d & 1) !== 0) throw invalid(`tree ${t}: categorical splits are not supported`);
    const leafCount = b.has('leaf_count') ? numbers(b, 'leaf_count', nLeaves, t) : null;
    const internalValue = b.has('internal_value')
      ? numbers(b, 'internal_value', nn, t)
      : internalValues(leftChild, rightChild, leafValue, leafCount);
    return {
      splitFeature,
      // LightGBM compares float features against double thresholds; ∞ has no JSON form.
      threshold: threshold.map((v) => Math.max(-Number.MAX_VALUE, Math.min(Number.MAX_VALUE, v))),
      decisionType,
      leftChild,
      rightChild,
      splitGain,
      internalValue,
      leafValue,
    };
  });
  if (trees.length === 0) throw invalid('the model has no trees');
  // GbdtModel checks child ranges and feature indices and reports them with field `model`.
  return new GbdtModel(featureNames, trees, objective);
}
