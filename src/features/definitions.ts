/**
 * The declared features of the ranking stage: their inputs (the event fields they read, the per-item state
 * kept online and rebuilt offline, user and item metadata), their settings, and the list of columns a
 * ranking vector holds, each with the entity it describes and a one-line meaning. src/features/README.md
 * documents the same list as a table.
 *
 * Pure: types and small functions only (no I/O). The fold is in item-state.ts, user features in
 * user-features.ts, vector assembly in ranking.ts.
 */
import type { EventTypes, WeightLimits } from './interactions.ts';

/**
 * Event fields the features read; `segments` are the acting user's segments at the time (online: from the
 * online state's user records; offline: from the users table, or none).
 */
export interface FeatureEvent {
  itemId: string;
  type: string;
  value: number | null;
  timestamp: number;
  /** Log position: breaks timestamp ties offline (events without one keep their input order). */
  seq?: number;
  segments?: readonly string[];
}

/** Settings of the feature store (config `events` for types and limits, config `features` for the rest). */
export interface FeatureConfig {
  /** Event types and their weights (config `events.types`): the training weights. */
  types: EventTypes;
  /** Config `events.maxEventWeight` clamps each event's weight, as in training and popularity. */
  limits?: WeightLimits;
  /** Half-lives (days) of the item's decayed positive weight ("windowed counters"), e.g. [1, 7, 30]. */
  halfLivesDays: readonly number[];
  /** Per item, counts are kept for at most this many distinct segments (the first ones seen). */
  maxSegmentsPerItem: number;
}

/** Config `features` defaults. */
export const FEATURE_DEFAULTS = { halfLivesDays: [1, 7, 30], maxSegmentsPerItem: 32 } as const;

/**
 * One item's state: a plain JSON-serialisable object (stored in Redis, in memory and in snapshots). JSON
 * round-trips every field exactly (doubles print in their shortest exact form).
 */
export interface ItemFeatureState {
  /** Earliest and latest event time folded in (ms). */
  firstSeen: number;
  lastSeen: number;
  /** Undecayed event counts per configured type (types without events are absent). */
  counts: Record<string, number>;
  /**
   * Decayed positive weight per half-life (index = FeatureConfig.halfLivesDays), as sums against
   * `reference`: the value at `now` is decayed[i] · 2^((reference − now)/H_i) (see item-state.ts).
   */
  decayed: number[];
  reference: number;
  /** Undecayed counts per segment of the acting users, then per type (at most maxSegmentsPerItem segments). */
  segments: Record<string, Record<string, number>>;
}

/** A user's segments and attributes as last PUT. */
export interface UserMeta {
  segments: readonly string[];
  attributes: Record<string, unknown>;
}

/** What ranking reads of an item's catalog entry. */
export interface ItemMeta {
  categories: readonly string[];
  /** `attributes.price` when it is a finite number ≥ 0, else null. */
  price: number | null;
  createdAt: number | null;
  /** Content tokens (content-retriever.ts `contentTokens`): categories and short string attributes. */
  tokens?: readonly string[];
}

/** What a feature describes. */
export type FeatureEntity = 'item' | 'user' | 'user_item' | 'user_category' | 'retriever' | 'context';

export interface FeatureDefinition {
  /** Column name in ranking vectors and models (stable: a trained model refers to columns by name). */
  name: string;
  entity: FeatureEntity;
  description: string;
}

/** The event type every rate is relative to ("per view"). Without it configured, rates are missing. */
export const EXPOSURE_TYPE = 'view';

/**
 * Smoothing of rates (count_t + RATE_PRIOR_MEAN·RATE_PRIOR_WEIGHT) / (views + RATE_PRIOR_WEIGHT): an item with
 * few views gets a rate near the prior mean instead of 0 or 1 from one event.
 */
export const RATE_PRIOR_MEAN = 0.05;
export const RATE_PRIOR_WEIGHT = 20;

/** Price bands are rounded log2 ratios to the user's mean, clamped to ± this. */
export const PRICE_BAND_LIMIT = 8;

/** The configured types in a canonical order (column names must not depend on config key order). */
export function featureTypes(config: Pick<FeatureConfig, 'types'>): string[] {
  return Object.keys(config.types).sort();
}

/** A half-life as it appears in a column name: `1d`, `0.5d`. */
export function halfLifeLabel(days: number): string {
  return `${days}d`;
}

/**
 * Every column of a ranking vector, in order, for these settings and retrievers (RankingFeatures.names is
 * `featureDefinitions(...).map(d => d.name)`).
 */
export function featureDefinitions(
  config: Pick<FeatureConfig, 'types' | 'halfLivesDays'>,
  retrievers: readonly string[],
): FeatureDefinition[] {
  const defs: FeatureDefinition[] = [];
  const add = (name: string, entity: FeatureEntity, description: string): void => {
    defs.push({ name, entity, description });
  };
  for (const h of config.halfLivesDays) {
    add(
      `item_decayed_${halfLifeLabel(h)}`,
      'item',
      `Item's positive interaction weight decayed with a ${h}-day half-life (windowed counter)`,
    );
  }
  const types = featureTypes(config);
  for (const t of types) add(`item_count_${t}`, 'item', `Item's number of '${t}' events`);
  for (const t of types) {
    if (t === EXPOSURE_TYPE) continue;
    add(
      `item_rate_${t}`,
      'item',
      `Smoothed '${t}' events per '${EXPOSURE_TYPE}' (click-through, conversion…)`,
    );
  }
  add('item_trending', 'item', 'Shortest- over longest-half-life decayed weight, each per day of half-life');
  add('item_age_first_seen_days', 'item', 'Days since the item’s first event');
  add('item_age_created_days', 'item', 'Days since the item’s createdAt');
  add('item_recency_days', 'item', 'Days since the item’s last event');
  add('item_price', 'item', 'Item price (attributes.price)');
  add('user_events', 'user', 'Events in the user’s recent history');
  add('user_distinct_items', 'user', 'Distinct items in the user’s recent history');
  add('user_recency_days', 'user', 'Days since the user’s newest event');
  add('user_mean_weight', 'user', 'Mean interaction weight per event in the user’s recent history');
  add('user_item_seen', 'user_item', '1 when the user has any event on the item in their history, else 0');
  add('user_item_interacted', 'user_item', '1 when the user interacted positively with the item, else 0');
  add('user_item_price_band', 'user_item', 'round(log2(item price / user’s mean price of positive items))');
  add(
    'user_segment_item_share',
    'user_item',
    'Largest share of the item’s events made by one of the user’s segments',
  );
  add(
    'user_category_share',
    'user_category',
    'Largest share of the user’s positive weight on one of the item’s categories',
  );
  for (const r of retrievers) {
    add(
      `retriever_${r}_score`,
      'retriever',
      `Score given by retriever '${r}' (missing when it did not retrieve the item)`,
    );
    add(
      `retriever_${r}_rank`,
      'retriever',
      `1-based rank given by retriever '${r}' (missing when not retrieved)`,
    );
  }
  add('context_hour', 'context', 'Hour of day (UTC) of the request, 0–23');
  add('context_day_of_week', 'context', 'Day of week (UTC) of the request, 0 = Sunday');
  return defs;
}

/**
 * Settings that are not usable, by config key (for CAIRN_CONFIG_INVALID): half-lives must be positive
 * finite numbers, the segment cap an integer ≥ 0.
 */
export function featureConfigIssues(
  config: Pick<FeatureConfig, 'halfLivesDays' | 'maxSegmentsPerItem'>,
): { field: string; message: string }[] {
  const issues: { field: string; message: string }[] = [];
  const h = config.halfLivesDays;
  if (!Array.isArray(h) || h.length === 0 || !h.every((d) => d > 0 && Number.isFinite(d))) {
    issues.push({ field: 'features.halfLivesDays', message: 'must be a non-empty list of positive numbers' });
  }
  if (!Number.isInteger(config.maxSegmentsPerItem) || config.maxSegmentsPerItem < 0) {
    issues.push({ field: 'features.maxSegmentsPerItem', message: 'must be an integer ≥ 0' });
  }
  return issues;
}
