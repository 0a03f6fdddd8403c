/**
 * Eligibility and contact policy of offers: pure rules over an offer, the request, the user's
 * segments and the user's recent events. Each rule answers with the stable code that excluded the
 * offer (contracts.ts `ExclusionRule`) and a human detail; the first failing rule, in this order, is
 * the one reported:
 *
 *   unavailable → window → inventory → budget → channel → opt_out → segment      (eligibility)
 *   suppressed → frequency_cap → global_cap                                      (contact policy)
 *
 * Contact history is the user's recent events as the online state keeps them (bounded by
 * `serving.historyLimit`): impressions are `impression` events on the offer's item, outcomes are
 * events of the offer's suppressing types. The global cap is a rolling 24 hours.
 */
import type { StoredEvent } from '../domain/types.ts';
import type { ExclusionRule, Offer, OfferPolicy } from './contracts.ts';

/** The event type of a served offer (what caps count and what the decision records). */
export const IMPRESSION = 'impression';
const DAY_MS = 86_400_000;

/** An offer as a replica knows it: the item's offer and the catalog facts the rules read. */
export interface OfferEntry {
  itemId: string;
  offer: Offer;
  available: boolean;
  categories: readonly string[];
  title: string | null;
}

/** The contact policy of one offer with the configured defaults filled in. */
export interface EffectivePolicy {
  maxImpressions: number;
  periodDays: number;
  suppressAfter: number;
  suppressOutcomes: readonly string[];
  suppressDays: number;
}

export interface Exclusion {
  rule: ExclusionRule;
  detail: string;
}

export function effectivePolicy(offer: Offer, defaults: Required<OfferPolicy>): EffectivePolicy {
  const p = offer.policy;
  return {
    maxImpressions: p.maxImpressions ?? defaults.maxImpressions,
    periodDays: p.periodDays ?? defaults.periodDays,
    suppressAfter: p.suppressAfter ?? defaults.suppressAfter,
    suppressOutcomes: p.suppressOutcomes ?? defaults.suppressOutcomes,
    suppressDays: p.suppressDays ?? defaults.suppressDays,
  };
}

/** Rules that need nothing of the user: catalog availability, window, stock, budget and channel. */
export function offerExclusion(
  entry: OfferEntry,
  now: number,
  channel: string | undefined,
): Exclusion | null {
  const o = entry.offer;
  if (!entry.available) return { rule: 'unavailable', detail: 'the item is unavailable in the catalog' };
  if (o.start !== null && now < o.start)
    return { rule: 'window', detail: `starts ${new Date(o.start).toISOString()}` };
  if (o.end !== null && now >= o.end)
    return { rule: 'window', detail: `ended ${new Date(o.end).toISOString()}` };
  if (o.inventory !== null && o.inventory <= 0)
    return { rule: 'inventory', detail: `inventory ${o.inventory}` };
  if (o.budget !== null && o.budget < o.value)
    return { rule: 'budget', detail: `remaining budget ${o.budget} is below the value ${o.value}` };
  if (o.channels !== null && (channel === undefined || !o.channels.includes(channel)))
    return {
      rule: 'channel',
      detail:
        channel === undefined
          ? `limited to channels ${o.channels.join(', ')}; the request named none`
          : `not offered on channel ${channel} (only ${o.channels.join(', ')})`,
    };
  return null;
}

/**
 * Audience rules. A user who opted out of personalization gets no segment-targeted offer: choosing
 * who sees an offer by their profile is profiling, which they objected to.
 */
export function audienceExclusion(
  offer: Offer,
  segments: readonly string[],
  optedOut: boolean,
): Exclusion | null {
  if (offer.segments === null) return null;
  if (optedOut)
    return { rule: 'opt_out', detail: 'targeted at segments; the user opted out of personalization' };
  if (!offer.segments.some((s) => segments.includes(s)))
    return { rule: 'segment', detail: `only for segments ${offer.segments.join(', ')}` };
  return null;
}

interface ItemContacts {
  /** Impression times, newest first. */
  impressions: number[];
  /** Outcome events (any type; filtered per policy), newest first. */
  outcomes: { type: string; timestamp: number }[];
}

/** A user's contacts with offers, from their recent events (newest first, as the online state gives them). */
export class ContactHistory {
  private readonly byItem = new Map<string, ItemContacts>();
  /** Impression times on any offer, newest first. */
  private readonly allImpressions: number[] = [];

  constructor(events: readonly StoredEvent[], isOffer: (itemId: string) => boolean) {
    for (const e of events) {
      if (!isOffer(e.itemId)) continue;
      let c = this.byItem.get(e.itemId);
      if (!c) this.byItem.set(e.itemId, (c = { impressions: [], outcomes: [] }));
      if (e.type === IMPRESSION) {
        c.impressions.push(e.timestamp);
        this.allImpressions.push(e.timestamp);
      } else c.outcomes.push({ type: e.type, timestamp: e.timestamp });
    }
  }

  /** Impressions of `itemId` at or after `since`. */
  impressions(itemId: string, since: number): number {
    let n = 0;
    for (const t of this.byItem.get(itemId)?.impressions ?? []) if (t >= since) n++;
    return n;
  }

  /** Impressions of any offer at or after `since`. */
  allImpressionsSince(since: number): number {
    let n = 0;
    for (const t of this.allImpressions) if (t >= since) n++;
    return n;
  }

  /** The user's outcomes of the given types on `itemId`: how many, and the newest time. */
  outcomes(itemId: string, types: readonly string[]): { count: number; latest: number } {
    let count = 0;
    let latest = -Infinity;
    for (const o of this.byItem.get(itemId)?.outcomes ?? []) {
      if (!types.includes(o.type)) continue;
      count++;
      if (o.timestamp > latest) latest = o.timestamp;
    }
    return { count, latest };
  }
}

/**
 * The per-offer contact rules: suppression (once the user has `suppressAfter` outcomes on the offer,
 * it is not shown for `suppressDays` after the latest; a further outcome restarts the period) and the
 * frequency cap (`maxImpressions` in the last `periodDays`). 0 turns a rule off.
 */
export function contactExclusion(
  itemId: string,
  policy: EffectivePolicy,
  history: ContactHistory,
  now: number,
): Exclusion | null {
  if (policy.suppressAfter > 0 && policy.suppressOutcomes.length > 0) {
    const { count, latest } = history.outcomes(itemId, policy.suppressOutcomes);
    const until = latest + policy.suppressDays * DAY_MS;
    if (count >= policy.suppressAfter && now < until)
      return {
        rule: 'suppressed',
        detail:
          `${count} outcome${count === 1 ? '' : 's'} (${policy.suppressOutcomes.join('/')}); ` +
          `suppressed until ${new Date(until).toISOString()}`,
      };
  }
  if (policy.maxImpressions > 0) {
    const n = history.impressions(itemId, now - policy.periodDays * DAY_MS);
    if (n >= policy.maxImpressions)
      return {
        rule: 'frequency_cap',
        detail: `${n} impressions in the last ${policy.periodDays} days (cap ${policy.maxImpressions})`,
      };
  }
  return null;
}

/** Offers the user may still be shown today under the global cap (`Infinity` when there is none). */
export function globalRemaining(history: ContactHistory, maxPerUserPerDay: number, now: number): number {
  if (maxPerUserPerDay <= 0) return Infinity;
  return Math.max(0, maxPerUserPerDay - history.allImpressionsSince(now - DAY_MS));
}
