/**
 * Time-decayed item popularity: the one definition every online-state adapter (memory, Redis) follows,
 * with the interaction weights of training (features/interactions.ts), so online and offline popularity
 * agree and adapters agree with each other.
 *
 * An event contributes its weight clamped to `maxEventWeight`, and no more than leaves its user's decayed
 * weight on the item at or below `maxUserItemWeight` (see `capContribution`): one user, however many
 * events they send, moves an item's popularity by a bounded amount.
 *
 * The decayed popularity of item i at time `now` is Σ w_e · 2^((t_e − now)/H) over its positive events e,
 * with half-life H. Each item keeps one sum s_i = Σ w_e · 2^((t_e − T0)/H) for a shared reference time T0;
 * its score at `now` is s_i · 2^((T0 − now)/H). Rankings do not depend on `now`, so ordering needs no
 * per-item decay, and adding an event touches one number. T0 moves forward (every s_i multiplied by the same
 * factor) before an exponent could overflow a double, so sums stay finite over any span of time.
 */
import type { CairnEvent } from '../domain/types.ts';
import { interactionWeight, type EventTypes, type WeightLimits } from './interactions.ts';

export const DAY_MS = 86_400_000;

/**
 * Largest exponent (half-lives after the reference) added before the reference moves forward. 2^600 ≈ 4e180
 * leaves a factor of ~1e127 below Number.MAX_VALUE for the sum of many weights.
 */
export const MAX_EXPONENT = 600;

/**
 * After subtracting an erased user's contributions, a remainder at or below this fraction of what was
 * subtracted is rounding noise (the sums were built in another order, or rescaled by a rebase in between):
 * the item counts as having no popularity and is dropped. A genuine remainder that small is worth less than
 * a 30-half-lives-old event next to the subtracted one, so nothing a ranking could show is lost.
 */
export const RESIDUE_TOLERANCE = 1e-9;

/** The fields of an event popularity reads (erase records carry only these, and the seq). */
export type PopularityEvent = Pick<CairnEvent, 'itemId' | 'type' | 'value' | 'timestamp'>;

/** What one event adds to its item's popularity once every limit is applied. */
export interface Contribution {
  itemId: string;
  timestamp: number;
  weight: number;
}

/**
 * What one user holds of one item's popularity: the decayed weight their events added, valued at `at`,
 * the latest time among those events.
 */
export interface Holding {
  weight: number;
  at: number;
}

/** Same shape as storage's `PopularEntry` (features/ does not import storage/). */
export interface PopularEntry {
  itemId: string;
  /** Decayed weighted interactions as of `now`. */
  score: number;
}

/** Half-life in milliseconds. */
export function halfLifeMs(halfLifeDays: number): number {
  return halfLifeDays * DAY_MS;
}

/** Exponent of an event at `timestamp` against reference `reference`: (t − T0)/H, in half-lives. */
export function decayExponent(timestamp: number, reference: number, halfLife: number): number {
  return (timestamp - reference) / halfLife;
}

/** Multiplier turning a stored sum into the decayed score at `now`: 2^((T0 − now)/H). */
export function decayScale(reference: number, now: number, halfLife: number): number {
  return Math.pow(2, (reference - now) / halfLife);
}

/**
 * Compares ids by Unicode code point, which is also UTF-8 byte order: the order of Redis lexicographic
 * ranges and of SQLite's BINARY collation, so every adapter pages and breaks ties identically. (Plain `<` on
 * JS strings compares UTF-16 code units, which puts characters above U+FFFF before U+E000–U+FFFF.)
 */
export function compareIds(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x !== y) {
      if (x >= 0xd800 && y >= 0xd800) {
        // Move surrogates (code points ≥ U+10000) above U+E000–U+FFFF, keeping each range's inner order.
        x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
        y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
      }
      return x - y;
    }
  }
  return a.length - b.length;
}

/** A tracker's content in compact form (live items only), for snapshots. */
export interface PopularityState {
  /** T0 in epoch ms, null before the first positive event. */
  reference: number | null;
  ids: string[];
  /** s_i of `ids[i]` (sums against `reference`), all > 0. */
  sums: Float64Array;
}

/** Half-life in ms; a half-life that is not a positive number of days is a RangeError. */
function checkedHalfLife(halfLifeDays: number): number {
  if (!(halfLifeDays > 0) || !Number.isFinite(halfLifeDays)) {
    throw new RangeError(`popularity half-life must be a positive number of days, got ${halfLifeDays}`);
  }
  return halfLifeMs(halfLifeDays);
}

/** Limits set to something other than a positive number, by config key (for CAIRN_CONFIG_INVALID). */
export function weightLimitIssues(limits: WeightLimits): { field: string; message: string }[] {
  const issues: { field: string; message: string }[] = [];
  for (const key of ['maxEventWeight', 'maxUserItemWeight'] as const) {
    const v = limits[key];
    if (v !== undefined && !(v > 0))
      issues.push({ field: `events.${key}`, message: 'must be a positive number' });
  }
  return issues;
}

/**
 * The weight an event (`weight`, already clamped, at `timestamp`) adds to its item when its user holds
 * `held` of it (a user without a holding holds `{ weight: 0, at: timestamp }`); updates `held` in place.
 * The holding, valued at the latest of the user's event times on the item, never exceeds `cap`, so at any
 * later time it is at most `cap` too (it only decays). An event older than the holding may add the room
 * left at `held.at` grown back to its own time (by `held.at` it will have decayed to that room). The Redis
 * script mirrors this step for step (same operations, same order), so both adapters compute the same doubles.
 */
export function capContribution(
  held: Holding,
  weight: number,
  timestamp: number,
  cap: number,
  halfLife: number,
): number {
  if (timestamp >= held.at) {
    const current = held.weight * Math.pow(2, (held.at - timestamp) / halfLife);
    const added = Math.max(0, Math.min(weight, cap - current));
    held.weight = current + added;
    held.at = timestamp;
    return added;
  }
  const room = cap - held.weight;
  const added = room > 0 ? Math.min(weight, room * Math.pow(2, (held.at - timestamp) / halfLife)) : 0;
  held.weight += added * Math.pow(2, (timestamp - held.at) / halfLife);
  return added;
}

/**
 * How events become popularity contributions under the configured weights and limits (config `events`):
 * the one definition behind both adapters' apply and erase paths.
 */
export class ContributionRules {
  readonly halfLife: number;
  /** `maxUserItemWeight`, or null without a cap (no holdings need to be kept then). */
  readonly cap: number | null;

  constructor(
    private readonly types: EventTypes,
    halfLifeDays: number,
    private readonly limits: WeightLimits = {},
  ) {
    this.halfLife = checkedHalfLife(halfLifeDays);
    const cap = limits.maxUserItemWeight;
    this.cap = cap !== undefined && Number.isFinite(cap) ? cap : null;
  }

  /** The event's weight clamped to `maxEventWeight` (0 when it is not a positive interaction). */
  weight(e: Pick<PopularityEvent, 'type' | 'value'>): number {
    return interactionWeight(this.types, e, this.limits).weight;
  }

  /**
   * The weight a user's event adds to its item's popularity, updating `holdings` (that user's, by item).
   * Events of one user must come in log order: the cap makes the result depend on it.
   */
  add(holdings: Map<string, Holding> | null, e: PopularityEvent): number {
    const weight = this.weight(e);
    if (!(weight > 0) || this.cap === null || holdings === null) return weight;
    let held = holdings.get(e.itemId);
    if (held === undefined) holdings.set(e.itemId, (held = { weight: 0, at: e.timestamp }));
    return capContribution(held, weight, e.timestamp, this.cap, this.halfLife);
  }

  /**
   * What an erased user's events contributed, replayed in seq order from no holdings: exactly what adding
   * them in log order added (their contributions depend only on the same user's earlier events). Only
   * positive contributions are returned, in seq order.
   */
  replay<E extends PopularityEvent & { seq: number }>(
    events: readonly E[],
  ): (Contribution & { seq: number })[] {
    const holdings = new Map<string, Holding>();
    const out: (Contribution & { seq: number })[] = [];
    for (const e of [...events].sort((a, b) => a.seq - b.seq)) {
      const weight = this.add(holdings, e);
      if (weight > 0) out.push({ seq: e.seq, itemId: e.itemId, timestamp: e.timestamp, weight });
    }
    return out;
  }
}

const INITIAL_SLOTS = 1024;

/**
 * In-memory decayed popularity on typed arrays: a slot per item (`Float64Array` of sums), slots of dropped
 * items reused, and the ranking (score descending, then id in code-point order) kept as an `Int32Array` of
 * slots that is repaired lazily: a read after a few changes merges the changed items into the previous
 * order (O(n)); after many, or after a rebase, it is sorted again (O(n log n)).
 */
export class PopularityTracker {
  private readonly index = new Map<string, number>();
  /** Item id per slot; null for a free slot. */
  private ids: (string | null)[] = [];
  private sums = new Float64Array(INITIAL_SLOTS);
  private free: number[] = [];
  private live = 0;
  private ref: number | null = null;
  private readonly halfLife: number;
  /** Live slots, best first; null when it must be sorted from scratch. */
  private order: Int32Array | null = null;
  /** Slots changed (or freed) since `order` was built, each once (flag in `dirtyFlag`). */
  private dirty: number[] = [];
  private dirtyFlag = new Uint8Array(INITIAL_SLOTS);

  constructor(halfLifeDays: number) {
    this.halfLife = checkedHalfLife(halfLifeDays);
  }

  /** Rebuilds a tracker from `exportState()` output (same half-life expected). */
  static fromState(halfLifeDays: number, state: PopularityState): PopularityTracker {
    const t = new PopularityTracker(halfLifeDays);
    t.ref = state.reference;
    for (let i = 0; i < state.ids.length; i++) {
      const s = state.sums[i];
      if (s > 0 && Number.isFinite(s)) t.sums[t.slot(state.ids[i])] = s;
    }
    return t;
  }

  /** Number of items with popularity (> 0). */
  get size(): number {
    return this.live;
  }

  /** Current reference time T0 (epoch ms), null before the first positive event. */
  get reference(): number | null {
    return this.ref;
  }

  /** Adds contributions in any order; those without positive weight are ignored. */
  add(contributions: readonly Contribution[]): void {
    for (const e of contributions) {
      const w = e.weight;
      if (!(w > 0)) continue;
      if (this.ref === null) this.ref = e.timestamp;
      let x = decayExponent(e.timestamp, this.ref, this.halfLife);
      if (x > MAX_EXPONENT) {
        this.rebase(e.timestamp, x);
        x = 0;
      }
      const c = w * Math.pow(2, x);
      // An event so old that its weight underflows to 0 adds nothing, and must not list the item.
      if (!(c > 0)) continue;
      const i = this.slot(e.itemId);
      this.sums[i] += c;
      this.touch(i);
    }
  }

  /**
   * Subtracts contributions added before (a GDPR erase), per item in one step. An item whose remainder is
   * rounding noise (see RESIDUE_TOLERANCE) or negative is dropped; never-added items are left alone, so
   * popularity never goes below 0.
   */
  subtract(contributions: readonly Contribution[]): void {
    if (this.ref === null) return;
    const amounts = new Map<number, number>();
    for (const e of contributions) {
      const w = e.weight;
      if (!(w > 0)) continue;
      const i = this.index.get(e.itemId);
      if (i === undefined) continue;
      const c = w * Math.pow(2, decayExponent(e.timestamp, this.ref, this.halfLife));
      amounts.set(i, (amounts.get(i) ?? 0) + c);
    }
    for (const [i, amount] of amounts) {
      const left = this.sums[i] - amount;
      if (left > amount * RESIDUE_TOLERANCE) {
        this.sums[i] = left;
        this.touch(i);
      } else {
        this.release(i);
      }
    }
  }

  /** Forgets everything. */
  clear(): void {
    this.index.clear();
    this.ids = [];
    this.sums = new Float64Array(INITIAL_SLOTS);
    this.free = [];
    this.live = 0;
    this.ref = null;
    this.order = null;
    this.dirty = [];
    this.dirtyFlag = new Uint8Array(INITIAL_SLOTS);
  }

  /** Decayed score of one item at `now` (0 for unknown items). */
  score(itemId: string, now: number): number {
    const i = this.index.get(itemId);
    if (i === undefined || this.ref === null) return 0;
    return this.sums[i] * decayScale(this.ref, now, this.halfLife);
  }

  /** Decayed scores at `now` in the order asked (0 for unknown ids). */
  scores(itemIds: readonly string[], now: number): number[] {
    if (this.ref === null) return itemIds.map(() => 0);
    const scale = decayScale(this.ref, now, this.halfLife);
    return itemIds.map((id) => {
      const i = this.index.get(id);
      return i === undefined ? 0 : this.sums[i] * scale;
    });
  }

  /** Items ranked `offset … offset+count−1` (0-based) at `now`, best first, ties by id. */
  page(offset: number, count: number, now: number): PopularEntry[] {
    if (this.ref === null || count <= 0 || offset < 0) return [];
    const order = this.sortedOrder();
    const scale = decayScale(this.ref, now, this.halfLife);
    const end = Math.min(order.length, offset + count);
    const out: PopularEntry[] = [];
    for (let r = offset; r < end; r++) {
      const i = order[r];
      out.push({ itemId: this.ids[i]!, score: this.sums[i] * scale });
    }
    return out;
  }

  /**
   * The `k` most popular items passing `accept`, best first. Walks the ranking, so the cost is proportional
   * to how many items are skipped, not to the catalog size.
   */
  top(k: number, now: number, accept: (itemId: string) => boolean): PopularEntry[] {
    if (this.ref === null || k <= 0) return [];
    const order = this.sortedOrder();
    const scale = decayScale(this.ref, now, this.halfLife);
    const out: PopularEntry[] = [];
    for (let r = 0; r < order.length && out.length < k; r++) {
      const id = this.ids[order[r]]!;
      if (accept(id)) out.push({ itemId: id, score: this.sums[order[r]] * scale });
    }
    return out;
  }

  /** Live items and their sums, compactly (for snapshots). */
  exportState(): PopularityState {
    const ids: string[] = [];
    const sums = new Float64Array(this.live);
    for (let i = 0; i < this.ids.length; i++) {
      const id = this.ids[i];
      if (id === null) continue;
      sums[ids.length] = this.sums[i];
      ids.push(id);
    }
    return { reference: this.ref, ids, sums };
  }

  private compare = (a: number, b: number): number =>
    this.sums[b] - this.sums[a] || compareIds(this.ids[a]!, this.ids[b]!);

  private sortedOrder(): Int32Array {
    if (this.order !== null && this.dirty.length === 0) return this.order;
    if (this.order === null || this.dirty.length * 8 > this.live) {
      const order = new Int32Array(this.live);
      let n = 0;
      for (let i = 0; i < this.ids.length; i++) if (this.ids[i] !== null) order[n++] = i;
      order.sort(this.compare);
      this.order = order;
    } else {
      // Few changes: the unchanged slots keep their relative order; sort the changed ones and merge.
      const changed = this.dirty.filter((i) => this.ids[i] !== null).sort(this.compare);
      const previous = this.order;
      const next = new Int32Array(this.live);
      let n = 0;
      let c = 0;
      for (let r = 0; r < previous.length; r++) {
        const i = previous[r];
        if (this.dirtyFlag[i] === 1) continue;
        while (c < changed.length && this.compare(changed[c], i) < 0) next[n++] = changed[c++];
        next[n++] = i;
      }
      while (c < changed.length) next[n++] = changed[c++];
      this.order = next;
    }
    for (const i of this.dirty) this.dirtyFlag[i] = 0;
    this.dirty = [];
    return this.order;
  }

  private touch(i: number): void {
    if (this.order === null || this.dirtyFlag[i] === 1) return;
    this.dirtyFlag[i] = 1;
    this.dirty.push(i);
  }

  private slot(itemId: string): number {
    let i = this.index.get(itemId);
    if (i !== undefined) return i;
    i = this.free.pop();
    if (i === undefined) {
      i = this.ids.length;
      this.ids.push(null);
      if (i >= this.sums.length) {
        const sums = new Float64Array(this.sums.length * 2);
        sums.set(this.sums);
        this.sums = sums;
        const flags = new Uint8Array(this.sums.length);
        flags.set(this.dirtyFlag);
        this.dirtyFlag = flags;
      }
    }
    this.ids[i] = itemId;
    this.sums[i] = 0;
    this.index.set(itemId, i);
    this.live++;
    this.touch(i);
    return i;
  }

  private release(i: number): void {
    this.index.delete(this.ids[i]!);
    this.ids[i] = null;
    this.sums[i] = 0;
    this.free.push(i);
    this.live--;
    this.touch(i);
  }

  /** Moves T0 to `reference` (x half-lives later), rescaling every sum; sums that underflow are dropped. */
  private rebase(reference: number, x: number): void {
    const factor = Math.pow(2, -x);
    for (let i = 0; i < this.ids.length; i++) {
      if (this.ids[i] === null) continue;
      this.sums[i] *= factor;
      if (!(this.sums[i] > 0)) this.release(i);
    }
    this.ref = reference;
    // Rounding can make two close sums equal, which changes their tie order: rank again from scratch.
    this.order = null;
    for (const i of this.dirty) this.dirtyFlag[i] = 0;
    this.dirty = [];
  }
}
