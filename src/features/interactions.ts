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

export function interactionWeight(
  types: EventTypes,
  event: Pick<CairnEvent, 'type' | 'value'>,
): InteractionWeight {
  const spec = types[event.type];
  if (!spec) return { weight: 0, negative: false };
  if (spec.negative) return { weight: 0, negative: true };
  if (spec.useValue) {
    const v = event.value ?? 0;
    if (spec.minValue !== undefined && v < spec.minValue) return { weight: 0, negative: false };
    return { weight: Math.max(0, spec.weight * v), negative: false };
  }
  return { weight: spec.weight, negative: false };
}

/** A user's aggregated state from their events, newest first or in any order. */
export interface UserProfile {
  /** Summed positive weight per item (items the user interacted with positively). */
  positives: Map<string, number>;
  /** Items the user marked negative (dislike, return…), never recommended to them. */
  negatives: Set<string>;
  /** Every item the user touched, positive or not (views included). */
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
 * the order, matching the offline extraction (a dislike overrides earlier views).
 */
export function buildUserProfile(types: EventTypes, events: readonly CairnEvent[]): UserProfile {
  const positives = new Map<string, number>();
  const negatives = new Set<string>();
  const seen = new Set<string>();
  const lastPositiveAt = new Map<string, number>();
  const strongestType = new Map<string, string>();
  const strongestWeight = new Map<string, number>();
  let lastEventAt: number | null = null;
  for (const e of events) {
    seen.add(e.itemId);
    if (lastEventAt === null || e.timestamp > lastEventAt) lastEventAt = e.timestamp;
    const w = interactionWeight(types, e);
    if (w.negative) negatives.add(e.itemId);
    else if (w.weight > 0) {
      positives.set(e.itemId, (positives.get(e.itemId) ?? 0) + w.weight);
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
