/**
 * THE fold of item features: the online state (memory and Redis adapters, per applied event batch) and the
 * offline replay (`itemStatesAt`, `ItemStateTimeline`, for training rows at a point in time) both call
 * `foldItemEvent`, so an item's features online and offline are the same function of the same events.
 * `unfoldItemEvent` takes a folded event back out (a GDPR erase in the online state).
 *
 * Decayed sums follow features/popularity.ts: each half-life H_i keeps s_i = Σ w_e · 2^((t_e − T0)/H_i)
 * against one reference time T0 (the first event folded); its value at `now` is s_i · 2^((T0 − now)/H_i).
 * T0 moves forward to an event's time (every s_i rescaled) before an exponent could pass MAX_EXPONENT, so
 * sums stay finite over any span. Weights are the training weights (features/interactions.ts
 * `interactionWeight`, clamped to `maxEventWeight`); the per-user cap of popularity needs per-user holdings
 * and is not applied here.
 *
 * Order: counts, first/last seen and decayed values at a given time do not depend on the order events are
 * folded in, except for float rounding of the sums (a different summation order, or a rebase at another
 * point): online folds in log order, offline in (timestamp, seq) order, identical when the log is in time
 * order and equal within ~1e-15 relative otherwise. Which segments are kept once an item has seen more
 * than `maxSegmentsPerItem` does depend on the order (the first ones folded are kept).
 */
import {
  FEATURE_DEFAULTS,
  type FeatureConfig,
  type FeatureEvent,
  type ItemFeatureState,
} from './definitions.ts';
import { interactionWeight, type EventTypes } from './interactions.ts';
import { halfLifeMs, MAX_EXPONENT, RESIDUE_TOLERANCE } from './popularity.ts';

export type { FeatureConfig, FeatureEvent, ItemFeatureState } from './definitions.ts';

/**
 * The feature settings of online-state options (config `events` and `features`): both online adapters fold
 * with these, and offline replays should too.
 */
export function featureConfigOf(options: {
  types: EventTypes;
  maxEventWeight?: number;
  maxUserItemWeight?: number;
  features?: { halfLivesDays: readonly number[]; maxSegmentsPerItem: number };
}): FeatureConfig {
  const f = options.features ?? FEATURE_DEFAULTS;
  return {
    types: options.types,
    limits: { maxEventWeight: options.maxEventWeight, maxUserItemWeight: options.maxUserItemWeight },
    halfLivesDays: [...f.halfLivesDays],
    maxSegmentsPerItem: f.maxSegmentsPerItem,
  };
}

/**
 * `featureConfigOf` of a Cairn configuration (its `events` and `features` sections, as the online state
 * folds with them): serving's ranker, the training pipeline and tests read the same settings this way.
 */
export function featureConfigFor(config: {
  events: { types: EventTypes; maxEventWeight?: number; maxUserItemWeight?: number };
  features: { halfLivesDays: readonly number[]; maxSegmentsPerItem: number };
}): FeatureConfig {
  const { types, maxEventWeight, maxUserItemWeight } = config.events;
  return featureConfigOf({ types, maxEventWeight, maxUserItemWeight, features: config.features });
}

/**
 * The decay of a config's half-lives, precomputed. 2^(Δ/H) is evaluated as exp(Δ · ln2/H): Math.exp is
 * about three times faster than Math.pow in V8 (measured 83 vs 260 ns per call on this machine's event
 * stream), and the fold, `decayedAt` and ranking vectors all use this one form, so online and offline agree.
 */
export interface DecayPlan {
  /** Half-lives in ms. */
  ms: Float64Array;
  /** ln 2 / half-life, per ms. */
  rates: Float64Array;
  /** Index of the shortest half-life (the largest exponent: it alone decides a rebase). */
  shortest: number;
}

/** Plans cached per half-lives array (the fold runs per event). */
const plans = new WeakMap<readonly number[], DecayPlan>();

/** The decay plan of the config's half-lives. */
export function decayPlan(config: Pick<FeatureConfig, 'halfLivesDays'>): DecayPlan {
  let plan = plans.get(config.halfLivesDays);
  if (plan === undefined) {
    const ms = Float64Array.from(config.halfLivesDays, halfLifeMs);
    let shortest = 0;
    for (let i = 1; i < ms.length; i++) if (ms[i] < ms[shortest]) shortest = i;
    plan = { ms, rates: ms.map((h) => Math.LN2 / h), shortest };
    plans.set(config.halfLivesDays, plan);
  }
  return plan;
}

/** A state with no events, to fold the first event into. */
function emptyState(timestamp: number, n: number): ItemFeatureState {
  return {
    firstSeen: timestamp,
    lastSeen: timestamp,
    counts: {},
    decayed: new Array<number>(n).fill(0),
    reference: timestamp,
    segments: {},
  };
}

/**
 * Folds one event into its item's state and returns the state: `state` itself, updated in place, or a new
 * state when `state` is null. Events of unconfigured types only move first/last seen.
 */
export function foldItemEvent(
  state: ItemFeatureState | null,
  event: FeatureEvent,
  config: FeatureConfig,
): ItemFeatureState {
  const ts = event.timestamp;
  const plan = decayPlan(config);
  const s = state ?? emptyState(ts, plan.ms.length);
  if (ts < s.firstSeen) s.firstSeen = ts;
  if (ts > s.lastSeen) s.lastSeen = ts;
  const type = event.type;
  if (!Object.prototype.hasOwnProperty.call(config.types, type)) return s;

  s.counts[type] = (s.counts[type] ?? 0) + 1;
  const segments = event.segments;
  if (segments !== undefined && segments.length > 0) {
    let kept = -1; // number of segments kept, counted on first need
    for (const seg of segments) {
      let perType = Object.prototype.hasOwnProperty.call(s.segments, seg) ? s.segments[seg] : undefined;
      if (perType === undefined) {
        if (kept < 0) kept = Object.keys(s.segments).length;
        if (kept >= config.maxSegmentsPerItem) continue;
        // defineProperty: a segment named `__proto__` must become a key, not the object's prototype.
        perType = {};
        Object.defineProperty(s.segments, seg, {
          value: perType,
          enumerable: true,
          writable: true,
          configurable: true,
        });
        kept++;
      }
      perType[type] = (perType[type] ?? 0) + 1;
    }
  }

  const w = interactionWeight(config.types, event, config.limits).weight;
  if (!(w > 0)) return s;
  const rates = plan.rates;
  const decayed = s.decayed;
  const dt = ts - s.reference;
  // In half-lives of the shortest half-life, the largest exponent: past the limit, T0 moves to `ts`.
  if (dt / plan.ms[plan.shortest] > MAX_EXPONENT) {
    for (let i = 0; i < rates.length; i++) decayed[i] *= Math.exp(-dt * rates[i]);
    s.reference = ts;
    for (let i = 0; i < rates.length; i++) decayed[i] += w;
  } else {
    for (let i = 0; i < rates.length; i++) decayed[i] += w * Math.exp(dt * rates[i]);
  }
  return s;
}

/** Own keys only: a type or segment named like an Object.prototype member is data here. */
const hasOwn = (o: object, key: string): boolean => Object.prototype.hasOwnProperty.call(o, key);

/**
 * Takes one folded event back out of its item's state (a GDPR erase): the inverse of `foldItemEvent`'s
 * additions. Updates `state` in place and returns it, or returns null when no event of a configured type
 * is left (the item then has no state, as if the event had never been folded). Pass the event as it was
 * folded: same type, value and timestamp, and the acting user's segments (online: those the user has when
 * the erase is applied, which are the ones folded unless the user changed segments in between).
 *
 * - Counts and per-segment counts drop by one, clamped at 0; a type (or segment) left with none is removed,
 *   so the state has the shape folding only the remaining events gives. A segment that was not kept (past
 *   `maxSegmentsPerItem`) was never counted and is skipped.
 * - Each decayed sum loses w · 2^((t − T0)/H) against the state's current reference (a rebase since the
 *   fold rescaled both alike). A remainder at or below RESIDUE_TOLERANCE of what was subtracted, or
 *   negative, is rounding noise (features/popularity.ts) and becomes 0, so sums never go below 0.
 * - firstSeen and lastSeen stay: the state does not record which event set them.
 *
 * Only events that were folded may be taken out (online: seq ≤ the event watermark); an event of an
 * unconfigured type only moved first/last seen and changes nothing here.
 */
export function unfoldItemEvent(
  state: ItemFeatureState,
  event: FeatureEvent,
  config: FeatureConfig,
): ItemFeatureState | null {
  const type = event.type;
  if (!hasOwn(config.types, type)) return state;
  const counts = state.counts;
  if (hasOwn(counts, type)) {
    if (counts[type] > 1) counts[type]--;
    else delete counts[type];
  }
  const segments = event.segments;
  if (segments !== undefined) {
    for (const seg of segments) {
      if (!hasOwn(state.segments, seg)) continue;
      const perType = state.segments[seg];
      if (!hasOwn(perType, type)) continue;
      if (perType[type] > 1) perType[type]--;
      else {
        delete perType[type];
        // Deletes an own `__proto__` key too (delete never reaches the prototype).
        if (Object.keys(perType).length === 0) delete state.segments[seg];
      }
    }
  }
  let anyCount = false;
  for (const key in counts) {
    if (hasOwn(counts, key)) {
      anyCount = true;
      break;
    }
  }
  if (!anyCount) return null;

  const w = interactionWeight(config.types, event, config.limits).weight;
  if (!(w > 0)) return state;
  const rates = decayPlan(config).rates;
  const decayed = state.decayed;
  const dt = event.timestamp - state.reference;
  for (let i = 0; i < rates.length; i++) {
    const amount = w * Math.exp(dt * rates[i]);
    const left = decayed[i] - amount;
    decayed[i] = left > amount * RESIDUE_TOLERANCE ? left : 0;
  }
  return state;
}

/** Decayed positive weight of half-life `index` at `now` (0 without a state). */
export function decayedAt(
  state: ItemFeatureState | null,
  index: number,
  now: number,
  config: Pick<FeatureConfig, 'halfLivesDays'>,
): number {
  if (state === null) return 0;
  return state.decayed[index] * Math.exp((state.reference - now) * decayPlan(config).rates[index]);
}

/** Orders events by (timestamp, seq); events without a seq keep their input order among equal times. */
function sortedForReplay<E extends FeatureEvent>(events: Iterable<E>): E[] {
  const list = [...events];
  const order = new Int32Array(list.length);
  for (let i = 0; i < order.length; i++) order[i] = i;
  order.sort((a, b) => {
    const x = list[a];
    const y = list[b];
    return x.timestamp - y.timestamp || (x.seq ?? a) - (y.seq ?? b) || a - b;
  });
  const out = new Array<E>(list.length);
  for (let i = 0; i < order.length; i++) out[i] = list[order[i]];
  return out;
}

/**
 * Offline replay that moves forward in time: `advanceTo(t)` folds every event with timestamp ≤ t not
 * folded yet, in (timestamp, seq) order, so training rows at increasing times cost one pass over the log.
 * States are updated in place: copy one (structuredClone) to keep it past the next advance.
 */
export class ItemStateTimeline {
  private readonly events: FeatureEvent[];
  private next = 0;
  private readonly states = new Map<string, ItemFeatureState>();
  private at = -Infinity;

  constructor(
    events: Iterable<FeatureEvent>,
    private readonly config: FeatureConfig,
  ) {
    this.events = sortedForReplay(events);
  }

  /** Time folded up to (−Infinity before the first advance). */
  get time(): number {
    return this.at;
  }

  /** Folds the events with timestamp ≤ `at`; a time before the current one is a RangeError. */
  advanceTo(at: number): void {
    if (at < this.at) throw new RangeError(`cannot move back in time from ${this.at} to ${at}`);
    this.at = at;
    const events = this.events;
    while (this.next < events.length && events[this.next].timestamp <= at) {
      const e = events[this.next++];
      this.states.set(e.itemId, foldItemEvent(this.states.get(e.itemId) ?? null, e, this.config));
    }
  }

  /** The item's state as of the current time (null without events). */
  state(itemId: string): ItemFeatureState | null {
    return this.states.get(itemId) ?? null;
  }

  /** Every item's state as of the current time (live objects: see the class comment). */
  all(): ReadonlyMap<string, ItemFeatureState> {
    return this.states;
  }
}

/**
 * Offline, point in time: states of all items from the events with timestamp ≤ `at` (any order in; folded
 * in (timestamp, seq) order).
 */
export function itemStatesAt(
  events: Iterable<FeatureEvent & { itemId: string }>,
  at: number,
  config: FeatureConfig,
): Map<string, ItemFeatureState> {
  const timeline = new ItemStateTimeline(events, config);
  timeline.advanceTo(at);
  return new Map(timeline.all());
}
