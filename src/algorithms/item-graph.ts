/**
 * Scoring on a sparse item → item weight graph (CSR, row = source item, sorted target indices):
 * the model form shared by the graph-based item models (RP3beta, sparse EASE). A user's score for
 * item j is Σ_{h ∈ history} w_h · W[h, j], with w_h = 1 when the model is binary.
 */
import { CairnError } from '../errors/errors.ts';
import type { Csr } from './sparse.ts';
import type { UserHistory } from './types.ts';

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
