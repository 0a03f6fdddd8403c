/**
 * Online, time-decayed item popularity, updated by every accepted event so the popular lists (the last
 * links of the fallback chain) react at once and need no model. Uses the same weights and decay as the
 * offline popularity model (features/interactions.ts), so online and offline rankings agree.
 *
 * Each item keeps s_i = Σ w · 2^((t_e − T0)/H) for a reference time T0; the decayed score at time t is
 * s_i · 2^((T0 − t)/H). Rankings do not depend on t, so sorting needs no per-item decay; T0 moves forward
 * (rescaling every s_i) before the exponent could overflow.
 */
import { interactionWeight, type EventTypes } from '../features/interactions.ts';
import type { CairnEvent } from '../domain/types.ts';

const DAY_MS = 86_400_000;
const MAX_EXPONENT = 600;

export interface PopularEntry {
  itemId: string;
  /** Decayed weighted interactions as of `now`. */
  score: number;
}

export class PopularityTracker {
  private readonly index = new Map<string, number>();
  private ids: string[] = [];
  private scores = new Float64Array(1024);
  private reference: number | null = null;
  private readonly halfLifeMs: number;
  /** Sorted item order, rebuilt lazily after changes (at most once per `resortMs`). */
  private order: Int32Array | null = null;
  private dirtyAt = 0;

  constructor(
    private readonly types: EventTypes,
    halfLifeDays: number,
    private readonly resortMs = 1000,
  ) {
    this.halfLifeMs = halfLifeDays * DAY_MS;
  }

  get size(): number {
    return this.ids.length;
  }

  /** Adds events (any order). Events that are not positive interactions are ignored. */
  add(events: readonly Pick<CairnEvent, 'itemId' | 'type' | 'value' | 'timestamp'>[]): void {
    for (const e of events) {
      const w = interactionWeight(this.types, e);
      if (w.weight <= 0) continue;
      if (this.reference === null) this.reference = e.timestamp;
      let exponent = (e.timestamp - this.reference) / this.halfLifeMs;
      if (exponent > MAX_EXPONENT) {
        this.rebase(e.timestamp);
        exponent = 0;
      }
      const i = this.slot(e.itemId);
      this.scores[i] += w.weight * Math.pow(2, exponent);
    }
    if (this.order !== null && this.dirtyAt === 0) this.dirtyAt = Date.now();
  }

  /** Forgets everything (e.g. before rebuilding from the event log). */
  clear(): void {
    this.index.clear();
    this.ids = [];
    this.scores = new Float64Array(1024);
    this.reference = null;
    this.order = null;
  }

  /** Decayed score of one item at `now` (0 for unknown items). */
  score(itemId: string, now: number): number {
    const i = this.index.get(itemId);
    if (i === undefined || this.reference === null) return 0;
    return this.scores[i] * Math.pow(2, (this.reference - now) / this.halfLifeMs);
  }

  /**
   * The `k` most popular items passing `accept`, best first. Walks the cached order, so the cost is
   * proportional to how many items are skipped, not to the catalog size.
   */
  top(k: number, now: number, accept: (itemId: string) => boolean): PopularEntry[] {
    const order = this.sortedOrder();
    const out: PopularEntry[] = [];
    if (this.reference === null) return out;
    const scale = Math.pow(2, (this.reference - now) / this.halfLifeMs);
    for (let r = 0; r < order.length && out.length < k; r++) {
      const i = order[r];
      const id = this.ids[i];
      if (this.scores[i] > 0 && accept(id)) out.push({ itemId: id, score: this.scores[i] * scale });
    }
    return out;
  }

  private sortedOrder(): Int32Array {
    const stale = this.order === null || this.order.length !== this.ids.length;
    if (stale || (this.dirtyAt !== 0 && Date.now() - this.dirtyAt >= this.resortMs)) {
      const order = new Int32Array(this.ids.length);
      for (let i = 0; i < order.length; i++) order[i] = i;
      const s = this.scores;
      order.sort((a, b) => s[b] - s[a] || a - b);
      this.order = order;
      this.dirtyAt = 0;
    }
    return this.order!;
  }

  private slot(itemId: string): number {
    let i = this.index.get(itemId);
    if (i === undefined) {
      i = this.ids.length;
      this.index.set(itemId, i);
      this.ids.push(itemId);
      if (i >= this.scores.length) {
        const next = new Float64Array(this.scores.length * 2);
        next.set(this.scores);
        this.scores = next;
      }
    }
    return i;
  }

  private rebase(newReference: number): void {
    const factor = Math.pow(2, (this.reference! - newReference) / this.halfLifeMs);
    for (let i = 0; i < this.ids.length; i++) this.scores[i] *= factor;
    this.reference = newReference;
  }
}
