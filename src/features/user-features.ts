/**
 * User features, computed from the user's events newest first: online the bounded recent history of the
 * online state (`OnlineState.recentEvents(user, historyLimit)`), offline the same number of newest events
 * at or before the row's time (`userEventsAt`). Both are the same list, so both give the same features.
 *
 * A `UserContext` is built once per request and read by `RankingFeatures.fill` for every candidate: the
 * per-candidate work is map lookups, never a pass over the history.
 */
import type { FeatureConfig, FeatureEvent, UserMeta } from './definitions.ts';
import { EXPOSURE_TYPE } from './definitions.ts';
import { interactionWeight } from './interactions.ts';
import { DAY_MS } from './popularity.ts';

/** Per-request feature input of one user. Read-only for callers. */
export class UserContext {
  /** Time the context was built for (ms). */
  readonly now: number;
  /** Events in the history given. */
  readonly events: number;
  /** Distinct items among them. */
  readonly distinctItems: number;
  /** Days since the newest event (NaN without events). */
  readonly recencyDays: number;
  /** Mean interaction weight per event (NaN without events). */
  readonly meanWeight: number;
  /** Segments of the user (empty when unknown). */
  readonly segments: readonly string[];
  /** Per item of the history: summed positive weight (0 for items only seen, viewed with weight 0…). */
  readonly itemWeights: ReadonlyMap<string, number>;
  /** Per category: share of the user's positive weight on items of that category. */
  readonly categoryShares: ReadonlyMap<string, number>;
  /** Total positive weight (category shares are NaN when it is 0). */
  readonly totalWeight: number;
  /** Mean natural log of the prices of positively interacted items other than views (NaN: none priced). */
  readonly meanLogPrice: number;

  constructor(fields: Omit<UserContext, never>) {
    this.now = fields.now;
    this.events = fields.events;
    this.distinctItems = fields.distinctItems;
    this.recencyDays = fields.recencyDays;
    this.meanWeight = fields.meanWeight;
    this.segments = fields.segments;
    this.itemWeights = fields.itemWeights;
    this.categoryShares = fields.categoryShares;
    this.totalWeight = fields.totalWeight;
    this.meanLogPrice = fields.meanLogPrice;
  }
}

/**
 * Builds a user's context from their history (newest first, bounded like the online history; the order
 * does not change the result), their metadata and the categories (and optionally prices) of items.
 */
export function buildUserContext(
  events: readonly FeatureEvent[],
  meta: UserMeta | null,
  now: number,
  config: Pick<FeatureConfig, 'types' | 'limits'>,
  categoriesOf: (itemId: string) => readonly string[],
  priceOf?: (itemId: string) => number | null,
): UserContext {
  const itemWeights = new Map<string, number>();
  const categoryWeights = new Map<string, number>();
  let newest = -Infinity;
  let totalWeight = 0;
  let allWeight = 0;
  let logPriceSum = 0;
  let priced = 0;
  for (const e of events) {
    if (e.timestamp > newest) newest = e.timestamp;
    const w = interactionWeight(config.types, e, config.limits).weight;
    allWeight += w;
    itemWeights.set(e.itemId, (itemWeights.get(e.itemId) ?? 0) + w);
    if (!(w > 0)) continue;
    totalWeight += w;
    for (const c of categoriesOf(e.itemId)) categoryWeights.set(c, (categoryWeights.get(c) ?? 0) + w);
    if (priceOf !== undefined && e.type !== EXPOSURE_TYPE) {
      const p = priceOf(e.itemId);
      if (p !== null && p > 0 && Number.isFinite(p)) {
        logPriceSum += Math.log(p);
        priced++;
      }
    }
  }
  const categoryShares = new Map<string, number>();
  if (totalWeight > 0) for (const [c, w] of categoryWeights) categoryShares.set(c, w / totalWeight);
  const n = events.length;
  return new UserContext({
    now,
    events: n,
    distinctItems: itemWeights.size,
    recencyDays: n > 0 ? (now - newest) / DAY_MS : Number.NaN,
    meanWeight: n > 0 ? allWeight / n : Number.NaN,
    segments: meta?.segments ?? [],
    itemWeights,
    categoryShares,
    totalWeight,
    meanLogPrice: priced > 0 ? logPriceSum / priced : Number.NaN,
  });
}

/**
 * Offline: the user's history as the online state would hold it at `at`: their events with timestamp ≤
 * `at`, newest first (by timestamp, then seq), at most `limit` (the online `historyLimit`).
 */
export function userEventsAt<E extends FeatureEvent>(events: readonly E[], at: number, limit: number): E[] {
  const kept: { e: E; i: number }[] = [];
  for (let i = 0; i < events.length; i++) if (events[i].timestamp <= at) kept.push({ e: events[i], i });
  kept.sort((a, b) => b.e.timestamp - a.e.timestamp || (b.e.seq ?? b.i) - (a.e.seq ?? a.i));
  const n = Math.min(kept.length, Math.max(0, Math.floor(limit)));
  const out = new Array<E>(n);
  for (let i = 0; i < n; i++) out[i] = kept[i].e;
  return out;
}
