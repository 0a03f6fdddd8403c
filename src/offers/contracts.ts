/**
 * The next-best-offer contract (implemented by service.ts): which offer to show a user now, on a
 * channel, arbitrated by expected value under eligibility rules and a contact policy. Services speak
 * domain types (camelCase); the HTTP layer maps them to the snake_case wire format.
 */
import type { RequestContext } from '../domain/context.ts';
import type { ItemFeatureState } from '../features/definitions.ts';
import type { OnlineState } from '../storage/ports.ts';

/**
 * Contact policy of one offer. Absent fields take `config.offers.policy`; 0 turns a count rule off.
 */
export interface OfferPolicy {
  /** At most this many impressions of the offer per user per `periodDays`. */
  maxImpressions?: number;
  periodDays?: number;
  /** Once the user has this many outcomes of `suppressOutcomes` on the offer… */
  suppressAfter?: number;
  /** …event types such as `purchase` or `dismiss`… */
  suppressOutcomes?: string[];
  /** …the offer is not shown to them for this many days after the latest one. */
  suppressDays?: number;
}

/** An offer: the parsed `attributes.offer` of a catalog item (validate.ts). Times are epoch ms. */
export interface Offer {
  /** Margin or revenue of one conversion (≥ 0). */
  value: number;
  /** Operator weight multiplied into expected value (default 1). */
  lever: number;
  /** Segments eligible for the offer; null: everyone. */
  segments: readonly string[] | null;
  /** Channels the offer may be shown on; null: every channel. */
  channels: readonly string[] | null;
  /** Eligible from (inclusive) / until (exclusive); null: open-ended. */
  start: number | null;
  end: number | null;
  /** Units left; ≤ 0: ineligible. null: not tracked. */
  inventory: number | null;
  /** Remaining budget; ineligible when below `value`. null: not tracked. */
  budget: number | null;
  policy: OfferPolicy;
}

/** Why an offer was left out of an answer (stable codes: clients may branch on them). */
export type ExclusionRule =
  /** The item is unavailable in the catalog. */
  | 'unavailable'
  /** Now is outside the offer's start/end window. */
  | 'window'
  | 'inventory'
  | 'budget'
  /** The request's channel is not one of the offer's channels (or the request named none). */
  | 'channel'
  /** A segment-targeted offer and a user who opted out of personalization (targeting is profiling). */
  | 'opt_out'
  /** The user is in none of the offer's segments. */
  | 'segment'
  /** Suppressed after the user's outcomes (a purchase, a dismissal) on the offer. */
  | 'suppressed'
  /** The offer reached its impressions per user per period. */
  | 'frequency_cap'
  /** The user reached the impressions per day over all offers. */
  | 'global_cap';

export interface OfferExclusion {
  itemId: string;
  rule: ExclusionRule;
  detail: string;
}

export interface OfferDecision {
  itemId: string;
  /** p(convert | user, offer, context), in [0, 1]. */
  probability: number;
  value: number;
  /** probability × value × lever (offer lever × category levers). */
  expectedValue: number;
  reason: string;
}

export interface NextBestOfferRequest {
  userId: string;
  /** Where the offer will be shown (`web`, `email`…); offers limited to channels need one. */
  channel?: string;
  k?: number;
  /** Also list the excluded offers and the rule that excluded each. */
  explain?: boolean;
}

export interface NextBestOfferResult {
  requestId: string;
  userId: string;
  /** The champion whose personal affinity shaped the probabilities; null when none did. */
  modelVersion: string | null;
  source: 'decision';
  /**
   * The user's contact history could not be read (no offer is shown: caps cannot be checked), or the
   * offers' conversion data could not (priors only), or served impressions could not be recorded.
   */
  degraded: boolean;
  /** Best first, by expected value. */
  items: OfferDecision[];
  /** With `explain`: every offer left out, and why. */
  excluded?: OfferExclusion[];
}

export interface NextBestOfferService {
  /** Throws CAIRN_VALIDATION for a bad k or channel; otherwise always answers (possibly with no offer). */
  nextBestOffer(ctx: RequestContext, request: NextBestOfferRequest): Promise<NextBestOfferResult>;
}

/** What the decision reads of an item's feature state (src/features, kept by the online state). */
export type OfferCounts = Pick<ItemFeatureState, 'counts' | 'segments'>;

/**
 * What the decision reads from the online state per request: the user's recent events (contact
 * history, CF history), opt-out, segments, and the offers' feature states.
 */
export type OfferStateReader = Pick<OnlineState, 'recentEvents' | 'optedOut' | 'itemFeatures' | 'userMeta'>;
