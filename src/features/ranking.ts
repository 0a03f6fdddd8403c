/**
 * Ranking vectors: the declared features (definitions.ts) of one user × item pair written into a flat
 * `Float32Array` row. Serving (the second stage) and training rows (offline, point in time) call the same
 * `fill` on the same kinds of input (an item state from the fold, a user context from the newest events),
 * so a model sees the same values in both.
 *
 * `fill` allocates nothing: per-user inputs are prepared once per request by `userContext`.
 */
import type { Item } from '../domain/types.ts';
import {
  EXPOSURE_TYPE,
  featureDefinitions,
  featureTypes,
  PRICE_BAND_LIMIT,
  RATE_PRIOR_MEAN,
  RATE_PRIOR_WEIGHT,
  type FeatureConfig,
  type FeatureEvent,
  type ItemFeatureState,
  type ItemMeta,
  type UserMeta,
} from './definitions.ts';
import { contentTokens } from './content-retriever.ts';
import { decayPlan, type DecayPlan } from './item-state.ts';
import { DAY_MS } from './popularity.ts';
import { buildUserContext, type UserContext } from './user-features.ts';

export type { FeatureConfig, FeatureEvent, ItemFeatureState, ItemMeta, UserMeta } from './definitions.ts';
export type { UserContext } from './user-features.ts';

const HOUR_MS = 3_600_000;
const LN2 = Math.LN2;

/**
 * The ranking view of a catalog item: its categories, `attributes.price` (finite, ≥ 0), createdAt and
 * content tokens.
 */
export function itemMetaOf(item: Pick<Item, 'categories' | 'attributes' | 'createdAt'>): ItemMeta {
  const p = item.attributes.price;
  return {
    categories: item.categories,
    price: typeof p === 'number' && Number.isFinite(p) && p >= 0 ? p : null,
    createdAt: Number.isFinite(item.createdAt) ? item.createdAt : null,
    tokens: contentTokens(item),
  };
}

/** Builds ranking vectors for one configuration and retriever list (see the file comment). */
export class RankingFeatures {
  /** Column names of the vector, in order (retriever columns: `retriever_<name>_score`, `_rank`). */
  readonly names: readonly string[];
  private readonly config: FeatureConfig;
  private readonly retrievers: readonly string[];
  private readonly types: readonly string[];
  /** Index of the exposure type in `types` (−1 when not configured: rates are missing). */
  private readonly exposureIndex: number;
  /** Counts of the item being filled, per type (scratch). */
  private readonly countsNow: Float64Array;
  private readonly decay: DecayPlan;
  /** Decayed weights of the item being filled (scratch, so `fill` allocates nothing). */
  private readonly decayedNow: Float64Array;
  /** Indices (into halfLivesDays) of the shortest and longest half-life, for trending. */
  private readonly shortest: number;
  private readonly longest: number;

  constructor(options: { config: FeatureConfig; retrievers: readonly string[] }) {
    this.config = options.config;
    this.retrievers = [...options.retrievers];
    this.names = Object.freeze(featureDefinitions(this.config, this.retrievers).map((d) => d.name));
    this.types = featureTypes(this.config);
    this.exposureIndex = this.types.indexOf(EXPOSURE_TYPE);
    this.countsNow = new Float64Array(this.types.length);
    this.decay = decayPlan(this.config);
    this.decayedNow = new Float64Array(this.decay.ms.length);
    let longest = 0;
    const days = this.config.halfLivesDays;
    for (let i = 1; i < days.length; i++) if (days[i] > days[longest]) longest = i;
    this.shortest = this.decay.shortest;
    this.longest = longest;
  }

  /**
   * Prepares one user's per-request input from their history (newest first, bounded like the online
   * history), metadata, and the categories and (optionally) prices of items.
   */
  userContext(
    events: readonly FeatureEvent[],
    meta: UserMeta | null,
    now: number,
    categoriesOf: (itemId: string) => readonly string[],
    priceOf?: (itemId: string) => number | null,
  ): UserContext {
    return buildUserContext(events, meta, now, this.config, categoriesOf, priceOf);
  }

  /** Writes names.length values at out[offset..]; NaN for missing. Allocates nothing. */
  fill(
    out: Float32Array,
    offset: number,
    user: UserContext,
    itemId: string,
    state: ItemFeatureState | null,
    item: ItemMeta | null,
    signals: ReadonlyMap<string, { score: number; rank: number }>,
    now: number,
  ): void {
    let o = offset;
    const { ms, rates } = this.decay;
    const decayed = this.decayedNow;

    // item: decayed weights per half-life (the form of item-state.ts `decayedAt`).
    for (let i = 0; i < rates.length; i++) {
      decayed[i] = state === null ? 0 : state.decayed[i] * Math.exp((state.reference - now) * rates[i]);
      out[o++] = decayed[i];
    }
    // item: counts per type (each read once: keyed reads of states of many shapes are the costly part),
    // then rates per exposure.
    const counts = this.countsNow;
    const types = this.types;
    let total = 0;
    let views = 0;
    for (let k = 0; k < types.length; k++) {
      const c = state === null ? 0 : (state.counts[types[k]] ?? 0);
      counts[k] = c;
      total += c;
      if (k === this.exposureIndex) views = c;
      out[o++] = c;
    }
    for (let k = 0; k < types.length; k++) {
      if (k === this.exposureIndex) continue;
      out[o++] =
        this.exposureIndex >= 0
          ? (counts[k] + RATE_PRIOR_MEAN * RATE_PRIOR_WEIGHT) / (views + RATE_PRIOR_WEIGHT)
          : Number.NaN;
    }
    // item: trending = (short-window weight per day of half-life) / (long-window weight per day).
    if (state === null || this.shortest === this.longest) out[o++] = Number.NaN;
    else {
      const long = decayed[this.longest];
      out[o++] =
        long > 0 ? decayed[this.shortest] / ms[this.shortest] / (long / ms[this.longest]) : Number.NaN;
    }
    out[o++] = state === null ? Number.NaN : (now - state.firstSeen) / DAY_MS;
    out[o++] = item?.createdAt != null ? (now - item.createdAt) / DAY_MS : Number.NaN;
    out[o++] = state === null ? Number.NaN : (now - state.lastSeen) / DAY_MS;
    const price = item?.price ?? null;
    out[o++] = price ?? Number.NaN;

    // user
    out[o++] = user.events;
    out[o++] = user.distinctItems;
    out[o++] = user.recencyDays;
    out[o++] = user.meanWeight;

    // user × item
    const w = user.itemWeights.get(itemId);
    out[o++] = w === undefined ? 0 : 1;
    out[o++] = w !== undefined && w > 0 ? 1 : 0;
    if (price !== null && price > 0 && Number.isFinite(user.meanLogPrice)) {
      const band = Math.round((Math.log(price) - user.meanLogPrice) / LN2);
      out[o++] = Math.max(-PRICE_BAND_LIMIT, Math.min(PRICE_BAND_LIMIT, band));
    } else out[o++] = Number.NaN;
    out[o++] = this.segmentShare(user.segments, state, total);

    // user × category
    if (!(user.totalWeight > 0) || item === null) out[o++] = Number.NaN;
    else {
      let best = 0;
      for (const c of item.categories) {
        const share = user.categoryShares.get(c);
        if (share !== undefined && share > best) best = share;
      }
      out[o++] = best;
    }

    // retrievers
    for (const r of this.retrievers) {
      const s = signals.get(r);
      out[o++] = s === undefined ? Number.NaN : s.score;
      out[o++] = s === undefined ? Number.NaN : s.rank;
    }

    // context (UTC; 1970-01-01 was a Thursday, day 4 with Sunday = 0)
    const msOfDay = ((now % DAY_MS) + DAY_MS) % DAY_MS;
    out[o++] = Math.floor(msOfDay / HOUR_MS);
    out[o++] = (((Math.floor(now / DAY_MS) + 4) % 7) + 7) % 7;
  }

  /** Largest share of the item's events made by users of one of `segments` (NaN: no segments or events). */
  private segmentShare(segments: readonly string[], state: ItemFeatureState | null, total: number): number {
    if (segments.length === 0 || state === null || total === 0) return Number.NaN;
    let best = 0;
    for (const seg of segments) {
      if (!Object.prototype.hasOwnProperty.call(state.segments, seg)) continue;
      const perType = state.segments[seg];
      let n = 0;
      for (const t of this.types) n += perType[t] ?? 0;
      if (n > best) best = n;
    }
    return best / total;
  }
}
