/**
 * The trained second-stage ranker as a model version carries it (artifact `extra.ranker`): the contract
 * between the training pipeline, which writes it, and online serving, which reads it. Both import it
 * from here (serving is never imported by training). Pure: no I/O.
 *
 * A stored ranker is only usable where its columns mean the same as when it was trained: the same
 * feature names in the same order (`RankingFeatures({config, retrievers}).names`), the same half-lives,
 * and retrievers the serving process can provide. `rankerMismatch` says why not, for logs and metrics.
 */
import type { GbdtModelJson } from '../algorithms/gbdt.ts';
import { CairnError } from '../errors/errors.ts';
import type { FeatureConfig } from './definitions.ts';
import { RankingFeatures } from './ranking.ts';

export const RANKER_FORMAT_VERSION = 1;

/**
 * The popularity retriever: online the popular list proposes its head, offline (training) the items by
 * the same score; on both sides its score for every candidate is the item's decayed positive weight (its
 * feature state, `decayedAt`) at the configured half-life nearest `serving.popularityHalfLifeDays`, so a
 * split on it means the same in training and in serving.
 */
export const POPULARITY_RETRIEVER = 'pop';

/** Index (into `halfLivesDays`) of the half-life nearest `popularityHalfLifeDays` (ratio-wise). */
export function popularityHalfLifeIndex(
  config: Pick<FeatureConfig, 'halfLivesDays'>,
  popularityHalfLifeDays: number,
): number {
  const days = config.halfLivesDays;
  const distance = (d: number) => Math.abs(Math.log(d / popularityHalfLifeDays));
  let best = 0;
  for (let i = 1; i < days.length; i++) if (distance(days[i]) < distance(days[best])) best = i;
  return best;
}

/** `extra.ranker` of a model version's artifact. */
export interface StoredRanker {
  formatVersion: 1;
  /** GbdtModel.toJSON(). */
  model: GbdtModelJson;
  /**
   * Retriever names in round-robin order: online, the model's own algorithm name (its full-catalog
   * scores), `pop` (the time-decayed popularity head) and `similar` (item-to-item on recent items).
   */
  retrievers: string[];
  /** Column names the model was trained on: must equal RankingFeatures({config, retrievers}).names. */
  featureNames: string[];
  /** `features.halfLivesDays` at training (must match the serving config). */
  halfLivesDays: number[];
  /** Candidates per request at training. */
  candidates: number;
  /** Holdout metrics, e.g. { 'ndcg@10': …, 'model_ndcg@10': … }. */
  metrics: Record<string, number>;
}

/**
 * The artifact of a trained ranker: `model` over the columns of `features` (RankingFeatures of these
 * retrievers and feature settings), as training stores it and serving checks it.
 */
export function storedRanker(
  model: { toJSON(): GbdtModelJson },
  features: { names: readonly string[] },
  retrievers: readonly string[],
  config: Pick<FeatureConfig, 'halfLivesDays'>,
  candidates: number,
  metrics: Record<string, number>,
): StoredRanker {
  return {
    formatVersion: RANKER_FORMAT_VERSION,
    model: model.toJSON(),
    retrievers: [...retrievers],
    featureNames: [...features.names],
    halfLivesDays: [...config.halfLivesDays],
    candidates,
    metrics,
  };
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

const isStringList = (v: unknown): v is string[] =>
  Array.isArray(v) && v.every((s) => typeof s === 'string' && s.length > 0);

/**
 * Checks `value` (an artifact's `extra.ranker`) as a StoredRanker. Returns null when there is none
 * (undefined or null); throws CAIRN_VALIDATION, every problem listed with its `ranker.<field>`, when it
 * is malformed. The trees themselves are checked when GbdtModel.fromJSON builds them.
 */
export function parseStoredRanker(value: unknown): StoredRanker | null {
  if (value === undefined || value === null) return null;
  if (!isObject(value)) throw CairnError.validation([{ field: 'ranker', message: 'must be an object' }]);
  const issues: { field: string; message: string }[] = [];
  const bad = (field: string, message: string) => issues.push({ field: `ranker.${field}`, message });
  if (value.formatVersion !== RANKER_FORMAT_VERSION)
    bad('formatVersion', `must be ${RANKER_FORMAT_VERSION}, got ${JSON.stringify(value.formatVersion)}`);
  const model = value.model;
  if (!isObject(model) || model.format !== 'cairn-gbdt' || !Array.isArray(model.trees))
    bad('model', 'must be a cairn-gbdt model (GbdtModel.toJSON())');
  if (!isStringList(value.retrievers) || value.retrievers.length === 0)
    bad('retrievers', 'must be a non-empty list of retriever names');
  else if (new Set(value.retrievers).size !== value.retrievers.length)
    bad('retrievers', 'must not name a retriever twice');
  const featureNames = value.featureNames;
  if (!isStringList(featureNames) || featureNames.length === 0)
    bad('featureNames', 'must be a non-empty list of feature names');
  else if (isObject(model) && isStringList(model.featureNames)) {
    const names = model.featureNames;
    if (names.length !== featureNames.length || names.some((n, i) => n !== featureNames[i]))
      bad('featureNames', "must equal the model's own feature names");
  }
  const h = value.halfLivesDays;
  if (
    !Array.isArray(h) ||
    h.length === 0 ||
    !h.every((d) => typeof d === 'number' && d > 0 && Number.isFinite(d))
  )
    bad('halfLivesDays', 'must be a non-empty list of positive numbers');
  if (typeof value.candidates !== 'number' || !Number.isInteger(value.candidates) || value.candidates < 1)
    bad('candidates', 'must be an integer ≥ 1');
  const metrics = value.metrics ?? {};
  if (!isObject(metrics) || !Object.values(metrics).every((m) => typeof m === 'number'))
    bad('metrics', 'must map metric names to numbers');
  if (issues.length > 0) throw CairnError.validation(issues);
  return {
    formatVersion: RANKER_FORMAT_VERSION,
    model: model as GbdtModelJson,
    retrievers: [...(value.retrievers as string[])],
    featureNames: [...(featureNames as string[])],
    halfLivesDays: [...(h as number[])],
    candidates: value.candidates as number,
    metrics: { ...(metrics as Record<string, number>) },
  };
}

/**
 * Why `stored` cannot rank with these feature settings and retrievers (null: it can): a retriever the
 * caller cannot provide, other half-lives, or feature names that differ from the vector built here
 * (another version of the feature definitions, or other event types).
 */
export function rankerMismatch(
  stored: StoredRanker,
  config: FeatureConfig,
  available: readonly string[],
): string | null {
  const missing = stored.retrievers.filter((r) => !available.includes(r));
  if (missing.length > 0)
    return `retriever${missing.length > 1 ? 's' : ''} ${missing.join(', ')} not available here (available: ${available.join(', ')})`;
  const h = config.halfLivesDays;
  if (h.length !== stored.halfLivesDays.length || h.some((d, i) => d !== stored.halfLivesDays[i]))
    return `half-lives [${stored.halfLivesDays.join(', ')}] differ from features.halfLivesDays [${h.join(', ')}]`;
  const names = new RankingFeatures({ config, retrievers: stored.retrievers }).names;
  if (names.length !== stored.featureNames.length)
    return `${stored.featureNames.length} features stored, ${names.length} built here`;
  for (let i = 0; i < names.length; i++)
    if (names[i] !== stored.featureNames[i])
      return `feature ${i} is ${stored.featureNames[i]} in the ranker, ${names[i]} here`;
  return null;
}
