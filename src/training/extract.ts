/**
 * Extract step of the training pipeline: reads the event log once, in pages, and builds the weighted
 * user × item interaction matrix with the same weighting serving uses (features/interactions.ts).
 * It also keeps what the gate and the lineage need: per matrix entry the seqs of its first and last
 * positive event (which pairs are newer than the champion), and the event-type counts (drift reference).
 *
 * It runs on the serving process's event loop, so all of it is time-sliced (domain/cooperative.ts):
 * small pages, a loop turn every ~2 ms while folding events in and while building the matrix.
 */
import { createHash } from 'node:crypto';
import type { Csr } from '../algorithms/sparse.ts';
import { Column } from '../algorithms/column.ts';
import { csrFromCooSteps } from '../algorithms/sparse.ts';
import { runStepsSliced, TimeSlicer, type Steps } from '../domain/cooperative.ts';
import {
  interactionWeight,
  pairWeight,
  type EventTypes,
  type WeightLimits,
} from '../features/interactions.ts';
import type { StoredEvent } from '../domain/types.ts';
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
  /** Every event in log order, in columns (only with `featureEvents: true`): the ranker's training rows. */
  featureEvents?: FeatureEventColumns;
}

/**
 * Every event read, as columns (about 37 bytes per event): what the second-stage ranker's training
 * replays through the feature store's fold (features/item-state.ts), so its item and user features are
 * computed from the same events, of every type, as the online state folds.
 */
export interface FeatureEventColumns {
  /** Index into TrainingData.userIds, or −1 for a user without positive interactions. */
  user: Int32Array;
  /** Index into TrainingData.itemIds, or −1 for an item without positive interactions. */
  item: Int32Array;
  /** Index into `itemIds` below (every item with an event). */
  featureItem: Int32Array;
  /** Index into `types`. */
  type: Uint8Array;
  /** The event's value (NaN for none). */
  value: Float64Array;
  timestamp: Float64Array;
  seq: Float64Array;
  itemIds: string[];
  types: string[];
}

/** Events per scan page: a page is read in one synchronous call on SQLite (~1.5 ms per 1,000). */
const SCAN_PAGE = 1_000;
/** Events (or matrix entries) per unit of sliced work: the slicer's clock is read once per unit. */
const UNIT = 256;

export async function extractTrainingData(
  events: EventStore,
  types: EventTypes,
  options: {
    untilSeq?: number;
    onProgress?: (eventsRead: number) => void;
    /** Config `events`: each event clamped, each user's summed weight on an item capped (as online). */
    limits?: WeightLimits;
    /** Also keep every event in columns (TrainingData.featureEvents), for training the ranker. */
    featureEvents?: boolean;
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

  const fe = options.featureEvents ? new FeatureEventLog() : null;
  const slicer = new TimeSlicer();
  for await (const page of events.scan({ untilSeq: options.untilSeq, batchSize: SCAN_PAGE })) {
    for (let i = 0; i < page.length; i++) {
      if (i % UNIT === 0) await slicer.turn();
      const e = page[i];
      count++;
      lastEventSeq = Math.max(lastEventSeq, e.seq);
      newestEventAt = Math.max(newestEventAt, e.timestamp);
      typeCounts[e.type] = (typeCounts[e.type] ?? 0) + 1;
      const w = interactionWeight(types, e, options.limits);
      fe?.push(e);
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

  const r = rows.view();
  const c = cols.view();
  const built = await runStepsSliced(
    matrixSteps(
      { userIds, itemIds, rows: r, cols: c, vals: vals.view(), seqs: seqs.view(), negatives },
      options.limits,
    ),
    slicer,
  );
  return {
    ...built,
    typeCounts,
    userIds,
    itemIds,
    itemEventTimes: { items: c.slice(), times: times.view().slice() },
    events: count,
    lastEventSeq,
    newestEventAt,
    ...(fe ? { featureEvents: fe.finish(userIndex, itemIndex) } : {}),
  };
}

/**
 * Collects every event's columns while the scan runs. Users and items get their matrix index at the end
 * (a user's first positive event may come after their first event).
 */
class FeatureEventLog {
  private readonly users = new Map<string, number>();
  private readonly userNames: string[] = [];
  private readonly items = new Map<string, number>();
  private readonly itemIds: string[] = [];
  private readonly typeIndex = new Map<string, number>();
  private readonly types: string[] = [];
  private readonly user = new Column(new Int32Array(1024), (n) => new Int32Array(n));
  private readonly item = new Column(new Int32Array(1024), (n) => new Int32Array(n));
  private readonly type = new Column(new Uint8Array(1024), (n) => new Uint8Array(n));
  private readonly value = new Column(new Float64Array(1024), (n) => new Float64Array(n));
  private readonly timestamp = new Column(new Float64Array(1024), (n) => new Float64Array(n));
  private readonly seq = new Column(new Float64Array(1024), (n) => new Float64Array(n));

  push(e: StoredEvent): void {
    this.user.push(indexOf(this.users, this.userNames, e.userId));
    this.item.push(indexOf(this.items, this.itemIds, e.itemId));
    let t = this.typeIndex.get(e.type);
    if (t === undefined) {
      // Event types are config keys (validated at ingestion): far fewer than 256.
      t = Math.min(this.types.length, 255);
      this.typeIndex.set(e.type, t);
      this.types.push(e.type);
    }
    this.type.push(t);
    this.value.push(e.value ?? Number.NaN);
    this.timestamp.push(e.timestamp);
    this.seq.push(e.seq);
  }

  finish(
    userIndex: ReadonlyMap<string, number>,
    itemIndex: ReadonlyMap<string, number>,
  ): FeatureEventColumns {
    const userMap = Int32Array.from(this.userNames, (id) => userIndex.get(id) ?? -1);
    const itemMap = Int32Array.from(this.itemIds, (id) => itemIndex.get(id) ?? -1);
    const featureItem = this.item.finish();
    const user = this.user.finish();
    const item = new Int32Array(featureItem.length);
    for (let k = 0; k < user.length; k++) {
      user[k] = userMap[user[k]];
      item[k] = itemMap[featureItem[k]];
    }
    return {
      user,
      item,
      featureItem,
      type: this.type.finish(),
      value: this.value.finish(),
      timestamp: this.timestamp.finish(),
      seq: this.seq.finish(),
      itemIds: this.itemIds,
      types: this.types,
    };
  }
}

/** The dense index of `id`, appended to `ids` on first sight. */
function indexOf(map: Map<string, number>, ids: string[], id: string): number {
  let i = map.get(id);
  if (i === undefined) {
    i = ids.length;
    map.set(id, i);
    ids.push(id);
  }
  return i;
}

/** The positive events' coordinates, weights and seqs, and the negative pairs, as read. */
interface Coo {
  userIds: readonly string[];
  itemIds: readonly string[];
  rows: Int32Array;
  cols: Int32Array;
  vals: Float32Array;
  seqs: Float64Array;
  negatives: ReadonlySet<string>;
}

/** The weighted matrix and its pairs' seqs from the events read, yielding between units of work. */
function* matrixSteps(
  coo: Coo,
  limits: WeightLimits | undefined,
): Steps<Pick<TrainingData, 'matrix' | 'pairSeqs'>> {
  const { rows: r, cols: c, vals: v } = coo;
  // A negative event removes the pair from the positives, whatever the order (as online).
  if (coo.negatives.size > 0) {
    for (let k = 0; k < r.length; k++) {
      if (k % UNIT === 0) yield;
      if (coo.negatives.has(`${coo.userIds[r[k]]}\u0000${coo.itemIds[c[k]]}`)) v[k] = 0;
    }
  }
  const summed = yield* csrFromCooSteps(coo.userIds.length, coo.itemIds.length, r, c, v);
  for (let p = 0; p < summed.data.length; p++) {
    if (p % (UNIT * 16) === 0) yield;
    summed.data[p] = pairWeight(summed.data[p], limits);
  }
  const matrix = yield* dropZeros(summed);
  return { matrix, pairSeqs: yield* pairSeqs(matrix, r, c, coo.seqs) };
}

/** First and last seq per matrix entry, from the positive events' coordinates (dropped pairs skipped). */
function* pairSeqs(
  m: Csr,
  rows: Int32Array,
  cols: Int32Array,
  seqs: Float64Array,
): Steps<{ first: Float64Array; last: Float64Array }> {
  const first = new Float64Array(m.indices.length).fill(Infinity);
  const last = new Float64Array(m.indices.length);
  for (let k = 0; k < rows.length; k++) {
    if (k % UNIT === 0) yield;
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

function* dropZeros(m: Csr): Steps<Csr> {
  let keep = 0;
  for (let p = 0; p < m.data.length; p++) if (m.data[p] > 0) keep++;
  if (keep === m.data.length) return m;
  yield;
  const indptr = new Int32Array(m.rows + 1);
  const indices = new Int32Array(keep);
  const data = new Float32Array(keep);
  let q = 0;
  for (let r = 0; r < m.rows; r++) {
    if (r % UNIT === 0) yield;
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
