/**
 * Scoring on a sparse item → item weight graph (CSR, row = source item, sorted target indices):
 * the model form shared by the graph-based item models (RP3beta, sparse EASE). A user's score for
 * item j is Σ_{h ∈ history} w_h · W[h, j], with w_h = 1 when the model is binary.
 */
import { CairnError } from '../errors/errors.ts';
import type { Csr } from './sparse.ts';
import type { AlgorithmName, FittedModel, ModelArtifact, Params, UserHistory } from './types.ts';

/** Writes Σ_h w_h · W[h, ·] into `out` (zeroed first). History items outside the graph are skipped. */
export function scoreFromGraph(graph: Csr, history: UserHistory, binary: boolean, out: Float32Array): void {
  out.fill(0);
  const { indptr, indices, data } = graph;
  const { items, weights } = history;
  for (let q = 0; q < items.length; q++) {
    const h = items[q];
    // Items newer than the model have no row yet.
    if (!(h >= 0 && h < graph.rows)) continue;
    const w = binary ? 1 : weights[q];
    for (let p = indptr[h]; p < indptr[h + 1]; p++) out[indices[p]] += w * data[p];
  }
}

/**
 * `scoreFromGraph` for the listed items only: out[j] = Σ over history items h of w_h · W[h, items[j]],
 * summed in history order with float32 rounding at each step exactly as `scoreFromGraph` does, so the
 * values are bit for bit the same. Costs |items| × |history| lookups, never a pass over the catalog.
 */
export function scoreItemsFromGraph(
  graph: Csr,
  history: UserHistory,
  binary: boolean,
  items: Int32Array,
  out: Float32Array,
): void {
  const hist = history.items;
  const weights = history.weights;
  for (let j = 0; j < items.length; j++) {
    const target = items[j];
    if (!(target >= 0 && target < graph.cols)) {
      out[j] = -Infinity;
      continue;
    }
    let acc = 0;
    for (let q = 0; q < hist.length; q++) {
      const h = hist[q];
      if (!(h >= 0 && h < graph.rows)) continue;
      const v = graphLookup(graph, h, target);
      if (v !== 0) acc = Math.fround(acc + (binary ? 1 : weights[q]) * v);
    }
    out[j] = acc;
  }
}

/** Row `item` of the graph written densely into `out`; false when the item is outside the graph. */
export function graphRowInto(graph: Csr, item: number, out: Float32Array): boolean {
  if (!(item >= 0 && item < graph.rows)) return false;
  out.fill(0);
  const { indptr, indices, data } = graph;
  for (let p = indptr[item]; p < indptr[item + 1]; p++) out[indices[p]] = data[p];
  return true;
}

/** W[a, b] by binary search in row a (rows are sorted), 0 when absent. */
export function graphLookup(graph: Csr, a: number, b: number): number {
  if (!(a >= 0 && a < graph.rows)) return 0;
  const { indptr, indices, data } = graph;
  let lo = indptr[a];
  let hi = indptr[a + 1] - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const v = indices[mid];
    if (v === b) return data[mid];
    if (v < b) lo = mid + 1;
    else hi = mid - 1;
  }
  return 0;
}

/**
 * Rebuilds a square graph from artifact arrays, checking the structure a scorer relies on
 * (lengths, monotone indptr, indices in range) so a corrupt artifact fails at load, not at serve.
 */
export function graphFromArrays(
  algorithm: string,
  items: number,
  arrays: Record<string, Float32Array | Int32Array | Float64Array>,
): Csr {
  const { indptr, indices, data } = arrays;
  const bad = (): CairnError => new CairnError('CAIRN_VALIDATION', `${algorithm} artifact is malformed`);
  if (
    !Number.isInteger(items) ||
    items < 0 ||
    !(indptr instanceof Int32Array) ||
    !(indices instanceof Int32Array) ||
    !(data instanceof Float32Array) ||
    indptr.length !== items + 1 ||
    indptr[0] !== 0 ||
    indptr[items] !== indices.length ||
    indices.length !== data.length
  ) {
    throw bad();
  }
  for (let i = 0; i < items; i++) if (indptr[i + 1] < indptr[i]) throw bad();
  for (let p = 0; p < indices.length; p++) if (!(indices[p] >= 0 && indices[p] < items)) throw bad();
  return { rows: items, cols: items, indptr, indices, data };
}

/**
 * A fitted model whose scores are sums over a sparse item × item weight graph (sparse EASE, RP3beta):
 * row h of `graph` holds the kept weights from history item h. Subclasses name the algorithm, the
 * artifact format and any extra artifact meta.
 */
export abstract class ItemGraphModel implements FittedModel {
  abstract readonly algorithm: AlgorithmName;
  readonly params: Params;
  readonly nUsers: number;
  readonly nItems: number;
  readonly graph: Csr;
  private readonly binary: boolean;

  constructor(
    name: AlgorithmName,
    params: Params & { binary: boolean },
    nUsers: number,
    graph: Csr,
    private readonly formatVersion: number,
    private readonly meta: Record<string, string | number> = {},
  ) {
    if (graph.rows !== graph.cols || graph.indptr.length !== graph.rows + 1) {
      throw new CairnError('CAIRN_VALIDATION', `${name}: weight graph is not square`);
    }
    this.params = { ...params };
    this.nUsers = nUsers;
    this.nItems = graph.rows;
    this.graph = graph;
    this.binary = params.binary;
  }

  scoreUser(_user: number, history: UserHistory, out: Float32Array): void {
    scoreFromGraph(this.graph, history, this.binary, out);
  }

  scoreItems(_user: number, history: UserHistory, items: Int32Array, out: Float32Array): void {
    scoreItemsFromGraph(this.graph, history, this.binary, items, out);
  }

  similarItems(item: number, out: Float32Array): boolean {
    return graphRowInto(this.graph, item, out);
  }

  itemSimilarity(a: number, b: number): number {
    return graphLookup(this.graph, a, b);
  }

  toArtifact(): ModelArtifact {
    const { indptr, indices, data } = this.graph;
    return {
      algorithm: this.algorithm,
      formatVersion: this.formatVersion,
      params: { ...this.params },
      meta: { users: this.nUsers, items: this.nItems, ...this.meta },
      arrays: { indptr, indices, data },
    };
  }
}
