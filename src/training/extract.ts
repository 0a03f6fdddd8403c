/**
 * Extract step of the training pipeline: reads the event log once, in pages, and builds the weighted
 * user × item interaction matrix with the same weighting serving uses (features/interactions.ts).
 * It also keeps what the gate and the lineage need: per matrix entry the seqs of its first and last
 * positive event (which pairs are newer than the champion), and the event-type counts (drift reference).
 */
import { createHash } from 'node:crypto';
import type { Csr } from '../algorithms/sparse.ts';
import { Column } from '../algorithms/column.ts';
import { csrFromCoo } from '../algorithms/sparse.ts';
import {
  interactionWeight,
  pairWeight,
  type EventTypes,
  type WeightLimits,
} from '../features/interactions.ts';
import type { EventStore } from '../storage/ports.ts';

export interface TrainingData {
  userIds: string[];
  itemIds: string[];
  /** Positive interactions (summed weights); negative pairs removed. */
  matrix: Csr;
  /** Every positive event's (item, time), for time-decayed popularity. */
  itemEventTimes: { items: Int32Array; times: Float64Array };
  /** Events read (all types). */
  events: number;
  /** Sequence watermark: the model knows every event up to and including this one. */
  lastEventSeq: number;
  /** Newest event time seen (ms), the reference "now" for decay. */
  newestEventAt: number;
  /**
   * Per matrix entry (aligned with `matrix.indices`), the seq of the pair's first and last positive
   * event: a pair whose first event is newer than a model's watermark is one that model never saw.
   */
  pairSeqs: { first: Float64Array; last: Float64Array };
  /** Events read per event type (all types, negatives and unknown types included). */
  typeCounts: Record<string, number>;
}

export async function extractTrainingData(
  events: EventStore,
  types: EventTypes,
  options: {
    untilSeq?: number;
    onProgress?: (eventsRead: number) => void;
    /** Config `events`: each event clamped, each user's summed weight on an item capped (as online). */
    limits?: WeightLimits;
  } = {},
): Promise<TrainingData> {
  const userIndex = new Map<string, number>();
  const itemIndex = new Map<string, number>();
  const userIds: string[] = [];
  const itemIds: string[] = [];
  const rows = new Column(new Int32Array(1024), (n) => new Int32Array(n));
  const cols = new Column(new Int32Array(1024), (n) => new Int32Array(n));
  const vals = new Column(new Float32Array(1024), (n) => new Float32Array(n));
  const times = new Column(new Float64Array(1024), (n) => new Float64Array(n));
  const seqs = new Column(new Float64Array(1024), (n) => new Float64Array(n));
  const typeCounts: Record<string, number> = {};
  const negatives = new Set<string>();
  let count = 0;
  let lastEventSeq = 0;
  let newestEventAt = 0;

  const indexOf = (map: Map<string, number>, ids: string[], id: string): number => {
    let i = map.get(id);
    if (i === undefined) {
      i = ids.length;
      map.set(id, i);
      ids.push(id);
    }
    return i;
  };

  for await (const page of events.scan({ untilSeq: options.untilSeq, batchSize: 10_000 })) {
    for (const e of page) {
      count++;
      lastEventSeq = Math.max(lastEventSeq, e.seq);
      newestEventAt = Math.max(newestEventAt, e.timestamp);
      typeCounts[e.type] = (typeCounts[e.type] ?? 0) + 1;
      const w = interactionWeight(types, e, options.limits);
      if (w.negative) {
        negatives.add(`${e.userId}\u0000${e.itemId}`);
        continue;
      }
      if (w.weight <= 0) continue;
      rows.push(indexOf(userIndex, userIds, e.userId));
      cols.push(indexOf(itemIndex, itemIds, e.itemId));
      vals.push(w.weight);
      times.push(e.timestamp);
      seqs.push(e.seq);
    }
    options.onProgress?.(count);
  }

  // A negative event removes the pair from the positives, whatever the order (as online).
  const r = rows.view();
  const c = cols.view();
  const v = vals.view();
  if (negatives.size > 0) {
    for (let k = 0; k < r.length; k++) {
      if (negatives.has(`${userIds[r[k]]}\u0000${itemIds[c[k]]}`)) v[k] = 0;
    }
  }
  const summed = csrFromCoo(userIds.length, itemIds.length, r, c, v);
  for (let p = 0; p < summed.data.length; p++) summed.data[p] = pairWeight(summed.data[p], options.limits);
  const matrix = dropZeros(summed);
  return {
    pairSeqs: pairSeqs(matrix, r, c, seqs.view()),
    typeCounts,
    userIds,
    itemIds,
    matrix,
    itemEventTimes: { items: c.slice(), times: times.view().slice() },
    events: count,
    lastEventSeq,
    newestEventAt,
  };
}

/** First and last seq per matrix entry, from the positive events' coordinates (dropped pairs skipped). */
function pairSeqs(
  m: Csr,
  rows: Int32Array,
  cols: Int32Array,
  seqs: Float64Array,
): { first: Float64Array; last: Float64Array } {
  const first = new Float64Array(m.indices.length).fill(Infinity);
  const last = new Float64Array(m.indices.length);
  for (let k = 0; k < rows.length; k++) {
    const p = entryOf(m, rows[k], cols[k]);
    if (p < 0) continue;
    if (seqs[k] < first[p]) first[p] = seqs[k];
    if (seqs[k] > last[p]) last[p] = seqs[k];
  }
  return { first, last };
}

/** Position of (row, col) in `m` (columns sorted per row), or -1. */
export function entryOf(m: Csr, row: number, col: number): number {
  let lo = m.indptr[row];
  let hi = m.indptr[row + 1] - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const c = m.indices[mid];
    if (c === col) return mid;
    if (c < col) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/**
 * sha256 of a training set: its shape, CSR arrays and id spaces, so the same data gives the same hash
 * on any machine (ids are length-prefixed: no two id lists hash alike by concatenation).
 */
export function trainingSetHash(m: Csr, userIds: readonly string[], itemIds: readonly string[]): string {
  const h = createHash('sha256');
  h.update(`csr:${m.rows}x${m.cols}:${m.indices.length}\n`);
  for (const a of [m.indptr, m.indices, m.data])
    h.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  for (const [name, ids] of [
    ['users', userIds],
    ['items', itemIds],
  ] as const) {
    h.update(`${name}:${ids.length}\n`);
    for (const id of ids) h.update(`${Buffer.byteLength(id)}:${id}`);
  }
  return h.digest('hex');
}

function dropZeros(m: Csr): Csr {
  let keep = 0;
  for (let p = 0; p < m.data.length; p++) if (m.data[p] > 0) keep++;
  if (keep === m.data.length) return m;
  const indptr = new Int32Array(m.rows + 1);
  const indices = new Int32Array(keep);
  const data = new Float32Array(keep);
  let q = 0;
  for (let r = 0; r < m.rows; r++) {
    for (let p = m.indptr[r]; p < m.indptr[r + 1]; p++) {
      if (m.data[p] > 0) {
        indices[q] = m.indices[p];
        data[q++] = m.data[p];
      }
    }
    indptr[r + 1] = q;
  }
  return { rows: m.rows, cols: m.cols, indptr, indices, data };
}
