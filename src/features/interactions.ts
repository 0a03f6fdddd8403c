/**
 * How an event counts as an interaction: the one definition used when training (offline, from the
 * event log) and when serving (online, from a user's newest events), so both see the same weights.
 */
import type { CairnEvent, EventTypeSpec } from '../domain/types.ts';

export type EventTypes = Readonly<Record<string, EventTypeSpec>>;

export interface InteractionWeight {
  /** Positive training weight; 0 when the event is not a positive interaction. */
  weight: number;
  /** The user rejected the item: exclude it for them and drop it from their positives. */
  negative: boolean;
}

/**
 * Abuse resistance (config `events`): how much one event, and one user on one item, can weigh. Absent
 * fields mean no limit. Training, serving and popularity apply the same limits, so they agree.
 */
export interface WeightLimits {
  /** One event weighs at most this (its type weight × value is clamped). */
  maxEventWeight?: number;
  /** One user's summed weight on one item is capped at this (decayed, for popularity). */
  maxUserItemWeight?: number;
}

/**
 * The weight of one event, clamped to `limits.maxEventWeight`. A weight that is not a finite number (a
 * value stored before values were range-checked) counts as that limit, or as nothing without one.
 */
export function interactionWeight(
  types: EventTypes,
  event: Pick<CairnEvent, 'type' | 'value'>,
  limits?: WeightLimits,
): InteractionWeight {
  const spec = types[event.type];
  if (!spec) return { weight: 0, negative: false };
  if (spec.negative) return { weight: 0, negative: true };
  let weight = spec.weight;
  if (spec.useValue) {
    const v = event.value ?? 0;
    if (spec.minValue !== undefined && v < spec.minValue) return { weight: 0, negative: false };
    weight = Math.max(0, spec.weight * v);
  }
  weight = Math.min(weight, limits?.maxEventWeight ?? Infinity);
  return { weight: Number.isFinite(weight) ? weight : 0, negative: false };
}

/** A user's summed weight on one item, capped at `limits.maxUserItemWeight` (the offline form of the cap). */
export function pairWeight(sum: number, limits?: WeightLimits): number {
  return Math.min(sum, limits?.maxUserItemWeight ?? Infinity);
}

/** A user's aggregated state from their events, newest first or in any order. */
export interface UserProfile {
  /** Summed positive weight per item (items the user interacted with positively). */
  positives: Map<string, number>;
  /** Items the user marked negative (dislike, return…), never recommended to them. */
  negatives: Set<string>;
  /** Every item the user touched, positive or not (views included; `shownOnly` types, e.g. impressions, not). */
  seen: Set<string>;
  /** Distinct positively-interacted items, most recent first. */
  recent: string[];
  /** Newest event time (ms), or null without events. */
  lastEventAt: number | null;
  /** Per positive item, the event type that weighed most (to word explanations: "you purchased …"). */
  strongestType: Map<string, string>;
}

/**
 * Aggregates events into a profile. A negative event removes the item from the positives whatever
 * the order, matching the offline extraction (a dislike overrides earlier views); with `limits`, each
 * event is clamped and each item's sum capped as in training (features/interactions.ts `pairWeight`).
 */
export function buildUserProfile(
  types: EventTypes,
  events: readonly Pick<CairnEvent, 'itemId' | 'type' | 'value' | 'timestamp'>[],
  limits?: WeightLimits,
): UserProfile {
  const positives = new Map<string, number>();
  const negatives = new Set<string>();
  const seen = new Set<string>();
  const lastPositiveAt = new Map<string, number>();
  const strongestType = new Map<string, string>();
  const strongestWeight = new Map<string, number>();
  let lastEventAt: number | null = null;
  for (const e of events) {
    // An impression is not a sight of the item: an offer shown stays recommendable.
    if (types[e.type]?.shownOnly !== true) seen.add(e.itemId);
    if (lastEventAt === null || e.timestamp > lastEventAt) lastEventAt = e.timestamp;
    const w = interactionWeight(types, e, limits);
    if (w.negative) negatives.add(e.itemId);
    else if (w.weight > 0) {
      positives.set(e.itemId, pairWeight((positives.get(e.itemId) ?? 0) + w.weight, limits));
      if (w.weight > (strongestWeight.get(e.itemId) ?? 0)) {
        strongestWeight.set(e.itemId, w.weight);
        strongestType.set(e.itemId, e.type);
      }
      const prev = lastPositiveAt.get(e.itemId);
      if (prev === undefined || e.timestamp > prev) lastPositiveAt.set(e.itemId, e.timestamp);
    }
  }
  for (const item of negatives) {
    positives.delete(item);
    lastPositiveAt.delete(item);
    strongestType.delete(item);
  }
  const recent = [...lastPositiveAt.entries()].sort((a, b) => b[1] - a[1]).map(([id]) => id);
  return { positives, negatives, seen, recent, lastEventAt, strongestType };
}

/** Exponential time decay shared by offline popularity and the online popularity counters. */
export function decayFactor(ageMs: number, halfLifeDays: number): number {
  if (halfLifeDays <= 0) return 1;
  return Math.pow(0.5, ageMs / (halfLifeDays * 86_400_000));
}
