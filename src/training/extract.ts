/**
 * Extract step of the training pipeline: reads the event log once, in pages, and builds the weighted
 * user × item interaction matrix with the same weighting serving uses (features/interactions.ts).
 */
import type { Csr } from '../algorithms/sparse.ts';
import { Column } from '../algorithms/column.ts';
import { csrFromCoo } from '../algorithms/sparse.ts';
import { interactionWeight, type EventTypes } from '../features/interactions.ts';
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
}

export async function extractTrainingData(
  events: EventStore,
  types: EventTypes,
  options: { untilSeq?: number; onProgress?: (eventsRead: number) => void } = {},
): Promise<TrainingData> {
  const userIndex = new Map<string, number>();
  const itemIndex = new Map<string, number>();
  const userIds: string[] = [];
  const itemIds: string[] = [];
  const rows = new Column(new Int32Array(1024), (n) => new Int32Array(n));
  const cols = new Column(new Int32Array(1024), (n) => new Int32Array(n));
  const vals = new Column(new Float32Array(1024), (n) => new Float32Array(n));
  const times = new Column(new Float64Array(1024), (n) => new Float64Array(n));
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
      const w = interactionWeight(types, e);
      if (w.negative) {
        negatives.add(`${e.userId}\u0000${e.itemId}`);
        continue;
      }
      if (w.weight <= 0) continue;
      rows.push(indexOf(userIndex, userIds, e.userId));
      cols.push(indexOf(itemIndex, itemIds, e.itemId));
      vals.push(w.weight);
      times.push(e.timestamp);
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
  const matrix = dropZeros(summed);
  return {
    userIds,
    itemIds,
    matrix,
    itemEventTimes: { items: c.slice(), times: times.view().slice() },
    events: count,
    lastEventSeq,
    newestEventAt,
  };
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
