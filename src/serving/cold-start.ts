/**
 * Cold start: ranking popular items for a user with no events from what is known about them (their
 * segments and attributes, as last PUT) instead of serving everyone the same global list.
 *
 * Per candidate item (taken from the popular head and the popular items of the categories the user's
 * attributes name), three terms add up, in log space:
 *
 *   score = POPULARITY_WEIGHT × ln(1 + popularity) + ln(segment lift) + ln(1 + ATTRIBUTE_BOOST × match)
 *
 * i.e. the square root of popularity times the lift times the boost: popularity is dampened so that what
 * is known about the user can lift an item over a head that is orders of magnitude more popular.
 *
 * - segment lift: the share of the item's interactions that came from users of the segment, against
 *   that segment's share of all the candidates' interactions (lift 1: the segment likes it as much as
 *   everyone; 3: three times as much), smoothed towards 1 by LIFT_PRIOR interactions so an item with
 *   two events does not jump the list. A user in several segments takes their best one. Interactions
 *   are the item's event counts per type from the online feature state, weighed by the event types'
 *   training weights (negative types count nothing).
 * - attribute match: 1 when one of the user's attribute values (a string, or a list of strings) names
 *   one of the item's categories or equals the item's attribute of the same key, case-insensitively
 *   (`{"favorite_genre": "Drama"}` ↔ category `Drama`; `{"brand": "acme"}` ↔ `attributes.brand: "Acme"`).
 *
 * The three terms are the per-feature contributions of the explanation (they sum to the score, with a
 * bias of 0): the same `features` shape the trained ranker's explanations use. Pure: no I/O.
 */
import type { ItemFeatureState, UserMeta } from '../features/definitions.ts';
import type { EventTypes } from '../features/interactions.ts';

/** Pseudo-evidence (in weighted interactions) pulling every item's segment share towards the base rate. */
export const LIFT_PRIOR = 10;
/** How much a matching attribute multiplies an item's (undampened) score by, minus one. */
export const ATTRIBUTE_BOOST = 2;
/** Weight of ln(1 + popularity): 0.5 ranks by the square root of popularity. */
export const POPULARITY_WEIGHT = 0.5;
/** A lift at least this high is worth naming in the reason. */
export const LIFT_REASON = 1.25;
/** Attribute values read per user (a user record may carry many; matching each is a scan). */
const MAX_USER_VALUES = 32;
const MAX_VALUE_LENGTH = 256;

export interface ColdStartCandidate {
  itemId: string;
  /** The item's popularity score (time-decayed, from the popular list). */
  popularity: number;
  categories: readonly string[];
  attributes: Readonly<Record<string, unknown>>;
}

export interface ColdStartRanked {
  itemId: string;
  score: number;
  /** Why, in words; null when neither the segments nor the attributes lifted the item. */
  reason: string | null;
  features: { name: string; value: number | null; contribution: number }[];
}

/** One attribute value of the user, as matched (lower case) and as written. */
interface UserValue {
  key: string;
  match: string;
}

/** The user's attribute values that can match an item: strings and lists of strings, bounded. */
export function userValues(meta: Pick<UserMeta, 'attributes'>): UserValue[] {
  const out: UserValue[] = [];
  const add = (key: string, v: unknown) => {
    if (out.length >= MAX_USER_VALUES || typeof v !== 'string') return;
    const match = v.trim().toLowerCase();
    if (match.length > 0 && match.length <= MAX_VALUE_LENGTH) out.push({ key, match });
  };
  for (const [key, value] of Object.entries(meta.attributes)) {
    if (Array.isArray(value)) for (const v of value) add(key, v);
    else add(key, value);
  }
  return out;
}

/** The item's category or same-key attribute that one of the user's values names, as the item writes it. */
function matchOf(values: readonly UserValue[], item: ColdStartCandidate): string | null {
  for (const v of values) {
    for (const c of item.categories) if (c.toLowerCase() === v.match) return c;
    const own = Object.prototype.hasOwnProperty.call(item.attributes, v.key)
      ? item.attributes[v.key]
      : undefined;
    const owns = Array.isArray(own) ? own : [own];
    for (const o of owns) if (typeof o === 'string' && o.trim().toLowerCase() === v.match) return o.trim();
  }
  return null;
}

/** Positive weight of one interaction of each configured type (negative types weigh nothing). */
function typeWeights(types: EventTypes): Map<string, number> {
  const out = new Map<string, number>();
  for (const [type, spec] of Object.entries(types))
    if (!spec.negative && spec.weight > 0) out.set(type, spec.weight);
  return out;
}

function weighted(
  counts: Readonly<Record<string, number>> | undefined,
  weights: Map<string, number>,
): number {
  if (!counts) return 0;
  let sum = 0;
  for (const [type, w] of weights) {
    const c = Object.prototype.hasOwnProperty.call(counts, type) ? counts[type] : 0;
    if (c > 0 && Number.isFinite(c)) sum += c * w;
  }
  return sum;
}

/**
 * Ranks `candidates` for a user with no events; `states[i]` is the feature state of `candidates[i]`
 * (null: no events). Best first; ties keep the candidates' order (their popularity).
 */
export function rankColdStart(
  meta: UserMeta,
  candidates: readonly ColdStartCandidate[],
  states: readonly (ItemFeatureState | null)[],
  types: EventTypes,
): ColdStartRanked[] {
  const weights = typeWeights(types);
  const segments = [...new Set(meta.segments)];
  const n = candidates.length;
  const S = segments.length;
  const totals = new Float64Array(n);
  // Row-major n × S: the weighted interactions of each item from each of the user's segments.
  const bySegment = new Float64Array(n * S);
  const segmentTotals = new Float64Array(S);
  let total = 0;
  for (let i = 0; i < n; i++) {
    const state = states[i];
    if (!state) continue;
    totals[i] = weighted(state.counts, weights);
    total += totals[i];
    for (let s = 0; s < S; s++) {
      const seg = segments[s];
      const counts = Object.prototype.hasOwnProperty.call(state.segments, seg)
        ? state.segments[seg]
        : undefined;
      const v = weighted(counts, weights);
      bySegment[i * S + s] = v;
      segmentTotals[s] += v;
    }
  }
  const values = userValues(meta);
  const ranked: (ColdStartRanked & { order: number })[] = [];
  for (let i = 0; i < n; i++) {
    const c = candidates[i];
    // Not popular at all (decayed to nothing): not a popular item to rank.
    if (!(c.popularity > 0) || !Number.isFinite(c.popularity)) continue;
    let lift = 1;
    let segment: string | null = null;
    for (let s = 0; s < S; s++) {
      if (!(segmentTotals[s] > 0) || !(total > 0)) continue;
      const base = segmentTotals[s] / total;
      const l = (bySegment[i * S + s] + LIFT_PRIOR * base) / (totals[i] + LIFT_PRIOR) / base;
      if (l > lift) {
        lift = l;
        segment = segments[s];
      }
    }
    const match = values.length > 0 ? matchOf(values, c) : null;
    const popularity = c.popularity;
    const terms = [
      POPULARITY_WEIGHT * Math.log1p(popularity),
      Math.log(lift),
      Math.log1p(match !== null ? ATTRIBUTE_BOOST : 0),
    ];
    const score = terms[0] + terms[1] + terms[2];
    const words: string[] = [];
    if (match !== null) words.push(`Matches your interest in ${match}`);
    if (segment !== null && lift >= LIFT_REASON)
      words.push(`${words.length > 0 ? 'popular' : 'Popular'} with customers in segment ${segment}`);
    ranked.push({
      itemId: c.itemId,
      score,
      reason: words.length > 0 ? words.join('; ') : null,
      features: [
        { name: 'popularity', value: popularity, contribution: terms[0] },
        {
          name: segment ? `segment_lift:${segment}` : 'segment_lift',
          value: lift,
          contribution: terms[1],
        },
        { name: 'attribute_match', value: match !== null ? 1 : 0, contribution: terms[2] },
      ],
      order: i,
    });
  }
  ranked.sort((a, b) => b.score - a.score || a.order - b.order);
  return ranked.map(({ order: _order, ...r }) => r);
}
